//! Exact `ln Z`, `ln p*(v)` and samples of small machines of any depth: enumerate the joint
//! states of one parity of layers and sum the other parity out analytically.

use crate::dbm::{Dbm, Parity};
use crate::error::{Error, Result};
use crate::gibbs::Machine;
use crate::kernels::log_sum_exp;
use crate::layer::Layer;
use nalgebra::{DMatrix, DVector};
use rand::Rng;
use rayon::prelude::*;

/// The largest number of joint states that exact enumeration accepts (2³⁰): beyond it the sum
/// would take minutes to hours, and AIS is the tool.
pub const MAX_ENUMERATED_STATES: u64 = 1 << 30;

/// The largest number of joint states [`exact_samples`] tabulates (2²⁰).
pub const MAX_SAMPLED_STATES: u64 = 1 << 20;

/// Joint states per unit of parallel work.
const CHUNK: u64 = 1024;

/// The layers of one parity and their joint states, mixed-radix: state `k` gives layer
/// `layers[0]` state `k mod r₀`, `layers[1]` state `(k / r₀) mod r₁`, …
struct Enumeration {
    layers: Vec<usize>,
    radices: Vec<u64>,
    count: u64,
}

impl Enumeration {
    /// The layers of `parity` (the visible one left out if `skip_visible`), if all are
    /// discrete with at most `max` joint states.
    fn of<V: Layer, H: Layer>(
        m: &Dbm<V, H>,
        parity: Parity,
        skip_visible: bool,
        max: u64,
    ) -> Option<Self> {
        let layers: Vec<usize> = (0..m.num_layers())
            .filter(|&l| Parity::of(l) == parity && !(skip_visible && l == 0))
            .collect();
        let radices = layers
            .iter()
            .map(|&l| m.layer_states(l))
            .collect::<Option<Vec<u64>>>()?;
        let count = radices.iter().try_fold(1u64, |t, &r| t.checked_mul(r))?;
        (count <= max).then_some(Enumeration {
            layers,
            radices,
            count,
        })
    }

    /// States `first .. first + n` of every layer (one column each): the enumerated layers'
    /// joint states, the others a copy of `fixed[l]` (or zeros where it is empty).
    fn states<V: Layer, H: Layer>(
        &self,
        m: &Dbm<V, H>,
        first: u64,
        n: usize,
        fixed: &[&[f32]],
    ) -> Vec<Vec<f32>> {
        let sizes = m.layer_sizes();
        let mut states: Vec<Vec<f32>> = sizes
            .iter()
            .enumerate()
            .map(|(l, &units)| {
                let mut x = vec![0f32; units * n];
                if !self.layers.contains(&l) && !fixed[l].is_empty() {
                    x.chunks_exact_mut(units)
                        .for_each(|c| c.copy_from_slice(fixed[l]));
                }
                x
            })
            .collect();
        for k in 0..n {
            let mut index = first + k as u64;
            for (&l, &radix) in self.layers.iter().zip(&self.radices) {
                let units = sizes[l];
                m.layer_write_state(l, index % radix, &mut states[l][k * units..(k + 1) * units]);
                index /= radix;
            }
        }
        states
    }

    /// `−F` of joint states `first .. first + n`, the other parity summed out.
    fn neg_free_energies<V: Layer, H: Layer>(
        &self,
        m: &Dbm<V, H>,
        first: u64,
        n: usize,
        fixed: &[&[f32]],
    ) -> Vec<f64> {
        let states = self.states(m, first, n, fixed);
        let slices: Vec<&[f32]> = states.iter().map(|x| x.as_slice()).collect();
        let mut f = vec![0f64; n];
        m.free_energy_into(&slices, self.summed(), &mut f);
        f.iter().map(|f| -f).collect()
    }

    fn summed(&self) -> Parity {
        match self.layers.first().map(|&l| Parity::of(l)) {
            Some(Parity::Even) => Parity::Odd,
            _ => Parity::Even,
        }
    }

    /// `ln Σ exp(−F)` over every joint state (the other layers at `fixed`). Parallel over
    /// chunks, summed in a fixed order.
    fn log_sum<V: Layer, H: Layer>(&self, m: &Dbm<V, H>, fixed: &[&[f32]]) -> f64 {
        let chunks: Vec<f64> = (0..self.count.div_ceil(CHUNK))
            .into_par_iter()
            .map(|chunk| {
                let first = chunk * CHUNK;
                let n = CHUNK.min(self.count - first) as usize;
                log_sum_exp(&self.neg_free_energies(m, first, n, fixed))
            })
            .collect();
        log_sum_exp(&chunks)
    }
}

/// Whether [`log_partition_exact`] would enumerate at most `max` joint states.
pub fn enumerable_within<V: Layer, H: Layer>(m: &Dbm<V, H>, max: u64) -> bool {
    [Parity::Odd, Parity::Even]
        .into_iter()
        .any(|p| Enumeration::of(m, p, false, max).is_some())
}

/// Whether [`log_unnormalised_exact`] of `examples` examples would evaluate at most `max`
/// free energies in all (the even hidden layers' joint states times the examples): a DBM
/// whose `ln Z` is cheap can still cost `2^n` per example.
pub fn unnormalised_enumerable_within<V: Layer, H: Layer>(
    m: &Dbm<V, H>,
    examples: usize,
    max: u64,
) -> bool {
    Enumeration::of(m, Parity::Even, true, max)
        .and_then(|e| e.count.checked_mul(examples as u64))
        .is_some_and(|total| total <= max)
}

/// The exact `ln Z` of any machine (an [`crate::Rbm`] included), enumerating whichever parity
/// of layers has fewer joint states (all its layers discrete, at most
/// [`MAX_ENUMERATED_STATES`] joint states) and summing the other out. Sums in f64, in
/// parallel, in a fixed order.
pub fn log_partition_exact<V: Layer, H: Layer>(m: &Dbm<V, H>) -> Result<f64> {
    m.check()?;
    let odd = Enumeration::of(m, Parity::Odd, false, MAX_ENUMERATED_STATES);
    let even = Enumeration::of(m, Parity::Even, false, MAX_ENUMERATED_STATES);
    let chosen = match (odd, even) {
        (Some(o), Some(e)) => {
            if e.count <= o.count {
                e
            } else {
                o
            }
        }
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => {
            return Err(Error::NotEnumerable {
                what: "partition function",
                message: format!(
                    "neither the odd nor the even layers of {:?} units ({} visible, {} hidden) are discrete with at most 2^30 joint states; use AIS",
                    m.layer_sizes(),
                    V::kind(),
                    H::kind()
                ),
            });
        }
    };
    let empty: Vec<&[f32]> = vec![&[]; m.num_layers()];
    Ok(chosen.log_sum(m, &empty))
}

/// The exact `ln p*(v) = ln Σ_h exp(−E(v, h))` of each column of `v` (unnormalised),
/// enumerating the even hidden layers and summing out the odd ones; for one hidden layer, `−F(v)`.
pub fn log_unnormalised_exact<V: Layer, H: Layer>(
    m: &Dbm<V, H>,
    v: &DMatrix<f32>,
) -> Result<DVector<f64>> {
    m.check()?;
    m.check_batch("visible batch", v, m.visible().len())?;
    let even = Enumeration::of(m, Parity::Even, true, MAX_ENUMERATED_STATES).ok_or_else(|| {
        Error::NotEnumerable {
            what: "log-probability",
            message: "the even hidden layers are not discrete with at most 2^30 joint states"
                .into(),
        }
    })?;
    if even.layers.is_empty() {
        // Nothing to enumerate: one batched free energy.
        let states = m.zero_states_with_visible(v);
        return m.free_energy(&states, Parity::Odd).map(|f| -f);
    }
    Ok(DVector::from_iterator(
        v.ncols(),
        v.column_iter().map(|col| {
            let mut fixed: Vec<&[f32]> = vec![&[]; m.num_layers()];
            fixed[0] = col.as_slice();
            even.log_sum(m, &fixed)
        }),
    ))
}

/// `n` independent exact samples of every layer (one matrix per layer, one column per
/// sample): joint states of the odd layers drawn from the enumerated `p ∝ exp(−F)` with the
/// even layers summed out, then each even layer from its conditional given them. The odd
/// layers must be discrete with at most [`MAX_SAMPLED_STATES`] joint states. For checking
/// samplers and reverse AIS on small models.
pub fn exact_samples<V: Layer, H: Layer>(
    m: &Dbm<V, H>,
    n: usize,
    seed: u64,
) -> Result<Vec<DMatrix<f32>>> {
    m.check()?;
    let odd = Enumeration::of(m, Parity::Odd, false, MAX_SAMPLED_STATES).ok_or_else(|| {
        Error::NotEnumerable {
            what: "odd layers for exact sampling",
            message: format!(
                "layers of {:?} units ({} hidden); expected discrete odd layers with at most 2^20 joint states",
                m.layer_sizes(),
                H::kind()
            ),
        }
    })?;
    let empty: Vec<&[f32]> = vec![&[]; m.num_layers()];
    let neg_f = odd.neg_free_energies(m, 0, odd.count as usize, &empty);
    let log_z = log_sum_exp(&neg_f);
    let mut cdf = Vec::with_capacity(neg_f.len());
    let mut total = 0.0;
    for l in &neg_f {
        total += (l - log_z).exp();
        cdf.push(total);
    }
    let mut rng = crate::kernels::stream(seed, 0);
    let sizes = m.layer_sizes();
    let mut states: Vec<Vec<f32>> = sizes.iter().map(|&u| vec![0f32; u * n]).collect();
    for k in 0..n {
        let u = rng.next_u64() as f64 / 18_446_744_073_709_551_616.0 * total;
        let index = cdf.partition_point(|&c| c <= u).min(cdf.len() - 1);
        let drawn = odd.states(m, index as u64, 1, &empty);
        for &l in &odd.layers {
            states[l][k * sizes[l]..(k + 1) * sizes[l]].copy_from_slice(&drawn[l]);
        }
    }
    // Given the odd layers the even ones are independent: one conditional draw each.
    let mut slices: Vec<&mut [f32]> = states.iter_mut().map(|x| x.as_mut_slice()).collect();
    for l in (0..sizes.len()).step_by(2) {
        m.sample_layer(l, &mut slices, &mut rng, None);
    }
    Ok(states
        .into_iter()
        .zip(&sizes)
        .map(|(x, &units)| DMatrix::from_vec(units, n, x))
        .collect())
}
