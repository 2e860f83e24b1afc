//! Training deep Boltzmann machines as Salakhutdinov & Hinton (2009): greedy layer-wise
//! pretraining of RBMs with doubled inputs, then joint training with a mean-field positive phase
//! and persistent Gibbs chains for the negative phase.

use super::{
    Centering, Checkpointing, EpochMetrics, LearningRate, Momentum, STREAM_BINARIZE,
    STREAM_CHAIN_STARTS, STREAM_MONITOR, STREAM_PCD, STREAM_SHUFFLE, STREAM_TRAJECTORY, Sparsity,
    TrainConfig, TrajectoryEstimate, train_scaled,
};
use crate::centering::{centre_gradients, plain_bias_steps, track};
use crate::data::binarize_in_place;
use crate::dbm::{Dbm, MeanField};
use crate::error::{Error, Result, check_finite};
use crate::gibbs::Chains;
use crate::kernels::{correlate_into, stream};
use crate::layer::{Bernoulli, Layer};
use crate::partition::{TrajectoryAis, TrajectorySettings};
use crate::partition::{log_partition_exact, log_unnormalised_exact};
use crate::rbm::{InputScale, Rbm};
use nalgebra::{DMatrix, DVector};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The RBMs of greedy pretraining and the DBM they compose into.
#[derive(Clone, Debug, PartialEq)]
pub struct Pretrained<V: Layer> {
    /// The bottom RBM (visible–h₁), trained with doubled bottom-up inputs.
    pub first: Rbm<V, Bernoulli>,
    /// The RBMs above it (h₁–h₂, …): middle ones with doubled inputs both ways, the top one
    /// with doubled top-down inputs.
    pub upper: Vec<Rbm<Bernoulli, Bernoulli>>,
    /// The DBM: `W_l` and the hidden biases of RBM `l`, the visible biases of the first RBM.
    pub dbm: Dbm<V, Bernoulli>,
}

/// The input doubling of RBM `l` (1-based) in a stack of `layers` hidden layers: doubled
/// bottom-up below the top, doubled top-down above the bottom, so that each hidden layer of the
/// composed DBM, which hears both neighbours, gets inputs of the scale it was trained with.
pub fn pretraining_scale(l: usize, layers: usize) -> InputScale {
    InputScale {
        up: if l < layers { 2.0 } else { 1.0 },
        down: if l > 1 { 2.0 } else { 1.0 },
    }
}

/// Greedy layer-wise pretraining: RBM `l` is trained (with `configs[l − 1]`) on the means of
/// layer `l − 1` given the data, with inputs doubled as [`pretraining_scale`] says, and the stack
/// composes into a DBM with the RBMs' weights. `hidden` gives the hidden layer sizes;
/// `monitor(l, metrics)` is called after every epoch of RBM `l`.
pub fn pretrain<V: Layer>(
    data: &DMatrix<f32>,
    hidden: &[usize],
    configs: &[TrainConfig],
    seed: u64,
    mut monitor: impl FnMut(usize, &EpochMetrics),
) -> Result<Pretrained<V>> {
    if hidden.is_empty() || configs.len() != hidden.len() {
        return Err(Error::invalid(
            "pretraining",
            format!(
                "{} hidden layers and {} configurations; expected at least one layer and one configuration per layer",
                hidden.len(),
                configs.len()
            ),
        ));
    }
    for c in configs {
        c.validate()?;
    }
    let layers = hidden.len();
    let mut first: Rbm<V, Bernoulli> = Rbm::init(data.nrows(), hidden[0], seed)?;
    train_scaled(
        &mut first,
        pretraining_scale(1, layers),
        data,
        None,
        &configs[0],
        None,
        |m| monitor(1, m),
    )?;
    let mut below = means(&first, pretraining_scale(1, layers), data);
    let mut upper: Vec<Rbm<Bernoulli, Bernoulli>> = Vec::new();
    for l in 2..=layers {
        let scale = pretraining_scale(l, layers);
        let mut rbm: Rbm<Bernoulli, Bernoulli> =
            Rbm::init(hidden[l - 2], hidden[l - 1], seed.wrapping_add(l as u64))?;
        train_scaled(&mut rbm, scale, &below, None, &configs[l - 1], None, |m| {
            monitor(l, m)
        })?;
        if l < layers {
            below = means(&rbm, scale, &below);
        }
        upper.push(rbm);
    }
    let mut weights = vec![first.weights().clone()];
    let mut hidden_layers = vec![first.hidden().clone()];
    for rbm in &upper {
        weights.push(rbm.weights().clone());
        hidden_layers.push(rbm.hidden().clone());
    }
    let dbm = Dbm::new(first.visible.clone(), hidden_layers, weights)?;
    Ok(Pretrained { first, upper, dbm })
}

/// `E[h | v]` of every column under the scaled RBM: the data of the next RBM up.
fn means<V: Layer>(
    rbm: &Rbm<V, Bernoulli>,
    scale: InputScale,
    data: &DMatrix<f32>,
) -> DMatrix<f32> {
    let mut h = DMatrix::zeros(rbm.num_hidden(), data.ncols());
    rbm.scaled(scale)
        .hidden_mean_into(data.as_slice(), h.as_mut_slice());
    h
}

/// Settings of joint DBM training.
#[derive(Clone, Debug, PartialEq)]
pub struct DbmTrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Salakhutdinov's code starts at 0.001 and decays towards 1e-4.
    pub learning_rate: LearningRate,
    pub momentum: Momentum,
    /// L2 decay on the weights only.
    pub weight_decay: f32,
    /// Persistent chains of the negative phase (the paper: 100).
    pub chains: usize,
    /// Gibbs sweeps of the chains per update (the paper: 5).
    pub sweeps: usize,
    /// Mean-field settings of the positive phase (the paper: 10 iterations).
    pub mean_field: MeanField,
    /// A sparsity target for the hidden layers' mean-field activations: each layer's running
    /// mean `q_l` is pulled towards the target through its biases.
    pub sparsity: Option<Sparsity>,
    /// Start the persistent chains at the first `chains` training examples (binarised) instead
    /// of the layers' biases, so that they begin in the data's modes.
    pub chains_from_data: bool,
    /// A max-norm constraint: after every update, each hidden unit's incoming weight vector
    /// (a column of every `W_l`) longer than this is scaled back to it.
    pub max_norm: Option<f32>,
    /// Train in centred coordinates (Montavon & Müller 2012): every layer's offset starts at
    /// its mean on the monitor examples (data for the visible layer, mean-field for the hidden
    /// ones) and follows each minibatch's data-driven means.
    pub centering: Option<Centering>,
    /// Binarise grey-level data stochastically, a fresh draw per minibatch.
    pub binarize: bool,
    /// Training examples used for the per-epoch metrics (at least 1; all where there are fewer).
    pub monitor_examples: usize,
    pub seed: u64,
    /// Save a [`DbmCheckpoint`] as configured, from which [`resume_dbm`] continues.
    pub checkpoint: Option<Checkpointing>,
    /// Follow `ln Z` along training by trajectory AIS, which gives estimated variational bounds
    /// in every epoch's metrics.
    pub trajectory: Option<TrajectorySettings>,
}

impl Default for DbmTrainConfig {
    fn default() -> Self {
        DbmTrainConfig {
            epochs: 20,
            batch_size: 100,
            learning_rate: LearningRate::Geometric {
                initial: 0.001,
                factor: 0.99,
                floor: 1e-4,
            },
            momentum: Momentum::default(),
            weight_decay: 2e-4,
            chains: 100,
            sweeps: 5,
            mean_field: MeanField::default(),
            sparsity: None,
            chains_from_data: true,
            max_norm: None,
            centering: None,
            binarize: false,
            monitor_examples: 1000,
            seed: 0,
            checkpoint: None,
            trajectory: None,
        }
    }
}

impl DbmTrainConfig {
    /// Checks every setting; [`train_dbm`] calls it before any work.
    pub fn validate(&self) -> Result<()> {
        // The settings shared with RBM training are checked by its validator.
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate.clone(),
            momentum: self.momentum.clone(),
            weight_decay: self.weight_decay,
            sparsity: self.sparsity.clone(),
            centering: self.centering.clone(),
            checkpoint: self.checkpoint.clone(),
            trajectory: self.trajectory.clone(),
            max_norm: self.max_norm,
            monitor_examples: self.monitor_examples,
            ..TrainConfig::default()
        }
        .validate()?;
        if self.chains == 0 || self.sweeps == 0 || self.mean_field.iterations == 0 {
            return Err(Error::invalid(
                "DBM training",
                format!(
                    "{} chains, {} sweeps, {} mean-field iterations; each must be ≥ 1",
                    self.chains, self.sweeps, self.mean_field.iterations
                ),
            ));
        }
        if self.mean_field.tolerance.is_nan() || self.mean_field.tolerance < 0.0 {
            return Err(Error::invalid(
                "mean-field tolerance",
                "expected a value ≥ 0",
            ));
        }
        Ok(())
    }

    /// A fingerprint of every setting except `epochs` and `checkpoint`.
    fn digest(&self) -> u64 {
        super::digest_of(&DbmTrainConfig {
            epochs: 0,
            checkpoint: None,
            ..self.clone()
        })
    }
}

/// The state of joint DBM training after an epoch: parameters, velocities, sparsity estimates,
/// persistent chains with their random streams, example order and epoch. Saved by
/// [`train_dbm`], read by [`resume_dbm`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct DbmCheckpoint<V: Layer> {
    dbm: Dbm<V, Bernoulli>,
    epoch: usize,
    config_digest: u64,
    #[serde(with = "crate::io::checked::matrices")]
    velocity: Vec<DMatrix<f32>>,
    bias_velocity: Vec<DVector<f32>>,
    activity: Vec<DVector<f32>>,
    offsets: Option<Vec<DVector<f32>>>,
    chains: Chains,
    order: Vec<usize>,
    trajectory: Option<TrajectoryAis>,
}

impl<V: Layer> DbmCheckpoint<V> {
    /// Epochs completed when the checkpoint was written.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// The model at that point.
    pub fn dbm(&self) -> &Dbm<V, Bernoulli> {
        &self.dbm
    }
}

impl<V: Layer> crate::io::Model for DbmCheckpoint<V> {
    fn kind() -> String {
        format!("checkpoint/{}", Dbm::<V, Bernoulli>::kind())
    }

    fn shapes(&self) -> Vec<u64> {
        self.dbm.shapes()
    }

    fn check(&self) -> Result<()> {
        self.dbm.check()?;
        let sizes = self.dbm.layer_sizes();
        let fits = self.velocity.len() + 1 == sizes.len()
            && self
                .velocity
                .iter()
                .enumerate()
                .all(|(l, v)| v.shape() == (sizes[l], sizes[l + 1]))
            && [
                Some(&self.bias_velocity),
                Some(&self.activity),
                self.offsets.as_ref(),
            ]
            .iter()
            .flatten()
            .all(|x| x.iter().map(|b| b.len()).eq(sizes.iter().copied()));
        if !fits || !super::is_permutation(&self.order) {
            return Err(Error::invalid(
                "DBM checkpoint",
                "optimiser state or example order does not fit the model",
            ));
        }
        let vectors = self.bias_velocity.iter().chain(&self.activity);
        for v in vectors.chain(self.offsets.iter().flatten()) {
            check_finite("DBM optimiser state", v.as_slice())?;
        }
        for v in &self.velocity {
            check_finite("DBM momentum", v.as_slice())?;
        }
        if let Some(t) = &self.trajectory {
            t.check(&self.dbm)?;
        }
        Ok(())
    }
}

/// Continues the joint training saved in the checkpoint file `checkpoint` up to
/// `config.epochs` epochs in total, bit-identically to a run without a break; the model ends in
/// `dbm`. The configuration must be the one that wrote the checkpoint (apart from `epochs` and
/// `checkpoint`), and `data` the same.
pub fn resume_dbm<V: Layer>(
    dbm: &mut Dbm<V, Bernoulli>,
    checkpoint: impl AsRef<std::path::Path>,
    data: &DMatrix<f32>,
    config: &DbmTrainConfig,
    monitor: impl FnMut(&DbmEpochMetrics),
) -> Result<Vec<DbmEpochMetrics>> {
    let saved: DbmCheckpoint<V> = crate::io::load(checkpoint)?;
    config.validate()?;
    super::check_resumable(
        (saved.config_digest, saved.epoch, saved.order.len()),
        config.digest(),
        config.epochs,
        data,
    )?;
    saved.chains.check(&saved.dbm)?;
    if saved.chains.len() != config.chains {
        return Err(Error::shape(
            "persistent chains",
            config.chains,
            saved.chains.len(),
        ));
    }
    super::check_centring(saved.offsets.is_some(), config.centering.is_some())?;
    super::check_trajectory(saved.trajectory.as_ref(), config.trajectory.as_ref())?;
    *dbm = saved.dbm.clone();
    train_dbm_from(dbm, data, config, Some(saved), monitor)
}

/// What [`train_dbm`] reports after each epoch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DbmEpochMetrics {
    pub epoch: usize,
    pub learning_rate: f32,
    pub momentum: f32,
    /// Wall time of the epoch's updates, in seconds.
    pub seconds: f64,
    /// Mean over the monitor examples of `E_q[−E(v, h)] + H(q)` for the mean-field posteriors:
    /// the variational bound on `ln p(v)` plus `ln Z`.
    pub bound_unnormalised: f64,
    /// Exact average log-likelihood of the monitor examples, for DBMs small enough to enumerate.
    pub train_log_likelihood: Option<f64>,
    /// Average variational lower bound on `ln p(v)` of the monitor examples, with the exact
    /// `ln Z`, for DBMs small enough to enumerate.
    pub train_lower_bound: Option<f64>,
    /// With [`DbmTrainConfig::trajectory`]: `ln Ẑ` by trajectory AIS and the average lower
    /// bound of the monitor examples it gives.
    pub trajectory: Option<TrajectoryEstimate>,
}

/// Joint training of a DBM on the columns of `data`: for every minibatch, mean-field posteriors
/// give the data statistics and `config.chains` persistent chains, advanced by `config.sweeps`
/// Gibbs sweeps, the model statistics (with the odd layers replaced by their conditional means
/// given the even ones). Stops with [`Error::Diverged`] and leaves `dbm` as after the last good
/// epoch if the parameters become non-finite.
pub fn train_dbm<V: Layer>(
    dbm: &mut Dbm<V, Bernoulli>,
    data: &DMatrix<f32>,
    config: &DbmTrainConfig,
    monitor: impl FnMut(&DbmEpochMetrics),
) -> Result<Vec<DbmEpochMetrics>> {
    train_dbm_from(dbm, data, config, None, monitor)
}

fn train_dbm_from<V: Layer>(
    dbm: &mut Dbm<V, Bernoulli>,
    data: &DMatrix<f32>,
    config: &DbmTrainConfig,
    resumed: Option<DbmCheckpoint<V>>,
    mut monitor: impl FnMut(&DbmEpochMetrics),
) -> Result<Vec<DbmEpochMetrics>> {
    config.validate()?;
    dbm.check()?;
    let sizes = dbm.layer_sizes();
    let n = data.ncols();
    if n == 0 {
        return Err(Error::Empty {
            what: "training data",
        });
    }
    if data.nrows() != sizes[0] {
        return Err(Error::shape(
            "training data",
            format!("{} rows", sizes[0]),
            format!("{} rows", data.nrows()),
        ));
    }
    check_finite("training data", data.as_slice())?;
    let batch = config.batch_size;
    if batch > n {
        return Err(Error::invalid(
            "batch size",
            format!("{batch} exceeds the {n} training examples"),
        ));
    }
    let seed = config.seed;
    let mut monitor_set = data
        .columns(0, config.monitor_examples.clamp(1, n))
        .into_owned();
    if config.binarize {
        binarize_in_place(
            monitor_set.as_mut_slice(),
            stream(seed, STREAM_MONITOR).next_u64(),
        )?;
    }
    let mut run = match resumed {
        Some(checkpoint) => checkpoint,
        None => {
            let target = config.sparsity.as_ref().map_or(0.0, |s| s.target);
            DbmCheckpoint {
                dbm: dbm.clone(),
                epoch: 0,
                config_digest: config.digest(),
                velocity: (1..sizes.len())
                    .map(|l| DMatrix::zeros(sizes[l - 1], sizes[l]))
                    .collect(),
                bias_velocity: sizes.iter().map(|&s| DVector::zeros(s)).collect(),
                activity: sizes
                    .iter()
                    .map(|&s| DVector::from_element(s, target))
                    .collect(),
                offsets: match config.centering {
                    Some(_) => {
                        let mut means = vec![monitor_set.column_mean()];
                        let mu = dbm.mean_field(&monitor_set, &config.mean_field)?;
                        means.extend(mu.iter().map(|m| m.column_mean()));
                        Some(means)
                    }
                    None => None,
                },
                chains: if config.chains_from_data {
                    let mut v0 = data.columns(0, config.chains.min(n)).into_owned();
                    while v0.ncols() < config.chains {
                        let more = (config.chains - v0.ncols()).min(n);
                        let cols = v0.ncols();
                        v0 = v0.insert_columns(cols, more, 0.0);
                        v0.columns_mut(cols, more).copy_from(&data.columns(0, more));
                    }
                    if config.binarize {
                        binarize_in_place(
                            v0.as_mut_slice(),
                            stream(seed, STREAM_CHAIN_STARTS).next_u64(),
                        )?;
                    }
                    let mut chains =
                        Chains::from_visible(dbm, v0, stream(seed, STREAM_PCD).next_u64())?;
                    // Fill the hidden layers in from the data before the first update.
                    chains.sweep(dbm, 1)?;
                    chains
                } else {
                    Chains::random(dbm, config.chains, stream(seed, STREAM_PCD).next_u64())?
                },
                order: (0..n).collect(),
                trajectory: match &config.trajectory {
                    Some(t) => {
                        let start = base_rates(dbm, &monitor_set, &config.mean_field)?;
                        let seed = stream(seed, STREAM_TRAJECTORY).next_u64();
                        Some(TrajectoryAis::start(&start, dbm, t, seed)?)
                    }
                    None => None,
                },
            }
        }
    };
    let mut batch_data = DMatrix::zeros(sizes[0], batch);
    let batches = n / batch;
    let mut history = Vec::new();
    for epoch in run.epoch + 1..=config.epochs {
        let started = Instant::now();
        let before = dbm.clone();
        let lr = config.learning_rate.at(epoch);
        let momentum = config.momentum.at(epoch);
        super::shuffle(
            &mut run.order,
            &mut stream(seed, STREAM_SHUFFLE + epoch as u64),
        );
        // On a worker of the thread pool, as in RBM training: no hand-over per parallel step.
        rayon::scope(|_| -> Result<()> {
            for (b, idx) in run.order.chunks_exact(batch).take(batches).enumerate() {
                for (c, &i) in idx.iter().enumerate() {
                    batch_data.column_mut(c).copy_from(&data.column(i));
                }
                if config.binarize {
                    let draw = STREAM_BINARIZE + (epoch * batches + b) as u64;
                    binarize_in_place(batch_data.as_mut_slice(), stream(seed, draw).next_u64())?;
                }
                // Positive phase: the data and its mean-field posteriors.
                let mut positive = vec![batch_data.clone()];
                positive.extend(dbm.mean_field(&batch_data, &config.mean_field)?);
                // Negative phase: persistent chains, odd layers Rao-Blackwellised.
                run.chains.sweep(dbm, config.sweeps)?;
                let mut negative: Vec<DMatrix<f32>> = (0..sizes.len())
                    .filter_map(|l| run.chains.layer(l).cloned())
                    .collect();
                for l in (1..sizes.len()).step_by(2) {
                    negative[l] = dbm.conditional_mean(l, &negative)?;
                }
                let mut bias_grads: Vec<DVector<f32>> = positive
                    .iter()
                    .zip(&negative)
                    .map(|(p, n)| p.column_mean() - n.column_mean())
                    .collect();
                let centring = match (&mut run.offsets, &config.centering) {
                    (Some(offsets), Some(c)) => {
                        for (offset, p) in offsets.iter_mut().zip(&positive) {
                            track(offset, &p.column_mean(), c.rate);
                        }
                        Some(Centring {
                            offsets,
                            bias_grads: bias_grads.clone(),
                        })
                    }
                    _ => None,
                };
                if let Some(s) = &config.sparsity {
                    for l in 1..sizes.len() {
                        run.activity[l] = &run.activity[l] * s.decay
                            + positive[l].column_mean() * (1.0 - s.decay);
                        bias_grads[l] += run.activity[l].map(|q| s.cost * (s.target - q));
                    }
                }
                update(
                    dbm,
                    &mut run.velocity,
                    &mut run.bias_velocity,
                    &positive,
                    &negative,
                    &bias_grads,
                    centring,
                    lr,
                    momentum,
                    config.weight_decay,
                );
                if let Some(c) = config.max_norm {
                    dbm.weights_mut()
                        .iter_mut()
                        .for_each(|w| super::max_norm(w, c));
                }
            }
            Ok(())
        })?;
        let seconds = started.elapsed().as_secs_f64();
        if dbm.check().is_err() {
            *dbm = before;
            return Err(Error::Diverged {
                epoch,
                what: "DBM parameters",
            });
        }
        let mu = dbm.mean_field(&monitor_set, &config.mean_field)?;
        let bound = dbm.variational_bound_unnormalised(&monitor_set, &mu)?;
        let (mut ll, mut lb) = (None, None);
        if let Ok(log_z) = log_partition_exact(dbm) {
            if let Ok(lp) = log_unnormalised_exact(dbm, &monitor_set) {
                ll = Some(lp.mean() - log_z);
            }
            lb = Some(bound.mean() - log_z);
        }
        let trajectory = match &mut run.trajectory {
            Some(t) => {
                let log_z = t.advance(&before, dbm)?;
                Some(TrajectoryEstimate {
                    log_z,
                    effective_sample_size: t.effective_sample_size(),
                    train_log_likelihood: bound.mean() - log_z,
                    held_out_log_likelihood: None,
                })
            }
            None => None,
        };
        let metrics = DbmEpochMetrics {
            epoch,
            learning_rate: lr,
            momentum,
            seconds,
            bound_unnormalised: bound.mean(),
            train_log_likelihood: ll,
            train_lower_bound: lb,
            trajectory,
        };
        run.epoch = epoch;
        if let Some(c) = &config.checkpoint
            && c.due(epoch, config.epochs)
        {
            run.dbm.clone_from(dbm);
            crate::io::save(&run, &c.path)?;
        }
        monitor(&metrics);
        history.push(metrics);
    }
    Ok(history)
}

/// `dbm` with every layer's biases set to its base rate on `data`: the visible layer's mean and
/// each hidden layer's mean-field mean (the start of trajectory AIS, as of
/// [`DbmStart::base_rate`](crate::partition::DbmStart::base_rate) for AIS).
fn base_rates<V: Layer>(
    dbm: &Dbm<V, Bernoulli>,
    data: &DMatrix<f32>,
    settings: &MeanField,
) -> Result<Dbm<V, Bernoulli>> {
    let mut start = dbm.clone();
    start
        .visible
        .set_bias_from_mean(data.column_mean().as_slice());
    for (layer, mu) in start.hidden.iter_mut().zip(dbm.mean_field(data, settings)?) {
        layer.set_bias_from_mean(mu.column_mean().as_slice());
    }
    Ok(start)
}

/// The offsets of every layer and the plain bias gradients (without sparsity pulls) that
/// centre a step.
struct Centring<'a> {
    offsets: &'a [DVector<f32>],
    bias_grads: Vec<DVector<f32>>,
}

/// One momentum step on `⟨x_{l−1} x_lᵀ⟩_data − ⟨x_{l−1} x_lᵀ⟩_model − decay·W_l` for every
/// coupling, and on the given bias gradients (`⟨x_l⟩_data − ⟨x_l⟩_model`, plus any sparsity
/// pull); with `centring` (offsets and the plain bias gradients), in centred coordinates.
#[allow(clippy::too_many_arguments)]
fn update<V: Layer>(
    dbm: &mut Dbm<V, Bernoulli>,
    velocity: &mut [DMatrix<f32>],
    bias_velocity: &mut [DVector<f32>],
    positive: &[DMatrix<f32>],
    negative: &[DMatrix<f32>],
    bias_grads: &[DVector<f32>],
    centring: Option<Centring<'_>>,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
) {
    let (bd, bm) = (positive[0].ncols() as f32, negative[0].ncols() as f32);
    for (l, vel) in velocity.iter_mut().enumerate() {
        let terms = [
            (lr / bd, positive[l].as_slice(), positive[l + 1].as_slice()),
            (-lr / bm, negative[l].as_slice(), negative[l + 1].as_slice()),
        ];
        let rows = vel.nrows();
        correlate_into(vel.as_mut_slice(), rows, momentum, &terms);
    }
    let offsets: Option<Vec<&DVector<f32>>> = centring.as_ref().map(|c| c.offsets.iter().collect());
    if let (Some(offsets), Some(c)) = (&offsets, &centring) {
        let steps: Vec<DVector<f32>> = c.bias_grads.iter().map(|g| g * lr).collect();
        centre_gradients(
            &mut velocity.iter_mut().collect::<Vec<_>>(),
            &steps,
            offsets,
        );
    }
    for (vel, w) in velocity.iter_mut().zip(dbm.weights_mut()) {
        if weight_decay > 0.0 {
            vel.zip_apply(w, |v, w| *v -= lr * weight_decay * w);
        }
        *w += &*vel;
    }
    for (vel, grad) in bias_velocity.iter_mut().zip(bias_grads) {
        *vel = &*vel * momentum + grad * lr;
    }
    let bias_steps = match &offsets {
        Some(offsets) => {
            plain_bias_steps(&velocity.iter().collect::<Vec<_>>(), bias_velocity, offsets)
        }
        None => bias_velocity.to_vec(),
    };
    for (l, step) in bias_steps.iter().enumerate() {
        *dbm.layer_bias_mut(l) += step;
    }
}
