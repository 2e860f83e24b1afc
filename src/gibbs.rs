//! Blocked Gibbs sampling on a batch of persistent chains.

use crate::error::{Error, Result};
use crate::kernels::{ChainRng, stream};
use crate::layer::Layer;
use crate::rbm::Rbm;
use nalgebra::DMatrix;
use rayon::prelude::*;

/// Chains are split into fixed blocks of this many; each block has its own random stream and is
/// the unit of parallel work. The block size never depends on the thread count, so the same seed
/// gives the same bits for any `RAYON_NUM_THREADS`.
pub const CHAIN_BLOCK: usize = 50;

/// Visible units held fixed during sampling, with their values in every chain.
#[derive(Clone, Debug)]
struct Clamp {
    units: Vec<usize>,
    values: DMatrix<f32>,
}

/// A batch of persistent Gibbs chains of an RBM: one column per chain in `visible`
/// (`visible × chains`) and `hidden` (`hidden × chains`).
///
/// A [`sweep`](Chains::sweep) samples all hidden units given the visible ones, then all visible
/// units given the hidden ones; clamped visible units keep their values.
#[derive(Clone, Debug)]
pub struct Chains {
    visible: DMatrix<f32>,
    hidden: DMatrix<f32>,
    streams: Vec<ChainRng>,
    clamp: Option<Clamp>,
}

impl Chains {
    /// Chains started at the visible states `v0` (`visible × chains`), with random streams
    /// derived from `seed`.
    pub fn from_visible<V: Layer, H: Layer>(
        rbm: &Rbm<V, H>,
        v0: DMatrix<f32>,
        seed: u64,
    ) -> Result<Self> {
        rbm.check_batch("initial visible states", &v0, rbm.num_visible())?;
        if v0.ncols() == 0 {
            return Err(Error::Empty {
                what: "initial visible states",
            });
        }
        rbm.visible.check_state(v0.as_slice())?;
        Ok(Self::unchecked(v0, rbm.num_hidden(), seed))
    }

    /// Chains at `v0` without checking the states (for buffers that are overwritten first).
    pub(crate) fn unchecked(v0: DMatrix<f32>, hidden_units: usize, seed: u64) -> Self {
        let chains = v0.ncols();
        let blocks = chains.div_ceil(CHAIN_BLOCK);
        Chains {
            hidden: DMatrix::zeros(hidden_units, chains),
            visible: v0,
            streams: (0..blocks as u64).map(|b| stream(seed, b)).collect(),
            clamp: None,
        }
    }

    /// `chains` chains started from the visible layer's distribution without couplings (its
    /// biases alone).
    pub fn random<V: Layer, H: Layer>(rbm: &Rbm<V, H>, chains: usize, seed: u64) -> Result<Self> {
        if chains == 0 {
            return Err(Error::invalid("number of chains", "0; expected at least 1"));
        }
        let mut v0 = DMatrix::zeros(rbm.num_visible(), chains);
        // Stream indices from u64::MAX down are reserved for start states, away from the blocks'.
        rbm.visible
            .sample(v0.as_mut_slice(), &mut stream(seed, u64::MAX));
        Self::from_visible(rbm, v0, seed)
    }

    /// The number of chains.
    pub fn len(&self) -> usize {
        self.visible.ncols()
    }

    /// Whether there are no chains (never true for chains built by this crate).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The visible states, one column per chain.
    pub fn visible(&self) -> &DMatrix<f32> {
        &self.visible
    }

    /// The hidden states of the last sweep, one column per chain (zeros before the first sweep).
    pub fn hidden(&self) -> &DMatrix<f32> {
        &self.hidden
    }

    /// Replaces the visible states (e.g. with a new minibatch for CD-k), keeping the streams.
    pub(crate) fn set_visible(&mut self, v: &[f32]) {
        self.visible.as_mut_slice().copy_from_slice(v);
    }

    /// Holds the visible units where `mask` is true at the values of `values` (`visible ×
    /// chains`, one column per chain) during every following sweep: sampling then draws from
    /// `p(v_free | v_clamped)`. This is conditional generation and inpainting.
    pub fn clamp(&mut self, mask: &[bool], values: &DMatrix<f32>) -> Result<()> {
        let (nv, n) = self.visible.shape();
        if mask.len() != nv {
            return Err(Error::shape("clamp mask", nv, mask.len()));
        }
        if values.shape() != (nv, n) {
            return Err(Error::shape(
                "clamped values",
                format!("{nv}×{n}"),
                format!("{}×{}", values.nrows(), values.ncols()),
            ));
        }
        crate::error::check_finite("clamped values", values.as_slice())?;
        let units: Vec<usize> = (0..nv).filter(|&i| mask[i]).collect();
        let values = values.select_rows(units.iter());
        let clamp = Clamp { units, values };
        apply_clamp(&clamp, self.visible.as_mut_slice(), nv, 0);
        self.clamp = Some(clamp);
        Ok(())
    }

    /// Releases all clamped units.
    pub fn unclamp(&mut self) {
        self.clamp = None;
    }

    /// Runs `sweeps` blocked Gibbs sweeps: `h ~ p(h | v)`, then `v ~ p(v | h)`, for all chains.
    pub fn sweep<V: Layer, H: Layer>(&mut self, rbm: &Rbm<V, H>, sweeps: usize) -> Result<()> {
        if self.visible.nrows() != rbm.num_visible() || self.hidden.nrows() != rbm.num_hidden() {
            return Err(Error::shape(
                "chains",
                format!(
                    "{} visible and {} hidden units",
                    rbm.num_visible(),
                    rbm.num_hidden()
                ),
                format!("{} and {}", self.visible.nrows(), self.hidden.nrows()),
            ));
        }
        let (nv, nh) = (rbm.num_visible(), rbm.num_hidden());
        let clamp = self.clamp.as_ref();
        self.visible
            .as_mut_slice()
            .par_chunks_mut(nv * CHAIN_BLOCK)
            .zip(self.hidden.as_mut_slice().par_chunks_mut(nh * CHAIN_BLOCK))
            .zip(self.streams.par_iter_mut())
            .enumerate()
            .for_each(|(block, ((v, h), rng))| {
                for _ in 0..sweeps {
                    rbm.hidden_inputs_into(v, h);
                    rbm.hidden.sample(h, rng);
                    rbm.visible_inputs_into(h, v);
                    rbm.visible.sample(v, rng);
                    if let Some(clamp) = clamp {
                        apply_clamp(clamp, v, nv, block * CHAIN_BLOCK);
                    }
                }
            });
        Ok(())
    }
}

/// Writes the clamped values into the visible states `v` of the chains starting at `first`.
fn apply_clamp(clamp: &Clamp, v: &mut [f32], nv: usize, first: usize) {
    for (c, col) in v.chunks_exact_mut(nv).enumerate() {
        let values = clamp.values.column(first + c);
        for (&i, &x) in clamp.units.iter().zip(values.iter()) {
            col[i] = x;
        }
    }
}
