//! Dense products: strided views, GEMM, direct loops for few columns, blocked transposes and
//! the gradient correlations `Σ_t α_t A_t B_tᵀ`.

use super::sparse::{Columns, combine};
use nalgebra::{DMatrixView, DMatrixViewMut, Dyn};
use rayon::prelude::*;

/// Below this many columns, products with a weight matrix use direct loops instead of a packing
/// GEMM (measured: 1 and 10 chains of a 784×500 RBM, `benches/gibbs.rs`).
pub(crate) const SMALL_BATCH: usize = 16;

/// A column-major f32 matrix view with arbitrary strides.
pub type View<'a> = DMatrixView<'a, f32, Dyn, Dyn>;
/// A mutable column-major f32 matrix view with arbitrary strides.
pub type ViewMut<'a> = DMatrixViewMut<'a, f32, Dyn, Dyn>;

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

/// `out ← beta·out + Σ_t alpha_t · A_t · B_tᵀ` for `out` (`rows × cols`, column-major), where
/// each term gives `alpha_t`, `A_t` (`rows × n_t`) and `B_t` (`cols × n_t`): the correlation
/// statistics of a coupling's gradient. Parallel over fixed blocks of output columns, each owned
/// by one task, so the bits do not depend on the thread count.
pub fn correlate_into(out: &mut [f32], rows: usize, beta: f32, terms: &[(f32, &[f32], &[f32])]) {
    if correlate_sparse(out, rows, beta, terms) {
        return;
    }
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

/// Elements per task of the elementwise updates.
const ELEMENTWISE_CHUNK: usize = 1 << 14;

/// `f(a[i], b[i])` for every element, in parallel over fixed chunks: elementwise, so the bits
/// never depend on threads. For the parameter updates of large couplings.
pub(crate) fn par_zip_apply(a: &mut [f32], b: &[f32], f: impl Fn(&mut f32, f32) + Sync) {
    assert_eq!(a.len(), b.len(), "elementwise operands");
    a.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(b.par_chunks(ELEMENTWISE_CHUNK))
        .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, &b)| f(a, b)));
}

/// [`par_zip_apply`] for an `f` that changes both elements.
pub(crate) fn par_zip_apply_mut(
    a: &mut [f32],
    b: &mut [f32],
    f: impl Fn(&mut f32, &mut f32) + Sync,
) {
    assert_eq!(a.len(), b.len(), "elementwise operands");
    a.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(b.par_chunks_mut(ELEMENTWISE_CHUNK))
        .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| f(a, b)));
}

/// Correlations whose `A_t` (visible states) have fewer non-zeros than this fraction are built
/// as sums of selected hidden vectors ([`correlate_sparse`]) instead of by GEMM.
const SPARSE_DENSITY_CORRELATE: f64 = 0.3;
/// Output rows (units of `A`) per task of [`correlate_sparse`], and output columns per task of
/// its transpose.
const CORRELATE_BLOCK: usize = 32;

thread_local! {
    /// The work space of [`correlate_sparse`], taken while in use (so a nested call makes its
    /// own instead of failing), kept between calls.
    static CORRELATE_SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    /// The scaled hidden vectors of [`correlate_sparse`], line-aligned, kept the same way.
    static CORRELATE_VECTORS: std::cell::Cell<Option<Columns>> = const { std::cell::Cell::new(None) };
}

/// [`correlate_into`] for mostly-zero `A_t`: row `i` of `Σ_t α_t A_t B_tᵀ` is the sum of the
/// scaled hidden vectors `α_t B_t[:, k]` of the examples `k` with `A_t[i, k]` on (weighted by it),
/// so it is [`combine`] with the columns of the scaled `B_t` as vectors and `Aᵀ` as
/// states, giving the correlation transposed; a blocked transpose adds it to `beta·out`. Returns
/// false, doing nothing, for denser `A_t` or too few examples. The choice depends only on the
/// states; every element is summed in a fixed order, so the bits do not depend on threads.
fn correlate_sparse(
    out: &mut [f32],
    rows: usize,
    beta: f32,
    terms: &[(f32, &[f32], &[f32])],
) -> bool {
    let cols = out.len().checked_div(rows).unwrap_or(0);
    let n: usize = terms.iter().map(|t| t.1.len() / rows.max(1)).sum();
    if cols == 0 || n < SMALL_BATCH {
        return false;
    }
    // On this thread: a count, or a scaled copy, of a few hundred thousand values takes less
    // than handing it to the pool and back.
    let nonzeros: usize = terms
        .iter()
        .map(|t| t.1.iter().filter(|&&x| x != 0.0).count())
        .sum();
    if nonzeros as f64 >= SPARSE_DENSITY_CORRELATE * (rows * n) as f64 {
        return false;
    }
    let mut scratch = CORRELATE_SCRATCH.take();
    scratch.resize(2 * rows * n + cols * rows, 0.0);
    let (a, rest) = scratch.split_at_mut(rows * n);
    let (x, g) = rest.split_at_mut(rows * n);
    let mut vectors = Columns::zeros_reusing(CORRELATE_VECTORS.take(), cols, n);
    let stride = vectors.stride();
    // The scaled B_t side by side (cols × n, line-aligned) and the A_t side by side (rows × n).
    let mut k0 = 0;
    for &(alpha, a_t, b_t) in terms {
        let k1 = k0 + a_t.len() / rows;
        vectors.values_mut()[stride * k0..stride * k1]
            .chunks_mut(stride)
            .zip(b_t.chunks(cols))
            .for_each(|(v, b)| v.iter_mut().zip(b).for_each(|(v, b)| *v = alpha * b));
        a[rows * k0..rows * k1].copy_from_slice(a_t);
        k0 = k1;
    }
    par_transpose_into(a, rows, 0.0, x);
    let columns = vectors.vectors();
    g.par_chunks_mut(cols * CORRELATE_BLOCK)
        .zip(x.par_chunks(n * CORRELATE_BLOCK))
        .for_each(|(g, x)| combine(columns, x, g, false));
    par_transpose_into(g, cols, beta, out);
    CORRELATE_SCRATCH.set(scratch);
    CORRELATE_VECTORS.set(Some(vectors));
    true
}

/// [`transpose_into`] for all of `xᵀ`, in parallel over fixed blocks of its columns when it is
/// large (each element is written once, so the bits never depend on threads).
pub(crate) fn par_transpose_into(x: &[f32], rows: usize, beta: f32, out: &mut [f32]) {
    const COLUMNS: usize = 32;
    let cols = x.len().checked_div(rows).unwrap_or(0);
    if x.len() < 1 << 16 || cols == 0 {
        return transpose_into(x, rows, beta, out, cols, 0);
    }
    out.par_chunks_mut(cols * COLUMNS)
        .enumerate()
        .for_each(|(b, out)| transpose_into(x, rows, beta, out, cols, b * COLUMNS));
}

/// `out ← beta·out + xᵀ` on a block of consecutive columns of `xᵀ` (`cols × rows`), for `x`
/// (`rows × cols`, column-major): `out` holds columns `first..` of `xᵀ`, i.e. rows `first..` of
/// `x`, `stride ≥ cols` values apart (the rest of each is left as it is). With `beta = 0`, `out`
/// is not read. 8×8 blocks go through AVX registers where the CPU has them, the edges one element
/// at a time, with the same arithmetic (a product, then a sum), so the bits do not depend on the
/// CPU or the blocks.
pub(crate) fn transpose_into(
    x: &[f32],
    rows: usize,
    beta: f32,
    out: &mut [f32],
    stride: usize,
    first: usize,
) {
    let cols = x.len().checked_div(rows).unwrap_or(0);
    let count = out.len().checked_div(stride).unwrap_or(0);
    assert!(
        first + count <= rows && cols <= stride,
        "columns of the transpose"
    );
    let (count8, cols8) = (count / 8 * 8, cols / 8 * 8);
    let mut blocks_done = false;
    #[cfg(target_arch = "x86_64")]
    if super::Kernel::active() >= super::Kernel::Avx2 {
        // SAFETY: the CPU has AVX (with AVX2: `Kernel::active` names only what it supports).
        unsafe { transpose_blocks_avx(x, rows, beta, out, stride, first) };
        blocks_done = true;
    }
    let mut copy = |js: std::ops::Range<usize>, is: std::ops::Range<usize>| {
        for j in js {
            for i in is.clone() {
                let o = &mut out[i + stride * j];
                let t = x[first + j + rows * i];
                *o = if beta == 0.0 { t } else { beta * *o + t };
            }
        }
    };
    if !blocks_done {
        copy(0..count8, 0..cols8);
    }
    copy(count8..count, 0..cols);
    copy(0..count8, cols8..cols);
}

/// The full 8×8 blocks of [`transpose_into`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_blocks_avx(
    x: &[f32],
    rows: usize,
    beta: f32,
    out: &mut [f32],
    stride: usize,
    first: usize,
) {
    use std::arch::x86_64::*;
    let cols = x.len() / rows;
    let count = out.len() / stride;
    assert!(first + count <= rows && x.len() == rows * cols && cols <= stride);
    let b = _mm256_set1_ps(beta);
    for i0 in (0..cols / 8 * 8).step_by(8) {
        for j0 in (0..count / 8 * 8).step_by(8) {
            // SAFETY: i0 + 7 < cols and first + j0 + 7 < rows, so every load and store is in
            // bounds.
            unsafe {
                let r: [__m256; 8] = std::array::from_fn(|k| {
                    _mm256_loadu_ps(x.as_ptr().add(first + j0 + rows * (i0 + k)))
                });
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let c = [
                    _mm256_permute2f128_ps::<0x20>(s0, s4),
                    _mm256_permute2f128_ps::<0x20>(s1, s5),
                    _mm256_permute2f128_ps::<0x20>(s2, s6),
                    _mm256_permute2f128_ps::<0x20>(s3, s7),
                    _mm256_permute2f128_ps::<0x31>(s0, s4),
                    _mm256_permute2f128_ps::<0x31>(s1, s5),
                    _mm256_permute2f128_ps::<0x31>(s2, s6),
                    _mm256_permute2f128_ps::<0x31>(s3, s7),
                ];
                for (k, ck) in c.iter().enumerate() {
                    let o = out.as_mut_ptr().add(i0 + stride * (j0 + k));
                    let v = if beta == 0.0 {
                        *ck
                    } else {
                        _mm256_add_ps(_mm256_mul_ps(b, _mm256_loadu_ps(o)), *ck)
                    };
                    _mm256_storeu_ps(o, v);
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::*;

    /// The blocked transpose agrees with the definition, edges included: into line-aligned
    /// columns (padding left zero), also into the storage of earlier columns of the same or
    /// another shape, and by blocks of columns added to a scaled output.
    #[test]
    fn transpose_is_exact() {
        // Columns `c` of `len` values each: value `i` of column `j` is `x(i, j)`, padding zero.
        fn check(c: &Columns, len: usize, count: usize, x: impl Fn(usize, usize) -> f32) {
            let stride = c.stride();
            assert_eq!(c.values().len(), stride * count);
            for j in 0..count {
                for i in 0..stride {
                    let expected = if i < len { x(i, j) } else { 0.0 };
                    assert_eq!(c.values()[i + stride * j], expected);
                }
            }
        }
        let mut old = None;
        for (rows, cols) in [(1, 1), (8, 8), (19, 37), (19, 37), (64, 13), (13, 64)] {
            let x: Vec<f32> = (0..rows * cols).map(|k| k as f32).collect();
            let y: Vec<f32> = x.iter().map(|x| -1.0 - x).collect();
            // Into new storage or storage of another shape, then again into the same storage.
            let mut t = None;
            for z in [&x, &y] {
                t = Some(Columns::transpose(t.or(old.take()), z, rows));
                check(t.as_ref().unwrap(), cols, rows, |j, i| z[i + rows * j]);
            }
            let mut c = t;
            for z in [&x, &y] {
                c = Some(Columns::copy(c, z, rows));
                check(c.as_ref().unwrap(), rows, cols, |i, j| z[i + rows * j]);
            }
            old = c;
            // A block of columns of xᵀ (rows `first..` of x), added to a scaled `out`.
            for first in [0, rows / 3] {
                let count = rows - first;
                let before: Vec<f32> = (0..cols * count).map(|k| (k % 7) as f32 - 3.0).collect();
                let mut out = before.clone();
                transpose_into(&x, rows, 0.5, &mut out, cols, first);
                for j in 0..count {
                    for i in 0..cols {
                        let k = i + cols * j;
                        assert_eq!(out[k], 0.5 * before[k] + x[first + j + rows * i]);
                    }
                }
            }
        }
        // Storage of as many lines but longer columns: its values must not show as padding.
        let x: Vec<f32> = (0..5 * 17).map(|k| k as f32).collect();
        let long = Columns::transpose(None, &[1.0; 5 * 33], 5);
        check(&Columns::transpose(Some(long), &x, 5), 17, 5, |j, i| {
            x[i + 5 * j]
        });
    }

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

    /// Gradient correlations `beta·out + Σ_t α_t A_t B_tᵀ` agree with f64 products, for sparse
    /// and dense, 0/1 and weighted `A_t`.
    #[test]
    fn correlations_agree_with_exact() {
        let (rows, cols) = (37, 130);
        let mut rng = stream(3, 0);
        for (density, on) in [(0.1f32, 1.0f32), (0.2, 0.6), (0.9, 1.0)] {
            let mut a = [vec![0f32; rows * 7], vec![0f32; rows * 11]];
            let mut b = [vec![0f32; cols * 7], vec![0f32; cols * 11]];
            for (a, b) in a.iter_mut().zip(&mut b) {
                fill_uniform(&mut rng, a);
                a.iter_mut()
                    .for_each(|x| *x = if *x < density { on } else { 0.0 });
                fill_uniform(&mut rng, b);
            }
            let mut out = vec![0f32; rows * cols];
            fill_normal(&mut rng, &mut out);
            let start = out.clone();
            let (alpha, beta) = ([0.3f32, -0.7], 0.9f32);
            let terms: Vec<(f32, &[f32], &[f32])> = (0..2)
                .map(|t| (alpha[t], a[t].as_slice(), b[t].as_slice()))
                .collect();
            correlate_into(&mut out, rows, beta, &terms);
            for j in 0..cols {
                for i in 0..rows {
                    let mut exact = f64::from(beta) * f64::from(start[i + rows * j]);
                    for t in 0..2 {
                        for c in 0..a[t].len() / rows {
                            exact += f64::from(alpha[t])
                                * f64::from(a[t][i + rows * c])
                                * f64::from(b[t][j + cols * c]);
                        }
                    }
                    let got = f64::from(out[i + rows * j]);
                    assert!(
                        (got - exact).abs() <= 1e-5 * (1.0 + exact.abs()),
                        "{got} vs {exact}"
                    );
                }
            }
        }
    }
}
