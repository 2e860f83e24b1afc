//! The classification RBM (Larochelle & Bengio 2008): a softmax label layer `y` beside the
//! input layer `x`, both coupled to the hidden layer `h`:
//!
//! `E(x, y, h) = −bᵀx − cᵀh − dᵀy − xᵀWh − yᵀUh`.
//!
//! Summing out `h` gives the class posterior exactly, `p(y | x) ∝ exp(d_y + Σ_j softplus(c_j +
//! U_yj + (Wᵀx)_j))` — the classifier is an energy-based model of `(x, y)`. Training maximises
//! the generative objective `ln p(x, y)` (CD-1 on the joint), the discriminative one
//! `ln p(y | x)` (exact gradient) or the hybrid `ln p(y | x) + α ln p(x, y)`.
//!
//! ```
//! use boltzmann::classify::ClassRbm;
//! use nalgebra::DMatrix;
//! let model = ClassRbm::init(4, 6, 3, 0).unwrap();
//! let x = DMatrix::from_column_slice(4, 1, &[1.0, 0.0, 1.0, 1.0]);
//! let p = model.class_log_probabilities(&x).unwrap().map(f64::exp);
//! assert!((p.sum() - 1.0).abs() < 1e-9);
//! ```

use crate::error::{Error, Result, check_finite};
use crate::kernels::{
    ChainRng, correlate_into, sigmoid, softplus, softplus_sigmoid_columns, stream,
};
use crate::layer::{Bernoulli, Layer, Softmax};
use crate::rbm::Rbm;
use crate::train::LearningRate;
use nalgebra::{DMatrix, DVector};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::ops::AddAssign;
use std::time::Instant;

/// A classification RBM: the input–hidden RBM (`W`, `b`, `c`), the label layer (biases `d`) and
/// the label weights `U` (`classes × hidden`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassRbm {
    rbm: Rbm<Bernoulli, Bernoulli>,
    labels: Softmax,
    #[serde(with = "crate::io::checked::matrix")]
    label_weights: DMatrix<f32>,
}

/// A gradient (or step) for every parameter of a [`ClassRbm`].
#[derive(Clone, Debug, PartialEq)]
pub struct ClassGradient {
    pub weights: DMatrix<f32>,
    pub input_bias: DVector<f32>,
    pub hidden_bias: DVector<f32>,
    pub label_weights: DMatrix<f32>,
    pub label_bias: DVector<f32>,
}

impl ClassGradient {
    fn zeros(model: &ClassRbm) -> Self {
        ClassGradient {
            weights: DMatrix::zeros(model.num_inputs(), model.num_hidden()),
            input_bias: DVector::zeros(model.num_inputs()),
            hidden_bias: DVector::zeros(model.num_hidden()),
            label_weights: DMatrix::zeros(model.num_classes(), model.num_hidden()),
            label_bias: DVector::zeros(model.num_classes()),
        }
    }

    /// `self ← self + s·other`.
    fn add_scaled(&mut self, s: f32, other: &ClassGradient) {
        self.weights += &other.weights * s;
        self.input_bias += &other.input_bias * s;
        self.hidden_bias += &other.hidden_bias * s;
        self.label_weights += &other.label_weights * s;
        self.label_bias += &other.label_bias * s;
    }
}

impl ClassRbm {
    /// A model from its parts; checks that they fit together.
    pub fn new(
        rbm: Rbm<Bernoulli, Bernoulli>,
        labels: Softmax,
        label_weights: DMatrix<f32>,
    ) -> Result<Self> {
        let model = ClassRbm {
            rbm,
            labels,
            label_weights,
        };
        model.check()?;
        Ok(model)
    }

    /// `W, U ~ N(0, 0.01²)`, zero biases.
    pub fn init(inputs: usize, hidden: usize, classes: usize, seed: u64) -> Result<Self> {
        if classes < 2 {
            return Err(Error::invalid(
                "classes",
                format!("{classes}; expected at least 2"),
            ));
        }
        let rbm = Rbm::init(inputs, hidden, seed)?;
        let mut u = DMatrix::zeros(classes, hidden);
        crate::kernels::fill_normal(&mut stream(seed, 1), u.as_mut_slice());
        u *= 0.01;
        Self::new(rbm, Softmax::new(DVector::zeros(classes)), u)
    }

    /// Sets the input biases to the log-odds of the pixel means of `x` (Hinton's guide), so
    /// that class-conditional samples start from the data's base rates.
    pub fn set_input_bias_from_data(&mut self, x: &DMatrix<f32>) -> Result<()> {
        self.rbm.set_visible_bias_from_data(x)
    }

    /// Checks shapes and finiteness.
    pub fn check(&self) -> Result<()> {
        self.rbm.check()?;
        let expected = (self.labels.len(), self.rbm.num_hidden());
        if self.label_weights.shape() != expected || expected.0 < 2 {
            return Err(Error::shape(
                "label weights",
                format!("{}×{} (classes ≥ 2)", expected.0, expected.1),
                format!(
                    "{}×{}",
                    self.label_weights.nrows(),
                    self.label_weights.ncols()
                ),
            ));
        }
        check_finite("label weights", self.label_weights.as_slice())?;
        check_finite("label biases", self.labels.bias().as_slice())
    }

    pub fn num_inputs(&self) -> usize {
        self.rbm.num_visible()
    }

    pub fn num_hidden(&self) -> usize {
        self.rbm.num_hidden()
    }

    pub fn num_classes(&self) -> usize {
        self.labels.len()
    }

    /// The input–hidden RBM (`W`, `b`, `c`).
    pub fn rbm(&self) -> &Rbm<Bernoulli, Bernoulli> {
        &self.rbm
    }

    /// The label biases `d`.
    pub fn label_bias(&self) -> &DVector<f32> {
        self.labels.bias()
    }

    /// The label weights `U` (`classes × hidden`).
    pub fn label_weights(&self) -> &DMatrix<f32> {
        &self.label_weights
    }

    fn check_inputs(&self, x: &DMatrix<f32>, labels: Option<&[usize]>) -> Result<()> {
        self.rbm.check_batch("inputs", x, self.num_inputs())?;
        if let Some(labels) = labels {
            if labels.len() != x.ncols() {
                return Err(Error::shape("labels", x.ncols(), labels.len()));
            }
            if let Some(&y) = labels.iter().find(|&&y| y >= self.num_classes()) {
                return Err(Error::invalid(
                    "labels",
                    format!("class {y}; expected < {}", self.num_classes()),
                ));
            }
        }
        Ok(())
    }

    /// Hidden pre-activations without the label term, `c + Wᵀx` (`hidden × n`).
    fn hidden_inputs(&self, x: &DMatrix<f32>) -> DMatrix<f32> {
        let mut a = DMatrix::zeros(self.num_hidden(), x.ncols());
        self.rbm.hidden_inputs_into(x.as_slice(), a.as_mut_slice());
        for mut col in a.column_iter_mut() {
            col += self.rbm.hidden().bias();
        }
        a
    }

    /// `ln p(y | x)` for every class (rows) and column of `x`, summing out the hidden units.
    pub fn class_log_probabilities(&self, x: &DMatrix<f32>) -> Result<DMatrix<f64>> {
        self.check_inputs(x, None)?;
        Ok(self.posterior(&self.hidden_inputs(x), &mut []))
    }

    /// The class log-posteriors from the hidden pre-activations `a = c + Wᵀx`; if `sigmoids`
    /// holds one `hidden × n` matrix per class, also `σ(a + U_k)` into them.
    fn posterior(&self, a: &DMatrix<f32>, sigmoids: &mut [DMatrix<f32>]) -> DMatrix<f64> {
        let (k, n) = (self.num_classes(), a.ncols());
        let u = self.label_weights.transpose();
        let d = self.labels.bias();
        let mut log_p = DMatrix::<f64>::zeros(k, n);
        for class in 0..k {
            let mut scores = vec![f64::from(d[class]); n];
            let sig = sigmoids
                .get_mut(class)
                .map_or(&mut [][..], |s| s.as_mut_slice());
            softplus_sigmoid_columns(a.as_slice(), u.column(class).as_slice(), &mut scores, sig);
            log_p.row_mut(class).copy_from_slice(&scores);
        }
        for mut col in log_p.column_iter_mut() {
            let z = crate::kernels::log_sum_exp(col.as_slice());
            col.add_scalar_mut(-z);
        }
        log_p
    }

    /// The most probable class of every column of `x`.
    pub fn predict(&self, x: &DMatrix<f32>) -> Result<Vec<usize>> {
        let log_p = self.class_log_probabilities(x)?;
        Ok(log_p.column_iter().map(|c| c.imax()).collect())
    }

    /// The fraction of columns of `x` whose predicted class differs from `labels`.
    pub fn error_rate(&self, x: &DMatrix<f32>, labels: &[usize]) -> Result<f64> {
        Ok(self.score(x, labels)?.1)
    }

    /// The mean `ln p(y | x)` over the columns of `x` with their `labels`: the discriminative
    /// objective.
    pub fn conditional_log_likelihood(&self, x: &DMatrix<f32>, labels: &[usize]) -> Result<f64> {
        Ok(self.score(x, labels)?.0)
    }

    /// The mean `ln p(y | x)` and the error rate.
    fn score(&self, x: &DMatrix<f32>, labels: &[usize]) -> Result<(f64, f64)> {
        self.check_inputs(x, Some(labels))?;
        let log_p = self.class_log_probabilities(x)?;
        let n = labels.len().max(1) as f64;
        let total: f64 = labels.iter().enumerate().map(|(c, &y)| log_p[(y, c)]).sum();
        let wrong = log_p
            .column_iter()
            .zip(labels)
            .filter(|(col, y)| col.imax() != **y)
            .count();
        Ok((total / n, wrong as f64 / n))
    }

    /// The free energy `F(x, y) = −bᵀx − d_y − Σ_j softplus(c_j + U_yj + (Wᵀx)_j)`.
    pub fn free_energy(&self, x: &DMatrix<f32>, labels: &[usize]) -> Result<DVector<f64>> {
        self.check_inputs(x, Some(labels))?;
        let a = self.hidden_inputs(x);
        let b = self.rbm.visible.bias();
        Ok(DVector::from_fn(x.ncols(), |c, _| {
            let y = labels[c];
            let u = self.label_weights.row(y);
            let bx: f64 = x
                .column(c)
                .iter()
                .zip(b.iter())
                .map(|(x, b)| f64::from(x * b))
                .sum();
            let sp: f64 = a
                .column(c)
                .iter()
                .zip(u.iter())
                .map(|(a, u)| softplus(f64::from(a + u)))
                .sum();
            -bx - f64::from(self.labels.bias()[y]) - sp
        }))
    }

    /// The RBM of `(x, h)` given the class `y`: hidden biases `c + U_y`. Sampling it gives
    /// class-conditional inputs `x ~ p(x | y)`.
    pub fn given_class(&self, y: usize) -> Result<Rbm<Bernoulli, Bernoulli>> {
        if y >= self.num_classes() {
            return Err(Error::invalid(
                "class",
                format!("{y}; expected < {}", self.num_classes()),
            ));
        }
        let mut rbm = self.rbm.clone();
        *rbm.hidden_mut().bias_mut() += self.label_weights.row(y).transpose();
        Ok(rbm)
    }

    /// The exact gradient of the mean `ln p(y | x)` over the columns of `x`:
    /// with `o_y = c + U_y + Wᵀx` and `D = σ(o_y) − Σ_k p(k|x) σ(o_k)`, it is `x Dᵀ` for `W`, `D`
    /// for `c`, `(1[y = k] − p(k|x)) σ(o_k)` for row `k` of `U` and `1[y = k] − p(k|x)` for `d`
    /// (averaged over the columns; zero for `b`).
    pub fn discriminative_gradient(
        &self,
        x: &DMatrix<f32>,
        labels: &[usize],
    ) -> Result<ClassGradient> {
        self.check_inputs(x, Some(labels))?;
        let (nh, k, n) = (self.num_hidden(), self.num_classes(), x.ncols());
        let a = self.hidden_inputs(x);
        let mut sig = vec![DMatrix::zeros(nh, n); k];
        let p = self.posterior(&a, &mut sig).map(f64::exp);
        let mut g = ClassGradient::zeros(self);
        // D = σ(o_y) − Σ_k p(k|x) σ(o_k), column by column.
        let mut d = DMatrix::<f32>::zeros(nh, n);
        for (class, s) in sig.iter().enumerate() {
            for c in 0..n {
                let coef = f32::from(labels[c] == class) - p[(class, c)] as f32;
                let (s, mut dc) = (s.column(c), d.column_mut(c));
                dc.axpy(coef, &s, 1.0);
                g.label_weights
                    .row_mut(class)
                    .add_assign(&(s.transpose() * coef));
                g.label_bias[class] += coef;
            }
        }
        let scale = 1.0 / n as f32;
        correlate_into(
            g.weights.as_mut_slice(),
            x.nrows(),
            0.0,
            &[(scale, x.as_slice(), d.as_slice())],
        );
        g.hidden_bias = d.column_mean();
        g.label_weights *= scale;
        g.label_bias *= scale;
        Ok(g)
    }

    /// A CD-1 estimate of the gradient of the mean `ln p(x, y)`: positive statistics from
    /// `E[h | x, y]`, negative ones after one Gibbs step `h ~ p(h | x, y)`, `(x', y') ~ p(· | h)`.
    pub fn generative_gradient(
        &self,
        x: &DMatrix<f32>,
        labels: &[usize],
        rng: &mut ChainRng,
    ) -> Result<ClassGradient> {
        self.check_inputs(x, Some(labels))?;
        let (k, n) = (self.num_classes(), x.ncols());
        let y = DMatrix::from_fn(k, n, |class, c| f32::from(labels[c] == class));
        let hidden_mean = |x: &DMatrix<f32>, y: &DMatrix<f32>| {
            let mut a = self.hidden_inputs(x) + self.label_weights.tr_mul(y);
            a.iter_mut().for_each(|v| *v = sigmoid(*v));
            a
        };
        let h0 = hidden_mean(x, &y);
        let mut h = h0.clone();
        h.iter_mut()
            .for_each(|p| *p = f32::from(crate::kernels::uniform(rng) < *p));
        let x1 = self.rbm.sample_visible(&h, rng)?;
        let mut y1 = &self.label_weights * &h;
        self.labels.sample(y1.as_mut_slice(), rng);
        let h1 = hidden_mean(&x1, &y1);
        let s = 1.0 / n as f32;
        let mut g = ClassGradient::zeros(self);
        let terms = [
            (s, x.as_slice(), h0.as_slice()),
            (-s, x1.as_slice(), h1.as_slice()),
        ];
        correlate_into(g.weights.as_mut_slice(), x.nrows(), 0.0, &terms);
        let terms = [
            (s, y.as_slice(), h0.as_slice()),
            (-s, y1.as_slice(), h1.as_slice()),
        ];
        correlate_into(g.label_weights.as_mut_slice(), k, 0.0, &terms);
        g.input_bias = x.column_mean() - x1.column_mean();
        g.hidden_bias = h0.column_mean() - h1.column_mean();
        g.label_bias = y.column_mean() - y1.column_mean();
        Ok(g)
    }

    /// `θ ← θ + step` for every parameter.
    fn apply(&mut self, step: &ClassGradient) {
        *self.rbm.weights_mut() += &step.weights;
        *self.rbm.visible.bias_mut() += &step.input_bias;
        *self.rbm.hidden_mut().bias_mut() += &step.hidden_bias;
        self.label_weights += &step.label_weights;
        *self.labels.bias_mut() += &step.label_bias;
    }

    /// Saves the model to a versioned, checksummed model file, atomically.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        crate::io::save(self, path)
    }

    /// Loads a model saved by [`ClassRbm::save`].
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self> {
        crate::io::load(path)
    }
}

impl crate::io::Model for ClassRbm {
    fn kind() -> String {
        "class-rbm/bernoulli/bernoulli/softmax".into()
    }

    fn shapes(&self) -> Vec<u64> {
        vec![
            self.num_inputs() as u64,
            self.num_hidden() as u64,
            self.num_classes() as u64,
        ]
    }

    fn check(&self) -> Result<()> {
        ClassRbm::check(self)
    }
}

/// What a classification RBM is trained to maximise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// `ln p(x, y)`, by CD-1 on the joint.
    Generative,
    /// `ln p(y | x)`, by its exact gradient.
    Discriminative,
    /// `ln p(y | x) + α ln p(x, y)` (Larochelle & Bengio: α around 0.01).
    Hybrid { alpha: f32 },
}

/// Settings of [`train_classifier`].
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: LearningRate,
    pub momentum: f32,
    /// L2 decay on `W` and `U`.
    pub weight_decay: f32,
    pub objective: Objective,
    pub seed: u64,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            epochs: 10,
            batch_size: 100,
            learning_rate: LearningRate::Constant(0.05),
            momentum: 0.5,
            weight_decay: 0.0,
            objective: Objective::Hybrid { alpha: 0.01 },
            seed: 0,
        }
    }
}

impl ClassifierConfig {
    /// Checks every setting; [`train_classifier`] calls it before any work.
    pub fn validate(&self) -> Result<()> {
        if !(1..=crate::train::MAX_EPOCHS).contains(&self.epochs) || self.batch_size == 0 {
            return Err(Error::invalid(
                "classifier training",
                format!(
                    "{} epochs, batches of {}; expected 1 to {} epochs and batches of ≥ 1",
                    self.epochs,
                    self.batch_size,
                    crate::train::MAX_EPOCHS
                ),
            ));
        }
        self.learning_rate.validate()?;
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::invalid(
                "momentum",
                format!("{}; expected a value in [0, 1)", self.momentum),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::invalid(
                "weight decay",
                format!("{}; expected a finite value ≥ 0", self.weight_decay),
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
        Ok(())
    }
}

/// What [`train_classifier`] reports after each epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierEpoch {
    pub epoch: usize,
    pub seconds: f64,
    /// Mean `ln p(y | x)` over the training set at the end of the epoch.
    pub train_log_likelihood: f64,
    pub train_error: f64,
    pub held_out_error: Option<f64>,
}

/// Trains `model` on the columns of `x` with their `labels` by momentum SGD on minibatches,
/// calling `monitor` after each epoch. `held_out` (inputs, labels) is scored every epoch.
pub fn train_classifier(
    model: &mut ClassRbm,
    x: &DMatrix<f32>,
    labels: &[usize],
    held_out: Option<(&DMatrix<f32>, &[usize])>,
    config: &ClassifierConfig,
    mut monitor: impl FnMut(&ClassifierEpoch),
) -> Result<Vec<ClassifierEpoch>> {
    config.validate()?;
    model.check()?;
    model.check_inputs(x, Some(labels))?;
    if let Some((hx, hy)) = held_out {
        model.check_inputs(hx, Some(hy))?;
    }
    let n = x.ncols();
    if config.batch_size > n {
        return Err(Error::invalid(
            "batch size",
            format!("{} exceeds the {n} training examples", config.batch_size),
        ));
    }
    let mut velocity = ClassGradient::zeros(model);
    let mut order: Vec<usize> = (0..n).collect();
    let mut batch = DMatrix::zeros(x.nrows(), config.batch_size);
    let mut batch_labels = vec![0; config.batch_size];
    let mut history = Vec::new();
    for epoch in 1..=config.epochs {
        let started = Instant::now();
        let before = model.clone();
        let lr = config.learning_rate.at(epoch);
        let mut rng = stream(config.seed, epoch as u64);
        for i in (1..n).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        for idx in order.chunks_exact(config.batch_size) {
            for (c, &i) in idx.iter().enumerate() {
                batch.column_mut(c).copy_from(&x.column(i));
                batch_labels[c] = labels[i];
            }
            let gradient = match config.objective {
                Objective::Generative => {
                    model.generative_gradient(&batch, &batch_labels, &mut rng)?
                }
                Objective::Discriminative => {
                    model.discriminative_gradient(&batch, &batch_labels)?
                }
                Objective::Hybrid { alpha } => {
                    let mut g = model.discriminative_gradient(&batch, &batch_labels)?;
                    g.add_scaled(
                        alpha,
                        &model.generative_gradient(&batch, &batch_labels, &mut rng)?,
                    );
                    g
                }
            };
            let mut step = ClassGradient::zeros(model);
            step.add_scaled(config.momentum, &velocity);
            step.add_scaled(lr, &gradient);
            step.weights -= model.rbm.weights() * (lr * config.weight_decay);
            step.label_weights -= &model.label_weights * (lr * config.weight_decay);
            model.apply(&step);
            velocity = step;
        }
        let seconds = started.elapsed().as_secs_f64();
        if model.check().is_err() {
            *model = before;
            return Err(Error::Diverged {
                epoch,
                what: "classification RBM parameters",
            });
        }
        let (train_log_likelihood, train_error) = model.score(x, labels)?;
        let metrics = ClassifierEpoch {
            epoch,
            seconds,
            train_log_likelihood,
            train_error,
            held_out_error: held_out
                .map(|(hx, hy)| model.error_rate(hx, hy))
                .transpose()?,
        };
        monitor(&metrics);
        history.push(metrics);
    }
    Ok(history)
}
