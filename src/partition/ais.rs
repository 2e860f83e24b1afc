//! Annealed importance sampling (Neal 2001) for RBMs, as in Salakhutdinov & Murray (2008), and
//! its reverse, which bounds `ln Z` from above in expectation (Burda, Grosse & Salakhutdinov 2015).
//!
//! The path runs from a start model `p₀(v, h) = p_A(v)·p_H⁰(h)` (visible units independent with
//! biases `b_A`; hidden units with zero biases, i.e. uniform for Bernoulli units) to the RBM:
//!
//! `E_β(v, h) = E_V(v; (1 − β)·b_A + β·b_V) + E_H(h; β·b_H) − β·vᵀWh`.
//!
//! For Bernoulli hidden units, summing them out gives the paper's intermediate distributions
//! `p_β(v) ∝ exp((1 − β)·b_Aᵀv + β·b_Vᵀv) · Π_j (1 + exp(β·(Wᵀv + b_H)_j))`. The same path works
//! for Gaussian and softmax units, whose quadratic or normalising terms are not tempered. One
//! blocked Gibbs sweep at `β_k` is the transition of step `k`; weights are kept in f64.

use crate::diagnostics::{importance_effective_sample_size, sample_variance};
use crate::error::{Error, Result};
use crate::gibbs::{CHAIN_BLOCK, Machine};
use crate::kernels::{log_sum_exp, stream};
use crate::layer::{Layer, set_tempered_bias};
use crate::rbm::Rbm;
use nalgebra::{DMatrix, DVector};
use rayon::prelude::*;

/// An increasing sequence of inverse temperatures from 0 to 1.
#[derive(Clone, Debug, PartialEq)]
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

/// The start distribution of the visible units: a layer of the RBM's visible type with biases
/// `b_A` and no couplings, so that its `ln Z_A` is exact.
#[derive(Clone, Debug, PartialEq)]
pub struct Start<V: Layer> {
    visible: V,
}

impl<V: Layer> Start<V> {
    /// Zero biases: uniform for Bernoulli and softmax units, N(0, 1) for Gaussian units.
    pub fn uniform(visible_units: usize) -> Self {
        Start {
            visible: V::new(DVector::zeros(visible_units)),
        }
    }

    /// The base-rate model of Salakhutdinov & Murray: unit `i` has mean
    /// `p_i = (Σ_n x_ni + α) / (N + α)` over the columns of `data`, with pseudo-count `α`.
    /// Their code uses 5 per minibatch of 100, `α = 0.05·N` ([`Start::base_rate_default`]).
    pub fn base_rate(data: &DMatrix<f32>, pseudo_count: f64) -> Result<Self> {
        if data.ncols() == 0 {
            return Err(Error::Empty {
                what: "data for the base-rate model",
            });
        }
        crate::error::check_finite("data for the base-rate model", data.as_slice())?;
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
                ((row.iter().map(|&x| f64::from(x)).sum::<f64>() + pseudo_count)
                    / (n + pseudo_count)) as f32
            })
            .collect();
        let mut visible = V::new(DVector::zeros(data.nrows()));
        visible.set_bias_from_mean(&mean);
        Ok(Start { visible })
    }

    /// [`Start::base_rate`] with `α = 0.05·N` (3000 for the 60,000 MNIST training images).
    pub fn base_rate_default(data: &DMatrix<f32>) -> Result<Self> {
        Self::base_rate(data, 0.05 * data.ncols() as f64)
    }

    /// A start distribution with these visible biases.
    pub fn from_bias(bias: DVector<f32>) -> Result<Self> {
        crate::error::check_finite("start biases", bias.as_slice())?;
        Ok(Start {
            visible: V::new(bias),
        })
    }

    /// The start model's visible layer.
    pub fn visible(&self) -> &V {
        &self.visible
    }
}

/// Settings of an AIS run.
#[derive(Clone, Debug, PartialEq)]
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
#[derive(Clone, Debug, PartialEq)]
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

/// `ln Z₀ = ln Z_A + ln Z_H⁰`: the start model's visible layer alone plus the hidden layer with
/// zero biases and no inputs.
pub fn log_partition_start<V: Layer, H: Layer>(rbm: &Rbm<V, H>, start: &Start<V>) -> f64 {
    let mut z = [0f64];
    start
        .visible
        .cumulant(&vec![0f32; rbm.num_visible()], &mut z);
    H::new(DVector::zeros(rbm.num_hidden())).cumulant(&vec![0f32; rbm.num_hidden()], &mut z);
    z[0]
}

/// Forward AIS: runs start with exact samples of the start model and anneal to the RBM; the
/// estimate `ln Ẑ = ln Z₀ + ln mean(w)` is unbiased in `Z` and so, by Jensen's inequality, tends
/// to *under*estimate `ln Z`.
///
/// `progress(done, total)` is called between segments of the schedule.
pub fn ais<V: Layer, H: Layer>(
    rbm: &Rbm<V, H>,
    start: &Start<V>,
    config: &AisConfig,
    progress: impl Fn(usize, usize) + Sync,
) -> Result<AisEstimate> {
    check(rbm, start, config.runs)?;
    rbm.expect_sweeps(config.runs.saturating_mul(config.betas.len()));
    let mut v0 = DMatrix::zeros(rbm.num_visible(), config.runs);
    let mut rng = stream(config.seed, u64::MAX);
    start.visible.sample(v0.as_mut_slice(), &mut rng);
    let blocks = RbmBlock::split(rbm, start, &v0, config.seed);
    let log_w = anneal(blocks, config.runs, config.betas.as_slice(), &progress);
    Ok(estimate(log_w, log_partition_start(rbm, start), false))
}

/// Reverse AIS: runs start at `initial` (`visible × runs`), ideally exact samples of the RBM,
/// and anneal back to the start model, giving an unbiased estimate of `Z₀/Z`; so
/// `ln Ẑ = ln Z₀ − ln mean(w)` *over*estimates `ln Z` in expectation. Started from data or from
/// long Gibbs chains instead (as in practice), it is an approximate upper bound.
pub fn reverse_ais<V: Layer, H: Layer>(
    rbm: &Rbm<V, H>,
    start: &Start<V>,
    initial: &DMatrix<f32>,
    config: &AisConfig,
    progress: impl Fn(usize, usize) + Sync,
) -> Result<AisEstimate> {
    check(rbm, start, initial.ncols())?;
    rbm.check_batch("initial states of reverse AIS", initial, rbm.num_visible())?;
    rbm.expect_sweeps(initial.ncols().saturating_mul(config.betas.len()));
    rbm.visible.check_state(initial.as_slice())?;
    let betas: Vec<f64> = config.betas.as_slice().iter().rev().copied().collect();
    let blocks = RbmBlock::split(rbm, start, initial, config.seed);
    let log_w = anneal(blocks, initial.ncols(), &betas, &progress);
    Ok(estimate(log_w, log_partition_start(rbm, start), true))
}

/// The longest AIS schedule [`Betas::three_stage`] makes (the paper's has 14,501 distributions).
pub const MAX_BETAS: usize = 10_000_000;

fn check<V: Layer, H: Layer>(rbm: &Rbm<V, H>, start: &Start<V>, runs: usize) -> Result<()> {
    rbm.check()?;
    if runs == 0 {
        return Err(Error::invalid("AIS runs", "0; expected at least 1"));
    }
    crate::error::check_elements("AIS runs (units × runs)", &[rbm.num_visible(), runs])?;
    crate::error::check_elements("AIS runs (units × runs)", &[rbm.num_hidden(), runs])?;
    if start.visible.len() != rbm.num_visible() {
        return Err(Error::shape(
            "AIS start distribution",
            format!("{} visible units", rbm.num_visible()),
            start.visible.len(),
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
/// parallel; returns each run's log importance weight. The final state needs no transition.
pub(crate) fn anneal<B: Annealing>(
    mut blocks: Vec<B>,
    runs: usize,
    betas: &[f64],
    progress: &(impl Fn(usize, usize) + Sync),
) -> Vec<f64> {
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
        progress(done, steps);
    }
    log_w
}

/// A block of AIS runs of an RBM: visible states, with the hidden layer summed out.
struct RbmBlock<'a, V: Layer, H: Layer> {
    rbm: &'a Rbm<V, H>,
    v: Vec<f32>,
    rng: crate::kernels::ChainRng,
    start_bias: DVector<f32>,
    /// `b_V − b_A`: the visible part of `ln p*_β(v)` is `β·(b_V − b_A)ᵀv` plus terms free of β.
    bias_gap: DVector<f64>,
    hidden_start: Vec<f32>,
    visible: V,
    hidden: H,
    inputs: Vec<f32>,
}

impl<'a, V: Layer, H: Layer> RbmBlock<'a, V, H> {
    /// Blocks of [`CHAIN_BLOCK`] runs starting at the columns of `v0`, with streams from `seed`.
    fn split(rbm: &'a Rbm<V, H>, start: &Start<V>, v0: &DMatrix<f32>, seed: u64) -> Vec<Self> {
        let nv = rbm.num_visible();
        v0.as_slice()
            .chunks(nv * CHAIN_BLOCK)
            .enumerate()
            .map(|(b, v)| RbmBlock {
                rbm,
                v: v.to_vec(),
                rng: stream(seed, b as u64),
                start_bias: start.visible.bias().clone(),
                bias_gap: (rbm.visible.bias() - start.visible.bias()).map(f64::from),
                hidden_start: vec![0f32; rbm.num_hidden()],
                visible: rbm.visible.clone(),
                hidden: rbm.hidden().clone(),
                inputs: vec![0f32; rbm.num_hidden() * (v.len() / nv)],
            })
            .collect()
    }
}

impl<V: Layer, H: Layer> Annealing for RbmBlock<'_, V, H> {
    fn step(&mut self, log_w: &mut [f64], beta_prev: f64, beta: f64, transition: bool) {
        let rbm = self.rbm;
        let nv = rbm.num_visible();
        rbm.hidden_inputs_into(&self.v, &mut self.inputs);
        for (col, w) in self.v.chunks_exact(nv).zip(log_w.iter_mut()) {
            *w += (beta - beta_prev) * dot_f64(col, self.bias_gap.as_slice());
        }
        rbm.hidden().tempered_cumulant_step(
            &self.inputs,
            &self.hidden_start,
            beta_prev,
            beta,
            log_w,
        );
        if transition {
            // h ~ p_β(h | v) from inputs β·Wᵀv and biases β·b_H, then v ~ p_β(v | h) from
            // inputs β·W h and biases (1 − β)·b_A + β·b_V.
            let b = beta as f32;
            set_tempered_bias(
                self.hidden.bias_mut().as_mut_slice(),
                &self.hidden_start,
                rbm.hidden().bias().as_slice(),
                beta,
            );
            set_tempered_bias(
                self.visible.bias_mut().as_mut_slice(),
                self.start_bias.as_slice(),
                rbm.visible.bias().as_slice(),
                beta,
            );
            self.inputs.iter_mut().for_each(|a| *a *= b);
            self.hidden.sample(&mut self.inputs, &mut self.rng);
            rbm.visible_inputs_into(&self.inputs, &mut self.v);
            self.v.iter_mut().for_each(|x| *x *= b);
            self.visible.sample(&mut self.v, &mut self.rng);
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
