//! AIS and reverse AIS against exact ln Z on enumerable models.

mod common;

use boltzmann::data::{Mnist, binarize_stochastic};
use boltzmann::partition::{
    AisConfig, AisEstimate, AisShard, Betas, Start, ais, ais_shard, exact_samples,
    log_partition_exact, reverse_ais, reverse_ais_shard,
};
use boltzmann::train::{TrainConfig, train};
use boltzmann::{Bernoulli, Gaussian, Layer, Rbm};
use common::*;
use nalgebra::{DMatrix, DVector};

fn run(
    rbm: &Rbm<Bernoulli, Bernoulli>,
    start: &Start<Bernoulli, Bernoulli>,
    betas: usize,
    runs: usize,
    seed: u64,
) -> AisEstimate {
    let config = AisConfig {
        runs,
        betas: Betas::three_stage(betas).unwrap(),
        seed,
    };
    ais(rbm, start, &config, |_, _| {}).unwrap()
}

#[test]
fn the_paper_schedule_has_14501_distributions() {
    let b = Betas::paper();
    assert_eq!(b.len(), 14_501);
    assert_eq!(b.as_slice()[500], 0.5);
    assert_eq!(b.as_slice()[4_500], 0.9);
    assert_eq!(*b.as_slice().last().unwrap(), 1.0);
    assert!(b.as_slice().windows(2).all(|w| w[0] < w[1]));
    assert_eq!(Betas::three_stage(14_501).unwrap(), b);
    for n in [2, 3, 4, 10, 1000] {
        let b = Betas::three_stage(n).unwrap();
        assert_eq!(b.len(), n);
        assert_eq!((b.as_slice()[0], b.as_slice()[n - 1]), (0.0, 1.0));
    }
    assert!(Betas::three_stage(1).is_err());
    assert!(Betas::new(vec![0.0, 0.7, 0.5, 1.0]).is_err());
    assert!(Betas::new(vec![0.1, 1.0]).is_err());
}

#[test]
fn start_log_partition_is_exact() {
    let data = DMatrix::from_vec(6, 40, normal(240, 1.0, 1)).map(|x| f32::from(x > 0.3));
    let rbm: Rbm<Bernoulli, Bernoulli> = Rbm::init(6, 4, 0).unwrap();
    let start = Start::base_rate(&rbm, &data, 2.0).unwrap();
    // The base rates are (Σx + α) / (N + α).
    for i in 0..6 {
        let p = (data.row(i).sum() as f64 + 2.0) / 42.0;
        let sigma = 1.0 / (1.0 + (-f64::from(start.visible().bias()[i])).exp());
        assert!((sigma - p).abs() < 1e-6);
    }
    // The start model is an RBM with W = 0 and zero hidden biases: enumerate it.
    let rbm: Rbm<Bernoulli, Bernoulli> = Rbm::new(
        start.visible().clone(),
        Bernoulli::new(DVector::zeros(4)),
        DMatrix::zeros(6, 4),
    )
    .unwrap();
    let exact = log_partition_exact(&rbm).unwrap();
    assert!((start.log_partition() - exact).abs() < 1e-9);
}

#[test]
fn two_distributions_are_simple_importance_sampling() {
    // With β ∈ {0, 1}, each log weight is ln p*₁(v) − ln p*₀(v) = −F(v) + F₀(v) at a sample v of
    // the start model, and mean(w) estimates Z / Z₀ without bias.
    let rbm = random_rbm::<Bernoulli, Bernoulli>(4, 3, 0.5, 3);
    let start = Start::from_bias(&rbm, DVector::from_vec(vec![0.2, -0.1, 0.4, 0.0])).unwrap();
    let base: Rbm<Bernoulli, Bernoulli> = Rbm::new(
        start.visible().clone(),
        Bernoulli::new(DVector::zeros(3)),
        DMatrix::zeros(4, 3),
    )
    .unwrap();
    let vs = states(rbm.visible());
    let possible: Vec<f64> = (rbm.free_energy(&vs).unwrap() - base.free_energy(&vs).unwrap())
        .iter()
        .map(|d| -d)
        .collect();
    let config = AisConfig {
        runs: 40_000,
        betas: Betas::new(vec![0.0, 1.0]).unwrap(),
        seed: 4,
    };
    let est = ais(&rbm, &start, &config, |_, _| {}).unwrap();
    // The step weights are computed in f32 (relative error < 1e-6 of each term).
    for w in &est.log_weights {
        assert!(
            possible.iter().any(|p| (p - w).abs() < 1e-5),
            "log weight {w} not in {possible:?}"
        );
    }
    let exact = log_partition_exact(&rbm).unwrap();
    assert!(
        est.log_z_lower <= exact && exact <= est.log_z_upper,
        "{exact} vs {est:?}"
    );
    assert!((est.log_z - exact).abs() < 0.02);
}

/// A 784 × 15 RBM trained for one epoch of CD-1 on 6,000 MNIST digits: realistic weights, and
/// an exact ln Z by enumerating 2¹⁵ hidden states.
fn mnist_model() -> (Rbm<Bernoulli, Bernoulli>, DMatrix<f32>) {
    let mnist = Mnist::load(Mnist::shipped_dir()).unwrap();
    let data = binarize_stochastic(&mnist.train_images.columns(0, 6000).into_owned(), 1).unwrap();
    let mut rbm: Rbm<Bernoulli, Bernoulli> = Rbm::init(784, 15, 2).unwrap();
    let config = TrainConfig {
        epochs: 1,
        learning_rate: boltzmann::train::LearningRate::Constant(0.1),
        monitor_examples: 100,
        ..TrainConfig::default()
    };
    train(&mut rbm, &data, None, &config, |_| {}).unwrap();
    (rbm, data)
}

#[test]
fn ais_matches_exact_log_z_on_a_trained_mnist_model() {
    let (rbm, data) = mnist_model();
    let exact = log_partition_exact(&rbm).unwrap();
    let start = Start::base_rate_default(&rbm, &data).unwrap();
    // For each schedule and seed, exact ln Z lies within the estimate's own ±3 s.e. bounds, and
    // the error stays under a tolerance that shrinks as the schedule gets finer (the errors seen
    // were at most 0.52 with 300 β and 0.12 with 3000 β).
    for (betas, tolerance) in [(300, 1.0), (3000, 0.25)] {
        for seed in 0..4 {
            let est = run(&rbm, &start, betas, 100, seed);
            assert!(
                est.log_z_lower <= exact && exact <= est.log_z_upper,
                "{betas} β, seed {seed}: exact {exact} outside {est:?}"
            );
            let error = (est.log_z - exact).abs();
            assert!(error < tolerance, "{betas} β, seed {seed}: error {error}");
            assert!(est.effective_sample_size >= 1.0 && est.effective_sample_size <= 100.0);
        }
    }
}

#[test]
fn forward_ais_underestimates_and_reverse_ais_overestimates() {
    // Each run alone is an estimate ln Z₀ ± ln wᵢ whose expectation lies below ln Z (forward) or
    // above it (reverse from exact samples), by Jensen's inequality. With a coarse schedule the
    // gap is several nats, far beyond three standard errors of the mean over 200 runs, so the
    // direction is checked without luck. With a fine schedule, the full estimates sandwich the
    // exact ln Z up to their noise and lie close to it.
    for seed in 0..3 {
        let rbm = random_rbm::<Bernoulli, Bernoulli>(20, 10, 1.5, 100 + seed);
        let exact = log_partition_exact(&rbm).unwrap();
        let start = Start::uniform(&rbm);
        let samples = exact_samples(&rbm, 200, seed).unwrap();
        for betas in [100, 3000] {
            let config = AisConfig {
                runs: 200,
                betas: Betas::three_stage(betas).unwrap(),
                seed,
            };
            let fwd = ais(&rbm, &start, &config, |_, _| {}).unwrap();
            let rev = reverse_ais(&rbm, &start, &samples, &config, |_, _| {}).unwrap();
            let context = format!("seed {seed}, {betas} β");
            assert_ais_sandwich(&fwd, &rev, exact, betas == 100, &context);
        }
    }
}

#[test]
fn exact_samples_follow_the_enumerated_distribution() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(5, 3, 1.0, 9);
    let exact = brute_visible_distribution(&rbm);
    let samples = exact_samples(&rbm, 100_000, 10).unwrap().remove(0);
    let mut counts = vec![0u64; 32];
    for col in samples.column_iter() {
        counts[binary_index(col.as_slice())] += 1;
    }
    // χ²₀.₉₉₉ with 31 degrees of freedom.
    let chi2 = chi_square(&counts, &exact);
    assert!(chi2 < 61.10, "χ² = {chi2}");
}

/// Forward AIS with `betas` distributions and 200 runs lands within its own ±3 s.e. bounds of
/// the exact ln Z, and within `tolerance` of it.
fn assert_ais_matches_exact<V: Layer, H: Layer>(
    rbm: &Rbm<V, H>,
    start: &Start<V, H>,
    betas: usize,
    seed: u64,
    tolerance: f64,
) {
    let exact = log_partition_exact(rbm).unwrap();
    let config = AisConfig {
        runs: 200,
        betas: Betas::three_stage(betas).unwrap(),
        seed,
    };
    let est = ais(rbm, start, &config, |_, _| {}).unwrap();
    let msg = format!(
        "seed {seed}: exact {exact}, AIS {} [{}, {}]",
        est.log_z, est.log_z_lower, est.log_z_upper
    );
    assert!(
        est.log_z_lower <= exact && exact <= est.log_z_upper,
        "{msg}"
    );
    assert!((est.log_z - exact).abs() < tolerance, "{msg}");
}

#[test]
fn ais_on_a_gaussian_visible_model() {
    // Gaussian visible units, enumerable hidden units; the start is N(b_V, 1) per unit.
    for seed in 0..3 {
        let rbm = random_rbm::<Gaussian, Bernoulli>(10, 8, 0.4, 7 + seed);
        let start = Start::from_bias(&rbm, rbm.visible().bias().clone()).unwrap();
        assert_ais_matches_exact(&rbm, &start, 2000, seed, 0.05);
    }
}

#[test]
fn ais_with_softmax_hidden_units() {
    // Softmax hidden units take the layer trait's generic tempered cumulant.
    let rbm = random_rbm::<Bernoulli, boltzmann::Softmax>(8, 5, 1.0, 12);
    assert_ais_matches_exact(&rbm, &Start::uniform(&rbm), 2000, 13, 0.05);
}

#[test]
fn ais_is_bit_identical_for_any_thread_count() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(30, 12, 0.5, 14);
    let config = AisConfig {
        runs: 130,
        betas: Betas::three_stage(200).unwrap(),
        seed: 15,
    };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| ais(&rbm, &Start::uniform(&rbm), &config, |_, _| {}).unwrap())
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

#[test]
fn ais_shards_merge_into_the_bits_of_one_run() {
    // 230 runs are blocks 0..5 (the last of 30 runs). Shards computed apart and merged in any
    // order give the estimate of one process annealing every run, forward and reverse.
    let rbm = random_rbm::<Bernoulli, Bernoulli>(12, 6, 1.0, 16);
    let start = Start::uniform(&rbm);
    let config = AisConfig {
        runs: 230,
        betas: Betas::three_stage(300).unwrap(),
        seed: 17,
    };
    let whole = ais(&rbm, &start, &config, |_, _| {}).unwrap();
    let shard = |blocks| ais_shard(&rbm, &start, &config, blocks, |_, _| {}).unwrap();
    let (a, b, c) = (shard(3..5), shard(0..1), shard(1..3));
    assert_eq!(c.log_weights.len(), 100);
    assert_eq!(a.log_weights.len(), 80);
    assert_eq!(
        AisShard::merge(&[a.clone(), b.clone(), c.clone()]).unwrap(),
        whole
    );
    // Missing, repeated or foreign blocks are refused.
    assert!(AisShard::merge(&[a.clone(), b.clone()]).is_err());
    assert!(AisShard::merge(&[a.clone(), b.clone(), c.clone(), b.clone()]).is_err());
    assert!(AisShard::merge(&[]).is_err());
    let mut foreign = c.clone();
    foreign.runs = 231;
    assert!(AisShard::merge(&[a.clone(), b.clone(), foreign]).is_err());
    #[allow(clippy::reversed_empty_ranges)] // a reversed range is one of the bad inputs
    for bad in [0..0, 4..6, 3..2] {
        assert!(ais_shard(&rbm, &start, &config, bad, |_, _| {}).is_err());
    }
    let samples = exact_samples(&rbm, 230, 18).unwrap();
    let whole = reverse_ais(&rbm, &start, &samples, &config, |_, _| {}).unwrap();
    let shard = |blocks| reverse_ais_shard(&rbm, &start, &samples, &config, blocks, |_, _| {});
    let parts = [shard(2..5).unwrap(), shard(0..2).unwrap()];
    assert_eq!(AisShard::merge(&parts).unwrap(), whole);
    assert!(AisShard::merge(&[parts[0].clone(), a]).is_err());
}

#[test]
fn a_progress_callback_that_breaks_stops_ais() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(10, 5, 1.0, 19);
    let config = AisConfig {
        runs: 60,
        betas: Betas::three_stage(2000).unwrap(),
        seed: 20,
    };
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let stop_at_second = |_, _| {
        if calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 1 {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    };
    let result = ais(&rbm, &Start::uniform(&rbm), &config, stop_at_second);
    assert!(matches!(result, Err(boltzmann::Error::Stopped { .. })));
    assert_eq!(calls.into_inner(), 2);
    // Going on to the end is the plain estimate.
    let on = ais(&rbm, &Start::uniform(&rbm), &config, |_, _| {
        std::ops::ControlFlow::Continue(())
    });
    assert_eq!(
        on.unwrap(),
        ais(&rbm, &Start::uniform(&rbm), &config, |_, _| {}).unwrap()
    );
}

#[test]
fn bad_ais_inputs_are_errors() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(5, 3, 1.0, 11);
    let config = AisConfig {
        runs: 0,
        ..AisConfig::default()
    };
    assert!(ais(&rbm, &Start::uniform(&rbm), &config, |_, _| {}).is_err());
    let config = AisConfig {
        runs: 10,
        betas: Betas::linear(10),
        seed: 0,
    };
    let other = random_rbm::<Bernoulli, Bernoulli>(6, 3, 1.0, 11);
    assert!(ais(&rbm, &Start::uniform(&other), &config, |_, _| {}).is_err());
    let grey = DMatrix::from_element(5, 10, 0.5f32);
    let start = Start::uniform(&rbm);
    assert!(
        reverse_ais(
            &rbm,
            &start,
            std::slice::from_ref(&grey),
            &config,
            |_, _| {}
        )
        .is_err()
    );
    assert!(Start::base_rate(&rbm, &DMatrix::zeros(5, 0), 1.0).is_err());
    assert!(Start::base_rate(&rbm, &grey, -1.0).is_err());
}

/// `evaluate`'s average log-probability of `data` against the exact one; returns its floor.
fn evaluated_floor<V: Layer, H: Layer>(
    rbm: &Rbm<V, H>,
    start: &Start<V, H>,
    data: &DMatrix<f32>,
) -> f64 {
    use boltzmann::partition::{EvaluationConfig, evaluate, log_likelihood_exact};
    let config = EvaluationConfig {
        ais: AisConfig {
            runs: 200,
            betas: Betas::three_stage(2000).unwrap(),
            seed: 5,
        },
        ..EvaluationConfig::default()
    };
    let e = evaluate(rbm, start, &config, data, data, |_, _, _| {}).unwrap();
    let exact = log_likelihood_exact(rbm, data).unwrap();
    assert!(
        (e.test.mean - exact.mean).abs() < 0.05,
        "{} vs {}",
        e.test.mean,
        exact.mean
    );
    e.log_z_floor
}

/// `evaluate` gives the exact average log-probability up to the AIS error, for Gaussian visible
/// units too, and its floor `max ln p*(v)` lies below the exact `ln Z`: `p(v) ≤ 1` for binary
/// units, and a unit-variance Gaussian density is at most `(2π)^(−d/2)`, even at data where the
/// model's density is highest.
#[test]
fn evaluation_matches_exact_and_its_floor_lies_below_ln_z() {
    let gaussian = random_rbm::<Gaussian, Bernoulli>(10, 8, 0.4, 9);
    // Data at the visible biases, near where the model's density peaks.
    let data = DMatrix::from_fn(10, 40, |i, c| {
        gaussian.visible().bias()[i] + 0.01 * (c % 7) as f32
    });
    let start = Start::from_bias(&gaussian, gaussian.visible().bias().clone()).unwrap();
    let floor = evaluated_floor(&gaussian, &start, &data);
    let log_z = log_partition_exact(&gaussian).unwrap();
    assert!(
        floor < log_z - 5.0 * std::f64::consts::TAU.ln(),
        "{floor} vs {log_z}"
    );

    let bernoulli = random_rbm::<Bernoulli, Bernoulli>(10, 8, 0.4, 9);
    let binary = DMatrix::from_fn(10, 40, |i, c| f32::from((i * 7 + c * 3) % 5 < 2));
    let start = Start::base_rate_default(&bernoulli, &binary).unwrap();
    let floor = evaluated_floor(&bernoulli, &start, &binary);
    assert!(floor <= log_partition_exact(&bernoulli).unwrap());
}
