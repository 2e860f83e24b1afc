//! Training checkpoints: a run broken after some epochs and resumed ends with the same bits as
//! a run without a break, for every negative phase; damaged or mismatched checkpoints are
//! rejected with typed errors.

mod common;

use boltzmann::train::{
    Centering, Checkpoint, Checkpointing, FastWeights, NegativePhase, Sparsity, Steps, TrainConfig,
    resume, train,
};
use boltzmann::{Bernoulli, Error, Rbm};
use common::*;
use nalgebra::DMatrix;
use std::path::Path;

type Bb = Rbm<Bernoulli, Bernoulli>;

fn data() -> DMatrix<f32> {
    DMatrix::from_vec(16, 90, normal(16 * 90, 1.0, 81)).map(|x| (x * 0.3 + 0.4).clamp(0.0, 1.0))
}

fn config(negative: NegativePhase, epochs: usize, path: &Path) -> TrainConfig {
    // Centering (with its offsets in the checkpoint) for the persistent phases.
    let centering = match negative {
        NegativePhase::Cd { .. } => None,
        _ => Some(Centering { rate: 0.05 }),
    };
    TrainConfig {
        centering,
        epochs,
        batch_size: 30,
        negative,
        binarize: true,
        sparsity: Some(Sparsity {
            target: 0.1,
            cost: 0.1,
            decay: 0.9,
        }),
        // Momentum switches inside the resumed part.
        seed: 82,
        checkpoint: Some(Checkpointing {
            path: path.to_path_buf(),
            every: 1,
        }),
        ..TrainConfig::default()
    }
}

fn phases() -> Vec<NegativePhase> {
    let k = Steps::Linear {
        from: 1,
        to: 3,
        epochs: 7,
    };
    vec![
        NegativePhase::Cd { k: k.clone() },
        NegativePhase::Pcd {
            k: k.clone(),
            chains: 40,
        },
        NegativePhase::FastPcd {
            k: k.clone(),
            chains: 40,
            fast: FastWeights {
                learning_rate: 0.002,
                decay: 0.95,
            },
        },
        NegativePhase::Tempering {
            k,
            chains: 20,
            betas: vec![1.0, 0.5, 0.0],
        },
    ]
}

/// A 16-9 RBM (seed 83) trained for `epochs` with `negative`, checkpointing to `path`.
fn trained(negative: &NegativePhase, epochs: usize, path: &Path) -> Bb {
    let mut rbm: Bb = Rbm::init(16, 9, 83).unwrap();
    let config = config(negative.clone(), epochs, path);
    train(&mut rbm, &data(), None, &config, |_| {}).unwrap();
    rbm
}

#[test]
fn resuming_is_bit_identical_to_an_unbroken_run() {
    let dir = TempDir::new("checkpoint-resume");
    let data = data();
    for (p, negative) in phases().into_iter().enumerate() {
        let whole = dir.join(format!("whole-{p}.ckpt"));
        let broken = dir.join(format!("broken-{p}.ckpt"));
        let straight = trained(&negative, 7, &whole);
        let first = trained(&negative, 4, &broken);
        let saved = Checkpoint::<Bernoulli, Bernoulli>::load(&broken).unwrap();
        assert_eq!((saved.epoch(), saved.machine()), (4, &*first));
        // The checkpoint supplies everything, the model included.
        let mut epochs = Vec::new();
        let (resumed, _) = resume::<Bernoulli, Bernoulli, _>(
            &broken,
            &data,
            None,
            &config(negative.clone(), 7, &broken),
            |m| epochs.push(m.epoch),
        )
        .unwrap();
        assert_eq!(epochs, [5, 6, 7], "{negative:?}");
        assert_eq!(resumed, *straight, "{negative:?}");
        // Chains, streams, velocities and example order agree too.
        let a = Checkpoint::<Bernoulli, Bernoulli>::load(&whole).unwrap();
        let b = Checkpoint::<Bernoulli, Bernoulli>::load(&broken).unwrap();
        assert_eq!(a, b, "{negative:?}");
    }
}

#[test]
fn bad_checkpoints_are_rejected() {
    let dir = TempDir::new("checkpoint-bad");
    let data = data();
    let path = dir.join("bad.ckpt");
    let negative = phases().remove(1);
    let mut rbm: Bb = Rbm::init(16, 9, 84).unwrap();
    train(
        &mut rbm,
        &data,
        None,
        &config(negative.clone(), 2, &path),
        |_| {},
    )
    .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let resume_from = |p: &Path, cfg: &TrainConfig, data: &DMatrix<f32>| {
        resume::<Bernoulli, Bernoulli, _>(p, data, None, cfg, |_| {}).unwrap_err()
    };
    let cfg = config(negative.clone(), 3, &path);

    let flipped = dir.join("flipped.ckpt");
    let mut damaged = bytes.clone();
    let last = damaged.len() - 10;
    damaged[last] ^= 0x40;
    std::fs::write(&flipped, &damaged).unwrap();
    let err = resume_from(&flipped, &cfg, &data);
    assert!(matches!(err, Error::Checksum { .. }), "{err}");

    let cut = dir.join("cut.ckpt");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = resume_from(&cut, &cfg, &data);
    assert!(matches!(err, Error::Format { .. }), "{err}");

    // A model file is not a checkpoint.
    let model = dir.join("model.safetensors");
    rbm.save(&model).unwrap();
    let err = resume_from(&model, &cfg, &data);
    assert!(err.to_string().contains("`kind`"), "{err}");

    // Other settings, or other data, than the run that wrote it.
    let other = TrainConfig {
        seed: 1,
        ..cfg.clone()
    };
    let err = resume_from(&path, &other, &data);
    assert!(err.to_string().contains("configuration"), "{err}");
    // The error names the setting that differs, with both values.
    assert!(err.to_string().contains("`seed` is 1, but"), "{err}");
    let fewer = data.columns(0, 60).into_owned();
    let err = resume_from(&path, &cfg, &fewer);
    assert!(matches!(err, Error::Shape { .. }), "{err}");
}

/// The checkpoint `bytes` as format version 1 wrote it: every set of random streams inline in
/// the JSON state (`{"s": [four words]}` per stream; one bare stream for the swap decisions of
/// tempering) instead of a u64 tensor. Returns the file and the number of sets moved.
fn as_version_1(bytes: &[u8]) -> (Vec<u8>, usize) {
    use safetensors::{Dtype, SafeTensors, tensor::TensorView};
    use serde_json::{Value, json};
    let file = SafeTensors::deserialize(bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let mut state: Value = serde_json::from_str(&meta["state"]).unwrap();
    fn inline(v: &mut Value, single: bool, file: &SafeTensors, moved: &mut usize) {
        let words = |name: &str| -> Vec<u64> {
            let t = file.tensor(name).unwrap();
            assert_eq!((t.dtype(), t.shape()[1]), (Dtype::U64, 4), "{name}");
            let w = t.data().chunks_exact(8);
            w.map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                .collect()
        };
        match v {
            Value::Object(o)
                if o.get("tensor")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with('s')) =>
            {
                let streams: Vec<Value> = words(o["tensor"].as_str().unwrap())
                    .chunks(4)
                    .map(|w| json!({ "s": w }))
                    .collect();
                *moved += 1;
                *v = if single {
                    streams[0].clone()
                } else {
                    Value::Array(streams)
                };
            }
            Value::Object(o) => o
                .iter_mut()
                .for_each(|(k, x)| inline(x, k == "swaps" || k == "rng", file, moved)),
            Value::Array(a) => a.iter_mut().for_each(|x| inline(x, false, file, moved)),
            _ => {}
        }
    }
    let mut moved = 0;
    inline(&mut state, false, &file, &mut moved);
    let mut names: Vec<&str> = file
        .names()
        .into_iter()
        .filter(|n| n.starts_with('m'))
        .collect();
    names.sort_unstable();
    let tensors: Vec<(&str, TensorView)> = names
        .iter()
        .map(|&n| (n, file.tensor(n).unwrap()))
        .collect();
    let mut crc = crc32fast::Hasher::new();
    tensors.iter().for_each(|(_, t)| crc.update(t.data()));
    meta.insert("crc32".into(), format!("{:08x}", crc.finalize()));
    meta.insert("format_version".into(), "1".into());
    meta.insert("state".into(), state.to_string());
    (safetensors::serialize(tensors, Some(meta)).unwrap(), moved)
}

#[test]
fn checkpoints_store_random_streams_as_u64_tensors_and_version_1_files_still_resume() {
    let dir = TempDir::new("checkpoint-v1");
    let data = data();
    for (p, negative) in phases().into_iter().enumerate() {
        let path = dir.join(format!("run-{p}.ckpt"));
        trained(&negative, 2, &path);
        let bytes = std::fs::read(&path).unwrap();
        let (old, moved) = as_version_1(&bytes);
        // CD and PCD: the chains' streams; fast PCD the same; tempering every rung's and the swaps'.
        let sets = if matches!(negative, NegativePhase::Tempering { .. }) {
            4
        } else {
            1
        };
        assert_eq!(moved, sets, "{negative:?}");
        let old_path = dir.join(format!("run-{p}-v1.ckpt"));
        std::fs::write(&old_path, old).unwrap();
        let resumed = |from: &Path| {
            resume::<Bernoulli, Bernoulli, _>(
                from,
                &data,
                None,
                &config(negative.clone(), 3, from),
                |_| {},
            )
            .unwrap()
            .0
        };
        assert_eq!(resumed(&old_path), resumed(&path), "{negative:?}");
    }
}
