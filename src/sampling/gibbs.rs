//! Blocked Gibbs sampling on a batch of persistent chains, for any layered machine (RBMs and
//! DBMs): all odd layers at once given the even ones, then all even layers given the odd ones.

use crate::error::{Error, Result};
pub use crate::kernels::CHAIN_BLOCK;
use crate::kernels::{ChainRng, stream};
pub use crate::models::Machine;
use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Visible units held fixed during sampling, with their values in every chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Clamp {
    units: Vec<usize>,
    #[serde(with = "crate::io::checked::matrix")]
    values: DMatrix<f32>,
}

/// A batch of persistent Gibbs chains: for each layer a matrix with one column per chain.
///
/// A [`sweep`](Chains::sweep) samples all odd layers given the even ones, then all even layers
/// (the visible one among them) given the odd ones; for an RBM that is `h ~ p(h | v)` then
/// `v ~ p(v | h)`. Clamped visible units keep their values.
///
/// Chains serialise with their random streams, so a checkpoint resumes them exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chains {
    #[serde(with = "crate::io::checked::matrices")]
    layers: Vec<DMatrix<f32>>,
    #[serde(with = "crate::io::checked::streams")]
    streams: Vec<ChainRng>,
    clamp: Option<Clamp>,
}

// Streams for start states count down from u64::MAX, away from the blocks' (0, 1, …).
const STREAM_START: u64 = u64::MAX;

impl Chains {
    /// Chains started at the visible states `v0` (`visible × chains`); hidden layers start from
    /// their biases alone. Random streams are derived from `seed`.
    pub fn from_visible(machine: &impl Machine, v0: DMatrix<f32>, seed: u64) -> Result<Self> {
        let sizes = machine.layer_sizes();
        if v0.nrows() != sizes[0] {
            return Err(Error::shape(
                "initial visible states",
                format!("{} rows (one column per chain)", sizes[0]),
                format!("{} rows", v0.nrows()),
            ));
        }
        if v0.ncols() == 0 {
            return Err(Error::Empty {
                what: "initial visible states",
            });
        }
        crate::error::check_finite("initial visible states", v0.as_slice())?;
        machine.check_visible_state(v0.as_slice())?;
        let mut chains = Self::unchecked(&sizes, v0, seed);
        for (l, x) in chains.layers.iter_mut().enumerate().skip(1) {
            let mut rng = stream(seed, STREAM_START - 1 - l as u64);
            machine.sample_unconnected(l, x.as_mut_slice(), &mut rng);
        }
        Ok(chains)
    }

    /// Chains at `v0` with zero hidden layers, without checks (for buffers that are overwritten
    /// before use, as the minibatch chains of CD).
    pub(crate) fn unchecked(sizes: &[usize], v0: DMatrix<f32>, seed: u64) -> Self {
        let n = v0.ncols();
        let mut layers = vec![v0];
        layers.extend(sizes[1..].iter().map(|&s| DMatrix::zeros(s, n)));
        Chains {
            layers,
            streams: (0..n.div_ceil(CHAIN_BLOCK) as u64)
                .map(|b| stream(seed, b))
                .collect(),
            clamp: None,
        }
    }

    /// `chains` chains started from every layer's distribution without couplings.
    pub fn random(machine: &impl Machine, chains: usize, seed: u64) -> Result<Self> {
        if chains == 0 {
            return Err(Error::invalid("number of chains", "0; expected at least 1"));
        }
        for units in machine.layer_sizes() {
            crate::error::check_elements("chains (units × chains)", &[units, chains])?;
        }
        let mut v0 = DMatrix::zeros(machine.layer_sizes()[0], chains);
        machine.sample_unconnected(0, v0.as_mut_slice(), &mut stream(seed, STREAM_START));
        Self::from_visible(machine, v0, seed)
    }

    /// Checks chains read from a file against `machine` before any use: one matrix per layer of
    /// the machine's units, every layer with the same number (≥ 1) of chains holding valid
    /// states, one random stream per block of [`CHAIN_BLOCK`] chains, and clamped units (in
    /// increasing order, within the visible layer) with one value per unit and chain.
    pub fn check(&self, machine: &impl Machine) -> Result<()> {
        self.check_fits(machine, true)
    }

    /// [`check`](Chains::check), with the states left unchecked if `states` is false (for
    /// chains whose states are overwritten before they are read, as CD's).
    pub(crate) fn check_fits(&self, machine: &impl Machine, states: bool) -> Result<()> {
        let sizes = machine.layer_sizes();
        let ours: Vec<(usize, usize)> = self.layers.iter().map(|x| x.shape()).collect();
        let n = ours.first().map_or(0, |s| s.1);
        let fits = ours.len() == sizes.len()
            && ours
                .iter()
                .zip(&sizes)
                .all(|(&(rows, cols), &units)| rows == units && cols == n);
        if !fits || n == 0 {
            return Err(Error::shape(
                "chains",
                format!("layers of {sizes:?} units, each with the same number (≥ 1) of chains"),
                format!("{ours:?} (units × chains)"),
            ));
        }
        if self.streams.len() != n.div_ceil(CHAIN_BLOCK) {
            return Err(Error::shape(
                "chain random streams",
                format!("{} for {n} chains", n.div_ceil(CHAIN_BLOCK)),
                self.streams.len(),
            ));
        }
        for (l, x) in self.layers.iter().enumerate().filter(|_| states) {
            machine.check_layer_state(l, x.as_slice())?;
        }
        if let Some(c) = &self.clamp {
            let increasing = c.units.windows(2).all(|w| w[0] < w[1]);
            if !increasing || c.units.last().is_some_and(|&u| u >= sizes[0]) {
                return Err(Error::invalid(
                    "clamped units",
                    format!("expected increasing unit indices below {}", sizes[0]),
                ));
            }
            if c.values.shape() != (c.units.len(), n) {
                return Err(Error::shape(
                    "clamped values",
                    format!("{}×{n}", c.units.len()),
                    format!("{}×{}", c.values.nrows(), c.values.ncols()),
                ));
            }
            crate::error::check_finite("clamped values", c.values.as_slice())?;
        }
        Ok(())
    }

    /// The number of chains.
    pub fn len(&self) -> usize {
        self.layers[0].ncols()
    }

    /// Whether there are no chains (never true for chains built by this crate).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The visible states, one column per chain.
    pub fn visible(&self) -> &DMatrix<f32> {
        &self.layers[0]
    }

    /// The states of the first hidden layer (of an RBM: its hidden layer).
    pub fn hidden(&self) -> &DMatrix<f32> {
        &self.layers[1]
    }

    /// The states of every layer, visible first, one column per chain.
    pub fn layers(&self) -> &[DMatrix<f32>] {
        &self.layers
    }

    /// The states of layer `l` (0 is visible), one column per chain.
    pub fn layer(&self, l: usize) -> Option<&DMatrix<f32>> {
        self.layers.get(l)
    }

    /// Replaces the visible states (e.g. with a new minibatch for CD-k), keeping the streams.
    pub(crate) fn set_visible(&mut self, v: &[f32]) {
        self.layers[0].as_mut_slice().copy_from_slice(v);
    }

    /// Exchanges the states of chain `c` (every layer) with those of chain `c` in `other`: a
    /// replica-exchange swap between two temperatures.
    pub(crate) fn swap_chain(&mut self, other: &mut Chains, c: usize) {
        for (x, y) in self.layers.iter_mut().zip(&mut other.layers) {
            let units = x.nrows();
            let range = c * units..(c + 1) * units;
            x.as_mut_slice()[range.clone()].swap_with_slice(&mut y.as_mut_slice()[range]);
        }
    }

    /// Chain `i` takes the states (every layer) of chain `picks[i]`: resampling. The random
    /// streams stay with their blocks.
    pub(crate) fn select(&mut self, picks: &[usize]) {
        for x in &mut self.layers {
            let units = x.nrows();
            let old = x.clone();
            for (i, &p) in picks.iter().enumerate() {
                x.as_mut_slice()[i * units..(i + 1) * units]
                    .copy_from_slice(&old.as_slice()[p * units..(p + 1) * units]);
            }
        }
    }

    /// New random streams from `seed` (same block structure).
    pub(crate) fn reseed(&mut self, seed: u64) {
        for (b, s) in self.streams.iter_mut().enumerate() {
            *s = stream(seed, b as u64);
        }
    }

    /// Holds the visible units where `mask` is true at the values of `values` (`visible ×
    /// chains`, one column per chain) during every following sweep: sampling then draws from
    /// `p(v_free, h | v_clamped)`. This is conditional generation and inpainting.
    pub fn clamp(&mut self, mask: &[bool], values: &DMatrix<f32>) -> Result<()> {
        let (nv, n) = self.layers[0].shape();
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
        apply_clamp(&clamp, self.layers[0].as_mut_slice(), nv, 0);
        self.clamp = Some(clamp);
        Ok(())
    }

    /// Releases all clamped units.
    pub fn unclamp(&mut self) {
        self.clamp = None;
    }

    /// Runs `sweeps` blocked Gibbs sweeps of all chains, in parallel over the fixed blocks.
    pub fn sweep(&mut self, machine: &impl Machine, sweeps: usize) -> Result<()> {
        self.sweep_keeping_means(machine, sweeps, None)
    }

    /// [`sweep`](Chains::sweep), also writing into `means` (layer 1's units × chains) the
    /// conditional means of layer 1 at its first update, given the layers around it as they
    /// start: for CD, where the chains start at the data, the data's hidden statistics without
    /// a second product. `means` is left as it is if `sweeps` is 0.
    pub(crate) fn sweep_keeping_means(
        &mut self,
        machine: &impl Machine,
        sweeps: usize,
        means: Option<&mut [f32]>,
    ) -> Result<()> {
        let sizes = machine.layer_sizes();
        let ours: Vec<usize> = self.layers.iter().map(|x| x.nrows()).collect();
        if sizes != ours {
            return Err(Error::shape(
                "chains",
                format!("layers of {sizes:?} units"),
                format!("{ours:?}"),
            ));
        }
        machine.expect_sweeps(sweeps.saturating_mul(self.len()));
        let mut mean_blocks: Vec<Option<&mut [f32]>> = match means {
            Some(m) => {
                assert_eq!(m.len(), sizes[1] * self.len(), "means of layer 1");
                m.chunks_mut(sizes[1] * CHAIN_BLOCK).map(Some).collect()
            }
            None => self.streams.iter().map(|_| None).collect(),
        };
        // Each block's slice of every layer, so that blocks can run in parallel.
        let mut blocks: Vec<Vec<&mut [f32]>> = self.streams.iter().map(|_| Vec::new()).collect();
        for (x, &units) in self.layers.iter_mut().zip(&sizes) {
            for (block, part) in blocks
                .iter_mut()
                .zip(x.as_mut_slice().chunks_mut(units * CHAIN_BLOCK))
            {
                block.push(part);
            }
        }
        let clamp = self.clamp.as_ref();
        let nv = sizes[0];
        type Block<'s> = (
            Vec<&'s mut [f32]>,
            (&'s mut ChainRng, &'s mut Option<&'s mut [f32]>),
        );
        let run = |(b, (mut states, (rng, mean))): (usize, Block<'_>)| {
            for _ in 0..sweeps {
                for parity in [1, 0] {
                    for l in (parity..sizes.len()).step_by(2) {
                        let mean = if l == 1 { mean.take() } else { None };
                        machine.sample_layer(l, &mut states, rng, mean);
                        if let (0, Some(clamp)) = (l, clamp) {
                            apply_clamp(clamp, states[0], nv, b * CHAIN_BLOCK);
                        }
                    }
                }
            }
        };
        // One block, or one thread, runs on the calling thread: no hand-off to the pool.
        if blocks.len() == 1 || rayon::current_num_threads() == 1 {
            blocks
                .into_iter()
                .zip(self.streams.iter_mut().zip(mean_blocks.iter_mut()))
                .enumerate()
                .for_each(run);
        } else {
            blocks
                .into_par_iter()
                .zip(self.streams.par_iter_mut().zip(mean_blocks.par_iter_mut()))
                .enumerate()
                .for_each(run);
        }
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
