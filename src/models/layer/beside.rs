use super::{FromBias, Layer};
use crate::error::{Error, Result};
use crate::kernels::ChainRng;
use nalgebra::DVector;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// Two layers side by side as one: in every column the units of `A` come first, then those of
/// `B` (the input pixels and the one-hot label units of a classification RBM). Their own
/// energies add, and given their inputs the two parts are independent, so every conditional,
/// cumulant and entropy is the sum or concatenation of the parts'.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Parts", into = "Parts", bound = "")]
pub struct Beside<A: FromBias, B: FromBias> {
    bias: DVector<f32>,
    /// The number of units of `A`.
    split: usize,
    kinds: PhantomData<fn() -> (A, B)>,
}

/// The stored form of a [`Beside`], checked on loading.
#[derive(Clone, Serialize, Deserialize)]
struct Parts {
    bias: DVector<f32>,
    split: u64,
}

impl<A: FromBias, B: FromBias> TryFrom<Parts> for Beside<A, B> {
    type Error = Error;

    fn try_from(p: Parts) -> Result<Self> {
        match usize::try_from(p.split) {
            Ok(split) if split <= p.bias.len() => Ok(Beside {
                bias: p.bias,
                split,
                kinds: PhantomData,
            }),
            _ => Err(Error::invalid(
                "layers side by side",
                format!("{} units in the first of {} in all", p.split, p.bias.len()),
            )),
        }
    }
}

impl<A: FromBias, B: FromBias> From<Beside<A, B>> for Parts {
    fn from(b: Beside<A, B>) -> Self {
        Parts {
            bias: b.bias,
            split: b.split as u64,
        }
    }
}

impl<A: FromBias, B: FromBias> Beside<A, B> {
    /// `first`'s units followed by `second`'s.
    pub fn new(first: &A, second: &B) -> Self {
        let bias = first.bias().iter().chain(second.bias().iter()).copied();
        Beside {
            bias: DVector::from_iterator(first.len() + second.len(), bias),
            split: first.len(),
            kinds: PhantomData,
        }
    }

    /// The first layer (with its biases).
    pub fn first(&self) -> A {
        A::new(self.bias.rows(0, self.split).into_owned())
    }

    /// The second layer (with its biases).
    pub fn second(&self) -> B {
        B::new(
            self.bias
                .rows(self.split, self.len() - self.split)
                .into_owned(),
        )
    }

    /// The number of units of the first layer; those of the second follow them.
    pub fn split(&self) -> usize {
        self.split
    }

    /// `f` on the first and the second part of every column of `x`, each a contiguous
    /// `units × n` buffer as layers expect; the parts are written back into `x`.
    fn on_parts(&self, x: &mut [f32], f: impl FnOnce(&mut [f32], &mut [f32])) {
        let (mut a, mut b) = self.parts(x);
        f(&mut a, &mut b);
        let (na, nb) = (self.split, self.len() - self.split);
        for (c, col) in x.chunks_exact_mut(self.len().max(1)).enumerate() {
            col[..na].copy_from_slice(&a[c * na..(c + 1) * na]);
            col[na..].copy_from_slice(&b[c * nb..(c + 1) * nb]);
        }
    }

    /// The first and the second part of every column of `x`, each as a contiguous buffer.
    fn parts(&self, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let columns = x.chunks_exact(self.len().max(1));
        let n = columns.len();
        let (mut a, mut b) = (
            Vec::with_capacity(n * self.split),
            Vec::with_capacity(n * (self.len() - self.split)),
        );
        for col in columns {
            a.extend_from_slice(&col[..self.split]);
            b.extend_from_slice(&col[self.split..]);
        }
        (a, b)
    }
}

impl<A: FromBias, B: FromBias> Layer for Beside<A, B> {
    fn kind() -> String {
        format!("{}+{}", A::kind(), B::kind())
    }

    fn with_bias(&self, bias: DVector<f32>) -> Self {
        Beside {
            bias,
            split: self.split,
            kinds: PhantomData,
        }
    }

    fn bias(&self) -> &DVector<f32> {
        &self.bias
    }

    fn parts(&self) -> Vec<usize> {
        vec![self.split, self.len() - self.split]
    }

    fn from_parts(bias: DVector<f32>, parts: &[usize]) -> Result<Self> {
        match parts {
            &[a, b] if a.checked_add(b) == Some(bias.len()) => Beside::try_from(Parts {
                bias,
                split: a as u64,
            }),
            _ => Err(Error::shape(
                "parts of layers side by side",
                format!("two that add up to {}", bias.len()),
                format!("{parts:?}"),
            )),
        }
    }

    fn bias_mut(&mut self) -> &mut DVector<f32> {
        &mut self.bias
    }

    fn mean(&self, inputs: &mut [f32]) {
        let (first, second) = (self.first(), self.second());
        self.on_parts(inputs, |a, b| {
            first.mean(a);
            second.mean(b);
        });
    }

    fn sample(&self, inputs: &mut [f32], rng: &mut ChainRng) {
        let (first, second) = (self.first(), self.second());
        self.on_parts(inputs, |a, b| {
            first.sample(a, rng);
            second.sample(b, rng);
        });
    }

    fn cumulant(&self, inputs: &[f32], out: &mut [f64]) {
        let (a, b) = self.parts(inputs);
        self.first().cumulant(&a, out);
        self.second().cumulant(&b, out);
    }

    fn tempered_cumulant_step(
        &self,
        inputs: &[f32],
        start: &[f32],
        beta0: f64,
        beta1: f64,
        out: &mut [f64],
    ) {
        let (a, b) = self.parts(inputs);
        let (sa, sb) = start.split_at(self.split);
        let first = self.first();
        first.tempered_cumulant_step(&a, sa, beta0, beta1, out);
        let second = self.second();
        second.tempered_cumulant_step(&b, sb, beta0, beta1, out);
    }

    fn mean_field_entropy(&self, mu: &[f32], out: &mut [f64]) {
        let (a, b) = self.parts(mu);
        self.first().mean_field_entropy(&a, out);
        self.second().mean_field_entropy(&b, out);
    }

    fn energy(&self, x: &[f32], out: &mut [f64]) {
        let (a, b) = self.parts(x);
        self.first().energy(&a, out);
        self.second().energy(&b, out);
    }

    fn check_state(&self, x: &[f32]) -> Result<()> {
        let (a, b) = self.parts(x);
        self.first().check_state(&a)?;
        self.second().check_state(&b)
    }

    fn set_bias_from_mean(&mut self, mean: &[f32]) {
        let (ma, mb) = mean.split_at(self.split);
        let (mut first, mut second) = (self.first(), self.second());
        first.set_bias_from_mean(ma);
        second.set_bias_from_mean(mb);
        *self = Beside::new(&first, &second);
    }

    fn num_states(&self) -> Option<u64> {
        self.first()
            .num_states()?
            .checked_mul(self.second().num_states()?)
    }

    fn write_state(&self, index: u64, out: &mut [f32]) {
        let (first, second) = (self.first(), self.second());
        let count = first.num_states().unwrap_or(1).max(1);
        let (oa, ob) = out.split_at_mut(self.split);
        first.write_state(index % count, oa);
        second.write_state(index / count, ob);
    }
}
