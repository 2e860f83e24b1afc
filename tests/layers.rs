//! Free energies, conditional means and ln Z against brute-force enumeration of the joint, for
//! every unit type.

mod common;

use boltzmann::partition::log_partition_exact;
use boltzmann::{Bernoulli, Gaussian, Layer, Rbm, Softmax};
use common::*;
use nalgebra::DMatrix;

const TOL: f64 = 1e-4;

/// For discrete V and H: F(v) = −ln Σ_h exp(−E(v,h)), F(h) likewise, and E[h|v], E[v|h] equal
/// the exact conditional means from the joint.
fn check_discrete<V: Layer, H: Layer>(rbm: &Rbm<V, H>) {
    let vs = states(rbm.visible());
    let hs = states(rbm.hidden());
    let (vv, hh) = pairs(&vs, &hs);
    let e = rbm.energy(&vv, &hh).unwrap();
    let (nvs, nhs) = (vs.ncols(), hs.ncols());
    let energy = |a: usize, b: usize| e[a * nhs + b];

    let f = rbm.free_energy(&vs).unwrap();
    let hm = rbm.hidden_mean(&vs).unwrap();
    for a in 0..nvs {
        let brute = -log_sum_exp((0..nhs).map(|b| -energy(a, b)));
        assert!((f[a] - brute).abs() < TOL, "F(v) {} vs {}", f[a], brute);
        for j in 0..rbm.num_hidden() {
            let mean: f64 = (0..nhs)
                .map(|b| (-energy(a, b) + f[a]).exp() * f64::from(hs[(j, b)]))
                .sum();
            assert!((f64::from(hm[(j, a)]) - mean).abs() < TOL, "E[h|v]");
        }
    }
    let fh = rbm.free_energy_hidden(&hs).unwrap();
    let vm = rbm.visible_mean(&hs).unwrap();
    for b in 0..nhs {
        let brute = -log_sum_exp((0..nvs).map(|a| -energy(a, b)));
        assert!((fh[b] - brute).abs() < TOL, "F(h) {} vs {}", fh[b], brute);
        for i in 0..rbm.num_visible() {
            let mean: f64 = (0..nvs)
                .map(|a| (-energy(a, b) + fh[b]).exp() * f64::from(vs[(i, a)]))
                .sum();
            assert!((f64::from(vm[(i, b)]) - mean).abs() < TOL, "E[v|h]");
        }
    }
    let brute_log_z = log_sum_exp(e.iter().map(|x| -x));
    let log_z = log_partition_exact(rbm).unwrap();
    assert!(
        (log_z - brute_log_z).abs() < TOL,
        "ln Z {log_z} vs {brute_log_z}"
    );
}

#[test]
fn bernoulli_bernoulli_matches_enumeration() {
    check_discrete(&random_rbm::<Bernoulli, Bernoulli>(5, 3, 1.0, 1));
    // The other layer is the smaller one: ln Z enumerates the visible side.
    check_discrete(&random_rbm::<Bernoulli, Bernoulli>(3, 6, 1.0, 2));
}

#[test]
fn softmax_layers_match_enumeration() {
    check_discrete(&random_rbm::<Bernoulli, Softmax>(5, 4, 1.0, 3));
    check_discrete(&random_rbm::<Softmax, Bernoulli>(6, 3, 1.0, 4));
}

/// ∫ g(x) dx over the real line by the trapezoid rule on [−30, 30]; the integrands here are
/// Gaussian-shaped with unit variance and means of a few units, so the truncation is negligible.
fn integrate(g: impl Fn(f64) -> f64) -> f64 {
    let (lo, hi, n) = (-30.0, 30.0, 60_000);
    let dx = (hi - lo) / n as f64;
    (0..=n)
        .map(|k| {
            let w = if k == 0 || k == n { 0.5 } else { 1.0 };
            w * g(lo + k as f64 * dx)
        })
        .sum::<f64>()
        * dx
}

#[test]
fn gaussian_visible_matches_numerical_integration() {
    let rbm = random_rbm::<Gaussian, Bernoulli>(3, 4, 1.0, 5);
    let (nv, nh) = (rbm.num_visible(), rbm.num_hidden());
    let w = rbm.weights().map(f64::from);
    let bv = rbm.visible().bias().map(f64::from);
    let bh = rbm.hidden().bias().map(f64::from);
    let hs = states(rbm.hidden());

    // F(h) = −ln ∫ exp(−E(v, h)) dv factorises over visible units.
    let fh = rbm.free_energy_hidden(&hs).unwrap();
    let vm = rbm.visible_mean(&hs).unwrap();
    for b in 0..hs.ncols() {
        let h = hs.column(b).map(f64::from);
        let mut log_integral = bh.dot(&h);
        for i in 0..nv {
            let a = bv[i] + (0..nh).map(|j| w[(i, j)] * h[j]).sum::<f64>();
            let density = |x: f64| (-0.5 * x * x + a * x).exp();
            let z = integrate(density);
            log_integral += z.ln();
            let mean = integrate(|x| x * density(x)) / z;
            assert!((f64::from(vm[(i, b)]) - mean).abs() < 1e-4, "E[v|h]");
        }
        assert!(
            (fh[b] + log_integral).abs() < 1e-4,
            "F(h) {} vs {}",
            fh[b],
            -log_integral
        );
    }

    // F(v) = −ln Σ_h exp(−E(v, h)) at some real-valued v, and E[h|v].
    let vs = DMatrix::from_vec(nv, 4, normal(nv * 4, 1.5, 9));
    let f = rbm.free_energy(&vs).unwrap();
    let hm = rbm.hidden_mean(&vs).unwrap();
    for a in 0..vs.ncols() {
        let v = DMatrix::from_fn(nv, hs.ncols(), |i, _| vs[(i, a)]);
        let e = rbm.energy(&v, &hs).unwrap();
        let brute = -log_sum_exp(e.iter().map(|x| -x));
        assert!((f[a] - brute).abs() < TOL, "F(v) {} vs {brute}", f[a]);
        for j in 0..nh {
            let mean: f64 = (0..hs.ncols())
                .map(|b| (-e[b] + f[a]).exp() * f64::from(hs[(j, b)]))
                .sum();
            assert!((f64::from(hm[(j, a)]) - mean).abs() < TOL, "E[h|v]");
        }
    }

    // ln Z = ln Σ_h exp(−F(h)), by enumerating the hidden side.
    let log_z = log_partition_exact(&rbm).unwrap();
    let brute = log_sum_exp(fh.iter().map(|f| -f));
    assert!((log_z - brute).abs() < TOL);
}

#[test]
fn empty_layers_are_rejected() {
    let empty = Rbm::new(
        Bernoulli::new(nalgebra::DVector::zeros(0)),
        Bernoulli::new(nalgebra::DVector::zeros(3)),
        DMatrix::zeros(0, 3),
    );
    assert!(matches!(empty, Err(boltzmann::Error::Invalid { .. })));
    assert!(Rbm::<Bernoulli, Bernoulli>::init(4, 0, 1).is_err());
}

#[test]
fn continuous_layers_are_not_enumerated() {
    let rbm = random_rbm::<Gaussian, Gaussian>(3, 3, 0.1, 6);
    assert!(matches!(
        log_partition_exact(&rbm),
        Err(boltzmann::Error::NotEnumerable { .. })
    ));
    let big = random_rbm::<Bernoulli, Bernoulli>(40, 40, 0.01, 7);
    assert!(matches!(
        log_partition_exact(&big),
        Err(boltzmann::Error::NotEnumerable { .. })
    ));
}

#[test]
fn layers_side_by_side_match_enumeration() {
    use boltzmann::Beside;
    use boltzmann::random::stream;
    use nalgebra::DVector;
    let base = random_rbm::<Bernoulli, Bernoulli>(6, 3, 1.0, 7);
    let b = base.visible().bias();
    let bits = Bernoulli::new(b.rows(0, 3).into_owned());
    let label = Softmax::new(b.rows(3, 3).into_owned());
    let side = Beside::new(&bits, &label);
    let rbm = Rbm::new(side.clone(), base.hidden().clone(), base.weights().clone()).unwrap();
    check_discrete(&rbm);
    // Its states are every 3-bit pattern beside every one-hot label, with the energy of both.
    let vs = states(rbm.visible());
    assert_eq!(vs.ncols(), 24);
    for (a, x) in vs.column_iter().enumerate() {
        assert_eq!(x.rows(3, 3).sum(), 1.0);
        assert!(vs.column_iter().skip(a + 1).all(|y| y != x));
    }
    let mut own = vec![0f64; vs.ncols()];
    side.energy(vs.as_slice(), &mut own);
    for (x, e) in vs.column_iter().zip(&own) {
        let linear: f64 = x.iter().zip(b.iter()).map(|(x, b)| f64::from(x * b)).sum();
        assert!((e + linear).abs() < 1e-6);
    }
    // Samples given fixed inputs: each unit's frequency within 4.5 standard errors of its mean.
    let n = 20_000;
    let inputs = DVector::from_column_slice(&[0.3f32, -1.0, 2.0, 0.5, -0.5, 1.0]);
    let mut x = DMatrix::from_fn(6, n, |i, _| inputs[i]);
    let mut mean = DMatrix::from_fn(6, 1, |i, _| inputs[i]);
    side.mean(mean.as_mut_slice());
    side.sample(x.as_mut_slice(), &mut stream(8, 0));
    side.check_state(x.as_slice()).unwrap();
    for i in 0..6 {
        let p = f64::from(mean[i]);
        let freq = x.row(i).iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        let se = (p * (1.0 - p) / n as f64).sqrt();
        assert!((freq - p).abs() < 4.5 * se, "unit {i}: {freq} vs {p}");
    }
}
