//! Reproduces Salakhutdinov & Murray (2008): their RBM "CD25(500)" on their binarised MNIST,
//! AIS with the paper's settings (100 runs, 14,501 β, base-rate start with pseudo-count 3000)
//! gives ln Ẑ = 451.28 and an average test log-probability of −86.34 nats (train −83.10).
//!
//! The published files are read from the directory in `BOLTZMANN_REFERENCE` (`.ci/run` sets it
//! to `../shared/reference`); they are not part of the repository.

use boltzmann::data::load_npz_examples;
use boltzmann::partition::{AisConfig, EvaluationConfig, Start, evaluate};
use boltzmann::{Bernoulli, Rbm};
use std::path::PathBuf;

fn reference_dir() -> Option<PathBuf> {
    match std::env::var_os("BOLTZMANN_REFERENCE") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            eprintln!(
                "SKIPPED: BOLTZMANN_REFERENCE is not set, so the published CD25(500) weights and \
                 binarised MNIST (sm2008_*.npz) cannot be found; set it to their directory"
            );
            None
        }
    }
}

#[test]
fn ais_reproduces_salakhutdinov_murray_2008() {
    let Some(dir) = reference_dir() else { return };
    let rbm: Rbm<Bernoulli, Bernoulli> =
        Rbm::load_npz(dir.join("sm2008_rbm_cd25_500.npz")).unwrap();
    assert_eq!((rbm.num_visible(), rbm.num_hidden()), (784, 500));
    let data = dir.join("sm2008_binarized_mnist.npz");
    let train = load_npz_examples(&data, "train").unwrap();
    let test = load_npz_examples(&data, "test").unwrap();
    assert_eq!((train.ncols(), test.ncols()), (60_000, 10_000));

    // p_i = (Σ_n x_ni + 3000) / (60000 + 3000), as in the authors' code.
    let start = Start::base_rate(&rbm, &train, 3000.0).unwrap();
    let config = EvaluationConfig {
        ais: AisConfig {
            seed: 2008,
            ..AisConfig::default()
        },
        ..EvaluationConfig::default()
    };
    assert_eq!((config.ais.runs, config.ais.betas.len()), (100, 14_501));
    let started = std::time::Instant::now();
    let result = evaluate(&rbm, &start, &config, &train, &test, |_, _, _| {}).unwrap();
    eprintln!(
        "ln Ẑ = {:.6} [{:.3}, {:.3}] (published 451.28); test {:.3} ± {:.3} (published −86.34); \
         train {:.3} (published −83.10); {:.1} s",
        result.forward.log_z,
        result.forward.log_z_lower,
        result.forward.log_z_upper,
        result.test.mean,
        result.test.stderr,
        result.train.mean,
        started.elapsed().as_secs_f64()
    );
    assert!((result.forward.log_z - 451.28).abs() <= 0.3);
    assert!((result.test.mean - -86.34).abs() <= 0.3);
    assert!((result.train.mean - -83.10).abs() <= 0.3);
}
