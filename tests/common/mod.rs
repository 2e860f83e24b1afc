//! Helpers shared by the integration tests: tiny random models and brute-force enumeration.
#![allow(dead_code)]

use boltzmann::random::{fill_normal, stream};
use boltzmann::{FromBias, Layer, Rbm};
use nalgebra::{DMatrix, DVector};

/// Random normal values scaled by `scale`.
pub fn normal(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut x = vec![0f32; n];
    fill_normal(&mut stream(seed, 7), &mut x);
    x.iter().map(|v| v * scale).collect()
}

/// An RBM with N(0, scale²) weights and biases.
pub fn random_rbm<V: FromBias, H: FromBias>(
    nv: usize,
    nh: usize,
    scale: f32,
    seed: u64,
) -> Rbm<V, H> {
    let w = DMatrix::from_vec(nv, nh, normal(nv * nh, scale, seed));
    let bv = DVector::from_vec(normal(nv, scale, seed + 1));
    let bh = DVector::from_vec(normal(nh, scale, seed + 2));
    Rbm::new(V::new(bv), H::new(bh), w).unwrap()
}

/// A 6-4-3 DBM with N(0, scale²) weights and biases.
pub fn random_dbm(scale: f32, seed: u64) -> boltzmann::Dbm<boltzmann::Bernoulli> {
    use boltzmann::Bernoulli;
    let sizes = [6, 4, 3];
    let weights = (0..2)
        .map(|l| {
            let n = sizes[l] * sizes[l + 1];
            DMatrix::from_vec(sizes[l], sizes[l + 1], normal(n, scale, seed + l as u64))
        })
        .collect();
    let layers: Vec<Bernoulli> = (0..3)
        .map(|l| {
            Bernoulli::new(DVector::from_vec(normal(
                sizes[l],
                scale,
                seed + 10 + l as u64,
            )))
        })
        .collect();
    boltzmann::Dbm::new(layers[0].clone(), layers[1..].to_vec(), weights).unwrap()
}

/// Every state of a discrete layer, one per column.
pub fn states<L: Layer>(layer: &L) -> DMatrix<f32> {
    let n = layer.num_states().expect("discrete layer") as usize;
    let mut x = DMatrix::zeros(layer.len(), n);
    for (k, mut col) in x.column_iter_mut().enumerate() {
        layer.write_state(k as u64, col.as_mut_slice());
    }
    x
}

/// Columns `v` repeated to pair with every column of `h`: returns (V, H) of all pairs.
pub fn pairs(v: &DMatrix<f32>, h: &DMatrix<f32>) -> (DMatrix<f32>, DMatrix<f32>) {
    let n = v.ncols() * h.ncols();
    let vv = DMatrix::from_fn(v.nrows(), n, |i, c| v[(i, c / h.ncols())]);
    let hh = DMatrix::from_fn(h.nrows(), n, |i, c| h[(i, c % h.ncols())]);
    (vv, hh)
}

/// ln Σ exp(xᵢ).
pub fn log_sum_exp(x: impl IntoIterator<Item = f64>) -> f64 {
    let x: Vec<f64> = x.into_iter().collect();
    boltzmann::partition::log_sum_exp(&x)
}

/// Exact p(v) over all visible states (columns of `states(visible)`), by brute force over the
/// joint `exp(−E(v, h))` of two discrete layers.
pub fn brute_visible_distribution<V: Layer, H: Layer>(rbm: &Rbm<V, H>) -> Vec<f64> {
    let vs = states(rbm.visible());
    let hs = states(rbm.hidden());
    let (vv, hh) = pairs(&vs, &hs);
    let e = rbm.energy(&vv, &hh).unwrap();
    let per_v: Vec<f64> = (0..vs.ncols())
        .map(|a| log_sum_exp((0..hs.ncols()).map(|b| -e[a * hs.ncols() + b])))
        .collect();
    let log_z = log_sum_exp(per_v.iter().copied());
    per_v.iter().map(|l| (l - log_z).exp()).collect()
}

/// Index of a binary column as the number whose bit i is unit i.
pub fn binary_index(col: &[f32]) -> usize {
    col.iter()
        .enumerate()
        .map(|(i, &x)| usize::from(x == 1.0) << i)
        .sum()
}

/// Pearson's chi-square statistic of observed counts against expected probabilities.
pub fn chi_square(counts: &[u64], probs: &[f64]) -> f64 {
    let n: u64 = counts.iter().sum();
    counts
        .iter()
        .zip(probs)
        .map(|(&c, &p)| {
            let e = p * n as f64;
            (c as f64 - e).powi(2) / e
        })
        .sum()
}

/// Checks forward and reverse AIS estimates against the exact ln Z. With a coarse schedule,
/// each run alone is biased low (forward) or high (reverse, from exact samples) by Jensen's gap,
/// which then exceeds three standard errors of the mean log weight over the runs. With a fine
/// one, the estimates sandwich the exact value up to their noise (forward − 3 s.e. ≤ exact ≤
/// reverse + 3 s.e.; each bias may exceed its 3 s.e. on the far side) and lie within 0.1 of it.
pub fn assert_ais_sandwich(
    fwd: &boltzmann::partition::AisEstimate,
    rev: &boltzmann::partition::AisEstimate,
    exact: f64,
    coarse: bool,
    context: &str,
) {
    let msg = format!(
        "{context}: forward {} [{}, {}], exact {exact}, reverse {} [{}, {}]",
        fwd.log_z, fwd.log_z_lower, fwd.log_z_upper, rev.log_z, rev.log_z_lower, rev.log_z_upper
    );
    let single = |e: &boltzmann::partition::AisEstimate, sign: f64| {
        let n = e.log_weights.len() as f64;
        let mean = e.log_weights.iter().sum::<f64>() / n;
        (
            e.log_z_start + sign * mean,
            (e.log_weight_variance / n).sqrt(),
        )
    };
    if coarse {
        let (f1, f_se) = single(fwd, 1.0);
        let (r1, r_se) = single(rev, -1.0);
        assert!(
            f1 + 3.0 * f_se < exact,
            "{msg}; single forward run {f1} ± {f_se}"
        );
        assert!(
            r1 - 3.0 * r_se > exact,
            "{msg}; single reverse run {r1} ± {r_se}"
        );
    } else {
        assert!(
            fwd.log_z_lower <= exact && exact <= rev.log_z_upper,
            "{msg}"
        );
        assert!((fwd.log_z - exact).abs() < 0.1, "{msg}");
        assert!((rev.log_z - exact).abs() < 0.1, "{msg}");
    }
}

/// One plain SGD step of size 1 from zero velocity: the update equals the gradient estimate.
pub fn one_step(k: usize, n: usize) -> boltzmann::train::TrainConfig {
    use boltzmann::train::*;
    TrainConfig {
        epochs: 1,
        batch_size: n,
        learning_rate: LearningRate::Constant(1.0),
        momentum: Momentum {
            initial: 0.0,
            later: 0.0,
            switch_epoch: 1,
        },
        weight_decay: 0.0,
        negative: NegativePhase::Cd {
            k: Steps::Constant(k),
        },
        init_visible_bias: false,
        monitor_examples: 10,
        ..TrainConfig::default()
    }
}

/// Four 6-pixel patterns (columns of the first matrix) and `n` examples cycling through them:
/// a data set whose exact gradient is easy to enumerate.
pub fn four_patterns(n: usize) -> (DMatrix<f32>, DMatrix<f32>) {
    let patterns = [
        [1., 1., 1., 0., 0., 0.],
        [0., 0., 0., 1., 1., 1.],
        [1., 0., 1., 0., 1., 0.],
        [1., 1., 0., 0., 1., 1.],
    ];
    (
        DMatrix::from_fn(6, 4, |i, c| patterns[c][i]),
        DMatrix::from_fn(6, n, |i, c| patterns[c % 4][i]),
    )
}

/// A fresh directory under the system's temporary directory for one test, removed with
/// everything in it when dropped, also when the test fails.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// `boltzmann-{name}-{process id}`, empty.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("boltzmann-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// A path inside the directory.
    pub fn join(&self, name: impl AsRef<std::path::Path>) -> std::path::PathBuf {
        self.0.join(name)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Asserts that `counts` follow `probs` by χ² at the 0.001 level, over the cells expected at
/// least 5 times (the others pooled into one), the quantile by Wilson–Hilferty.
pub fn assert_chi_square_fits(counts: &[u64], probs: &[f64]) {
    let n: u64 = counts.iter().sum();
    let (mut cells_p, mut cells_n) = (vec![0.0], vec![0u64]);
    for (&c, &p) in counts.iter().zip(probs) {
        if p * n as f64 >= 5.0 {
            cells_p.push(p);
            cells_n.push(c);
        } else {
            cells_p[0] += p;
            cells_n[0] += c;
        }
    }
    if cells_p[0] == 0.0 {
        cells_p.remove(0);
        cells_n.remove(0);
    }
    let chi2 = chi_square(&cells_n, &cells_p);
    let d = (cells_p.len() - 1) as f64;
    let q = d * (1.0 - 2.0 / (9.0 * d) + 3.090 * (2.0 / (9.0 * d)).sqrt()).powi(3);
    assert!(
        chi2 < q,
        "χ² = {chi2} over {d} degrees of freedom (0.999 quantile {q})"
    );
}
