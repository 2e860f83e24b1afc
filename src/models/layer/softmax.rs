use super::{Layer, columns_mut, linear_energy};
use crate::error::{Error, Result};
use crate::kernels::{ChainRng, uniform};
use nalgebra::DVector;
use serde::{Deserialize, Serialize};

/// One group of one-hot units (e.g. 10 label units): exactly one unit is on. Own energy `−bᵀx`;
/// given inputs `a`, `p(x = eₖ) = softmax(a + b)ₖ`, and the cumulant is `logsumexp(a + b)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Softmax {
    bias: DVector<f32>,
}

super::from_bias!(Softmax);

impl Softmax {
    /// Turns the column `a + b` into probabilities in place; returns `logsumexp(a + b)` in f64.
    fn normalise(col: &mut [f32], bias: &DVector<f32>) -> f64 {
        let max = col
            .iter()
            .zip(bias.iter())
            .map(|(a, b)| a + b)
            .fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0f64;
        for (x, b) in col.iter_mut().zip(bias.iter()) {
            let e = (f64::from(*x + b) - f64::from(max)).exp();
            *x = e as f32;
            total += e;
        }
        let inv = (1.0 / total) as f32;
        col.iter_mut().for_each(|x| *x *= inv);
        f64::from(max) + total.ln()
    }
}

impl Layer for Softmax {
    super::bias_only!("softmax");

    fn mean(&self, x: &mut [f32]) {
        for col in columns_mut(x, self.len()) {
            Self::normalise(col, &self.bias);
        }
    }

    fn sample(&self, x: &mut [f32], rng: &mut ChainRng) {
        for col in columns_mut(x, self.len()) {
            Self::normalise(col, &self.bias);
            let u = uniform(rng);
            // Inverse CDF; the last unit takes any rounding slack.
            let mut cdf = 0f32;
            let mut chosen = col.len() - 1;
            for (k, p) in col.iter().enumerate() {
                cdf += p;
                if u < cdf {
                    chosen = k;
                    break;
                }
            }
            col.iter_mut().for_each(|x| *x = 0.0);
            col[chosen] = 1.0;
        }
    }

    fn cumulant(&self, inputs: &[f32], out: &mut [f64]) {
        let mut col = vec![0f32; self.len()];
        for (a, o) in inputs.chunks_exact(self.len()).zip(out.iter_mut()) {
            col.copy_from_slice(a);
            *o += Self::normalise(&mut col, &self.bias);
        }
    }

    fn mean_field_entropy(&self, mu: &[f32], out: &mut [f64]) {
        let xlogx = |x: f64| if x > 0.0 { x * x.ln() } else { 0.0 };
        for (col, o) in mu.chunks_exact(self.len()).zip(out.iter_mut()) {
            *o -= col.iter().map(|&p| xlogx(f64::from(p))).sum::<f64>();
        }
    }

    fn energy(&self, x: &[f32], out: &mut [f64]) {
        linear_energy(&self.bias, x, out);
    }

    fn check_state(&self, x: &[f32]) -> Result<()> {
        for (c, col) in x.chunks_exact(self.len()).enumerate() {
            let ones = col.iter().filter(|v| **v == 1.0).count();
            let zeros = col.iter().filter(|v| **v == 0.0).count();
            if ones != 1 || ones + zeros != col.len() {
                return Err(Error::invalid(
                    "softmax state",
                    format!("column {c} is not one-hot; expected exactly one 1 and all else 0"),
                ));
            }
        }
        Ok(())
    }

    fn set_bias_from_mean(&mut self, mean: &[f32]) {
        for (b, m) in self.bias.iter_mut().zip(mean) {
            *b = m.max(1e-3).ln();
        }
    }

    fn num_states(&self) -> Option<u64> {
        Some(self.len() as u64)
    }

    fn write_state(&self, index: u64, out: &mut [f32]) {
        for (k, o) in out.iter_mut().enumerate() {
            *o = f32::from(k as u64 == index);
        }
    }
}
