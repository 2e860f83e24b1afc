use super::{Layer, columns_mut};
use crate::error::{Result, check_finite};
use crate::kernels::{ChainRng, fill_normal};
use nalgebra::DVector;
use serde::{Deserialize, Serialize};

/// ½ ln 2π.
const HALF_LN_TAU: f64 = 0.918_938_533_204_672_8;

/// Real-valued units of unit variance with own energy `½‖x‖² − bᵀx` (that is `½‖x − b‖²` up to a
/// constant): given inputs `a`, `x ~ N(a + b, 1)`, and the cumulant is `½(a + b)² + ½ ln 2π`.
/// Data should be standardised to unit variance per unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gaussian {
    bias: DVector<f32>,
}

super::from_bias!(Gaussian);

impl Layer for Gaussian {
    super::bias_only!("gaussian");

    fn mean(&self, x: &mut [f32]) {
        for col in columns_mut(x, self.len()) {
            for (xi, bi) in col.iter_mut().zip(self.bias.iter()) {
                *xi += bi;
            }
        }
    }

    fn sample(&self, x: &mut [f32], rng: &mut ChainRng) {
        self.mean(x);
        let mut z = [0f32; 256];
        for chunk in x.chunks_mut(z.len()) {
            let z = &mut z[..chunk.len()];
            fill_normal(rng, z);
            for (xi, zi) in chunk.iter_mut().zip(z.iter()) {
                *xi += zi;
            }
        }
    }

    fn cumulant(&self, inputs: &[f32], out: &mut [f64]) {
        for (col, o) in inputs.chunks_exact(self.len()).zip(out.iter_mut()) {
            *o += col
                .iter()
                .zip(self.bias.iter())
                .map(|(a, b)| {
                    let m = f64::from(*a) + f64::from(*b);
                    0.5 * m * m + HALF_LN_TAU
                })
                .sum::<f64>();
        }
    }

    fn mean_field_entropy(&self, mu: &[f32], out: &mut [f64]) {
        // q = N(μ, 1) per unit: entropy ½ln(2πe), and E_q[½(x − b)²] = ½(μ − b)² + ½.
        let per_column = 0.5 * (2.0 * std::f64::consts::PI).ln() * self.len() as f64;
        for o in out.iter_mut().take(mu.len() / self.len().max(1)) {
            *o += per_column;
        }
    }

    fn energy(&self, x: &[f32], out: &mut [f64]) {
        for (col, o) in x.chunks_exact(self.len()).zip(out.iter_mut()) {
            *o += col
                .iter()
                .zip(self.bias.iter())
                .map(|(x, b)| {
                    let x = f64::from(*x);
                    0.5 * x * x - x * f64::from(*b)
                })
                .sum::<f64>();
        }
    }

    fn check_state(&self, x: &[f32]) -> Result<()> {
        check_finite("Gaussian state", x)
    }

    fn set_bias_from_mean(&mut self, mean: &[f32]) {
        self.bias.iter_mut().zip(mean).for_each(|(b, m)| *b = *m);
    }

    fn num_states(&self) -> Option<u64> {
        None
    }

    fn write_state(&self, _index: u64, _out: &mut [f32]) {
        // Continuous units have no states to number; enumeration checks `num_states` first.
    }
}
