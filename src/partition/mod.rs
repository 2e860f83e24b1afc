//! The partition function `Z = Σ exp(−E)` and log-likelihoods in nats.

mod ais;
mod conditional;
mod exact;
mod trajectory;

pub use crate::kernels::log_sum_exp;
pub use ais::{
    AisConfig, AisEstimate, AisShard, Betas, MAX_BETAS, Start, ais, ais_shard, annealed_parity,
    base_rate_layer, reverse_ais, reverse_ais_shard,
};
pub use conditional::{MAX_CONDITIONAL_STATES, conditional_log_likelihood_exact};
pub use exact::{
    MAX_ENUMERATED_STATES, MAX_SAMPLED_STATES, enumerable_within, exact_samples,
    log_partition_exact, log_unnormalised_exact, unnormalised_enumerable_within,
};
pub use trajectory::{TrajectoryAis, TrajectorySettings};

use crate::dbm::{Dbm, MeanField, Parity};
use crate::error::{Flow, Result};
use crate::gibbs::Chains;
use crate::layer::Layer;
use nalgebra::{DMatrix, DVector};

/// An average log-probability over a dataset, in nats, with its standard error over examples.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct LogLikelihood {
    /// `(1/N) Σₙ ln p(vₙ)`.
    pub mean: f64,
    /// Standard error of that mean over the examples (`std / √N`).
    pub stderr: f64,
}

impl LogLikelihood {
    /// `mean(−F(v)) − ln Z` over the columns of `data`.
    pub fn from_free_energies(free_energies: &[f64], log_z: f64) -> Self {
        let n = free_energies.len() as f64;
        let mean = free_energies.iter().map(|f| -f).sum::<f64>() / n;
        let var = free_energies
            .iter()
            .map(|f| (-f - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0).max(1.0);
        LogLikelihood {
            mean: mean - log_z,
            stderr: (var / n).sqrt(),
        }
    }
}

/// The exact average log-likelihood of the columns of `data` under any small machine, with
/// `ln Z` and each `ln p*(v)` by enumeration.
pub fn log_likelihood_exact<V: Layer, H: Layer>(
    m: &Dbm<V, H>,
    data: &DMatrix<f32>,
) -> Result<LogLikelihood> {
    if data.ncols() == 0 {
        return Err(crate::Error::Empty { what: "data" });
    }
    let log_z = log_partition_exact(m)?;
    let f = -log_unnormalised_exact(m, data)?;
    Ok(LogLikelihood::from_free_energies(f.as_slice(), log_z))
}

/// Settings of [`evaluate`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvaluationConfig {
    /// Forward AIS (and reverse AIS, if asked for) with these runs, schedule and seed.
    pub ais: AisConfig,
    /// Reverse AIS as well, from examples moved by Gibbs sweeps.
    pub reverse: Option<ReverseStart>,
    /// Mean-field inference for the variational bounds of machines with more than one hidden
    /// layer; by default 100 iterations, to convergence rather than the few of training.
    pub mean_field: MeanField,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        EvaluationConfig {
            ais: AisConfig::default(),
            reverse: None,
            mean_field: MeanField {
                iterations: 100,
                ..MeanField::default()
            },
        }
    }
}

/// Where reverse AIS starts: the first `runs` examples of the training or test data, after
/// `sweeps` blocked Gibbs sweeps (at least one for machines with more than one hidden layer,
/// whose annealed hidden states must be drawn).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ReverseStart {
    pub from_test: bool,
    pub sweeps: usize,
}

/// `ln Ẑ` by AIS and the average log-probabilities it gives.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Evaluation {
    pub forward: AisEstimate,
    pub reverse: Option<AisEstimate>,
    /// Average log-probability of the test examples with the forward `ln Ẑ`: exact given `ln Ẑ`
    /// for one hidden layer, a variational lower bound for more.
    pub test: LogLikelihood,
    /// The same for the training examples.
    pub train: LogLikelihood,
    /// Whether `test` and `train` are variational lower bounds.
    pub lower_bounds: bool,
    /// `max_v ln p*(v)` (or its lower bound) over the examples: `p(v) ≤ 1` for discrete visible
    /// units and for Gaussian ones of unit variance (whose density is at most `(2π)^(−d/2)`), so
    /// no estimate of `ln Z` may fall below it.
    pub log_z_floor: f64,
}

impl Evaluation {
    /// The average test log-probability with the reverse-AIS `ln Ẑ` instead of the forward one.
    pub fn test_reverse(&self) -> Option<f64> {
        let r = self.reverse.as_ref()?;
        Some(self.test.mean + self.forward.log_z - r.log_z)
    }

    /// The average training log-probability with the reverse-AIS `ln Ẑ`.
    pub fn train_reverse(&self) -> Option<f64> {
        let r = self.reverse.as_ref()?;
        Some(self.train.mean + self.forward.log_z - r.log_z)
    }
}

/// `ln p*(v)` of each column of `v`: exactly, `−F(v)`, for one hidden layer; the variational
/// bound `E_q[−E] + H(q)` under mean-field posteriors for more.
pub fn log_unnormalised<V: Layer, H: Layer>(
    m: &Dbm<V, H>,
    v: &DMatrix<f32>,
    mean_field: &MeanField,
) -> Result<DVector<f64>> {
    if m.num_layers() == 2 {
        m.check_batch("visible batch", v, m.visible().len())?;
        return Ok(-m.free_energy(&m.zero_states_with_visible(v), Parity::Odd)?);
    }
    let mu = m.mean_field(v, mean_field)?;
    m.variational_bound_unnormalised(v, &mu)
}

/// Evaluates any machine as the literature does: `ln Ẑ` by forward AIS from `start` (and by
/// reverse AIS if asked), and the average log-probabilities of `train` and `test` (one example
/// per column) that it gives — exact given `ln Ẑ` for an RBM, variational lower bounds for
/// deeper machines. `progress(what, done, total)` reports each annealing run.
pub fn evaluate<V: Layer, H: Layer, R: Flow>(
    m: &Dbm<V, H>,
    start: &Start<V, H>,
    config: &EvaluationConfig,
    train: &DMatrix<f32>,
    test: &DMatrix<f32>,
    progress: impl Fn(&'static str, usize, usize) -> R + Sync,
) -> Result<Evaluation> {
    for (what, x) in [("training data", train), ("test data", test)] {
        if x.ncols() == 0 {
            return Err(crate::Error::Empty { what });
        }
        m.check_batch(what, x, m.visible().len())?;
        // Log-probabilities are of states: grey levels or other values would give numbers
        // that mean nothing.
        m.visible().check_state(x.as_slice())?;
    }
    let forward = ais(m, start, &config.ais, |d, t| progress("AIS", d, t))?;
    let reverse = match config.reverse {
        Some(r) => {
            let data = if r.from_test { test } else { train };
            let v0 = data
                .columns(0, config.ais.runs.min(data.ncols()))
                .into_owned();
            let mut chains = Chains::from_visible(m, v0, config.ais.seed.wrapping_add(1))?;
            chains.sweep(m, r.sweeps)?;
            let layers: Vec<DMatrix<f32>> = chains.layers().to_vec();
            let progress = |d, t| progress("reverse AIS", d, t);
            Some(reverse_ais(m, start, &layers, &config.ais, progress)?)
        }
        None => None,
    };
    let test_lp = log_unnormalised(m, test, &config.mean_field)?;
    let train_lp = log_unnormalised(m, train, &config.mean_field)?;
    let log_z_floor = test_lp
        .iter()
        .chain(train_lp.iter())
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let average = |lp: &DVector<f64>| {
        let f: Vec<f64> = lp.iter().map(|x| -x).collect();
        LogLikelihood::from_free_energies(&f, forward.log_z)
    };
    Ok(Evaluation {
        test: average(&test_lp),
        train: average(&train_lp),
        lower_bounds: m.num_layers() > 2,
        log_z_floor,
        forward,
        reverse,
    })
}
