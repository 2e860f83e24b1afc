//! Parallel tempering (replica exchange; Desjardins et al. 2010) for machines of any depth: a
//! ladder of inverse temperatures `1 = β₀ > β₁ > … > β_M ≥ 0`, a batch of chains at every rung,
//! Gibbs sweeps at every rung and Metropolis swaps between neighbouring rungs.
//!
//! Rung `k` samples `p_β(x) ∝ exp(β·G(x) − Σ_l E₀(x_l) + (1 − β)·b⁰ᵀv)`, where
//! `G(x) = Σ_l x_{l−1}ᵀW_l x_l + (b − b⁰)ᵀv + Σ_{l ≥ 1} b_lᵀx_l` collects the terms that β scales:
//! the machine at β = 1, and at β = 0 independent units with visible biases `b⁰` (zero: uniform)
//! — the path of AIS from a start with uniform hidden layers. A swap of the states `x` (rung k)
//! and `y` (rung k+1) of one chain is accepted with probability
//! `min(1, exp((β_k − β_{k+1})·(G(y) − G(x))))`, which leaves the product of the rungs'
//! distributions invariant.

use crate::dbm::Dbm;
use crate::error::{Error, Result};
use crate::gibbs::Chains;
use crate::kernels::{ChainRng, stream, uniform};
use crate::layer::{Layer, tempered_bias};
use nalgebra::{DMatrix, DVector};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A ladder of inverse temperatures with a batch of persistent chains at every rung.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParallelTempering {
    betas: Vec<f64>,
    base: DVector<f32>,
    rungs: Vec<Chains>,
    #[serde(with = "crate::io::checked::stream")]
    swaps: ChainRng,
    attempted: Vec<u64>,
    accepted: Vec<u64>,
    rounds: u64,
}

// Streams of the rungs' chains and of the swap decisions, derived from the master seed.
const STREAM_SWAPS: u64 = 1 << 50;
/// Streams of the rungs [`ParallelTempering::tune_ladder`] inserts: the rung count times this,
/// of a seed from the round number.
const STREAM_INSERTED_RUNG: u64 = 1 << 32;

/// `n` (2 to [`MAX_RUNGS`]) inverse temperatures from 1 down to `lowest` (in [0, 1)), evenly
/// spaced in ln β (or linearly when `lowest` is 0): a starting ladder.
pub fn geometric_ladder(n: usize, lowest: f64) -> Result<Vec<f64>> {
    if !(2..=MAX_RUNGS).contains(&n) || !(0.0..1.0).contains(&lowest) {
        return Err(Error::invalid(
            "temperature ladder",
            format!("{n} rungs down to β = {lowest}; expected 2 to {MAX_RUNGS} rungs, β in [0, 1)"),
        ));
    }
    Ok((0..n)
        .map(|k| {
            let t = k as f64 / (n - 1) as f64;
            if lowest > 0.0 {
                lowest.powf(t)
            } else {
                1.0 - t
            }
        })
        .collect())
}

/// The most rungs [`geometric_ladder`] makes.
pub const MAX_RUNGS: usize = 100_000;

pub(crate) fn check_ladder(betas: &[f64]) -> Result<()> {
    let ok = betas.len() >= 2
        && betas[0] == 1.0
        && betas.windows(2).all(|w| w[1] < w[0])
        && betas.iter().all(|b| b.is_finite() && *b >= 0.0);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "temperature ladder",
            format!(
                "{betas:?}; expected at least two inverse temperatures, strictly decreasing from 1 to ≥ 0"
            ),
        ))
    }
}

impl ParallelTempering {
    /// `chains` chains at each inverse temperature of `betas` (decreasing from 1) of `machine` (an
    /// [`Rbm`](crate::Rbm) or a [`Dbm`]), with visible
    /// biases `base` at β = 0 (`None`: zero, the uniform distribution for binary units). Chains
    /// start from the rungs' unconnected distributions.
    pub fn new<V: Layer, H: Layer>(
        machine: &Dbm<V, H>,
        betas: Vec<f64>,
        base: Option<DVector<f32>>,
        chains: usize,
        seed: u64,
    ) -> Result<Self> {
        check_ladder(&betas)?;
        let nv = machine.visible().len();
        let base = base.unwrap_or_else(|| DVector::zeros(nv));
        if base.len() != nv {
            return Err(Error::shape("base biases", nv, base.len()));
        }
        crate::error::check_finite("base biases", base.as_slice())?;
        let rungs = betas
            .iter()
            .enumerate()
            .map(|(k, &beta)| {
                Chains::random(
                    &tempered(machine, beta, &base),
                    chains,
                    stream(seed, k as u64).next_u64(),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let pairs = betas.len() - 1;
        Ok(ParallelTempering {
            betas,
            base,
            rungs,
            swaps: stream(seed, STREAM_SWAPS),
            attempted: vec![0; pairs],
            accepted: vec![0; pairs],
            rounds: 0,
        })
    }

    /// Checks a ladder read from a file against `machine` before any use: a valid ladder with one
    /// batch of chains per rung (all of the same size and fitting `machine`), swap counts for every
    /// neighbouring pair and finite base biases of the visible layer's size.
    pub fn check<V: Layer, H: Layer>(&self, machine: &Dbm<V, H>) -> Result<()> {
        check_ladder(&self.betas)?;
        let rungs = self.betas.len();
        if self.rungs.len() != rungs
            || self.attempted.len() + 1 != rungs
            || self.accepted.len() + 1 != rungs
        {
            return Err(Error::shape(
                "parallel tempering",
                format!("{rungs} rungs of chains and {} swap counts", rungs - 1),
                format!(
                    "{} rungs and {} / {} counts",
                    self.rungs.len(),
                    self.attempted.len(),
                    self.accepted.len()
                ),
            ));
        }
        if self.base.len() != machine.visible().len() {
            return Err(Error::shape(
                "base biases",
                machine.visible().len(),
                self.base.len(),
            ));
        }
        crate::error::check_finite("base biases", self.base.as_slice())?;
        let chains = self.rungs[0].len();
        for rung in &self.rungs {
            rung.check(machine)?;
            if rung.len() != chains {
                return Err(Error::shape(
                    "parallel tempering rungs",
                    format!("{chains} chains at every rung"),
                    rung.len(),
                ));
            }
        }
        Ok(())
    }

    /// The inverse temperatures, from 1 down.
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    /// The chains at β = 1: samples of the model.
    pub fn chains(&self) -> &Chains {
        &self.rungs[0]
    }

    /// The chains at rung `k`.
    pub fn rung(&self, k: usize) -> Option<&Chains> {
        self.rungs.get(k)
    }

    /// For every neighbouring pair of rungs `(k, k + 1)`, the fraction of attempted swaps that
    /// were accepted since the last [`reset_swap_counts`](Self::reset_swap_counts) (NaN if none
    /// were attempted).
    pub fn swap_rates(&self) -> Vec<f64> {
        self.accepted
            .iter()
            .zip(&self.attempted)
            .map(|(&a, &n)| a as f64 / n as f64)
            .collect()
    }

    /// Swaps attempted per pair of rungs since the last reset.
    pub fn swaps_attempted(&self) -> &[u64] {
        &self.attempted
    }

    /// Forgets the swap statistics (e.g. after burn-in).
    pub fn reset_swap_counts(&mut self) {
        self.attempted.iter_mut().for_each(|x| *x = 0);
        self.accepted.iter_mut().for_each(|x| *x = 0);
    }

    /// Runs `sweeps` rounds: one Gibbs sweep of every rung at its temperature, then swaps between
    /// neighbouring rungs — pairs `(0,1), (2,3), …` in even rounds and `(1,2), (3,4), …` in odd
    /// ones, every chain deciding on its own.
    pub fn sweep<V: Layer, H: Layer>(&mut self, machine: &Dbm<V, H>, sweeps: usize) -> Result<()> {
        let machines: Vec<Dbm<V, H>> = self
            .betas
            .iter()
            .map(|&beta| tempered(machine, beta, &self.base))
            .collect();
        for _ in 0..sweeps {
            for (chains, machine) in self.rungs.iter_mut().zip(&machines) {
                chains.sweep(machine, 1)?;
            }
            self.swap(machine);
        }
        Ok(())
    }

    /// One round of swap attempts between neighbouring rungs.
    fn swap<V: Layer, H: Layer>(&mut self, machine: &Dbm<V, H>) {
        let parity = (self.rounds % 2) as usize;
        self.rounds = self.rounds.wrapping_add(1);
        for k in (parity..self.betas.len() - 1).step_by(2) {
            let dbeta = self.betas[k] - self.betas[k + 1];
            let (lo, hi) = self.rungs.split_at_mut(k + 1);
            let (x, y) = (&mut lo[k], &mut hi[0]);
            let gx = scaled_part(machine, &self.base, x);
            let gy = scaled_part(machine, &self.base, y);
            for c in 0..x.len() {
                self.attempted[k] = self.attempted[k].saturating_add(1);
                let log_ratio = dbeta * (gy[c] - gx[c]);
                if log_ratio >= 0.0 || f64::from(uniform(&mut self.swaps)).ln() < log_ratio {
                    self.accepted[k] = self.accepted[k].saturating_add(1);
                    x.swap_chain(y, c);
                }
            }
        }
    }

    /// Adapts the inner inverse temperatures (the ends stay) so that neighbouring swap rates
    /// become equal, then inserts rungs in the slowest gap while the lowest rate is below
    /// `target` (up to `max_rungs`). Each of the `rounds` rounds runs `sweeps` sweeps, measures
    /// the rates and moves every gap in ln(β + ε) by a factor `exp(rate − mean rate)`: gaps with
    /// rare swaps shrink. Swap counts are reset at the end.
    pub fn tune_ladder<V: Layer, H: Layer>(
        &mut self,
        machine: &Dbm<V, H>,
        rounds: usize,
        sweeps: usize,
        target: f64,
        max_rungs: usize,
    ) -> Result<()> {
        if !(0.0..1.0).contains(&target) {
            return Err(Error::invalid(
                "target swap rate",
                format!("{target}; expected a value in [0, 1)"),
            ));
        }
        let position = |b: f64| (b + 1e-3).ln();
        for _ in 0..rounds {
            self.reset_swap_counts();
            self.sweep(machine, sweeps.max(2))?;
            let rates = self.swap_rates();
            let lowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
            if lowest < target && self.betas.len() < max_rungs {
                let k = rates.iter().position(|&r| r == lowest).unwrap_or(0);
                let mid = ((position(self.betas[k]) + position(self.betas[k + 1])) / 2.0).exp();
                self.insert_rung(machine, k + 1, mid - 1e-3)?;
                continue;
            }
            let mean = rates.iter().sum::<f64>() / rates.len() as f64;
            let ends = (
                position(self.betas[0]),
                position(*self.betas.last().unwrap_or(&0.0)),
            );
            let gaps: Vec<f64> = self
                .betas
                .windows(2)
                .zip(&rates)
                .map(|(w, r)| (position(w[0]) - position(w[1])) * (r - mean).exp())
                .collect();
            let total: f64 = gaps.iter().sum();
            let mut at = ends.0;
            for (k, gap) in gaps.iter().enumerate().take(gaps.len() - 1) {
                at -= gap / total * (ends.0 - ends.1);
                self.betas[k + 1] = at.exp() - 1e-3;
            }
        }
        self.reset_swap_counts();
        Ok(())
    }

    /// A new rung at inverse temperature `beta` in position `k`, starting from a copy of the
    /// chains of rung `k` (its warmer neighbour is `k − 1`).
    fn insert_rung<V: Layer, H: Layer>(
        &mut self,
        machine: &Dbm<V, H>,
        k: usize,
        beta: f64,
    ) -> Result<()> {
        let mut chains = self.rungs[k].clone();
        let index = self.betas.len() as u64 * STREAM_INSERTED_RUNG;
        chains.reseed(stream(self.rounds, index).next_u64());
        chains.sweep(&tempered(machine, beta, &self.base), 1)?;
        self.betas.insert(k, beta);
        self.rungs.insert(k, chains);
        self.attempted.push(0);
        self.accepted.push(0);
        check_ladder(&self.betas)
    }
}

/// The machine at inverse temperature β on the path from independent units with visible biases
/// `base` (β = 0) to `machine` (β = 1): couplings βW_l, visible biases (1 − β)b⁰ + βb, hidden
/// biases βb_l.
pub(crate) fn tempered<V: Layer, H: Layer>(
    machine: &Dbm<V, H>,
    beta: f64,
    base: &DVector<f32>,
) -> Dbm<V, H> {
    let b = beta as f32;
    let mut hot = machine.clone();
    *hot.visible.bias_mut() =
        tempered_bias(base.as_slice(), machine.visible.bias().as_slice(), beta);
    hot.hidden.iter_mut().for_each(|h| *h.bias_mut() *= b);
    hot.weights_mut().iter_mut().for_each(|w| *w *= b);
    hot
}

/// `G(x) = Σ_l x_{l−1}ᵀW_l x_l + (b − b⁰)ᵀv + Σ_{l ≥ 1} b_lᵀx_l` for every chain: the part of
/// `ln p_β` that β multiplies.
pub(crate) fn scaled_part<V: Layer, H: Layer>(
    machine: &Dbm<V, H>,
    base: &DVector<f32>,
    chains: &Chains,
) -> Vec<f64> {
    let x = chains.layers();
    let dot = |a: &[f32], b: &[f32]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    };
    // Each coupling's term as x_{l−1}ᵀ(W_l x_l): the inputs it sends down.
    let down: Vec<DMatrix<f32>> = (1..x.len())
        .map(|l| {
            let mut a = DMatrix::zeros(x[l - 1].nrows(), x[l].ncols());
            machine.neighbour_inputs(l - 1, None, Some(x[l].as_slice()), a.as_mut_slice());
            a
        })
        .collect();
    let bv = machine.visible.bias() - base;
    (0..chains.len())
        .map(|c| {
            let coupling: f64 = (1..x.len())
                .map(|l| {
                    dot(
                        x[l - 1].column(c).as_slice(),
                        down[l - 1].column(c).as_slice(),
                    )
                })
                .sum();
            let hidden: f64 = (1..x.len())
                .map(|l| dot(x[l].column(c).as_slice(), machine.layer_bias(l).as_slice()))
                .sum();
            coupling + dot(x[0].column(c).as_slice(), bv.as_slice()) + hidden
        })
        .collect()
}
