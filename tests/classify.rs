//! The classification RBM against enumeration: p(y | x), free energies and class-conditional
//! RBMs; the discriminative gradient against finite differences; all three objectives learn a
//! small noisy problem.

mod common;

use boltzmann::classify::ClassRbm;
use boltzmann::random::{stream, uniform};
use boltzmann::train::{Objective, TrainConfig, train_classifier};
use boltzmann::{Bernoulli, Layer, Rbm, Softmax};
use common::*;
use nalgebra::{DMatrix, DVector};

const INPUTS: usize = 5;
const HIDDEN: usize = 3;
const CLASSES: usize = 3;

/// W (inputs × hidden), b, c, U (classes × hidden), d, in that order.
fn build(p: &[f32]) -> ClassRbm {
    let (w, rest) = p.split_at(INPUTS * HIDDEN);
    let (b, rest) = rest.split_at(INPUTS);
    let (c, rest) = rest.split_at(HIDDEN);
    let (u, d) = rest.split_at(CLASSES * HIDDEN);
    let rbm = Rbm::new(
        Bernoulli::new(DVector::from_column_slice(b)),
        Bernoulli::new(DVector::from_column_slice(c)),
        DMatrix::from_column_slice(INPUTS, HIDDEN, w),
    )
    .unwrap();
    ClassRbm::new(
        rbm,
        Softmax::new(DVector::from_column_slice(d)),
        DMatrix::from_column_slice(CLASSES, HIDDEN, u),
    )
    .unwrap()
}

fn parameter_count() -> usize {
    INPUTS * HIDDEN + INPUTS + HIDDEN + CLASSES * HIDDEN + CLASSES
}

/// `ln Σ_h exp(−E(x, y, h))` by brute force over the hidden states.
fn brute_log_unnormalised(p: &[f32], x: &[f32], y: usize) -> f64 {
    let m = build(p);
    let hs = states(m.machine().hidden());
    let (b, c) = (m.input_bias(), m.machine().hidden().bias());
    let (w, u) = (m.input_weights(), m.label_weights());
    let terms: Vec<f64> = hs
        .column_iter()
        .map(|h| {
            // −E = bᵀx + xᵀWh + (c + U_y)ᵀh + d_y, summed term by term in f64.
            let mut e = f64::from(m.label_bias()[y]);
            for (i, &xi) in x.iter().enumerate() {
                e += f64::from(xi * b[i]);
                for (j, &hj) in h.iter().enumerate() {
                    e += f64::from(xi * w[(i, j)] * hj);
                }
            }
            for (j, &hj) in h.iter().enumerate() {
                e += f64::from(hj * (c[j] + u[(y, j)]));
            }
            e
        })
        .collect();
    log_sum_exp(terms)
}

#[test]
fn posterior_free_energy_and_class_conditionals_match_enumeration() {
    let p = normal(parameter_count(), 1.0, 121);
    let model = build(&p);
    let xs = states(&model.machine().visible().first());
    let log_p = model.class_log_probabilities(&xs).unwrap();
    for (c, x) in xs.column_iter().enumerate() {
        let joint: Vec<f64> = (0..CLASSES)
            .map(|y| brute_log_unnormalised(&p, x.as_slice(), y))
            .collect();
        let z = log_sum_exp(joint.iter().copied());
        for y in 0..CLASSES {
            assert!((log_p[(y, c)] - (joint[y] - z)).abs() < 1e-5);
            let f = model
                .free_energy(&DMatrix::from_column_slice(INPUTS, 1, x.as_slice()), &[y])
                .unwrap()[0];
            assert!((f + joint[y]).abs() < 1e-4, "F {f} vs {}", -joint[y]);
        }
    }
    // The RBM given class y samples p(x | y) ∝ Σ_h exp(−E(x, y, h)).
    for y in 0..CLASSES {
        let given = brute_visible_distribution(&model.given_class(y).unwrap());
        let joint: Vec<f64> = xs
            .column_iter()
            .map(|x| brute_log_unnormalised(&p, x.as_slice(), y))
            .collect();
        let z = log_sum_exp(joint.iter().copied());
        for (q, j) in given.iter().zip(&joint) {
            assert!((q - (j - z).exp()).abs() < 1e-6);
        }
    }
}

#[test]
fn discriminative_gradient_matches_finite_differences() {
    let p = normal(parameter_count(), 1.0, 122);
    let model = build(&p);
    let x =
        DMatrix::from_vec(INPUTS, 20, normal(INPUTS * 20, 1.0, 123)).map(|v| f32::from(v > 0.0));
    let labels: Vec<usize> = (0..20).map(|c| (c * 7) % CLASSES).collect();
    let g = model.discriminative_gradient(&x, &labels).unwrap();
    // The joint machine's coupling holds W above U, its visible biases b above d.
    let (w, bv, c) = (&g.weights[0], &g.biases[0], &g.biases[1]);
    let analytic: Vec<f32> = (w.rows(0, INPUTS).iter())
        .chain(bv.rows(0, INPUTS).iter())
        .chain(c.iter())
        .chain(w.rows(INPUTS, CLASSES).iter())
        .chain(bv.rows(INPUTS, CLASSES).iter())
        .copied()
        .collect();
    assert!(bv.rows(0, INPUTS).iter().all(|&v| v == 0.0));
    let objective = |q: &[f32]| build(q).conditional_log_likelihood(&x, &labels).unwrap();
    let eps = 1e-2f32;
    for i in 0..p.len() {
        let (mut up, mut down) = (p.clone(), p.clone());
        up[i] += eps;
        down[i] -= eps;
        let numeric = (objective(&up) - objective(&down)) / f64::from(up[i] - down[i]);
        // Central differences: truncation O(ε²) ≈ 1e-4 here, f32 rounding of the inputs ≈ 1e-5.
        assert!(
            (numeric - f64::from(analytic[i])).abs() < 1e-3,
            "parameter {i}: analytic {} vs numeric {numeric}",
            analytic[i]
        );
    }
}

/// Three classes of 16-pixel prototypes with every pixel flipped with probability 0.1.
fn noisy_prototypes(n: usize, seed: u64) -> (DMatrix<f32>, Vec<usize>) {
    let prototypes =
        DMatrix::from_vec(16, CLASSES, normal(16 * CLASSES, 1.0, 124)).map(|v| f32::from(v > 0.0));
    let mut rng = stream(seed, 0);
    let labels: Vec<usize> = (0..n).map(|c| c % CLASSES).collect();
    let x = DMatrix::from_fn(16, n, |i, c| {
        let flip = uniform(&mut rng) < 0.1;
        let v = prototypes[(i, labels[c])];
        if flip { 1.0 - v } else { v }
    });
    (x, labels)
}

#[test]
fn every_objective_learns_a_noisy_problem() {
    let (x, labels) = noisy_prototypes(600, 125);
    let (tx, tl) = noisy_prototypes(300, 126);
    for objective in [
        Objective::Generative,
        Objective::Discriminative,
        Objective::Hybrid { alpha: 0.1 },
    ] {
        let mut model = ClassRbm::init(16, 20, CLASSES, 127).unwrap();
        let config = TrainConfig {
            epochs: 30,
            batch_size: 20,
            objective,
            seed: 128,
            ..TrainConfig::classifier(CLASSES)
        };
        let history =
            train_classifier(&mut model, (&x, &labels), Some((&tx, &tl)), &config, |_| {}).unwrap();
        let last = history.last().unwrap().classification.clone().unwrap();
        // The Bayes error of this problem is far below 1 %: prototypes differ in several pixels.
        assert!(
            last.held_out_error.unwrap() < 0.03,
            "{objective:?}: {last:?}"
        );
        // Mean ln p(y | x) rises from ln(1/3) ≈ −1.10 to near 0.
        assert!(last.train_log_likelihood > -0.2, "{objective:?}: {last:?}");
        // The metrics agree with the model's own scores on the same (whole) sets.
        let error = model.error_rate(&tx, &tl).unwrap();
        assert_eq!(last.held_out_error, Some(error));
    }
}

#[test]
fn bad_labels_are_errors() {
    let model = ClassRbm::init(4, 3, 2, 0).unwrap();
    let x = DMatrix::zeros(4, 2);
    assert!(model.error_rate(&x, &[0, 2]).is_err());
    assert!(model.error_rate(&x, &[0]).is_err());
    assert!(ClassRbm::init(4, 3, 1, 0).is_err());
}
