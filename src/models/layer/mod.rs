//! Layers of units. A layer knows its own biases and, given the *inputs* it receives from its
//! neighbours through the couplings, its conditional distribution: mean, sample and cumulant
//! (log-partition function). Every machine in the crate is written once against [`Layer`].
//!
//! Batches are column-major `units × n` buffers: one column per example or chain.

mod bernoulli;
mod beside;
mod gaussian;
mod softmax;

pub use bernoulli::Bernoulli;
pub use beside::Beside;
pub use gaussian::Gaussian;
pub use softmax::Softmax;

use crate::error::Result;
use crate::kernels::ChainRng;
use nalgebra::DVector;
use serde::{Serialize, de::DeserializeOwned};

/// A layer of units with its biases `b`; its own energy is `E₀(x)` and a coupling adds `−xᵀa`
/// for inputs `a`, so that given inputs `a` the layer's conditional is `p(x | a) ∝ exp(xᵀa − E₀(x))`.
///
/// The biases enter the own energy linearly, as `−bᵀx` (plus terms free of `b`, such as the
/// `½‖x‖²` of Gaussian units); the bias gradient and AIS rely on it.
pub trait Layer: Clone + std::fmt::Debug + Send + Sync + Serialize + DeserializeOwned {
    /// A short name used in model files (`"bernoulli"`, `"gaussian"`, `"softmax"`,
    /// `"bernoulli+softmax"`).
    fn kind() -> String;

    /// A layer of the same kind and structure with these biases.
    fn with_bias(&self, bias: DVector<f32>) -> Self;

    /// The biases, one per unit.
    fn bias(&self) -> &DVector<f32>;

    /// The units of each part of the layer (one part for a single unit type; see [`Beside`]):
    /// with [`Layer::kind`], what a model file records besides the biases.
    fn parts(&self) -> Vec<usize> {
        vec![self.len()]
    }

    /// The layer of this type with these biases and [`parts`](Layer::parts), as a model file
    /// records them.
    fn from_parts(bias: DVector<f32>, parts: &[usize]) -> Result<Self>;

    /// The biases, mutable.
    fn bias_mut(&mut self) -> &mut DVector<f32>;

    /// The number of units.
    fn len(&self) -> usize {
        self.bias().len()
    }

    /// Whether the layer has no units.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Turns `inputs` `a` (`units × n`, without the bias) into conditional means `E[x | a]`,
    /// in place.
    fn mean(&self, inputs: &mut [f32]);

    /// Turns `inputs` `a` into a sample from `p(x | a)`, in place.
    fn sample(&self, inputs: &mut [f32], rng: &mut ChainRng);

    /// [`sample`](Layer::sample), first writing the conditional means of the same inputs into
    /// `mean` if it is given.
    fn sample_keeping_mean(
        &self,
        inputs: &mut [f32],
        rng: &mut ChainRng,
        mean: Option<&mut [f32]>,
    ) {
        if let Some(mean) = mean {
            mean.copy_from_slice(inputs);
            self.mean(mean);
        }
        self.sample(inputs, rng);
    }

    /// Adds to `out[c]` the cumulant `ln Σ_x exp(xᵀ(a + b) − E₀(x) − bᵀx)` summed over the units
    /// of column `c` of `inputs`, i.e. the log-partition function of the conditional. It is what
    /// a free energy subtracts when this layer is summed out.
    fn cumulant(&self, inputs: &[f32], out: &mut [f64]);

    /// [`cumulant`](Layer::cumulant) to single precision (about 1e-6 relative per unit), where
    /// speed matters more than the last digits: the class posterior of a classification RBM.
    fn cumulant_fast(&self, inputs: &[f32], out: &mut [f64]) {
        self.cumulant(inputs, out);
    }

    /// Adds to `out[c]` the change of the cumulant of column `c` along the annealing path on
    /// which inputs are scaled by β and biases move from `start` (at β = 0) to the layer's own
    /// (at β = 1): `Σ_units cumulant(β₁a + (1 − β₁)b⁰ + β₁b) − cumulant(β₀a + (1 − β₀)b⁰ + β₀b)`.
    /// This is the weight of one AIS step with this layer summed out. The default evaluates both
    /// cumulants in f64; layers may compute the difference directly.
    fn tempered_cumulant_step(
        &self,
        inputs: &[f32],
        start: &[f32],
        beta0: f64,
        beta1: f64,
        out: &mut [f64],
    ) {
        let n = out.len();
        let at = |beta: f64, sign: f64, out: &mut [f64]| {
            let layer = self.with_bias(tempered_bias(start, self.bias().as_slice(), beta));
            let b = beta as f32;
            let scaled: Vec<f32> = inputs.iter().map(|a| a * b).collect();
            let mut c = vec![0f64; n];
            layer.cumulant(&scaled, &mut c);
            out.iter_mut().zip(c).for_each(|(o, c)| *o += sign * c);
        };
        at(beta1, 1.0, out);
        at(beta0, -1.0, out);
    }

    /// Adds to `out[c]` what the variational bound needs of a factorial mean-field posterior
    /// `q` of this layer with means `mu` (column `c`) besides `−E(μ)`: its entropy `H(q)`, less
    /// `E_q[E₀(x)] − E₀(μ)`, which is zero where the own energy is linear in the state.
    fn mean_field_entropy(&self, mu: &[f32], out: &mut [f64]);

    /// Adds to `out[c]` the layer's own energy `E₀` of the state in column `c` of `x`.
    fn energy(&self, x: &[f32], out: &mut [f64]);

    /// Checks that every column of `x` is a state of this layer (e.g. 0/1 for Bernoulli units).
    fn check_state(&self, x: &[f32]) -> Result<()>;

    /// The bias gradient statistic `Σ_n ∂(−E₀(xₙ))/∂b`, added into `acc` (one per unit). For all
    /// three unit types of this crate it is the sum of the states.
    fn bias_statistics(&self, x: &[f32], acc: &mut [f32]) {
        for col in x.chunks_exact(self.len()) {
            for (a, v) in acc.iter_mut().zip(col) {
                *a += v;
            }
        }
    }

    /// Sets the biases so that, without couplings, the layer's mean equals `mean` (one value per
    /// unit, e.g. pixel means of the training data): the initialisation of Hinton's guide.
    fn set_bias_from_mean(&mut self, mean: &[f32]);

    /// The number of distinct states, or `None` for continuous units (or more than `u64::MAX`).
    fn num_states(&self) -> Option<u64>;

    /// Writes state number `index` (`0 ≤ index < num_states`) into `out` (one column).
    fn write_state(&self, index: u64, out: &mut [f32]);
}

/// A layer that its biases alone define (every single unit type): what machines of given sizes
/// are initialised and imported with.
pub trait FromBias: Layer {
    /// A layer with these biases.
    fn new(bias: DVector<f32>) -> Self;
}

/// `FromBias` for a layer type that holds only its biases, and the same `new` as an inherent
/// function so that callers need not import the trait.
macro_rules! from_bias {
    ($layer:ident) => {
        impl $layer {
            /// A layer with these biases.
            pub fn new(bias: DVector<f32>) -> Self {
                $layer { bias }
            }
        }

        impl super::FromBias for $layer {
            fn new(bias: DVector<f32>) -> Self {
                $layer { bias }
            }
        }
    };
}
use from_bias;

/// The [`Layer`] items of a layer type that holds only its biases, named `kind`.
macro_rules! bias_only {
    ($kind:literal) => {
        fn kind() -> String {
            $kind.into()
        }

        fn with_bias(&self, bias: DVector<f32>) -> Self {
            Self { bias }
        }

        fn from_parts(bias: DVector<f32>, parts: &[usize]) -> crate::error::Result<Self> {
            if parts != [bias.len()] {
                return Err(crate::error::Error::shape(
                    "layer parts",
                    format!("[{}]", bias.len()),
                    format!("{parts:?}"),
                ));
            }
            Ok(Self { bias })
        }

        fn bias(&self) -> &DVector<f32> {
            &self.bias
        }

        fn bias_mut(&mut self) -> &mut DVector<f32> {
            &mut self.bias
        }
    };
}
use bias_only;

/// The columns (one state or input vector each) of a column-major `units × n` buffer.
pub(crate) fn columns_mut(x: &mut [f32], units: usize) -> std::slice::ChunksExactMut<'_, f32> {
    x.chunks_exact_mut(units.max(1))
}

/// Adds the energy `−bᵀx` of each column of `x` to `out`: the own energy of discrete units.
pub(crate) fn linear_energy(bias: &DVector<f32>, x: &[f32], out: &mut [f64]) {
    for (col, o) in x.chunks_exact(bias.len().max(1)).zip(out.iter_mut()) {
        *o -= col
            .iter()
            .zip(bias.iter())
            .map(|(x, b)| f64::from(*x) * f64::from(*b))
            .sum::<f64>();
    }
}

/// The biases `(1 − β)·start + β·bias` of a layer on an annealing path.
pub(crate) fn tempered_bias(start: &[f32], bias: &[f32], beta: f64) -> DVector<f32> {
    let mut out = DVector::zeros(bias.len());
    set_tempered_bias(out.as_mut_slice(), start, bias, beta);
    out
}

/// [`tempered_bias`] into `out`, which has a unit for each.
pub(crate) fn set_tempered_bias(out: &mut [f32], start: &[f32], bias: &[f32], beta: f64) {
    let b = beta as f32;
    for ((o, s), x) in out.iter_mut().zip(start).zip(bias) {
        *o = (1.0 - b) * s + b * x;
    }
}
