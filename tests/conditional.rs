//! Exact conditional log-likelihoods of missing units, by both enumerations, against the
//! brute-force joint distribution.

mod common;

use boltzmann::partition::conditional_log_likelihood_exact;
use boltzmann::{Bernoulli, Error};
use common::*;

#[test]
fn conditional_log_likelihood_matches_brute_force() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(8, 4, 1.0, 111);
    let vs = states(rbm.visible());
    let p = brute_visible_distribution(&rbm);
    // Three missing units (completions are enumerated: 8 < 16 hidden states) and six (hidden
    // states are enumerated: 16 < 64).
    for missing_units in [vec![1, 4, 6], vec![0, 2, 3, 5, 6, 7]] {
        let missing: Vec<bool> = (0..8).map(|i| missing_units.contains(&i)).collect();
        let got = conditional_log_likelihood_exact(&rbm, &vs, &missing).unwrap();
        for (k, col) in vs.column_iter().enumerate() {
            // Σ p(v') over the v' that agree with v on the observed units.
            let observed: f64 = vs
                .column_iter()
                .zip(&p)
                .filter(|(other, _)| (0..8).all(|i| missing[i] || other[i] == col[i]))
                .map(|(_, q)| q)
                .sum();
            let exact = (p[k] / observed).ln();
            assert!(
                (got[k] - exact).abs() < 1e-6,
                "{missing_units:?}, state {k}: {} vs {exact}",
                got[k]
            );
        }
    }
}

#[test]
fn intractable_conditionals_are_errors() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(30, 25, 0.1, 112);
    let v = nalgebra::DMatrix::zeros(30, 1);
    let err = conditional_log_likelihood_exact(&rbm, &v, &[true; 30]).unwrap_err();
    assert!(matches!(err, Error::NotEnumerable { .. }), "{err}");
    let err = conditional_log_likelihood_exact(&rbm, &v, &[true; 3]).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
}
