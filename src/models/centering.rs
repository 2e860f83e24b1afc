//! Centered RBMs (Montavon & Müller 2012; Melchior, Fischer & Wiskott 2016): the energy is
//! written around offsets `μ` (visible) and `λ` (hidden),
//!
//! `E(v, h) = E₀(v) + E₀(h) − (v − μ)ᵀW(h − λ) − bᵀ(v − μ) − cᵀ(h − λ)`,
//!
//! which is the plain RBM with weights `W`, visible biases `b − Wλ` and hidden biases `c − Wᵀμ`
//! (plus a constant). Gradient steps in the centered parameters are better conditioned when the
//! offsets track the units' means: the weight gradient becomes
//! `∇W − μ ∇cᵀ − ∇b λᵀ`, while the bias gradients are unchanged.
//!
//! The same holds layer by layer for a DBM (Montavon & Müller 2012), whose couplings `W_l`
//! join layers `l − 1` and `l`: the step of `W_l` is `∇W_l − μ_{l−1}∇b_lᵀ − ∇b_{l−1}μ_lᵀ`, and
//! the plain bias of layer `k` moves by `Δb_k − ΔW_{k+1}μ_{k+1} − ΔW_kᵀμ_{k−1}`.
//! [`center_gradients`] and [`plain_bias_steps`] do this for any number of layers.

use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::rbm::Rbm;
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

/// The offsets `μ` (visible) and `λ` (hidden) of a centered RBM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offsets {
    pub visible: DVector<f32>,
    pub hidden: DVector<f32>,
}

impl Offsets {
    /// Zero offsets: centering then changes nothing.
    pub fn zero(visible_units: usize, hidden_units: usize) -> Self {
        Offsets {
            visible: DVector::zeros(visible_units),
            hidden: DVector::zeros(hidden_units),
        }
    }

    /// Turns a gradient (or step) of the weights in plain coordinates, `grad_w`, into that of the
    /// centered weights, `grad_w − μ grad_cᵀ − grad_b λᵀ`, given the bias gradients.
    pub fn center_weight_gradient(
        &self,
        grad_w: &mut DMatrix<f32>,
        grad_b: &DVector<f32>,
        grad_c: &DVector<f32>,
    ) {
        center_gradients(
            &mut [grad_w],
            &[grad_b.clone(), grad_c.clone()],
            &[&self.visible, &self.hidden],
        );
    }
}

/// `offset ← (1 − rate)·offset + rate·mean`.
pub fn track(offset: &mut DVector<f32>, mean: &DVector<f32>, rate: f32) {
    *offset = &*offset * (1.0 - rate) + mean * rate;
}

/// For a chain of layers `0 … L` with couplings `W_1 … W_L` (`W_l` joins layers `l − 1` and
/// `l`): turns plain weight gradients into centered ones, `∇W_l − μ_{l−1}∇b_lᵀ − ∇b_{l−1}μ_lᵀ`,
/// given the bias gradients `∇b_0 … ∇b_L` and the offsets `μ_0 … μ_L`. `grad_w[l − 1]` holds
/// `∇W_l`.
pub fn center_gradients(
    grad_w: &mut [&mut DMatrix<f32>],
    grad_b: &[DVector<f32>],
    offsets: &[&DVector<f32>],
) {
    for (l, g) in grad_w.iter_mut().enumerate() {
        g.ger(-1.0, offsets[l], &grad_b[l + 1], 1.0);
        g.ger(-1.0, &grad_b[l], offsets[l + 1], 1.0);
    }
}

/// The steps of the plain biases of every layer for a step of the centered parameters
/// (`step_w[l − 1]` on `W_l`, `step_b` on the centered biases): `Δb_k − ΔW_{k+1}μ_{k+1} −
/// ΔW_kᵀμ_{k−1}`.
pub fn plain_bias_steps(
    step_w: &[&DMatrix<f32>],
    step_b: &[DVector<f32>],
    offsets: &[&DVector<f32>],
) -> Vec<DVector<f32>> {
    let layers = step_b.len();
    (0..layers)
        .map(|k| {
            let mut b = step_b[k].clone();
            if k + 1 < layers {
                b -= step_w[k] * offsets[k + 1];
            }
            if k > 0 {
                b -= step_w[k - 1].tr_mul(offsets[k - 1]);
            }
            b
        })
        .collect()
}

/// An RBM in centered coordinates: weights `W`, centered biases `b`, `c` (held in `rbm`'s layers)
/// and offsets.
#[derive(Clone, Debug, PartialEq)]
pub struct CenteredRbm<V: Layer, H: Layer> {
    pub centered: Rbm<V, H>,
    pub offsets: Offsets,
}

impl<V: Layer, H: Layer> CenteredRbm<V, H> {
    /// The centered form of a plain RBM at the given offsets: `b = b_plain + Wλ`,
    /// `c = c_plain + Wᵀμ`.
    pub fn from_rbm(rbm: &Rbm<V, H>, offsets: Offsets) -> Result<Self> {
        check_offsets(rbm, &offsets)?;
        let mut centered = rbm.clone();
        *centered.visible.bias_mut() += rbm.weights() * &offsets.hidden;
        *centered.hidden_mut().bias_mut() += rbm.weights().tr_mul(&offsets.visible);
        Ok(CenteredRbm { centered, offsets })
    }

    /// The plain RBM with the same distribution: `b_plain = b − Wλ`, `c_plain = c − Wᵀμ`.
    pub fn to_rbm(&self) -> Rbm<V, H> {
        let mut rbm = self.centered.clone();
        *rbm.visible.bias_mut() -= self.centered.weights() * &self.offsets.hidden;
        *rbm.hidden_mut().bias_mut() -= self.centered.weights().tr_mul(&self.offsets.visible);
        rbm
    }

    /// The centered free energy `F(v) = −ln Σ_h exp(−E(v, h))` of every column of `v`,
    /// computed in centered coordinates: `E₀(v) − bᵀ(v − μ) + λᵀa − cumulant_H(a)` with hidden
    /// inputs `a = Wᵀ(v − μ) + c`. It differs from the plain RBM's free energy by the constant
    /// `bᵀμ + cᵀλ − μᵀWλ`.
    pub fn free_energy(&self, v: &DMatrix<f32>) -> Result<DVector<f64>> {
        let rbm = &self.centered;
        rbm.check_batch("visible states", v, rbm.num_visible())?;
        let (mu, lambda) = (&self.offsets.visible, &self.offsets.hidden);
        let mut centered_v = v.clone();
        for mut col in centered_v.column_iter_mut() {
            col -= mu;
        }
        let mut inputs = rbm.weights().tr_mul(&centered_v);
        for mut col in inputs.column_iter_mut() {
            col += rbm.hidden().bias();
        }
        let n = v.ncols();
        // E₀(v) without the bias term: the layer's own energy with zero biases.
        let mut f = vec![0f64; n];
        rbm.visible()
            .with_bias(DVector::zeros(rbm.num_visible()))
            .energy(v.as_slice(), &mut f);
        let mut cumulant = vec![0f64; n];
        rbm.hidden()
            .with_bias(DVector::zeros(rbm.num_hidden()))
            .cumulant(inputs.as_slice(), &mut cumulant);
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum()
        };
        for (c, f) in f.iter_mut().enumerate() {
            *f += -dot(
                centered_v.column(c).as_slice(),
                rbm.visible.bias().as_slice(),
            ) + dot(lambda.as_slice(), inputs.column(c).as_slice())
                - cumulant[c];
        }
        Ok(DVector::from_vec(f))
    }

    /// Moves the offsets to `offsets`, changing the centered biases so that the distribution
    /// stays the same.
    pub fn set_offsets(&mut self, offsets: Offsets) -> Result<()> {
        let plain = self.to_rbm();
        *self = Self::from_rbm(&plain, offsets)?;
        Ok(())
    }
}

fn check_offsets<V: Layer, H: Layer>(rbm: &Rbm<V, H>, offsets: &Offsets) -> Result<()> {
    if offsets.visible.len() != rbm.num_visible() || offsets.hidden.len() != rbm.num_hidden() {
        return Err(Error::shape(
            "offsets",
            format!(
                "{} visible and {} hidden",
                rbm.num_visible(),
                rbm.num_hidden()
            ),
            format!("{} and {}", offsets.visible.len(), offsets.hidden.len()),
        ));
    }
    crate::error::check_finite("visible offsets", offsets.visible.as_slice())?;
    crate::error::check_finite("hidden offsets", offsets.hidden.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{fill_normal, stream};

    fn random(rows: usize, cols: usize, seed: u64) -> DMatrix<f32> {
        let mut m = DMatrix::zeros(rows, cols);
        fill_normal(&mut stream(seed, 0), m.as_mut_slice());
        m
    }

    /// Plain biases of a chain of layers from centered parameters:
    /// `b_k − W_{k+1}μ_{k+1} − W_kᵀμ_{k−1}`.
    fn plain_biases(
        w: &[DMatrix<f32>],
        b: &[DVector<f32>],
        mu: &[&DVector<f32>],
    ) -> Vec<DVector<f32>> {
        let w: Vec<&DMatrix<f32>> = w.iter().collect();
        plain_bias_steps(&w, b, mu)
    }

    #[test]
    fn centered_gradients_are_the_adjoint_of_the_conversion() {
        // Layers of 4, 3 and 2 units. The map from centered to plain parameters is linear in
        // (W, b) for fixed offsets, so the centered gradient g_c must satisfy
        // ⟨g_c, Δ⟩ = ⟨g_plain, A Δ⟩ for every direction Δ, where A Δ is (ΔW, plain bias steps).
        let sizes = [4, 3, 2];
        let mu: Vec<DVector<f32>> = (0..3)
            .map(|l| random(sizes[l], 1, 10 + l as u64).column(0).into())
            .collect();
        let mu_ref: Vec<&DVector<f32>> = mu.iter().collect();
        let gw: Vec<DMatrix<f32>> = (0..2)
            .map(|l| random(sizes[l], sizes[l + 1], 20 + l as u64))
            .collect();
        let gb: Vec<DVector<f32>> = (0..3)
            .map(|l| random(sizes[l], 1, 30 + l as u64).column(0).into())
            .collect();
        let dw: Vec<DMatrix<f32>> = (0..2)
            .map(|l| random(sizes[l], sizes[l + 1], 40 + l as u64))
            .collect();
        let db: Vec<DVector<f32>> = (0..3)
            .map(|l| random(sizes[l], 1, 50 + l as u64).column(0).into())
            .collect();

        let mut centered = gw.clone();
        center_gradients(&mut centered.iter_mut().collect::<Vec<_>>(), &gb, &mu_ref);
        let inner = |w: &[DMatrix<f32>],
                     b: &[DVector<f32>],
                     v: &[DMatrix<f32>],
                     c: &[DVector<f32>]|
         -> f64 {
            let dw: f64 = w.iter().zip(v).map(|(a, b)| f64::from(a.dot(b))).sum();
            let db: f64 = b.iter().zip(c).map(|(a, b)| f64::from(a.dot(b))).sum();
            dw + db
        };
        let lhs = inner(&centered, &gb, &dw, &db);
        let rhs = inner(&gw, &gb, &dw, &plain_biases(&dw, &db, &mu_ref));
        assert!(
            (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );

        // The plain bias steps are the exact change of the plain biases.
        let base_w: Vec<DMatrix<f32>> = (0..2)
            .map(|l| random(sizes[l], sizes[l + 1], 60 + l as u64))
            .collect();
        let base_b: Vec<DVector<f32>> = (0..3)
            .map(|l| random(sizes[l], 1, 70 + l as u64).column(0).into())
            .collect();
        let moved_w: Vec<DMatrix<f32>> = base_w.iter().zip(&dw).map(|(a, b)| a + b).collect();
        let moved_b: Vec<DVector<f32>> = base_b.iter().zip(&db).map(|(a, b)| a + b).collect();
        let before = plain_biases(&base_w, &base_b, &mu_ref);
        let after = plain_biases(&moved_w, &moved_b, &mu_ref);
        for ((a, b), s) in after
            .iter()
            .zip(&before)
            .zip(plain_biases(&dw, &db, &mu_ref))
        {
            assert!((a - b - s).abs().max() < 1e-5);
        }

        // Zero offsets leave gradients alone.
        let zeros: Vec<DVector<f32>> = sizes.iter().map(|&n| DVector::zeros(n)).collect();
        let mut same = gw.clone();
        center_gradients(
            &mut same.iter_mut().collect::<Vec<_>>(),
            &gb,
            &zeros.iter().collect::<Vec<_>>(),
        );
        assert_eq!(same, gw);
    }
}
