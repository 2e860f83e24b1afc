//! Products with mostly-zero or 0/1 states as sums of selected columns, and the subset-sum
//! tables ("four Russians") that add one precomputed column per group of four states.

use super::dense::transpose_into;

/// The non-zero entries of a state matrix by output column: for column `c`, the indices
/// `rows[starts[c]..starts[c + 1]]` (increasing) of the terms it sums, with their values, and
/// whether every value is 1 (0/1 states: sums without products). Kept per thread and reused, so
/// products allocate nothing once warm.
#[derive(Default)]
pub(crate) struct NonZeros {
    rows: Vec<u32>,
    values: Vec<f32>,
    starts: Vec<usize>,
    binary: bool,
    /// Per column, one byte per eight states: bit `b` of byte `j` is whether state `8j + b` is
    /// non-zero.
    masks: Vec<u8>,
}

/// For each 8-bit mask, the positions of its set bits in increasing order (then zeros).
static LEFT_PACK: [[u32; 8]; 256] = {
    let mut table = [[0u32; 8]; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut bit, mut n) = (0, 0);
        while bit < 8 {
            if mask >> bit & 1 == 1 {
                table[mask][n] = bit as u32;
                n += 1;
            }
            bit += 1;
        }
        mask += 1;
    }
    table
};

impl NonZeros {
    /// Indexes the columns of `x` (`m` rows each); returns the number of non-zeros.
    fn columns(&mut self, x: &[f32], m: usize) -> usize {
        self.rows.resize(x.len(), 0);
        self.values.resize(x.len(), 0.0);
        self.starts.clear();
        self.starts.push(0);
        let bytes = m.div_ceil(8);
        self.masks.clear();
        self.masks.resize(x.len() / m * bytes, 0);
        let (mut end, mut ones) = (0, 0);
        for (c, col) in x.chunks_exact(m).enumerate() {
            let mut done = 0;
            #[cfg(target_arch = "x86_64")]
            if super::Kernel::active() >= super::Kernel::Avx2 {
                // SAFETY: the CPU has AVX2 (`Kernel::active` names only what it supports).
                done = unsafe { self.pack_avx2(col, c * bytes, &mut end, &mut ones) };
            }
            for (r, &v) in col.iter().enumerate().skip(done) {
                if v != 0.0 {
                    self.rows[end] = r as u32;
                    self.values[end] = v;
                    self.masks[c * bytes + r / 8] |= 1 << (r % 8);
                    ones += usize::from(v == 1.0);
                    end += 1;
                }
            }
            self.starts.push(end);
        }
        self.binary = ones == end;
        end
    }

    /// The non-zeros of the full groups of eight states of `col`, appended at `end` without a
    /// branch per state: a vector comparison gives a bit mask (kept in `masks` from `mask0`),
    /// [`LEFT_PACK`] the positions of its set bits, stored eight at a time (the index has room:
    /// `end` never passes the position of the states being read). Returns how many states it
    /// read.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn pack_avx2(
        &mut self,
        col: &[f32],
        mask0: usize,
        end: &mut usize,
        ones: &mut usize,
    ) -> usize {
        use std::arch::x86_64::*;
        let full = col.len() / 8 * 8;
        let (zero, one) = (_mm256_setzero_ps(), _mm256_set1_ps(1.0));
        for r0 in (0..full).step_by(8) {
            assert!(*end + 8 <= self.rows.len());
            // SAFETY: r0 + 8 ≤ col.len(), and the stores land inside the index (asserted).
            unsafe {
                let v = _mm256_loadu_ps(col.as_ptr().add(r0));
                let on = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, zero)) as usize;
                self.masks[mask0 + r0 / 8] = on as u8;
                let unit = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(v, one)) as u32;
                let picks = _mm256_loadu_si256(LEFT_PACK[on].as_ptr().cast());
                let rows = _mm256_add_epi32(picks, _mm256_set1_epi32(r0 as i32));
                _mm256_storeu_si256(self.rows.as_mut_ptr().add(*end).cast(), rows);
                let values = _mm256_permutevar8x32_ps(v, picks);
                _mm256_storeu_ps(self.values.as_mut_ptr().add(*end), values);
                *end += on.count_ones() as usize;
                *ones += unit.count_ones() as usize;
            }
        }
        full
    }
}

thread_local! {
    static NON_ZEROS: std::cell::RefCell<NonZeros> = std::cell::RefCell::default();
}

/// `out[:, c] (+)= Σ_k x[k, c] · vectors[:, k]` over the non-zero `x[k, c]` only, for `vectors`
/// (`len × m`) and `x` (`m × n`): a product with mostly-zero states as a sum of selected
/// columns — for 0/1 states, a sum without multiplications. With `vectors = W` it is `W·X`; with
/// `vectors = Wᵀ` (the rows of `W`) it is `Wᵀ·X`.
pub(crate) fn combine(vectors: Vectors<'_>, x: &[f32], out: &mut [f32], accumulate: bool) {
    let (len, m) = (vectors.len, vectors.count());
    sparse_combine_below(len, m, &|| vectors, x, out, accumulate, f64::INFINITY, None);
}

/// 0/1 states at least this dense go through a subset-sum table, if one is offered: a table
/// adds one column per group of four states with any on (`1 − (1 − d)⁴` of the groups), sums of
/// selected columns one per state on (`4d` per group); the table wins by half at d ≈ 0.28.
const TABLE_DENSITY: f64 = 0.25;

/// `out (+)= vectors·X` for `m` vectors of `len` values, by sums of selected columns: through
/// the subset-sum table that `table` gives (made on first use) for 0/1 states at least
/// [`TABLE_DENSITY`] dense, through the vectors that `vectors` gives (made on first use) for
/// states below `max_density` and for 0/1 states whose zeros are that sparse (as the sum of
/// all vectors less the sums over the zeros); returns false and does nothing (makes neither) for
/// other states. One pass over `x` measures and indexes it. The path depends only on the
/// states and on whether a table is offered.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sparse_combine_below<'a>(
    len: usize,
    m: usize,
    vectors: &dyn Fn() -> Vectors<'a>,
    x: &[f32],
    out: &mut [f32],
    accumulate: bool,
    max_density: f64,
    table: Option<&dyn Fn() -> &'a SubsetSums>,
) -> bool {
    if len == 0 {
        return true;
    }
    if m == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return true;
    }
    NON_ZEROS.with_borrow_mut(|nz| {
        let density = nz.columns(x, m) as f64 / x.len() as f64;
        if let Some(table) = table
            && nz.binary
            && density >= TABLE_DENSITY
        {
            let table = table();
            assert_eq!(
                (table.sums.len, table.m),
                (len, m),
                "a table of these vectors"
            );
            nz.groups(m);
            combine_tiles(table.sums.vectors(), nz, 0, out, accumulate);
            return true;
        }
        let columns = x.len() / m;
        // Dense 0/1 states: `V·x = V·1 − V·(1 − x)`, sums over the zeros (a fraction 1 − d of
        // the work of a dense product) and one over all vectors (a column's more), where that
        // is below the limit.
        let complement = density >= max_density;
        if complement && !(nz.binary && 1.0 - density + 1.0 / (columns as f64) < max_density) {
            return false;
        }
        let vectors = vectors();
        assert_eq!(
            (vectors.len, vectors.count()),
            (len, m),
            "vectors of this shape"
        );
        if !complement {
            combine_tiles(vectors, nz, 0, out, accumulate);
            return true;
        }
        COMPLEMENT.with_borrow_mut(|c| {
            c.zeros.clear();
            c.zeros.extend(x.iter().map(|x| 1.0 - x));
            nz.columns(&c.zeros, m);
            c.sums.resize(x.len() / m * len, 0.0);
            combine_tiles(vectors, nz, 0, &mut c.sums, false);
            c.sum_all(vectors);
            for (out, sums) in out.chunks_exact_mut(len).zip(c.sums.chunks_exact(len)) {
                for ((out, sum), all) in out.iter_mut().zip(sums).zip(&c.all) {
                    let y = (all - f64::from(*sum)) as f32;
                    *out = if accumulate { *out + y } else { y };
                }
            }
        });
        true
    })
}

/// What the products of dense 0/1 states keep per thread: the states' complements, their sums
/// and the sum of all vectors.
#[derive(Default)]
struct Complement {
    zeros: Vec<f32>,
    sums: Vec<f32>,
    all: Vec<f64>,
    block: Vec<f32>,
}

impl Complement {
    /// `all = Σ_k vectors[:, k]`, in f32 over blocks of 16 vectors and in f64 across blocks: so
    /// that `all − Σ_zeros` is as exact as a direct sum over the ones, at the cost of f32 sums.
    fn sum_all(&mut self, vectors: Vectors<'_>) {
        let (len, m) = (vectors.len, vectors.count());
        self.all.clear();
        self.all.resize(len, 0.0);
        self.block.resize(len, 0.0);
        for k0 in (0..m).step_by(16) {
            self.block.fill(0.0);
            for k in k0..m.min(k0 + 16) {
                for (b, v) in self.block.iter_mut().zip(vectors.get(k)) {
                    *b += *v;
                }
            }
            for (all, b) in self.all.iter_mut().zip(&self.block) {
                *all += f64::from(*b);
            }
        }
    }
}

thread_local! {
    static COMPLEMENT: std::cell::RefCell<Complement> = std::cell::RefCell::default();
}

/// Columns per group of a [`SubsetSums`] table.
const GROUP: usize = 4;

/// Values per cache line.
const LINE: usize = 16;

/// One cache line of values: the unit in which [`Columns`] allocates, so that it starts on a line.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Line([f32; LINE]);

/// `m` columns of `len` values, each starting on a cache line, an odd number of lines apart (the
/// rest zeros). The register tiles of [`combine_tiles`] then never load across a line boundary
/// (measured on the 784×2000 subset-sum table of a 784×500 coupling, 50 columns, one core: 12.5
/// → 15.9 additions per ns), and columns do not crowd into a few cache sets, as they would a
/// power-of-two distance apart (500 values padded to 512: 3.6 → 4.7 µs per column).
#[derive(Clone, Debug)]
pub(crate) struct Columns {
    lines: Vec<Line>,
    len: usize,
}

impl Columns {
    /// `m` columns of `len` zeros.
    fn zeros(len: usize, m: usize) -> Self {
        Columns::zeros_reusing(None, len, m)
    }

    /// [`Columns::zeros`] in the storage of `old`, if given (no new allocation if it fits).
    pub(crate) fn zeros_reusing(old: Option<Columns>, len: usize, m: usize) -> Self {
        let mut lines = old.map(|c| c.lines).unwrap_or_default();
        lines.clear();
        lines.resize(Columns::lines(len) * m, Line::default());
        Columns { lines, len }
    }

    /// Lines per column.
    fn lines(len: usize) -> usize {
        len.div_ceil(LINE) | 1
    }

    /// `m` columns of `len` values in the storage of `old`, for a caller that writes every value:
    /// `old` as it is if it has this shape (its padding is zero, as nothing writes padding),
    /// else [`Columns::zeros_reusing`]. Remaking the columns of changing weights then neither
    /// zeroes nor allocates them again.
    fn overwritten(old: Option<Columns>, len: usize, m: usize) -> Self {
        match old {
            Some(c) if c.len == len && c.lines.len() == Columns::lines(len) * m => c,
            old => Columns::zeros_reusing(old, len, m),
        }
    }

    /// The columns of `x` (`rows × cols`, column-major), in the storage of `old` if given.
    pub(crate) fn copy(old: Option<Columns>, x: &[f32], rows: usize) -> Self {
        let cols = x.len().checked_div(rows).unwrap_or(0);
        let mut c = Columns::overwritten(old, rows, cols);
        let stride = c.stride();
        for (to, from) in c
            .values_mut()
            .chunks_exact_mut(stride)
            .zip(x.chunks(rows.max(1)))
        {
            to[..rows].copy_from_slice(from);
        }
        c
    }

    /// The transpose `xᵀ` of `x` (`rows × cols`, column-major): one column per row of `x`, in
    /// the storage of `old` if given.
    pub(crate) fn transpose(old: Option<Columns>, x: &[f32], rows: usize) -> Self {
        let cols = x.len().checked_div(rows).unwrap_or(0);
        let mut t = Columns::overwritten(old, cols, rows);
        let stride = t.stride();
        transpose_into(x, rows, 0.0, t.values_mut(), stride, 0);
        t
    }

    /// Values from the start of one column to the start of the next.
    pub(crate) fn stride(&self) -> usize {
        Columns::lines(self.len) * LINE
    }

    pub(super) fn values(&self) -> &[f32] {
        // SAFETY: a `Line` is 16 f32s with no padding (repr(C), size 64 = its alignment), so the
        // lines are `16 · lines.len()` consecutive initialised f32s.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.lines.len() * LINE) }
    }

    /// The columns one after another, each `stride` long (`len` values, then padding).
    pub(crate) fn values_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `values`, borrowed mutably from `self`.
        unsafe {
            std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.lines.len() * LINE)
        }
    }

    /// The columns, for [`sparse_combine_below`].
    pub(crate) fn vectors(&self) -> Vectors<'_> {
        Vectors {
            values: self.values(),
            len: self.len,
            stride: self.stride(),
        }
    }
}

/// Vectors of `len` values, vector `k` at `values[k·stride..][..len]`: what products with
/// states add up.
#[derive(Clone, Copy)]
pub(crate) struct Vectors<'a> {
    values: &'a [f32],
    len: usize,
    stride: usize,
}

impl<'a> Vectors<'a> {
    /// `values.len() / len` vectors stored one after another (a column-major `len × m` matrix).
    pub(crate) fn packed(values: &'a [f32], len: usize) -> Self {
        Vectors {
            values,
            len,
            stride: len,
        }
    }

    /// How many vectors there are.
    fn count(&self) -> usize {
        self.values.len().checked_div(self.stride).unwrap_or(0)
    }

    /// Vector `k`.
    fn get(&self, k: usize) -> &'a [f32] {
        &self.values[k * self.stride..][..self.len]
    }
}

/// The sums of every subset of each group of four consecutive columns of a matrix
/// (`len × m`): column `16·g + s` of the table is `Σ_{b ∈ s} vectors[:, 4g + b]` for the bits
/// `b` of `s`. A product with 0/1 states then adds one table column per group (the one its four
/// states select) instead of one matrix column per unit that is on: `m/4` sums whatever the
/// density, the "method of the four Russians". The table holds four times the matrix.
#[derive(Clone, Debug)]
pub struct SubsetSums {
    /// Columns of the matrix the table was made from.
    m: usize,
    sums: Columns,
}

impl SubsetSums {
    /// The table of `vectors` (`len × m`, column-major).
    pub fn new(vectors: &[f32], len: usize) -> Self {
        SubsetSums::of(Vectors::packed(vectors, len))
    }

    /// The table of `vectors`.
    pub(crate) fn of(vectors: Vectors<'_>) -> Self {
        let (len, m) = (vectors.len, vectors.count());
        let mut sums = Columns::zeros(len, m.div_ceil(GROUP) << GROUP);
        let stride = sums.stride();
        if stride > 0 {
            for (g, table) in sums
                .values_mut()
                .chunks_exact_mut(stride << GROUP)
                .enumerate()
            {
                // Subset s = its highest bit b plus s without it, which comes earlier.
                for s in 1..1usize << GROUP {
                    let b = usize::BITS as usize - 1 - s.leading_zeros() as usize;
                    let k = GROUP * g + b;
                    let (done, rest) = table.split_at_mut(s * stride);
                    let target = &mut rest[..len];
                    let without = &done[(s ^ (1 << b)) * stride..][..len];
                    if k < m {
                        for ((t, w), c) in target.iter_mut().zip(without).zip(vectors.get(k)) {
                            *t = w + c;
                        }
                    } else {
                        target.copy_from_slice(without);
                    }
                }
            }
        }
        SubsetSums { m, sums }
    }
}

impl NonZeros {
    /// Indexes the 0/1 states last given to [`NonZeros::columns`] (`m` rows each) by the table
    /// column each group of [`GROUP`] states selects: the group's nibble of the state masks.
    fn groups(&mut self, m: usize) {
        const { assert!(GROUP == 4, "two groups per mask byte") };
        let (groups, bytes) = (m.div_ceil(GROUP), m.div_ceil(8));
        let columns = self.masks.len() / bytes.max(1);
        self.rows.resize(columns * groups, 0);
        self.starts.clear();
        self.starts.push(0);
        self.binary = true;
        let mut end = 0;
        for masks in self.masks.chunks_exact(bytes) {
            for g in 0..groups {
                let code = u32::from(masks[g / 2] >> (4 * (g % 2)) & 15);
                self.rows[end] = (g as u32) << GROUP | code;
                end += usize::from(code != 0);
            }
            self.starts.push(end);
        }
    }
}

/// Output rows per register tile: 8 AVX registers of 8 lanes.
const TILE: usize = 64;
/// Output rows per register tile with AVX-512: 8 registers of 16 lanes.
const WIDE_TILE: usize = 128;

/// The fewest columns of `vectors` per cache block of a tile: 64 pieces of 64 values (16 KiB)
/// stay in L1 while every output column reads them (measured on 784×500 products: 10.3 µs per
/// column at density 0.5 against 13.2 µs unblocked).
const BLOCK: usize = 64;

thread_local! {
    /// Where each block of `k` starts in each column's terms (see [`combine_tiles_with`]).
    static BOUNDS: std::cell::RefCell<Vec<usize>> = std::cell::RefCell::default();
}

/// One tile of `T` output rows from `r0`, for every column of `out`, summing the selected pieces
/// of `vectors` block by block of `k` (`bounds`: for each column, where each of the `blocks`
/// blocks starts in `nz`, then where the column ends), all columns per block: a block's pieces
/// stay in L1 while every column reads them. Partial sums pass through `out` between blocks,
/// which leaves each element's order of summation (increasing `k`) as it would be in one pass,
/// so the bits do not depend on the blocking. A tile may reach past `len` into the padding of
/// the vectors (`r0 + T ≤ stride`); only rows below `len` are stored.
#[inline(always)]
fn tile<const T: usize>(
    vectors: Vectors<'_>,
    r0: usize,
    nz: &NonZeros,
    blocks: usize,
    bounds: &[usize],
    out: &mut [f32],
    accumulate: bool,
) {
    let len = vectors.len;
    for b in 0..blocks {
        for (o, bounds) in out
            .chunks_exact_mut(len)
            .zip(bounds.chunks_exact(blocks + 1))
        {
            let (from, to) = (bounds[b], bounds[b + 1]);
            let continued = b > 0 || accumulate;
            if from == to && continued {
                continue;
            }
            let o = &mut o[r0..len.min(r0 + T)];
            let sum = |acc| add_pieces::<T>(acc, vectors, r0, nz, from..to);
            if let Ok(o) = <&mut [f32; T]>::try_from(&mut *o) {
                *o = sum(if continued { *o } else { [0f32; T] });
            } else {
                let mut acc = [0f32; T];
                if continued {
                    acc[..o.len()].copy_from_slice(o);
                }
                o.copy_from_slice(&sum(acc)[..o.len()]);
            }
        }
    }
}

/// `acc` plus the pieces `[r0, r0 + T)` of the vectors that the terms `terms` of `nz` select
/// (times their values unless the states are 0/1), in order.
#[inline(always)]
fn add_pieces<const T: usize>(
    mut acc: [f32; T],
    vectors: Vectors<'_>,
    r0: usize,
    nz: &NonZeros,
    terms: std::ops::Range<usize>,
) -> [f32; T] {
    let ks = &nz.rows[terms.clone()];
    // Indices increase within a column, so the last term reaches furthest.
    debug_assert!(ks.is_sorted(), "indices of a column in increasing order");
    if let Some(&last) = ks.last() {
        assert!(last as usize * vectors.stride + r0 + T <= vectors.values.len());
    }
    let base = vectors.values.as_ptr().wrapping_add(r0);
    // SAFETY: every k of `ks` is at most the last, whose piece lies inside `values` (asserted).
    let piece = |k: u32| -> &[f32; T] { unsafe { &*base.add(k as usize * vectors.stride).cast() } };
    if nz.binary {
        for &k in ks {
            let v = piece(k);
            for i in 0..T {
                acc[i] += v[i];
            }
        }
    } else {
        for (&k, &xk) in ks.iter().zip(&nz.values[terms]) {
            let v = piece(k);
            for i in 0..T {
                acc[i] += xk * v[i];
            }
        }
    }
    acc
}

/// The tiles of [`combine`] for the columns of `out`, output columns `first..` of those
/// `nz` indexes.
fn combine_tiles(
    vectors: Vectors<'_>,
    nz: &NonZeros,
    first: usize,
    out: &mut [f32],
    accumulate: bool,
) {
    BOUNDS
        .with_borrow_mut(|bounds| combine_tiles_with(vectors, nz, first, out, accumulate, bounds));
}

dispatch! {
    /// [`combine_tiles`] with room for the block bounds: tiles of [`TILE`] rows, then of a
    /// cache line, of 8, single rows.
    fn combine_tiles_with(vectors: Vectors<'_>, nz: &NonZeros, first: usize, out: &mut [f32], accumulate: bool, bounds: &mut Vec<usize>) {
        // Blocks of k long enough that a column finds ~16 terms in each, so that the partial
        // sums' round trips through `out` stay a small part of the work.
        let (len, m) = (vectors.len, vectors.count());
        let columns = out.len() / len;
        let terms = nz.starts[first + columns] - nz.starts[first];
        let block = (16 * m * columns).checked_div(terms).unwrap_or(m).max(BLOCK);
        let blocks = m.div_ceil(block).max(1);
        // Found once for every tile: a scan per tile measured ~10 % of the products.
        bounds.clear();
        for c in first..first + columns {
            let (mut i, end) = (nz.starts[c], nz.starts[c + 1]);
            for b in 1..=blocks {
                bounds.push(i);
                while i < end && (nz.rows[i] as usize) < b * block {
                    i += 1;
                }
            }
            bounds.push(end);
        }
        // Tiles may reach into the padding of line-aligned columns: a last tile of 52 rows
        // costs as much as one of 64, six of 8 and four single rows far more.
        let (reach, mut r0) = (vectors.stride, 0);
        // 512-bit registers: 8 of them hold twice the rows, so twice the additions are in
        // flight (an addition waits 4 cycles for the one before it in the same register).
        if super::Kernel::active() == super::Kernel::Avx512 {
            while r0 < len && r0 + WIDE_TILE <= reach {
                tile::<WIDE_TILE>(vectors, r0, nz, blocks, bounds, out, accumulate);
                r0 += WIDE_TILE;
            }
        }
        while r0 < len && r0 + TILE <= reach {
            tile::<TILE>(vectors, r0, nz, blocks, bounds, out, accumulate);
            r0 += TILE;
        }
        while r0 < len && r0 + LINE <= reach {
            tile::<LINE>(vectors, r0, nz, blocks, bounds, out, accumulate);
            r0 += LINE;
        }
        while r0 + 8 <= len {
            tile::<8>(vectors, r0, nz, blocks, bounds, out, accumulate);
            r0 += 8;
        }
        while r0 < len {
            tile::<1>(vectors, r0, nz, blocks, bounds, out, accumulate);
            r0 += 1;
        }
    }
}
