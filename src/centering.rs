//! Centred RBMs (Montavon & Müller 2012; Melchior, Fischer & Wiskott 2016): the energy is
//! written around offsets `μ` (visible) and `λ` (hidden),
//!
//! `E(v, h) = E₀(v) + E₀(h) − (v − μ)ᵀW(h − λ) − bᵀ(v − μ) − cᵀ(h − λ)`,
//!
//! which is the plain RBM with weights `W`, visible biases `b − Wλ` and hidden biases `c − Wᵀμ`
//! (plus a constant). Gradient steps in the centred parameters are better conditioned when the
//! offsets track the units' means: the weight gradient becomes
//! `∇W − μ ∇cᵀ − ∇b λᵀ`, while the bias gradients are unchanged.

use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::rbm::Rbm;
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

/// The offsets `μ` (visible) and `λ` (hidden) of a centred RBM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offsets {
    pub visible: DVector<f32>,
    pub hidden: DVector<f32>,
}

impl Offsets {
    /// Zero offsets: centring then changes nothing.
    pub fn zero(visible_units: usize, hidden_units: usize) -> Self {
        Offsets {
            visible: DVector::zeros(visible_units),
            hidden: DVector::zeros(hidden_units),
        }
    }

    /// Turns a gradient (or step) of the weights in plain coordinates, `grad_w`, into that of the
    /// centred weights, `grad_w − μ grad_cᵀ − grad_b λᵀ`, given the bias gradients.
    pub fn centre_weight_gradient(
        &self,
        grad_w: &mut DMatrix<f32>,
        grad_b: &DVector<f32>,
        grad_c: &DVector<f32>,
    ) {
        grad_w.ger(-1.0, &self.visible, grad_c, 1.0);
        grad_w.ger(-1.0, grad_b, &self.hidden, 1.0);
    }

    /// Applies a step of the centred parameters (`step_w` on the weights, `step_b`, `step_c` on
    /// the centred biases) to the plain RBM that represents them: `W += ΔW`,
    /// `b_plain += Δb − ΔW λ`, `c_plain += Δc − ΔWᵀ μ`.
    pub fn apply_step<V: Layer, H: Layer>(
        &self,
        rbm: &mut Rbm<V, H>,
        step_w: &DMatrix<f32>,
        step_b: &DVector<f32>,
        step_c: &DVector<f32>,
    ) {
        rbm.weights += step_w;
        let bv = step_b - step_w * &self.hidden;
        let bh = step_c - step_w.tr_mul(&self.visible);
        *rbm.visible.bias_mut() += bv;
        *rbm.hidden.bias_mut() += bh;
    }

    /// Moves the offsets towards the means `visible` and `hidden` by a fraction `rate`.
    pub fn track(&mut self, visible: &DVector<f32>, hidden: &DVector<f32>, rate: f32) {
        self.visible = &self.visible * (1.0 - rate) + visible * rate;
        self.hidden = &self.hidden * (1.0 - rate) + hidden * rate;
    }
}

/// An RBM in centred coordinates: weights `W`, centred biases `b`, `c` (held in `rbm`'s layers)
/// and offsets.
#[derive(Clone, Debug, PartialEq)]
pub struct CenteredRbm<V: Layer, H: Layer> {
    pub centred: Rbm<V, H>,
    pub offsets: Offsets,
}

impl<V: Layer, H: Layer> CenteredRbm<V, H> {
    /// The centred form of a plain RBM at the given offsets: `b = b_plain + Wλ`,
    /// `c = c_plain + Wᵀμ`.
    pub fn from_rbm(rbm: &Rbm<V, H>, offsets: Offsets) -> Result<Self> {
        check_offsets(rbm, &offsets)?;
        let mut centred = rbm.clone();
        *centred.visible.bias_mut() += &rbm.weights * &offsets.hidden;
        *centred.hidden.bias_mut() += rbm.weights.tr_mul(&offsets.visible);
        Ok(CenteredRbm { centred, offsets })
    }

    /// The plain RBM with the same distribution: `b_plain = b − Wλ`, `c_plain = c − Wᵀμ`.
    pub fn to_rbm(&self) -> Rbm<V, H> {
        let mut rbm = self.centred.clone();
        *rbm.visible.bias_mut() -= &self.centred.weights * &self.offsets.hidden;
        *rbm.hidden.bias_mut() -= self.centred.weights.tr_mul(&self.offsets.visible);
        rbm
    }

    /// The centred free energy `F(v) = −ln Σ_h exp(−E(v, h))` of every column of `v`,
    /// computed in centred coordinates: `E₀(v) − bᵀ(v − μ) + λᵀa − cumulant_H(a)` with hidden
    /// inputs `a = Wᵀ(v − μ) + c`. It differs from the plain RBM's free energy by the constant
    /// `bᵀμ + cᵀλ − μᵀWλ`.
    pub fn free_energy(&self, v: &DMatrix<f32>) -> Result<DVector<f64>> {
        let rbm = &self.centred;
        rbm.check_batch("visible states", v, rbm.num_visible())?;
        let (mu, lambda) = (&self.offsets.visible, &self.offsets.hidden);
        let mut centred_v = v.clone();
        for mut col in centred_v.column_iter_mut() {
            col -= mu;
        }
        let mut inputs = rbm.weights.tr_mul(&centred_v);
        for mut col in inputs.column_iter_mut() {
            col += rbm.hidden.bias();
        }
        let n = v.ncols();
        // E₀(v) without the bias term: the layer's own energy with zero biases.
        let mut f = vec![0f64; n];
        V::new(DVector::zeros(rbm.num_visible())).energy(v.as_slice(), &mut f);
        let mut cumulant = vec![0f64; n];
        H::new(DVector::zeros(rbm.num_hidden())).cumulant(inputs.as_slice(), &mut cumulant);
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum()
        };
        for (c, f) in f.iter_mut().enumerate() {
            *f += -dot(
                centred_v.column(c).as_slice(),
                rbm.visible.bias().as_slice(),
            ) + dot(lambda.as_slice(), inputs.column(c).as_slice())
                - cumulant[c];
        }
        Ok(DVector::from_vec(f))
    }

    /// Moves the offsets to `offsets`, changing the centred biases so that the distribution
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
