use super::{Layer, linear_energy};
use crate::error::{Error, Result};
use crate::kernels::{
    ChainRng, fill_uniform, sigmoid_columns, softplus, softplus_columns, softplus_steps,
};
use nalgebra::DVector;
use serde::{Deserialize, Serialize};

/// Binary units `x ∈ {0, 1}` with own energy `−bᵀx`: mean `σ(a + b)`, cumulant `softplus(a + b)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bernoulli {
    bias: DVector<f32>,
}

super::from_bias!(Bernoulli);

impl Layer for Bernoulli {
    super::bias_only!("bernoulli");

    fn mean(&self, x: &mut [f32]) {
        sigmoid_columns(x, self.bias.as_slice());
    }

    fn sample(&self, x: &mut [f32], rng: &mut ChainRng) {
        self.mean(x);
        // Two passes (probabilities, then a bulk compare with uniforms) keep the loop branch-free.
        let mut u = [0f32; 256];
        for chunk in x.chunks_mut(u.len()) {
            let u = &mut u[..chunk.len()];
            fill_uniform(rng, u);
            for (xi, ui) in chunk.iter_mut().zip(u.iter()) {
                *xi = f32::from(*ui < *xi);
            }
        }
    }

    fn cumulant(&self, inputs: &[f32], out: &mut [f64]) {
        for (col, o) in inputs.chunks_exact(self.len()).zip(out.iter_mut()) {
            *o += col
                .iter()
                .zip(self.bias.iter())
                .map(|(a, b)| softplus(f64::from(*a) + f64::from(*b)))
                .sum::<f64>();
        }
    }

    fn cumulant_fast(&self, inputs: &[f32], out: &mut [f64]) {
        softplus_columns(inputs, self.bias.as_slice(), out);
    }

    fn mean_field_entropy(&self, mu: &[f32], out: &mut [f64]) {
        let xlogx = |x: f64| if x > 0.0 { x * x.ln() } else { 0.0 };
        for (col, o) in mu.chunks_exact(self.len()).zip(out.iter_mut()) {
            *o -= col
                .iter()
                .map(|&p| xlogx(f64::from(p)) + xlogx(1.0 - f64::from(p)))
                .sum::<f64>();
        }
    }

    fn tempered_cumulant_step(
        &self,
        inputs: &[f32],
        start: &[f32],
        beta0: f64,
        beta1: f64,
        out: &mut [f64],
    ) {
        // softplus(s(β₁)) − softplus(s(β₀)) computed as one small number, vectorised in f32.
        softplus_steps(
            inputs,
            self.bias.as_slice(),
            start,
            beta0 as f32,
            beta1 as f32,
            out,
        );
    }

    fn energy(&self, x: &[f32], out: &mut [f64]) {
        linear_energy(&self.bias, x, out);
    }

    fn check_state(&self, x: &[f32]) -> Result<()> {
        match x.iter().position(|v| *v != 0.0 && *v != 1.0) {
            None => Ok(()),
            Some(i) => Err(Error::invalid(
                "Bernoulli state",
                format!("value {} at index {i}; expected 0 or 1", x[i]),
            )),
        }
    }

    fn set_bias_from_mean(&mut self, mean: &[f32]) {
        // log-odds, with the mean kept away from 0 and 1 so that the bias stays finite.
        for (b, m) in self.bias.iter_mut().zip(mean) {
            let p = m.clamp(1e-3, 1.0 - 1e-3);
            *b = (p / (1.0 - p)).ln();
        }
    }

    fn num_states(&self) -> Option<u64> {
        (self.len() < 64).then(|| 1u64 << self.len())
    }

    fn write_state(&self, index: u64, out: &mut [f32]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = ((index >> i) & 1) as f32;
        }
    }
}
