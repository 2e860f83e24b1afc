//! Trajectory AIS (`ln Z` followed along a sequence of models) against exact enumeration.

mod common;

use boltzmann::partition::{TrajectoryAis, TrajectorySettings, log_partition_exact};
use boltzmann::{Bernoulli, Dbm, Layer, Rbm};
use common::*;

/// A sequence of RBMs whose couplings grow from scale 0.1 to 1.5, each drawn afresh, so that
/// consecutive models differ as much as an early training epoch changes a model.
fn rbm_trajectory() -> Vec<Dbm<Bernoulli, Bernoulli>> {
    (0..8)
        .map(|t| random_rbm(8, 5, 0.1 + 0.2 * t as f32, 100 + t).into_machine())
        .collect()
}

/// `ln Ẑ − ln Z` at every model of `models` for each of `seeds` independent trajectories.
fn errors<V: Layer, H: Layer>(
    models: &[Dbm<V, H>],
    exact: impl Fn(&Dbm<V, H>) -> f64,
    settings: &TrajectorySettings,
    seeds: u64,
) -> Vec<Vec<f64>> {
    (0..seeds)
        .map(|seed| {
            let mut run = TrajectoryAis::start(&models[0], &models[0], settings, seed).unwrap();
            let mut errs = vec![run.log_z() - exact(&models[0])];
            for pair in models.windows(2) {
                let log_z = run.advance(&pair[0], &pair[1]).unwrap();
                errs.push(log_z - exact(&pair[1]));
            }
            errs
        })
        .collect()
}

/// At every model, the mean error over the independent trajectories lies within four standard
/// errors of zero, plus the bias of a log of an unbiased estimate (about half its variance);
/// and each trajectory's error is small in absolute terms.
fn assert_unbiased(errors: &[Vec<f64>], largest: f64) {
    let seeds = errors.len() as f64;
    for t in 0..errors[0].len() {
        let e: Vec<f64> = errors.iter().map(|run| run[t]).collect();
        let mean = e.iter().sum::<f64>() / seeds;
        let var = e.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (seeds - 1.0);
        let allowed = 4.0 * (var / seeds).sqrt() + var;
        assert!(
            mean.abs() <= allowed,
            "model {t}: mean error {mean:.4} beyond {allowed:.4} (errors {e:?})"
        );
        eprintln!("model {t}: mean {mean:+.4}, sd {:.4}", var.sqrt());
        assert!(
            e.iter().all(|x| x.abs() < largest),
            "model {t}: an error beyond {largest}: {e:?}"
        );
    }
}

#[test]
fn rbm_trajectory_follows_exact_log_partition() {
    let models = rbm_trajectory();
    let settings = TrajectorySettings {
        runs: 200,
        steps: 100,
        ..TrajectorySettings::default()
    };
    let errs = errors(&models, |m| log_partition_exact(m).unwrap(), &settings, 8);
    // The couplings grow to scale 1.5, where ln Z has risen by several nats: errors of a few
    // hundredths show the weights follow it.
    let rise = log_partition_exact(&models[7]).unwrap() - log_partition_exact(&models[0]).unwrap();
    assert!(
        rise.abs() > 2.0,
        "the test trajectory must move ln Z ({rise})"
    );
    assert_unbiased(&errs, 0.25);
}

#[test]
fn dbm_trajectory_follows_exact_log_partition() {
    let models: Vec<Dbm<Bernoulli>> = (0..8)
        .map(|t| random_dbm(0.1 + 0.2 * t as f32, 200 + t))
        .collect();
    let settings = TrajectorySettings {
        runs: 200,
        steps: 100,
        ..TrajectorySettings::default()
    };
    let errs = errors(&models, |m| log_partition_exact(m).unwrap(), &settings, 8);
    assert_unbiased(&errs, 0.25);
}

#[test]
fn trajectory_starts_exactly_at_an_uncoupled_model() {
    // Without couplings the start is the model itself: no annealing error at all.
    let rbm = random_rbm::<Bernoulli, Bernoulli>(8, 5, 1.0, 3);
    let (uncoupled, log_z) = rbm.uncoupled();
    let run =
        TrajectoryAis::start(&uncoupled, &uncoupled, &TrajectorySettings::default(), 0).unwrap();
    let exact = log_partition_exact(&uncoupled).unwrap();
    assert!((log_z - exact).abs() < 1e-9, "{log_z} vs {exact}");
    assert!(
        (run.log_z() - exact).abs() < 1e-9,
        "{} vs {exact}",
        run.log_z()
    );
    assert_eq!(run.effective_sample_size(), 100.0);
}

#[test]
fn same_seed_gives_the_same_bits_at_any_thread_count() {
    let models = rbm_trajectory();
    let settings = TrajectorySettings {
        runs: 300,
        steps: 5,
        ..TrajectorySettings::default()
    };
    let follow = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let mut run = TrajectoryAis::start(&models[0], &models[0], &settings, 9).unwrap();
                let mut out = vec![run.log_z().to_bits()];
                for pair in models.windows(2) {
                    out.push(run.advance(&pair[0], &pair[1]).unwrap().to_bits());
                }
                (out, run.resamplings())
            })
    };
    let one = follow(1);
    assert!(one.1 > 0, "the test should exercise resampling");
    assert_eq!(one, follow(3));
}

#[test]
fn bad_settings_and_mismatched_models_are_errors() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(8, 5, 0.5, 1);
    for (runs, steps, start_steps) in [(1, 10, 10), (100, 0, 10), (0, 1, 10), (100, 1, 0)] {
        let settings = TrajectorySettings {
            runs,
            steps,
            start_steps,
        };
        assert!(TrajectoryAis::start(&rbm, &rbm, &settings, 0).is_err());
    }
    let mut run = TrajectoryAis::start(&rbm, &rbm, &TrajectorySettings::default(), 0).unwrap();
    let other = random_rbm::<Bernoulli, Bernoulli>(8, 6, 0.5, 1);
    assert!(run.advance(&rbm, &other).is_err());
    assert!(run.advance(&other, &other).is_err());
}

#[test]
fn training_follows_log_likelihood_by_trajectory_ais() {
    use boltzmann::train::*;
    // PCD-1 on four patterns: the model sharpens quickly, ln Z moves by nats per epoch.
    let (_, data) = four_patterns(400);
    let runs: Vec<Vec<f64>> = (0..8)
        .map(|seed| {
            let mut rbm = Rbm::<Bernoulli, Bernoulli>::init(6, 4, seed).unwrap();
            let config = TrainConfig {
                epochs: 40,
                batch_size: 20,
                learning_rate: LearningRate::Constant(0.05),
                momentum: Momentum {
                    initial: 0.5,
                    later: 0.5,
                    switch_epoch: 1,
                },
                negative: NegativePhase::Pcd {
                    k: Steps::Constant(1),
                    chains: 20,
                },
                monitor_examples: 400,
                seed,
                trajectory: Some(TrajectorySettings {
                    runs: 200,
                    steps: 20,
                    ..TrajectorySettings::default()
                }),
                ..TrainConfig::default()
            };
            let history = train(&mut rbm, &data, None, &config, |_| {}).unwrap();
            let (first, last) = (&history[0], &history[history.len() - 1]);
            let rise = last.train_log_likelihood.unwrap() - first.train_log_likelihood.unwrap();
            assert!(
                rise > 0.5,
                "the model should have learned: {first:?} {last:?}"
            );
            history
                .iter()
                .map(|m| {
                    // Both average the same free energies; they differ by ln Z − ln Ẑ.
                    let estimate = m.trajectory.as_ref().unwrap().train_log_likelihood;
                    m.train_log_likelihood.unwrap() - estimate
                })
                .collect()
        })
        .collect();
    assert_unbiased(&runs, 0.25);
}
