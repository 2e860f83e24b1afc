//! AIS for deep Boltzmann machines (Salakhutdinov & Hinton 2009): the runs anneal the odd
//! layers (for two hidden layers: h₁), with the even layers (v, h₂, …) summed out exactly.
//!
//! The path scales every coupling by β and moves every layer's biases from the start model's
//! ([`DbmStart`]) to the DBM's: at β = 0 the layers are independent, so `ln Z₀` is exact.

use super::ais::{AisConfig, AisEstimate, Annealing, Start, anneal, estimate};
use crate::dbm::{Dbm, MeanField};
use crate::error::{Error, Result};
use crate::gibbs::{CHAIN_BLOCK, Machine};
use crate::kernels::{ChainRng, stream};
use crate::layer::{Bernoulli, Layer, set_tempered_bias};
use nalgebra::DMatrix;

/// The start model of DBM AIS: every layer alone with its own biases and no couplings, so that
/// `ln Z₀` is exact and the runs start from exact samples.
///
/// The closer the start's layers are to the DBM's marginals, the less the runs have to travel.
/// Salakhutdinov & Hinton start the visible layer at the data's base rates and the hidden layers
/// uniform ([`DbmStart::from_visible`]); [`DbmStart::base_rate`] also starts each hidden layer at
/// its base rate under the data's mean-field posteriors, the hidden analogue of the same idea.
#[derive(Clone, Debug, PartialEq)]
pub struct DbmStart<V: Layer, H: Layer = Bernoulli> {
    /// The start layers, as a DBM without couplings.
    layers: Dbm<V, H>,
}

impl<V: Layer, H: Layer> DbmStart<V, H> {
    /// The given layers: `visible` for layer 0 and `hidden[l − 1]` for layer `l`.
    pub fn new(visible: Start<V>, hidden: Vec<Start<H>>) -> Self {
        let hidden = hidden.into_iter().map(|h| h.visible().clone()).collect();
        DbmStart {
            layers: Dbm::unchecked(visible.visible().clone(), hidden, Vec::new()),
        }
    }

    /// `visible` for layer 0 and zero biases (uniform, for Bernoulli units) for every hidden
    /// layer of `dbm`: the start of Salakhutdinov & Hinton.
    pub fn from_visible(dbm: &Dbm<V, H>, visible: Start<V>) -> Self {
        let hidden = dbm.layer_sizes()[1..]
            .iter()
            .map(|&n| Start::uniform(n))
            .collect();
        Self::new(visible, hidden)
    }

    /// The exact `ln Z₀`: the sum of every layer's cumulant at zero input.
    pub fn log_partition(&self) -> f64 {
        let mut z = [0f64];
        for (l, &units) in self.layers.layer_sizes().iter().enumerate() {
            self.layers.layer_cumulant(l, &vec![0f32; units], &mut z);
        }
        z[0]
    }

    /// The start biases of layer `l`.
    fn bias(&self, l: usize) -> &[f32] {
        self.layers.layer_bias(l).as_slice()
    }
}

impl<V: Layer> DbmStart<V, Bernoulli> {
    /// Every layer at its base rate: the visible layer as [`Start::base_rate_default`] (the
    /// columns of `data`), hidden layer `l` with the mean over `data` of its mean-field
    /// posterior `μ_l` (no pseudo-count: these means are already smooth).
    pub fn base_rate(
        dbm: &Dbm<V, Bernoulli>,
        data: &DMatrix<f32>,
        settings: &MeanField,
    ) -> Result<Self> {
        let visible = Start::base_rate_default(data)?;
        let hidden = dbm
            .mean_field(data, settings)?
            .iter()
            .map(|mu| Start::base_rate(mu, 0.0))
            .collect::<Result<_>>()?;
        Ok(Self::new(visible, hidden))
    }
}

/// Forward AIS for a DBM: an estimate of `ln Z` that tends to underestimate it.
pub fn dbm_ais<V: Layer, H: Layer>(
    dbm: &Dbm<V, H>,
    start: &DbmStart<V, H>,
    config: &AisConfig,
    progress: impl Fn(usize, usize) + Sync,
) -> Result<AisEstimate> {
    check(dbm, start, config.runs)?;
    dbm.expect_sweeps(config.runs.saturating_mul(config.betas.len()));
    // The odd layers start as exact samples of the start model.
    let sizes = dbm.layer_sizes();
    let mut rng = stream(config.seed, u64::MAX);
    let odd: Vec<DMatrix<f32>> = (1..sizes.len())
        .step_by(2)
        .map(|l| {
            let mut x = DMatrix::zeros(sizes[l], config.runs);
            start
                .layers
                .layer_sample(l, x.as_mut_slice(), &mut rng, None);
            x
        })
        .collect();
    let blocks = DbmBlock::split(dbm, start, &odd, config.seed);
    let log_w = anneal(blocks, config.runs, config.betas.as_slice(), &progress);
    Ok(estimate(log_w, start.log_partition(), false))
}

/// Reverse AIS for a DBM from given states of the odd layers (`initial[k]` holds layer
/// `2k + 1`, one column per run), ideally exact samples of the DBM: an estimate of `ln Z` that
/// tends to overestimate it.
pub fn dbm_reverse_ais<V: Layer, H: Layer>(
    dbm: &Dbm<V, H>,
    start: &DbmStart<V, H>,
    initial: &[DMatrix<f32>],
    config: &AisConfig,
    progress: impl Fn(usize, usize) + Sync,
) -> Result<AisEstimate> {
    let sizes = dbm.layer_sizes();
    let odd: Vec<usize> = (1..sizes.len()).step_by(2).collect();
    let runs = initial.first().map_or(0, |x| x.ncols());
    check(dbm, start, runs)?;
    if initial.len() != odd.len()
        || initial
            .iter()
            .zip(&odd)
            .any(|(x, &l)| x.shape() != (sizes[l], runs))
    {
        return Err(Error::shape(
            "initial odd-layer states",
            format!(
                "layers {odd:?} of {:?} units, {runs} columns each",
                odd.iter().map(|&l| sizes[l]).collect::<Vec<_>>()
            ),
            format!(
                "{:?}",
                initial.iter().map(|x| x.shape()).collect::<Vec<_>>()
            ),
        ));
    }
    for x in initial {
        crate::error::check_finite("initial odd-layer states", x.as_slice())?;
    }
    dbm.expect_sweeps(runs.saturating_mul(config.betas.len()));
    let betas: Vec<f64> = config.betas.as_slice().iter().rev().copied().collect();
    let blocks = DbmBlock::split(dbm, start, initial, config.seed);
    let log_w = anneal(blocks, runs, &betas, &progress);
    Ok(estimate(log_w, start.log_partition(), true))
}

fn check<V: Layer, H: Layer>(dbm: &Dbm<V, H>, start: &DbmStart<V, H>, runs: usize) -> Result<()> {
    dbm.check()?;
    if runs == 0 {
        return Err(Error::invalid("AIS runs", "0; expected at least 1"));
    }
    for units in dbm.layer_sizes() {
        crate::error::check_elements("AIS runs (units × runs)", &[units, runs])?;
    }
    if start.layers.layer_sizes() != dbm.layer_sizes() {
        return Err(Error::shape(
            "AIS start distribution (units per layer)",
            format!("{:?}", dbm.layer_sizes()),
            format!("{:?}", start.layers.layer_sizes()),
        ));
    }
    Ok(())
}

/// A block of DBM AIS runs: states of every layer (the odd ones carry the run; the even ones
/// are scratch for the sweeps), and the layers at the current β.
struct DbmBlock<'a, V: Layer, H: Layer> {
    dbm: &'a Dbm<V, H>,
    /// The layers (biases only; no couplings) at the current β.
    tempered: Dbm<V, H>,
    /// Start biases of every layer.
    start: Vec<Vec<f32>>,
    states: Vec<Vec<f32>>,
    inputs: Vec<Vec<f32>>,
    rng: ChainRng,
}

impl<'a, V: Layer, H: Layer> DbmBlock<'a, V, H> {
    fn split(
        dbm: &'a Dbm<V, H>,
        start: &DbmStart<V, H>,
        odd: &[DMatrix<f32>],
        seed: u64,
    ) -> Vec<Self> {
        let sizes = dbm.layer_sizes();
        let runs = odd[0].ncols();
        let starts: Vec<Vec<f32>> = (0..sizes.len()).map(|l| start.bias(l).to_vec()).collect();
        (0..runs.div_ceil(CHAIN_BLOCK))
            .map(|b| {
                let first = b * CHAIN_BLOCK;
                let n = CHAIN_BLOCK.min(runs - first);
                let states = sizes
                    .iter()
                    .enumerate()
                    .map(|(l, &units)| {
                        if l % 2 == 1 {
                            odd[l / 2].columns(first, n).iter().copied().collect()
                        } else {
                            vec![0f32; units * n]
                        }
                    })
                    .collect();
                DbmBlock {
                    dbm,
                    tempered: Dbm::unchecked(dbm.visible.clone(), dbm.hidden.clone(), Vec::new()),
                    start: starts.clone(),
                    inputs: sizes.iter().map(|&units| vec![0f32; units * n]).collect(),
                    states,
                    rng: stream(seed, b as u64),
                }
            })
            .collect()
    }

    /// Inputs of layer `l` from its neighbours' current states, into `self.inputs[l]`.
    fn inputs(&mut self, l: usize) {
        let below = l.checked_sub(1).map(|b| self.states[b].as_slice());
        let above = self.states.get(l + 1).map(|a| a.as_slice());
        self.dbm
            .neighbour_inputs(l, below, above, &mut self.inputs[l]);
    }

    /// Samples layer `l` at β from its inputs (already in `self.inputs[l]`).
    fn sample(&mut self, l: usize, beta: f64) {
        set_tempered_bias(
            self.tempered.layer_bias_mut(l).as_mut_slice(),
            &self.start[l],
            self.dbm.layer_bias(l).as_slice(),
            beta,
        );
        let b = beta as f32;
        let x = &mut self.states[l];
        x.iter_mut()
            .zip(&self.inputs[l])
            .for_each(|(x, a)| *x = b * a);
        self.tempered.layer_sample(l, x, &mut self.rng, None);
    }
}

impl<V: Layer, H: Layer> Annealing for DbmBlock<'_, V, H> {
    fn step(&mut self, log_w: &mut [f64], beta_prev: f64, beta: f64, transition: bool) {
        let layers = self.states.len();
        // Odd layers: their bias term (b_l − b⁰_l)ᵀx_l moves with β.
        for l in (1..layers).step_by(2) {
            let bias = self.dbm.layer_bias(l);
            let units = bias.len();
            for (col, w) in self.states[l].chunks_exact(units).zip(log_w.iter_mut()) {
                let dot: f64 = col
                    .iter()
                    .zip(bias.iter().zip(&self.start[l]))
                    .map(|(x, (b, s))| f64::from(*x) * f64::from(b - s))
                    .sum();
                *w += (beta - beta_prev) * dot;
            }
        }
        // Even layers, summed out: their cumulants at the inputs from the odd layers.
        for l in (0..layers).step_by(2) {
            self.inputs(l);
            self.dbm.layer_tempered_step(
                l,
                &self.inputs[l],
                &self.start[l],
                beta_prev,
                beta,
                log_w,
            );
        }
        if transition {
            for l in (0..layers).step_by(2) {
                self.sample(l, beta);
            }
            for l in (1..layers).step_by(2) {
                self.inputs(l);
                self.sample(l, beta);
            }
        }
    }
}
