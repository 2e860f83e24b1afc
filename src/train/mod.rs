//! Training RBMs by contrastive divergence (CD-k) and persistent CD (PCD).
//!
//! Data flow: dataset → shuffled minibatches → positive statistics `⟨v hᵀ⟩_data` (hidden means
//! given the data) and negative statistics `⟨v hᵀ⟩_model` (from Gibbs chains) → gradient →
//! momentum SGD → parameters.

mod config;
mod dbm;

pub use config::{LearningRate, Momentum, NegativePhase, Sparsity, Steps, TrainConfig};
pub use dbm::{
    DbmEpochMetrics, DbmTrainConfig, Pretrained, pretrain, pretraining_scale, train_dbm,
};

use crate::data::binarize_in_place;
use crate::error::{Error, Result, check_finite};
use crate::gibbs::Chains;
use crate::kernels::{correlate_into, stream};
use crate::layer::Layer;
use crate::partition::{LogLikelihood, log_partition_exact};
use crate::rbm::{InputScale, Rbm};
use nalgebra::{DMatrix, DVector};
use rand::Rng;
use std::time::Instant;

/// Hidden layers of at most this many units are small enough to monitor the exact
/// log-likelihood every epoch.
pub const MAX_EXACT_MONITOR_HIDDEN: usize = 20;

/// What [`train`] reports after each epoch.
#[derive(Clone, Debug, PartialEq)]
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
}

// Stream indices of the master seed, one family per purpose, so draws never overlap.
const STREAM_SHUFFLE: u64 = 1 << 40;
const STREAM_BINARIZE: u64 = 2 << 40;
const STREAM_MONITOR: u64 = 3 << 40;
const STREAM_CD: u64 = 4 << 40;
const STREAM_PCD: u64 = 5 << 40;

/// Trains `rbm` on the columns of `data` (`visible × N`), calling `monitor` after every epoch.
/// `held_out` (optional) feeds the free-energy gap and held-out log-likelihood.
///
/// The configuration is validated and the data checked before any work. If the parameters
/// become non-finite, training stops with [`Error::Diverged`] and `rbm` is left as it was after
/// the last good epoch.
pub fn train<V: Layer, H: Layer>(
    rbm: &mut Rbm<V, H>,
    data: &DMatrix<f32>,
    held_out: Option<&DMatrix<f32>>,
    config: &TrainConfig,
    monitor: impl FnMut(&EpochMetrics),
) -> Result<Vec<EpochMetrics>> {
    train_scaled(rbm, InputScale::ONE, data, held_out, config, monitor)
}

/// [`train`] for an RBM whose inputs are scaled (greedy DBM pretraining). Exact
/// log-likelihoods are monitored only for plain RBMs.
pub(crate) fn train_scaled<V: Layer, H: Layer>(
    rbm: &mut Rbm<V, H>,
    scale: InputScale,
    data: &DMatrix<f32>,
    held_out: Option<&DMatrix<f32>>,
    config: &TrainConfig,
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
    if config.init_visible_bias {
        rbm.set_visible_bias_from_data(data)?;
    }

    let mut state = State {
        vel_w: DMatrix::zeros(nv, nh),
        vel_bv: DVector::zeros(nv),
        vel_bh: DVector::zeros(nh),
        data_batch: DMatrix::zeros(nv, batch),
        data_hidden: DMatrix::zeros(nh, batch),
        model_hidden: DMatrix::zeros(nh, batch),
        sparsity_q: DVector::from_element(nh, config.sparsity.as_ref().map_or(0.0, |s| s.target)),
    };
    let mut cd_chains = None;
    let mut pcd_chains = match &config.negative {
        NegativePhase::Pcd { chains, .. } => {
            state.model_hidden = DMatrix::zeros(nh, *chains);
            Some(Chains::random(
                rbm,
                *chains,
                stream(seed, STREAM_PCD).next_u64(),
            )?)
        }
        NegativePhase::Cd { .. } => {
            cd_chains = Some(Chains::unchecked(
                &[nv, nh],
                DMatrix::zeros(nv, batch),
                stream(seed, STREAM_CD).next_u64(),
            ));
            None
        }
    };

    let batches = n / batch;
    let mut order: Vec<usize> = (0..n).collect();
    let mut history = Vec::with_capacity(config.epochs);
    for epoch in 1..=config.epochs {
        let start = Instant::now();
        let before = rbm.clone();
        let lr = config.learning_rate.at(epoch);
        let momentum = config.momentum.at(epoch);
        let k = config.negative.steps(epoch);
        shuffle(&mut order, &mut stream(seed, STREAM_SHUFFLE + epoch as u64));
        for (b, idx) in order.chunks_exact(batch).take(batches).enumerate() {
            for (c, &i) in idx.iter().enumerate() {
                state.data_batch.column_mut(c).copy_from(&data.column(i));
            }
            if config.binarize {
                let draw = STREAM_BINARIZE + (epoch * batches + b) as u64;
                binarize_in_place(
                    state.data_batch.as_mut_slice(),
                    stream(seed, draw).next_u64(),
                )?;
            }
            let chains = match (&mut cd_chains, &mut pcd_chains) {
                (Some(c), _) => {
                    c.set_visible(state.data_batch.as_slice());
                    c
                }
                (None, Some(c)) => c,
                (None, None) => unreachable!("one negative phase is always set up"),
            };
            chains.sweep(&rbm.scaled(scale), k)?;
            state.update(rbm, scale, chains.visible(), lr, momentum, config);
        }
        let seconds = start.elapsed().as_secs_f64();
        if let Some(what) = non_finite(rbm) {
            *rbm = before;
            return Err(Error::Diverged { epoch, what });
        }
        let exact = scale == InputScale::ONE;
        let metrics = measure(rbm, &monitor_train, monitor_held_out.as_ref(), epoch, exact)?;
        let metrics = EpochMetrics {
            learning_rate: lr,
            momentum,
            k,
            seconds,
            ..metrics
        };
        monitor(&metrics);
        history.push(metrics);
    }
    Ok(history)
}

/// Optimiser state and reused buffers.
struct State {
    vel_w: DMatrix<f32>,
    vel_bv: DVector<f32>,
    vel_bh: DVector<f32>,
    data_batch: DMatrix<f32>,
    data_hidden: DMatrix<f32>,
    model_hidden: DMatrix<f32>,
    sparsity_q: DVector<f32>,
}

impl State {
    /// One momentum-SGD step on the log-likelihood gradient estimate
    /// `⟨v hᵀ⟩_data − ⟨v hᵀ⟩_model − decay·W`, with hidden means in place of hidden samples.
    fn update<V: Layer, H: Layer>(
        &mut self,
        rbm: &mut Rbm<V, H>,
        scale: InputScale,
        model_visible: &DMatrix<f32>,
        lr: f32,
        momentum: f32,
        config: &TrainConfig,
    ) {
        let (nv, nh) = (rbm.num_visible(), rbm.num_hidden());
        let vd = self.data_batch.as_slice();
        let vm = model_visible.as_slice();
        let scaled = rbm.scaled(scale);
        scaled.hidden_mean_into(vd, self.data_hidden.as_mut_slice());
        scaled.hidden_mean_into(vm, self.model_hidden.as_mut_slice());
        let (bd, bm) = (self.data_batch.ncols(), model_visible.ncols());
        let hd = self.data_hidden.as_slice();
        let hm = self.model_hidden.as_slice();

        // vel_W ← momentum·vel_W + lr·(vd hdᵀ / bd − vm hmᵀ / bm).
        let terms = [(lr / bd as f32, vd, hd), (-lr / bm as f32, vm, hm)];
        correlate_into(self.vel_w.as_mut_slice(), nv, momentum, &terms);
        let mean = |x: &[f32], units: usize| -> DVector<f32> {
            let mut acc = DVector::zeros(units);
            for col in x.chunks_exact(units) {
                acc += DVector::from_column_slice(col);
            }
            acc / (x.len() / units) as f32
        };
        let (mvd, mvm) = (mean(vd, nv), mean(vm, nv));
        let (mhd, mhm) = (mean(hd, nh), mean(hm, nh));
        let mut grad_bh = &mhd - &mhm;
        if let Some(s) = &config.sparsity {
            self.sparsity_q = &self.sparsity_q * s.decay + &mhd * (1.0 - s.decay);
            let pull = self.sparsity_q.map(|q| s.cost * (s.target - q));
            grad_bh += &pull;
            self.vel_w.ger(lr, &mvd, &pull, 1.0);
        }
        if config.weight_decay > 0.0 {
            self.vel_w
                .zip_apply(&rbm.weights, |v, w| *v -= lr * config.weight_decay * w);
        }
        self.vel_bv = &self.vel_bv * momentum + (mvd - mvm) * lr;
        self.vel_bh = &self.vel_bh * momentum + grad_bh * lr;
        rbm.weights += &self.vel_w;
        *rbm.visible.bias_mut() += &self.vel_bv;
        *rbm.hidden.bias_mut() += &self.vel_bh;
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
        ("weights", rbm.weights.as_slice()),
        ("visible biases", rbm.visible.bias().as_slice()),
        ("hidden biases", rbm.hidden.bias().as_slice()),
    ];
    blocks
        .into_iter()
        .find(|(what, x)| check_finite(what, x).is_err())
        .map(|(what, _)| what)
}

/// Per-epoch metrics on the monitor subsets.
fn measure<V: Layer, H: Layer>(
    rbm: &Rbm<V, H>,
    train: &DMatrix<f32>,
    held_out: Option<&DMatrix<f32>>,
    epoch: usize,
    exact: bool,
) -> Result<EpochMetrics> {
    let recon = rbm.visible_mean(&rbm.hidden_mean(train)?)?;
    let recon_error = (train - recon).norm_squared() as f64 / train.ncols() as f64;
    let free_train = rbm.free_energy(train)?;
    let free_energy_gap = match held_out {
        Some(h) => Some(rbm.free_energy(h)?.mean() - free_train.mean()),
        None => None,
    };
    let (mut train_ll, mut held_out_ll) = (None, None);
    if exact && rbm.num_hidden() <= MAX_EXACT_MONITOR_HIDDEN && rbm.hidden.num_states().is_some() {
        let log_z = log_partition_exact(rbm)?;
        train_ll = Some(LogLikelihood::from_free_energies(free_train.as_slice(), log_z).mean);
        if let Some(h) = held_out {
            let f = rbm.free_energy(h)?;
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
    })
}
