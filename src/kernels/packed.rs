//! Products with a matrix packed once, for the many products between two changes of a coupling
//! (a DBM's mean-field does twenty per update): GEMM libraries pack their operand again at every
//! call. Each output is one chain of fused multiply-adds in the order of the sum, whichever
//! kernel runs, so every kernel gives the same bits and no output depends on the columns beside
//! it.

/// Rows per panel: one AVX-512 register, two AVX2 ones.
const ROWS: usize = 16;
/// Output columns per register tile.
const COLUMNS: usize = 6;

/// A matrix `A` (`m × k`) in panels of [`ROWS`] rows, each stored `k`-major (the rows of one
/// `k` side by side), the last panel padded with zeros.
#[derive(Clone, Debug)]
pub(crate) struct Packed {
    panels: Vec<f32>,
    m: usize,
    k: usize,
}

impl Packed {
    /// `A` with element `(i, j)` at `a[i·row_stride + j·col_stride]`, one of the strides 1, in
    /// the storage of `spare` if given.
    pub(crate) fn new(
        spare: Option<Packed>,
        a: &[f32],
        m: usize,
        k: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        let mut panels = spare.map(|p| p.panels).unwrap_or_default();
        panels.clear();
        panels.resize(m.div_ceil(ROWS) * ROWS * k, 0.0);
        let mut put = |i: usize, j: usize, value: f32| {
            panels[((i / ROWS) * k + j) * ROWS + i % ROWS] = value;
        };
        // Read `a` in its storage order.
        if row_stride == 1 {
            for j in 0..k {
                for (i, &value) in a[j * col_stride..][..m].iter().enumerate() {
                    put(i, j, value);
                }
            }
        } else {
            for i in 0..m {
                for j in 0..k {
                    put(i, j, a[i * row_stride + j * col_stride]);
                }
            }
        }
        Packed { panels, m, k }
    }

    /// Whether products are worth packing for on this CPU: with fused multiply-adds in hardware.
    pub(crate) fn available() -> bool {
        cfg!(target_arch = "aarch64") || super::Kernel::Avx2.supported()
    }

    /// `out = A·X`, or `out += A·X` if `accumulate`, for `X` (`k × n`, column-major).
    pub(crate) fn product(&self, x: &[f32], out: &mut [f32], accumulate: bool) {
        let n = out.len().checked_div(self.m).unwrap_or(0);
        assert!(
            x.len() == n * self.k && out.len() == n * self.m,
            "a product of these shapes"
        );
        if self.k == 0 && !accumulate {
            out.fill(0.0);
        }
        if self.k > 0 {
            product_with(self, x, out, accumulate, n);
        }
    }

    /// Panel `p`.
    fn panel(&self, p: usize) -> &[f32] {
        &self.panels[p * self.k * ROWS..][..self.k * ROWS]
    }
}

dispatch! {
    /// [`Packed::product`]: tiles of two panels by [`COLUMNS`] columns with AVX-512, of one
    /// panel otherwise (twelve registers of sums either way).
    fn product_with(a: &Packed, x: &[f32], out: &mut [f32], accumulate: bool, n: usize) {
        let wide = super::Kernel::active() == super::Kernel::Avx512;
        let panels = a.m.div_ceil(ROWS);
        let mut p = 0;
        while p < panels {
            let two = wide && p + 1 < panels;
            for j in (0..n).step_by(COLUMNS) {
                let columns = COLUMNS.min(n - j);
                macro_rules! tiles {
                    ($($c:literal)*) => {
                        match (two, columns) {
                            $((true, $c) => tile::<2, $c>(a, p, x, j, out, accumulate),)*
                            $((false, $c) => tile::<1, $c>(a, p, x, j, out, accumulate),)*
                            _ => unreachable!("1 to {COLUMNS} columns"),
                        }
                    };
                }
                tiles!(1 2 3 4 5 6);
            }
            p += if two { 2 } else { 1 };
        }
    }
}

/// Rows `ROWS·p ..` (`P` panels) of columns `j .. j + N` of the product, the sums kept in
/// registers along the whole of `k`.
#[inline(always)]
fn tile<const P: usize, const N: usize>(
    a: &Packed,
    p: usize,
    x: &[f32],
    j: usize,
    out: &mut [f32],
    accumulate: bool,
) {
    let sums = tile_sums::<P, N>(a, p, x, j);
    let m = a.m;
    for (c, sums) in sums.iter().enumerate() {
        let column = &mut out[(j + c) * m..][..m];
        for (q, sums) in sums.iter().enumerate() {
            let first = (p + q) * ROWS;
            let rows = ROWS.min(m - first);
            for (out, sum) in column[first..first + rows].iter_mut().zip(sums) {
                *out = if accumulate { *out + sum } else { *sum };
            }
        }
    }
}

/// The sums of [`tile`].
#[inline(always)]
fn tile_sums<const P: usize, const N: usize>(
    a: &Packed,
    p: usize,
    x: &[f32],
    j: usize,
) -> [[[f32; ROWS]; P]; N] {
    let k = a.k;
    let panels: [&[f32]; P] = std::array::from_fn(|q| a.panel(p + q));
    let xs: [&[f32]; N] = std::array::from_fn(|c| &x[(j + c) * k..][..k]);
    let mut sums = [[[0f32; ROWS]; P]; N];
    for t in 0..k {
        for c in 0..N {
            // SAFETY: t < k = xs[c].len().
            let b = unsafe { *xs[c].get_unchecked(t) };
            for q in 0..P {
                // SAFETY: the panel holds k·ROWS values; (t + 1)·ROWS ≤ k·ROWS.
                let row = unsafe { &*panels[q].as_ptr().add(t * ROWS).cast::<[f32; ROWS]>() };
                for i in 0..ROWS {
                    sums[c][q][i] = row[i].mul_add(b, sums[c][q][i]);
                }
            }
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{assert_same_bits_on_every_kernel, fill_normal, stream};

    /// Products of every tile shape (one and two panels, a padded last panel, 1 to 6 columns
    /// at the end) agree with f64 products within the error bound of a chain of `k` rounded
    /// multiply-adds, with and without accumulation, from both storage orders, and give the
    /// same bits with every kernel this CPU runs.
    #[test]
    fn products_agree_with_exact_and_across_kernels() {
        assert_same_bits_on_every_kernel(|| {
            let mut bits = Vec::new();
            let mut rng = stream(3, 0);
            let shapes = [
                (1, 1, 1),
                (16, 7, 6),
                (33, 40, 13),
                (50, 9, 17),
                (70, 31, 8),
                (20, 12, 10),
                (5, 0, 3),
            ];
            for (m, k, n) in shapes {
                let mut a = vec![0f32; m * k];
                let mut x = vec![0f32; k * n];
                fill_normal(&mut rng, &mut a);
                fill_normal(&mut rng, &mut x);
                let transposed: Vec<f32> = (0..m * k).map(|e| a[(e % k) * m + e / k]).collect();
                let packings = [
                    Packed::new(None, &a, m, k, 1, m),
                    Packed::new(None, &transposed, m, k, k, 1),
                ];
                for (packed, accumulate) in packings.iter().flat_map(|p| [(p, false), (p, true)]) {
                    let start = if accumulate { 0.5 } else { 0.0 };
                    let mut out = vec![start; m * n];
                    packed.product(&x, &mut out, accumulate);
                    for (e, &y) in out.iter().enumerate() {
                        let (i, c) = (e % m, e / m);
                        let terms =
                            (0..k).map(|t| f64::from(a[t * m + i]) * f64::from(x[c * k + t]));
                        let exact: f64 = terms.clone().sum::<f64>() + f64::from(start);
                        let size: f64 = terms.map(f64::abs).sum::<f64>() + f64::from(start);
                        let bound = (k as f64 + 1.0) * f64::from(f32::EPSILON) * size;
                        assert!(
                            (f64::from(y) - exact).abs() <= bound,
                            "{m}×{k}·{n}: {y} vs {exact}"
                        );
                    }
                    bits.extend(out.iter().map(|y| y.to_bits()));
                }
            }
            bits
        });
    }
}
