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
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
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
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2.
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
/// states below `max_density`; returns false and does nothing (makes neither) for denser states
/// without a table. One pass over `x` measures and indexes it. The path depends only on the
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
        if density >= max_density {
            return false;
        }
        let vectors = vectors();
        assert_eq!(
            (vectors.len, vectors.count()),
            (len, m),
            "vectors of this shape"
        );
        combine_tiles(vectors, nz, 0, out, accumulate);
        true
    })
}

/// [`transpose_into`] for all of `xᵀ`, in parallel over fixed blocks of its columns when it is
/// large (each element is written once, so the bits never depend on threads).
pub(crate) fn par_transpose_into(x: &[f32], rows: usize, beta: f32, out: &mut [f32]) {
    use rayon::prelude::*;
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
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX.
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

    /// The columns of `x` (`rows × cols`, column-major).
    pub(crate) fn copy(x: &[f32], rows: usize) -> Self {
        let cols = x.len().checked_div(rows).unwrap_or(0);
        let mut c = Columns::zeros(rows, cols);
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

    /// The transpose `xᵀ` of `x` (`rows × cols`, column-major): one column per row of `x`.
    pub(crate) fn transpose(x: &[f32], rows: usize) -> Self {
        let cols = x.len().checked_div(rows).unwrap_or(0);
        let mut t = Columns::zeros(cols, rows);
        let stride = t.stride();
        transpose_into(x, rows, 0.0, t.values_mut(), stride, 0);
        t
    }

    /// Values from the start of one column to the start of the next.
    pub(crate) fn stride(&self) -> usize {
        Columns::lines(self.len) * LINE
    }

    fn values(&self) -> &[f32] {
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

/// The tiles of [`sparse_combine`] for the columns of `out`, output columns `first..` of those
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked transpose agrees with the definition, edges included: into line-aligned
    /// columns (padding left zero), and by blocks of columns added to a scaled output.
    #[test]
    fn transpose_is_exact() {
        for (rows, cols) in [(1, 1), (8, 8), (19, 37), (64, 13)] {
            let x: Vec<f32> = (0..rows * cols).map(|k| k as f32).collect();
            let t = Columns::transpose(&x, rows);
            let stride = t.stride();
            assert_eq!(t.values().len(), stride * rows);
            for i in 0..rows {
                for j in 0..stride {
                    let expected = if j < cols { x[i + rows * j] } else { 0.0 };
                    assert_eq!(t.values()[j + stride * i], expected);
                }
            }
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
    }

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
