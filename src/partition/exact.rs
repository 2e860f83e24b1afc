//! `ln Z` by enumerating the states of the layer with fewer of them and summing the other out.

use crate::error::{Error, Result};
use crate::kernels::log_sum_exp;
use crate::layer::Layer;
use crate::rbm::{Rbm, free_energy};
use rand::Rng;
use rayon::prelude::*;

/// The largest number of states that exact enumeration accepts (2³⁰): beyond it the sum would
/// take minutes to hours, and AIS is the tool.
pub const MAX_ENUMERATED_STATES: u64 = 1 << 30;

/// States per unit of parallel work.
const CHUNK: u64 = 4096;

/// The exact `ln Z` of an RBM, by enumerating whichever layer has fewer states (it must be
/// discrete and have at most [`MAX_ENUMERATED_STATES`] states). Sums in f64, in parallel, in a
/// fixed order.
pub fn log_partition_exact<V: Layer, H: Layer>(rbm: &Rbm<V, H>) -> Result<f64> {
    rbm.check()?;
    let (nv, nh) = (rbm.num_visible(), rbm.num_hidden());
    let states = |n: Option<u64>| n.filter(|&s| s <= MAX_ENUMERATED_STATES);
    match (
        states(rbm.visible.num_states()),
        states(rbm.hidden().num_states()),
    ) {
        (Some(sv), sh) if sh.is_none_or(|sh| sv <= sh) => Ok(sum_over_states(
            &rbm.visible,
            rbm.hidden(),
            sv,
            nh,
            |v, a| rbm.hidden_inputs_into(v, a),
        )),
        (_, Some(sh)) => Ok(sum_over_states(
            rbm.hidden(),
            &rbm.visible,
            sh,
            nv,
            |h, a| rbm.visible_inputs_into(h, a),
        )),
        _ => Err(Error::NotEnumerable {
            what: "RBM partition function",
            message: format!(
                "neither layer ({nv} {} visible, {nh} {} hidden units) is discrete with at most 2^30 states; use AIS",
                V::KIND,
                H::KIND
            ),
        }),
    }
}

/// `ln Σ_x exp(−F(x))` over all `count` states `x` of layer `a`, with layer `b` (of `b_units`
/// units) summed out; `inputs(x, out)` computes the inputs that states of `a` send to `b`.
fn sum_over_states<A: Layer, B: Layer>(
    a: &A,
    b: &B,
    count: u64,
    b_units: usize,
    inputs: impl Fn(&[f32], &mut [f32]) + Sync,
) -> f64 {
    let units = a.len();
    let chunk_sums: Vec<f64> = (0..count.div_ceil(CHUNK))
        .into_par_iter()
        .map(|chunk| {
            let first = chunk * CHUNK;
            let n = CHUNK.min(count - first) as usize;
            let mut x = vec![0f32; units * n];
            for (k, col) in x.chunks_exact_mut(units).enumerate() {
                a.write_state(first + k as u64, col);
            }
            let mut input = vec![0f32; b_units * n];
            inputs(&x, &mut input);
            let neg_f: Vec<f64> = free_energy(a, b, &x, &input).iter().map(|f| -f).collect();
            log_sum_exp(&neg_f)
        })
        .collect();
    log_sum_exp(&chunk_sums)
}

/// `n` independent exact samples of the visible units (one per column): hidden states drawn
/// from the enumerated `p(h) ∝ exp(−F(h))`, then `v ~ p(v | h)`. The hidden layer must be
/// discrete with at most 2²⁰ states. For checking samplers and reverse AIS on small models.
pub fn exact_samples<V: Layer, H: Layer>(
    rbm: &Rbm<V, H>,
    n: usize,
    seed: u64,
) -> Result<nalgebra::DMatrix<f32>> {
    rbm.check()?;
    let (nv, nh) = (rbm.num_visible(), rbm.num_hidden());
    let count = rbm
        .hidden()
        .num_states()
        .filter(|&c| c <= 1 << 20)
        .ok_or_else(|| Error::NotEnumerable {
            what: "hidden layer for exact sampling",
            message: format!(
                "{nh} {} units; expected a discrete layer with at most 2^20 states",
                H::KIND
            ),
        })?;
    let mut hs = nalgebra::DMatrix::zeros(nh, count as usize);
    for (k, col) in hs.as_mut_slice().chunks_exact_mut(nh).enumerate() {
        rbm.hidden().write_state(k as u64, col);
    }
    let neg_f: Vec<f64> = rbm.free_energy_hidden(&hs)?.iter().map(|f| -f).collect();
    let log_z = log_sum_exp(&neg_f);
    let mut cdf = Vec::with_capacity(neg_f.len());
    let mut total = 0.0;
    for l in &neg_f {
        total += (l - log_z).exp();
        cdf.push(total);
    }
    let mut rng = crate::kernels::stream(seed, 0);
    let mut h = nalgebra::DMatrix::zeros(nh, n);
    for col in h.as_mut_slice().chunks_exact_mut(nh.max(1)) {
        let u = rng.next_u64() as f64 / 18_446_744_073_709_551_616.0 * total;
        let k = cdf.partition_point(|&c| c <= u).min(cdf.len() - 1);
        col.copy_from_slice(hs.column(k).as_slice());
    }
    let mut v = nalgebra::DMatrix::zeros(nv, n);
    rbm.visible_inputs_into(h.as_slice(), v.as_mut_slice());
    rbm.visible.sample(v.as_mut_slice(), &mut rng);
    Ok(v)
}
