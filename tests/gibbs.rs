//! The blocked Gibbs sampler keeps the exact distribution. Each test draws independent samples
//! (the final states of many chains after a burn-in far beyond the mixing time of these tiny
//! models) and applies Pearson's chi-square test against the enumerated distribution at
//! significance 0.001: the critical values below are the 0.999 quantiles of χ² with
//! (states − 1) degrees of freedom. Seeds are fixed, so the outcome is deterministic.

mod common;

use boltzmann::{Bernoulli, Chains, Layer, Rbm, Softmax};
use common::*;
use nalgebra::{DMatrix, DVector};

/// χ²₀.₉₉₉ quantiles by degrees of freedom.
const CHI2_999_DF31: f64 = 61.10;
const CHI2_999_DF7: f64 = 24.32;
const CHI2_999_DF5: f64 = 20.52;

const CHAINS: usize = 100_000;
const BURN_IN: usize = 40;

/// Counts the visible states of the chains, indexed like `states(visible)`.
fn count_states<V: Layer, H: Layer>(rbm: &Rbm<V, H>, chains: &Chains) -> Vec<u64> {
    let vs = states(rbm.visible());
    let mut counts = vec![0u64; vs.ncols()];
    for col in chains.visible().column_iter() {
        let k = vs
            .column_iter()
            .position(|s| s == col)
            .expect("every sample is a state of the layer");
        counts[k] += 1;
    }
    counts
}

/// Runs independent chains past burn-in and tests their visible states against the exact
/// distribution at significance 0.001 (`critical` is the χ² quantile for states − 1 degrees of
/// freedom).
fn assert_stationary<V: Layer, H: Layer>(rbm: &Rbm<V, H>, seed: u64, critical: f64) {
    let exact = brute_visible_distribution(rbm);
    let mut chains = Chains::random(rbm, CHAINS, seed).unwrap();
    chains.sweep(rbm, BURN_IN).unwrap();
    let chi2 = chi_square(&count_states(rbm, &chains), &exact);
    let df = exact.len() - 1;
    assert!(chi2 < critical, "χ² = {chi2} with {df} degrees of freedom");
}

#[test]
fn gibbs_samples_the_exact_visible_distribution() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(5, 3, 1.0, 11);
    assert_stationary(&rbm, 12, CHI2_999_DF31);
}

#[test]
fn gibbs_with_softmax_hidden_units() {
    let rbm = random_rbm::<Bernoulli, Softmax>(3, 4, 1.0, 13);
    assert_stationary(&rbm, 14, CHI2_999_DF7);
}

#[test]
fn gibbs_with_softmax_visible_units() {
    let rbm = random_rbm::<Softmax, Bernoulli>(6, 3, 1.0, 15);
    assert_stationary(&rbm, 16, CHI2_999_DF5);
}

#[test]
fn gibbs_with_sparse_states_takes_the_sparse_products() {
    // Biases around −2.5 keep about 8 % of the units on, so the products of every block of 50
    // chains go through the sparse path (sums of selected rows and columns of W).
    let mut rbm = random_rbm::<Bernoulli, Bernoulli>(5, 3, 1.0, 19);
    let w = rbm.weights().clone();
    let shift = |b: &nalgebra::DVector<f32>| b.map(|x| x - 2.5);
    rbm = Rbm::new(
        Bernoulli::new(shift(rbm.visible().bias())),
        Bernoulli::new(shift(rbm.hidden().bias())),
        w,
    )
    .unwrap();
    assert_stationary(&rbm, 20, CHI2_999_DF31);
}

#[test]
fn clamped_gibbs_samples_the_exact_conditional() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(5, 3, 1.0, 17);
    let exact = brute_visible_distribution(&rbm);
    // Clamp v0 = 1, v1 = 0; the free units v2..v4 follow p(v2, v3, v4 | v0 = 1, v1 = 0).
    let mask = [true, true, false, false, false];
    let clamped_index = |free: usize| 1 | (free << 2);
    let joint: Vec<f64> = (0..8).map(|free| exact[clamped_index(free)]).collect();
    let total: f64 = joint.iter().sum();
    let conditional: Vec<f64> = joint.iter().map(|p| p / total).collect();

    let mut chains = Chains::random(&rbm, CHAINS, 18).unwrap();
    let values = DMatrix::from_fn(5, CHAINS, |i, _| if i == 0 { 1.0 } else { 0.0 });
    chains.clamp(&mask, &values).unwrap();
    chains.sweep(&rbm, BURN_IN).unwrap();
    let mut counts = vec![0u64; 8];
    for col in chains.visible().column_iter() {
        assert_eq!(
            (col[0], col[1]),
            (1.0, 0.0),
            "clamped units keep their values"
        );
        counts[binary_index(col.as_slice()) >> 2] += 1;
    }
    let chi2 = chi_square(&counts, &conditional);
    assert!(chi2 < CHI2_999_DF7, "χ² = {chi2} with 7 degrees of freedom");
}

#[test]
fn chains_are_bit_identical_for_any_thread_count() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(30, 20, 0.5, 19);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut chains = Chains::random(&rbm, 230, 20).unwrap();
            chains.sweep(&rbm, 25).unwrap();
            chains.visible().clone()
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

/// Chains give the same bits with every kernel this CPU runs (portable, AVX2, AVX-512): on a
/// 300×130 RBM the products take tiles of every width, sparse sums (biased-off visible units)
/// and subset-sum tables (announced work ≥ 1000 chain-sweeps, hidden units half on).
#[test]
fn chains_are_bit_identical_with_every_kernel() {
    use boltzmann::cpu::{Kernel, set_kernel};
    let w = DMatrix::from_vec(300, 130, normal(300 * 130, 0.3, 23));
    let visible = Bernoulli::new(DVector::from_element(300, -2.0f32));
    let hidden = Bernoulli::new(DVector::from_vec(normal(130, 0.3, 24)));
    let rbm = Rbm::new(visible, hidden, w).unwrap();
    let before = Kernel::active();
    let runs: Vec<(Kernel, DMatrix<f32>, DMatrix<f32>)> = Kernel::ALL
        .into_iter()
        .filter(|k| k.supported())
        .map(|kernel| {
            set_kernel(kernel).unwrap();
            let mut chains = Chains::random(&rbm, 120, 24).unwrap();
            chains.sweep(&rbm, 30).unwrap();
            (kernel, chains.visible().clone(), chains.hidden().clone())
        })
        .collect();
    set_kernel(before).unwrap();
    let (first, v, h) = &runs[0];
    for (kernel, v2, h2) in &runs[1..] {
        assert!(v == v2 && h == h2, "{kernel} and {first} kernels differ");
    }
}

#[test]
fn bad_chain_inputs_are_errors() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(5, 3, 1.0, 21);
    assert!(Chains::random(&rbm, 0, 1).is_err());
    let not_binary = DMatrix::from_element(5, 2, 0.5f32);
    assert!(Chains::from_visible(&rbm, not_binary, 1).is_err());
    let wrong_rows = DMatrix::zeros(4, 2);
    assert!(matches!(
        Chains::from_visible(&rbm, wrong_rows, 1),
        Err(boltzmann::Error::Shape { .. })
    ));
    let mut chains = Chains::random(&rbm, 3, 1).unwrap();
    assert!(chains.clamp(&[true; 4], &DMatrix::zeros(5, 3)).is_err());
    assert!(chains.clamp(&[true; 5], &DMatrix::zeros(5, 2)).is_err());
    let other = random_rbm::<Bernoulli, Bernoulli>(6, 3, 1.0, 22);
    assert!(chains.sweep(&other, 1).is_err());
}
