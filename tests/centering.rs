//! Centered RBMs: conversion keeps the distribution (free energies differ by one constant), the
//! centered gradient reduces to the plain one at zero offsets, and one centered training step
//! follows the exact log-likelihood gradient in centered coordinates (finite differences).

mod common;

use boltzmann::centering::{CenteredRbm, Offsets};
use boltzmann::partition::log_likelihood_exact;
use boltzmann::train::{Centering, TrainConfig, train};
use boltzmann::{Bernoulli, Gaussian, Layer, Rbm};
use common::*;
use nalgebra::{DMatrix, DVector};

fn offsets(nv: usize, nh: usize, seed: u64) -> Offsets {
    let unit = |n, s| DVector::from_vec(normal(n, 1.0, s)).map(|x: f32| 1.0 / (1.0 + (-x).exp()));
    Offsets {
        visible: unit(nv, seed),
        hidden: unit(nh, seed + 1),
    }
}

/// `F_centred(v) − F_plain(v)` is the same constant `bᵀμ + cᵀλ − μᵀWλ` for every `v`.
fn assert_same_distribution<V: Layer>(
    rbm: &Rbm<V, Bernoulli>,
    centered: &CenteredRbm<V, Bernoulli>,
    v: &DMatrix<f32>,
) {
    let fc = centered.free_energy(v).unwrap();
    let fp = rbm.free_energy(v).unwrap();
    let c = &centered.centered;
    let (mu, lambda) = (
        centered.offsets.visible.map(f64::from),
        centered.offsets.hidden.map(f64::from),
    );
    let w = c.weights().map(f64::from);
    let constant = c.visible().bias().map(f64::from).dot(&mu)
        + c.hidden().bias().map(f64::from).dot(&lambda)
        - mu.dot(&(&w * &lambda));
    for (a, b) in fc.iter().zip(fp.iter()) {
        assert!((a - b - constant).abs() < 1e-4, "{a} − {b} ≠ {constant}");
    }
}

#[test]
fn centered_and_plain_models_agree_after_conversion() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(6, 4, 1.0, 91);
    let centered = CenteredRbm::from_rbm(&rbm, offsets(6, 4, 92)).unwrap();
    let vs = states(rbm.visible());
    assert_same_distribution(&rbm, &centered, &vs);
    let back = centered.to_rbm();
    assert!((back.visible().bias() - rbm.visible().bias()).abs().max() < 1e-5);
    assert!((back.hidden().bias() - rbm.hidden().bias()).abs().max() < 1e-5);
    let (a, b) = (
        log_likelihood_exact(&rbm, &vs).unwrap().mean,
        log_likelihood_exact(&back, &vs).unwrap().mean,
    );
    assert!((a - b).abs() < 1e-5, "{a} vs {b}");

    // Moving the offsets changes the centered biases, not the distribution.
    let mut moved = centered.clone();
    moved.set_offsets(offsets(6, 4, 93)).unwrap();
    assert_ne!(moved.centered, centered.centered);
    assert_same_distribution(&rbm, &moved, &vs);

    // Gaussian visible units (their quadratic own energy is not centered).
    let gauss = random_rbm::<Gaussian, Bernoulli>(5, 3, 0.5, 94);
    let v = DMatrix::from_vec(5, 20, normal(100, 1.5, 95));
    let centered = CenteredRbm::from_rbm(&gauss, offsets(5, 3, 96)).unwrap();
    assert_same_distribution(&gauss, &centered, &v);
}

#[test]
fn centered_gradient_is_the_plain_one_at_zero_offsets() {
    let grad = DMatrix::from_vec(6, 4, normal(24, 1.0, 97));
    let gb = DVector::from_vec(normal(6, 1.0, 98));
    let gc = DVector::from_vec(normal(4, 1.0, 99));
    let mut centered = grad.clone();
    Offsets::zero(6, 4).center_weight_gradient(&mut centered, &gb, &gc);
    assert_eq!(centered, grad);
    let mut moved = grad.clone();
    offsets(6, 4, 100).center_weight_gradient(&mut moved, &gb, &gc);
    assert_ne!(moved, grad);
}

#[test]
fn a_centred_step_follows_the_exact_centred_gradient() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(6, 4, 0.5, 31);
    // Four patterns, each repeated: N examples, one minibatch, N chains.
    const N: usize = 40_000;
    let (pat, data) = four_patterns(N);
    // The trainer starts the offsets at the data mean and the mean hidden activity on the
    // (balanced) monitor subset; one step over the whole set leaves them there.
    let at = Offsets {
        visible: pat.column_mean(),
        hidden: rbm.hidden_mean(&pat).unwrap().column_mean(),
    };
    // One plain SGD step of size 1 from zero velocity: the step equals the gradient estimate.
    let config = TrainConfig {
        centering: Some(Centering { rate: 0.5 }),
        seed: 101,
        ..one_step(100, N)
    };
    let mut trained = rbm.clone();
    train(&mut trained, &data, None, &config, |_| {}).unwrap();
    let before = CenteredRbm::from_rbm(&rbm, at.clone()).unwrap();
    let after = CenteredRbm::from_rbm(&trained, at.clone()).unwrap();
    let step: Vec<f64> = parameters(&after.centered)
        .iter()
        .zip(parameters(&before.centered))
        .map(|(a, b)| f64::from(a - b))
        .collect();

    // Central differences of the exact mean log-likelihood in centered coordinates.
    let log_likelihood = |params: &[f32]| {
        let centered = CenteredRbm {
            centered: from_parameters(params),
            offsets: at.clone(),
        };
        log_likelihood_exact(&centered.to_rbm(), &pat).unwrap().mean
    };
    let theta = parameters(&before.centered);
    let eps = 1e-2f32;
    let exact: Vec<f64> = (0..theta.len())
        .map(|i| {
            let mut up = theta.clone();
            let mut down = theta.clone();
            up[i] += eps;
            down[i] -= eps;
            (log_likelihood(&up) - log_likelihood(&down)) / f64::from(up[i] - down[i])
        })
        .collect();
    // Model statistics are means of N terms in [0, 1] (std ≤ 0.5/√N); the centered weight step
    // adds two more of them scaled by offsets in [0, 1]: 4.5 standard errors of the sum of three.
    let tol = 4.5 * 3.0 * 0.5 / (N as f64).sqrt();
    let worst = step
        .iter()
        .zip(&exact)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < tol, "largest error {worst} ≥ {tol}");
    // The centered weight gradient differs from the plain one, by `μ ∇cᵀ + ∇b λᵀ` (bias
    // gradients are the same in both coordinates), by more than the tolerance.
    let (gb, gc) = (
        DVector::from_column_slice(&exact[24..30]),
        DVector::from_column_slice(&exact[30..34]),
    );
    let (mu, lambda) = (at.visible.map(f64::from), at.hidden.map(f64::from));
    let correction = &mu * gc.transpose() + gb * lambda.transpose();
    let diff = correction.abs().max();
    assert!(
        diff > 5.0 * tol,
        "centering changes the weight step by only {diff}"
    );
}

/// Weights (column-major), then visible and hidden biases.
fn parameters(rbm: &Rbm<Bernoulli, Bernoulli>) -> Vec<f32> {
    let mut p = rbm.weights().as_slice().to_vec();
    p.extend(rbm.visible().bias().iter());
    p.extend(rbm.hidden().bias().iter());
    p
}

fn from_parameters(p: &[f32]) -> Rbm<Bernoulli, Bernoulli> {
    Rbm::new(
        Bernoulli::new(DVector::from_column_slice(&p[24..30])),
        Bernoulli::new(DVector::from_column_slice(&p[30..34])),
        DMatrix::from_column_slice(6, 4, &p[..24]),
    )
    .unwrap()
}
