//! Greedy layer-wise pretraining of a DBM (Salakhutdinov & Hinton 2009): a stack of RBMs
//! trained with doubled inputs, composed into the DBM that joint training then refines.

use super::{EpochMetrics, TrainConfig, run};
use crate::dbm::Dbm;
use crate::error::{Error, Result};
use crate::gibbs::{CHAIN_BLOCK, Machine};
use crate::kernels::ChainRng;
use crate::layer::{Bernoulli, Layer};
use crate::rbm::Rbm;
use nalgebra::DMatrix;
use rayon::prelude::*;

/// How strongly each direction of an RBM's coupling counts: greedy DBM pretraining trains RBMs
/// whose inputs are doubled bottom-up, top-down or both, so that in the composed DBM, where each
/// hidden layer hears both neighbours, the inputs add up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputScale {
    /// Factor of the inputs to the hidden layer, `up·Wᵀv`.
    pub up: f32,
    /// Factor of the inputs to the visible layer, `down·W h`.
    pub down: f32,
}

impl InputScale {
    /// A plain machine.
    pub const ONE: InputScale = InputScale { up: 1.0, down: 1.0 };
}

/// A machine whose inputs are scaled by `scale`, as the Gibbs sampler and the trainer see it.
/// A scale other than [`InputScale::ONE`] is for machines of one hidden layer only.
pub(crate) struct Scaled<'a, V: Layer, H: Layer> {
    pub machine: &'a Dbm<V, H>,
    pub scale: InputScale,
}

fn times(x: &mut [f32], factor: f32) {
    if factor != 1.0 {
        x.iter_mut().for_each(|x| *x *= factor);
    }
}

impl<V: Layer, H: Layer> Scaled<'_, V, H> {
    /// `E[h₁ | v]` for the columns of `v` of a machine with one hidden layer, in parallel over
    /// fixed blocks of columns (each output owned by one task, so the bits do not depend on the
    /// thread count).
    pub(crate) fn hidden_mean_into(&self, v: &[f32], out: &mut [f32]) {
        let sizes = self.machine.layer_sizes();
        let (nv, nh) = (sizes[0], sizes[1]);
        out.par_chunks_mut(nh * CHAIN_BLOCK)
            .zip(v.par_chunks(nv * CHAIN_BLOCK))
            .for_each(|(h, v)| {
                self.machine.neighbour_inputs(1, Some(v), None, h);
                times(h, self.scale.up);
                self.machine.hidden[0].mean(h);
            });
    }
}

impl<V: Layer, H: Layer> Machine for Scaled<'_, V, H> {
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
        if self.scale == InputScale::ONE {
            return self.machine.sample_layer(layer, states, rng, mean);
        }
        let [v, h] = states else {
            unreachable!("scaled inputs are for machines of one hidden layer")
        };
        if layer == 1 {
            self.machine.neighbour_inputs(1, Some(v), None, h);
            times(h, self.scale.up);
            self.machine.hidden[0].sample_keeping_mean(h, rng, mean);
        } else {
            self.machine.neighbour_inputs(0, None, Some(h), v);
            times(v, self.scale.down);
            self.machine.visible.sample_keeping_mean(v, rng, mean);
        }
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

/// Greedy layer-wise pretraining: RBM `l` is initialised and trained with `configs[l − 1]` (its
/// seed draws the initial weights too) on the means of layer `l − 1` given the data, with inputs doubled as
/// [`pretraining_scale`] says, and the stack composes into a DBM with the RBMs' weights.
/// `hidden` gives the hidden layer sizes; `monitor(l, metrics)` is called after every epoch of
/// RBM `l`.
pub fn pretrain<V: crate::layer::FromBias>(
    data: &DMatrix<f32>,
    hidden: &[usize],
    configs: &[TrainConfig],
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
    let mut first: Rbm<V, Bernoulli> = Rbm::init(data.nrows(), hidden[0], configs[0].seed)?;
    let scale = pretraining_scale(1, layers);
    run(
        &mut first,
        scale,
        data.as_view(),
        None,
        &configs[0],
        None,
        |m| monitor(1, m),
    )?;
    let mut below = means(&first, scale, data);
    let mut upper: Vec<Rbm<Bernoulli, Bernoulli>> = Vec::new();
    for l in 2..=layers {
        let scale = pretraining_scale(l, layers);
        let config = &configs[l - 1];
        let mut rbm: Rbm<Bernoulli, Bernoulli> =
            Rbm::init(hidden[l - 2], hidden[l - 1], config.seed)?;
        run(&mut rbm, scale, below.as_view(), None, config, None, |m| {
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
    Scaled {
        machine: rbm,
        scale,
    }
    .hidden_mean_into(data.as_slice(), h.as_mut_slice());
    h
}
