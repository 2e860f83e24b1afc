//! One training engine for every layered machine: RBMs, DBMs and the scaled RBMs of greedy
//! pretraining.
//!
//! Data flow: dataset → shuffled minibatches → positive statistics (the data and every hidden
//! layer's posterior means: exact for one hidden layer, mean-field for more) and negative
//! statistics (a sampler's chains — CD, PCD, fast PCD or parallel tempering — with the odd
//! layers replaced by their conditional means) → gradient of every coupling and bias → the
//! optimiser (momentum SGD with weight decay, sparsity, centering and max-norm as parts) →
//! parameters.

mod config;
mod pretrain;

pub use config::{
    Centering, Checkpointing, FastWeights, LearningRate, MAX_EPOCHS, Momentum, NegativePhase,
    Objective, Sparsity, Steps, TrainConfig,
};
pub use pretrain::{InputScale, Pretrained, pretrain, pretraining_scale};

use crate::centering::{center_gradients, plain_bias_steps, track};
use crate::classify::{ClassRbm, check_labelled, classification_score, expected_given_inputs};
use crate::data::binarize_in_place;
use crate::dbm::{Dbm, MeanField, Statistics};
pub use crate::error::Flow;
use crate::error::{Error, Result, check_finite};
use crate::gibbs::Chains;
use crate::kernels::{correlate_into, par_zip_apply, par_zip_apply_mut, stream};
use crate::layer::Layer;
use crate::partition::{
    TrajectoryAis, base_rate_layer, enumerable_within, log_partition_exact, log_unnormalised_exact,
    unnormalised_enumerable_within,
};
use crate::tempering::ParallelTempering;
use nalgebra::{DMatrix, DMatrixView, DVector};
use pretrain::Scaled;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Machines with at most this many joint states to enumerate (in the cheaper parity) are
/// monitored with their exact log-likelihood every epoch.
pub const MAX_EXACT_MONITOR_STATES: u64 = 1 << 20;

/// What [`train`] reports after each epoch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochMetrics {
    /// The epoch just finished, counted from 1.
    pub epoch: usize,
    pub learning_rate: f32,
    pub momentum: f32,
    /// Gibbs sweeps per update in this epoch.
    pub k: usize,
    /// Mean squared reconstruction error per example, `‖v − E[v | μ₁]‖²` with `μ₁` the first
    /// hidden layer's posterior means, on the training monitor subset.
    pub recon_error: f64,
    /// Mean `ln p*(v)` of the training monitor subset: `−F(v)` for one hidden layer, the
    /// mean-field bound `E_q[−E] + H(q)` for more; the log-probability (or its bound) plus `ln Z`.
    pub log_unnormalised: f64,
    /// Mean `ln p*` of the training monitor subset minus that of the held-out one (for one
    /// hidden layer: the held-out free energy minus the training one): it grows when the model
    /// overfits.
    pub free_energy_gap: Option<f64>,
    /// Exact average log-likelihood (nats) of the training monitor subset, for machines with at
    /// most [`MAX_EXACT_MONITOR_STATES`] states to enumerate for `ln Z`, and as many free
    /// energies in all for the monitor examples.
    pub train_log_likelihood: Option<f64>,
    /// The same on the held-out monitor subset.
    pub held_out_log_likelihood: Option<f64>,
    /// For small machines with more than one hidden layer: the average mean-field lower bound
    /// with the exact `ln Z`.
    pub train_lower_bound: Option<f64>,
    /// Wall time of the epoch's updates (without the metrics), in seconds.
    pub seconds: f64,
    /// With parallel tempering: the swap acceptance rate of each neighbouring pair of rungs in
    /// this epoch.
    pub swap_rates: Option<Vec<f64>>,
    /// With [`TrainConfig::trajectory`]: `ln Ẑ` by trajectory AIS and the log-likelihoods it
    /// gives.
    pub trajectory: Option<TrajectoryEstimate>,
    /// With [`TrainConfig::labels`]: how well the model classifies the monitor subsets.
    pub classification: Option<Classification>,
}

/// A classifier's scores on the monitor subsets, with the label summed out of `p(y | x)`
/// exactly.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Classification {
    /// Mean `ln p(y | x)` of the training monitor subset.
    pub train_log_likelihood: f64,
    /// The fraction of the training monitor subset classified wrongly.
    pub train_error: f64,
    /// The same on the held-out monitor subset, if there is one.
    pub held_out_error: Option<f64>,
}

/// `ln Ẑ` of the model after an epoch, followed along training by [`TrajectoryAis`], and the
/// average log-probabilities of the monitor subsets it gives.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrajectoryEstimate {
    pub log_z: f64,
    /// Effective sample size of the runs' current weights.
    pub effective_sample_size: f64,
    /// `mean(ln p*(v)) − ln Ẑ` on the training monitor subset (with more than one hidden layer:
    /// the mean-field lower bound).
    pub train_log_likelihood: f64,
    /// The same on the held-out monitor subset, if there is one.
    pub held_out_log_likelihood: Option<f64>,
}

// Stream indices of the master seed, one family per purpose, so draws never overlap.
const STREAM_SHUFFLE: u64 = 1 << 40;
const STREAM_BINARIZE: u64 = 2 << 40;
const STREAM_MONITOR: u64 = 3 << 40;
const STREAM_CD: u64 = 4 << 40;
const STREAM_PCD: u64 = 5 << 40;
/// The binarisation of persistent chains' starting images.
const STREAM_CHAIN_STARTS: u64 = 6 << 40;
const STREAM_TRAJECTORY: u64 = 9 << 40;

/// Trains `machine` (an [`Rbm`](crate::Rbm) or a [`Dbm`]) on the columns of `data`
/// (`visible × N`), calling `monitor` after every epoch (it may stop training by
/// returning `ControlFlow::Break`; see [`Flow`]). `held_out` (optional) feeds the
/// free-energy gap and held-out log-likelihood.
///
/// The configuration is validated and the data checked before any work. If the parameters
/// become non-finite, training stops with [`Error::Diverged`] and `machine` is left as it was
/// after the last good epoch. With [`TrainConfig::checkpoint`] set, a [`Checkpoint`] is saved as
/// configured, from which [`resume`] continues.
pub fn train<'d, V: Layer, H: Layer, R: Flow>(
    machine: &mut Dbm<V, H>,
    data: impl Into<DMatrixView<'d, f32>>,
    held_out: Option<&DMatrix<f32>>,
    config: &TrainConfig,
    monitor: impl FnMut(&EpochMetrics) -> R,
) -> Result<Vec<EpochMetrics>> {
    run(
        machine,
        InputScale::ONE,
        data.into(),
        held_out,
        config,
        None,
        monitor,
    )
}

/// Continues the run saved in the checkpoint file `checkpoint` up to `config.epochs` epochs in
/// total, and returns the model with the metrics of the epochs run. The result is
/// bit-identical to a run without a break. The configuration must be the one that wrote the
/// checkpoint (apart from `epochs` and `checkpoint`), and `data` the same training set.
pub fn resume<'d, V: Layer, H: Layer, R: Flow>(
    checkpoint: impl AsRef<std::path::Path>,
    data: impl Into<DMatrixView<'d, f32>>,
    held_out: Option<&DMatrix<f32>>,
    config: &TrainConfig,
    monitor: impl FnMut(&EpochMetrics) -> R,
) -> Result<(Dbm<V, H>, Vec<EpochMetrics>)> {
    let data = data.into();
    let saved: Checkpoint<V, H> = Checkpoint::load(checkpoint.as_ref())?;
    config.validate()?;
    check_resumable(&saved, config, data)?;
    saved.fits(config)?;
    let mut machine = saved.machine.clone();
    let history = run(
        &mut machine,
        InputScale::ONE,
        data,
        held_out,
        config,
        Some(saved),
        monitor,
    )?;
    Ok((machine, history))
}

/// Trains a classification RBM on the columns of `x` with their `labels` (and scores
/// `held_out` every epoch): [`train`] on the joint machine with the labels beside the inputs,
/// `config.labels` set to the model's classes and the objective of `config`
/// ([`TrainConfig::classifier`] for Larochelle & Bengio's).
pub fn train_classifier<R: Flow>(
    model: &mut ClassRbm,
    (x, labels): (&DMatrix<f32>, &[usize]),
    held_out: Option<(&DMatrix<f32>, &[usize])>,
    config: &TrainConfig,
    monitor: impl FnMut(&EpochMetrics) -> R,
) -> Result<Vec<EpochMetrics>> {
    let data = model.joint(x, Some(labels))?;
    let held_out = held_out.map(|(x, y)| model.joint(x, Some(y))).transpose()?;
    let config = TrainConfig {
        labels: model.num_classes(),
        ..config.clone()
    };
    train(
        model.machine_mut(),
        &data,
        held_out.as_ref(),
        &config,
        monitor,
    )
}

/// Checks that a checkpoint can continue under `config` on `data`.
fn check_resumable<V: Layer, H: Layer>(
    saved: &Checkpoint<V, H>,
    config: &TrainConfig,
    data: DMatrixView<'_, f32>,
) -> Result<()> {
    if saved.epoch > config.epochs {
        return Err(Error::invalid(
            "epochs",
            format!(
                "{}, but the checkpoint has {} epochs done; ask for at least as many",
                config.epochs, saved.epoch
            ),
        ));
    }
    if let Some((setting, was, now)) = first_difference(&saved.settings, &config.shaping_settings())
    {
        return Err(Error::invalid(
            "training configuration",
            format!(
                "`{setting}` is {now}, but the run that wrote the checkpoint had {was} (only `epochs` and `checkpoint` may change)"
            ),
        ));
    }
    if saved.order.len() != data.ncols() {
        return Err(Error::shape(
            "training data",
            format!("{} examples, as in the checkpoint", saved.order.len()),
            format!("{} examples", data.ncols()),
        ));
    }
    Ok(())
}

/// Whether `order` holds each of `0, …, order.len() − 1` once.
fn is_permutation(order: &[usize]) -> bool {
    let mut seen = vec![false; order.len()];
    order
        .iter()
        .all(|&i| i < seen.len() && !std::mem::replace(&mut seen[i], true))
}

/// The first setting that differs between two JSON objects of settings (a top-level key,
/// then its value in the first and in the second), or `None` if they agree.
fn first_difference(saved: &str, now: &str) -> Option<(String, String, String)> {
    let parse = |s: &str| match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    let (a, b) = (parse(saved), parse(now));
    let shown = |v: Option<&serde_json::Value>| v.map_or("nothing".into(), |v| v.to_string());
    a.keys()
        .chain(b.keys())
        .find(|k| a.get(*k) != b.get(*k))
        .map(|k| (k.clone(), shown(a.get(k)), shown(b.get(k))))
}

/// Everything a training run carries from one epoch to the next, saved by [`train`] and read
/// by [`resume`]: parameters, optimiser state, the sampler's chains with their random streams,
/// the order of the examples and the number of epochs done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Checkpoint<V: Layer, H: Layer> {
    machine: Dbm<V, H>,
    epoch: usize,
    /// [`TrainConfig::shaping_settings`] of the run that wrote it.
    settings: String,
    optimiser: Optimiser,
    sampler: Sampler<V, H>,
    order: Vec<usize>,
    trajectory: Option<TrajectoryAis>,
}

impl<V: Layer, H: Layer> Checkpoint<V, H> {
    /// Epochs completed when the checkpoint was written.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// The model at that point.
    pub fn machine(&self) -> &Dbm<V, H> {
        &self.machine
    }
}

impl<V: Layer, H: Layer> Checkpoint<V, H> {
    /// The kind of checkpoint file, by the machine's layer kinds.
    fn kind() -> String {
        format!("checkpoint/{}/{}", V::kind(), H::kind())
    }

    /// Saves the checkpoint, atomically, as a model file of its kind: the matrices as tensors,
    /// the rest (epoch, settings, chains' random streams, example order, …) as JSON.
    fn save(&self, path: &std::path::Path) -> Result<()> {
        self.check()?;
        crate::io::tensors::write_state(path, &Self::kind(), self)
    }

    /// Loads a checkpoint file written by training and checks it.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let saved: Self = crate::io::tensors::read_state(path, &Self::kind())?;
        saved.check()?;
        Ok(saved)
    }

    fn check(&self) -> Result<()> {
        self.machine.check()?;
        if !self.optimiser.fits(&self.machine.layer_sizes()) || !is_permutation(&self.order) {
            return Err(Error::invalid(
                "checkpoint",
                "optimiser state or example order does not fit the model",
            ));
        }
        self.optimiser.check_finite()?;
        if let Some(t) = &self.trajectory {
            t.check(&self.machine)?;
        }
        Ok(())
    }
}

impl<V: Layer, H: Layer> Checkpoint<V, H> {
    /// Checks that the saved state is what `config` trains with: the same negative phase with
    /// chains that fit the model, trajectory runs and centering offsets exactly when configured.
    fn fits(&self, config: &TrainConfig) -> Result<()> {
        let m = &self.machine;
        let count = |what: &'static str, expected: usize, found: usize| {
            if expected == found {
                Ok(())
            } else {
                Err(Error::shape(what, expected, found))
            }
        };
        match (&self.sampler, &config.negative) {
            (Sampler::Restarted(c), NegativePhase::Cd { .. }) => {
                c.check_fits(m, false)?;
                count("CD chains (the minibatch size)", config.batch_size, c.len())
            }
            (Sampler::Persistent(c), NegativePhase::Pcd { chains, .. }) => {
                c.check(m)?;
                count("persistent chains", *chains, c.len())
            }
            (
                Sampler::Fast {
                    chains: c, fast, ..
                },
                NegativePhase::FastPcd { chains, .. },
            ) => {
                c.check(m)?;
                fast.check()?;
                if fast.layer_sizes() != m.layer_sizes() {
                    return Err(Error::shape(
                        "fast weights (units per layer)",
                        format!("{:?}", m.layer_sizes()),
                        format!("{:?}", fast.layer_sizes()),
                    ));
                }
                count("persistent chains", *chains, c.len())
            }
            (Sampler::Tempering(pt), NegativePhase::Tempering { chains, betas, .. }) => {
                pt.check(m)?;
                if pt.betas() != betas.as_slice() {
                    return Err(Error::invalid(
                        "temperature ladder",
                        "the checkpoint's differs from the configuration's",
                    ));
                }
                count("chains per temperature", *chains, pt.chains().len())
            }
            (saved, _) => Err(Error::invalid(
                "negative phase",
                format!(
                    "the checkpoint holds {} chains; the configuration asks for {:?}",
                    saved.name(),
                    config.negative
                ),
            )),
        }?;
        if self.trajectory.as_ref().map(TrajectoryAis::settings) != config.trajectory.as_ref() {
            return Err(Error::invalid(
                "trajectory AIS",
                "the checkpoint's runs do not match the configuration's trajectory settings",
            ));
        }
        if self.optimiser.offsets.is_some() != config.centering.is_some() {
            return Err(Error::invalid(
                "centering",
                "the checkpoint's offsets do not match the configuration's centering",
            ));
        }
        Ok(())
    }
}

/// A minibatch's estimate of the gradient of the objective: `positive.0` times the data's
/// statistics (from the states in `positive.1`, one matrix per layer and one column per
/// example), less `chains.0` times the model's from a sampler's chains and less the model
/// expectations `expected` given in full (the classification RBM's `E_{p(y, h | x)}`).
struct Gradient<'a> {
    positive: (f32, &'a [DMatrix<f32>]),
    chains: Option<(f32, &'a [DMatrix<f32>])>,
    expected: Option<&'a Statistics>,
}

impl Gradient<'_> {
    /// The mean of every layer in the data's statistics.
    fn data_means(&self) -> Vec<DVector<f32>> {
        self.positive.1.iter().map(|p| p.column_mean()).collect()
    }

    /// The gradient of the biases of layer `l`.
    fn bias(&self, l: usize) -> DVector<f32> {
        let (w, positive) = self.positive;
        let mut g = positive[l].column_mean() * w;
        if let Some((w, negative)) = self.chains {
            g -= negative[l].column_mean() * w;
        }
        if let Some(e) = self.expected {
            g -= &e.biases[l];
        }
        g
    }

    /// `acc ← beta·acc + lr·∇W_{l+1}`.
    fn accumulate_weights(&self, l: usize, acc: &mut DMatrix<f32>, beta: f32, lr: f32) {
        let (w, positive) = self.positive;
        let mut terms = vec![(
            lr * w / positive[l].ncols() as f32,
            positive[l].as_slice(),
            positive[l + 1].as_slice(),
        )];
        if let Some((w, negative)) = self.chains {
            let scale = -lr * w / negative[l].ncols() as f32;
            terms.push((scale, negative[l].as_slice(), negative[l + 1].as_slice()));
        }
        let rows = acc.nrows();
        correlate_into(acc.as_mut_slice(), rows, beta, &terms);
        if let Some(e) = self.expected {
            par_zip_apply(acc.as_mut_slice(), e.weights[l].as_slice(), |a, e| {
                *a -= lr * e
            });
        }
    }
}

/// Momentum SGD on every coupling and bias (of the centered parameters when centering), with
/// weight decay, a sparsity pull and max-norm: the velocities, each layer's running mean
/// activity for the sparsity target, and the centering offsets of every layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Optimiser {
    #[serde(with = "crate::io::checked::matrices")]
    velocity: Vec<DMatrix<f32>>,
    bias_velocity: Vec<DVector<f32>>,
    activity: Vec<DVector<f32>>,
    offsets: Option<Vec<DVector<f32>>>,
}

impl Optimiser {
    /// Zero velocities for a machine of `sizes` units per layer, activities at the sparsity
    /// target, and `offsets` if centering.
    fn new(sizes: &[usize], config: &TrainConfig, offsets: Option<Vec<DVector<f32>>>) -> Self {
        let target = config.sparsity.as_ref().map_or(0.0, |s| s.target);
        Optimiser {
            velocity: sizes
                .windows(2)
                .map(|p| DMatrix::zeros(p[0], p[1]))
                .collect(),
            bias_velocity: sizes.iter().map(|&s| DVector::zeros(s)).collect(),
            activity: sizes
                .iter()
                .map(|&s| DVector::from_element(s, target))
                .collect(),
            offsets,
        }
    }

    /// Whether every part has the shape of a machine of `sizes` units per layer.
    fn fits(&self, sizes: &[usize]) -> bool {
        let vectors = [
            Some(&self.bias_velocity),
            Some(&self.activity),
            self.offsets.as_ref(),
        ];
        self.velocity.len() + 1 == sizes.len()
            && self
                .velocity
                .iter()
                .zip(sizes.windows(2))
                .all(|(v, p)| v.shape() == (p[0], p[1]))
            && vectors
                .iter()
                .flatten()
                .all(|x| x.iter().map(|b| b.len()).eq(sizes.iter().copied()))
    }

    fn check_finite(&self) -> Result<()> {
        for v in &self.velocity {
            check_finite("momentum of the weights", v.as_slice())?;
        }
        let vectors = self.bias_velocity.iter().chain(&self.activity);
        for v in vectors.chain(self.offsets.iter().flatten()) {
            check_finite("optimiser state", v.as_slice())?;
        }
        Ok(())
    }

    /// One momentum-SGD step on `gradient`, the estimate for every coupling and bias, with
    /// weight decay `−decay·W_l` added.
    fn update<V: Layer, H: Layer>(
        &mut self,
        m: &mut Dbm<V, H>,
        gradient: &Gradient<'_>,
        (lr, momentum): (f32, f32),
        config: &TrainConfig,
    ) {
        let data_means = gradient.data_means();
        let mut bias_grads: Vec<DVector<f32>> =
            (0..data_means.len()).map(|l| gradient.bias(l)).collect();
        // vel_W ← momentum·vel_W + lr·∇W, centered if asked.
        for (l, vel) in self.velocity.iter_mut().enumerate() {
            gradient.accumulate_weights(l, vel, momentum, lr);
        }
        if let (Some(offsets), Some(c)) = (&mut self.offsets, &config.centering) {
            for (offset, mean) in offsets.iter_mut().zip(&data_means) {
                track(offset, mean, c.rate);
            }
            let steps: Vec<DVector<f32>> = bias_grads.iter().map(|g| g * lr).collect();
            let offsets: Vec<&DVector<f32>> = offsets.iter().collect();
            center_gradients(
                &mut self.velocity.iter_mut().collect::<Vec<_>>(),
                &steps,
                &offsets,
            );
        }
        // The sparsity pull acts through each hidden layer's biases and incoming weights.
        if let Some(s) = &config.sparsity {
            for l in 1..data_means.len() {
                self.activity[l] = &self.activity[l] * s.decay + &data_means[l] * (1.0 - s.decay);
                let pull = self.activity[l].map(|q| s.cost * (s.target - q));
                bias_grads[l] += &pull;
                self.velocity[l - 1].ger(lr, &data_means[l - 1], &pull, 1.0);
            }
        }
        for (vel, grad) in self.bias_velocity.iter_mut().zip(&bias_grads) {
            *vel = &*vel * momentum + grad * lr;
        }
        // Weight decay `vel_W −= lr·decay·W`, then `W += vel_W`, in one pass over both.
        let decay = lr * config.weight_decay;
        for (w, vel) in m.weights_mut().iter_mut().zip(&mut self.velocity) {
            let (w, vel) = (w.as_mut_slice(), vel.as_mut_slice());
            if decay > 0.0 {
                par_zip_apply_mut(w, vel, |w, v| {
                    *v -= decay * *w;
                    *w += *v;
                });
            } else {
                par_zip_apply_mut(w, vel, |w, v| *w += *v);
            }
        }
        let plain_steps = self.offsets.as_ref().map(|offsets| {
            plain_bias_steps(
                &self.velocity.iter().collect::<Vec<_>>(),
                &self.bias_velocity,
                &offsets.iter().collect::<Vec<_>>(),
            )
        });
        let bias_steps = plain_steps.as_deref().unwrap_or(&self.bias_velocity);
        for (l, step) in bias_steps.iter().enumerate() {
            *m.layer_bias_mut(l) += step;
        }
        if let Some(c) = config.max_norm {
            m.weights_mut().iter_mut().for_each(|w| max_norm(w, c));
        }
    }
}

/// The chains of the negative phase and whatever they carry between updates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
enum Sampler<V: Layer, H: Layer> {
    /// CD: chains restarted at every minibatch (only their random streams persist).
    Restarted(Chains),
    Persistent(Chains),
    /// Fast PCD: the fast parameters (as a machine of the same shape) and a buffer for the
    /// model plus them, which the chains sample from.
    Fast {
        chains: Chains,
        fast: Dbm<V, H>,
        #[serde(skip)]
        combined: Option<Dbm<V, H>>,
    },
    Tempering(ParallelTempering),
}

impl<V: Layer, H: Layer> Sampler<V, H> {
    fn name(&self) -> &'static str {
        match self {
            Sampler::Restarted(_) => "CD",
            Sampler::Persistent(_) => "PCD",
            Sampler::Fast { .. } => "fast PCD",
            Sampler::Tempering(_) => "parallel tempering",
        }
    }

    fn new(m: &Dbm<V, H>, config: &TrainConfig, data: DMatrixView<'_, f32>) -> Result<Self> {
        let seed = stream(config.seed, STREAM_PCD).next_u64();
        let sizes = m.layer_sizes();
        let persistent = |chains: usize| -> Result<Chains> {
            if config.chains_from_data {
                chains_at_data(m, data, chains, config)
            } else {
                Chains::random(m, chains, seed)
            }
        };
        Ok(match &config.negative {
            NegativePhase::Cd { .. } => Sampler::Restarted(Chains::unchecked(
                &sizes,
                DMatrix::zeros(sizes[0], config.batch_size),
                stream(config.seed, STREAM_CD).next_u64(),
            )),
            NegativePhase::Pcd { chains, .. } => Sampler::Persistent(persistent(*chains)?),
            NegativePhase::FastPcd { chains, .. } => {
                let mut fast = m.clone();
                fast.weights_mut().iter_mut().for_each(|w| w.fill(0.0));
                (0..sizes.len()).for_each(|l| fast.layer_bias_mut(l).fill(0.0));
                Sampler::Fast {
                    chains: persistent(*chains)?,
                    fast,
                    combined: None,
                }
            }
            NegativePhase::Tempering { chains, betas, .. } => {
                // The hottest rung samples the data's base rates: far closer to the model than
                // the uniform distribution, so swaps with it are accepted.
                let base = base_rate_layer(m.visible(), data, 0.05 * data.ncols() as f64)?
                    .bias()
                    .clone();
                Sampler::Tempering(ParallelTempering::new(
                    m,
                    betas.clone(),
                    Some(base),
                    *chains,
                    seed,
                )?)
            }
        })
    }

    /// Runs the negative phase for one update. CD's chains start at the data, so for one
    /// hidden layer their first step gives the data's hidden means too: then they are written
    /// into `data_hidden` and the result is true.
    fn run(
        &mut self,
        m: &Dbm<V, H>,
        scale: InputScale,
        data: &DMatrix<f32>,
        k: usize,
        data_hidden: &mut DMatrix<f32>,
    ) -> Result<bool> {
        let unscaled = |what| {
            if scale == InputScale::ONE {
                Ok(())
            } else {
                Err(Error::invalid(
                    "negative phase",
                    format!(
                        "{what} is not available for RBMs with scaled inputs (DBM pretraining)"
                    ),
                ))
            }
        };
        let scaled = Scaled { machine: m, scale };
        match self {
            Sampler::Restarted(chains) => {
                chains.set_visible(data.as_slice());
                if m.num_layers() == 2 {
                    let means = Some(data_hidden.as_mut_slice());
                    chains.sweep_keeping_means(&scaled, k, means)?;
                    Ok(k > 0)
                } else {
                    chains.sweep(&scaled, k).map(|_| false)
                }
            }
            Sampler::Persistent(chains) => chains.sweep(&scaled, k).map(|_| false),
            Sampler::Fast {
                chains,
                fast,
                combined,
            } => {
                unscaled("fast PCD")?;
                let sum = combined.get_or_insert_with(|| m.clone());
                for ((s, w), f) in sum
                    .weights_mut()
                    .iter_mut()
                    .zip(m.couplings())
                    .zip(fast.couplings())
                {
                    s.zip_zip_apply(w, f, |s, w, f| *s = w + f);
                }
                for l in 0..m.num_layers() {
                    let b = m.layer_bias(l) + fast.layer_bias(l);
                    sum.layer_bias_mut(l).copy_from(&b);
                }
                chains.sweep(&*sum, k).map(|_| false)
            }
            Sampler::Tempering(pt) => {
                unscaled("parallel tempering")?;
                pt.sweep(m, k).map(|_| false)
            }
        }
    }

    /// The chains whose states give the model statistics.
    fn chains(&self) -> &Chains {
        match self {
            Sampler::Restarted(chains)
            | Sampler::Persistent(chains)
            | Sampler::Fast { chains, .. } => chains,
            Sampler::Tempering(pt) => pt.chains(),
        }
    }

    /// Fast PCD's step of the fast parameters after the update of the model:
    /// `θ ← decay·θ + lr·gradient`.
    fn learn_fast(&mut self, gradient: &Gradient<'_>, config: &NegativePhase) {
        let (Sampler::Fast { fast, .. }, NegativePhase::FastPcd { fast: rates, .. }) =
            (self, config)
        else {
            return;
        };
        let (lr, decay) = (rates.learning_rate, rates.decay);
        for (l, w) in fast.weights_mut().iter_mut().enumerate() {
            gradient.accumulate_weights(l, w, decay, lr);
        }
        for l in 0..fast.num_layers() {
            let step = gradient.bias(l) * lr;
            let b = fast.layer_bias_mut(l);
            *b = &*b * decay + step;
        }
    }

    fn swap_rates(&self) -> Option<Vec<f64>> {
        match self {
            Sampler::Tempering(pt) => Some(pt.swap_rates()),
            _ => None,
        }
    }
}

/// Persistent chains started at the first `chains` training examples (repeated if there are
/// fewer; binarised if the configuration binarises), their hidden layers filled in by one sweep.
fn chains_at_data<V: Layer, H: Layer>(
    m: &Dbm<V, H>,
    data: DMatrixView<'_, f32>,
    chains: usize,
    config: &TrainConfig,
) -> Result<Chains> {
    let n = data.ncols();
    let mut v0 = DMatrix::from_fn(data.nrows(), chains, |i, c| data[(i, c % n)]);
    if config.binarize {
        binarize_in_place(
            v0.as_mut_slice(),
            stream(config.seed, STREAM_CHAIN_STARTS).next_u64(),
        )?;
    }
    let mut chains = Chains::from_visible(m, v0, stream(config.seed, STREAM_PCD).next_u64())?;
    chains.sweep(m, 1)?;
    Ok(chains)
}

/// The data's posterior means of every hidden layer, into `states[1..]` (`states[0]` holds the
/// data): exact for one hidden layer (with scaled inputs when pretraining), mean-field for more.
fn positive_phase<V: Layer, H: Layer>(
    m: &Dbm<V, H>,
    scale: InputScale,
    mean_field: &MeanField,
    states: &mut [DMatrix<f32>],
) -> Result<()> {
    if m.num_layers() == 2 {
        let (v, h) = states.split_at_mut(1);
        Scaled { machine: m, scale }.hidden_mean_into(v[0].as_slice(), h[0].as_mut_slice());
    } else {
        let mu = m.mean_field(&states[0], mean_field)?;
        for (x, mu) in states[1..].iter_mut().zip(mu) {
            *x = mu;
        }
    }
    Ok(())
}

/// The chains' states with every odd layer replaced by its conditional mean given the even
/// ones (Rao-Blackwellised model statistics), into `negative`.
fn negative_statistics<V: Layer, H: Layer>(
    m: &Dbm<V, H>,
    scale: InputScale,
    chains: &Chains,
    negative: &mut [DMatrix<f32>],
) -> Result<()> {
    for (x, c) in negative.iter_mut().zip(chains.layers()).step_by(2) {
        x.clone_from(c);
    }
    if m.num_layers() == 2 {
        let (v, h) = negative.split_at_mut(1);
        Scaled { machine: m, scale }.hidden_mean_into(v[0].as_slice(), h[0].as_mut_slice());
    } else {
        for l in (1..negative.len()).step_by(2) {
            negative[l] = m.conditional_mean(l, negative)?;
        }
    }
    Ok(())
}

/// [`train`] for a machine whose inputs may be scaled (greedy DBM pretraining), optionally
/// continuing from a checkpoint. Exact log-likelihoods and trajectory AIS are for unscaled
/// machines only.
pub(crate) fn run<V: Layer, H: Layer, R: Flow>(
    m: &mut Dbm<V, H>,
    scale: InputScale,
    data: DMatrixView<'_, f32>,
    held_out: Option<&DMatrix<f32>>,
    config: &TrainConfig,
    resumed: Option<Checkpoint<V, H>>,
    mut monitor: impl FnMut(&EpochMetrics) -> R,
) -> Result<Vec<EpochMetrics>> {
    config.validate()?;
    m.check()?;
    if scale != InputScale::ONE && m.num_layers() != 2 {
        return Err(Error::invalid(
            "input scale",
            "scaled inputs are for machines of one hidden layer (greedy pretraining)",
        ));
    }
    let sizes = m.layer_sizes();
    let n = data.ncols();
    if n == 0 {
        return Err(Error::Empty {
            what: "training data",
        });
    }
    m.check_examples("training data", data, sizes[0])?;
    check_labelled(m, data, config.labels, "training data")?;
    if let Some(h) = held_out {
        m.check_batch("held-out data", h, sizes[0])?;
        check_labelled(m, h.as_view(), config.labels, "held-out data")?;
        if h.ncols() == 0 {
            return Err(Error::Empty {
                what: "held-out data",
            });
        }
    }
    let batch = config.batch_size;
    if batch > n {
        return Err(Error::invalid(
            "batch size",
            format!("{batch} exceeds the {n} training examples"),
        ));
    }
    let seed = config.seed;
    let monitor_set = |x: DMatrixView<'_, f32>| -> Result<DMatrix<f32>> {
        let mut m = x
            .columns(0, config.monitor_examples.clamp(1, x.ncols()))
            .into_owned();
        if config.binarize {
            binarize_in_place(m.as_mut_slice(), stream(seed, STREAM_MONITOR).next_u64())?;
        }
        Ok(m)
    };
    let monitor_train = monitor_set(data)?;
    let monitor_held_out = held_out.map(|h| monitor_set(h.as_view())).transpose()?;
    let zeros = |cols: usize| -> Vec<DMatrix<f32>> {
        sizes.iter().map(|&s| DMatrix::zeros(s, cols)).collect()
    };

    let mut run = match resumed {
        Some(checkpoint) => checkpoint,
        None => {
            if config.init_visible_bias {
                m.set_visible_bias_from_data(data)?;
            }
            // The monitor examples' posterior means: centering's first offsets of the hidden
            // layers, and the base rates that trajectory AIS starts from.
            let mut monitored = zeros(monitor_train.ncols());
            let trajectory_wanted = config.trajectory.is_some() && scale == InputScale::ONE;
            if config.centering.is_some() || trajectory_wanted {
                monitored[0].copy_from(&monitor_train);
                positive_phase(m, scale, &config.mean_field, &mut monitored)?;
            }
            let offsets = config.centering.as_ref().map(|_| {
                std::iter::once(data.column_mean())
                    .chain(monitored[1..].iter().map(|x| x.column_mean()))
                    .collect()
            });
            let trajectory = match &config.trajectory {
                Some(t) if scale == InputScale::ONE => {
                    let mut start = m.clone();
                    for (l, x) in monitored.iter().enumerate() {
                        start.set_layer_bias_from_mean(l, x.column_mean().as_slice());
                    }
                    let seed = stream(seed, STREAM_TRAJECTORY).next_u64();
                    Some(TrajectoryAis::start(&start, m, t, seed)?)
                }
                _ => None,
            };
            Checkpoint {
                machine: m.clone(),
                epoch: 0,
                settings: config.shaping_settings(),
                optimiser: Optimiser::new(&sizes, config, offsets),
                sampler: Sampler::new(m, config, data)?,
                order: (0..n).collect(),
                trajectory,
            }
        }
    };
    let mut positive = zeros(batch);
    let chains = config.negative.persistent_chains().unwrap_or(batch);
    let mut negative = zeros(chains);

    let batches = n / batch;
    let (discriminative, generative) = config.objective.weights();
    let mut history = Vec::with_capacity(config.epochs);
    for epoch in run.epoch + 1..=config.epochs {
        let start = Instant::now();
        let before = m.clone();
        let lr = config.learning_rate.at(epoch);
        let momentum = config.momentum.at(epoch);
        let k = config.negative.steps(epoch);
        shuffle(
            &mut run.order,
            &mut stream(seed, STREAM_SHUFFLE + epoch as u64),
        );
        // The minibatches run on a worker of the thread pool, so that their many short
        // parallel steps start there instead of being handed over from this thread each time.
        rayon::scope(|_| -> Result<()> {
            for (b, idx) in run.order.chunks_exact(batch).take(batches).enumerate() {
                for (c, &i) in idx.iter().enumerate() {
                    positive[0].column_mut(c).copy_from(&data.column(i));
                }
                if config.binarize {
                    let draw = STREAM_BINARIZE + (epoch * batches + b) as u64;
                    binarize_in_place(positive[0].as_mut_slice(), stream(seed, draw).next_u64())?;
                }
                let (v, h) = positive.split_at_mut(1);
                let data_hidden_done =
                    generative > 0.0 && run.sampler.run(m, scale, &v[0], k, &mut h[0])?;
                if !data_hidden_done {
                    positive_phase(m, scale, &config.mean_field, &mut positive)?;
                }
                if generative > 0.0 {
                    negative_statistics(m, scale, run.sampler.chains(), &mut negative)?;
                }
                let expected = (discriminative > 0.0)
                    .then(|| expected_given_inputs(m, &positive[0], config.labels));
                let gradient = Gradient {
                    positive: (discriminative + generative, &positive),
                    chains: (generative > 0.0).then_some((generative, &negative[..])),
                    expected: expected.as_ref(),
                };
                run.optimiser.update(m, &gradient, (lr, momentum), config);
                run.sampler.learn_fast(&gradient, &config.negative);
            }
            Ok(())
        })?;
        let seconds = start.elapsed().as_secs_f64();
        let fast = match &run.sampler {
            Sampler::Fast { fast, .. } => fast.check().err().map(|_| "fast weights"),
            _ => None,
        };
        if let Some(what) = m.check().err().map(|_| "parameters").or(fast) {
            *m = before;
            return Err(Error::Diverged { epoch, what });
        }
        let log_z = match &mut run.trajectory {
            Some(t) => Some((t.advance(&before, m)?, t.effective_sample_size())),
            None => None,
        };
        let monitored = (&monitor_train, monitor_held_out.as_ref());
        let metrics = measure(m, monitored, config, scale == InputScale::ONE, log_z)?;
        let metrics = EpochMetrics {
            epoch,
            learning_rate: lr,
            momentum,
            k,
            seconds,
            swap_rates: run.sampler.swap_rates(),
            ..metrics
        };
        if let Sampler::Tempering(pt) = &mut run.sampler {
            pt.reset_swap_counts();
        }
        run.epoch = epoch;
        if let Some(c) = &config.checkpoint
            && c.due(epoch, config.epochs)
        {
            run.machine.clone_from(m);
            run.save(&c.path)?;
        }
        let stop = monitor(&metrics).stops();
        history.push(metrics);
        if stop {
            break;
        }
    }
    Ok(history)
}

/// Fisher–Yates shuffle.
fn shuffle(order: &mut [usize], rng: &mut crate::kernels::ChainRng) {
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
}

/// `ln p*(v)` of each column of `v` (exact `−F(v)` for one hidden layer, the mean-field bound
/// for more) and the first hidden layer's posterior means.
fn unnormalised_and_means<V: Layer, H: Layer>(
    m: &Dbm<V, H>,
    v: &DMatrix<f32>,
    mean_field: &MeanField,
) -> Result<(DVector<f64>, DMatrix<f32>)> {
    if m.num_layers() == 2 {
        let mut h = DMatrix::zeros(m.layer_sizes()[1], v.ncols());
        Scaled {
            machine: m,
            scale: InputScale::ONE,
        }
        .hidden_mean_into(v.as_slice(), h.as_mut_slice());
        let f = m.free_energy(&m.zero_states_with_visible(v), crate::dbm::Parity::Odd)?;
        Ok((-f, h))
    } else {
        let mu = m.mean_field(v, mean_field)?;
        let bound = m.variational_bound_unnormalised(v, &mu)?;
        Ok((bound, mu.into_iter().next().expect("a hidden layer")))
    }
}

/// Per-epoch metrics on the monitor subsets (exact ones only for unscaled machines).
fn measure<V: Layer, H: Layer>(
    m: &Dbm<V, H>,
    (train, held_out): (&DMatrix<f32>, Option<&DMatrix<f32>>),
    config: &TrainConfig,
    unscaled: bool,
    trajectory_log_z: Option<(f64, f64)>,
) -> Result<EpochMetrics> {
    let (lp_train, mu) = unnormalised_and_means(m, train, &config.mean_field)?;
    let mut recon = DMatrix::zeros(train.nrows(), train.ncols());
    m.neighbour_inputs(0, None, Some(mu.as_slice()), recon.as_mut_slice());
    m.visible().mean(recon.as_mut_slice());
    let recon_error = (train - recon).norm_squared() as f64 / train.ncols() as f64;
    let lp_held_out = match held_out {
        Some(h) => Some(unnormalised_and_means(m, h, &config.mean_field)?.0),
        None => None,
    };
    let free_energy_gap = lp_held_out.as_ref().map(|h| lp_train.mean() - h.mean());
    let trajectory = trajectory_log_z.map(|(log_z, ess)| TrajectoryEstimate {
        log_z,
        effective_sample_size: ess,
        train_log_likelihood: lp_train.mean() - log_z,
        held_out_log_likelihood: lp_held_out.as_ref().map(|h| h.mean() - log_z),
    });
    let (mut train_ll, mut held_out_ll, mut train_lb) = (None, None, None);
    let examples = train.ncols() + held_out.map_or(0, |h| h.ncols());
    if unscaled
        && enumerable_within(m, MAX_EXACT_MONITOR_STATES)
        && unnormalised_enumerable_within(m, examples, MAX_EXACT_MONITOR_STATES)
    {
        let log_z = log_partition_exact(m)?;
        let exact =
            |x: &DMatrix<f32>| -> Result<f64> { Ok(log_unnormalised_exact(m, x)?.mean() - log_z) };
        train_ll = Some(exact(train)?);
        held_out_ll = held_out.map(exact).transpose()?;
        if m.num_layers() > 2 {
            train_lb = Some(lp_train.mean() - log_z);
        }
    }
    let classification = (config.labels > 0).then(|| {
        let (train_log_likelihood, train_error) = classification_score(m, train, config.labels);
        Classification {
            train_log_likelihood,
            train_error,
            held_out_error: held_out.map(|h| classification_score(m, h, config.labels).1),
        }
    });
    Ok(EpochMetrics {
        epoch: 0,
        learning_rate: 0.0,
        momentum: 0.0,
        k: 0,
        recon_error,
        log_unnormalised: lp_train.mean(),
        free_energy_gap,
        train_log_likelihood: train_ll,
        held_out_log_likelihood: held_out_ll,
        train_lower_bound: train_lb,
        seconds: 0.0,
        swap_rates: None,
        trajectory,
        classification,
    })
}

/// Scales every column of `w` (a unit's incoming weights from the layer below) longer than `c`
/// back to length `c`.
fn max_norm(w: &mut DMatrix<f32>, c: f32) {
    for mut col in w.column_iter_mut() {
        let norm = col.norm();
        if norm > c {
            col *= c / norm;
        }
    }
}
