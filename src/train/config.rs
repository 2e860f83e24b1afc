//! Hyper-parameters of training, with defaults from Hinton's practical guide (2010) and, for
//! joint DBM training ([`TrainConfig::joint`]), Salakhutdinov & Hinton (2009).

use crate::dbm::MeanField;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The number of Gibbs sweeps `k` per update, fixed or growing linearly over epochs (as in
/// Salakhutdinov & Murray's CD schedule that grew from 1 to 25).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Steps {
    /// The same `k` in every epoch.
    Constant(usize),
    /// `k` goes linearly from `from` (epoch 1) to `to` (epoch `epochs` and after).
    Linear {
        from: usize,
        to: usize,
        epochs: usize,
    },
}

impl Steps {
    /// `k` in epoch `epoch` (counted from 1).
    pub fn at(&self, epoch: usize) -> usize {
        match *self {
            Steps::Constant(k) => k,
            Steps::Linear { from, to, epochs } => {
                let t = (epoch.saturating_sub(1) as f64 / (epochs.max(2) - 1) as f64).min(1.0);
                (from as f64 + t * (to as f64 - from as f64)).round() as usize
            }
        }
    }

    fn validate(&self) -> Result<()> {
        let (lo, hi) = match *self {
            Steps::Constant(k) => (k, k),
            Steps::Linear { from, to, .. } => (from.min(to), from.max(to)),
        };
        if lo == 0 {
            return Err(Error::invalid(
                "Gibbs steps k",
                format!("{self:?}; every k must be ≥ 1"),
            ));
        }
        if hi > 100_000 {
            return Err(Error::invalid(
                "Gibbs steps k",
                format!("{hi}; expected ≤ 100000"),
            ));
        }
        Ok(())
    }
}

/// How the negative (model) statistics are estimated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum NegativePhase {
    /// Contrastive divergence: chains start at the minibatch and run `k` sweeps.
    Cd { k: Steps },
    /// Persistent CD (Tieleman 2008): `chains` persistent chains run `k` sweeps per update;
    /// their number is independent of the minibatch size.
    Pcd { k: Steps, chains: usize },
    /// Fast PCD (Tieleman & Hinton 2009): persistent chains that sample from the model plus
    /// fast weights (and fast biases), which follow the same gradient estimate with their own
    /// learning rate and shrink by `decay` every update, pushing the chains out of modes the
    /// model has just visited.
    FastPcd {
        k: Steps,
        chains: usize,
        fast: FastWeights,
    },
    /// Parallel tempering (Desjardins et al. 2010): `chains` chains at each inverse temperature
    /// of `betas` (decreasing from 1 to ≥ 0), `k` rounds of sweeps and neighbour swaps per
    /// update; the statistics come from the β = 1 rung. The temperatures follow the AIS path
    /// from the base-rate model of the training data (β = 0) to the RBM.
    Tempering {
        k: Steps,
        chains: usize,
        betas: Vec<f64>,
    },
}

/// Fast weights of [`NegativePhase::FastPcd`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FastWeights {
    /// The fast weights' learning rate (constant; the paper uses the regular initial rate).
    pub learning_rate: f32,
    /// The factor the fast weights shrink by after every update (the paper: 19/20).
    pub decay: f32,
}

impl NegativePhase {
    /// The sweeps per update in epoch `epoch` (from 1).
    pub fn steps(&self, epoch: usize) -> usize {
        self.schedule().at(epoch)
    }

    fn schedule(&self) -> &Steps {
        match self {
            NegativePhase::Cd { k }
            | NegativePhase::Pcd { k, .. }
            | NegativePhase::FastPcd { k, .. }
            | NegativePhase::Tempering { k, .. } => k,
        }
    }

    /// The number of persistent chains (per temperature), if the phase keeps any.
    pub(crate) fn persistent_chains(&self) -> Option<usize> {
        match self {
            NegativePhase::Cd { .. } => None,
            NegativePhase::Pcd { chains, .. }
            | NegativePhase::FastPcd { chains, .. }
            | NegativePhase::Tempering { chains, .. } => Some(*chains),
        }
    }

    fn validate(&self) -> Result<()> {
        self.schedule().validate()?;
        if self.persistent_chains() == Some(0) {
            return Err(Error::invalid(
                "persistent chains",
                "0; expected at least 1",
            ));
        }
        if let NegativePhase::FastPcd { fast, .. } = self {
            // A fast rate above 1 only drives the fast weights to infinity.
            let ok = (0.0..=1.0).contains(&fast.learning_rate) && (0.0..1.0).contains(&fast.decay);
            if !ok {
                return Err(Error::invalid(
                    "fast weights",
                    format!("{fast:?}; expected a learning rate in [0, 1] and a decay in [0, 1)"),
                ));
            }
        }
        if let NegativePhase::Tempering { betas, .. } = self {
            crate::tempering::check_ladder(betas)?;
        }
        Ok(())
    }
}

/// Centering (Melchior et al. 2016): gradient steps are taken in the centered parameterisation
/// around offsets that follow the data means of the visible units and the data-driven means of
/// the hidden units; the trained RBM is always returned in plain form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Centering {
    /// The fraction by which the offsets move towards each minibatch's means (the paper: 0.01).
    pub rate: f32,
}

/// Where and how often [`train`](super::train) saves a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpointing {
    /// The checkpoint file, replaced atomically at every save.
    pub path: std::path::PathBuf,
    /// Save after every `every` epochs, and after the last.
    pub every: usize,
}

impl Checkpointing {
    /// Whether to save after `epoch` of a run of `last` epochs.
    pub(crate) fn due(&self, epoch: usize, last: usize) -> bool {
        epoch.is_multiple_of(self.every) || epoch == last
    }
}

/// The learning rate as a function of the epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LearningRate {
    /// The same rate in every epoch.
    Constant(f32),
    /// `initial / (1 + (epoch − 1) / half_life)`: halves after `half_life` epochs (a 1/t decay).
    InverseTime { initial: f32, half_life: f32 },
    /// `max(initial · factor^(epoch − 1), floor)`.
    Geometric {
        initial: f32,
        factor: f32,
        floor: f32,
    },
    /// `initial · (epochs + 1 − epoch) / epochs`: linearly down towards zero over `epochs`
    /// epochs (Tieleman 2008 for PCD), `initial / epochs` in the last and after it.
    Linear { initial: f32, epochs: usize },
}

impl LearningRate {
    /// The rate in epoch `epoch` (from 1).
    pub fn at(&self, epoch: usize) -> f32 {
        let t = epoch.saturating_sub(1) as f32;
        match *self {
            LearningRate::Constant(lr) => lr,
            LearningRate::InverseTime { initial, half_life } => initial / (1.0 + t / half_life),
            LearningRate::Geometric {
                initial,
                factor,
                floor,
            } => (initial * factor.powf(t)).max(floor),
            LearningRate::Linear { initial, epochs } => {
                let left = epochs.saturating_sub(epoch.saturating_sub(1)).max(1);
                initial * left as f32 / epochs.max(1) as f32
            }
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let positive = |x: f32| x.is_finite() && x > 0.0;
        let ok = match *self {
            LearningRate::Constant(lr) => positive(lr),
            LearningRate::InverseTime { initial, half_life } => {
                positive(initial) && positive(half_life)
            }
            LearningRate::Geometric {
                initial,
                factor,
                floor,
            } => positive(initial) && positive(factor) && factor <= 1.0 && positive(floor),
            LearningRate::Linear { initial, epochs } => positive(initial) && epochs >= 1,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(
                "learning rate",
                format!(
                    "{self:?}; rates, half-lives and floors must be finite and > 0, factors in (0, 1], epochs ≥ 1"
                ),
            ))
        }
    }
}

/// Momentum `initial` for the first epochs, then `later` from epoch `switch_epoch` (from 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Momentum {
    pub initial: f32,
    pub later: f32,
    pub switch_epoch: usize,
}

impl Default for Momentum {
    /// 0.5, then 0.9 from epoch 6 (Hinton's guide).
    fn default() -> Self {
        Momentum {
            initial: 0.5,
            later: 0.9,
            switch_epoch: 6,
        }
    }
}

impl Momentum {
    /// The momentum in epoch `epoch` (from 1).
    pub fn at(&self, epoch: usize) -> f32 {
        if epoch >= self.switch_epoch {
            self.later
        } else {
            self.initial
        }
    }
}

/// A sparsity target for the hidden units (Hinton's guide, section 11): the estimate
/// `q ← decay·q + (1 − decay)·mean activation` is pulled towards `target` with strength `cost`,
/// through the hidden biases and the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sparsity {
    pub target: f32,
    pub cost: f32,
    pub decay: f32,
}

/// What training maximises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Objective {
    /// `ln p(v)`: the log-likelihood of the data, every visible unit modelled.
    #[default]
    Generative,
    /// `ln p(y | x)` of the label units `y` ([`TrainConfig::labels`]) given the other visible
    /// units `x`, by its exact gradient: a classifier (Larochelle & Bengio 2008).
    Discriminative,
    /// `ln p(y | x) + α ln p(x, y)` (Larochelle & Bengio: α around 0.01).
    Hybrid { alpha: f32 },
}

impl Objective {
    /// The weights of `ln p(y | x)` and of `ln p(v)` in the objective.
    pub(crate) fn weights(self) -> (f32, f32) {
        match self {
            Objective::Generative => (0.0, 1.0),
            Objective::Discriminative => (1.0, 0.0),
            Objective::Hybrid { alpha } => (1.0, alpha),
        }
    }
}

/// The most epochs a configuration may ask for.
pub const MAX_EPOCHS: usize = 1_000_000;

/// Everything that controls [`train`](super::train).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training data.
    pub epochs: usize,
    /// Examples per minibatch; each epoch uses `⌊N / batch_size⌋` full minibatches of a fresh
    /// random order.
    pub batch_size: usize,
    pub learning_rate: LearningRate,
    pub momentum: Momentum,
    /// L2 decay on the weights only (not the biases).
    pub weight_decay: f32,
    pub negative: NegativePhase,
    pub sparsity: Option<Sparsity>,
    /// Train in centered coordinates (offsets start at the training data's mean and the initial
    /// model's mean hidden activity on it).
    pub centering: Option<Centering>,
    /// Binarise grey-level data in [0, 1] stochastically with a fresh draw for every minibatch
    /// (as Salakhutdinov's code does); monitoring uses one fixed draw.
    pub binarize: bool,
    /// Set the visible biases from the data means before training (log-odds for Bernoulli units).
    pub init_visible_bias: bool,
    /// Training examples (and held-out examples) used for per-epoch metrics (at least 1; all
    /// of them where there are fewer).
    pub monitor_examples: usize,
    /// Master seed of every random draw in training.
    pub seed: u64,
    /// Save a checkpoint (parameters, optimiser state, chains and random streams, epoch) from
    /// which [`resume`](super::resume) continues bit-identically.
    pub checkpoint: Option<Checkpointing>,
    /// Follow `ln Z` along training by trajectory AIS ([`TrajectoryAis`]), which gives estimated
    /// log-likelihoods in every epoch's metrics (not for the scaled RBMs of pretraining).
    ///
    /// [`TrajectoryAis`]: crate::partition::TrajectoryAis
    pub trajectory: Option<crate::partition::TrajectorySettings>,
    /// A max-norm constraint (Srivastava et al. 2014): after every update, each hidden unit's
    /// incoming weight vector (a column of every `W_l`) longer than this is scaled back to it.
    pub max_norm: Option<f32>,
    /// Mean-field inference of the positive phase of machines with more than one hidden layer
    /// (Salakhutdinov & Hinton: 10 iterations); one hidden layer has exact posteriors.
    pub mean_field: MeanField,
    /// Start persistent chains at the first training examples (binarised if training
    /// binarises) instead of from the layers' biases, so that they begin in the data's modes.
    pub chains_from_data: bool,
    pub objective: Objective,
    /// The number of visible units, last in each column, that are one one-hot class label (a
    /// classification RBM's; 0 for none). With labels the metrics report classification, and
    /// the discriminative objectives need them.
    pub labels: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 100,
            // Of 0.001, 0.002, 0.005, 0.01 and 0.05, the best test log-likelihood after 10 epochs
            // of CD-1 on MNIST with 500 hidden units (README, "Choosing the learning rate").
            learning_rate: LearningRate::Constant(0.002),
            momentum: Momentum::default(),
            weight_decay: 2e-4,
            negative: NegativePhase::Cd {
                k: Steps::Constant(1),
            },
            sparsity: None,
            centering: None,
            binarize: false,
            init_visible_bias: true,
            monitor_examples: 1000,
            seed: 0,
            checkpoint: None,
            trajectory: None,
            max_norm: None,
            mean_field: MeanField::default(),
            chains_from_data: false,
            objective: Objective::Generative,
            labels: 0,
        }
    }
}

impl TrainConfig {
    /// Joint training of a DBM as Salakhutdinov & Hinton (2009): 100 persistent chains with 5
    /// sweeps per update started at the data, 10 mean-field iterations, a rate from 0.001
    /// decaying geometrically towards 1e-4, 20 epochs.
    pub fn joint() -> Self {
        TrainConfig {
            epochs: 20,
            learning_rate: LearningRate::Geometric {
                initial: 0.001,
                factor: 0.99,
                floor: 1e-4,
            },
            negative: NegativePhase::Pcd {
                k: Steps::Constant(5),
                chains: 100,
            },
            init_visible_bias: false,
            chains_from_data: true,
            ..TrainConfig::default()
        }
    }
}

impl TrainConfig {
    /// A classification RBM with `classes` label units trained as Larochelle & Bengio (2008):
    /// the hybrid objective with α = 0.01, CD-1 for its generative part, a constant rate of
    /// 0.05, momentum 0.5, no weight decay, 10 epochs.
    pub fn classifier(classes: usize) -> Self {
        TrainConfig {
            learning_rate: LearningRate::Constant(0.05),
            momentum: Momentum {
                initial: 0.5,
                later: 0.5,
                switch_epoch: 1,
            },
            weight_decay: 0.0,
            init_visible_bias: false,
            objective: Objective::Hybrid { alpha: 0.01 },
            labels: classes,
            ..TrainConfig::default()
        }
    }

    /// Checks every setting; [`train`](super::train) calls it before any work.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_EPOCHS).contains(&self.epochs) {
            return Err(Error::invalid(
                "epochs",
                format!("{}; expected 1 to {MAX_EPOCHS}", self.epochs),
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("batch size", "0; expected at least 1"));
        }
        self.learning_rate.validate()?;
        let m = &self.momentum;
        for x in [m.initial, m.later] {
            if !(0.0..1.0).contains(&x) {
                return Err(Error::invalid(
                    "momentum",
                    format!("{x}; expected a value in [0, 1)"),
                ));
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::invalid(
                "weight decay",
                format!("{}; expected a finite value ≥ 0", self.weight_decay),
            ));
        }
        self.negative.validate()?;
        if let Some(c) = &self.centering
            && !(0.0..=1.0).contains(&c.rate)
        {
            return Err(Error::invalid(
                "centering rate",
                format!("{}; expected a value in [0, 1]", c.rate),
            ));
        }
        if let Some(c) = &self.checkpoint
            && c.every == 0
        {
            return Err(Error::invalid(
                "checkpoint interval",
                "0 epochs; expected at least 1",
            ));
        }
        if let Some(t) = &self.trajectory {
            t.validate()?;
        }
        if self.monitor_examples == 0 {
            return Err(Error::invalid(
                "monitor examples",
                "0; expected at least 1 (more than the data hold means all of them)",
            ));
        }
        if let Some(c) = self.max_norm
            && !(c.is_finite() && c > 0.0)
        {
            return Err(Error::invalid(
                "max norm",
                format!("{c}; expected a finite value > 0"),
            ));
        }
        let mf = &self.mean_field;
        if mf.iterations == 0 || mf.tolerance.is_nan() || mf.tolerance < 0.0 {
            return Err(Error::invalid(
                "mean field",
                format!("{mf:?}; expected at least 1 iteration and a tolerance ≥ 0"),
            ));
        }
        if self.labels == 1 || (self.labels == 0 && self.objective != Objective::Generative) {
            return Err(Error::invalid(
                "label units",
                format!(
                    "{} with the {:?} objective; a label takes at least 2 units, and the discriminative objectives need one",
                    self.labels, self.objective
                ),
            ));
        }
        if let Objective::Hybrid { alpha } = self.objective
            && !(alpha.is_finite() && alpha >= 0.0)
        {
            return Err(Error::invalid(
                "hybrid weight α",
                format!("{alpha}; expected a finite value ≥ 0"),
            ));
        }
        if let Some(s) = &self.sparsity {
            let ok = s.target > 0.0
                && s.target < 1.0
                && s.cost.is_finite()
                && s.cost >= 0.0
                && (0.0..1.0).contains(&s.decay);
            if !ok {
                return Err(Error::invalid(
                    "sparsity",
                    format!("{s:?}; expected target in (0, 1), cost ≥ 0, decay in [0, 1)"),
                ));
            }
        }
        Ok(())
    }

    /// Every setting that shapes the run, as JSON (all but `epochs` and `checkpoint`): a
    /// checkpoint records it, and only resumes under the same.
    pub(crate) fn shaping_settings(&self) -> String {
        let mut v = serde_json::to_value(self).expect("settings are plain data");
        if let Some(o) = v.as_object_mut() {
            o.remove("epochs");
            o.remove("checkpoint");
        }
        v.to_string()
    }
}
