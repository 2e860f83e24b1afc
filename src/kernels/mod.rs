//! The hot paths: products with the weight matrix, element-wise non-linearities and bulk random
//! numbers. Everything that touches every unit of every chain goes through here, so that speed work
//! has one place to happen.

mod math;

pub use math::{sigmoid_columns, softplus_sigmoid_columns, softplus_steps, sparse_combine};
use math::{small_mul, small_tr_mul};

use nalgebra::{DMatrixView, DMatrixViewMut, Dyn};

/// A column-major f32 matrix view with arbitrary strides.
pub type View<'a> = DMatrixView<'a, f32, Dyn, Dyn>;
/// A mutable column-major f32 matrix view with arbitrary strides.
pub type ViewMut<'a> = DMatrixViewMut<'a, f32, Dyn, Dyn>;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The random-number generator of every stochastic routine.
pub type ChainRng = Xoshiro256PlusPlus;

/// SplitMix64 finaliser: a bijective mix of 64 bits.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random stream number `index` of the master seed `seed`. Streams are derived from
/// (seed, index), never from a thread, so parallel results do not depend on the thread count.
pub fn stream(seed: u64, index: u64) -> ChainRng {
    ChainRng::seed_from_u64(splitmix64(splitmix64(seed) ^ index))
}

const INV_2_24: f32 = 1.0 / 16_777_216.0;

/// Fills `out` with uniform numbers in [0, 1), two 24-bit floats per 64-bit draw (24 bits so that
/// rounding never gives 1.0).
pub fn fill_uniform(rng: &mut ChainRng, out: &mut [f32]) {
    let mut pairs = out.chunks_exact_mut(2);
    for pair in &mut pairs {
        let x = rng.next_u64();
        pair[0] = (x >> 40) as f32 * INV_2_24;
        pair[1] = (x & 0xFF_FFFF) as f32 * INV_2_24;
    }
    for last in pairs.into_remainder() {
        *last = (rng.next_u64() >> 40) as f32 * INV_2_24;
    }
}

/// One uniform number in [0, 1).
pub fn uniform(rng: &mut ChainRng) -> f32 {
    (rng.next_u64() >> 40) as f32 * INV_2_24
}

/// Fills `out` with standard normal numbers (Box–Muller in f64).
pub fn fill_normal(rng: &mut ChainRng, out: &mut [f32]) {
    for pair in out.chunks_mut(2) {
        let x = rng.next_u64();
        // 32 bits each; u1 in (0, 1] so that ln(u1) is finite.
        let u1 = ((x >> 32) as f64 + 1.0) / 4_294_967_296.0;
        let u2 = (x & 0xFFFF_FFFF) as f64 / 4_294_967_296.0;
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        pair[0] = (r * theta.cos()) as f32;
        if pair.len() == 2 {
            pair[1] = (r * theta.sin()) as f32;
        }
    }
}

/// Logistic sigmoid σ(x) = 1 / (1 + e^(−x)).
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
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

/// A column-major matrix view of `data` with `rows` rows.
pub fn view(data: &[f32], rows: usize) -> View<'_> {
    let cols = data.len().checked_div(rows).unwrap_or(0);
    View::from_slice_with_strides(data, rows, cols, 1, rows)
}

/// A mutable column-major matrix view of `data` with `rows` rows.
pub fn view_mut(data: &mut [f32], rows: usize) -> ViewMut<'_> {
    let cols = data.len().checked_div(rows).unwrap_or(0);
    ViewMut::from_slice_with_strides_mut(data, rows, cols, 1, rows)
}

/// The transpose of the `rows × cols` matrix stored column-major in `data` with `stride`
/// elements between columns (`rows ≤ stride`; a block of rows starts at an offset into `data`),
/// as a strided view (no copy). nalgebra's `tr_mul` is a slow dot-product loop; `gemm` on this
/// view runs at the speed of a plain product.
pub fn transposed(data: &[f32], stride: usize, rows: usize, cols: usize) -> View<'_> {
    View::from_slice_with_strides(data, cols, rows, stride, 1)
}

/// `c = alpha · a · b + beta · c` by matrixmultiply's `sgemm` (run-time AVX2/FMA dispatch), for
/// views with any strides. Called directly rather than through nalgebra's `gemm`, whose fallback
/// for small matrices goes wrong on transposed (row-strided) views.
#[inline]
pub fn gemm(alpha: f32, a: &View<'_>, b: &View<'_>, beta: f32, c: &mut ViewMut<'_>) {
    let (m, k) = a.shape();
    let n = b.ncols();
    assert!(
        b.nrows() == k && c.shape() == (m, n),
        "gemm: {m}×{k} · {}×{n} into {}×{}",
        b.nrows(),
        c.nrows(),
        c.ncols()
    );
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa) = a.strides();
    let (rsb, csb) = b.strides();
    let (rsc, csc) = c.strides();
    // SAFETY: nalgebra checked, when each view was made from its slice, that every element
    // (i, j) at offset i·rs + j·cs lies inside the slice; sgemm touches exactly those elements of
    // a, b (reads) and c (writes), and `c` is borrowed mutably so it cannot alias `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        );
    }
}

/// Below this many columns, products with a weight matrix use direct loops instead of a packing
/// GEMM (measured: 1 and 10 chains of a 784×500 RBM, `benches/gibbs.rs`).
const SMALL_BATCH: usize = 16;

/// Products with states whose fraction of non-zeros is below this use [`sparse_combine`]
/// instead of GEMM. Measured on a 784×500 coupling, 50 chains, one core: sparse 5.3 / 12.9 /
/// 20.0 µs per chain at densities 0.13 / 0.3 / 0.5 against 15–16 µs for GEMM.
const SPARSE_DENSITY_GEMM: f64 = 0.25;
/// The same below [`SMALL_BATCH`] columns, against the direct loops (36 µs per chain at any
/// density; sparse 4.3 / 9.1 / 14.6 µs at 0.13 / 0.3 / 0.5).
const SPARSE_DENSITY_SMALL: f64 = 0.75;

/// Whether a product with the states `x` (`len` values in columns of `rows`) should go through
/// [`sparse_combine`]: the fraction of non-zeros decides, so the choice (and the bits) depend
/// only on the states, never on threads.
fn use_sparse(x: &[f32], rows: usize) -> bool {
    let limit = if x.len() < SMALL_BATCH * rows {
        SPARSE_DENSITY_SMALL
    } else {
        SPARSE_DENSITY_GEMM
    };
    let nonzero = x.iter().filter(|v| **v != 0.0).count();
    (nonzero as f64) < limit * x.len() as f64
}

/// `out = Wᵀ·X`, or `out += Wᵀ·X` if `accumulate`, for the weights `W` (`rows × cols`) of a
/// coupling and states `X` (`rows × n`, column-major): the inputs a coupling sends upwards.
/// Given `Wᵀ` as well (`w_t`), mostly-zero states are summed as selected rows of `W`.
pub fn coupling_up(
    w: &nalgebra::DMatrix<f32>,
    w_t: Option<&nalgebra::DMatrix<f32>>,
    x: &[f32],
    out: &mut [f32],
    accumulate: bool,
) {
    let (rows, cols) = w.shape();
    if let Some(wt) = w_t
        && use_sparse(x, rows)
    {
        return sparse_combine(wt.as_slice(), cols, x, out, accumulate);
    }
    if x.len() < SMALL_BATCH * rows {
        return small_tr_mul(w.as_slice(), rows, x, out, accumulate);
    }
    let beta = if accumulate { 1.0 } else { 0.0 };
    let wt = transposed(w.as_slice(), rows, rows, cols);
    gemm(1.0, &wt, &view(x, rows), beta, &mut view_mut(out, cols));
}

/// `out = W·Y`, or `out += W·Y` if `accumulate`, for the weights `W` (`rows × cols`) of a
/// coupling and states `Y` (`cols × n`): the inputs a coupling sends downwards. Mostly-zero
/// states are summed as selected columns of `W`.
pub fn coupling_down(w: &nalgebra::DMatrix<f32>, y: &[f32], out: &mut [f32], accumulate: bool) {
    let (rows, cols) = w.shape();
    if use_sparse(y, cols) {
        return sparse_combine(w.as_slice(), rows, y, out, accumulate);
    }
    if y.len() < SMALL_BATCH * cols {
        return small_mul(w.as_slice(), rows, y, out, accumulate);
    }
    let beta = if accumulate { 1.0 } else { 0.0 };
    gemm(
        1.0,
        &view(w.as_slice(), rows),
        &view(y, cols),
        beta,
        &mut view_mut(out, rows),
    );
}

/// `out ← beta·out + Σ_t alpha_t · A_t · B_tᵀ` for `out` (`rows × cols`, column-major), where
/// each term gives `alpha_t`, `A_t` (`rows × n_t`) and `B_t` (`cols × n_t`): the correlation
/// statistics of a coupling's gradient. Parallel over fixed blocks of output columns, each owned
/// by one task, so the bits do not depend on the thread count.
pub fn correlate_into(out: &mut [f32], rows: usize, beta: f32, terms: &[(f32, &[f32], &[f32])]) {
    use rayon::prelude::*;
    const COLUMNS: usize = 32;
    let cols = out.len() / rows.max(1);
    out.par_chunks_mut(rows.max(1) * COLUMNS)
        .enumerate()
        .for_each(|(block, part)| {
            let j0 = block * COLUMNS;
            let width = part.len() / rows.max(1);
            let mut part = view_mut(part, rows);
            for (t, &(alpha, a, b)) in terms.iter().enumerate() {
                let n = a.len() / rows.max(1);
                let b_t = transposed(&b[j0..], cols, width, n);
                gemm(
                    alpha,
                    &view(a, rows),
                    &b_t,
                    if t == 0 { beta } else { 1.0 },
                    &mut part,
                );
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct loops for few columns agree with the GEMM path.
    #[test]
    fn small_products_agree_with_gemm() {
        let (rows, cols, n) = (37, 23, 5);
        let mut rng = stream(1, 0);
        let mut w = vec![0f32; rows * cols];
        fill_normal(&mut rng, &mut w);
        let mut x = vec![0f32; rows * n];
        fill_normal(&mut rng, &mut x);
        let mut y = vec![0f32; cols * n];
        fill_uniform(&mut rng, &mut y);
        y.iter_mut().for_each(|v| *v = f32::from(*v < 0.5)); // binary, with zeros to skip

        let (mut fast, mut slow) = (vec![0f32; cols * n], vec![0f32; cols * n]);
        small_tr_mul(&w, rows, &x, &mut fast, false);
        gemm(
            1.0,
            &transposed(&w, rows, rows, cols),
            &view(&x, rows),
            0.0,
            &mut view_mut(&mut slow, cols),
        );
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        let (mut fast, mut slow) = (vec![1f32; rows * n], vec![0f32; rows * n]);
        small_mul(&w, rows, &y, &mut fast, false);
        gemm(
            1.0,
            &view(&w, rows),
            &view(&y, cols),
            0.0,
            &mut view_mut(&mut slow, rows),
        );
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    /// Sparse products (sums of selected rows or columns) agree with the dense ones, for sparse
    /// 0/1 states above and below the GEMM batch size, with and without accumulation.
    #[test]
    fn sparse_products_agree_with_dense() {
        let (rows, cols) = (61, 29);
        let mut rng = stream(2, 0);
        let mut w = nalgebra::DMatrix::zeros(rows, cols);
        fill_normal(&mut rng, w.as_mut_slice());
        let wt = w.transpose();
        for n in [3, 40] {
            for density in [0.05f32, 0.2] {
                let binary = |len: usize, rng: &mut ChainRng| -> Vec<f32> {
                    let mut u = vec![0f32; len];
                    fill_uniform(rng, &mut u);
                    u.iter().map(|u| f32::from(*u < density)).collect()
                };
                let (x, y) = (binary(rows * n, &mut rng), binary(cols * n, &mut rng));
                assert!(use_sparse(&x, rows) && use_sparse(&y, cols));
                let exact_up = wt.map(f64::from) * view(&x, rows).map(f64::from);
                let exact_down = w.map(f64::from) * view(&y, cols).map(f64::from);
                for accumulate in [false, true] {
                    let start = if accumulate { 1.0 } else { 0.0 };
                    let mut up = vec![start; cols * n];
                    coupling_up(&w, Some(&wt), &x, &mut up, accumulate);
                    let mut down = vec![start; rows * n];
                    coupling_down(&w, &y, &mut down, accumulate);
                    let pairs = up
                        .iter()
                        .zip(exact_up.iter())
                        .chain(down.iter().zip(exact_down.iter()));
                    for (a, b) in pairs {
                        let b = b + f64::from(start);
                        assert!(
                            (f64::from(*a) - b).abs() <= 1e-5 * (1.0 + b.abs()),
                            "{a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}
