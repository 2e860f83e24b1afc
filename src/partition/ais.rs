//! Annealed importance sampling (Neal 2001) for machines of any depth, as in Salakhutdinov &
//! Murray (2008) for RBMs and Salakhutdinov & Hinton (2009) for DBMs, and its reverse, which
//! bounds `ln Z` from above in expectation (Burda, Grosse & Salakhutdinov 2015).
//!
//! The path runs from a [`Start`] model (every layer alone with biases `b⁰_l`) to the machine:
//!
//! `E_β(x₀, …, x_L) = Σ_l E_l(x_l; (1 − β)·b⁰_l + β·b_l) − β·Σ_l x_{l−1}ᵀW_l x_l`.
//!
//! The runs carry the states of one parity of layers ([`annealed_parity`]); the other parity is
//! summed out exactly. For an RBM with Bernoulli hidden units that gives the paper's
//! intermediate distributions `p_β(v) ∝ exp((1 − β)·b_Aᵀv + β·b_Vᵀv) · Π_j (1 + exp(β·(Wᵀv +
//! b_H)_j))`. The same path works for Gaussian and softmax units, whose quadratic or normalising
//! terms are not tempered. One blocked Gibbs sweep at `β_k` is the transition of step `k`;
//! weights are kept in f64.

use crate::dbm::{Dbm, MeanField, Parity};
use crate::diagnostics::{importance_effective_sample_size, sample_variance};
use crate::error::{Error, Flow, Result};
use crate::gibbs::{CHAIN_BLOCK, Machine};
use crate::kernels::ChainRng;
use crate::kernels::{log_sum_exp, stream};
use crate::layer::{Bernoulli, Layer, set_tempered_bias};
use nalgebra::{DMatrix, DMatrixView, DVector};
use rayon::prelude::*;
use std::ops::Range;

/// An increasing sequence of inverse temperatures from 0 to 1.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Betas(Vec<f64>);

/// The three stages of Salakhutdinov & Murray's schedule: (end of stage, step).
const PAPER_STAGES: [(f64, f64); 3] = [(0.5, 1e-3), (0.9, 1e-4), (1.0, 1e-5)];

impl Betas {
    /// The schedule of Salakhutdinov & Murray (2008): steps of 1e-3 up to 0.5, 1e-4 up to 0.9
    /// and 1e-5 up to 1: 14,501 distributions.
    pub fn paper() -> Self {
        let mut betas = vec![0.0];
        let mut from = 0.0;
        for (to, step) in PAPER_STAGES {
            let n = ((to - from) / step).round() as usize;
            betas.extend((1..=n).map(|i| from + (to - from) * i as f64 / n as f64));
            from = to;
        }
        Betas(betas)
    }

    /// `count` distributions (≥ 2) spaced by the paper's three-stage rule: the intervals are
    /// shared between the stages [0, 0.5], [0.5, 0.9], [0.9, 1] in the paper's proportions
    /// (500 : 4000 : 10000), each stage evenly spaced.
    pub fn three_stage(count: usize) -> Result<Self> {
        if count < 2 {
            return Err(Error::invalid(
                "number of β",
                format!("{count}; expected at least 2 (β = 0 and β = 1)"),
            ));
        }
        if count > MAX_BETAS {
            return Err(Error::invalid(
                "number of β",
                format!("{count}; expected at most {MAX_BETAS}"),
            ));
        }
        let intervals = count - 1;
        let paper = [500.0, 4000.0, 10000.0];
        let total: f64 = paper.iter().sum();
        // Every stage gets at least one interval when there are enough to go round.
        let mut per_stage: Vec<usize> = paper
            .iter()
            .map(|p| ((p / total) * intervals as f64).round() as usize)
            .collect();
        if intervals >= 3 {
            per_stage.iter_mut().for_each(|n| *n = (*n).max(1));
        }
        let assigned: usize = per_stage.iter().sum();
        per_stage[2] = (per_stage[2] + intervals).saturating_sub(assigned);
        let mut betas = vec![0.0];
        let mut from = 0.0;
        for ((to, _), n) in PAPER_STAGES.iter().zip(per_stage) {
            betas.extend((1..=n).map(|i| from + (to - from) * i as f64 / n as f64));
            from = *to;
        }
        if betas.len() != count || *betas.last().unwrap_or(&0.0) != 1.0 {
            // Fewer than three intervals: spread them evenly instead.
            return Ok(Betas::linear(count));
        }
        Ok(Betas(betas))
    }

    /// `count` (≥ 2) evenly spaced values from 0 to 1.
    pub fn linear(count: usize) -> Self {
        let n = count.max(2) - 1;
        Betas((0..=n).map(|i| i as f64 / n as f64).collect())
    }

    /// A user-given schedule: must start at 0, end at 1, and not decrease.
    pub fn new(betas: Vec<f64>) -> Result<Self> {
        let ok = betas.len() >= 2
            && betas.first() == Some(&0.0)
            && betas.last() == Some(&1.0)
            && betas.windows(2).all(|w| w[0] <= w[1])
            && betas.iter().all(|b| b.is_finite());
        if ok {
            Ok(Betas(betas))
        } else {
            Err(Error::invalid(
                "β schedule",
                "expected at least two finite values, non-decreasing from 0 to 1",
            ))
        }
    }

    /// The values.
    pub fn as_slice(&self) -> &[f64] {
        &self.0
    }

    /// The number of distributions (intermediate ones plus the two ends).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: a schedule holds at least β = 0 and β = 1.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `layer`'s kind at the base rates of `data` (`units × n`): unit `i` has mean
/// `p_i = (Σ_n x_ni + α) / (N + α)`, with pseudo-count `α`. Salakhutdinov & Murray's code uses 5
/// per minibatch of 100, `α = 0.05·N`.
pub fn base_rate_layer<'a, L: Layer>(
    layer: &L,
    data: impl Into<DMatrixView<'a, f32>>,
    pseudo_count: f64,
) -> Result<L> {
    let data = data.into();
    if data.ncols() == 0 {
        return Err(Error::Empty {
            what: "data for the base-rate model",
        });
    }
    crate::error::check_finite_columns("data for the base-rate model", data)?;
    if !(pseudo_count.is_finite() && pseudo_count >= 0.0) {
        return Err(Error::invalid(
            "pseudo-count",
            format!("{pseudo_count}; expected a finite value ≥ 0"),
        ));
    }
    let n = data.ncols() as f64;
    let mean: Vec<f32> = data
        .row_iter()
        .map(|row| {
            ((row.iter().map(|&x| f64::from(x)).sum::<f64>() + pseudo_count) / (n + pseudo_count))
                as f32
        })
        .collect();
    let mut layer = layer.with_bias(DVector::zeros(data.nrows()));
    layer.set_bias_from_mean(&mean);
    Ok(layer)
}

/// The start model of AIS: every layer of the machine alone, with its own biases and no
/// couplings, so that `ln Z₀` is exact and the runs start from exact samples.
///
/// The closer the start's layers are to the machine's marginals, the less the runs have to
/// travel. Salakhutdinov & Murray (RBMs) and Salakhutdinov & Hinton (DBMs) start the visible
/// layer at the data's base rates and the hidden layers uniform ([`Start::base_rate`]);
/// [`Start::hidden_base_rates`] also starts each hidden layer at its base rate under the data's
/// mean-field posteriors, the hidden analogue of the same idea.
#[derive(Clone, Debug, PartialEq)]
pub struct Start<V: Layer, H: Layer = Bernoulli> {
    visible: V,
    hidden: Vec<H>,
}

impl<V: Layer, H: Layer> Start<V, H> {
    /// The given layers: `visible` for layer 0 and `hidden[l − 1]` for layer `l`.
    pub fn new(visible: V, hidden: Vec<H>) -> Result<Self> {
        crate::error::check_finite("start biases", visible.bias().as_slice())?;
        for h in &hidden {
            crate::error::check_finite("start biases", h.bias().as_slice())?;
        }
        Ok(Start { visible, hidden })
    }

    /// The start with visible biases `bias` and zero biases (uniform, for Bernoulli units) in
    /// every hidden layer of `machine`.
    pub fn from_bias(machine: &Dbm<V, H>, bias: DVector<f32>) -> Result<Self> {
        let hidden = machine
            .hidden
            .iter()
            .map(|h| h.with_bias(DVector::zeros(h.len())))
            .collect();
        Start::new(machine.visible().with_bias(bias), hidden)
    }

    /// Zero biases everywhere: uniform for Bernoulli and softmax units, N(0, 1) for Gaussian ones.
    pub fn uniform(machine: &Dbm<V, H>) -> Self {
        let visible = DVector::zeros(machine.layer_sizes()[0]);
        Start::from_bias(machine, visible).expect("zero biases are finite")
    }

    /// The visible layer at the base rates of `data` ([`base_rate_layer`]), the hidden layers
    /// uniform: the start of Salakhutdinov & Murray and of Salakhutdinov & Hinton.
    pub fn base_rate(machine: &Dbm<V, H>, data: &DMatrix<f32>, pseudo_count: f64) -> Result<Self> {
        let visible = base_rate_layer(machine.visible(), data, pseudo_count)?;
        Start::from_bias(machine, visible.bias().clone())
    }

    /// [`Start::base_rate`] with `α = 0.05·N` (3000 for the 60,000 MNIST training images).
    pub fn base_rate_default(machine: &Dbm<V, H>, data: &DMatrix<f32>) -> Result<Self> {
        Self::base_rate(machine, data, 0.05 * data.ncols() as f64)
    }

    /// The start model's visible layer.
    pub fn visible(&self) -> &V {
        &self.visible
    }

    /// The exact `ln Z₀`: the sum of every layer's cumulant at zero input.
    pub fn log_partition(&self) -> f64 {
        let mut z = [0f64];
        self.visible
            .cumulant(&vec![0f32; self.visible.len()], &mut z);
        for h in &self.hidden {
            h.cumulant(&vec![0f32; h.len()], &mut z);
        }
        z[0]
    }

    /// Units per layer, visible first.
    fn layer_sizes(&self) -> Vec<usize> {
        std::iter::once(self.visible.len())
            .chain(self.hidden.iter().map(|h| h.len()))
            .collect()
    }

    /// The start biases of layer `l`.
    fn bias(&self, l: usize) -> &[f32] {
        match l {
            0 => self.visible.bias().as_slice(),
            _ => self.hidden[l - 1].bias().as_slice(),
        }
    }
}

impl<V: Layer> Start<V, Bernoulli> {
    /// Every layer at its base rate: the visible layer as [`Start::base_rate_default`] (the
    /// columns of `data`), hidden layer `l` with the mean over `data` of its mean-field
    /// posterior `μ_l` (no pseudo-count: these means are already smooth).
    pub fn hidden_base_rates(
        machine: &Dbm<V, Bernoulli>,
        data: &DMatrix<f32>,
        settings: &MeanField,
    ) -> Result<Self> {
        let visible = base_rate_layer(machine.visible(), data, 0.05 * data.ncols() as f64)?;
        let hidden = machine
            .mean_field(data, settings)?
            .iter()
            .zip(&machine.hidden)
            .map(|(mu, h)| base_rate_layer(h, mu, 0.0))
            .collect::<Result<_>>()?;
        Start::new(visible, hidden)
    }
}

/// Settings of an AIS run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AisConfig {
    /// Independent annealing runs (the paper: 100).
    pub runs: usize,
    pub betas: Betas,
    pub seed: u64,
}

impl Default for AisConfig {
    /// The paper's settings: 100 runs over 14,501 distributions.
    fn default() -> Self {
        AisConfig {
            runs: 100,
            betas: Betas::paper(),
            seed: 0,
        }
    }
}

/// The result of forward or reverse AIS.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AisEstimate {
    /// The estimate of `ln Z`.
    pub log_z: f64,
    /// `ln Z` at the ends of mean ± 3 standard errors of the importance weights, as the paper
    /// reports them (`−∞` or `+∞` where mean − 3·s.e. ≤ 0).
    pub log_z_lower: f64,
    pub log_z_upper: f64,
    /// The exact `ln Z₀` of the start model.
    pub log_z_start: f64,
    /// Effective sample size of the weights, `(Σw)² / Σw²`, between 1 and the number of runs.
    pub effective_sample_size: f64,
    /// Variance of the log weights over runs.
    pub log_weight_variance: f64,
    /// The log importance weight of each run.
    pub log_weights: Vec<f64>,
}

/// Which layers AIS anneals: the parity without the top layer, the top layer's parity being
/// summed out exactly. For an RBM the visible layer is annealed with the hidden one summed out
/// (Salakhutdinov & Murray); for two hidden layers `h₁` is annealed with `v` and `h₂` summed out
/// (Salakhutdinov & Hinton).
pub fn annealed_parity(layers: usize) -> Parity {
    match Parity::of(layers - 1) {
        Parity::Odd => Parity::Even,
        Parity::Even => Parity::Odd,
    }
}

/// Forward AIS for any machine: runs start with exact samples of the start model and anneal
/// to the machine along the path that scales every coupling by β and moves every layer's biases
/// from the start's to the machine's. The estimate `ln Ẑ = ln Z₀ + ln mean(w)` is unbiased in
/// `Z` and so, by Jensen's inequality, tends to *under*estimate `ln Z`.
///
/// `progress(done, total)` is called between segments of the schedule; it may stop the runs
/// (see [`Flow`]).
pub fn ais<V: Layer, H: Layer, R: Flow>(
    machine: &Dbm<V, H>,
    start: &Start<V, H>,
    config: &AisConfig,
    progress: impl Fn(usize, usize) -> R + Sync,
) -> Result<AisEstimate> {
    let all = 0..config.runs.div_ceil(CHAIN_BLOCK);
    AisShard::merge(&[ais_shard(machine, start, config, all, progress)?])
}

/// Forward AIS for the runs of blocks `blocks` alone (block `b` holds runs
/// `b·CHAIN_BLOCK … (b+1)·CHAIN_BLOCK − 1` of `config.runs`). Each block draws from its own
/// stream, so shards computed apart — on other threads, processes or machines — and merged by
/// [`AisShard::merge`] give the bits of one [`ais`] over every run.
pub fn ais_shard<V: Layer, H: Layer, R: Flow>(
    machine: &Dbm<V, H>,
    start: &Start<V, H>,
    config: &AisConfig,
    blocks: Range<usize>,
    progress: impl Fn(usize, usize) -> R + Sync,
) -> Result<AisShard> {
    check(machine, start, config.runs)?;
    let runs = check_blocks(&blocks, config.runs)?;
    machine.expect_sweeps(runs.saturating_mul(config.betas.len()));
    // The annealed layers start as exact samples of the start model, drawn for every run in
    // order so that a shard's starts are those of the whole set.
    let sizes = machine.layer_sizes();
    let mut rng = stream(config.seed, u64::MAX);
    let initial: Vec<DMatrix<f32>> = annealed(sizes.len())
        .map(|l| {
            let mut x = DMatrix::zeros(sizes[l], config.runs);
            match l {
                0 => start.visible.sample(x.as_mut_slice(), &mut rng),
                _ => start.hidden[l - 1].sample(x.as_mut_slice(), &mut rng),
            }
            x
        })
        .collect();
    let blocks_of = Block::split(machine, start, &initial, config.seed, blocks.clone());
    let log_w = anneal(blocks_of, runs, config.betas.as_slice(), &progress)?;
    Ok(AisShard::new(config.runs, blocks, log_w, start, false))
}

/// Reverse AIS: runs start at `initial`, ideally exact samples of the machine, and anneal back
/// to the start model, giving an unbiased estimate of `Z₀/Z`; so `ln Ẑ = ln Z₀ − ln mean(w)`
/// *over*estimates `ln Z` in expectation. Started from data or from long Gibbs chains instead
/// (as in practice), it is an approximate upper bound.
///
/// `initial` holds one matrix per layer (as [`exact_samples`](super::exact_samples) and
/// [`Chains::layer`](crate::Chains::layer) give them; one column per run) or only those of the
/// annealed layers ([`annealed_parity`]: for an RBM the visible states alone); the other
/// layers are not read.
pub fn reverse_ais<V: Layer, H: Layer, R: Flow>(
    machine: &Dbm<V, H>,
    start: &Start<V, H>,
    initial: &[DMatrix<f32>],
    config: &AisConfig,
    progress: impl Fn(usize, usize) -> R + Sync,
) -> Result<AisEstimate> {
    let runs = initial.first().map_or(0, |x| x.ncols());
    let all = 0..runs.div_ceil(CHAIN_BLOCK);
    AisShard::merge(&[reverse_ais_shard(
        machine, start, initial, config, all, progress,
    )?])
}

/// Reverse AIS for the runs of blocks `blocks` of the columns of `initial` alone; see
/// [`ais_shard`] and [`reverse_ais`].
pub fn reverse_ais_shard<V: Layer, H: Layer, R: Flow>(
    machine: &Dbm<V, H>,
    start: &Start<V, H>,
    initial: &[DMatrix<f32>],
    config: &AisConfig,
    blocks: Range<usize>,
    progress: impl Fn(usize, usize) -> R + Sync,
) -> Result<AisShard> {
    let sizes = machine.layer_sizes();
    let layers: Vec<usize> = annealed(sizes.len()).collect();
    let chosen: Vec<DMatrix<f32>> = if initial.len() == sizes.len() {
        layers.iter().map(|&l| initial[l].clone()).collect()
    } else {
        initial.to_vec()
    };
    let runs = chosen.first().map_or(0, |x| x.ncols());
    check(machine, start, runs)?;
    if chosen.len() != layers.len()
        || chosen
            .iter()
            .zip(&layers)
            .any(|(x, &l)| x.shape() != (sizes[l], runs))
    {
        return Err(Error::shape(
            "initial states of reverse AIS",
            format!(
                "layers {layers:?} of {:?} units (or every layer), {runs} columns each",
                layers.iter().map(|&l| sizes[l]).collect::<Vec<_>>()
            ),
            format!(
                "{:?}",
                initial.iter().map(|x| x.shape()).collect::<Vec<_>>()
            ),
        ));
    }
    for (x, &l) in chosen.iter().zip(&layers) {
        crate::error::check_finite("initial states of reverse AIS", x.as_slice())?;
        machine.check_layer_state(l, x.as_slice())?;
    }
    let shard_runs = check_blocks(&blocks, runs)?;
    machine.expect_sweeps(shard_runs.saturating_mul(config.betas.len()));
    let betas: Vec<f64> = config.betas.as_slice().iter().rev().copied().collect();
    let blocks_of = Block::split(machine, start, &chosen, config.seed, blocks.clone());
    let log_w = anneal(blocks_of, shard_runs, &betas, &progress)?;
    Ok(AisShard::new(runs, blocks, log_w, start, true))
}

/// Checks that `blocks` is a non-empty range of the blocks of `runs` runs and returns the
/// number of runs it holds.
fn check_blocks(blocks: &Range<usize>, runs: usize) -> Result<usize> {
    let count = runs.div_ceil(CHAIN_BLOCK);
    if blocks.start >= blocks.end || blocks.end > count {
        return Err(Error::invalid(
            "AIS blocks",
            format!("{blocks:?}; {runs} runs make blocks 0..{count} of {CHAIN_BLOCK} runs each"),
        ));
    }
    Ok((blocks.end * CHAIN_BLOCK).min(runs) - blocks.start * CHAIN_BLOCK)
}

/// The log weights of some blocks of an AIS run set ([`ais_shard`], [`reverse_ais_shard`]):
/// shards that together hold every block merge into the estimate of the whole set.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AisShard {
    /// Runs in the whole set.
    pub runs: usize,
    /// The blocks of [`CHAIN_BLOCK`] runs this shard holds.
    pub blocks: Range<usize>,
    /// The log importance weight of each of its runs, in order.
    pub log_weights: Vec<f64>,
    /// The exact `ln Z₀` of the start model.
    pub log_z_start: f64,
    /// Whether the runs annealed from the machine back to the start model.
    pub reverse: bool,
}

impl AisShard {
    fn new<V: Layer, H: Layer>(
        runs: usize,
        blocks: Range<usize>,
        log_weights: Vec<f64>,
        start: &Start<V, H>,
        reverse: bool,
    ) -> Self {
        AisShard {
            runs,
            blocks,
            log_weights,
            log_z_start: start.log_partition(),
            reverse,
        }
    }

    /// The estimate of `ln Z` from shards that hold every block of one run set once (in any
    /// order), the same bits as one process annealing every run.
    pub fn merge(shards: &[AisShard]) -> Result<AisEstimate> {
        let first = shards.first().ok_or(Error::Empty { what: "AIS shards" })?;
        let mut order: Vec<&AisShard> = shards.iter().collect();
        order.sort_by_key(|s| s.blocks.start);
        let mut next = 0;
        for s in &order {
            let runs = (s.blocks.end * CHAIN_BLOCK).min(s.runs);
            let fits = s.runs == first.runs
                && s.reverse == first.reverse
                && s.log_z_start.to_bits() == first.log_z_start.to_bits()
                && s.blocks.start == next
                && s.blocks.start < s.blocks.end
                && s.log_weights.len() == runs.saturating_sub(s.blocks.start * CHAIN_BLOCK);
            if !fits {
                return Err(Error::invalid(
                    "AIS shards",
                    format!(
                        "blocks {:?} of {} runs do not continue blocks 0..{next} of one run set",
                        s.blocks, s.runs
                    ),
                ));
            }
            next = s.blocks.end;
        }
        if next != first.runs.div_ceil(CHAIN_BLOCK) {
            return Err(Error::invalid(
                "AIS shards",
                format!(
                    "blocks 0..{next} of {} runs; every block is needed",
                    first.runs
                ),
            ));
        }
        let log_w: Vec<f64> = order
            .iter()
            .flat_map(|s| s.log_weights.iter().copied())
            .collect();
        Ok(estimate(log_w, first.log_z_start, first.reverse))
    }
}

/// The annealed layers of a machine of `layers` layers.
fn annealed(layers: usize) -> impl Iterator<Item = usize> {
    let first = match annealed_parity(layers) {
        Parity::Even => 0,
        Parity::Odd => 1,
    };
    (first..layers).step_by(2)
}

/// The longest AIS schedule [`Betas::three_stage`] makes (the paper's has 14,501 distributions).
pub const MAX_BETAS: usize = 10_000_000;

fn check<V: Layer, H: Layer>(m: &Dbm<V, H>, start: &Start<V, H>, runs: usize) -> Result<()> {
    m.check()?;
    if runs == 0 {
        return Err(Error::invalid("AIS runs", "0; expected at least 1"));
    }
    for units in m.layer_sizes() {
        crate::error::check_elements("AIS runs (units × runs)", &[units, runs])?;
    }
    if start.layer_sizes() != m.layer_sizes() {
        return Err(Error::shape(
            "AIS start distribution (units per layer)",
            format!("{:?}", m.layer_sizes()),
            format!("{:?}", start.layer_sizes()),
        ));
    }
    Ok(())
}

/// Steps per call of `progress`.
const SEGMENT: usize = 250;

/// One block of AIS runs with its own states and random stream.
pub(crate) trait Annealing: Send {
    /// Adds to each run's log weight `ln p*_β(x) − ln p*_{β_prev}(x)` at its current state,
    /// then, if `transition`, moves the state by one Gibbs sweep that leaves `p_β` invariant.
    fn step(&mut self, log_w: &mut [f64], beta_prev: f64, beta: f64, transition: bool);
}

/// Runs every block along `betas` (blocks hold [`CHAIN_BLOCK`] runs each, in order), in
/// parallel; returns each run's log importance weight, or [`Error::Stopped`] if `progress`
/// stops the runs. The final state needs no transition.
pub(crate) fn anneal<B: Annealing, R: Flow>(
    mut blocks: Vec<B>,
    runs: usize,
    betas: &[f64],
    progress: &(impl Fn(usize, usize) -> R + Sync),
) -> Result<Vec<f64>> {
    let mut log_w = vec![0f64; runs];
    let steps = betas.len() - 1;
    let mut done = 0;
    while done < steps {
        let end = (done + SEGMENT).min(steps);
        log_w
            .par_chunks_mut(CHAIN_BLOCK)
            .zip(blocks.par_iter_mut())
            .for_each(|(w, block)| {
                for k in done + 1..=end {
                    block.step(w, betas[k - 1], betas[k], k < steps);
                }
            });
        done = end;
        if progress(done, steps).stops() && done < steps {
            return Err(Error::Stopped { what: "AIS" });
        }
    }
    Ok(log_w)
}

/// A block of AIS runs: states of every layer (the annealed ones carry the runs; the summed
/// ones are scratch for the sweeps), and the layers at the current β.
struct Block<'a, V: Layer, H: Layer> {
    machine: &'a Dbm<V, H>,
    /// The layers (biases only) at the current β.
    tempered: Dbm<V, H>,
    /// Start biases of every layer.
    start: Vec<Vec<f32>>,
    /// `b_l − b⁰_l` of every layer: an annealed layer's term in `ln p*_β` is `β·(b_l − b⁰_l)ᵀx_l`
    /// plus terms free of β.
    bias_gap: Vec<Vec<f64>>,
    annealed: Parity,
    states: Vec<Vec<f32>>,
    inputs: Vec<Vec<f32>>,
    rng: ChainRng,
}

impl<'a, V: Layer, H: Layer> Block<'a, V, H> {
    /// Blocks of [`CHAIN_BLOCK`] runs starting at the columns of `initial` (the annealed layers'
    /// states), with streams from `seed`.
    fn split(
        machine: &'a Dbm<V, H>,
        start: &Start<V, H>,
        initial: &[DMatrix<f32>],
        seed: u64,
        blocks: Range<usize>,
    ) -> Vec<Self> {
        let sizes = machine.layer_sizes();
        let annealed = annealed_parity(sizes.len());
        let runs = initial[0].ncols();
        debug_assert!(runs.div_ceil(CHAIN_BLOCK) >= blocks.end);
        let starts: Vec<Vec<f32>> = (0..sizes.len()).map(|l| start.bias(l).to_vec()).collect();
        let bias_gap: Vec<Vec<f64>> = (0..sizes.len())
            .map(|l| {
                let bias = machine.layer_bias(l).iter();
                bias.zip(&starts[l])
                    .map(|(b, s)| f64::from(b - s))
                    .collect()
            })
            .collect();
        blocks
            .map(|b| {
                let first = b * CHAIN_BLOCK;
                let n = CHAIN_BLOCK.min(runs - first);
                let states = sizes
                    .iter()
                    .enumerate()
                    .map(|(l, &units)| {
                        if Parity::of(l) == annealed {
                            initial[l / 2].columns(first, n).iter().copied().collect()
                        } else {
                            vec![0f32; units * n]
                        }
                    })
                    .collect();
                Block {
                    machine,
                    tempered: machine.layers_only(),
                    start: starts.clone(),
                    bias_gap: bias_gap.clone(),
                    annealed,
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
        self.machine
            .neighbour_inputs(l, below, above, &mut self.inputs[l]);
    }

    /// Samples layer `l` at β from its inputs (already in `self.inputs[l]`).
    fn sample(&mut self, l: usize, beta: f64) {
        set_tempered_bias(
            self.tempered.layer_bias_mut(l).as_mut_slice(),
            &self.start[l],
            self.machine.layer_bias(l).as_slice(),
            beta,
        );
        let b = beta as f32;
        let x = &mut self.states[l];
        x.iter_mut()
            .zip(&self.inputs[l])
            .for_each(|(x, a)| *x = b * a);
        self.tempered.layer_sample(l, x, &mut self.rng, None);
    }

    /// The layers of one parity.
    fn of(&self, parity: Parity) -> impl Iterator<Item = usize> + use<V, H> {
        let first = if parity == Parity::Even { 0 } else { 1 };
        (first..self.states.len()).step_by(2)
    }
}

impl<V: Layer, H: Layer> Annealing for Block<'_, V, H> {
    fn step(&mut self, log_w: &mut [f64], beta_prev: f64, beta: f64, transition: bool) {
        let summed = match self.annealed {
            Parity::Even => Parity::Odd,
            Parity::Odd => Parity::Even,
        };
        for l in self.of(self.annealed) {
            let units = self.bias_gap[l].len();
            for (col, w) in self.states[l].chunks_exact(units).zip(log_w.iter_mut()) {
                *w += (beta - beta_prev) * dot_f64(col, &self.bias_gap[l]);
            }
        }
        // The summed-out layers: their cumulants at the inputs from the annealed ones.
        for l in self.of(summed) {
            self.inputs(l);
            self.machine.layer_tempered_step(
                l,
                &self.inputs[l],
                &self.start[l],
                beta_prev,
                beta,
                log_w,
            );
        }
        if transition {
            for l in self.of(summed) {
                self.sample(l, beta);
            }
            for l in self.of(self.annealed) {
                self.inputs(l);
                self.sample(l, beta);
            }
        }
    }
}

/// `Σ_i x_i·g_i` in f64, in four interleaved partial sums (which vectorise; a single running
/// sum cannot), added in a fixed order.
fn dot_f64(x: &[f32], g: &[f64]) -> f64 {
    let mut lanes = [0f64; 4];
    let (xs, gs) = (x.chunks_exact(4), g.chunks_exact(4));
    let tail: f64 = (xs.remainder().iter().zip(gs.remainder()))
        .map(|(x, g)| f64::from(*x) * g)
        .sum();
    for (x, g) in xs.zip(gs) {
        for l in 0..4 {
            lanes[l] += f64::from(x[l]) * g[l];
        }
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail
}

/// Summarises log weights into an estimate of `ln Z`.
pub(crate) fn estimate(log_w: Vec<f64>, log_z0: f64, reverse: bool) -> AisEstimate {
    let n = log_w.len() as f64;
    let max = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // Weights relative to the largest, so that the moments cannot overflow.
    let rel: Vec<f64> = log_w.iter().map(|w| (w - max).exp()).collect();
    let mean = rel.iter().sum::<f64>() / n;
    let sem = (sample_variance(&rel) / n).sqrt();
    let log_mean = max + mean.ln();
    let log_at = |x: f64| {
        if x > 0.0 {
            max + x.ln()
        } else {
            f64::NEG_INFINITY
        }
    };
    let (lo, hi) = (log_at(mean - 3.0 * sem), log_at(mean + 3.0 * sem));
    let ess = importance_effective_sample_size(&log_w);
    let log_weight_variance = sample_variance(&log_w);
    let (log_z, log_z_lower, log_z_upper) = if reverse {
        (log_z0 - log_mean, log_z0 - hi, log_z0 - lo)
    } else {
        (log_z0 + log_mean, log_z0 + lo, log_z0 + hi)
    };
    debug_assert!((log_sum_exp(&log_w) - n.ln() - log_mean).abs() < 1e-9 * log_mean.abs().max(1.0));
    AisEstimate {
        log_z,
        log_z_lower,
        log_z_upper,
        log_z_start: log_z0,
        effective_sample_size: ess,
        log_weight_variance,
        log_weights: log_w,
    }
}
