//! The partition function `Z = Σ exp(−E)` and log-likelihoods in nats.

mod ais;
mod conditional;
mod dbm_ais;
mod exact;
mod trajectory;

pub use ais::{
    AisConfig, AisEstimate, Betas, MAX_BETAS, Start, ais, log_partition_start, reverse_ais,
};
pub use conditional::{MAX_CONDITIONAL_STATES, conditional_log_likelihood_exact};
pub use dbm_ais::{DbmStart, dbm_ais, dbm_reverse_ais};
pub use exact::{
    MAX_ENUMERATED_STATES, MAX_SAMPLED_STATES, exact_samples, log_partition_exact,
    log_unnormalised_exact,
};
pub use trajectory::{Trajectory, TrajectoryAis, TrajectorySettings};

use crate::dbm::Dbm;
use crate::error::Result;
use crate::layer::Layer;
use crate::rbm::Rbm;
use nalgebra::DMatrix;

/// An average log-probability over a dataset, in nats, with its standard error over examples.
#[derive(Clone, Copy, Debug, PartialEq)]
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

/// `ln Ẑ` by forward AIS and the average log-probabilities it gives.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub forward: AisEstimate,
    /// Average log-probability of the test examples, `mean(−F(v)) − ln Ẑ`.
    pub test: LogLikelihood,
    /// The same for the training examples.
    pub train: LogLikelihood,
}

/// Estimates `ln Z` by forward AIS and the average log-probabilities of `train` and `test`
/// (one example per column).
pub fn evaluate<V: Layer, H: Layer>(
    rbm: &Rbm<V, H>,
    start: &Start<V>,
    config: &AisConfig,
    train: &DMatrix<f32>,
    test: &DMatrix<f32>,
    progress: impl Fn(usize, usize) + Sync,
) -> Result<Evaluation> {
    for (what, x) in [("training data", train), ("test data", test)] {
        if x.ncols() == 0 {
            return Err(crate::Error::Empty { what });
        }
        rbm.check_batch(what, x, rbm.num_visible())?;
        // Log-probabilities are of states: grey levels or other values would give numbers
        // that mean nothing.
        rbm.visible().check_state(x.as_slice())?;
    }
    let forward = ais(rbm, start, config, progress)?;
    let log_likelihood = |x: &DMatrix<f32>| -> Result<LogLikelihood> {
        let f = rbm.free_energy(x)?;
        Ok(LogLikelihood::from_free_energies(
            f.as_slice(),
            forward.log_z,
        ))
    };
    Ok(Evaluation {
        test: log_likelihood(test)?,
        train: log_likelihood(train)?,
        forward,
    })
}
