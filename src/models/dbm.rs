//! The deep Boltzmann machine `v —W₁— h₁ —W₂— h₂ … —W_L— h_L` (Salakhutdinov & Hinton 2009).
//!
//! `E(x₀, …, x_L) = Σ_l E_l(x_l) − Σ_{l ≥ 1} x_{l−1}ᵀ W_l x_l`, with `x₀ = v`. Layers couple to
//! their neighbours only, so all odd layers are independent given the even ones and vice versa:
//! the Gibbs sampler alternates between the two parities, and either parity can be summed out
//! analytically.

use crate::error::{Error, Result, check_finite, check_finite_columns};
use crate::kernels::{ChainRng, CouplingCache, coupling_down, coupling_up, fill_normal, stream};
use crate::layer::{Bernoulli, FromBias, Layer};
use crate::models::Machine;
use nalgebra::{DMatrix, DMatrixView, DVector};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// A deep Boltzmann machine with visible layer `V` and hidden layers `H` (Bernoulli by default).
/// Layer 0 is visible; `weights[l − 1]` (`W_l`, size of layer `l − 1` × size of layer `l`)
/// couples layers `l − 1` and `l`. Batches have one column per example.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Dbm<V: Layer, H: Layer = Bernoulli> {
    pub(crate) visible: V,
    pub(crate) hidden: Vec<H>,
    // Private so that every change goes through `weights_mut`, which clears the caches.
    #[serde(with = "crate::io::checked::matrices")]
    weights: Vec<DMatrix<f32>>,
    /// One [`CouplingCache`] per coupling, made on first use.
    #[serde(skip)]
    caches: Caches,
}

/// The couplings' caches: a cache, so clones start empty and it never takes part in comparisons.
#[derive(Default)]
struct Caches(std::sync::OnceLock<Vec<CouplingCache>>);

impl Clone for Caches {
    fn clone(&self) -> Self {
        Caches::default()
    }
}

impl PartialEq for Caches {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Caches")
    }
}

/// `body` with `$x` bound to layer `l` of `m` (the visible layer or a hidden one: two types).
macro_rules! on_layer {
    ($m:expr, $l:expr, |$x:ident| $body:expr) => {
        match $l {
            0 => {
                let $x = &$m.visible;
                $body
            }
            l => {
                let $x = &$m.hidden[l - 1];
                $body
            }
        }
    };
}

/// The sufficient statistics of a distribution over the states of a machine, or a difference
/// of two (a gradient): the correlation `⟨x_{l−1} x_lᵀ⟩` of every coupling and the mean `⟨x_l⟩`
/// of every layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Statistics {
    pub weights: Vec<DMatrix<f32>>,
    pub biases: Vec<DVector<f32>>,
}

/// Which layers a free energy sums out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parity {
    /// Layers 1, 3, 5, …
    Odd,
    /// Layers 0 (visible), 2, 4, …
    Even,
}

impl Parity {
    pub(crate) fn of(layer: usize) -> Self {
        if layer % 2 == 1 {
            Parity::Odd
        } else {
            Parity::Even
        }
    }
}

impl<V: Layer, H: Layer> Dbm<V, H> {
    /// A DBM from its layers and couplings; checks that the shapes chain together and that all
    /// values are finite.
    pub fn new(visible: V, hidden: Vec<H>, weights: Vec<DMatrix<f32>>) -> Result<Self> {
        let dbm = Dbm::unchecked(visible, hidden, weights);
        dbm.check()?;
        Ok(dbm)
    }

    /// Checks that the parts fit together and hold finite numbers.
    pub fn check(&self) -> Result<()> {
        let sizes = self.layer_sizes();
        if self.hidden.is_empty() || sizes.contains(&0) {
            return Err(Error::invalid(
                "DBM layers",
                format!("sizes {sizes:?}; expected at least one hidden layer, all ≥ 1 unit"),
            ));
        }
        if self.weights.len() != self.hidden.len() {
            return Err(Error::shape(
                "DBM couplings",
                self.hidden.len(),
                self.weights.len(),
            ));
        }
        for (l, w) in self.weights.iter().enumerate() {
            if w.shape() != (sizes[l], sizes[l + 1]) {
                return Err(Error::shape(
                    "DBM coupling",
                    format!("W{} of {}×{}", l + 1, sizes[l], sizes[l + 1]),
                    format!("{}×{}", w.nrows(), w.ncols()),
                ));
            }
            check_finite("DBM weights", w.as_slice())?;
        }
        check_finite("visible biases", self.visible.bias().as_slice())?;
        for h in &self.hidden {
            check_finite("hidden biases", h.bias().as_slice())?;
        }
        Ok(())
    }

    /// Units per layer, visible first.
    pub fn layer_sizes(&self) -> Vec<usize> {
        std::iter::once(self.visible.len())
            .chain(self.hidden.iter().map(|h| h.len()))
            .collect()
    }

    /// The number of layers, visible included.
    pub fn num_layers(&self) -> usize {
        self.hidden.len() + 1
    }

    /// The visible layer.
    pub fn visible(&self) -> &V {
        &self.visible
    }

    /// Hidden layer `l` (1-based, as in `h_l`).
    pub fn hidden(&self, l: usize) -> Option<&H> {
        l.checked_sub(1).and_then(|i| self.hidden.get(i))
    }

    /// The coupling `W_l` between layers `l − 1` and `l` (1-based).
    pub fn weights(&self, l: usize) -> Option<&DMatrix<f32>> {
        l.checked_sub(1).and_then(|i| self.weights.get(i))
    }

    /// Every coupling, `W₁` first.
    pub fn couplings(&self) -> &[DMatrix<f32>] {
        &self.weights
    }

    /// Sets the visible biases from the mean of `data` (`visible × n`): log-odds of the pixel
    /// means for Bernoulli units, as Hinton's guide recommends.
    pub fn set_visible_bias_from_data<'a>(
        &mut self,
        data: impl Into<DMatrixView<'a, f32>>,
    ) -> Result<()> {
        let data = data.into();
        self.check_examples("data", data, self.visible.len())?;
        let mean = data.column_mean();
        self.visible.set_bias_from_mean(mean.as_slice());
        Ok(())
    }

    /// Checks that a batch has `units` rows and finite values.
    pub(crate) fn check_batch(
        &self,
        what: &'static str,
        x: &DMatrix<f32>,
        units: usize,
    ) -> Result<()> {
        self.check_examples(what, x.as_view(), units)
    }

    /// [`Dbm::check_batch`] for examples that may be borrowed (a view).
    pub(crate) fn check_examples(
        &self,
        what: &'static str,
        x: DMatrixView<'_, f32>,
        units: usize,
    ) -> Result<()> {
        if x.nrows() != units {
            return Err(Error::shape(
                what,
                format!("{units} rows (one column per example)"),
                format!("{} rows", x.nrows()),
            ));
        }
        check_finite_columns(what, x)
    }

    /// The layers and couplings.
    pub(crate) fn into_parts(self) -> (V, Vec<H>, Vec<DMatrix<f32>>) {
        (self.visible, self.hidden, self.weights)
    }

    /// A DBM from its parts, without checks.
    pub(crate) fn unchecked(visible: V, hidden: Vec<H>, weights: Vec<DMatrix<f32>>) -> Self {
        Dbm {
            visible,
            hidden,
            weights,
            caches: Caches::default(),
        }
    }

    /// The same machine with every coupling zero, and its exact `ln Z` (each layer's alone).
    pub fn uncoupled(&self) -> (Self, f64) {
        let mut m = self.clone();
        m.weights_mut().iter_mut().for_each(|w| w.fill(0.0));
        let mut log_z = [0f64];
        for (l, &units) in self.layer_sizes().iter().enumerate() {
            self.layer_cumulant(l, &vec![0f32; units], &mut log_z);
        }
        (m, log_z[0])
    }

    /// The layers alone, without couplings (scratch for annealed samplers: only its layers'
    /// biases and samplers are used).
    pub(crate) fn layers_only(&self) -> Self {
        Dbm::unchecked(self.visible.clone(), self.hidden.clone(), Vec::new())
    }

    /// The couplings, to change in place (forgets their caches).
    pub(crate) fn weights_mut(&mut self) -> &mut [DMatrix<f32>] {
        if let Some(caches) = self.caches.0.get_mut() {
            caches.iter_mut().for_each(CouplingCache::clear);
        }
        &mut self.weights
    }

    /// The cache of coupling `W_{l+1}` (0-based `l`).
    fn cache(&self, l: usize) -> Option<&CouplingCache> {
        self.caches
            .0
            .get_or_init(|| {
                self.weights
                    .iter()
                    .map(|_| CouplingCache::default())
                    .collect()
            })
            .get(l)
    }

    /// The inputs layer `l` receives from its neighbours: `W_lᵀ x_{l−1} + W_{l+1} x_{l+1}`,
    /// given the states of the whole stack (only layers `l ± 1` are read).
    pub(crate) fn inputs_into(&self, l: usize, states: &[&[f32]], out: &mut [f32]) {
        let below = l.checked_sub(1).map(|b| states[b]);
        let above = states.get(l + 1).copied();
        self.neighbour_inputs(l, below, above, out);
    }

    /// `out = W_lᵀ·below + W_{l+1}·above` (either term absent at the ends of the stack).
    pub(crate) fn neighbour_inputs(
        &self,
        l: usize,
        below: Option<&[f32]>,
        above: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let mut written = false;
        if let (Some(x), true) = (below, l > 0) {
            coupling_up(&self.weights[l - 1], self.cache(l - 1), x, out, false);
            written = true;
        }
        if let (Some(x), true) = (above, l < self.hidden.len()) {
            coupling_down(&self.weights[l], self.cache(l), x, out, written);
            written = true;
        }
        if !written {
            out.iter_mut().for_each(|x| *x = 0.0);
        }
    }

    fn layer_mean(&self, l: usize, x: &mut [f32]) {
        on_layer!(self, l, |y| y.mean(x))
    }

    /// Samples layer `l` from its inputs `x`, in place ([`Layer::sample_keeping_mean`]).
    pub(crate) fn layer_sample(
        &self,
        l: usize,
        x: &mut [f32],
        rng: &mut ChainRng,
        mean: Option<&mut [f32]>,
    ) {
        on_layer!(self, l, |y| y.sample_keeping_mean(x, rng, mean))
    }

    /// Layer `l`'s [`Layer::tempered_cumulant_step`].
    pub(crate) fn layer_tempered_step(
        &self,
        l: usize,
        inputs: &[f32],
        start: &[f32],
        beta0: f64,
        beta1: f64,
        out: &mut [f64],
    ) {
        on_layer!(self, l, |y| y
            .tempered_cumulant_step(inputs, start, beta0, beta1, out))
    }

    /// The biases of layer `l`.
    pub(crate) fn layer_bias(&self, l: usize) -> &DVector<f32> {
        on_layer!(self, l, |y| y.bias())
    }

    /// The biases of layer `l`, mutable.
    pub(crate) fn layer_bias_mut(&mut self, l: usize) -> &mut DVector<f32> {
        match l {
            0 => self.visible.bias_mut(),
            _ => self.hidden[l - 1].bias_mut(),
        }
    }

    /// Sets the biases of layer `l` so that alone it has means `mean` ([`Layer::set_bias_from_mean`]).
    pub(crate) fn set_layer_bias_from_mean(&mut self, l: usize, mean: &[f32]) {
        match l {
            0 => self.visible.set_bias_from_mean(mean),
            _ => self.hidden[l - 1].set_bias_from_mean(mean),
        }
    }

    fn layer_energy(&self, l: usize, x: &[f32], out: &mut [f64]) {
        on_layer!(self, l, |y| y.energy(x, out))
    }

    pub(crate) fn layer_cumulant(&self, l: usize, inputs: &[f32], out: &mut [f64]) {
        on_layer!(self, l, |y| y.cumulant(inputs, out))
    }

    pub(crate) fn layer_states(&self, l: usize) -> Option<u64> {
        on_layer!(self, l, |y| y.num_states())
    }

    pub(crate) fn layer_write_state(&self, l: usize, index: u64, out: &mut [f32]) {
        on_layer!(self, l, |y| y.write_state(index, out))
    }

    /// Checks a full set of states: one matrix per layer, the same number of columns.
    fn check_states(&self, states: &[DMatrix<f32>]) -> Result<usize> {
        let sizes = self.layer_sizes();
        if states.len() != sizes.len() {
            return Err(Error::shape("DBM states", sizes.len(), states.len()));
        }
        let n = states[0].ncols();
        for (l, (x, &units)) in states.iter().zip(&sizes).enumerate() {
            if x.shape() != (units, n) {
                return Err(Error::shape(
                    "DBM states",
                    format!("layer {l}: {units}×{n}"),
                    format!("{}×{}", x.nrows(), x.ncols()),
                ));
            }
            check_finite("DBM states", x.as_slice())?;
        }
        Ok(n)
    }

    /// The energy of each column of a full set of states (one matrix per layer).
    pub fn energy(&self, states: &[DMatrix<f32>]) -> Result<DVector<f64>> {
        let n = self.check_states(states)?;
        let mut e = DVector::zeros(n);
        for (l, x) in states.iter().enumerate() {
            self.layer_energy(l, x.as_slice(), e.as_mut_slice());
        }
        for (l, w) in self.weights.iter().enumerate() {
            let mut up = DMatrix::zeros(w.ncols(), n);
            coupling_up(w, None, states[l].as_slice(), up.as_mut_slice(), false);
            for (c, ec) in e.iter_mut().enumerate() {
                *ec -= up
                    .column(c)
                    .iter()
                    .zip(states[l + 1].column(c).iter())
                    .map(|(a, x)| f64::from(*a) * f64::from(*x))
                    .sum::<f64>();
            }
        }
        Ok(e)
    }

    /// The free energy with every layer of parity `summed` summed out analytically:
    /// `F = Σ_{l kept} E_l(x_l) − Σ_{l summed} cumulant_l(inputs from its neighbours)`, so that
    /// `p(kept layers) = exp(−F) / Z`. The matrices of the summed layers are not read (pass
    /// zeros of the right shape).
    pub fn free_energy(&self, states: &[DMatrix<f32>], summed: Parity) -> Result<DVector<f64>> {
        let n = self.check_states(states)?;
        let slices: Vec<&[f32]> = states.iter().map(|x| x.as_slice()).collect();
        let mut f = vec![0f64; n];
        self.free_energy_into(&slices, summed, &mut f);
        Ok(DVector::from_vec(f))
    }

    pub(crate) fn free_energy_into(&self, states: &[&[f32]], summed: Parity, out: &mut [f64]) {
        let n = out.len();
        let mut cumulants = vec![0f64; n];
        for (l, &units) in self.layer_sizes().iter().enumerate() {
            if Parity::of(l) == summed {
                let mut inputs = vec![0f32; units * n];
                self.inputs_into(l, states, &mut inputs);
                self.layer_cumulant(l, &inputs, &mut cumulants);
            } else {
                self.layer_energy(l, states[l], out);
            }
        }
        out.iter_mut().zip(cumulants).for_each(|(f, c)| *f -= c);
    }

    /// `E[x_l | neighbours]` for each column, given the states of layers `l − 1` and `l + 1`
    /// in `states` (the other matrices are not read).
    pub fn conditional_mean(&self, l: usize, states: &[DMatrix<f32>]) -> Result<DMatrix<f32>> {
        let n = self.check_states(states)?;
        if l >= self.num_layers() {
            return Err(Error::invalid(
                "layer",
                format!("{l}; the DBM has {} layers", self.num_layers()),
            ));
        }
        let slices: Vec<&[f32]> = states.iter().map(|x| x.as_slice()).collect();
        let mut out = DMatrix::zeros(self.layer_sizes()[l], n);
        self.inputs_into(l, &slices, out.as_mut_slice());
        self.layer_mean(l, out.as_mut_slice());
        Ok(out)
    }

    /// States for [`Dbm::free_energy`] with the odd layers summed out: `v` and zeros above it.
    pub(crate) fn zero_states_with_visible(&self, v: &DMatrix<f32>) -> Vec<DMatrix<f32>> {
        std::iter::once(v.clone())
            .chain(
                self.hidden
                    .iter()
                    .map(|h| DMatrix::zeros(h.len(), v.ncols())),
            )
            .collect()
    }
}

impl<V: Layer, H: Layer> Machine for Dbm<V, H> {
    fn layer_sizes(&self) -> Vec<usize> {
        Dbm::layer_sizes(self)
    }

    fn sample_layer(
        &self,
        layer: usize,
        states: &mut [&mut [f32]],
        rng: &mut ChainRng,
        mean: Option<&mut [f32]>,
    ) {
        let (below, rest) = states.split_at_mut(layer);
        let Some((x, above)) = rest.split_first_mut() else {
            return;
        };
        let (below, above) = (below.last().map(|b| &**b), above.first().map(|a| &**a));
        self.neighbour_inputs(layer, below, above, x);
        self.layer_sample(layer, x, rng, mean);
    }

    fn sample_unconnected(&self, layer: usize, x: &mut [f32], rng: &mut ChainRng) {
        x.iter_mut().for_each(|x| *x = 0.0);
        self.layer_sample(layer, x, rng, None);
    }

    fn check_visible_state(&self, v: &[f32]) -> Result<()> {
        self.visible.check_state(v)
    }

    fn check_layer_state(&self, layer: usize, x: &[f32]) -> Result<()> {
        match layer {
            0 => self.visible.check_state(x),
            l => self
                .hidden
                .get(l - 1)
                .ok_or_else(|| {
                    Error::invalid(
                        "layer",
                        format!("{l} of a DBM with {} hidden layers", self.hidden.len()),
                    )
                })?
                .check_state(x),
        }
    }

    fn expect_sweeps(&self, chain_sweeps: usize) {
        for l in 0..self.weights.len() {
            if let Some(cache) = self.cache(l) {
                cache.expect(chain_sweeps);
            }
        }
    }
}

/// Settings of mean-field inference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanField {
    /// At most this many passes over the hidden layers (Salakhutdinov & Hinton: 10).
    pub iterations: usize,
    /// Stop when no mean changes by more than this in a pass.
    pub tolerance: f32,
}

impl Default for MeanField {
    fn default() -> Self {
        MeanField {
            iterations: 10,
            tolerance: 1e-6,
        }
    }
}

/// `max_i |a_i − b_i|`, in eight lanes so that it vectorises (the maximum is exact, so the
/// order does not matter).
fn largest_change(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (xs, ys) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = (xs.remainder().iter().zip(ys.remainder()))
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    for (x, y) in xs.zip(ys) {
        for l in 0..8 {
            lanes[l] = lanes[l].max((x[l] - y[l]).abs());
        }
    }
    lanes.into_iter().fold(tail, f32::max)
}

impl<V: Layer, H: Layer> Dbm<V, H> {
    /// Mean-field posteriors `q(h | v) = Π_l Π_j q_lj` (Bernoulli(μ_lj) for binary units), one matrix `μ_l` per hidden
    /// layer (one column per column of `v`). Initialised by a bottom-up pass with doubled
    /// weights into every layer that has a layer above (it will receive top-down input too),
    /// then updated layer by layer, `μ_l = σ(W_lᵀ μ_{l−1} + W_{l+1} μ_{l+1} + b_l)`, until a
    /// pass changes no mean by more than the tolerance, in each block of
    /// [`CHAIN_BLOCK`](crate::kernels::CHAIN_BLOCK) columns on its own. The results do not depend
    /// on the thread count.
    pub fn mean_field(&self, v: &DMatrix<f32>, settings: &MeanField) -> Result<Vec<DMatrix<f32>>> {
        self.check()?;
        if v.nrows() != self.visible.len() {
            return Err(Error::shape("visible batch", self.visible.len(), v.nrows()));
        }
        check_finite("visible batch", v.as_slice())?;
        // As many groups of full blocks as threads, each group's products over all its columns
        // at once: that packs each weight matrix once per product and group instead of once per
        // block (a 1000×500 product with 100 columns: 82 GFLOP/s, two with 50: 63). A short last
        // block is a group of its own, as it would be at any thread count (products of few
        // columns take another path).
        let sizes = self.layer_sizes();
        let (n, block) = (v.ncols(), crate::kernels::CHAIN_BLOCK);
        let full = n / block;
        let groups = rayon::current_num_threads().clamp(1, full.max(1));
        let mut starts: Vec<usize> = (0..=groups).map(|g| g * full / groups * block).collect();
        starts.push(n);
        starts.dedup();
        let parts: Vec<Vec<DMatrix<f32>>> = starts
            .par_windows(2)
            .map(|s| {
                let columns = v.columns(s[0], s[1] - s[0]).into_owned();
                self.mean_field_group(&columns, settings)
            })
            .collect();
        Ok((0..self.hidden.len())
            .map(|l| {
                let parts: Vec<&[f32]> = parts.iter().map(|p| p[l].as_slice()).collect();
                DMatrix::from_column_slice(sizes[l + 1], n, &parts.concat())
            })
            .collect())
    }

    /// [`Dbm::mean_field`] of blocks of [`CHAIN_BLOCK`](crate::kernels::CHAIN_BLOCK) columns of `v`
    /// (full ones, or one short one), on this thread. Each block stops on its own once a pass
    /// changes none of its means by more than the tolerance; a column's products do not depend on
    /// the columns beside it, so each block gets the means it would get alone, and the grouping
    /// (which follows the thread count) does not change the bits.
    fn mean_field_group(&self, v: &DMatrix<f32>, settings: &MeanField) -> Vec<DMatrix<f32>> {
        let sizes = self.layer_sizes();
        let (n, top) = (v.ncols(), self.hidden.len());
        let block = crate::kernels::CHAIN_BLOCK;
        // The data's input to h₁, W₁ᵀv, stays the same in every iteration. Through the cache (a
        // sum over the pixels that are on, for 0/1 data) block by block, so that the path, which
        // follows the states' density, does not depend on the grouping.
        let mut from_data = vec![0f32; sizes[1] * n];
        let blocks = v.as_slice().chunks(sizes[0] * block);
        for (x, out) in blocks.zip(from_data.chunks_mut(sizes[1] * block)) {
            coupling_up(&self.weights[0], self.cache(0), x, out, false);
        }
        let mut mu: Vec<DMatrix<f32>> = vec![v.clone()];
        for l in 1..=top {
            let mut m = DMatrix::zeros(sizes[l], n);
            if l == 1 {
                m.copy_from_slice(&from_data);
            } else {
                let (below, out) = (mu[l - 1].as_slice(), m.as_mut_slice());
                coupling_up(&self.weights[l - 1], None, below, out, false);
            }
            if l < top {
                m *= 2.0;
            }
            self.hidden[l - 1].mean(m.as_mut_slice());
            mu.push(m);
        }
        let mut active = vec![true; n.div_ceil(block)];
        let mut next: Vec<f32> = Vec::new();
        for _ in 0..settings.iterations {
            let mut change = vec![0f32; active.len()];
            // The products only for the columns of blocks still active, run by run.
            let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
            for b in (0..active.len()).filter(|&b| active[b]) {
                let columns = b * block..n.min((b + 1) * block);
                match runs.last_mut() {
                    Some(run) if run.end == columns.start => run.end = columns.end,
                    _ => runs.push(columns),
                }
            }
            for l in 1..=top {
                next.resize(sizes[l] * n, 0.0);
                for run in &runs {
                    let part =
                        |j: usize| &mu[j].as_slice()[run.start * sizes[j]..run.end * sizes[j]];
                    let out = &mut next[run.start * sizes[l]..run.end * sizes[l]];
                    if l == 1 {
                        out.copy_from_slice(&from_data[run.start * sizes[1]..run.end * sizes[1]]);
                        if top > 1 {
                            coupling_down(&self.weights[1], self.cache(1), part(2), out, true);
                        }
                    } else {
                        let slices: Vec<&[f32]> = (0..mu.len()).map(part).collect();
                        self.inputs_into(l, &slices, out);
                    }
                }
                let chunk = sizes[l] * block;
                let blocks = next
                    .chunks_mut(chunk)
                    .zip(mu[l].as_mut_slice().chunks_mut(chunk))
                    .zip(change.iter_mut().zip(&active));
                for ((next, mu), (change, _)) in blocks.filter(|(_, (_, active))| **active) {
                    self.hidden[l - 1].mean(next);
                    *change = change.max(largest_change(mu, next));
                    mu.copy_from_slice(next);
                }
            }
            for (active, change) in active.iter_mut().zip(&change) {
                *active &= *change > settings.tolerance;
            }
            if !active.contains(&true) {
                break;
            }
        }
        mu.remove(0);
        mu
    }

    /// The variational lower bound on `ln p(v) + ln Z` of each column of `v`, for mean-field
    /// posteriors `mu` (from [`Dbm::mean_field`]): `E_q[−E(v, h)] + H(q)`. Subtract `ln Z` (or an
    /// AIS estimate of it) for the bound on `ln p(v)`.
    pub fn variational_bound_unnormalised(
        &self,
        v: &DMatrix<f32>,
        mu: &[DMatrix<f32>],
    ) -> Result<DVector<f64>> {
        // The layers are independent under q and the couplings bilinear, so E_q[E(v, h)] is
        // E(v, μ) plus each layer's curvature term, which `mean_field_entropy` takes in.
        let mut states = vec![v.clone()];
        states.extend(mu.iter().cloned());
        let mut bound = -self.energy(&states)?;
        for (layer, m) in self.hidden.iter().zip(mu) {
            layer.mean_field_entropy(m.as_slice(), bound.as_mut_slice());
        }
        Ok(bound)
    }
}

/// A layer as a model file records it: its kind and the units of each of its parts.
#[derive(Serialize, Deserialize)]
struct LayerRecord {
    kind: String,
    units: Vec<usize>,
}

impl LayerRecord {
    fn of<L: Layer>(layer: &L) -> Self {
        LayerRecord {
            kind: L::kind(),
            units: layer.parts(),
        }
    }
}

impl<V: Layer, H: Layer> Dbm<V, H> {
    /// Saves the model to a model file (safetensors, see [`crate::io`]) atomically: tensors `W1`,
    /// `W2`, … (`W_l` of shape [units of layer `l − 1`, units of layer `l`]) and biases `b0`
    /// (visible), `b1`, …; metadata `machine` (`dbm`) and `layers`, a JSON list of each layer's
    /// `kind` (e.g. `"bernoulli"`) and `units` (per part: `[784, 10]` for `"bernoulli+softmax"`).
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        self.save_as(path.as_ref(), "dbm")
    }

    /// [`Dbm::save`] with `machine` in the metadata.
    pub(crate) fn save_as(&self, path: &std::path::Path, machine: &str) -> Result<()> {
        self.check()?;
        let layers: Vec<LayerRecord> = (0..self.num_layers())
            .map(|l| on_layer!(self, l, |x| LayerRecord::of(x)))
            .collect();
        let layers = serde_json::to_string(&layers).expect("layer records are plain data");
        let mut tensors = Vec::new();
        for (l, w) in self.weights.iter().enumerate() {
            let values = w.transpose().as_slice().to_vec();
            tensors.push((format!("W{}", l + 1), vec![w.nrows(), w.ncols()], values));
        }
        for l in 0..self.num_layers() {
            let b = self.layer_bias(l);
            tensors.push((format!("b{l}"), vec![b.len()], b.as_slice().to_vec()));
        }
        let metadata = vec![
            ("machine".into(), machine.into()),
            ("layers".into(), layers),
        ];
        crate::io::tensors::write(path, metadata, tensors, Vec::new())
    }

    /// Loads a model file written by [`Dbm::save`] (or [`crate::Rbm::save`]), whose layers must
    /// be of the kinds `V` and `H`; rejects foreign, truncated, corrupted and newer-version
    /// files, and says how to convert files of the earlier binary format.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut file = crate::io::tensors::read(path)?;
        let format = |message: String| Error::Format {
            path: path.into(),
            expected: "boltzmann model (safetensors)",
            message,
        };
        let layers: Vec<LayerRecord> = serde_json::from_str(file.get(path, "layers")?)
            .map_err(|e| format(format!("its `layers` cannot be read: {e}")))?;
        let found: Vec<&str> = layers.iter().map(|r| r.kind.as_str()).collect();
        let expected: Vec<String> = (0..layers.len().max(2))
            .map(|l| if l == 0 { V::kind() } else { H::kind() })
            .collect();
        if layers.len() < 2 || found != expected {
            return Err(Error::Kind {
                path: path.into(),
                found: found.join("/"),
                expected: expected.join("/"),
            });
        }
        let sizes = layers
            .iter()
            .map(|r| r.units.iter().try_fold(0usize, |n, &u| n.checked_add(u)))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| format("its layer sizes overflow".into()))?;
        let mut weights = Vec::new();
        for l in 1..layers.len() {
            let (rows, cols) = (sizes[l - 1], sizes[l]);
            let values = file.take(path, &format!("W{l}"), &[rows, cols])?;
            weights.push(DMatrix::from_row_slice(rows, cols, &values));
        }
        let mut bias = |l: usize| -> Result<DVector<f32>> {
            let values = file.take(path, &format!("b{l}"), &[sizes[l]])?;
            Ok(DVector::from_vec(values))
        };
        let visible = V::from_parts(bias(0)?, &layers[0].units)?;
        let hidden = (1..layers.len())
            .map(|l| H::from_parts(bias(l)?, &layers[l].units))
            .collect::<Result<Vec<H>>>()?;
        if let Some(extra) = file.tensors.keys().chain(file.words.keys()).next() {
            return Err(format(format!(
                "tensor `{extra}` does not belong to a machine of {} layers",
                layers.len()
            )));
        }
        Dbm::new(visible, hidden, weights)
    }

    /// Exports the parameters as NumPy `.npz`: float32 `W1`, `W2`, … (layer below × layer
    /// above) and biases `b0` (visible), `b1`, ….
    #[cfg(feature = "npz")]
    pub fn save_npz(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let mut arrays = Vec::new();
        for (l, w) in self.weights.iter().enumerate() {
            let shape = vec![w.nrows() as u64, w.ncols() as u64];
            arrays.push((
                format!("W{}", l + 1),
                shape,
                w.transpose().as_slice().to_vec(),
            ));
        }
        let biases =
            std::iter::once(self.visible.bias()).chain(self.hidden.iter().map(|h| h.bias()));
        for (l, b) in biases.enumerate() {
            arrays.push((format!("b{l}"), vec![b.len() as u64], b.as_slice().to_vec()));
        }
        let named: Vec<(&str, Vec<u64>, Vec<f32>)> = arrays
            .iter()
            .map(|(n, s, d)| (n.as_str(), s.clone(), d.clone()))
            .collect();
        crate::io::write_npz(path, &named)
    }
}

impl<V: FromBias, H: FromBias> Dbm<V, H> {
    /// A fresh DBM with layer sizes `sizes` (visible first, at least one hidden layer):
    /// `W ~ N(0, 0.01²)`, zero biases.
    pub fn init(sizes: &[usize], seed: u64) -> Result<Self> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(Error::invalid(
                "DBM layer sizes",
                format!(
                    "{sizes:?}; expected a visible and at least one hidden layer, all ≥ 1 unit"
                ),
            ));
        }
        for pair in sizes.windows(2) {
            crate::error::check_elements("DBM layer sizes", pair)?;
        }
        let weights = sizes
            .windows(2)
            .enumerate()
            .map(|(l, pair)| {
                let mut w = DMatrix::zeros(pair[0], pair[1]);
                fill_normal(&mut stream(seed, l as u64), w.as_mut_slice());
                w * 0.01
            })
            .collect();
        Dbm::new(
            V::new(DVector::zeros(sizes[0])),
            sizes[1..]
                .iter()
                .map(|&n| H::new(DVector::zeros(n)))
                .collect(),
            weights,
        )
    }

    /// Imports parameters from an `.npz` with `W1`, `W2`, … and `b0`, `b1`, … (float32 or
    /// float64), as written by [`Dbm::save_npz`].
    #[cfg(feature = "npz")]
    pub fn load_npz(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut arrays = crate::io::read_npz(path)?;
        let all = "W1, W2, … and b0, b1, …";
        let mut weights = Vec::new();
        // Every `W<l>` present is a coupling: one that cannot be read is an error, not the end.
        while let Some(w) = arrays.remove(&format!("W{}", weights.len() + 1)) {
            weights.push(w.into_matrix("DBM weights")?);
        }
        let mut bias = |l: usize| {
            crate::io::take_npz(&mut arrays, path, &format!("b{l}"), "DBM .npz", all)?
                .into_vector("DBM biases")
        };
        let visible = V::new(bias(0)?);
        let hidden = (1..=weights.len())
            .map(|l| Ok(H::new(bias(l)?)))
            .collect::<Result<Vec<H>>>()?;
        let numbered = |k: &String| {
            k.strip_prefix(['W', 'b'])
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        };
        if let Some(extra) = arrays.keys().find(|k| numbered(k)) {
            return Err(Error::Format {
                path: path.into(),
                expected: "DBM .npz",
                message: format!(
                    "array `{extra}` does not belong to a DBM of {} couplings; expected {all}",
                    weights.len()
                ),
            });
        }
        Dbm::new(visible, hidden, weights)
    }
}
