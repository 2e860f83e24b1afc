//! Greedy pretraining and joint training of DBMs on bars-and-stripes, against exact
//! enumeration.

mod common;

use boltzmann::data::bars_and_stripes;
use boltzmann::partition::{log_partition_exact, log_unnormalised_exact};
use boltzmann::train::{
    Centering, Checkpoint, Checkpointing, InputScale, LearningRate, Momentum, NegativePhase,
    Sparsity, Steps, TrainConfig, pretrain, pretraining_scale, resume, train,
};
use boltzmann::{Bernoulli, Dbm, Layer};
use nalgebra::DMatrix;

fn rbm_config(seed: u64) -> TrainConfig {
    TrainConfig {
        epochs: 100,
        batch_size: 14,
        learning_rate: LearningRate::Constant(0.05),
        negative: NegativePhase::Cd {
            k: Steps::Constant(1),
        },
        momentum: Momentum {
            initial: 0.5,
            later: 0.5,
            switch_epoch: 1,
        },
        seed,
        ..TrainConfig::default()
    }
}

fn data() -> DMatrix<f32> {
    let patterns = bars_and_stripes(3).unwrap();
    DMatrix::from_fn(9, 140, |i, c| patterns[(i, c % 14)])
}

#[test]
fn pretraining_doubles_the_right_inputs_and_composes() {
    assert_eq!(pretraining_scale(1, 1), InputScale::ONE);
    assert_eq!(pretraining_scale(1, 2), InputScale { up: 2.0, down: 1.0 });
    assert_eq!(pretraining_scale(2, 2), InputScale { up: 1.0, down: 2.0 });
    assert_eq!(pretraining_scale(2, 3), InputScale { up: 2.0, down: 2.0 });

    let p = pretrain::<Bernoulli>(&data(), &[8, 4], &[rbm_config(1), rbm_config(2)], |_, _| {})
        .unwrap();
    // The DBM takes the RBMs' weights as they are (the doubling during pretraining stands for
    // the second neighbour each hidden layer has in the DBM), the visible biases of the first
    // RBM and the hidden biases of each RBM.
    assert_eq!(p.dbm.weights(1).unwrap(), p.first.weights());
    assert_eq!(p.dbm.weights(2).unwrap(), p.upper[0].weights());
    assert_eq!(p.dbm.visible().bias(), p.first.visible().bias());
    assert_eq!(p.dbm.hidden(1).unwrap().bias(), p.first.hidden().bias());
    assert_eq!(p.dbm.hidden(2).unwrap().bias(), p.upper[0].hidden().bias());
    assert_eq!(p.dbm.layer_sizes(), vec![9, 8, 4]);
}

fn exact_log_likelihood(dbm: &Dbm<Bernoulli>, data: &DMatrix<f32>) -> f64 {
    log_unnormalised_exact(dbm, data).unwrap().mean() - log_partition_exact(dbm).unwrap()
}

#[test]
fn joint_training_raises_the_exact_log_likelihood() {
    assert_joint_training_learns(None, None);
}

#[test]
fn centered_joint_training_raises_the_exact_log_likelihood() {
    assert_joint_training_learns(Some(Centering { rate: 0.01 }), None);
}

/// Pretrains a 9-8-4 DBM on bars-and-stripes, trains it jointly for 150 epochs and checks
/// that the exact log-likelihood rises by more than half a nat.
fn assert_joint_training_learns(centering: Option<Centering>, negative: Option<NegativePhase>) {
    let patterns = bars_and_stripes(3).unwrap();
    let p = pretrain::<Bernoulli>(&data(), &[8, 4], &[rbm_config(1), rbm_config(2)], |_, _| {})
        .unwrap();
    let mut dbm = p.dbm;
    let pretrained = exact_log_likelihood(&dbm, &patterns);
    let config = TrainConfig {
        epochs: 150,
        batch_size: 14,
        learning_rate: LearningRate::Constant(0.02),
        momentum: Momentum {
            initial: 0.5,
            later: 0.5,
            switch_epoch: 1,
        },
        weight_decay: 0.0,
        seed: 4,
        monitor_examples: 14,
        centering,
        negative: negative.unwrap_or(TrainConfig::joint().negative),
        ..TrainConfig::joint()
    };
    let history = train(&mut dbm, &data(), None, &config, |_| {}).unwrap();
    let trained = exact_log_likelihood(&dbm, &patterns);
    let last = history.last().unwrap();
    eprintln!(
        "pretrained {pretrained}, trained {trained}, bound {:?}",
        last.train_lower_bound
    );
    // The monitor's exact log-likelihood is the same quantity (its monitor set is the first 14
    // examples: the 14 patterns).
    assert!((last.train_log_likelihood.unwrap() - trained).abs() < 1e-6);
    assert!(last.train_lower_bound.unwrap() <= trained + 1e-9);
    assert!(trained > pretrained + 0.5, "{pretrained} → {trained}");
}

#[test]
fn joint_training_with_parallel_tempering_raises_the_exact_log_likelihood() {
    let betas = boltzmann::tempering::geometric_ladder(5, 0.0).unwrap();
    let negative = NegativePhase::Tempering {
        k: Steps::Constant(1),
        chains: 100,
        betas,
    };
    assert_joint_training_learns(None, Some(negative));
}

#[test]
fn dbm_training_is_bit_identical_for_any_thread_count() {
    let config = TrainConfig {
        epochs: 2,
        batch_size: 70,
        negative: NegativePhase::Pcd {
            k: Steps::Constant(5),
            chains: 120,
        },
        seed: 5,
        ..TrainConfig::joint()
    };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut dbm: Dbm<Bernoulli> = Dbm::init(&[9, 60, 30], 6).unwrap();
            train(&mut dbm, &data(), None, &config, |_| {}).unwrap();
            dbm
        })
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn bad_dbm_training_settings_are_errors() {
    let mut dbm: Dbm<Bernoulli> = Dbm::init(&[9, 4, 3], 7).unwrap();
    for config in [
        TrainConfig {
            negative: NegativePhase::Pcd {
                k: Steps::Constant(5),
                chains: 0,
            },
            ..TrainConfig::joint()
        },
        TrainConfig {
            negative: NegativePhase::Pcd {
                k: Steps::Constant(0),
                chains: 100,
            },
            ..TrainConfig::joint()
        },
        TrainConfig {
            batch_size: 1000,
            ..TrainConfig::joint()
        },
        TrainConfig {
            learning_rate: LearningRate::Constant(-1.0),
            ..TrainConfig::joint()
        },
    ] {
        assert!(train(&mut dbm, &data(), None, &config, |_| {}).is_err());
    }
    assert!(pretrain::<Bernoulli>(&data(), &[4, 3], &[rbm_config(1)], |_, _| {}).is_err());
}

#[test]
fn a_sparsity_target_lowers_hidden_activity() {
    let activity = |sparsity: Option<boltzmann::train::Sparsity>| {
        let mut dbm: Dbm<Bernoulli> = Dbm::init(&[9, 8, 4], 8).unwrap();
        let config = TrainConfig {
            epochs: 30,
            batch_size: 14,
            learning_rate: LearningRate::Constant(0.05),
            sparsity,
            seed: 9,
            ..TrainConfig::joint()
        };
        train(&mut dbm, &data(), None, &config, |_| {}).unwrap();
        let mu = dbm.mean_field(&data(), &config.mean_field).unwrap();
        mu[0].mean()
    };
    let plain = activity(None);
    let sparse = activity(Some(boltzmann::train::Sparsity {
        target: 0.05,
        cost: 1.0,
        decay: 0.9,
    }));
    assert!(sparse < plain - 0.05, "mean h₁ activity {plain} → {sparse}");
}

#[test]
fn dbm_resume_is_bit_identical_and_checks_its_file() {
    let dir = common::TempDir::new("dbm-checkpoint");
    let config = |epochs: usize, name: &str| TrainConfig {
        epochs,
        batch_size: 70,
        negative: NegativePhase::Pcd {
            k: Steps::Constant(5),
            chains: 60,
        },
        // Momentum switches inside the resumed part.
        sparsity: Some(Sparsity {
            target: 0.2,
            cost: 0.1,
            decay: 0.9,
        }),
        centering: Some(Centering { rate: 0.05 }),
        seed: 8,
        checkpoint: Some(Checkpointing {
            path: dir.join(name),
            every: 1,
        }),
        ..TrainConfig::joint()
    };
    let mut straight: Dbm<Bernoulli> = Dbm::init(&[9, 12, 6], 9).unwrap();
    train(
        &mut straight,
        &data(),
        None,
        &config(7, "whole.ckpt"),
        |_| {},
    )
    .unwrap();
    let mut broken: Dbm<Bernoulli> = Dbm::init(&[9, 12, 6], 9).unwrap();
    train(
        &mut broken,
        &data(),
        None,
        &config(3, "broken.ckpt"),
        |_| {},
    )
    .unwrap();
    let saved = Checkpoint::<Bernoulli, Bernoulli>::load(dir.join("broken.ckpt")).unwrap();
    assert_eq!((saved.epoch(), saved.machine()), (3, &broken));
    let mut epochs = Vec::new();
    let (resumed, _) = resume::<Bernoulli, Bernoulli, _>(
        dir.join("broken.ckpt"),
        &data(),
        None,
        &config(7, "broken.ckpt"),
        |m| epochs.push(m.epoch),
    )
    .unwrap();
    assert_eq!(epochs, [4, 5, 6, 7]);
    assert_eq!(resumed, straight);
    let a = Checkpoint::<Bernoulli, Bernoulli>::load(dir.join("whole.ckpt")).unwrap();
    let b = Checkpoint::<Bernoulli, Bernoulli>::load(dir.join("broken.ckpt")).unwrap();
    assert_eq!(a, b);

    // A damaged file and other settings are rejected.
    let mut bytes = std::fs::read(dir.join("whole.ckpt")).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 1;
    std::fs::write(dir.join("damaged.ckpt"), &bytes).unwrap();
    let err = resume::<Bernoulli, Bernoulli, _>(
        dir.join("damaged.ckpt"),
        &data(),
        None,
        &config(8, "x"),
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, boltzmann::Error::Checksum { .. }), "{err}");
    let other = TrainConfig {
        seed: 1,
        ..config(8, "x")
    };
    let err =
        resume::<Bernoulli, Bernoulli, _>(dir.join("whole.ckpt"), &data(), None, &other, |_| {})
            .unwrap_err();
    assert!(err.to_string().contains("configuration"), "{err}");
}

#[test]
fn max_norm_bounds_every_hidden_units_weights() {
    let config = TrainConfig {
        epochs: 3,
        batch_size: 14,
        learning_rate: LearningRate::Constant(0.05),
        max_norm: Some(0.5),
        seed: 10,
        ..TrainConfig::joint()
    };
    let mut dbm: Dbm<Bernoulli> = Dbm::init(&[9, 12, 6], 11).unwrap();
    train(&mut dbm, &data(), None, &config, |_| {}).unwrap();
    for l in 1..=2 {
        let w = dbm.weights(l).unwrap();
        let longest = w.column_iter().map(|c| c.norm()).fold(0.0, f32::max);
        assert!(longest <= 0.5 * (1.0 + 1e-6), "W{l}: {longest}");
    }
    let bad = TrainConfig {
        max_norm: Some(0.0),
        ..config
    };
    assert!(train(&mut dbm, &data(), None, &bad, |_| {}).is_err());
}
