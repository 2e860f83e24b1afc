//! Training RBMs by contrastive divergence (CD-k) and persistent CD (PCD).
//!
//! Data flow: dataset → shuffled minibatches → positive statistics `⟨v hᵀ⟩_data` (hidden means
//! given the data) and negative statistics `⟨v hᵀ⟩_model` (from Gibbs chains) → gradient →
//! momentum SGD → parameters.

mod config;
mod dbm;

pub use config::{
    Centering, Checkpointing, FastWeights, LearningRate, MAX_EPOCHS, Momentum, NegativePhase,
    Sparsity, Steps, TrainConfig,
};
pub use dbm::{
    DbmCheckpoint, DbmEpochMetrics, DbmTrainConfig, Pretrained, pretrain, pretraining_scale,
    resume_dbm, train_dbm,
};

use crate::centering::Offsets;
use crate::data::binarize_in_place;
use crate::error::{Error, Result, check_finite};
use crate::gibbs::Chains;
use crate::kernels::{correlate_into, par_zip_apply, stream};
use crate::layer::Layer;
use crate::partition::{LogLikelihood, TrajectoryAis, base_rate_layer, log_partition_exact};
use crate::rbm::{InputScale, Rbm};
use crate::tempering::ParallelTempering;
use nalgebra::{DMatrix, DVector};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Hidden layers of at most this many units are small enough to monitor the exact
/// log-likelihood every epoch.
pub const MAX_EXACT_MONITOR_HIDDEN: usize = 20;

/// What [`train`] reports after each epoch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochMetrics {
    /// The epoch just finished, counted from 1.
    pub epoch: usize,
    pub learning_rate: f32,
    pub momentum: f32,
    /// Gibbs sweeps per update in this epoch.
    pub k: usize,
    /// Mean squared reconstruction error per example, `‖v − E[v | E[h | v]]‖²`, on the training
    /// monitor subset.
    pub recon_error: f64,
    /// Mean free energy of held-out examples minus that of training examples (monitor subsets):
    /// it grows when the model overfits.
    pub free_energy_gap: Option<f64>,
    /// Exact average log-likelihood (nats) of the training monitor subset, for hidden layers of
    /// at most [`MAX_EXACT_MONITOR_HIDDEN`] units.
    pub train_log_likelihood: Option<f64>,
    /// The same on the held-out monitor subset.
    pub held_out_log_likelihood: Option<f64>,
    /// Wall time of the epoch's updates (without the metrics), in seconds.
    pub seconds: f64,
    /// With parallel tempering: the swap acceptance rate of each neighbouring pair of rungs in
    /// this epoch.
    pub swap_rates: Option<Vec<f64>>,
    /// With [`TrainConfig::trajectory`]: `ln Ẑ` by trajectory AIS and the log-likelihoods it
    /// gives.
    pub trajectory: Option<TrajectoryEstimate>,
}

/// `ln Ẑ` of the model after an epoch, followed along training by [`TrajectoryAis`], and the
/// average log-probabilities of the monitor subsets it gives.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrajectoryEstimate {
    pub log_z: f64,
    /// Effective sample size of the runs' current weights.
    pub effective_sample_size: f64,
    /// `mean(−F(v)) − ln Ẑ` on the training monitor subset (for a DBM: the mean-field lower
    /// bound).
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
/// The binarisation of the DBM's persistent chains' starting images.
const STREAM_CHAIN_STARTS: u64 = 6 << 40;
const STREAM_TRAJECTORY: u64 = 9 << 40;

/// Trains `rbm` on the columns of `data` (`visible × N`), calling `monitor` after every epoch.
/// `held_out` (optional) feeds the free-energy gap and held-out log-likelihood.
///
/// The configuration is validated and the data checked before any work. If the parameters
/// become non-finite, training stops with [`Error::Diverged`] and `rbm` is left as it was after
/// the last good epoch. With [`TrainConfig::checkpoint`] set, a [`Checkpoint`] is saved as
/// configured, from which [`resume`] continues.
pub fn train<V: Layer, H: Layer>(
    rbm: &mut Rbm<V, H>,
    data: &DMatrix<f32>,
    held_out: Option<&DMatrix<f32>>,
    config: &TrainConfig,
    monitor: impl FnMut(&EpochMetrics),
) -> Result<Vec<EpochMetrics>> {
    train_scaled(rbm, InputScale::ONE, data, held_out, config, None, monitor)
}

/// Continues the run saved in the checkpoint file `checkpoint` up to `config.epochs` epochs in
/// total, leaving the model in `rbm`. The result is bit-identical to a run without a break. The
/// configuration must be the one that wrote the checkpoint (apart from `epochs` and
/// `checkpoint`), and `data` the same training set.
pub fn resume<V: Layer, H: Layer>(
    rbm: &mut Rbm<V, H>,
    checkpoint: impl AsRef<std::path::Path>,
    data: &DMatrix<f32>,
    held_out: Option<&DMatrix<f32>>,
    config: &TrainConfig,
    monitor: impl FnMut(&EpochMetrics),
) -> Result<Vec<EpochMetrics>> {
    let saved: Checkpoint<V, H> = crate::io::load(checkpoint)?;
    config.validate()?;
    check_resumable(
        (saved.config_digest, saved.epoch, saved.order.len()),
        config.digest(),
        config.epochs,
        data,
    )?;
    saved.fits(config)?;
    *rbm = saved.rbm.clone();
    train_scaled(
        rbm,
        InputScale::ONE,
        data,
        held_out,
        config,
        Some(saved),
        monitor,
    )
}

/// Checks that a checkpoint written under settings with fingerprint `saved_digest` after
/// `saved_epoch` epochs over `saved_examples` examples can continue under settings `digest` up
/// to `epochs` epochs on `data`.
fn check_resumable(
    (saved_digest, saved_epoch, saved_examples): (u64, usize, usize),
    digest: u64,
    epochs: usize,
    data: &DMatrix<f32>,
) -> Result<()> {
    if saved_epoch > epochs {
        return Err(Error::invalid(
            "epochs",
            format!(
                "{epochs}, but the checkpoint has {saved_epoch} epochs done; ask for at least as many"
            ),
        ));
    }
    if saved_digest != digest {
        return Err(Error::invalid(
            "training configuration",
            "differs from the one that wrote the checkpoint (only `epochs` and `checkpoint` may change)",
        ));
    }
    if saved_examples != data.ncols() {
        return Err(Error::shape(
            "training data",
            format!("{saved_examples} examples, as in the checkpoint"),
            format!("{} examples", data.ncols()),
        ));
    }
    Ok(())
}

/// Checks that a checkpoint holds centring offsets exactly when the configuration centres.
fn check_centring(saved: bool, configured: bool) -> Result<()> {
    if saved == configured {
        Ok(())
    } else {
        Err(Error::invalid(
            "centring",
            "the checkpoint's offsets do not match the configuration's centring",
        ))
    }
}

/// Whether `order` holds each of `0, …, order.len() − 1` once.
fn is_permutation(order: &[usize]) -> bool {
    let mut seen = vec![false; order.len()];
    order
        .iter()
        .all(|&i| i < seen.len() && !std::mem::replace(&mut seen[i], true))
}

/// A fingerprint of a settings value (through its `Debug` form).
fn digest_of(settings: &impl std::fmt::Debug) -> u64 {
    crate::io::fnv1a(format!("{settings:?}").as_bytes())
}

/// Everything a training run carries from one epoch to the next, saved by [`train`] and read
/// by [`resume`]: parameters, optimiser state, the sampler's chains with their random streams,
/// the order of the examples and the number of epochs done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Checkpoint<V: Layer, H: Layer> {
    rbm: Rbm<V, H>,
    epoch: usize,
    config_digest: u64,
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
    pub fn rbm(&self) -> &Rbm<V, H> {
        &self.rbm
    }
}

impl<V: Layer, H: Layer> crate::io::Model for Checkpoint<V, H> {
    fn kind() -> String {
        format!("checkpoint/{}", Rbm::<V, H>::kind())
    }

    fn shapes(&self) -> Vec<u64> {
        self.rbm.shapes()
    }

    fn check(&self) -> Result<()> {
        self.rbm.check()?;
        let (nv, nh) = (self.rbm.num_visible(), self.rbm.num_hidden());
        let o = &self.optimiser;
        let fits = o.vel_w.shape() == (nv, nh)
            && o.vel_bv.len() == nv
            && o.vel_bh.len() == nh
            && o.sparsity_q.len() == nh
            && o.offsets
                .as_ref()
                .is_none_or(|c| c.visible.len() == nv && c.hidden.len() == nh);
        if !fits || !is_permutation(&self.order) {
            return Err(Error::invalid(
                "checkpoint",
                "optimiser state or example order does not fit the model",
            ));
        }
        check_finite("momentum of the weights", o.vel_w.as_slice())?;
        check_finite("momentum of the visible biases", o.vel_bv.as_slice())?;
        check_finite("momentum of the hidden biases", o.vel_bh.as_slice())?;
        check_finite("sparsity estimates", o.sparsity_q.as_slice())?;
        if let Some(c) = &o.offsets {
            check_finite("centring offsets", c.visible.as_slice())?;
            check_finite("centring offsets", c.hidden.as_slice())?;
        }
        if let Some(t) = &self.trajectory {
            t.check(&self.rbm)?;
        }
        Ok(())
    }
}

impl<V: Layer, H: Layer> Checkpoint<V, H> {
    /// Checks that the saved state is what `config` trains with: the same negative phase with
    /// chains that fit the model, and centring offsets exactly when centring.
    fn fits(&self, config: &TrainConfig) -> Result<()> {
        let rbm = &self.rbm;
        let count = |what: &'static str, expected: usize, found: usize| {
            if expected == found {
                Ok(())
            } else {
                Err(Error::shape(what, expected, found))
            }
        };
        match (&self.sampler, &config.negative) {
            (Sampler::Restarted(c), NegativePhase::Cd { .. }) => {
                c.check_fits(rbm, false)?;
                count("CD chains (the minibatch size)", config.batch_size, c.len())
            }
            (Sampler::Persistent(c), NegativePhase::Pcd { chains, .. }) => {
                c.check(rbm)?;
                count("persistent chains", *chains, c.len())
            }
            (
                Sampler::Fast {
                    chains: c, fast, ..
                },
                NegativePhase::FastPcd { chains, .. },
            ) => {
                c.check(rbm)?;
                fast.check()?;
                if fast.weights().shape() != rbm.weights().shape() {
                    return Err(Error::shape(
                        "fast weights",
                        format!("{:?}", rbm.weights().shape()),
                        format!("{:?}", fast.weights().shape()),
                    ));
                }
                count("persistent chains", *chains, c.len())
            }
            (Sampler::Tempering(pt), NegativePhase::Tempering { chains, betas, .. }) => {
                pt.check(rbm)?;
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
        check_trajectory(self.trajectory.as_ref(), config.trajectory.as_ref())?;
        check_centring(self.optimiser.offsets.is_some(), config.centering.is_some())
    }
}

/// Momentum velocities (of the centred parameters when centring), the running sparsity
/// estimate and the centring offsets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Optimiser {
    #[serde(with = "crate::io::checked::matrix")]
    vel_w: DMatrix<f32>,
    vel_bv: DVector<f32>,
    vel_bh: DVector<f32>,
    sparsity_q: DVector<f32>,
    offsets: Option<Offsets>,
}

/// The chains of the negative phase and whatever they carry between updates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
enum Sampler<V: Layer, H: Layer> {
    /// CD: chains restarted at every minibatch (only their random streams persist).
    Restarted(Chains),
    Persistent(Chains),
    /// Fast PCD: the fast parameters (as an RBM of the same shape) and a buffer for the model
    /// plus them, which the chains sample from.
    Fast {
        chains: Chains,
        fast: Rbm<V, H>,
        #[serde(skip)]
        combined: Option<Rbm<V, H>>,
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

    fn new(rbm: &Rbm<V, H>, config: &TrainConfig, data: &DMatrix<f32>) -> Result<Self> {
        let batch = config.batch_size;
        let seed = stream(config.seed, STREAM_PCD).next_u64();
        let (nv, nh) = (rbm.num_visible(), rbm.num_hidden());
        Ok(match &config.negative {
            NegativePhase::Cd { .. } => Sampler::Restarted(Chains::unchecked(
                &[nv, nh],
                DMatrix::zeros(nv, batch),
                stream(config.seed, STREAM_CD).next_u64(),
            )),
            NegativePhase::Pcd { chains, .. } => {
                Sampler::Persistent(Chains::random(rbm, *chains, seed)?)
            }
            NegativePhase::FastPcd { chains, .. } => {
                let mut fast = rbm.clone();
                fast.weights_mut().fill(0.0);
                fast.visible.bias_mut().fill(0.0);
                fast.hidden_mut().bias_mut().fill(0.0);
                Sampler::Fast {
                    chains: Chains::random(rbm, *chains, seed)?,
                    fast,
                    combined: None,
                }
            }
            NegativePhase::Tempering { chains, betas, .. } => {
                // The hottest rung samples the data's base rates: far closer to the model than
                // the uniform distribution, so swaps with it are accepted.
                let base = base_rate_layer::<V>(data, 0.05 * data.ncols() as f64)?
                    .bias()
                    .clone();
                Sampler::Tempering(ParallelTempering::new(
                    rbm,
                    betas.clone(),
                    Some(base),
                    *chains,
                    seed,
                )?)
            }
        })
    }

    /// Runs the negative phase for one update. CD's chains start at the data, so their first
    /// step gives the data's hidden means too: then they are written into `data_hidden` and
    /// the result is true.
    fn run(
        &mut self,
        rbm: &Rbm<V, H>,
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
        match self {
            Sampler::Restarted(chains) => {
                chains.set_visible(data.as_slice());
                let means = Some(data_hidden.as_mut_slice());
                chains.sweep_keeping_means(&rbm.scaled(scale), k, means)?;
                Ok(k > 0)
            }
            Sampler::Persistent(chains) => chains.sweep(&rbm.scaled(scale), k).map(|_| false),
            Sampler::Fast {
                chains,
                fast,
                combined,
            } => {
                unscaled("fast PCD")?;
                let sum = combined.get_or_insert_with(|| rbm.clone());
                sum.weights_mut()
                    .zip_zip_apply(rbm.weights(), fast.weights(), |s, w, f| *s = w + f);
                let bv = rbm.visible.bias() + fast.visible.bias();
                sum.visible.bias_mut().copy_from(&bv);
                let bh = rbm.hidden().bias() + fast.hidden().bias();
                sum.hidden_mut().bias_mut().copy_from(&bh);
                chains.sweep(&*sum, k).map(|_| false)
            }
            Sampler::Tempering(pt) => {
                unscaled("parallel tempering")?;
                pt.sweep(rbm, k).map(|_| false)
            }
        }
    }

    /// The model's visible samples of the last update.
    fn visible(&self) -> &DMatrix<f32> {
        match self {
            Sampler::Restarted(chains)
            | Sampler::Persistent(chains)
            | Sampler::Fast { chains, .. } => chains.visible(),
            Sampler::Tempering(pt) => pt.chains().visible(),
        }
    }

    /// Fast PCD's step of the fast parameters, after the update of the model.
    fn learn_fast(&mut self, buffers: &Buffers, negative: &NegativePhase) {
        if let (Sampler::Fast { chains, fast, .. }, NegativePhase::FastPcd { fast: rates, .. }) =
            (self, negative)
        {
            buffers.gradient_step(fast, chains.visible(), rates.learning_rate, rates.decay);
        }
    }

    fn swap_rates(&self) -> Option<Vec<f64>> {
        match self {
            Sampler::Tempering(pt) => Some(pt.swap_rates()),
            _ => None,
        }
    }
}

/// [`train`] for an RBM whose inputs are scaled (greedy DBM pretraining), optionally continuing
/// from a checkpoint. Exact log-likelihoods are monitored only for plain RBMs.
pub(crate) fn train_scaled<V: Layer, H: Layer>(
    rbm: &mut Rbm<V, H>,
    scale: InputScale,
    data: &DMatrix<f32>,
    held_out: Option<&DMatrix<f32>>,
    config: &TrainConfig,
    resumed: Option<Checkpoint<V, H>>,
    mut monitor: impl FnMut(&EpochMetrics),
) -> Result<Vec<EpochMetrics>> {
    config.validate()?;
    rbm.check()?;
    let (nv, nh) = (rbm.num_visible(), rbm.num_hidden());
    let n = data.ncols();
    if n == 0 {
        return Err(Error::Empty {
            what: "training data",
        });
    }
    rbm.check_batch("training data", data, nv)?;
    if let Some(h) = held_out {
        rbm.check_batch("held-out data", h, nv)?;
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
    let monitor_set = |x: &DMatrix<f32>| -> Result<DMatrix<f32>> {
        let mut m = x
            .columns(0, config.monitor_examples.clamp(1, x.ncols()))
            .into_owned();
        if config.binarize {
            binarize_in_place(m.as_mut_slice(), stream(seed, STREAM_MONITOR).next_u64())?;
        }
        Ok(m)
    };
    let monitor_train = monitor_set(data)?;
    let monitor_held_out = held_out.map(monitor_set).transpose()?;

    let mut run = match resumed {
        Some(checkpoint) => checkpoint,
        None => {
            if config.init_visible_bias {
                rbm.set_visible_bias_from_data(data)?;
            }
            Checkpoint {
                rbm: rbm.clone(),
                epoch: 0,
                config_digest: config.digest(),
                optimiser: Optimiser {
                    vel_w: DMatrix::zeros(nv, nh),
                    vel_bv: DVector::zeros(nv),
                    vel_bh: DVector::zeros(nh),
                    sparsity_q: DVector::from_element(
                        nh,
                        config.sparsity.as_ref().map_or(0.0, |s| s.target),
                    ),
                    offsets: match config.centering {
                        Some(_) => {
                            let mut h = DMatrix::zeros(nh, monitor_train.ncols());
                            let scaled = rbm.scaled(scale);
                            scaled.hidden_mean_into(monitor_train.as_slice(), h.as_mut_slice());
                            Some(Offsets {
                                visible: data.column_mean(),
                                hidden: h.column_mean(),
                            })
                        }
                        None => None,
                    },
                },
                sampler: Sampler::new(rbm, config, data)?,
                order: (0..n).collect(),
                trajectory: match &config.trajectory {
                    Some(t) if scale == InputScale::ONE => Some(TrajectoryAis::start(
                        rbm,
                        rbm,
                        t,
                        stream(seed, STREAM_TRAJECTORY).next_u64(),
                    )?),
                    _ => None,
                },
            }
        }
    };
    let mut buffers = Buffers {
        data_batch: DMatrix::zeros(nv, batch),
        data_hidden: DMatrix::zeros(nh, batch),
        model_hidden: DMatrix::zeros(nh, config.negative.persistent_chains().unwrap_or(batch)),
    };

    let batches = n / batch;
    let mut history = Vec::with_capacity(config.epochs);
    for epoch in run.epoch + 1..=config.epochs {
        let start = Instant::now();
        let before = rbm.clone();
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
                    buffers.data_batch.column_mut(c).copy_from(&data.column(i));
                }
                if config.binarize {
                    let draw = STREAM_BINARIZE + (epoch * batches + b) as u64;
                    binarize_in_place(
                        buffers.data_batch.as_mut_slice(),
                        stream(seed, draw).next_u64(),
                    )?;
                }
                let data_hidden_done = run.sampler.run(
                    rbm,
                    scale,
                    &buffers.data_batch,
                    k,
                    &mut buffers.data_hidden,
                )?;
                let model_visible = run.sampler.visible();
                buffers.statistics(rbm, scale, model_visible, data_hidden_done);
                run.optimiser
                    .update(rbm, &buffers, model_visible, lr, momentum, config);
                if let Some(c) = config.max_norm {
                    max_norm(rbm.weights_mut(), c);
                }
                run.sampler.learn_fast(&buffers, &config.negative);
            }
            Ok(())
        })?;
        let seconds = start.elapsed().as_secs_f64();
        let fast = match &run.sampler {
            Sampler::Fast { fast, .. } => non_finite(fast).map(|_| "fast weights"),
            _ => None,
        };
        if let Some(what) = non_finite(rbm).or(fast) {
            *rbm = before;
            return Err(Error::Diverged { epoch, what });
        }
        let exact = scale == InputScale::ONE;
        let log_z = match &mut run.trajectory {
            Some(t) => Some((t.advance(&before, rbm)?, t.effective_sample_size())),
            None => None,
        };
        let monitored = (&monitor_train, monitor_held_out.as_ref());
        let metrics = measure(rbm, monitored, epoch, exact, log_z)?;
        let metrics = EpochMetrics {
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
            run.rbm.clone_from(rbm);
            crate::io::save(&run, &c.path)?;
        }
        monitor(&metrics);
        history.push(metrics);
    }
    Ok(history)
}

/// Buffers reused by every update: the minibatch and the hidden statistics.
struct Buffers {
    data_batch: DMatrix<f32>,
    data_hidden: DMatrix<f32>,
    model_hidden: DMatrix<f32>,
}

impl Buffers {
    /// Hidden means given the data (unless the sampler has written them) and given the
    /// model's visible samples.
    fn statistics<V: Layer, H: Layer>(
        &mut self,
        rbm: &Rbm<V, H>,
        scale: InputScale,
        model_visible: &DMatrix<f32>,
        data_hidden_done: bool,
    ) {
        let scaled = rbm.scaled(scale);
        if !data_hidden_done {
            scaled.hidden_mean_into(self.data_batch.as_slice(), self.data_hidden.as_mut_slice());
        }
        scaled.hidden_mean_into(model_visible.as_slice(), self.model_hidden.as_mut_slice());
    }

    /// `θ ← decay·θ + lr·(⟨·⟩_data − ⟨·⟩_model)` for the weights and biases of `params`: the
    /// fast weights' step.
    fn gradient_step<V: Layer, H: Layer>(
        &self,
        params: &mut Rbm<V, H>,
        model_visible: &DMatrix<f32>,
        lr: f32,
        decay: f32,
    ) {
        let nv = params.num_visible();
        let (vd, vm) = (self.data_batch.as_slice(), model_visible.as_slice());
        let (hd, hm) = (self.data_hidden.as_slice(), self.model_hidden.as_slice());
        let (bd, bm) = (self.data_batch.ncols() as f32, model_visible.ncols() as f32);
        let terms = [(lr / bd, vd, hd), (-lr / bm, vm, hm)];
        correlate_into(params.weights_mut().as_mut_slice(), nv, decay, &terms);
        let bv = (self.data_batch.column_mean() - model_visible.column_mean()) * lr;
        let bh = (self.data_hidden.column_mean() - self.model_hidden.column_mean()) * lr;
        let vis = params.visible.bias_mut();
        *vis = &*vis * decay + bv;
        let hid = params.hidden_mut().bias_mut();
        *hid = &*hid * decay + bh;
    }
}

impl Optimiser {
    /// One momentum-SGD step on the log-likelihood gradient estimate
    /// `⟨v hᵀ⟩_data − ⟨v hᵀ⟩_model − decay·W`, with hidden means in place of hidden samples.
    fn update<V: Layer, H: Layer>(
        &mut self,
        rbm: &mut Rbm<V, H>,
        buffers: &Buffers,
        model_visible: &DMatrix<f32>,
        lr: f32,
        momentum: f32,
        config: &TrainConfig,
    ) {
        let nv = rbm.num_visible();
        let vd = buffers.data_batch.as_slice();
        let vm = model_visible.as_slice();
        let (bd, bm) = (buffers.data_batch.ncols(), model_visible.ncols());
        let hd = buffers.data_hidden.as_slice();
        let hm = buffers.model_hidden.as_slice();

        let mvd = buffers.data_batch.column_mean();
        let mhd = buffers.data_hidden.column_mean();
        let grad_bv = &mvd - model_visible.column_mean();
        let mut grad_bh = &mhd - buffers.model_hidden.column_mean();
        // vel_W ← momentum·vel_W + lr·(vd hdᵀ / bd − vm hmᵀ / bm), centred if asked.
        let terms = [(lr / bd as f32, vd, hd), (-lr / bm as f32, vm, hm)];
        correlate_into(self.vel_w.as_mut_slice(), nv, momentum, &terms);
        if let (Some(offsets), Some(c)) = (&mut self.offsets, &config.centering) {
            offsets.track(&mvd, &mhd, c.rate);
            offsets.centre_weight_gradient(&mut self.vel_w, &(&grad_bv * lr), &(&grad_bh * lr));
        }
        if let Some(s) = &config.sparsity {
            self.sparsity_q = &self.sparsity_q * s.decay + &mhd * (1.0 - s.decay);
            let pull = self.sparsity_q.map(|q| s.cost * (s.target - q));
            grad_bh += &pull;
            self.vel_w.ger(lr, &mvd, &pull, 1.0);
        }
        if config.weight_decay > 0.0 {
            let step = lr * config.weight_decay;
            let (vel, w) = (self.vel_w.as_mut_slice(), rbm.weights().as_slice());
            par_zip_apply(vel, w, |v, w| *v -= step * w);
        }
        self.vel_bv = &self.vel_bv * momentum + grad_bv * lr;
        self.vel_bh = &self.vel_bh * momentum + grad_bh * lr;
        match &self.offsets {
            Some(offsets) => offsets.apply_step(rbm, &self.vel_w, &self.vel_bv, &self.vel_bh),
            None => {
                par_zip_apply(
                    rbm.weights_mut().as_mut_slice(),
                    self.vel_w.as_slice(),
                    |w, v| *w += v,
                );
                *rbm.visible.bias_mut() += &self.vel_bv;
                *rbm.hidden_mut().bias_mut() += &self.vel_bh;
            }
        }
    }
}

/// Fisher–Yates shuffle.
fn shuffle(order: &mut [usize], rng: &mut crate::kernels::ChainRng) {
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
}

/// The first non-finite parameter block, if any.
fn non_finite<V: Layer, H: Layer>(rbm: &Rbm<V, H>) -> Option<&'static str> {
    let blocks = [
        ("weights", rbm.weights().as_slice()),
        ("visible biases", rbm.visible.bias().as_slice()),
        ("hidden biases", rbm.hidden().bias().as_slice()),
    ];
    blocks
        .into_iter()
        .find(|(what, x)| check_finite(what, x).is_err())
        .map(|(what, _)| what)
}

/// Per-epoch metrics on the monitor subsets.
fn measure<V: Layer, H: Layer>(
    rbm: &Rbm<V, H>,
    (train, held_out): (&DMatrix<f32>, Option<&DMatrix<f32>>),
    epoch: usize,
    exact: bool,
    trajectory_log_z: Option<(f64, f64)>,
) -> Result<EpochMetrics> {
    let recon = rbm.visible_mean(&rbm.hidden_mean(train)?)?;
    let recon_error = (train - recon).norm_squared() as f64 / train.ncols() as f64;
    let free_train = rbm.free_energy(train)?;
    let free_held_out = held_out.map(|h| rbm.free_energy(h)).transpose()?;
    let free_energy_gap = free_held_out.as_ref().map(|f| f.mean() - free_train.mean());
    let trajectory = trajectory_log_z.map(|(log_z, ess)| TrajectoryEstimate {
        log_z,
        effective_sample_size: ess,
        train_log_likelihood: -free_train.mean() - log_z,
        held_out_log_likelihood: free_held_out.as_ref().map(|f| -f.mean() - log_z),
    });
    let (mut train_ll, mut held_out_ll) = (None, None);
    if exact && rbm.num_hidden() <= MAX_EXACT_MONITOR_HIDDEN && rbm.hidden().num_states().is_some()
    {
        let log_z = log_partition_exact(rbm)?;
        train_ll = Some(LogLikelihood::from_free_energies(free_train.as_slice(), log_z).mean);
        if let Some(f) = &free_held_out {
            held_out_ll = Some(LogLikelihood::from_free_energies(f.as_slice(), log_z).mean);
        }
    }
    Ok(EpochMetrics {
        epoch,
        learning_rate: 0.0,
        momentum: 0.0,
        k: 0,
        recon_error,
        free_energy_gap,
        train_log_likelihood: train_ll,
        held_out_log_likelihood: held_out_ll,
        seconds: 0.0,
        swap_rates: None,
        trajectory,
    })
}

/// Scales every column of `w` (a hidden unit's incoming weights) longer than `c` back to length
/// `c`.
fn max_norm(w: &mut DMatrix<f32>, c: f32) {
    for mut col in w.column_iter_mut() {
        let norm = col.norm();
        if norm > c {
            col *= c / norm;
        }
    }
}

/// Checks that a checkpoint follows `ln Z` exactly when the configuration asks for it, with the
/// same settings.
fn check_trajectory(
    saved: Option<&TrajectoryAis>,
    config: Option<&crate::partition::TrajectorySettings>,
) -> Result<()> {
    if saved.map(TrajectoryAis::settings) == config {
        Ok(())
    } else {
        Err(Error::invalid(
            "trajectory AIS",
            "the checkpoint's runs do not match the configuration's trajectory settings",
        ))
    }
}
