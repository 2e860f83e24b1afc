//! Training: the CD-k gradient against the exact log-likelihood gradient, PCD on
//! bars-and-stripes against the exact log-likelihood, determinism across thread counts,
//! divergence handling and input validation.

mod common;

use boltzmann::data::bars_and_stripes;
use boltzmann::partition::log_likelihood_exact;
use boltzmann::train::{
    Centering, EpochMetrics, FastWeights, LearningRate, Momentum, NegativePhase, Sparsity, Steps,
    TrainConfig, train,
};
use boltzmann::{Bernoulli, Error, Layer, Rbm};
use common::*;
use nalgebra::{DMatrix, DVector};
use std::ops::ControlFlow;

#[test]
fn cd_with_many_steps_estimates_the_exact_gradient() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(6, 4, 0.5, 31);
    // Four patterns, each repeated: N examples, one minibatch, N chains.
    const N: usize = 40_000;
    let (pat, data) = four_patterns(N);

    // Exact gradient of the mean log-likelihood: ⟨v E[h|v]ᵀ⟩_data − Σ_v p(v) v E[h|v]ᵀ.
    let vs = states(rbm.visible());
    let p = brute_visible_distribution(&rbm);
    let hm_states = rbm.hidden_mean(&vs).unwrap().map(f64::from);
    let vs64 = vs.map(f64::from);
    let weighted = DMatrix::from_fn(6, vs.ncols(), |i, c| vs64[(i, c)] * p[c]);
    let model_w = &weighted * hm_states.transpose();
    let model_bv = vs64 * DVector::from_vec(p.clone());
    let model_bh = &hm_states * DVector::from_vec(p);
    let hm_data = rbm.hidden_mean(&pat).unwrap().map(f64::from);
    let pat64 = pat.map(f64::from);
    let exact_w = &pat64 * hm_data.transpose() / 4.0 - model_w;
    let exact_bv = pat64.column_mean() - model_bv;
    let exact_bh = hm_data.column_mean() - model_bh;

    let mut trained = rbm.clone();
    train(&mut trained, &data, None, &one_step(100, N), |_| {}).unwrap();
    let est_w = (trained.weights() - rbm.weights()).map(f64::from);
    let est_bv = (trained.visible().bias() - rbm.visible().bias()).map(f64::from);
    let est_bh = (trained.hidden().bias() - rbm.hidden().bias()).map(f64::from);

    // Each model statistic is a mean of N terms in [0, 1] (std ≤ 0.5/√N); the data statistics
    // are exact. 4.5 standard errors bound all 34 entries with probability > 0.9998.
    let tol = 4.5 * 0.5 / (N as f64).sqrt();
    let max_err = |a: &DMatrix<f64>, b: &DMatrix<f64>| (a - b).abs().max();
    assert!(
        max_err(&est_w, &exact_w) < tol,
        "W: {} ≥ {tol}",
        max_err(&est_w, &exact_w)
    );
    let (ev, eh) = (
        (&est_bv - &exact_bv).abs().max(),
        (&est_bh - &exact_bh).abs().max(),
    );
    assert!(ev < tol && eh < tol, "biases: {ev}, {eh} vs {tol}");
    // The gradient is not trivially small: the test can tell a wrong sign or a missing term.
    assert!(exact_w.abs().max() > 20.0 * tol);
}

/// Trains a 9-12 RBM for 300 epochs on the 14 bars-and-stripes patterns with the given negative
/// phase and checks that the exact log-likelihood rises by more than 2 nats.
fn assert_learns_bars_and_stripes(
    negative: NegativePhase,
    centering: Option<Centering>,
) -> Vec<EpochMetrics> {
    let patterns = bars_and_stripes(3).unwrap();
    assert_eq!(patterns.ncols(), 14);
    let data = DMatrix::from_fn(9, 140, |i, c| patterns[(i, c % 14)]);
    let mut rbm: Rbm<Bernoulli, Bernoulli> = Rbm::init(9, 12, 41).unwrap();
    rbm.set_visible_bias_from_data(&data).unwrap();
    let before = log_likelihood_exact(&rbm, &patterns).unwrap().mean;
    let config = TrainConfig {
        epochs: 300,
        batch_size: 14,
        learning_rate: LearningRate::Constant(0.05),
        negative,
        centering,
        // Persistent chains lag behind fast-moving parameters: high momentum makes them
        // oscillate on this multimodal set, so momentum stays at 0.5.
        momentum: Momentum {
            initial: 0.5,
            later: 0.5,
            switch_epoch: 1,
        },
        weight_decay: 0.0,
        seed: 42,
        ..TrainConfig::default()
    };
    let mut monitored = Vec::new();
    let history = train(&mut rbm, &data, Some(&patterns), &config, |m| {
        monitored.push(m.train_log_likelihood.unwrap());
    })
    .unwrap();
    let after = log_likelihood_exact(&rbm, &patterns).unwrap().mean;
    // The monitor reports the same exact log-likelihood.
    assert!((monitored.last().unwrap() - after).abs() < 1e-9);
    assert_eq!(history.len(), 300);
    // Uniform over the 14 patterns would be ln(1/14) = −2.64; the start is near −9·ln 2 ≈ −6.
    assert!(before < -5.0, "start {before}");
    assert!(after > before + 2.0, "log-likelihood {before} → {after}");
    history
}

#[test]
fn pcd_on_bars_and_stripes_raises_the_exact_log_likelihood() {
    let history = assert_learns_bars_and_stripes(
        NegativePhase::Pcd {
            k: Steps::Constant(1),
            chains: 100,
        },
        None,
    );
    assert!(history.iter().all(|m| m.swap_rates.is_none()));
}

#[test]
fn fast_pcd_on_bars_and_stripes_raises_the_exact_log_likelihood() {
    assert_learns_bars_and_stripes(
        NegativePhase::FastPcd {
            k: Steps::Constant(1),
            chains: 100,
            fast: FastWeights {
                learning_rate: 0.05,
                decay: 0.95,
            },
        },
        None,
    );
}

#[test]
fn centered_pcd_on_bars_and_stripes_raises_the_exact_log_likelihood() {
    assert_learns_bars_and_stripes(
        NegativePhase::Pcd {
            k: Steps::Constant(1),
            chains: 100,
        },
        Some(Centering { rate: 0.01 }),
    );
}

#[test]
fn tempering_on_bars_and_stripes_raises_the_exact_log_likelihood() {
    let history = assert_learns_bars_and_stripes(
        NegativePhase::Tempering {
            k: Steps::Constant(1),
            chains: 100,
            betas: vec![1.0, 0.8, 0.6, 0.4, 0.2, 0.0],
        },
        None,
    );
    for m in &history {
        let rates = m.swap_rates.as_ref().expect("tempering reports swap rates");
        assert_eq!(rates.len(), 5);
        assert!(rates.iter().all(|r| (0.0..=1.0).contains(r)), "{rates:?}");
    }
}

#[test]
fn fast_pcd_without_fast_learning_is_pcd() {
    let data = DMatrix::from_vec(12, 60, normal(12 * 60, 1.0, 71)).map(|x| f32::from(x > 0.3));
    let run = |negative: NegativePhase| {
        let config = TrainConfig {
            epochs: 3,
            batch_size: 20,
            negative,
            seed: 72,
            ..TrainConfig::default()
        };
        let mut rbm: Rbm<Bernoulli, Bernoulli> = Rbm::init(12, 7, 73).unwrap();
        train(&mut rbm, &data, None, &config, |_| {}).unwrap();
        rbm
    };
    let k = Steps::Constant(2);
    let pcd = run(NegativePhase::Pcd {
        k: k.clone(),
        chains: 30,
    });
    let fast = |learning_rate| {
        run(NegativePhase::FastPcd {
            k: k.clone(),
            chains: 30,
            fast: FastWeights {
                learning_rate,
                decay: 0.95,
            },
        })
    };
    assert_eq!(pcd, fast(0.0));
    assert_ne!(pcd, fast(0.01));
}

#[test]
fn a_monitor_that_breaks_stops_training_after_that_epoch() {
    let data = DMatrix::from_vec(12, 60, normal(12 * 60, 1.0, 74)).map(|x| f32::from(x > 0.3));
    let run = |epochs: usize, stop_after: usize| {
        let config = TrainConfig {
            epochs,
            batch_size: 20,
            seed: 75,
            momentum: Momentum {
                initial: 0.5,
                later: 0.9,
                switch_epoch: 2,
            },
            ..TrainConfig::default()
        };
        let mut rbm: Rbm<Bernoulli, Bernoulli> = Rbm::init(12, 7, 76).unwrap();
        let history = train(&mut rbm, &data, None, &config, |m| {
            if m.epoch == stop_after {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        (rbm, history.len())
    };
    // Stopped at epoch 3 of 10, the model is the one of a 3-epoch run, bit for bit.
    let (stopped, epochs) = run(10, 3);
    assert_eq!(epochs, 3);
    assert_eq!(stopped, run(3, 0).0);
    assert_eq!(run(4, 0).1, 4);
}

#[test]
fn training_is_bit_identical_for_any_thread_count() {
    let data = DMatrix::from_vec(40, 330, normal(40 * 330, 1.0, 51))
        .map(|x| (x * 0.3 + 0.4).clamp(0.0, 1.0));
    let config = TrainConfig {
        epochs: 3,
        batch_size: 110,
        negative: NegativePhase::Pcd {
            k: Steps::Constant(2),
            chains: 120,
        },
        binarize: true,
        sparsity: Some(Sparsity {
            target: 0.1,
            cost: 0.1,
            decay: 0.9,
        }),
        seed: 52,
        ..TrainConfig::default()
    };
    let run = |threads: usize, config: &TrainConfig, data: &DMatrix<f32>| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut rbm: Rbm<Bernoulli, Bernoulli> = Rbm::init(40, 70, 53).unwrap();
            train(&mut rbm, data, None, config, |_| {}).unwrap();
            rbm
        })
    };
    let one = run(1, &config, &data);
    assert_eq!(one, run(2, &config, &data));
    let cd = TrainConfig {
        negative: NegativePhase::Cd {
            k: Steps::Linear {
                from: 1,
                to: 3,
                epochs: 3,
            },
        },
        ..config
    };
    assert_eq!(run(1, &cd, &data), run(2, &cd, &data));
    // Sparse data (about 10 % of pixels on): the gradient correlations take the sparse path.
    let sparse = data.map(|x| x * 0.25);
    assert_eq!(run(1, &cd, &sparse), run(2, &cd, &sparse));
}

#[test]
fn divergence_stops_with_an_error_and_keeps_a_finite_model() {
    let data = bars_and_stripes(3).unwrap();
    let mut rbm: Rbm<Bernoulli, Bernoulli> = Rbm::init(9, 5, 61).unwrap();
    let config = TrainConfig {
        batch_size: 14,
        learning_rate: LearningRate::Constant(1e38),
        ..TrainConfig::default()
    };
    let mut finished = 0;
    let err = train(&mut rbm, &data, None, &config, |m| finished = m.epoch).unwrap_err();
    let Error::Diverged { epoch, .. } = err else {
        panic!("expected divergence, got {err}")
    };
    assert_eq!(
        epoch,
        finished + 1,
        "the error names the epoch that diverged"
    );
    assert!(err.to_string().contains(&format!("epoch {epoch}")));
    // The model is left as after the last good epoch: finite, so it can be saved.
    rbm.check().unwrap();
}

#[test]
fn bad_settings_and_data_are_typed_errors() {
    let data = bars_and_stripes(3).unwrap();
    let rbm: Rbm<Bernoulli, Bernoulli> = Rbm::init(9, 5, 71).unwrap();
    let base = TrainConfig {
        batch_size: 7,
        ..TrainConfig::default()
    };
    let fails = |config: TrainConfig, data: &DMatrix<f32>| {
        let mut trained = rbm.clone();
        let err = train(&mut trained, data, None, &config, |_| {}).unwrap_err();
        assert_eq!(trained, rbm, "no work was done before the error");
        err
    };
    let invalid = |config: TrainConfig| matches!(fails(config, &data), Error::Invalid { .. });
    assert!(invalid(TrainConfig {
        negative: NegativePhase::Cd {
            k: Steps::Constant(0)
        },
        ..base.clone()
    }));
    assert!(invalid(TrainConfig {
        negative: NegativePhase::Pcd {
            k: Steps::Linear {
                from: 0,
                to: 5,
                epochs: 3
            },
            chains: 10
        },
        ..base.clone()
    }));
    assert!(invalid(TrainConfig {
        negative: NegativePhase::Pcd {
            k: Steps::Constant(1),
            chains: 0
        },
        ..base.clone()
    }));
    for lr in [0.0, -0.1, f32::NAN, f32::INFINITY] {
        assert!(invalid(TrainConfig {
            learning_rate: LearningRate::Constant(lr),
            ..base.clone()
        }));
    }
    assert!(invalid(TrainConfig {
        epochs: 0,
        ..base.clone()
    }));
    assert!(invalid(TrainConfig {
        batch_size: 0,
        ..base.clone()
    }));
    assert!(invalid(TrainConfig {
        batch_size: 15,
        ..base.clone()
    }));
    assert!(invalid(TrainConfig {
        weight_decay: -1.0,
        ..base.clone()
    }));
    assert!(invalid(TrainConfig {
        momentum: Momentum {
            initial: 1.0,
            later: 0.9,
            switch_epoch: 6
        },
        ..base.clone()
    }));
    assert!(matches!(
        fails(base.clone(), &DMatrix::zeros(9, 0)),
        Error::Empty { .. }
    ));
    assert!(matches!(
        fails(base.clone(), &DMatrix::zeros(8, 14)),
        Error::Shape { .. }
    ));
    let mut nan = data.clone();
    nan[(3, 4)] = f32::NAN;
    assert!(matches!(fails(base.clone(), &nan), Error::NonFinite { .. }));
    let grey = DMatrix::from_element(9, 14, 1.5f32);
    assert!(matches!(
        fails(
            TrainConfig {
                binarize: true,
                ..base.clone()
            },
            &grey
        ),
        Error::Invalid { .. }
    ));
}

/// Each learning-rate schedule gives its formula's rate, and bad parameters are refused.
#[test]
fn learning_rate_schedules_follow_their_formulas() {
    use boltzmann::train::LearningRate;
    let linear = LearningRate::Linear {
        initial: 0.1,
        epochs: 4,
    };
    let rates: Vec<f32> = (1..=6).map(|e| linear.at(e)).collect();
    assert_eq!(rates, vec![0.1, 0.075, 0.05, 0.025, 0.025, 0.025]);
    let inverse = LearningRate::InverseTime {
        initial: 0.1,
        half_life: 2.0,
    };
    assert_eq!(inverse.at(3), 0.05);
    let geometric = LearningRate::Geometric {
        initial: 0.1,
        factor: 0.5,
        floor: 0.02,
    };
    assert_eq!(
        [geometric.at(1), geometric.at(2), geometric.at(4)],
        [0.1, 0.05, 0.02]
    );
    for bad in [
        LearningRate::Linear {
            initial: 0.1,
            epochs: 0,
        },
        LearningRate::Linear {
            initial: f32::NAN,
            epochs: 3,
        },
    ] {
        let config = TrainConfig {
            learning_rate: bad,
            ..TrainConfig::default()
        };
        assert!(config.validate().is_err());
    }
}

#[test]
fn max_norm_bounds_every_hidden_units_weights() {
    let (_, data) = four_patterns(200);
    let mut rbm = Rbm::<Bernoulli, Bernoulli>::init(6, 4, 0).unwrap();
    let config = TrainConfig {
        epochs: 3,
        batch_size: 20,
        learning_rate: LearningRate::Constant(0.5),
        max_norm: Some(0.3),
        ..TrainConfig::default()
    };
    train(&mut rbm, &data, None, &config, |_| ()).unwrap();
    let norms: Vec<f32> = rbm.weights().column_iter().map(|c| c.norm()).collect();
    assert!(norms.iter().all(|&n| n <= 0.3 * (1.0 + 1e-5)), "{norms:?}");
    // Without the constraint this rate takes the columns well past it.
    let mut free = Rbm::<Bernoulli, Bernoulli>::init(6, 4, 0).unwrap();
    let unconstrained = TrainConfig {
        max_norm: None,
        ..config.clone()
    };
    train(&mut free, &data, None, &unconstrained, |_| ()).unwrap();
    let free_norms: Vec<f32> = free.weights().column_iter().map(|c| c.norm()).collect();
    assert!(free_norms.iter().any(|&n| n > 0.5), "{free_norms:?}");
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let config = TrainConfig {
            max_norm: Some(bad),
            ..TrainConfig::default()
        };
        assert!(config.validate().is_err());
    }
}

#[test]
fn no_monitor_examples_is_an_error_not_a_silent_one() {
    let config = TrainConfig {
        monitor_examples: 0,
        ..TrainConfig::default()
    };
    assert!(config.validate().is_err());
}
