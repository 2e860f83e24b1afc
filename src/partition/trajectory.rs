//! `ln Z` along a training run: annealing from each parameter set to the next (trajectory AIS,
//! after Béreux et al. 2025), so that the log-likelihood can be followed epoch by epoch at the
//! cost of a few sweeps per epoch instead of a full AIS run.
//!
//! The runs start with exact samples of the first model without its couplings, whose `ln Z` is
//! known in closed form. Between two parameter sets `θ → θ'` the runs pass through the models
//! with parameters `(1 − t)·θ + t·θ'`, `t = 1/K, …, 1`; at each one a run's log weight gains
//! `F_prev(x) − F_next(x)` (free energies with the layers a sweep resamples first summed out)
//! and its state then takes one Gibbs sweep that leaves the new model invariant. This is AIS
//! along the trajectory, unbiased in `Z`. When the weights degenerate (effective sample size
//! below half the runs) the runs are resampled in proportion to their weights and the estimate
//! so far is carried forward, as in sequential Monte Carlo.
//!
//! Like any AIS, it underestimates `ln Z` where the runs miss modes, and the effective sample
//! size does not show it: on a tiny RBM trained at an effective rate of 1 (rate 0.1, momentum
//! 0.9), whose parameters jumped between sharp modes from epoch to epoch, the estimate drifted
//! several nats above the exact log-likelihood while the ESS stayed above half the runs; at a
//! steady rate it follows the exact value to a few hundredths (tests). Check the end of a run
//! with a full forward and reverse AIS.

use super::{Betas, MAX_BETAS};
use crate::dbm::{Dbm, Parity};
use crate::diagnostics::importance_effective_sample_size;
use crate::error::{Error, Result};
use crate::gibbs::{Chains, Machine};
use crate::kernels::{ChainRng, log_sum_exp, stream, uniform};
use crate::layer::Layer;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// `(1 − t)·a + t·b`, element by element, into `a`.
fn blend_into(a: &mut [f32], b: &[f32], t: f32) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += t * (y - *x));
}

/// The machine with parameters `(1 − t)·a + t·b`, coupling by coupling and bias by bias (the
/// energy is linear in them).
fn blend<V: Layer, H: Layer>(a: &Dbm<V, H>, b: &Dbm<V, H>, t: f32) -> Result<Dbm<V, H>> {
    if b.layer_sizes() != a.layer_sizes() {
        return Err(Error::shape(
            "the next model of the trajectory",
            format!("layers {:?}", a.layer_sizes()),
            format!("{:?}", b.layer_sizes()),
        ));
    }
    let mut m = a.clone();
    for (w, next) in m.weights_mut().iter_mut().zip(b.couplings()) {
        blend_into(w.as_mut_slice(), next.as_slice(), t);
    }
    for l in 0..m.num_layers() {
        blend_into(
            m.layer_bias_mut(l).as_mut_slice(),
            b.layer_bias(l).as_slice(),
            t,
        );
    }
    Ok(m)
}

/// The free energy of each chain's state with the odd layers summed out: a Gibbs sweep (odd
/// layers given even ones, then even given odd) leaves its distribution invariant.
fn chain_free_energy<V: Layer, H: Layer>(m: &Dbm<V, H>, chains: &Chains) -> Result<Vec<f64>> {
    Ok(m.free_energy(chains.layers(), Parity::Odd)?
        .as_slice()
        .to_vec())
}

/// Settings of a [`TrajectoryAis`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrajectorySettings {
    /// AIS runs (chains) carried along the trajectory.
    pub runs: usize,
    /// Intermediate models (and sweeps) between one parameter set and the next.
    pub steps: usize,
    /// Intermediate models from the first model without couplings to the first model itself,
    /// spaced by the three-stage rule of [`Betas::three_stage`]: the start is a full AIS run,
    /// which matters when training starts from a trained model (a DBM after pretraining).
    pub start_steps: usize,
}

impl Default for TrajectorySettings {
    fn default() -> Self {
        TrajectorySettings {
            runs: 100,
            steps: 100,
            start_steps: 1000,
        }
    }
}

impl TrajectorySettings {
    /// Checks the counts.
    pub fn validate(&self) -> Result<()> {
        let steps = 1..=MAX_BETAS;
        if self.runs < 2 || !steps.contains(&self.steps) || !steps.contains(&self.start_steps) {
            return Err(Error::invalid(
                "trajectory AIS",
                format!(
                    "{} runs, {} steps, {} start steps; expected ≥ 2 runs and 1 to {MAX_BETAS} \
                     steps",
                    self.runs, self.steps, self.start_steps
                ),
            ));
        }
        crate::error::check_elements("trajectory AIS runs", &[self.runs])?;
        Ok(())
    }
}

/// AIS runs carried along a sequence of models (see the module documentation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryAis {
    settings: TrajectorySettings,
    chains: Chains,
    /// Log weights since the last resampling.
    log_weights: Vec<f64>,
    /// `ln Ẑ` at the last resampling (at the start: the uncoupled model's exact `ln Z`).
    log_z_base: f64,
    /// Resamplings so far.
    resamplings: usize,
    #[serde(with = "crate::io::checked::stream")]
    rng: ChainRng,
}

impl TrajectoryAis {
    /// Runs at exact samples of `start` without its couplings (its layers alone, whose `ln Z`
    /// is exact), annealed to `model`. A start whose layers match the model's marginals (base
    /// rates of the data) makes the first annealing far easier than the model's own biases do
    /// once the model is trained.
    pub fn start<V: Layer, H: Layer>(
        start: &Dbm<V, H>,
        model: &Dbm<V, H>,
        settings: &TrajectorySettings,
        seed: u64,
    ) -> Result<Self> {
        settings.validate()?;
        let (uncoupled, log_z) = start.uncoupled();
        let mut chains = Chains::random(&uncoupled, settings.runs, stream(seed, 0).next_u64())?;
        // Without couplings one sweep draws every layer exactly from its biases.
        chains.sweep(&uncoupled, 1)?;
        let mut run = TrajectoryAis {
            settings: settings.clone(),
            chains,
            log_weights: vec![0.0; settings.runs],
            log_z_base: log_z,
            resamplings: 0,
            rng: stream(seed, 1),
        };
        let betas = Betas::three_stage(settings.start_steps + 1)?;
        run.anneal(&uncoupled, model, &betas.as_slice()[1..])?;
        Ok(run)
    }

    /// Anneals the runs from `from` (the model they were last advanced to) to `to`, and gives
    /// the estimate of `ln Z(to)`.
    pub fn advance<V: Layer, H: Layer>(&mut self, from: &Dbm<V, H>, to: &Dbm<V, H>) -> Result<f64> {
        let steps = self.settings.steps;
        let ts: Vec<f64> = (1..=steps).map(|s| s as f64 / steps as f64).collect();
        self.anneal(from, to, &ts)?;
        Ok(self.log_z())
    }

    /// Moves the runs through the models `blend(from, to, t)` for each `t` of `ts` (increasing,
    /// ending at 1).
    fn anneal<V: Layer, H: Layer>(
        &mut self,
        from: &Dbm<V, H>,
        to: &Dbm<V, H>,
        ts: &[f64],
    ) -> Result<()> {
        self.chains.check(to)?;
        let mut previous = chain_free_energy(from, &self.chains)?;
        for (k, &t) in ts.iter().enumerate() {
            let model = blend(from, to, t as f32)?;
            let next = chain_free_energy(&model, &self.chains)?;
            for ((w, p), n) in self.log_weights.iter_mut().zip(&previous).zip(&next) {
                *w += p - n;
            }
            if !self.log_weights.iter().all(|w| w.is_finite()) {
                return Err(Error::invalid(
                    "trajectory AIS",
                    "a log weight is not finite (the models diverged)",
                ));
            }
            if importance_effective_sample_size(&self.log_weights) < 0.5 * self.settings.runs as f64
            {
                self.resample();
            }
            self.chains.sweep(&model, 1)?;
            // The last model's free energies would be computed for nothing: the next anneal
            // starts by computing them.
            if k + 1 < ts.len() {
                previous = chain_free_energy(&model, &self.chains)?;
            }
        }
        Ok(())
    }

    /// `ln Ẑ` of the model last advanced to.
    pub fn log_z(&self) -> f64 {
        let n = self.log_weights.len() as f64;
        self.log_z_base + log_sum_exp(&self.log_weights) - n.ln()
    }

    /// The effective sample size of the current weights.
    pub fn effective_sample_size(&self) -> f64 {
        importance_effective_sample_size(&self.log_weights)
    }

    /// The settings the runs were started with.
    pub fn settings(&self) -> &TrajectorySettings {
        &self.settings
    }

    /// How often the runs have been resampled.
    pub fn resamplings(&self) -> usize {
        self.resamplings
    }

    /// Checks a run read from a checkpoint against the model it was last advanced to.
    pub fn check(&self, model: &impl Machine) -> Result<()> {
        self.settings.validate()?;
        self.chains.check(model)?;
        if self.log_weights.len() != self.chains.len()
            || self.chains.len() != self.settings.runs
            || !self.log_weights.iter().all(|w| w.is_finite())
            || !self.log_z_base.is_finite()
        {
            return Err(Error::invalid(
                "trajectory AIS",
                "runs, weights and chains do not match, or a weight is not finite",
            ));
        }
        Ok(())
    }

    /// Systematic resampling: run `i` takes the state of the run whose cumulative normalised
    /// weight first exceeds `(i + u) / n`; the estimate so far moves into the base.
    fn resample(&mut self) {
        let n = self.log_weights.len();
        self.log_z_base = self.log_z();
        let max = self
            .log_weights
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = self.log_weights.iter().map(|x| (x - max).exp()).collect();
        let total: f64 = w.iter().sum();
        let u = f64::from(uniform(&mut self.rng));
        let mut picks = Vec::with_capacity(n);
        let (mut j, mut cumulative) = (0, w[0] / total);
        for i in 0..n {
            let target = (i as f64 + u) / n as f64;
            while cumulative < target && j + 1 < n {
                j += 1;
                cumulative += w[j] / total;
            }
            picks.push(j);
        }
        self.chains.select(&picks);
        self.log_weights.iter_mut().for_each(|x| *x = 0.0);
        self.resamplings += 1;
    }
}
