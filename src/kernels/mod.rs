//! The hot paths: products with the weight matrix, element-wise non-linearities and bulk random
//! numbers. Everything that touches every unit of every chain goes through here, so that speed work
//! has one place to happen.

mod math;

pub use math::SubsetSums;
use math::{
    Columns, Vectors, combine, par_transpose_into, small_mul, small_tr_mul, sparse_combine_below,
};
pub use math::{sigmoid_columns, softplus_steps};

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
/// rounding never gives 1.0): `x >> 40`, then `x & 0xFFFFFF`, each times 2⁻²⁴; an odd last one
/// takes `x >> 40`.
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

/// Products with states whose fraction of non-zeros is below this use [`combine`](math::combine)
/// instead of GEMM. Measured on a 784×500 coupling, 50 chains, one core (`Wᵀv` / `Wh`): sparse
/// 2.8 / 2.9, 5.3 / 5.1, 7.6 / 7.4, 10.3 / 10.1 and 11.6 / 10.9 µs per chain at densities 0.13,
/// 0.3, 0.5, 0.7 and 0.8 against 12.8 / 10.1 µs for GEMM.
const SPARSE_DENSITY_GEMM: f64 = 0.65;
/// The same below [`SMALL_BATCH`] columns (10 chains), against the direct loops (34 / 27 µs per
/// chain at any density; sparse 5.1 / 3.8 at 0.13 and 22.7 / 16.8 µs at 0.9). Probabilities,
/// never exactly zero, stay with the direct loops.
const SPARSE_DENSITY_SMALL: f64 = 0.95;

/// The density below which a product with the states `x` (columns of `rows` values) goes
/// through [`combine`](math::combine). It depends only on the shapes, and the choice only on the states,
/// never on threads.
fn sparse_limit(x: &[f32], rows: usize) -> f64 {
    if x.len() < SMALL_BATCH * rows {
        SPARSE_DENSITY_SMALL
    } else {
        SPARSE_DENSITY_GEMM
    }
}

/// A [`CouplingCache`] offers subset-sum tables once this many chain-sweeps (products with one
/// column each way) are expected with the same weights: making the table of a 784×500 coupling
/// costs about as much as 250 chain-sweeps save, so tables wait for work that repays them
/// (sampling, AIS, long chains), not for a CD-1 step on weights about to change.
const TABLE_WORK: usize = 1000;
/// Couplings with more weights than this get no subset-sum tables: a table (four times the
/// weights) must stay in the last-level cache, which every block of chains streams it from.
/// Measured on one core, chain-sweeps/s with / without tables: 784×250 134,000 / 99,000,
/// 784×1000 18,000 / 28,000 (25 MB of tables against a 32 MB L3).
const TABLE_MAX_WEIGHTS: usize = 1 << 19;

/// What a coupling keeps besides `W` for fast products with 0/1 states: `Wᵀ` (for sums of
/// selected rows of `W`) and the [`SubsetSums`] of `W` and `Wᵀ`, each made on first use; tables
/// only once enough work is announced (see [`CouplingCache::expect`]). Whoever owns the weights
/// must clear the cache when they change. Clones start empty and caches never take part in
/// comparisons.
#[derive(Default)]
pub struct CouplingCache {
    /// `W` with line-aligned columns.
    columns: std::sync::OnceLock<Columns>,
    transposed: std::sync::OnceLock<Columns>,
    up: std::sync::OnceLock<SubsetSums>,
    down: std::sync::OnceLock<SubsetSums>,
    /// Chain-sweeps announced since the weights last changed.
    work: std::sync::atomic::AtomicUsize,
}

impl CouplingCache {
    /// Forgets everything (the weights have changed), keeping nothing allocated but itself.
    pub fn clear(&mut self) {
        self.columns.take();
        self.transposed.take();
        self.up.take();
        self.down.take();
        *self.work.get_mut() = 0;
    }

    /// `W` with line-aligned columns.
    fn columns(&self, w: &nalgebra::DMatrix<f32>) -> &Columns {
        self.columns
            .get_or_init(|| Columns::copy(w.as_slice(), w.nrows()))
    }

    /// `Wᵀ`, made on this thread: inside `OnceLock::get_or_init`, parallel work could let it
    /// steal a task that waits on the same cell.
    fn transposed(&self, w: &nalgebra::DMatrix<f32>) -> &Columns {
        self.transposed
            .get_or_init(|| Columns::transpose(w.as_slice(), w.nrows()))
    }

    /// Announces `chain_sweeps` products each way with the current weights. Once the work since
    /// the last change reaches 1000, products of 0/1 states dense enough to gain make
    /// and use subset-sum tables. Call it from one thread before the work starts (not from
    /// parallel blocks), so that every block of the work takes the same path and the bits do
    /// not depend on threads.
    pub fn expect(&self, chain_sweeps: usize) {
        self.work
            .fetch_add(chain_sweeps, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether products may use subset-sum tables of the weights `w`.
    fn tables(&self, w: &nalgebra::DMatrix<f32>) -> bool {
        self.work.load(std::sync::atomic::Ordering::Relaxed) >= TABLE_WORK
            && w.len() <= TABLE_MAX_WEIGHTS
    }
}

impl Clone for CouplingCache {
    fn clone(&self) -> Self {
        CouplingCache::default()
    }
}

impl PartialEq for CouplingCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for CouplingCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CouplingCache")
    }
}

/// `out = Wᵀ·X`, or `out += Wᵀ·X` if `accumulate`, for the weights `W` (`rows × cols`) of a
/// coupling and states `X` (`rows × n`, column-major): the inputs a coupling sends upwards.
/// With a cache, 0/1 states go through subset sums (denser states, once the cache offers
/// tables) or sums of selected rows of `W` (mostly-zero states); otherwise GEMM or direct
/// loops. The path depends only on the shapes, the states and the announced work, never on
/// threads.
pub fn coupling_up<'a>(
    w: &'a nalgebra::DMatrix<f32>,
    cache: Option<&'a CouplingCache>,
    x: &[f32],
    out: &mut [f32],
    accumulate: bool,
) {
    let (rows, cols) = w.shape();
    if let Some(cache) = cache {
        let wt = || cache.transposed(w).vectors();
        let table = || cache.up.get_or_init(|| SubsetSums::of(wt()));
        let tables = cache
            .tables(w)
            .then_some(&table as &dyn Fn() -> &'a SubsetSums);
        let limit = sparse_limit(x, rows);
        if sparse_combine_below(cols, rows, &wt, x, out, accumulate, limit, tables) {
            return;
        }
    }
    if x.len() < SMALL_BATCH * rows {
        return small_tr_mul(w.as_slice(), rows, x, out, accumulate);
    }
    let beta = if accumulate { 1.0 } else { 0.0 };
    let wt = transposed(w.as_slice(), rows, rows, cols);
    gemm(1.0, &wt, &view(x, rows), beta, &mut view_mut(out, cols));
}

/// `out = W·Y`, or `out += W·Y` if `accumulate`, for the weights `W` (`rows × cols`) of a
/// coupling and states `Y` (`cols × n`): the inputs a coupling sends downwards. Paths as in
/// [`coupling_up`]; without a cache, mostly-zero states are still summed as selected columns.
pub fn coupling_down<'a>(
    w: &'a nalgebra::DMatrix<f32>,
    cache: Option<&'a CouplingCache>,
    y: &[f32],
    out: &mut [f32],
    accumulate: bool,
) {
    let (rows, cols) = w.shape();
    let table = cache
        .filter(|c| c.tables(w))
        .map(|c| move || c.down.get_or_init(|| SubsetSums::new(w.as_slice(), rows)));
    let tables = table.as_ref().map(|t| t as &dyn Fn() -> &'a SubsetSums);
    let limit = sparse_limit(y, cols);
    let vectors = || match cache {
        Some(cache) => cache.columns(w).vectors(),
        None => Vectors::packed(w.as_slice(), rows),
    };
    if sparse_combine_below(rows, cols, &vectors, y, out, accumulate, limit, tables) {
        return;
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

/// `f(a[i], b[i])` for every element, in parallel over fixed chunks: elementwise, so the bits
/// never depend on threads. For the parameter updates of large couplings.
pub(crate) fn par_zip_apply(a: &mut [f32], b: &[f32], f: impl Fn(&mut f32, f32) + Sync) {
    use rayon::prelude::*;
    assert_eq!(a.len(), b.len(), "elementwise operands");
    a.par_chunks_mut(1 << 14)
        .zip(b.par_chunks(1 << 14))
        .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, &b)| f(a, b)));
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
/// so it is [`combine`](math::combine) with the columns of the scaled `B_t` as vectors and `Aᵀ` as
/// states, giving the correlation transposed; a blocked transpose adds it to `beta·out`. Returns
/// false, doing nothing, for denser `A_t` or too few examples. The choice depends only on the
/// states; every element is summed in a fixed order, so the bits do not depend on threads.
fn correlate_sparse(
    out: &mut [f32],
    rows: usize,
    beta: f32,
    terms: &[(f32, &[f32], &[f32])],
) -> bool {
    use rayon::prelude::*;
    let cols = out.len().checked_div(rows).unwrap_or(0);
    let n: usize = terms.iter().map(|t| t.1.len() / rows.max(1)).sum();
    if cols == 0 || n < SMALL_BATCH {
        return false;
    }
    let nonzeros: usize = terms
        .iter()
        .map(|t| {
            t.1.par_chunks(1 << 14)
                .map(|c| c.iter().filter(|&&x| x != 0.0).count())
                .sum::<usize>()
        })
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
            .par_chunks_mut(stride)
            .zip(b_t.par_chunks(cols))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `fill_uniform` is its definition (which fixes the random streams of every sampler and
    /// so what checkpoints resume): per 64-bit draw `x`, `x >> 40` then `x & 0xFFFFFF`, times
    /// 2⁻²⁴, and `x >> 40` for an odd last value.
    #[test]
    fn uniforms_follow_their_definition() {
        for len in [0, 1, 2, 3, 255, 256, 257, 511, 600] {
            let (mut rng, mut reference) = (stream(4, len as u64), stream(4, len as u64));
            let mut u = vec![0f32; len];
            fill_uniform(&mut rng, &mut u);
            for k in (0..len).step_by(2) {
                let x = reference.next_u64();
                assert_eq!(u[k], (x >> 40) as f32 / 16_777_216.0);
                if k + 1 < len {
                    assert_eq!(u[k + 1], (x & 0xFF_FFFF) as f32 / 16_777_216.0);
                }
            }
            assert_eq!(rng, reference, "as many draws as values in pairs");
        }
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

    /// Every path of the coupling products agrees with f64 products: subset sums (0/1 states,
    /// many columns, with a cache), sums of selected rows or columns (sparse states), GEMM and
    /// direct loops (dense states), with and without accumulation.
    #[test]
    fn coupling_products_agree_with_exact() {
        // Every kind of tile takes part: of 64, of a line (16) and of 8 rows, single rows (packed
        // columns without a cache), and last tiles that reach into the padding of line-aligned
        // columns (116 = 64 + 52 rows, 29 = 16 + 13, 150 = 128 + 16 + 6, 200 = 192 + 8). Sizes
        // that are not multiples of 4 leave the last group of a subset-sum table partial.
        for (shape, (rows, cols)) in [(150, 29), (116, 52), (64, 16), (1, 17), (33, 200)]
            .into_iter()
            .enumerate()
        {
            products_agree_with_exact(rows, cols, shape as u64);
        }
    }

    fn products_agree_with_exact(rows: usize, cols: usize, seed: u64) {
        let mut rng = stream(2, seed);
        let mut w = nalgebra::DMatrix::zeros(rows, cols);
        fill_normal(&mut rng, w.as_mut_slice());
        let wt = w.transpose();
        // 0/1 states (sums without products), states whose non-zeros are not 1, dense states.
        for (n, density, on) in [
            (3, 0.05f32, 1.0),
            (40, 0.2, 1.0),
            (40, 0.6, 1.0),
            (3, 0.2, 0.7),
            (40, 0.05, -1.5),
            (40, 1.1, 0.3),
        ] {
            let states = |len: usize, rng: &mut ChainRng| -> Vec<f32> {
                let mut u = vec![0f32; len];
                fill_uniform(rng, &mut u);
                u.iter()
                    .map(|u| if *u < density { on } else { 0.0 })
                    .collect()
            };
            let (x, y) = (states(rows * n, &mut rng), states(cols * n, &mut rng));
            let exact_up = wt.map(f64::from) * view(&x, rows).map(f64::from);
            let exact_down = w.map(f64::from) * view(&y, cols).map(f64::from);
            let (cache, tables) = (CouplingCache::default(), CouplingCache::default());
            tables.expect(TABLE_WORK);
            for (accumulate, cache) in [
                (false, None),
                (true, None),
                (false, Some(&cache)),
                (true, Some(&cache)),
                (false, Some(&tables)),
                (true, Some(&tables)),
            ] {
                let start = if accumulate { 1.0 } else { 0.0 };
                let mut up = vec![start; cols * n];
                coupling_up(&w, cache, &x, &mut up, accumulate);
                let mut down = vec![start; rows * n];
                coupling_down(&w, cache, &y, &mut down, accumulate);
                let pairs = up
                    .iter()
                    .zip(exact_up.iter())
                    .chain(down.iter().zip(exact_down.iter()));
                for (a, b) in pairs {
                    let b = b + f64::from(start);
                    assert!(
                        (f64::from(*a) - b).abs() <= 1e-5 * (1.0 + b.abs()),
                        "{rows}×{cols}: {a} vs {b}"
                    );
                }
            }
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
