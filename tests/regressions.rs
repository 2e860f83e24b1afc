//! Hostile inputs that once corrupted memory, panicked or allocated without bound, kept under
//! `tests/regressions/`; each must now give its typed error. (Run under AddressSanitizer, the
//! first three wrote or read out of bounds before the loaders checked sizes.)

mod common;

use boltzmann::data::{load_npz_examples, read_idx};
use boltzmann::train::{NegativePhase, Steps, TrainConfig, resume};
use boltzmann::{Bernoulli, Dbm, Error, Rbm};
use common::*;
use nalgebra::DMatrix;
use std::path::PathBuf;

fn input(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/regressions")
        .join(name)
}

/// The error's message, for inputs that must fail.
fn message<T: std::fmt::Debug>(r: boltzmann::Result<T>) -> String {
    let e = r.expect_err("a hostile input was accepted");
    assert!(
        matches!(
            e,
            Error::Format { .. } | Error::Shape { .. } | Error::Invalid { .. }
        ),
        "{e:?}"
    );
    e.to_string()
}

fn assert_says(text: &str, what: &str) {
    assert!(text.contains(what), "expected “{what}” in: {text}");
}

#[test]
fn npz_shapes_that_wrap_around_are_refused() {
    // W claims 3 × 6148914691236517206 values and holds 2: the product wraps to 2.
    let m = message(Rbm::<Bernoulli, Bernoulli>::load_npz(input(
        "npz-weights-shape-wraps.npz",
    )));
    assert_says(&m, "more than 2^64");
    // 964689422222055633 examples of 784 units in 16 bytes.
    let m = message(load_npz_examples(
        input("npz-dataset-shape-wraps.npz"),
        "train",
    ));
    assert_says(&m, "more than 2^64");
}

#[test]
fn npz_headers_and_entries_are_bounded() {
    let m = message(Rbm::<Bernoulli, Bernoulli>::load_npz(input(
        "npz-fortran-short.npz",
    )));
    assert_says(&m, "needs 48 data bytes, the array holds 24");
    let m = message(Rbm::<Bernoulli, Bernoulli>::load_npz(input(
        "npz-header-claims-4gib.npz",
    )));
    assert_says(&m, "at most 65536 are read");
    let m = message(Rbm::<Bernoulli, Bernoulli>::load_npz(input(
        "npz-inflates-past-declared.npz",
    )));
    assert_says(&m, "larger than its declared uncompressed size");
    let m = message(Rbm::<Bernoulli, Bernoulli>::load_npz(input(
        "npz-declares-1.2gb.npz",
    )));
    assert_says(&m, "declares 1200000000 bytes");
    // A W2 that cannot be read is an error, not the end of the couplings.
    let m = message(Dbm::<Bernoulli>::load_npz(input("npz-dbm-bad-w2.npz")));
    assert_says(&m, "2 dimensions");
}

#[test]
fn gzip_idx_is_inflated_only_as_far_as_its_header_says() {
    let m = message(read_idx(input("idx-inflates-past-header.gz")));
    assert_says(&m, "need 7840 data bytes, found 7841");
    let m = message(read_idx(input("idx-header-claims-1.6tb.gz")));
    assert_says(&m, "compressed bytes can hold at most");
}

fn data() -> DMatrix<f32> {
    DMatrix::from_vec(16, 24, normal(16 * 24, 1.0, 41)).map(|x| (x * 0.3 + 0.5).clamp(0.0, 1.0))
}

/// The settings that wrote the checkpoints (a 16-visible, 3-hidden RBM; PCD with 10 chains).
fn pcd(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 12,
        binarize: true,
        seed: 3,
        negative: NegativePhase::Pcd {
            k: Steps::Constant(1),
            chains: 10,
        },
        checkpoint: None,
        ..TrainConfig::default()
    }
}

#[test]
fn crafted_checkpoints_are_refused_on_resume() {
    // Persistent chains claiming 10 + 2^60 columns (16 · that wraps to the 160 values held).
    let m = message(resume::<Bernoulli, Bernoulli, _>(
        input("checkpoint-chains-wrap.safetensors"),
        &data(),
        None,
        &pcd(2),
        |_| (),
    ));
    assert_says(&m, "but a 16×1152921504606846986 matrix is stored there");
    // An epoch count of usize::MAX, which wrapped and trained again.
    let m = message(resume::<Bernoulli, Bernoulli, _>(
        input("checkpoint-epoch-max.safetensors"),
        &data(),
        None,
        &pcd(2),
        |_| (),
    ));
    assert_says(&m, "ask for at least as many");
    // A DBM checkpoint whose example order names example 200 of 24.
    let config = TrainConfig {
        epochs: 2,
        batch_size: 12,
        negative: NegativePhase::Pcd {
            k: Steps::Constant(1),
            chains: 10,
        },
        binarize: true,
        monitor_examples: 8,
        ..TrainConfig::joint()
    };
    let m = message(resume::<Bernoulli, Bernoulli, _>(
        input("checkpoint-dbm-order-out-of-range.safetensors"),
        &data(),
        None,
        &config,
        |_| (),
    ));
    assert_says(&m, "example order");
}
