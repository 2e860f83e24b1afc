//! The classification RBM (Larochelle & Bengio 2008): a softmax label layer `y` beside the
//! input layer `x`, both coupled to the hidden layer `h`:
//!
//! `E(x, y, h) = −bᵀx − cᵀh − dᵀy − xᵀWh − yᵀUh`.
//!
//! It is the one-hidden-layer machine whose visible layer holds `x` and `y` side by side
//! ([`Beside`]): energies, free energies, sampling, clamping, files and training are the
//! machine's. Summing out `h` gives the class posterior exactly,
//! `p(y | x) ∝ exp(d_y + Σ_j cumulant_j(c_j + U_yj + (Wᵀx)_j))` — the classifier is an
//! energy-based model of `(x, y)`. The training engine maximises the generative objective
//! `ln p(x, y)`, the discriminative one `ln p(y | x)` (exact gradient) or the hybrid
//! `ln p(y | x) + α ln p(x, y)` ([`Objective`](crate::train::Objective)).
//!
//! ```
//! use boltzmann::classify::ClassRbm;
//! use nalgebra::DMatrix;
//! let model = ClassRbm::init(4, 6, 3, 0).unwrap();
//! let x = DMatrix::from_column_slice(4, 1, &[1.0, 0.0, 1.0, 1.0]);
//! let p = model.class_log_probabilities(&x).unwrap().map(f64::exp);
//! assert!((p.sum() - 1.0).abs() < 1e-9);
//! ```

use crate::dbm::{Dbm, Statistics};
use crate::error::{Error, Result};
use crate::kernels::{correlate_into, log_sum_exp};
use crate::layer::{Bernoulli, Beside, Layer, Softmax};
use crate::rbm::Rbm;
use nalgebra::{DMatrix, DVector};

/// The machine of a classification RBM: inputs and labels side by side in the visible layer.
pub type Joint = Rbm<Beside<Bernoulli, Softmax>, Bernoulli>;

/// A classification RBM: the input–hidden weights `W` and the label weights `U` are the rows of
/// the joint machine's one coupling, the input and label biases `b`, `d` its visible biases.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassRbm {
    machine: Joint,
}

impl ClassRbm {
    /// A model from the input–hidden RBM (`W`, `b`, `c`), the label layer (biases `d`) and the
    /// label weights `U` (`classes × hidden`); checks that they fit together.
    pub fn new(
        rbm: Rbm<Bernoulli, Bernoulli>,
        labels: Softmax,
        label_weights: DMatrix<f32>,
    ) -> Result<Self> {
        let expected = (labels.len(), rbm.num_hidden());
        if label_weights.shape() != expected {
            return Err(Error::shape(
                "label weights",
                format!("{}×{}", expected.0, expected.1),
                format!("{}×{}", label_weights.nrows(), label_weights.ncols()),
            ));
        }
        let (nx, k) = (rbm.num_visible(), labels.len());
        let w = DMatrix::from_fn(nx + k, expected.1, |i, j| {
            if i < nx {
                rbm.weights()[(i, j)]
            } else {
                label_weights[(i - nx, j)]
            }
        });
        let visible = Beside::new(rbm.visible(), &labels);
        ClassRbm::from_machine(Rbm::new(visible, rbm.hidden().clone(), w)?)
    }

    /// The classification RBM of a joint machine; its label layer needs at least 2 units.
    pub fn from_machine(machine: Joint) -> Result<Self> {
        let classes = machine.visible().len() - machine.visible().split();
        if classes < 2 {
            return Err(Error::invalid(
                "classes",
                format!("{classes}; expected at least 2"),
            ));
        }
        Ok(ClassRbm { machine })
    }

    /// `W, U ~ N(0, 0.01²)`, zero biases.
    pub fn init(inputs: usize, hidden: usize, classes: usize, seed: u64) -> Result<Self> {
        let plain = Rbm::<Bernoulli, Bernoulli>::init(inputs + classes, hidden, seed)?;
        let visible = Beside::new(
            &Bernoulli::new(DVector::zeros(inputs)),
            &Softmax::new(DVector::zeros(classes)),
        );
        let w = plain.weights().clone();
        ClassRbm::from_machine(Rbm::new(visible, plain.hidden().clone(), w)?)
    }

    /// Sets the input biases to the log-odds of the pixel means of `x` (Hinton's guide), so
    /// that class-conditional samples start from the data's base rates.
    pub fn set_input_bias_from_data(&mut self, x: &DMatrix<f32>) -> Result<()> {
        self.check_inputs(x, None)?;
        let mut inputs = self.machine.visible().first();
        inputs.set_bias_from_mean(x.column_mean().as_slice());
        let labels = self.machine.visible().second();
        *self.machine.layer_bias_mut(0) = Beside::new(&inputs, &labels).bias().clone();
        Ok(())
    }

    /// The joint machine of `(x, y, h)`.
    pub fn machine(&self) -> &Joint {
        &self.machine
    }

    /// The joint machine, to train or change in place.
    pub fn machine_mut(&mut self) -> &mut Joint {
        &mut self.machine
    }

    pub fn num_inputs(&self) -> usize {
        self.machine.visible().split()
    }

    pub fn num_hidden(&self) -> usize {
        self.machine.num_hidden()
    }

    pub fn num_classes(&self) -> usize {
        self.machine.num_visible() - self.num_inputs()
    }

    /// The input biases `b`.
    pub fn input_bias(&self) -> DVector<f32> {
        self.machine.visible().first().bias().clone()
    }

    /// The label biases `d`.
    pub fn label_bias(&self) -> DVector<f32> {
        self.machine.visible().second().bias().clone()
    }

    /// The input weights `W` (`inputs × hidden`).
    pub fn input_weights(&self) -> DMatrix<f32> {
        self.machine
            .weights()
            .rows(0, self.num_inputs())
            .into_owned()
    }

    /// The label weights `U` (`classes × hidden`).
    pub fn label_weights(&self) -> DMatrix<f32> {
        let w = self.machine.weights();
        w.rows(self.num_inputs(), self.num_classes()).into_owned()
    }

    fn check_inputs(&self, x: &DMatrix<f32>, labels: Option<&[usize]>) -> Result<()> {
        self.machine.check_batch("inputs", x, self.num_inputs())?;
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

    /// The joint visible states `(x, y)`: the inputs with the one-hot labels below them (zero
    /// label units without labels).
    pub fn joint(&self, x: &DMatrix<f32>, labels: Option<&[usize]>) -> Result<DMatrix<f32>> {
        self.check_inputs(x, labels)?;
        let nx = self.num_inputs();
        Ok(DMatrix::from_fn(
            nx + self.num_classes(),
            x.ncols(),
            |i, c| match labels {
                _ if i < nx => x[(i, c)],
                Some(labels) => f32::from(labels[c] == i - nx),
                None => 0.0,
            },
        ))
    }

    /// `ln p(y | x)` for every class (rows) and column of `x`, summing out the hidden units.
    pub fn class_log_probabilities(&self, x: &DMatrix<f32>) -> Result<DMatrix<f64>> {
        let v = self.joint(x, None)?;
        Ok(label_posterior(&self.machine, &v, self.num_classes(), false).0)
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
        let v = self.joint(x, Some(labels))?;
        Ok(classification_score(&self.machine, &v, self.num_classes()))
    }

    /// The free energy `F(x, y) = −bᵀx − d_y − Σ_j softplus(c_j + U_yj + (Wᵀx)_j)`.
    pub fn free_energy(&self, x: &DMatrix<f32>, labels: &[usize]) -> Result<DVector<f64>> {
        self.machine.free_energy(&self.joint(x, Some(labels))?)
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
        let u = self
            .machine
            .weights()
            .row(self.num_inputs() + y)
            .transpose();
        let hidden = Bernoulli::new(self.machine.hidden().bias() + u);
        Rbm::new(self.machine.visible().first(), hidden, self.input_weights())
    }

    /// The exact gradient of the mean `ln p(y | x)` over the columns of `x`, for the joint
    /// machine's coupling (`W` above `U`) and its visible and hidden biases: the data's
    /// statistics under `p(h | x, y)` less their expectation under `p(y, h | x)`.
    pub fn discriminative_gradient(
        &self,
        x: &DMatrix<f32>,
        labels: &[usize],
    ) -> Result<Statistics> {
        let v = self.joint(x, Some(labels))?;
        let h = self.machine.hidden_mean(&v)?;
        let n = v.ncols() as f32;
        let mut w = DMatrix::zeros(v.nrows(), h.nrows());
        correlate_into(
            w.as_mut_slice(),
            v.nrows(),
            0.0,
            &[(1.0 / n, v.as_slice(), h.as_slice())],
        );
        let expected = expected_given_inputs(&self.machine, &v, self.num_classes());
        Ok(Statistics {
            weights: vec![w - &expected.weights[0]],
            biases: vec![
                v.column_mean() - &expected.biases[0],
                h.column_mean() - &expected.biases[1],
            ],
        })
    }

    /// Saves the joint machine to a versioned, checksummed model file, atomically.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        self.machine.save_as(path.as_ref(), "class-rbm")
    }

    /// Loads a model saved by [`ClassRbm::save`].
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self> {
        ClassRbm::from_machine(Joint::load(path)?)
    }
}

/// `ln p(y | x)` of the one-hot label in the last `classes` units of every column of the
/// visible states `v` (whatever those units hold), summing out the one hidden layer of `m`; and
/// with `means`, `E[h | x, y = k]` for every class `k`.
pub(crate) fn label_posterior<V: Layer, H: Layer>(
    m: &Dbm<V, H>,
    v: &DMatrix<f32>,
    classes: usize,
    means: bool,
) -> (DMatrix<f64>, Vec<DMatrix<f32>>) {
    let (nx, n) = (v.nrows() - classes, v.ncols());
    let mut x = v.clone();
    x.rows_mut(nx, classes).fill(0.0);
    let hidden = m.hidden(1).expect("a hidden layer");
    let mut a = DMatrix::zeros(hidden.len(), n);
    m.neighbour_inputs(1, Some(x.as_slice()), None, a.as_mut_slice());
    let (w, d) = (&m.couplings()[0], m.visible().bias());
    let mut log_p = DMatrix::<f64>::zeros(classes, n);
    let mut hidden_means = Vec::new();
    for k in 0..classes {
        let mut o = a.clone();
        let u = w.row(nx + k).transpose();
        o.column_iter_mut().for_each(|mut c| c += &u);
        let mut scores = vec![f64::from(d[nx + k]); n];
        hidden.cumulant_fast(o.as_slice(), &mut scores);
        log_p.row_mut(k).copy_from_slice(&scores);
        if means {
            hidden.mean(o.as_mut_slice());
            hidden_means.push(o);
        }
    }
    for mut col in log_p.column_iter_mut() {
        let z = log_sum_exp(col.as_slice());
        col.add_scalar_mut(-z);
    }
    (log_p, hidden_means)
}

/// Checks that the last `classes` units of every column of `v` hold a one-hot label and that
/// `m` has the one hidden layer the label posterior sums out (nothing to check without labels).
pub(crate) fn check_labelled<V: Layer, H: Layer>(
    m: &Dbm<V, H>,
    v: nalgebra::DMatrixView<'_, f32>,
    classes: usize,
    what: &'static str,
) -> Result<()> {
    if classes == 0 {
        return Ok(());
    }
    if m.num_layers() != 2 || classes >= v.nrows() {
        return Err(Error::invalid(
            "label units",
            format!(
                "{classes} of {} visible units in a machine of {} layers; labels need one hidden layer and some input units",
                v.nrows(),
                m.num_layers()
            ),
        ));
    }
    let one_hot = |c: nalgebra::DVectorView<'_, f32>| {
        let label = c.rows(v.nrows() - classes, classes);
        label.iter().all(|&u| u == 0.0 || u == 1.0) && label.sum() == 1.0
    };
    match v.column_iter().position(|c| !one_hot(c)) {
        Some(c) => Err(Error::invalid(
            what,
            format!("column {c}: its last {classes} units are not a one-hot label"),
        )),
        None => Ok(()),
    }
}

/// The label (the largest of the last `classes` units) of every column of `v`.
fn labels_of(v: &DMatrix<f32>, classes: usize) -> Vec<usize> {
    let nx = v.nrows() - classes;
    v.column_iter()
        .map(|c| c.rows(nx, classes).imax())
        .collect()
}

/// The mean `ln p(y | x)` and the error rate of the labelled visible states `v`.
pub(crate) fn classification_score<V: Layer, H: Layer>(
    m: &Dbm<V, H>,
    v: &DMatrix<f32>,
    classes: usize,
) -> (f64, f64) {
    let log_p = label_posterior(m, v, classes, false).0;
    let labels = labels_of(v, classes);
    let n = labels.len().max(1) as f64;
    let total: f64 = labels.iter().enumerate().map(|(c, &y)| log_p[(y, c)]).sum();
    let wrong = log_p
        .column_iter()
        .zip(&labels)
        .filter(|(col, y)| col.imax() != **y)
        .count();
    (total / n, wrong as f64 / n)
}

/// The statistics of the states of `m` averaged over `p(y, h | x)` for every column `x` of the
/// visible states `v` (the last `classes` units, the label, summed out): the model term of the
/// gradient of `ln p(y | x)`. With `p_k = p(y = k | x)` and `σ_k = E[h | x, y = k]`, the
/// coupling gets `x (Σ_k p_k σ_k)ᵀ` in the input rows and `Σ p_k σ_kᵀ` in label row `k`.
pub(crate) fn expected_given_inputs<V: Layer, H: Layer>(
    m: &Dbm<V, H>,
    v: &DMatrix<f32>,
    classes: usize,
) -> Statistics {
    let (nx, n) = (v.nrows() - classes, v.ncols());
    let (log_p, sigmas) = label_posterior(m, v, classes, true);
    let p = log_p.map(|l| l.exp() as f32);
    let mut mixture = DMatrix::<f32>::zeros(sigmas[0].nrows(), n);
    let mut label_rows = Vec::with_capacity(classes);
    for (k, sigma) in sigmas.iter().enumerate() {
        let mut row = DVector::<f32>::zeros(mixture.nrows());
        for (c, s) in sigma.column_iter().enumerate() {
            mixture.column_mut(c).axpy(p[(k, c)], &s, 1.0);
            row.axpy(p[(k, c)] / n as f32, &s, 1.0);
        }
        label_rows.push(row);
    }
    // The input rows: x (Σ_k p_k σ_k)ᵀ, with the label units zero; then the label rows.
    let mut x = v.clone();
    x.rows_mut(nx, classes).fill(0.0);
    let mut w = DMatrix::zeros(v.nrows(), mixture.nrows());
    let terms = [(1.0 / n as f32, x.as_slice(), mixture.as_slice())];
    correlate_into(w.as_mut_slice(), v.nrows(), 0.0, &terms);
    for (k, row) in label_rows.iter().enumerate() {
        w.row_mut(nx + k).copy_from(&row.transpose());
    }
    x.rows_mut(nx, classes).copy_from(&p);
    Statistics {
        weights: vec![w],
        biases: vec![x.column_mean(), mixture.column_mean()],
    }
}
