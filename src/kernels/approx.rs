//! Element-wise non-linearities: vectorisable f32 approximations of exp, sigmoid and the
//! softplus step used by AIS, and the f64 softplus and log-sum-exp of the estimators.
//!
//! The f32 bodies are plain branch-free Rust that LLVM vectorises; each public function is
//! compiled twice, for baseline x86-64 (SSE2) and for AVX2+FMA, and picks one at run time, so the
//! binary runs on any x86-64 without `-C target-cpu=native`.
//!
//! Accuracy (checked by the unit tests below against f64 over wide grids): `exp` relative error
//! < 3e-7; `sigmoid` absolute error < 2e-7; `log1p` relative error < 4e-7; the softplus step
//! `softplus(x + d) − softplus(x)` relative error < 5e-7 + 1e-7·|x| of its own size (the f32
//! rounding of `x = β·a` is amplified by the slope of ln σ(x) for very negative x).

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in two so that n·LN2_HI is exact for |n| < 2⁹ (Cody–Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
// 1.5·2²³: adding it rounds to an integer held in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// e^x for x in [−87, 88] (clamped there), relative error < 3e-7.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    // e^r on |r| ≤ ln2/2 by its Taylor polynomial of degree 7 (error < 2e-9 relative).
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let bits = (t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23;
    p * f32::from_bits(bits as u32)
}

/// e^d − 1 without cancellation for small |d|.
#[inline(always)]
fn expm1(d: f32) -> f32 {
    // Taylor series to d⁸ on |d| < 0.5 (error < 3e-9 absolute, relative to d < 6e-9); plain
    // exp − 1 beyond, where there is no cancellation to fear.
    let series = d
        * (1.0
            + d * (0.5
                + d * (1.0 / 6.0
                    + d * (1.0 / 24.0
                        + d * (1.0 / 120.0
                            + d * (1.0 / 720.0 + d * (1.0 / 5040.0 + d * (1.0 / 40320.0))))))));
    if d.abs() < 0.5 { series } else { exp(d) - 1.0 }
}

/// ln(1 + y) for y > −1, accurate relative to y for small |y|.
#[inline(always)]
fn log1p(y: f32) -> f32 {
    let u = 1.0 + y;
    // u = m·2^e with m in [√½, √2); ln m = 2·atanh(s), s = (m − 1)/(m + 1), |s| ≤ 0.1716.
    let bits = u.to_bits() as i32;
    let e = ((bits - 0x3f35_04f3) >> 23) as f32; // 0x3f3504f3 = √½
    let m = f32::from_bits((bits - (((bits - 0x3f35_04f3) >> 23) << 23)) as u32);
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let ln_m = 2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 / 9.0))));
    let ln_u = e * std::f32::consts::LN_2 + ln_m;
    // Goldberg's correction for the rounding of 1 + y.
    let d = u - 1.0;
    if d == 0.0 { y } else { ln_u * (y / d) }
}

/// σ(x) = 1 / (1 + e^(−x)).
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `softplus(x + d) − softplus(x) = ln(1 + σ(x)·(e^d − 1))`.
#[inline(always)]
fn softplus_step(x: f32, d: f32) -> f32 {
    log1p(sigmoid(x) * expm1(d))
}

dispatch! {
    /// `x[i] ← σ(x[i] + bias[i])` for every column of `x` (`bias.len()` rows).
    pub fn sigmoid_columns(x: &mut [f32], bias: &[f32]) {
        for col in x.chunks_exact_mut(bias.len().max(1)) {
            for (xi, bi) in col.iter_mut().zip(bias) {
                *xi = sigmoid(*xi + bi);
            }
        }
    }
}

/// Terms computed in f32 (vectorised) before they are summed in f64, in order: a stack buffer,
/// so that AIS steps allocate nothing.
const TERMS: usize = 256;

dispatch! {
    /// `Σ_i softplus(s_i(β₁)) − softplus(s_i(β₀))` with `s_i(β) = β·a_i + (1 − β)·a⁰_i + β·b_i`
    /// (inputs `a` scaled by β, biases moving from `start` to `bias`), for every column of `a`
    /// (`bias.len()` rows), added into `out` (one per column), summed in f64 per column.
    pub fn softplus_steps(a: &[f32], bias: &[f32], start: &[f32], beta0: f32, beta1: f32, out: &mut [f64]) {
        let mut terms = [0f32; TERMS];
        for (col, o) in a.chunks_exact(bias.len().max(1)).zip(out.iter_mut()) {
            let mut sum = 0f64;
            for ((col, bias), start) in col.chunks(TERMS).zip(bias.chunks(TERMS)).zip(start.chunks(TERMS)) {
                for (((t, ai), bi), si) in terms.iter_mut().zip(col).zip(bias).zip(start) {
                    // s(β) = si + β·slope: one small step d = (β₁ − β₀)·slope from x = s(β₀).
                    let slope = ai + bi - si;
                    *t = softplus_step(si + beta0 * slope, (beta1 - beta0) * slope);
                }
                sum = terms[..col.len()].iter().fold(sum, |s, &t| s + f64::from(t));
            }
            *o += sum;
        }
    }
}

dispatch! {
    /// `out[c] += Σ_i softplus(a_i + bias_i)` for every column `c` of `a` (`bias.len()` rows),
    /// summed in f64; softplus relative error < 4e-7 (+ 1e-7·|x| absolute from rounding
    /// `x = a + b`).
    pub fn softplus_columns(a: &[f32], bias: &[f32], out: &mut [f64]) {
        let mut terms = [0f32; TERMS];
        for (col, o) in a.chunks_exact(bias.len().max(1)).zip(out.iter_mut()) {
            let mut sum = 0f64;
            for (col, bias) in col.chunks(TERMS).zip(bias.chunks(TERMS)) {
                for ((t, ai), bi) in terms.iter_mut().zip(col).zip(bias) {
                    let x = ai + bi;
                    *t = x.max(0.0) + log1p(exp(-x.abs()));
                }
                sum = terms[..col.len()].iter().fold(sum, |s, &t| s + f64::from(t));
            }
            *o += sum;
        }
    }
}

/// softplus(x) = ln(1 + e^x), computed without overflow.
#[inline]
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// ln Σ exp(xᵢ) of f64 values, stable for any range; −∞ for an empty slice.
pub fn log_sum_exp(xs: &[f64]) -> f64 {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY || max.is_nan() {
        return max;
    }
    max + xs.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(lo: f32, hi: f32, n: usize) -> impl Iterator<Item = f32> {
        (0..=n).map(move |k| lo + (hi - lo) * k as f32 / n as f32)
    }

    #[test]
    fn exp_is_accurate() {
        for x in grid(-80.0, 80.0, 200_000) {
            let exact = f64::from(x).exp();
            let rel = ((f64::from(exp(x)) - exact) / exact).abs();
            assert!(rel < 3e-7, "exp({x}): relative error {rel}");
        }
    }

    #[test]
    fn sigmoid_is_accurate() {
        let x: Vec<f32> = grid(-40.0, 40.0, 100_000).collect();
        let mut y = x.clone();
        sigmoid_columns(&mut y, &vec![0.0; x.len()]);
        for (x, y) in x.iter().zip(&y) {
            let exact = 1.0 / (1.0 + (-f64::from(*x)).exp());
            assert!((f64::from(*y) - exact).abs() < 2e-7, "σ({x})");
        }
    }

    #[test]
    fn softplus_steps_are_accurate() {
        let sp = |x: f64| {
            if x > 0.0 {
                x + (-x).exp().ln_1p()
            } else {
                x.exp().ln_1p()
            }
        };
        for total in grid(-60.0, 60.0, 2_000) {
            for (b0, b1) in [
                (0.0, 1e-3),
                (0.5, 0.5001),
                (0.9, 0.90001),
                (0.99999, 1.0),
                (0.0, 1.0),
                (0.3, 0.9),
            ] {
                let mut out = [0f64];
                softplus_steps(&[total], &[0.0], &[0.0], b0 as f32, b1 as f32, &mut out);
                let t = f64::from(total);
                let exact = sp(f64::from(b1 as f32) * t) - sp(f64::from(b0 as f32) * t);
                let err = (out[0] - exact).abs();
                let x = f64::from(b0 as f32) * t;
                assert!(
                    err <= (5e-7 + 1e-7 * x.abs()) * exact.abs() + 1e-30,
                    "step {b0}→{b1} at {total}: {} vs {exact}",
                    out[0]
                );
            }
        }
    }

    #[test]
    fn softplus_columns_are_accurate() {
        let x: Vec<f32> = grid(-60.0, 60.0, 50_000).collect();
        let mut out = vec![0f64; x.len()];
        softplus_columns(&x, &[0.0], &mut out);
        for (x, sp) in x.iter().zip(&out) {
            let exact = softplus(f64::from(*x));
            assert!(
                (sp - exact).abs() <= 4e-7 * exact + 1e-30,
                "softplus({x}): {sp} vs {exact}"
            );
        }
    }

    #[test]
    fn log1p_is_accurate() {
        for y in grid(-0.999, 10.0, 100_000).chain(grid(-1e-4, 1e-4, 10_000)) {
            let exact = f64::from(y).ln_1p();
            let err = (f64::from(log1p(y)) - exact).abs();
            assert!(err <= 4e-7 * exact.abs() + 1e-12, "log1p({y}): error {err}");
        }
    }
}
