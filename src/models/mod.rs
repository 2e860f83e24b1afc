//! The models: layers of units ([`layer`]) and the one layered machine ([`dbm`]) with its
//! one-hidden-layer case ([`rbm`]), the classification RBM ([`classify`]) and centered RBMs
//! ([`centering`]). Everything above — sampling, estimation, training — is written against
//! these, and nothing here depends on it.

pub mod centering;
pub mod classify;
pub mod dbm;
pub mod layer;
pub mod rbm;

use crate::error::Result;
use crate::kernels::ChainRng;

/// A machine of layers `0 (visible), 1, …, L` with couplings between neighbours only, as seen by
/// the Gibbs sampler: given its neighbours, each layer's units are independent.
pub trait Machine: Sync {
    /// Units per layer, visible first.
    fn layer_sizes(&self) -> Vec<usize>;

    /// Overwrites `states[layer]` with a sample given its neighbouring layers; `states` holds
    /// every layer of the same chains (column-major, one column per chain). If `mean` is given
    /// (the shape of `states[layer]`), it receives the conditional means the sample was drawn
    /// from.
    fn sample_layer(
        &self,
        layer: usize,
        states: &mut [&mut [f32]],
        rng: &mut ChainRng,
        mean: Option<&mut [f32]>,
    );

    /// Overwrites `x` with a sample of layer `layer` given no inputs (its biases alone).
    fn sample_unconnected(&self, layer: usize, x: &mut [f32], rng: &mut ChainRng);

    /// Checks that `v` holds states of the visible layer.
    fn check_visible_state(&self, v: &[f32]) -> Result<()>;

    /// Checks that `x` holds states of layer `layer` (by default: the visible check for layer
    /// 0, finite values elsewhere).
    fn check_layer_state(&self, layer: usize, x: &[f32]) -> Result<()> {
        if layer == 0 {
            self.check_visible_state(x)
        } else {
            crate::error::check_finite("chain states", x)
        }
    }

    /// Told, on the calling thread, before `chain_sweeps` chain-sweeps with the current
    /// parameters, so that the machine can prepare faster products when the work repays it.
    fn expect_sweeps(&self, chain_sweeps: usize) {
        let _ = chain_sweeps;
    }
}
