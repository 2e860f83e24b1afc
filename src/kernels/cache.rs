//! The products of a coupling with the states of its layers, by whichever path is fastest for
//! the shapes and the states: subset-sum tables, sums of selected rows or columns, GEMM or
//! direct loops, with what each path keeps between calls.

use super::dense::{SMALL_BATCH, gemm, small_mul, small_tr_mul, transposed, view, view_mut};
use super::packed::Packed;
use super::sparse::{Columns, SubsetSums, Vectors, sparse_combine_below};

/// Products with states whose fraction of non-zeros is below this use [`combine`](super::sparse::combine)
/// instead of GEMM. Measured on a 784×500 coupling, 50 chains, one core (`Wᵀv` / `Wh`): sparse
/// 2.8 / 2.9, 5.3 / 5.1, 7.6 / 7.4, 10.3 / 10.1 and 11.6 / 10.9 µs per chain at densities 0.13,
/// 0.3, 0.5, 0.7 and 0.8 against 12.8 / 10.1 µs for GEMM.
const SPARSE_DENSITY_GEMM: f64 = 0.65;
/// The same below [`SMALL_BATCH`] columns (10 chains), against the direct loops (34 / 27 µs per
/// chain at any density; sparse 5.1 / 3.8 at 0.13 and 22.7 / 16.8 µs at 0.9). Probabilities,
/// never exactly zero, stay with the direct loops.
const SPARSE_DENSITY_SMALL: f64 = 0.95;

/// The density below which a product with the states `x` (columns of `rows` values) goes
/// through [`combine`](super::sparse::combine). It depends only on the shapes, and the choice only on the states,
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
/// Bytes of a subset-sum table per weight: four table columns per column of the weights.
const TABLE_BYTES_PER_WEIGHT: usize = 4 * std::mem::size_of::<f32>();
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
    /// `Wᵀ` and `W` packed for products with dense states.
    packed_up: std::sync::OnceLock<Packed>,
    packed_down: std::sync::OnceLock<Packed>,
    /// Chain-sweeps announced since the weights last changed.
    work: std::sync::atomic::AtomicUsize,
    /// The storage of `columns` and `transposed` before the last change, for their next making.
    spare: std::sync::Mutex<[Option<Columns>; 2]>,
    /// The same for `packed_up` and `packed_down`.
    spare_packed: std::sync::Mutex<[Option<Packed>; 2]>,
}

impl CouplingCache {
    /// Forgets everything (the weights have changed), keeping only the storage of `W` and `Wᵀ`
    /// to make them again without allocating or zeroing.
    pub fn clear(&mut self) {
        let made = [self.columns.take(), self.transposed.take()];
        if let Ok(spare) = self.spare.get_mut() {
            for (spare, made) in spare.iter_mut().zip(made) {
                *spare = made.or(spare.take());
            }
        }
        self.up.take();
        self.down.take();
        let packed = [self.packed_up.take(), self.packed_down.take()];
        if let Ok(spare) = self.spare_packed.get_mut() {
            for (spare, made) in spare.iter_mut().zip(packed) {
                *spare = made.or(spare.take());
            }
        }
        *self.work.get_mut() = 0;
    }

    /// `W` with line-aligned columns.
    fn columns(&self, w: &nalgebra::DMatrix<f32>) -> &Columns {
        self.columns
            .get_or_init(|| Columns::copy(self.spare(0), w.as_slice(), w.nrows()))
    }

    /// `Wᵀ`, made on this thread: inside `OnceLock::get_or_init`, parallel work could let it
    /// steal a task that waits on the same cell.
    fn transposed(&self, w: &nalgebra::DMatrix<f32>) -> &Columns {
        self.transposed
            .get_or_init(|| Columns::transpose(self.spare(1), w.as_slice(), w.nrows()))
    }

    /// The spare storage of packed `Wᵀ` (`i` = 0) or `W` (1), if any.
    fn spare_packed(&self, i: usize) -> Option<Packed> {
        self.spare_packed.lock().ok().and_then(|mut s| s[i].take())
    }

    /// The spare storage `i` (0: `W`, 1: `Wᵀ`), if any.
    fn spare(&self, i: usize) -> Option<Columns> {
        self.spare.lock().ok().and_then(|mut s| s[i].take())
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
            && w.len().saturating_mul(TABLE_BYTES_PER_WEIGHT) <= super::cpu::table_budget()
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
/// tables) or sums of selected rows of `W` (mostly-zero states), other states through `Wᵀ`
/// packed once per change of the weights (on CPUs with fused multiply-adds); otherwise GEMM or
/// direct loops. The path depends only on the shapes, the states and the announced work, never on
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
    if let Some(cache) = cache.filter(|_| Packed::available()) {
        let packed = cache
            .packed_up
            .get_or_init(|| Packed::new(cache.spare_packed(0), w.as_slice(), cols, rows, rows, 1));
        return packed.product(x, out, accumulate);
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
    if let Some(cache) = cache.filter(|_| Packed::available()) {
        let packed = cache
            .packed_down
            .get_or_init(|| Packed::new(cache.spare_packed(1), w.as_slice(), rows, cols, 1, rows));
        return packed.product(y, out, accumulate);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::*;

    /// Every path of the coupling products agrees with f64 products: subset sums (0/1 states,
    /// many columns, with a cache), sums of selected rows or columns (sparse states), GEMM and
    /// direct loops (dense states), with and without accumulation.
    #[test]
    fn coupling_products_agree_with_exact() {
        coupling_products();
    }

    /// The products of every path and the non-linearities give the same bits with every kernel
    /// this CPU runs (portable, AVX2, AVX-512): the kernels differ in speed only.
    #[test]
    fn every_kernel_gives_the_same_bits() {
        assert_same_bits_on_every_kernel(|| {
            let mut bits = coupling_products();
            let mut rng = stream(8, 0);
            let (rows, n) = (300, 7);
            let mut a = vec![0f32; rows * n];
            fill_normal(&mut rng, &mut a);
            a.iter_mut().for_each(|x| *x *= 6.0);
            let (mut bias, mut start) = (vec![0f32; rows], vec![0f32; rows]);
            fill_normal(&mut rng, &mut bias);
            fill_normal(&mut rng, &mut start);
            let mut sums = vec![0f64; n];
            softplus_columns(&a, &bias, &mut sums);
            softplus_steps(&a, &bias, &start, 0.3, 0.3001, &mut sums);
            sigmoid_columns(&mut a, &bias);
            bits.extend(a.iter().map(|x| x.to_bits()));
            bits.extend(sums.iter().flat_map(|x| {
                let b = x.to_bits();
                [b as u32, (b >> 32) as u32]
            }));
            bits
        });
    }

    /// The products of [`products_agree_with_exact`] for shapes that reach every tile, as bits.
    fn coupling_products() -> Vec<u32> {
        // Every kind of tile takes part: of 64, of a line (16) and of 8 rows, single rows (packed
        // columns without a cache), and last tiles that reach into the padding of line-aligned
        // columns (116 = 64 + 52 rows, 29 = 16 + 13, 150 = 128 + 16 + 6, 200 = 192 + 8). Sizes
        // that are not multiples of 4 leave the last group of a subset-sum table partial.
        // With AVX-512, tiles of 128 rows come first (150 = 128 + 16 + 6, 300 = 2·128 + 32 + 12).
        let mut bits = Vec::new();
        for (shape, (rows, cols)) in [
            (150, 29),
            (116, 52),
            (64, 16),
            (1, 17),
            (33, 200),
            (300, 130),
        ]
        .into_iter()
        .enumerate()
        {
            bits.extend(products_agree_with_exact(rows, cols, shape as u64));
        }
        bits
    }

    /// Checks the products of a `rows × cols` coupling on every path; returns their bits.
    fn products_agree_with_exact(rows: usize, cols: usize, seed: u64) -> Vec<u32> {
        let mut bits = Vec::new();
        let mut rng = stream(2, seed);
        let mut w = nalgebra::DMatrix::zeros(rows, cols);
        fill_normal(&mut rng, w.as_mut_slice());
        let wt = w.transpose();
        // 0/1 states (sums without products; the densest as sums over their zeros), states
        // whose non-zeros are not 1, dense states.
        for (n, density, on) in [
            (3, 0.05f32, 1.0),
            (40, 0.2, 1.0),
            (40, 0.6, 1.0),
            (40, 0.9, 1.0),
            (3, 0.98, 1.0),
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
                bits.extend(up.iter().chain(&down).map(|x| x.to_bits()));
            }
        }
        bits
    }
}
