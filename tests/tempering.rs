//! Parallel tempering against enumeration: the β = 1 rung samples the exact distribution of a
//! bimodal model on which plain Gibbs is stuck and of a strongly coupled DBM, and swaps are
//! accepted at the exact Metropolis rate. Seeds are fixed; tolerances are 4 standard errors or χ² quantiles at 0.001.

mod common;

use boltzmann::tempering::{ParallelTempering, geometric_ladder};
use boltzmann::{Bernoulli, Chains, Layer, Rbm};
use common::*;
use nalgebra::{DMatrix, DVector};

/// χ²₀.₉₉₉ with 4 degrees of freedom.
const CHI2_999_DF4: f64 = 18.47;

/// Five visible units all tied to one hidden unit with weight 10, biases −5 (visible) and −25
/// (hidden): the modes "all off" and "all on" have equal mass, and Gibbs leaves "all off" with
/// probability ≈ 6·10⁻⁶ per sweep (it needs two or three units on at once, each at σ(−5)).
fn bimodal() -> Rbm<Bernoulli, Bernoulli> {
    Rbm::new(
        Bernoulli::new(DVector::from_element(5, -5.0)),
        Bernoulli::new(DVector::from_element(1, -25.0)),
        DMatrix::from_element(5, 1, 10.0),
    )
    .unwrap()
}

/// χ² of the number of visible units on (bins 0, 1, 2–3, 4, 5, so that every expected count
/// is ≥ 5 at 20,000 chains) against enumeration.
fn units_on_chi_square(rbm: &Rbm<Bernoulli, Bernoulli>, chains: &Chains) -> f64 {
    let bin = |col: &[f32]| match col.iter().filter(|&&x| x == 1.0).count() {
        3 => 2,
        k if k > 3 => k - 1,
        k => k,
    };
    let mut counts = vec![0u64; 5];
    for col in chains.visible().column_iter() {
        counts[bin(col.as_slice())] += 1;
    }
    let mut exact = vec![0.0; 5];
    let vs = states(rbm.visible());
    for (col, p) in vs.column_iter().zip(brute_visible_distribution(rbm)) {
        exact[bin(col.as_slice())] += p;
    }
    chi_square(&counts, &exact)
}

#[test]
fn tempering_mixes_where_gibbs_is_stuck() {
    let rbm = bimodal();
    let chains = 20_000;
    let mut gibbs = Chains::random(&rbm, chains, 1).unwrap();
    gibbs.sweep(&rbm, 200).unwrap();
    let stuck = units_on_chi_square(&rbm, &gibbs);
    assert!(
        stuck > 1000.0,
        "plain Gibbs should not mix here (χ² {stuck})"
    );

    let mut pt =
        ParallelTempering::new(&rbm, geometric_ladder(6, 0.0).unwrap(), None, chains, 2).unwrap();
    pt.sweep(&rbm, 200).unwrap();
    let chi2 = units_on_chi_square(&rbm, pt.chains());
    assert!(chi2 < CHI2_999_DF4, "χ² = {chi2} with 4 degrees of freedom");
    assert!(pt.swap_rates().iter().all(|&r| r > 0.05 && r <= 1.0));
}

/// log p_β(v, h) up to a constant for every joint state (`v` major), of the RBM with every
/// parameter scaled by β (the path from the uniform distribution).
fn joint_log_density(rbm: &Rbm<Bernoulli, Bernoulli>, beta: f32) -> (Vec<f64>, Vec<f64>) {
    let hot = Rbm::new(
        Bernoulli::new(rbm.visible().bias() * beta),
        Bernoulli::new(rbm.hidden().bias() * beta),
        rbm.weights() * beta,
    )
    .unwrap();
    let (vv, hh) = pairs(&states(rbm.visible()), &states(rbm.hidden()));
    let log_p: Vec<f64> = hot.energy(&vv, &hh).unwrap().iter().map(|e| -e).collect();
    let log_z = log_sum_exp(log_p.iter().copied());
    let g = rbm.energy(&vv, &hh).unwrap().iter().map(|e| -e).collect();
    (log_p.iter().map(|l| (l - log_z).exp()).collect(), g)
}

#[test]
fn swaps_are_accepted_at_the_exact_metropolis_rate() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(4, 2, 1.5, 31);
    let betas = vec![1.0, 0.6, 0.3, 0.0];
    let chains = 20_000;
    let mut pt = ParallelTempering::new(&rbm, betas.clone(), None, chains, 3).unwrap();
    pt.sweep(&rbm, 60).unwrap();
    pt.reset_swap_counts();
    pt.sweep(&rbm, 20).unwrap();
    let rates = pt.swap_rates();
    for k in 0..betas.len() - 1 {
        // E[min(1, exp((β_k − β_{k+1})(G(y) − G(x))))] for x ~ p_{β_k}, y ~ p_{β_{k+1}}, where
        // G = −E at β = 1.
        let (p, g) = joint_log_density(&rbm, betas[k] as f32);
        let (q, _) = joint_log_density(&rbm, betas[k + 1] as f32);
        let dbeta = betas[k] - betas[k + 1];
        let mut exact = 0.0;
        for (x, px) in p.iter().enumerate() {
            for (y, qy) in q.iter().enumerate() {
                exact += px * qy * (dbeta * (g[y] - g[x])).exp().min(1.0);
            }
        }
        // Rounds of one chain are correlated; counting one attempt per chain bounds the error.
        let se = (exact * (1.0 - exact) / chains as f64).sqrt();
        assert!(
            (rates[k] - exact).abs() < 4.0 * se,
            "pair {k}: rate {} vs exact {exact} (s.e. {se})",
            rates[k]
        );
    }
}

#[test]
fn tuned_ladder_equalises_swap_rates_and_adds_rungs() {
    let rbm = random_rbm::<Bernoulli, Bernoulli>(20, 10, 1.0, 41);
    let mut pt =
        ParallelTempering::new(&rbm, geometric_ladder(3, 0.0).unwrap(), None, 500, 4).unwrap();
    pt.tune_ladder(&rbm, 40, 10, 0.4, 12).unwrap();
    let betas = pt.betas().to_vec();
    assert!(betas.len() > 3, "no rung added: {betas:?}");
    assert_eq!((betas[0], *betas.last().unwrap()), (1.0, 0.0));
    pt.sweep(&rbm, 100).unwrap();
    let rates = pt.swap_rates();
    let lowest = rates.iter().copied().fold(1.0, f64::min);
    let highest = rates.iter().copied().fold(0.0, f64::max);
    // At the target (up to the noise of 500 chains × 50 attempts) and nearly equal.
    assert!(
        lowest > 0.35 && highest - lowest < 0.1,
        "rates {rates:?} on ladder {betas:?}"
    );
}

#[test]
fn bad_ladders_are_errors() {
    // A ladder is asked for, never silently widened.
    for (n, lowest) in [(0, 0.0), (1, 0.0), (4, 1.0), (4, -0.1), (4, f64::NAN)] {
        assert!(
            geometric_ladder(n, lowest).is_err(),
            "{n} rungs to {lowest}"
        );
    }
    assert_eq!(geometric_ladder(3, 0.25).unwrap(), vec![1.0, 0.5, 0.25]);
    let rbm = bimodal();
    for betas in [
        vec![1.0],
        vec![0.9, 0.5],
        vec![1.0, 0.5, 0.5],
        vec![1.0, -0.1],
    ] {
        assert!(ParallelTempering::new(&rbm, betas, None, 10, 0).is_err());
    }
    let wrong_base = Some(DVector::zeros(3));
    assert!(ParallelTempering::new(&rbm, vec![1.0, 0.0], wrong_base, 10, 0).is_err());
}

#[test]
fn tempering_on_a_dbm_samples_the_enumerated_distribution() {
    use boltzmann::partition::{log_partition_exact, log_unnormalised_exact};
    // A 6-4-3 DBM with strong couplings, 3000 independent chains per rung after 100 rounds of
    // sweeps and swaps: the β = 1 rung's visible states against the enumerated p(v), by χ² over
    // the states expected at least 5 times (the rest pooled). A wrong swap rule (a G that is not
    // the part of ln p_β that β multiplies) would bias the cold rung.
    let dbm = random_dbm(2.0, 7);
    let ladder = geometric_ladder(4, 0.2).unwrap();
    let chains = 3000;
    let mut pt = ParallelTempering::new(&dbm, ladder, None, chains, 8).unwrap();
    pt.sweep(&dbm, 100).unwrap();
    let rates = pt.swap_rates();
    assert!(rates.iter().all(|&r| r > 0.05 && r < 0.999), "{rates:?}");
    let vs = states(dbm.visible());
    let log_z = log_partition_exact(&dbm).unwrap();
    let p: Vec<f64> = log_unnormalised_exact(&dbm, &vs)
        .unwrap()
        .iter()
        .map(|l| (l - log_z).exp())
        .collect();
    let mut counts = vec![0u64; 64];
    for col in pt.chains().visible().column_iter() {
        counts[binary_index(col.as_slice())] += 1;
    }
    let probs: Vec<f64> = (0..64)
        .map(|i| {
            let k = vs
                .column_iter()
                .position(|c| binary_index(c.as_slice()) == i);
            k.map_or(0.0, |k| p[k])
        })
        .collect();
    assert_chi_square_fits(&counts, &probs);
}
