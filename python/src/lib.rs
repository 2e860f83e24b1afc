//! `boltzmann._core`: the crate's machines, samplers, estimators and training engine for Python.
//!
//! This module is thin on purpose: arrays cross as NumPy arrays with one row per example (the
//! crate's one column per example, the same memory), settings and results cross as JSON of the
//! crate's own serde types, and every check is the crate's. The `boltzmann` package wraps it in
//! classes with keyword arguments and docstrings.

use boltzmann::classify::ClassRbm;
use boltzmann::dbm::MeanField;
use boltzmann::nalgebra::{DMatrix, DMatrixView, DVector};
use boltzmann::partition::{
    AisConfig, AisShard, Betas, EvaluationConfig, ReverseStart, Start, ais_shard, evaluate,
    log_partition_exact, log_unnormalised, reverse_ais_shard,
};
use boltzmann::random::CHAIN_BLOCK;
use boltzmann::train::{EpochMetrics, TrainConfig, pretrain, train, train_classifier};
use boltzmann::{Bernoulli, Chains, Dbm, Error, Gaussian, Layer, Machine as _, Softmax};
use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::ops::ControlFlow;
use std::sync::Mutex;

pyo3::create_exception!(
    _core,
    DivergedError,
    PyRuntimeError,
    "Training diverged (non-finite parameters); the model keeps the last good epoch's."
);

/// The crate's error as the Python exception a user expects: `OSError` for the file system,
/// `DivergedError` for a diverging run, `ValueError` for every bad value, shape or file.
fn to_py(e: Error) -> PyErr {
    match e {
        Error::Io { .. } => PyOSError::new_err(e.to_string()),
        Error::Diverged { .. } => DivergedError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

trait OrRaise<T> {
    fn or_raise(self) -> PyResult<T>;
}

impl<T> OrRaise<T> for boltzmann::Result<T> {
    fn or_raise(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

impl<T> OrRaise<T> for serde_json::Result<T> {
    fn or_raise(self) -> PyResult<T> {
        self.map_err(|e| PyValueError::new_err(format!("settings: {e}")))
    }
}

/// A batch with one row per example (C order) as the crate's matrix with one column per
/// example: the same values in the same order. The one copy made here is all a call makes.
fn batch(x: &PyReadonlyArray2<f32>) -> PyResult<DMatrix<f32>> {
    let (rows, cols) = (x.shape()[0], x.shape()[1]);
    Ok(match x.as_slice() {
        Ok(values) => DMatrix::from_column_slice(cols, rows, values),
        // Strided or misaligned arrays: the values in row-major order.
        Err(_) => DMatrix::from_iterator(cols, rows, x.as_array().iter().copied()),
    })
}

/// The crate's `units × n` matrix as a NumPy array of `n` rows.
fn rows<'py, T: numpy::Element + Copy + boltzmann::nalgebra::Scalar>(
    py: Python<'py>,
    m: DMatrix<T>,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let (units, n) = m.shape();
    PyArray1::from_vec(py, m.data.into()).reshape([n, units])
}

/// A weight matrix `W` (`below × above`) as NumPy's row-major `(below, above)`.
fn weights_array<'py>(py: Python<'py>, w: &DMatrix<f32>) -> PyResult<Bound<'py, PyArray2<f32>>> {
    rows(py, w.transpose())
}

fn vector<'py>(py: Python<'py>, b: &DVector<f32>) -> Bound<'py, PyArray1<f32>> {
    PyArray1::from_slice(py, b.as_slice())
}

/// Every machine the package builds: a visible and a hidden unit type.
enum Any {
    BB(Dbm<Bernoulli, Bernoulli>),
    BG(Dbm<Bernoulli, Gaussian>),
    BS(Dbm<Bernoulli, Softmax>),
    GB(Dbm<Gaussian, Bernoulli>),
    GG(Dbm<Gaussian, Gaussian>),
    GS(Dbm<Gaussian, Softmax>),
    SB(Dbm<Softmax, Bernoulli>),
    SG(Dbm<Softmax, Gaussian>),
    SS(Dbm<Softmax, Softmax>),
}

/// `$body` with `$m` bound to the machine of whichever type `$any` holds.
macro_rules! each {
    ($any:expr, $m:ident => $body:expr) => {
        match $any {
            Any::BB($m) => $body,
            Any::BG($m) => $body,
            Any::BS($m) => $body,
            Any::GB($m) => $body,
            Any::GG($m) => $body,
            Any::GS($m) => $body,
            Any::SB($m) => $body,
            Any::SG($m) => $body,
            Any::SS($m) => $body,
        }
    };
}

/// `$body` with the types `$V` and `$H` named by the unit kinds `$visible` and `$hidden`, its
/// machine wrapped in the matching variant.
macro_rules! of_kinds {
    ($visible:expr, $hidden:expr, |$V:ident, $H:ident| $body:expr) => {{
        macro_rules! arm {
            ($variant:ident, $v:ty, $h:ty) => {{
                type $V = $v;
                type $H = $h;
                Ok(Any::$variant($body))
            }};
        }
        match ($visible, $hidden) {
            ("bernoulli", "bernoulli") => arm!(BB, Bernoulli, Bernoulli),
            ("bernoulli", "gaussian") => arm!(BG, Bernoulli, Gaussian),
            ("bernoulli", "softmax") => arm!(BS, Bernoulli, Softmax),
            ("gaussian", "bernoulli") => arm!(GB, Gaussian, Bernoulli),
            ("gaussian", "gaussian") => arm!(GG, Gaussian, Gaussian),
            ("gaussian", "softmax") => arm!(GS, Gaussian, Softmax),
            ("softmax", "bernoulli") => arm!(SB, Softmax, Bernoulli),
            ("softmax", "gaussian") => arm!(SG, Softmax, Gaussian),
            ("softmax", "softmax") => arm!(SS, Softmax, Softmax),
            (v, h) => Err(PyValueError::new_err(format!(
                "unit types ({v:?}, {h:?}); each must be \"bernoulli\", \"gaussian\" or \"softmax\""
            ))),
        }
    }};
}

/// Sweeps per piece of a long sampling run, between which Ctrl-C is heard.
const SAMPLE_PIECE: usize = 50;

/// A progress callback for long estimates: hears Ctrl-C (or any pending signal's exception),
/// keeps the exception and stops the computation.
fn interrupted(failure: &Mutex<Option<PyErr>>, _done: usize, _total: usize) -> ControlFlow<()> {
    Python::attach(|py| match py.check_signals() {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => {
            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            ControlFlow::Break(())
        }
    })
}

/// The result of a computation that a callback may have stopped: the callback's exception
/// (such as `KeyboardInterrupt`) if it raised one, else the crate's result.
fn finish<T>(result: boltzmann::Result<T>, failure: Mutex<Option<PyErr>>) -> PyResult<T> {
    match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => result.or_raise(),
    }
}

/// What training's monitor does between epochs: hands the metrics to the Python callback (as
/// JSON) and stops the run on `False`, on an exception in the callback, or on Ctrl-C.
fn monitor(
    callback: &Option<Py<PyAny>>,
    failure: &mut Option<PyErr>,
    m: &EpochMetrics,
) -> ControlFlow<()> {
    Python::attach(|py| {
        let verdict = py.check_signals().and_then(|()| match callback {
            Some(f) => {
                let json = serde_json::to_string(m).expect("metrics serialise");
                let answer = f.call1(py, (json,))?;
                // Only an explicit `False` stops; `None` (no return) goes on.
                Ok(!answer.bind(py).is(pyo3::types::PyBool::new(py, false)))
            }
            None => Ok(true),
        });
        match verdict {
            Ok(true) => ControlFlow::Continue(()),
            Ok(false) => ControlFlow::Break(()),
            Err(e) => {
                *failure = Some(e);
                ControlFlow::Break(())
            }
        }
    })
}

fn config(json: &str) -> PyResult<TrainConfig> {
    serde_json::from_str(json).or_raise()
}

/// The default training settings as JSON: the starting point of every `fit`.
#[pyfunction]
fn default_train_config() -> String {
    serde_json::to_string(&TrainConfig::default()).expect("settings serialise")
}

/// Salakhutdinov & Hinton's joint DBM training settings as JSON.
#[pyfunction]
fn joint_train_config() -> String {
    serde_json::to_string(&TrainConfig::joint()).expect("settings serialise")
}

/// Larochelle & Bengio's classification RBM settings as JSON.
#[pyfunction]
fn classifier_train_config(classes: usize) -> String {
    serde_json::to_string(&TrainConfig::classifier(classes)).expect("settings serialise")
}

/// The AIS schedule of `count` inverse temperatures (`count` = 14,501: the paper's).
#[pyfunction]
fn three_stage_betas(count: usize) -> PyResult<Vec<f64>> {
    Ok(Betas::three_stage(count).or_raise()?.as_slice().to_vec())
}

/// The estimate (as JSON) from AIS shards (JSON) that together hold every block of one run set.
#[pyfunction]
fn merge_ais(shards: Vec<String>) -> PyResult<String> {
    let shards: Vec<AisShard> = shards
        .iter()
        .map(|s| serde_json::from_str(s))
        .collect::<serde_json::Result<_>>()
        .or_raise()?;
    let estimate = AisShard::merge(&shards).or_raise()?;
    Ok(serde_json::to_string(&estimate).expect("estimates serialise"))
}

/// The number of runs per AIS block: shards hold whole blocks.
#[pyfunction]
fn ais_block() -> usize {
    CHAIN_BLOCK
}

/// A layered machine: an RBM (one hidden layer) or a DBM.
#[pyclass(module = "boltzmann._core")]
struct Machine {
    any: Any,
}

#[pymethods]
impl Machine {
    /// A fresh machine with `sizes` units per layer (visible first), `W ~ N(0, 0.01²)`.
    #[new]
    fn new(visible: &str, hidden: &str, sizes: Vec<usize>, seed: u64) -> PyResult<Self> {
        let any = of_kinds!(visible, hidden, |V, H| Dbm::<V, H>::init(&sizes, seed)
            .or_raise()?)?;
        Ok(Machine { any })
    }

    /// A machine with these couplings (`(below, above)` each) and biases (one per layer).
    #[staticmethod]
    fn from_parameters(
        visible: &str,
        hidden: &str,
        weights: Vec<PyReadonlyArray2<f32>>,
        biases: Vec<PyReadonlyArray1<f32>>,
    ) -> PyResult<Self> {
        if biases.len() != weights.len() + 1 {
            return Err(PyValueError::new_err(format!(
                "{} weight matrices need {} bias vectors, not {}",
                weights.len(),
                weights.len() + 1,
                biases.len()
            )));
        }
        let w: Vec<DMatrix<f32>> = weights
            .iter()
            .map(|w| Ok(batch(w)?.transpose()))
            .collect::<PyResult<_>>()?;
        let b: Vec<DVector<f32>> = biases
            .iter()
            .map(|b| DVector::from_iterator(b.len(), b.as_array().iter().copied()))
            .collect();
        let any = of_kinds!(visible, hidden, |V, H| {
            let hidden: Vec<H> = b[1..].iter().map(|b| H::new(b.clone())).collect();
            Dbm::new(V::new(b[0].clone()), hidden, w.clone()).or_raise()?
        })?;
        Ok(Machine { any })
    }

    /// Loads a model file written by `save` (or by the crate), of any unit types.
    #[staticmethod]
    fn load(path: &str) -> PyResult<Self> {
        let mut first = None;
        for (v, h) in KINDS {
            let loaded = of_kinds!(v, h, |V, H| match Dbm::<V, H>::load(path) {
                Ok(m) => m,
                Err(e) => {
                    // A file of other unit types is tried as the next pair; any other error
                    // is the file's.
                    if !matches!(e, Error::Kind { .. }) {
                        return Err(to_py(e));
                    }
                    first.get_or_insert(e);
                    continue;
                }
            })?;
            return Ok(Machine { any: loaded });
        }
        Err(to_py(first.expect("a kind was tried")))
    }

    /// Imports `W1, W2, …, b0, b1, …` from a NumPy `.npz`.
    #[staticmethod]
    fn load_npz(visible: &str, hidden: &str, path: &str) -> PyResult<Self> {
        let any = of_kinds!(visible, hidden, |V, H| Dbm::<V, H>::load_npz(path)
            .or_raise()?)?;
        Ok(Machine { any })
    }

    fn save(&self, py: Python<'_>, path: &str) -> PyResult<()> {
        py.detach(|| each!(&self.any, m => m.save(path))).or_raise()
    }

    fn save_npz(&self, py: Python<'_>, path: &str) -> PyResult<()> {
        py.detach(|| each!(&self.any, m => m.save_npz(path)))
            .or_raise()
    }

    /// `(visible kind, hidden kind)`.
    fn kinds(&self) -> (String, String) {
        fn of<V: Layer, H: Layer>(_: &Dbm<V, H>) -> (String, String) {
            (V::kind(), H::kind())
        }
        each!(&self.any, m => of(m))
    }

    fn layer_sizes(&self) -> Vec<usize> {
        each!(&self.any, m => m.layer_sizes())
    }

    /// Coupling `l` (from 0: visible to first hidden) as `(below, above)`.
    fn weights<'py>(&self, py: Python<'py>, l: usize) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let w = each!(&self.any, m => m.couplings().get(l).cloned());
        weights_array(py, &w.ok_or_else(|| no_layer("coupling", l))?)
    }

    /// The biases of layer `l` (0: visible).
    fn bias<'py>(&self, py: Python<'py>, l: usize) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let b = each!(&self.any, m => bias_of(m, l));
        Ok(vector(py, &b.ok_or_else(|| no_layer("layer", l))?))
    }

    /// Replaces coupling `l` and the biases of every layer (`None` keeps them); the machine is
    /// checked as a whole and left unchanged on an error.
    fn set_parameters(
        &mut self,
        l: Option<usize>,
        w: Option<PyReadonlyArray2<f32>>,
        layer: Option<usize>,
        b: Option<PyReadonlyArray1<f32>>,
    ) -> PyResult<()> {
        let w = w.map(|w| batch(&w).map(|m| m.transpose())).transpose()?;
        let b = b.map(|b| DVector::from_iterator(b.len(), b.as_array().iter().copied()));
        each!(&mut self.any, m => {
            let mut weights = m.couplings().to_vec();
            if let (Some(l), Some(w)) = (l, w) {
                *weights.get_mut(l).ok_or_else(|| no_layer("coupling", l))? = w;
            }
            let mut visible = m.visible().clone();
            let mut hidden: Vec<_> = (1..=weights.len()).map(|k| m.hidden(k).cloned().expect("layer")).collect();
            if let (Some(layer), Some(b)) = (layer, b) {
                match layer {
                    0 => visible = visible.with_bias(b),
                    k if k <= hidden.len() => hidden[k - 1] = hidden[k - 1].with_bias(b),
                    k => return Err(no_layer("layer", k)),
                }
            }
            *m = Dbm::new(visible, hidden, weights).or_raise()?;
            Ok(())
        })
    }

    /// `ln p*(v)` of each row: `−F(v)` (exact) with one hidden layer, the mean-field lower
    /// bound with more.
    fn log_unnormalised<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<f32>,
        iterations: usize,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let v = batch(&x)?;
        let settings = mean_field(iterations);
        let lp = py
            .detach(|| each!(&self.any, m => log_unnormalised(m, &v, &settings)))
            .or_raise()?;
        Ok(PyArray1::from_vec(py, lp.data.into()))
    }

    /// Posterior means of every hidden layer given each row (exact for one hidden layer,
    /// mean-field for more).
    fn hidden_means<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<f32>,
        iterations: usize,
    ) -> PyResult<Vec<Bound<'py, PyArray2<f32>>>> {
        let v = batch(&x)?;
        let settings = mean_field(iterations);
        let mu = py
            .detach(|| each!(&self.any, m => m.mean_field(&v, &settings)))
            .or_raise()?;
        mu.into_iter().map(|m| rows(py, m)).collect()
    }

    /// `ln Z` by enumeration of the cheaper parity.
    fn log_partition_exact(&self, py: Python<'_>) -> PyResult<f64> {
        py.detach(|| each!(&self.any, m => log_partition_exact(m)))
            .or_raise()
    }

    /// Runs `chains` Gibbs chains for `sweeps` sweeps from random states, or from `start` (rows
    /// of visible states), with the visible units of `mask` clamped at `values`; returns every
    /// layer's final states.
    #[allow(clippy::too_many_arguments)]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        chains: usize,
        sweeps: usize,
        seed: u64,
        start: Option<PyReadonlyArray2<f32>>,
        mask: Option<Vec<bool>>,
        values: Option<PyReadonlyArray2<f32>>,
    ) -> PyResult<Vec<Bound<'py, PyArray2<f32>>>> {
        let start = start.map(|s| batch(&s)).transpose()?;
        let values = values.map(|s| batch(&s)).transpose()?;
        let failure = Mutex::new(None);
        let layers = py.detach(|| -> boltzmann::Result<Vec<DMatrix<f32>>> {
            each!(&self.any, m => {
                let mut c = match start {
                    Some(v0) => Chains::from_visible(m, v0, seed)?,
                    None => Chains::random(m, chains, seed)?,
                };
                if let (Some(mask), Some(values)) = (&mask, &values) {
                    c.clamp(mask, values)?;
                }
                // Long runs go in pieces between which Ctrl-C is heard. Announced whole
                // first, so that the products take the path one call would take.
                let total = sweeps.saturating_mul(c.len());
                let piece = if total >= 1000 { SAMPLE_PIECE } else { sweeps.max(1) };
                m.expect_sweeps(total);
                let mut done = 0;
                while done < sweeps {
                    let n = piece.min(sweeps - done);
                    c.sweep(m, n)?;
                    done += n;
                    if done < sweeps && interrupted(&failure, 0, 0).is_break() {
                        return Err(Error::Stopped { what: "sampling" });
                    }
                }
                Ok(c.layers().to_vec())
            })
        });
        let layers = finish(layers, failure)?;
        layers.into_iter().map(|l| rows(py, l)).collect()
    }

    /// AIS (forward, or reverse from `initial`: rows of visible states, or every layer's) over
    /// blocks `blocks` of the runs (all by default), from the uniform start or the base rates
    /// of `data`; returns the shard as JSON.
    #[allow(clippy::too_many_arguments)]
    fn ais(
        &self,
        py: Python<'_>,
        runs: usize,
        betas: Vec<f64>,
        seed: u64,
        data: Option<PyReadonlyArray2<f32>>,
        initial: Option<Vec<PyReadonlyArray2<f32>>>,
        blocks: Option<(usize, usize)>,
    ) -> PyResult<String> {
        let data = data.map(|d| batch(&d)).transpose()?;
        let initial: Option<Vec<DMatrix<f32>>> = initial
            .map(|layers| layers.iter().map(batch).collect::<PyResult<_>>())
            .transpose()?;
        let config = AisConfig {
            runs: initial
                .as_ref()
                .and_then(|i| i.first())
                .map_or(runs, |x| x.ncols()),
            betas: Betas::new(betas).or_raise()?,
            seed,
        };
        let blocks = blocks.map_or(0..config.runs.div_ceil(CHAIN_BLOCK), |(a, b)| a..b);
        let failure = Mutex::new(None);
        let progress = |d, t| interrupted(&failure, d, t);
        let shard = py.detach(|| {
            each!(&self.any, m => {
                let start = match &data {
                    Some(d) => Start::base_rate_default(m, d)?,
                    None => Start::uniform(m),
                };
                match &initial {
                    Some(x) => reverse_ais_shard(m, &start, x, &config, blocks, progress),
                    None => ais_shard(m, &start, &config, blocks, progress),
                }
            })
        });
        let shard = finish(shard, failure)?;
        Ok(serde_json::to_string(&shard).expect("shards serialise"))
    }

    /// The crate's `evaluate` (as JSON): forward AIS from the base rates of `train` (and
    /// reverse AIS from `sweeps` Gibbs sweeps away from the first test rows if `reverse`), and
    /// the average log-probabilities of `test` and `train`.
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        py: Python<'_>,
        test: PyReadonlyArray2<f32>,
        train: PyReadonlyArray2<f32>,
        runs: usize,
        betas: Vec<f64>,
        seed: u64,
        reverse: bool,
        sweeps: usize,
    ) -> PyResult<String> {
        let (test, train) = (batch(&test)?, batch(&train)?);
        let config = EvaluationConfig {
            ais: AisConfig {
                runs,
                betas: Betas::new(betas).or_raise()?,
                seed,
            },
            reverse: reverse.then_some(ReverseStart {
                from_test: true,
                sweeps,
            }),
            ..EvaluationConfig::default()
        };
        let failure = Mutex::new(None);
        let progress = |_, d, t| interrupted(&failure, d, t);
        let result = py.detach(|| {
            each!(&self.any, m => {
                let start = Start::base_rate_default(m, &train)?;
                evaluate(m, &start, &config, &train, &test, progress)
            })
        });
        let result = finish(result, failure)?;
        Ok(serde_json::to_string(&result).expect("evaluations serialise"))
    }

    /// Trains with the settings `config` (JSON of the crate's `TrainConfig`); `callback`
    /// receives each epoch's metrics as JSON and stops training by returning `False`. Returns
    /// the metrics of every epoch as JSON.
    fn fit(
        &mut self,
        py: Python<'_>,
        x: PyReadonlyArray2<f32>,
        config_json: &str,
        held_out: Option<PyReadonlyArray2<f32>>,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<String> {
        // NumPy's rows are the columns of a column-major matrix: the training data is read
        // where it lies, without a copy (strided arrays are copied once).
        let copied;
        let data = match x.as_slice() {
            Ok(values) => DMatrixView::from_slice(values, x.shape()[1], x.shape()[0]),
            Err(_) => {
                copied = batch(&x)?;
                copied.as_view()
            }
        };
        let held_out = held_out.map(|h| batch(&h)).transpose()?;
        let config = config(config_json)?;
        let mut failure = None;
        let history = py
            .detach(|| {
                each!(&mut self.any, m => train(m, data, held_out.as_ref(), &config, |e| {
                    monitor(&callback, &mut failure, e)
                }))
            })
            .or_raise()?;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(serde_json::to_string(&history).expect("metrics serialise"))
    }

    /// Greedy layer-wise pretraining (Bernoulli hidden units): replaces the machine by the
    /// composed stack of RBMs trained with `configs` (one JSON `TrainConfig` per hidden layer);
    /// `callback(layer, metrics)` after every epoch.
    fn pretrain(
        &mut self,
        py: Python<'_>,
        x: PyReadonlyArray2<f32>,
        configs: Vec<String>,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let data = batch(&x)?;
        let configs: Vec<TrainConfig> =
            configs.iter().map(|c| config(c)).collect::<PyResult<_>>()?;
        let hidden = self.layer_sizes()[1..].to_vec();
        let report = |l: usize, e: &EpochMetrics| {
            if let Some(f) = &callback {
                Python::attach(|py| {
                    let json = serde_json::to_string(e).expect("metrics serialise");
                    // Pretraining cannot stop early; a failing callback is reported after.
                    f.call1(py, (l, json)).map(drop)
                })
            } else {
                Ok(())
            }
        };
        let mut failure: Option<PyErr> = None;
        let pretrained = py.detach(|| match &self.any {
            Any::BB(_) => pretrain::<Bernoulli>(&data, &hidden, &configs, |l, e| {
                if let Err(err) = report(l, e) {
                    failure.get_or_insert(err);
                }
            })
            .map(|p| Any::BB(p.dbm)),
            Any::GB(_) => pretrain::<Gaussian>(&data, &hidden, &configs, |l, e| {
                if let Err(err) = report(l, e) {
                    failure.get_or_insert(err);
                }
            })
            .map(|p| Any::GB(p.dbm)),
            Any::SB(_) => pretrain::<Softmax>(&data, &hidden, &configs, |l, e| {
                if let Err(err) = report(l, e) {
                    failure.get_or_insert(err);
                }
            })
            .map(|p| Any::SB(p.dbm)),
            _ => Err(Error::invalid(
                "pretraining",
                "greedy pretraining stacks RBMs of Bernoulli hidden units",
            )),
        });
        if let Some(e) = failure {
            return Err(e);
        }
        self.any = pretrained.or_raise()?;
        Ok(())
    }

    fn __copy__(&self) -> Self {
        self.clone_machine()
    }

    fn __deepcopy__(&self, _memo: Bound<'_, PyAny>) -> Self {
        self.clone_machine()
    }
}

impl Machine {
    fn clone_machine(&self) -> Self {
        let any = match &self.any {
            Any::BB(m) => Any::BB(m.clone()),
            Any::BG(m) => Any::BG(m.clone()),
            Any::BS(m) => Any::BS(m.clone()),
            Any::GB(m) => Any::GB(m.clone()),
            Any::GG(m) => Any::GG(m.clone()),
            Any::GS(m) => Any::GS(m.clone()),
            Any::SB(m) => Any::SB(m.clone()),
            Any::SG(m) => Any::SG(m.clone()),
            Any::SS(m) => Any::SS(m.clone()),
        };
        Machine { any }
    }
}

const KINDS: [(&str, &str); 9] = [
    ("bernoulli", "bernoulli"),
    ("bernoulli", "gaussian"),
    ("bernoulli", "softmax"),
    ("gaussian", "bernoulli"),
    ("gaussian", "gaussian"),
    ("gaussian", "softmax"),
    ("softmax", "bernoulli"),
    ("softmax", "gaussian"),
    ("softmax", "softmax"),
];

fn bias_of<V: Layer, H: Layer>(m: &Dbm<V, H>, l: usize) -> Option<DVector<f32>> {
    match l {
        0 => Some(m.visible().bias().clone()),
        _ => m.hidden(l).map(|h| h.bias().clone()),
    }
}

fn no_layer(what: &str, l: usize) -> PyErr {
    pyo3::exceptions::PyIndexError::new_err(format!("the machine has no {what} {l}"))
}

fn mean_field(iterations: usize) -> MeanField {
    MeanField {
        iterations,
        ..MeanField::default()
    }
}

/// A classification RBM: inputs and one-hot labels side by side, one hidden layer.
#[pyclass(module = "boltzmann._core")]
struct Classifier {
    model: ClassRbm,
}

#[pymethods]
impl Classifier {
    #[new]
    fn new(inputs: usize, hidden: usize, classes: usize, seed: u64) -> PyResult<Self> {
        let model = ClassRbm::init(inputs, hidden, classes, seed).or_raise()?;
        Ok(Classifier { model })
    }

    #[staticmethod]
    fn load(path: &str) -> PyResult<Self> {
        Ok(Classifier {
            model: ClassRbm::load(path).or_raise()?,
        })
    }

    fn save(&self, py: Python<'_>, path: &str) -> PyResult<()> {
        py.detach(|| self.model.save(path)).or_raise()
    }

    /// `(inputs, hidden, classes)`.
    fn sizes(&self) -> (usize, usize, usize) {
        let m = &self.model;
        (m.num_inputs(), m.num_hidden(), m.num_classes())
    }

    /// `(W, U, input bias, label bias, hidden bias)`, `W` as `(inputs, hidden)` and `U` as
    /// `(classes, hidden)`.
    #[allow(clippy::type_complexity)]
    fn parameters<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(
        Bound<'py, PyArray2<f32>>,
        Bound<'py, PyArray2<f32>>,
        Bound<'py, PyArray1<f32>>,
        Bound<'py, PyArray1<f32>>,
        Bound<'py, PyArray1<f32>>,
    )> {
        let m = &self.model;
        Ok((
            weights_array(py, &m.input_weights())?,
            weights_array(py, &m.label_weights())?,
            vector(py, &m.input_bias()),
            vector(py, &m.label_bias()),
            vector(py, m.machine().hidden().bias()),
        ))
    }

    /// `ln p(y | x)` of every class for each row, `(n, classes)`.
    fn class_log_probabilities<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<f32>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let x = batch(&x)?;
        let lp = py
            .detach(|| self.model.class_log_probabilities(&x))
            .or_raise()?;
        rows(py, lp)
    }

    /// Trains on rows `x` with labels `y` (settings as JSON); as `Machine.fit`.
    fn fit(
        &mut self,
        py: Python<'_>,
        x: PyReadonlyArray2<f32>,
        y: Vec<usize>,
        config_json: &str,
        held_out: Option<(PyReadonlyArray2<f32>, Vec<usize>)>,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<String> {
        let x = batch(&x)?;
        let held_out = held_out
            .map(|(h, y)| Ok::<_, PyErr>((batch(&h)?, y)))
            .transpose()?;
        let config = config(config_json)?;
        let mut failure = None;
        let history = py
            .detach(|| {
                let held = held_out.as_ref().map(|(h, y)| (h, y.as_slice()));
                train_classifier(&mut self.model, (&x, &y), held, &config, |e| {
                    monitor(&callback, &mut failure, e)
                })
            })
            .or_raise()?;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(serde_json::to_string(&history).expect("metrics serialise"))
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Machine>()?;
    m.add_class::<Classifier>()?;
    m.add("DivergedError", m.py().get_type::<DivergedError>())?;
    m.add_function(wrap_pyfunction!(default_train_config, m)?)?;
    m.add_function(wrap_pyfunction!(joint_train_config, m)?)?;
    m.add_function(wrap_pyfunction!(classifier_train_config, m)?)?;
    m.add_function(wrap_pyfunction!(three_stage_betas, m)?)?;
    m.add_function(wrap_pyfunction!(merge_ais, m)?)?;
    m.add_function(wrap_pyfunction!(ais_block, m)?)?;
    Ok(())
}
