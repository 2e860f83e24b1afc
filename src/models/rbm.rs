//! The restricted Boltzmann machine `E(v, h) = E_V(v) + E_H(h) − vᵀWh`.

use crate::dbm::Dbm;
use crate::error::{Error, Result, check_finite};
use crate::kernels::ChainRng;
use crate::layer::{FromBias, Layer};
use crate::models::Machine;
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

/// A restricted Boltzmann machine with visible layer `V`, hidden layer `H` and f32 weights `W`
/// (visible × hidden): `E(v, h) = E_V(v) + E_H(h) − vᵀWh`, where `E_V`, `E_H` are the layers' own
/// energies (biases, and the quadratic term of Gaussian units).
///
/// An RBM is the layered machine [`Dbm`] with one hidden layer, and dereferences to it: energies,
/// sampling, enumeration, AIS, tempering and training are written once, for any depth. This type
/// adds what only one hidden layer has: the free energy `F(v)` with the hidden layer summed out
/// exactly, and products and conditionals by name (`hidden_mean`, `sample_visible`, …).
///
/// Batches are matrices with one column per example (`units × n`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "", from = "Parts<V, H>", into = "Parts<V, H>")]
pub struct Rbm<V: Layer, H: Layer> {
    machine: Dbm<V, H>,
}

/// An RBM as its files store it: the two layers and the one weight matrix.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct Parts<V: Layer, H: Layer> {
    visible: V,
    hidden: H,
    #[serde(with = "crate::io::checked::matrix")]
    weights: DMatrix<f32>,
}

impl<V: Layer, H: Layer> From<Parts<V, H>> for Rbm<V, H> {
    fn from(p: Parts<V, H>) -> Self {
        Rbm {
            machine: Dbm::unchecked(p.visible, vec![p.hidden], vec![p.weights]),
        }
    }
}

impl<V: Layer, H: Layer> From<Rbm<V, H>> for Parts<V, H> {
    fn from(rbm: Rbm<V, H>) -> Self {
        let (visible, mut hidden, mut weights) = rbm.machine.into_parts();
        Parts {
            visible,
            hidden: hidden.remove(0),
            weights: weights.remove(0),
        }
    }
}

impl<V: Layer, H: Layer> std::ops::Deref for Rbm<V, H> {
    type Target = Dbm<V, H>;

    fn deref(&self) -> &Dbm<V, H> {
        &self.machine
    }
}

impl<V: Layer, H: Layer> std::ops::DerefMut for Rbm<V, H> {
    fn deref_mut(&mut self) -> &mut Dbm<V, H> {
        &mut self.machine
    }
}

impl<V: Layer, H: Layer> TryFrom<Dbm<V, H>> for Rbm<V, H> {
    type Error = Error;

    /// The RBM of a layered machine with one hidden layer.
    fn try_from(machine: Dbm<V, H>) -> Result<Self> {
        if machine.num_layers() != 2 {
            return Err(Error::invalid(
                "RBM layers",
                format!(
                    "{:?} units per layer; an RBM has one hidden layer",
                    machine.layer_sizes()
                ),
            ));
        }
        machine.check()?;
        Ok(Rbm { machine })
    }
}

impl<V: Layer, H: Layer> Rbm<V, H> {
    /// An RBM from its layers and weights (`visible × hidden`); checks shapes and finiteness.
    pub fn new(visible: V, hidden: H, weights: DMatrix<f32>) -> Result<Self> {
        Rbm::try_from(Dbm::new(visible, vec![hidden], vec![weights])?)
    }

    /// The layered machine this RBM is.
    pub fn into_machine(self) -> Dbm<V, H> {
        self.machine
    }

    /// The number of visible units.
    pub fn num_visible(&self) -> usize {
        self.visible.len()
    }

    /// The number of hidden units.
    pub fn num_hidden(&self) -> usize {
        self.hidden().len()
    }

    /// The weights, `visible × hidden`.
    pub fn weights(&self) -> &DMatrix<f32> {
        &self.machine.couplings()[0]
    }

    /// The weights, to change in place (forgets the cached `Wᵀ` and subset sums).
    pub(crate) fn weights_mut(&mut self) -> &mut DMatrix<f32> {
        &mut self.machine.weights_mut()[0]
    }

    /// The hidden layer.
    pub fn hidden(&self) -> &H {
        &self.machine.hidden[0]
    }

    /// The hidden layer, to change in place.
    pub(crate) fn hidden_mut(&mut self) -> &mut H {
        &mut self.machine.hidden[0]
    }

    /// Replaces the weights; the shape must stay the same and values be finite.
    pub fn set_weights(&mut self, weights: DMatrix<f32>) -> Result<()> {
        if weights.shape() != self.weights().shape() {
            return Err(Error::shape(
                "weights",
                format!("{:?}", self.weights().shape()),
                format!("{:?}", weights.shape()),
            ));
        }
        check_finite("weights", weights.as_slice())?;
        *self.weights_mut() = weights;
        Ok(())
    }

    /// Inputs to the hidden layer from visible states: `out = Wᵀv` (`hidden × n`).
    pub(crate) fn hidden_inputs_into(&self, v: &[f32], out: &mut [f32]) {
        self.neighbour_inputs(1, Some(v), None, out);
    }

    /// Inputs to the visible layer from hidden states: `out = W h` (`visible × n`).
    pub(crate) fn visible_inputs_into(&self, h: &[f32], out: &mut [f32]) {
        self.neighbour_inputs(0, None, Some(h), out);
    }

    fn hidden_inputs(&self, v: &DMatrix<f32>) -> Result<DMatrix<f32>> {
        self.check_batch("visible batch", v, self.num_visible())?;
        let mut a = DMatrix::zeros(self.num_hidden(), v.ncols());
        self.hidden_inputs_into(v.as_slice(), a.as_mut_slice());
        Ok(a)
    }

    fn visible_inputs(&self, h: &DMatrix<f32>) -> Result<DMatrix<f32>> {
        self.check_batch("hidden batch", h, self.num_hidden())?;
        let mut a = DMatrix::zeros(self.num_visible(), h.ncols());
        self.visible_inputs_into(h.as_slice(), a.as_mut_slice());
        Ok(a)
    }

    /// `E[h | v]` for each column of `v`.
    pub fn hidden_mean(&self, v: &DMatrix<f32>) -> Result<DMatrix<f32>> {
        let mut a = self.hidden_inputs(v)?;
        self.hidden().mean(a.as_mut_slice());
        Ok(a)
    }

    /// `E[v | h]` for each column of `h`.
    pub fn visible_mean(&self, h: &DMatrix<f32>) -> Result<DMatrix<f32>> {
        let mut a = self.visible_inputs(h)?;
        self.visible.mean(a.as_mut_slice());
        Ok(a)
    }

    /// A sample `h ~ p(h | v)` for each column of `v`.
    pub fn sample_hidden(&self, v: &DMatrix<f32>, rng: &mut ChainRng) -> Result<DMatrix<f32>> {
        let mut a = self.hidden_inputs(v)?;
        self.hidden().sample(a.as_mut_slice(), rng);
        Ok(a)
    }

    /// A sample `v ~ p(v | h)` for each column of `h`.
    pub fn sample_visible(&self, h: &DMatrix<f32>, rng: &mut ChainRng) -> Result<DMatrix<f32>> {
        let mut a = self.visible_inputs(h)?;
        self.visible.sample(a.as_mut_slice(), rng);
        Ok(a)
    }

    /// The energy `E(v, h)` of each column pair.
    pub fn energy(&self, v: &DMatrix<f32>, h: &DMatrix<f32>) -> Result<DVector<f64>> {
        self.machine.energy(&[v.clone(), h.clone()])
    }

    /// The free energy `F(v) = −ln Σ_h exp(−E(v, h)) = E_V(v) − Σ_j cumulant_H((Wᵀv)_j)`, with
    /// the hidden layer summed out exactly, so that `p(v) = exp(−F(v)) / Z`.
    pub fn free_energy(&self, v: &DMatrix<f32>) -> Result<DVector<f64>> {
        let a = self.hidden_inputs(v)?;
        Ok(free_energy(
            &self.visible,
            self.hidden(),
            v.as_slice(),
            a.as_slice(),
        ))
    }

    /// The free energy of hidden states with the visible layer summed out:
    /// `F(h) = E_H(h) − Σ_i cumulant_V((W h)_i)`, so that `p(h) = exp(−F(h)) / Z`.
    pub fn free_energy_hidden(&self, h: &DMatrix<f32>) -> Result<DVector<f64>> {
        let a = self.visible_inputs(h)?;
        Ok(free_energy(
            self.hidden(),
            &self.visible,
            h.as_slice(),
            a.as_slice(),
        ))
    }
}

/// `F(x) = E_A(x) − Σ cumulant_B(inputs)` for states `x` of layer `A` whose couplings send
/// `inputs` to layer `B`, which is summed out. One formula for both sides of an RBM.
pub(crate) fn free_energy<A: Layer, B: Layer>(
    a: &A,
    b: &B,
    x: &[f32],
    inputs: &[f32],
) -> DVector<f64> {
    let n = x.len() / a.len().max(1);
    let mut f = DVector::zeros(n);
    let mut c = DVector::zeros(n);
    a.energy(x, f.as_mut_slice());
    b.cumulant(inputs, c.as_mut_slice());
    f - c
}

impl<V: Layer, H: Layer> Rbm<V, H> {
    /// Saves the model to a model file, atomically: the layered machine's file
    /// ([`Dbm::save`]) with `machine` `rbm`.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        self.machine.save_as(path.as_ref(), "rbm")
    }

    /// Loads a model file of a machine with one hidden layer ([`Dbm::load`]).
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self> {
        Rbm::try_from(Dbm::load(path)?)
    }

    /// Loads a model file of any depth as the layered machine ([`Dbm::load`]).
    pub fn load_machine(path: impl AsRef<std::path::Path>) -> Result<Dbm<V, H>> {
        Dbm::load(path)
    }

    /// Exports the parameters as NumPy `.npz`: float32 arrays `W` (visible × hidden),
    /// `b_visible` and `b_hidden`.
    #[cfg(feature = "npz")]
    pub fn save_npz(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let (nv, nh) = self.weights().shape();
        let w_rows: Vec<f32> = self.weights().transpose().as_slice().to_vec();
        crate::io::write_npz(
            path,
            &[
                ("W", vec![nv as u64, nh as u64], w_rows),
                (
                    "b_visible",
                    vec![nv as u64],
                    self.visible.bias().as_slice().to_vec(),
                ),
                (
                    "b_hidden",
                    vec![nh as u64],
                    self.hidden().bias().as_slice().to_vec(),
                ),
            ],
        )
    }
}

impl<V: Layer, H: Layer> Machine for Rbm<V, H> {
    fn layer_sizes(&self) -> Vec<usize> {
        self.machine.layer_sizes()
    }

    fn sample_layer(
        &self,
        layer: usize,
        states: &mut [&mut [f32]],
        rng: &mut ChainRng,
        mean: Option<&mut [f32]>,
    ) {
        self.machine.sample_layer(layer, states, rng, mean)
    }

    fn sample_unconnected(&self, layer: usize, x: &mut [f32], rng: &mut ChainRng) {
        self.machine.sample_unconnected(layer, x, rng)
    }

    fn check_visible_state(&self, v: &[f32]) -> Result<()> {
        self.machine.check_visible_state(v)
    }

    fn check_layer_state(&self, layer: usize, x: &[f32]) -> Result<()> {
        self.machine.check_layer_state(layer, x)
    }

    fn expect_sweeps(&self, chain_sweeps: usize) {
        self.machine.expect_sweeps(chain_sweeps)
    }
}

impl<V: FromBias, H: FromBias> Rbm<V, H> {
    /// A fresh RBM as Hinton's practical guide starts one: `W ~ N(0, 0.01²)`, zero biases. Set
    /// the visible biases from the data with [`Dbm::set_visible_bias_from_data`].
    pub fn init(visible_units: usize, hidden_units: usize, seed: u64) -> Result<Self> {
        Rbm::try_from(Dbm::init(&[visible_units, hidden_units], seed)?)
    }

    /// Imports parameters from a NumPy `.npz` with arrays `W` (visible × hidden), `b_visible`
    /// and `b_hidden` (float32 or float64), e.g. published weights. The layer types are `V`, `H`.
    #[cfg(feature = "npz")]
    pub fn load_npz(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut arrays = crate::io::read_npz(path)?;
        let mut take = |name: &str| {
            crate::io::take_npz(
                &mut arrays,
                path,
                name,
                "RBM .npz",
                "W, b_visible and b_hidden",
            )
        };
        let w = take("W")?.into_matrix("W")?;
        let bv = take("b_visible")?.into_vector("b_visible")?;
        let bh = take("b_hidden")?.into_vector("b_hidden")?;
        Rbm::new(V::new(bv), H::new(bh), w)
    }
}
