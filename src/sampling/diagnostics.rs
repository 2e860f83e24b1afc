//! Mixing diagnostics: autocorrelation, integrated autocorrelation time and effective sample size
//! of a statistic (energy, free energy) along Markov chains, and the effective sample size of
//! importance weights (AIS).
//!
//! ```
//! use boltzmann::diagnostics::effective_sample_size;
//! // A chain that never moves holds one draw's worth of information.
//! assert_eq!(effective_sample_size(&[vec![3.0; 100]]), 1.0);
//! ```

use crate::error::{Error, Result};
use crate::gibbs::{Chains, Machine};
use nalgebra::DMatrix;

/// The sample autocorrelation `ρ(t)` for lags `t = 0 … max_lag` of one chain (biased
/// normalisation by `n`, which keeps the sequence positive semi-definite). A chain without
/// variance has `ρ(t) = 1` at every lag: it is perfectly correlated.
pub fn autocorrelation(x: &[f64], max_lag: usize) -> Vec<f64> {
    let n = x.len();
    let lags = max_lag.min(n.saturating_sub(1));
    let mean = x.iter().sum::<f64>() / n.max(1) as f64;
    let c0 = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
    // Rounding in the mean leaves a constant chain a tiny variance; treat that as none.
    if n < 2 || c0 <= n as f64 * (1e-12 * mean.abs()).powi(2) {
        return vec![1.0; lags + 1];
    }
    (0..=lags)
        .map(|t| {
            x[..n - t]
                .iter()
                .zip(&x[t..])
                .map(|(a, b)| (a - mean) * (b - mean))
                .sum::<f64>()
                / c0
        })
        .collect()
}

/// The integrated autocorrelation time `τ = 1 + 2 Σ_{t≥1} ρ(t)` of a statistic recorded along
/// several chains of equal length, with `ρ` averaged over the chains and the sum truncated by
/// Geyer's initial monotone sequence (pairs `ρ(2k) + ρ(2k+1)` summed while positive and
/// non-increasing). `τ = 1` for independent draws; it is the chain length for a chain that never
/// moves.
pub fn integrated_autocorrelation_time(chains: &[Vec<f64>]) -> f64 {
    let n = chains.iter().map(Vec::len).min().unwrap_or(0);
    if n < 2 {
        return 1.0;
    }
    let mut rho = vec![0.0; n];
    for chain in chains {
        for (r, a) in rho.iter_mut().zip(autocorrelation(&chain[..n], n - 1)) {
            *r += a / chains.len() as f64;
        }
    }
    let mut tau = -1.0;
    let mut previous = f64::INFINITY;
    for pair in rho.chunks(2) {
        let gamma = pair.iter().sum::<f64>().min(previous);
        if gamma <= 0.0 {
            break;
        }
        tau += 2.0 * gamma;
        previous = gamma;
    }
    tau.clamp(1.0 / n as f64, n as f64)
}

/// The effective number of independent draws in several chains of a statistic:
/// `chains × length / τ` (see [`integrated_autocorrelation_time`]). Close to the number of draws
/// for independent draws, and to the number of chains for chains that never move.
pub fn effective_sample_size(chains: &[Vec<f64>]) -> f64 {
    let n = chains.iter().map(Vec::len).min().unwrap_or(0);
    (chains.len() * n) as f64 / integrated_autocorrelation_time(chains)
}

/// The effective sample size `(Σw)² / Σw²` of importance weights given by their logarithms: the
/// number of equally weighted draws that would give the same variance. Computed relative to the
/// largest weight, so it cannot overflow.
pub fn importance_effective_sample_size(log_weights: &[f64]) -> f64 {
    let max = log_weights
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let rel = log_weights.iter().map(|w| (w - max).exp());
    let (s, s2) = rel.fold((0.0, 0.0), |(s, s2), r| (s + r, s2 + r * r));
    s * s / s2
}

/// The unbiased sample variance (0 for fewer than two values).
pub fn sample_variance(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)
}

/// A statistic recorded after every sweep of a batch of chains: `values[c][t]` for chain `c`
/// after sweep `t + 1`.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub values: Vec<Vec<f64>>,
}

impl Trace {
    /// Runs `sweeps` Gibbs sweeps of `chains` on `machine`, recording `statistic` (one value per
    /// chain, e.g. the free energy of the visible states) after each.
    pub fn record<M: Machine>(
        machine: &M,
        chains: &mut Chains,
        sweeps: usize,
        mut statistic: impl FnMut(&Chains) -> Result<Vec<f64>>,
    ) -> Result<Self> {
        let mut values = vec![Vec::with_capacity(sweeps); chains.len()];
        for _ in 0..sweeps {
            chains.sweep(machine, 1)?;
            for (trace, v) in values.iter_mut().zip(statistic(chains)?) {
                trace.push(v);
            }
        }
        Ok(Trace { values })
    }

    /// The integrated autocorrelation time of the statistic, in sweeps.
    pub fn integrated_autocorrelation_time(&self) -> f64 {
        integrated_autocorrelation_time(&self.values)
    }

    /// The effective number of independent draws in the whole trace.
    pub fn effective_sample_size(&self) -> f64 {
        effective_sample_size(&self.values)
    }
}

/// The fraction of `samples` (one per column) nearest, in Euclidean distance, to the mean of
/// each class of the labelled `reference` examples (`labels[c]` in `0..classes` for column `c`):
/// whether a model's samples cover every class of the data, or collapse onto a few.
pub fn class_fractions(
    samples: &DMatrix<f32>,
    reference: &DMatrix<f32>,
    labels: &[usize],
    classes: usize,
) -> Result<Vec<f64>> {
    if reference.ncols() != labels.len() || reference.nrows() != samples.nrows() {
        return Err(Error::shape(
            "reference examples",
            format!("{} rows and one label per column", samples.nrows()),
            format!(
                "{}×{} with {} labels",
                reference.nrows(),
                reference.ncols(),
                labels.len()
            ),
        ));
    }
    if let Some(&l) = labels.iter().find(|&&l| l >= classes) {
        return Err(Error::invalid(
            "label",
            format!("{l}; expected 0 to {}", classes.saturating_sub(1)),
        ));
    }
    if samples.ncols() == 0 {
        return Err(Error::Empty { what: "samples" });
    }
    let mut means = DMatrix::<f64>::zeros(reference.nrows(), classes);
    let mut counts = vec![0usize; classes];
    for (x, &l) in reference.column_iter().zip(labels) {
        counts[l] += 1;
        means.column_mut(l).zip_apply(&x, |m, v| *m += f64::from(v));
    }
    for (mut m, &n) in means.column_iter_mut().zip(&counts) {
        m /= n.max(1) as f64;
    }
    let mut hits = vec![0usize; classes];
    for s in samples.column_iter() {
        let distance = |k: usize| -> f64 {
            means
                .column(k)
                .iter()
                .zip(s.iter())
                .map(|(m, &v)| (m - f64::from(v)).powi(2))
                .sum()
        };
        // Classes without reference examples are never chosen.
        let nearest = (0..classes)
            .filter(|&k| counts[k] > 0)
            .min_by(|&a, &b| distance(a).total_cmp(&distance(b)));
        if let Some(k) = nearest {
            hits[k] += 1;
        }
    }
    Ok(hits
        .iter()
        .map(|&h| h as f64 / samples.ncols() as f64)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{fill_normal, stream};

    /// Samples near each of three prototypes are counted to its class; a class without
    /// examples gets none; bad shapes and labels are errors.
    #[test]
    fn class_fractions_count_the_nearest_class_mean() {
        // Reference: two examples of each of classes 0, 1, 2 around (0,0), (4,0), (0,4).
        let reference = DMatrix::from_column_slice(
            2,
            6,
            &[0.1, 0.0, -0.1, 0.0, 4.0, 0.1, 4.0, -0.1, 0.0, 4.1, 0.0, 3.9],
        );
        let labels = [0, 0, 1, 1, 2, 2];
        // Five samples: three near class 1, one near 0, one near 2.
        let samples =
            DMatrix::from_column_slice(2, 5, &[3.0, 0.5, 4.5, 0.0, 3.8, -0.3, 0.2, 0.3, 0.5, 3.0]);
        let f = class_fractions(&samples, &reference, &labels, 4).unwrap();
        assert_eq!(f, vec![0.2, 0.6, 0.2, 0.0]);
        assert!(class_fractions(&samples, &reference, &labels[..5], 4).is_err());
        assert!(class_fractions(&samples, &reference, &[0, 0, 1, 1, 2, 7], 4).is_err());
    }

    fn normals(n: usize, seed: u64) -> Vec<f64> {
        let mut x = vec![0f32; n];
        fill_normal(&mut stream(seed, 0), &mut x);
        x.into_iter().map(f64::from).collect()
    }

    #[test]
    fn independent_draws_have_full_sample_size() {
        let chains: Vec<Vec<f64>> = (0..4).map(|s| normals(5000, s)).collect();
        let ess = effective_sample_size(&chains);
        // The estimator's relative error at 20,000 draws is a few per cent.
        assert!((ess / 20_000.0 - 1.0).abs() < 0.1, "ESS {ess}");
    }

    #[test]
    fn ar1_chain_has_the_theoretical_time() {
        // x_t = ρ x_{t−1} + √(1−ρ²) ε_t has τ = (1 + ρ)/(1 − ρ) = 9 for ρ = 0.8.
        let rho = 0.8f64;
        let chains: Vec<Vec<f64>> = (0..8)
            .map(|s| {
                let eps = normals(20_000, 10 + s);
                let mut x = 0.0;
                eps.iter()
                    .map(|e| {
                        x = rho * x + (1.0 - rho * rho).sqrt() * e;
                        x
                    })
                    .collect()
            })
            .collect();
        let tau = integrated_autocorrelation_time(&chains);
        assert!((tau / 9.0 - 1.0).abs() < 0.1, "τ {tau}");
    }

    #[test]
    fn perfectly_correlated_chain_counts_once() {
        assert_eq!(effective_sample_size(&[vec![2.5; 1000]]), 1.0);
        // A chain that only drifts is nearly as uninformative.
        let drift: Vec<f64> = (0..1000).map(|t| t as f64).collect();
        let ess = effective_sample_size(&[drift]);
        assert!(ess < 5.0, "ESS {ess}");
    }

    #[test]
    fn importance_sample_size_of_equal_and_degenerate_weights() {
        assert!((importance_effective_sample_size(&[0.7; 50]) - 50.0).abs() < 1e-9);
        let mut w = vec![-1000.0; 50];
        w[3] = 0.0;
        assert!((importance_effective_sample_size(&w) - 1.0).abs() < 1e-9);
    }
}
