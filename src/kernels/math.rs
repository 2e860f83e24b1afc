//! Vectorisable f32 approximations of exp, sigmoid, and the softplus step used by AIS.
//!
//! The bodies are plain branch-free Rust that LLVM vectorises; each public function is compiled
//! twice, for baseline x86-64 (SSE2) and for AVX2+FMA, and picks one at run time, so the binary
//! runs on any x86-64 without `-C target-cpu=native`.
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

/// Compiles `$body` for baseline x86-64 and for AVX2+FMA, choosing at run time.
macro_rules! dispatch {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
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

dispatch! {
    /// `Σ_i softplus(s_i(β₁)) − softplus(s_i(β₀))` with `s_i(β) = β·a_i + (1 − β)·a⁰_i + β·b_i`
    /// (inputs `a` scaled by β, biases moving from `start` to `bias`), for every column of `a`
    /// (`bias.len()` rows), added into `out` (one per column), summed in f64 per column.
    pub fn softplus_steps(a: &[f32], bias: &[f32], start: &[f32], beta0: f32, beta1: f32, out: &mut [f64]) {
        let mut terms = vec![0f32; bias.len()];
        for (col, o) in a.chunks_exact(bias.len().max(1)).zip(out.iter_mut()) {
            for (((t, ai), bi), si) in terms.iter_mut().zip(col).zip(bias).zip(start) {
                // s(β) = si + β·slope: one small step d = (β₁ − β₀)·slope from x = s(β₀).
                let slope = ai + bi - si;
                *t = softplus_step(si + beta0 * slope, (beta1 - beta0) * slope);
            }
            *o += terms.iter().map(|&t| f64::from(t)).sum::<f64>();
        }
    }
}

dispatch! {
    /// For every column `c` of `a` (`bias.len()` rows): `out[c] += Σ_i softplus(a_i + bias_i)`
    /// (summed in f64), and, if `sigmoids` is not empty, `sigmoids[i, c] = σ(a_i + bias_i)` —
    /// both from one exponential. Softplus error < 4e-7 relative (+ 1e-7·|x| absolute from
    /// rounding `x = a + b`).
    pub fn softplus_sigmoid_columns(a: &[f32], bias: &[f32], out: &mut [f64], sigmoids: &mut [f32]) {
        let rows = bias.len().max(1);
        let mut terms = vec![0f32; rows];
        for (c, (col, o)) in a.chunks_exact(rows).zip(out.iter_mut()).enumerate() {
            let keep = sigmoids.len() >= (c + 1) * rows;
            for ((t, ai), bi) in terms.iter_mut().zip(col).zip(bias) {
                let x = ai + bi;
                let e = exp(-x.abs());
                *t = x.max(0.0) + log1p(e);
            }
            if keep {
                let sig = &mut sigmoids[c * rows..(c + 1) * rows];
                for ((s, ai), bi) in sig.iter_mut().zip(col).zip(bias) {
                    *s = sigmoid(ai + bi);
                }
            }
            *o += terms.iter().map(|&t| f64::from(t)).sum::<f64>();
        }
    }
}

dispatch! {
    /// `out[:, c] (+)= Σ_k x[k, c] · vectors[:, k]` over the non-zero `x[k, c]` only, for
    /// `vectors` (`len × m`, column-major) and `x` (`m × n`): a product with mostly-zero states
    /// as a sum of selected columns — for 0/1 states, a sum without multiplications. With
    /// `vectors = W` it is `W·X`; with `vectors = Wᵀ` (the rows of `W`) it is `Wᵀ·X`.
    pub fn sparse_combine(vectors: &[f32], len: usize, x: &[f32], out: &mut [f32], accumulate: bool) {
        let m = vectors.len() / len.max(1);
        for (xc, oc) in x.chunks_exact(m.max(1)).zip(out.chunks_exact_mut(len.max(1))) {
            if !accumulate {
                oc.iter_mut().for_each(|o| *o = 0.0);
            }
            for (k, &xk) in xc.iter().enumerate() {
                if xk != 0.0 {
                    let v = &vectors[k * len..(k + 1) * len];
                    for (o, w) in oc.iter_mut().zip(v) {
                        *o += xk * w;
                    }
                }
            }
        }
    }
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
    fn softplus_and_sigmoid_columns_are_accurate() {
        let x: Vec<f32> = grid(-60.0, 60.0, 50_000).collect();
        let mut sig = vec![0f32; x.len()];
        let mut out = vec![0f64; x.len()];
        softplus_sigmoid_columns(&x, &[0.0], &mut out, &mut sig);
        for ((x, sp), s) in x.iter().zip(&out).zip(&sig) {
            let t = f64::from(*x);
            let exact = if t > 0.0 {
                t + (-t).exp().ln_1p()
            } else {
                t.exp().ln_1p()
            };
            assert!(
                (sp - exact).abs() <= 4e-7 * exact + 1e-30,
                "softplus({x}): {sp} vs {exact}"
            );
            assert!(
                (f64::from(*s) - 1.0 / (1.0 + (-t).exp())).abs() < 2e-7,
                "σ({x})"
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

dispatch! {
    /// `out = Wᵀ·X` (or `out += Wᵀ·X`) for a column-major `W` (`rows × cols`) and `X` (`rows × n`): one dot product
    /// of a column of `W` with a column of `X` per output. For few columns of `X`, where a
    /// packing GEMM spends more time copying `W` than multiplying.
    pub fn small_tr_mul(w: &[f32], rows: usize, x: &[f32], out: &mut [f32], accumulate: bool) {
        // Each column of W is read once and used for every column of X while it is in cache.
        let cols = w.len() / rows.max(1);
        let keep = if accumulate { 1.0 } else { 0.0 };
        for (j, wj) in w.chunks_exact(rows.max(1)).enumerate() {
            for (c, xc) in x.chunks_exact(rows.max(1)).enumerate() {
                let o = &mut out[c * cols + j];
                *o = keep * *o + dot(wj, xc);
            }
        }
    }
}

dispatch! {
    /// `out = W·Y` (or `out += W·Y`) for a column-major `W` (`rows × cols`) and `Y` (`cols × n`), as sums of the
    /// columns of `W` weighted by `Y`, skipping zero weights (half the hidden units of a binary
    /// state). For few columns of `Y`.
    pub fn small_mul(w: &[f32], rows: usize, y: &[f32], out: &mut [f32], accumulate: bool) {
        // Each column of W is read once and added into every output column while in cache.
        let cols = w.len() / rows.max(1);
        if !accumulate {
            out.iter_mut().for_each(|o| *o = 0.0);
        }
        for (j, wj) in w.chunks_exact(rows.max(1)).enumerate() {
            for (yc, oc) in y.chunks_exact(cols.max(1)).zip(out.chunks_exact_mut(rows.max(1))) {
                let yj = yc[j];
                if yj != 0.0 {
                    oc.iter_mut().zip(wj).for_each(|(o, w)| *o += yj * w);
                }
            }
        }
    }
}

/// A dot product with 32 independent partial sums: LLVM turns them into four vector
/// accumulators, enough to hide the latency of the additions.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 32;
    let mut acc = [0f32; LANES];
    let (a8, b8) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (a8.remainder(), b8.remainder());
    for (x, y) in a8.zip(b8) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}
