//! Exact conditional log-likelihoods `ln p(v_m | v_o)` of missing visible units given observed
//! ones (inpainting), by enumeration where that is tractable.

use crate::error::{Error, Result};
use crate::kernels::log_sum_exp;
use crate::layer::{Bernoulli, Layer};
use crate::rbm::Rbm;
use nalgebra::{DMatrix, DVector};
use rayon::prelude::*;

/// The largest number of states enumerated per example (over the missing units or the hidden
/// layer, whichever is fewer).
pub const MAX_CONDITIONAL_STATES: u64 = 1 << 20;

/// `ln p(v_m | v_o)` for every column of `v` (binary), where `missing[i]` marks the units `m`
/// whose values in `v` are scored and the others are observed. Exact, by enumerating either the
/// `2^|m|` completions (`ln p = −F(v) − ln Σ_{v'_m} exp(−F(v_o, v'_m))`) or the hidden states
/// (`ln Σ_h exp(−E(v, h)) − ln Σ_h exp(−E_H(h) + Σ_{i∈o} vᵢaᵢ(h) + Σ_{i∈m} ln(1 + e^{aᵢ(h)}))`
/// with `a(h) = b + Wh`), whichever is fewer; [`Error::NotEnumerable`] when both exceed
/// [`MAX_CONDITIONAL_STATES`].
pub fn conditional_log_likelihood_exact<H: Layer>(
    rbm: &Rbm<Bernoulli, H>,
    v: &DMatrix<f32>,
    missing: &[bool],
) -> Result<DVector<f64>> {
    let nv = rbm.num_visible();
    rbm.check_batch("visible states", v, nv)?;
    rbm.visible.check_state(v.as_slice())?;
    if missing.len() != nv {
        return Err(Error::shape("missing-unit mask", nv, missing.len()));
    }
    let m: Vec<usize> = (0..nv).filter(|&i| missing[i]).collect();
    let completions = 1u64.checked_shl(m.len() as u32).filter(|&n| n > 0);
    let hidden_states = rbm.hidden().num_states();
    let fits = |n: Option<u64>| n.filter(|&n| n <= MAX_CONDITIONAL_STATES);
    match (fits(completions), fits(hidden_states)) {
        // Both cost (states × visible × hidden) multiply-adds.
        (Some(c), h) if h.is_none_or(|h| c <= h) => by_completions(rbm, v, &m),
        (_, Some(h)) => Ok(by_hidden_states(rbm, v, missing, h)),
        _ => Err(Error::NotEnumerable {
            what: "conditional log-likelihood",
            message: format!(
                "{} missing units and {} hidden units: both enumerations exceed {MAX_CONDITIONAL_STATES} states",
                m.len(),
                rbm.num_hidden()
            ),
        }),
    }
}

fn by_completions<H: Layer>(
    rbm: &Rbm<Bernoulli, H>,
    v: &DMatrix<f32>,
    m: &[usize],
) -> Result<DVector<f64>> {
    let n = 1usize << m.len();
    let own = rbm.free_energy(v)?;
    let mut out = Vec::with_capacity(v.ncols());
    for (c, col) in v.column_iter().enumerate() {
        let mut all = DMatrix::from_fn(v.nrows(), n, |i, _| col[i]);
        for (k, mut x) in all.column_iter_mut().enumerate() {
            for (bit, &i) in m.iter().enumerate() {
                x[i] = ((k >> bit) & 1) as f32;
            }
        }
        let f = rbm.free_energy(&all)?;
        let neg: Vec<f64> = f.iter().map(|f| -f).collect();
        out.push(-own[c] - log_sum_exp(&neg));
    }
    Ok(DVector::from_vec(out))
}

fn by_hidden_states<H: Layer>(
    rbm: &Rbm<Bernoulli, H>,
    v: &DMatrix<f32>,
    missing: &[bool],
    states: u64,
) -> DVector<f64> {
    let (nv, nh) = (rbm.num_visible(), rbm.num_hidden());
    // Per hidden state: −E_H(h) and the visible inputs a(h) = b + Wh, in blocks of states.
    const BLOCK: u64 = 4096;
    let blocks: Vec<(Vec<f64>, Vec<f64>)> = (0..states.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let first = b * BLOCK;
            let count = (states - first).min(BLOCK) as usize;
            let mut h = DMatrix::zeros(nh, count);
            for (k, mut col) in h.column_iter_mut().enumerate() {
                rbm.hidden()
                    .write_state(first + k as u64, col.as_mut_slice());
            }
            let mut own = vec![0f64; count];
            rbm.hidden().energy(h.as_slice(), &mut own);
            let a = rbm.weights() * &h;
            let bias = rbm.visible.bias();
            let mut full = vec![0f64; count * v.ncols()];
            let mut partial = vec![0f64; count * v.ncols()];
            for (k, a) in a.column_iter().enumerate() {
                for (c, x) in v.column_iter().enumerate() {
                    let (mut f, mut p) = (-own[k], -own[k]);
                    for i in 0..nv {
                        let ai = f64::from(a[i] + bias[i]);
                        let xi = f64::from(x[i]);
                        f += xi * ai;
                        p += if missing[i] {
                            ai.max(0.0) + (-ai.abs()).exp().ln_1p()
                        } else {
                            xi * ai
                        };
                    }
                    full[c * count + k] = f;
                    partial[c * count + k] = p;
                }
            }
            (full, partial)
        })
        .collect();
    // ln Σ_h over all blocks of one column's terms (`part` 0: full, 1: observed part only).
    let log_sum = |c: usize, part: usize| -> f64 {
        let terms: Vec<f64> = blocks
            .iter()
            .flat_map(|blk| {
                let data = if part == 0 { &blk.0 } else { &blk.1 };
                let count = data.len() / v.ncols();
                data[c * count..(c + 1) * count].iter().copied()
            })
            .collect();
        log_sum_exp(&terms)
    };
    DVector::from_fn(v.ncols(), |c, _| log_sum(c, 0) - log_sum(c, 1))
}
