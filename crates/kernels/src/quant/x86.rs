//! x86 kernels at three levels: AVX2+FMA+F16C, AVX-VNNI and AVX-512 VNNI (on 256-bit vectors).
//! Same arithmetic as the portable ones: integer dot products per block (unsigned × signed
//! bytes), scaled in f32 with FMA. The levels differ in how a block's integer dot product is
//! done: `maddubs` + `madd` on AVX2, one `vpdpbusd` with VNNI. Their sums are equal: with these
//! formats a pair of `maddubs` products never reaches the i16 limit (at most 2 × 128 × 127).
//!
//! Every load goes through a bounds-checked slice, so a wrong length panics instead of reading
//! out of bounds; the dispatcher validates all lengths before calling in.

use std::arch::x86_64::*;

use super::formats::*;
use super::{each_row, DotFn, ROW_TILE, TOKEN_TILE};
use crate::dtype::GgmlType;
use crate::x86::hsum;

const _: () = assert!(TOKEN_TILE == 8, "the tile dispatch below instantiates kernels for 1..=8 tokens");

/// The kernels of one level: `$features` is what the level's CPUs have, `$dpbusd` adds the
/// products of unsigned bytes with signed bytes, summed in fours, to i32 lanes.
macro_rules! level_kernels {
    ($level:ident, $features:literal, $dpbusd:ident) => {
        pub(super) mod $level {
            use super::*;

            pub(in super::super) fn kernel(ty: GgmlType) -> Option<DotFn> {
                kernel_table!(ty, dot_float, dot_32, dot_k)
            }

            /// Runs the instance of `$kernel` specialised for the number of tokens in `$acts`,
            /// so that the per-token accumulators live in registers.
            macro_rules! per_tile {
                ($kernel:ident::<$f:ty>($w:expr, $acts:expr, $out:expr)) => {
                    // SAFETY: this level's kernels are only handed out by `kernel`, which
                    // `quant::kernel` calls only when the CPU has the level's features.
                    unsafe {
                        match $acts.len() {
                            1 => $kernel::<$f, 1>($w, $acts, $out),
                            2 => $kernel::<$f, 2>($w, $acts, $out),
                            3 => $kernel::<$f, 3>($w, $acts, $out),
                            4 => $kernel::<$f, 4>($w, $acts, $out),
                            5 => $kernel::<$f, 5>($w, $acts, $out),
                            6 => $kernel::<$f, 6>($w, $acts, $out),
                            7 => $kernel::<$f, 7>($w, $acts, $out),
                            _ => $kernel::<$f, 8>($w, $acts, $out),
                        }
                    }
                };
            }

            fn dot_float<F: AvxFloat>(w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
                each_row(w, acts, out, |w, acts, out| per_tile!(dot_float_n::<F>(w, acts, out)));
            }

            fn dot_32<F: Avx32>(w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
                per_tile!(dot_32_n::<F>(w, acts, out))
            }

            fn dot_k<F: AvxK>(w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
                each_row(w, acts, out, |w, acts, out| per_tile!(dot_k_n::<F>(w, acts, out)));
            }

            #[target_feature(enable = $features)]
            unsafe fn dot_float_n<F: AvxFloat, const N: usize>(w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
                let wb = F::TY.block_bytes();
                let full = w.len() / wb / 8 * 8;
                let mut acc = [_mm256_setzero_ps(); N];
                for (i, w8) in w[..full * wb].chunks_exact(8 * wb).enumerate() {
                    prefetch_ahead(w8);
                    let v = F::load8(w8);
                    for (acc, a) in acc.iter_mut().zip(acts) {
                        *acc = _mm256_fmadd_ps(v, load_f32x8(&a[32 * i..]), *acc);
                    }
                }
                for ((o, acc), a) in out.iter_mut().zip(acc).zip(acts) {
                    *o = hsum(acc) + float_dot::<F>(&w[full * wb..], &a[4 * full..]);
                }
            }

            /// The [`ROW_TILE`] rows at once, a row per 32-bit lane: each 4-byte group of a
            /// token's block is broadcast against that group of every row, so a block's sums
            /// land in their rows' lanes and its scales apply to all the rows in one multiply.
            #[target_feature(enable = $features)]
            unsafe fn dot_32_n<F: Avx32, const N: usize>(w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
                let bb = F::TY.block_bytes();
                let row = w.len() / ROW_TILE;
                let mut acc = [_mm256_setzero_ps(); N];
                for i in 0..row / bb {
                    let at = i * bb;
                    for r in 0..ROW_TILE {
                        prefetch_ahead(&w[r * row + at..][..bb]);
                    }
                    let q = F::quants_rows(w, row, at);
                    let (d, m) = scales_rows(w, row, at);
                    // The unsigned operand must be the weights: move signed quants' signs onto x.
                    let mut q_abs = q;
                    if F::SIGNED {
                        for q in &mut q_abs {
                            *q = _mm256_sign_epi8(*q, *q);
                        }
                    }
                    for j in 0..N {
                        let (dx, s, qx) = q8_parts(&acts[j][i * Q8_BYTES..(i + 1) * Q8_BYTES]);
                        let mut sum = _mm256_setzero_si256();
                        for k in 0..ROW_TILE {
                            let y = _mm256_set1_epi32(i32::from_le_bytes(bytes(qx, 4 * k)));
                            let y = if F::SIGNED { _mm256_sign_epi8(y, q[k]) } else { y };
                            sum = $dpbusd(sum, q_abs[k], y);
                        }
                        // The portable kernel's operations in its order, unfused: Gemma 3's
                        // logits move by whole units with the rounding of these sums.
                        let scale = _mm256_mul_ps(d, _mm256_set1_ps(dx));
                        let mut term = _mm256_mul_ps(scale, _mm256_cvtepi32_ps(sum));
                        // Only the unsigned formats have a min.
                        if !F::SIGNED {
                            term = _mm256_add_ps(term, _mm256_mul_ps(m, _mm256_set1_ps(s)));
                        }
                        acc[j] = _mm256_add_ps(acc[j], term);
                    }
                }
                for j in 0..N {
                    let mut lanes = [0f32; ROW_TILE];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), acc[j]);
                    for (r, lane) in lanes.into_iter().enumerate() {
                        out[r * N + j] = lane;
                    }
                }
            }

            #[target_feature(enable = $features)]
            unsafe fn dot_k_n<F: AvxK, const N: usize>(w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
                let mut acc = [_mm256_setzero_ps(); N];
                for (i, wb) in w.chunks_exact(F::TY.block_bytes()).enumerate() {
                    prefetch_ahead(wb);
                    let s = F::scales(wb);
                    let q = F::load(wb);
                    // A 32-value vector spans two 16-value scale groups, one per 128-bit lane.
                    let mut sc = [_mm256_setzero_si256(); 8];
                    for (k, sc) in sc.iter_mut().enumerate() {
                        *sc = _mm256_set_m128i(_mm_set1_epi16(s.sc[2 * k + 1]), _mm_set1_epi16(s.sc[2 * k]));
                    }
                    let mins = load_i16x16(&s.m);
                    for j in 0..N {
                        let (dx, qx, bsums) = q8k_parts(&acts[j][i * Q8K_BYTES..(i + 1) * Q8K_BYTES]);
                        // The 16-value groups have their own i16 scales, applied to the i16 pair
                        // sums before widening: `maddubs` at every level.
                        let mut isum = _mm256_setzero_si256();
                        for k in 0..8 {
                            let prod = _mm256_maddubs_epi16(q[k], load256(&qx[32 * k..]));
                            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(prod, sc[k]));
                        }
                        let imin = _mm256_madd_epi16(mins, load256(bsums));
                        acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(dx * s.d), _mm256_cvtepi32_ps(isum), acc[j]);
                        acc[j] =
                            _mm256_fnmadd_ps(_mm256_set1_ps(dx * s.dmin), _mm256_cvtepi32_ps(imin), acc[j]);
                    }
                }
                for j in 0..N {
                    out[j] = hsum(acc[j]);
                }
            }
        }
    };
}

level_kernels!(avx2, "avx2,fma,f16c", dpbusd_avx2);
level_kernels!(avxvnni, "avx2,fma,f16c,avxvnni", dpbusd_avxvnni);
level_kernels!(avx512, "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", dpbusd_avx512);

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dpbusd_avx2(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
}

#[inline]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn dpbusd_avxvnni(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(acc, u, s)
}

#[inline]
#[target_feature(enable = "avx2,avx512vl,avx512vnni")]
unsafe fn dpbusd_avx512(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(acc, u, s)
}

/// [`formats::quantize_q8`] of one block of 32 values into `dst` (`Q8_BYTES`), eight lanes at a
/// time with the same operations, so the same bytes.
///
/// # Safety
/// The CPU has AVX2. (Every load and store goes through a bounds-checked slice.)
#[target_feature(enable = "avx2")]
pub(super) unsafe fn quantize_q8(x: &[f32], dst: &mut [u8]) {
    let x = &x[..QK];
    let v: [__m256; 4] = std::array::from_fn(|k| _mm256_loadu_ps(x[8 * k..].as_ptr()));
    let sign = _mm256_set1_ps(-0.0);
    let abs = v.map(|v| _mm256_andnot_ps(sign, v));
    let m = _mm256_max_ps(_mm256_max_ps(abs[0], abs[1]), _mm256_max_ps(abs[2], abs[3]));
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
    let (d, id) = q8_scale(amax);
    let id = _mm256_set1_ps(id);
    let (half, one) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
    // `round_half_away`: the truncated value, one step away from zero when the fraction is a
    // half or more.
    let q = v.map(|v| {
        let scaled = _mm256_mul_ps(v, id);
        let whole = _mm256_cvtepi32_ps(_mm256_cvttps_epi32(scaled));
        let fraction = _mm256_sub_ps(scaled, whole);
        let up = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(fraction, half), one);
        let down = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_LE_OQ>(fraction, _mm256_sub_ps(_mm256_setzero_ps(), half)),
            one,
        );
        _mm256_cvtps_epi32(_mm256_sub_ps(_mm256_add_ps(whole, up), down))
    });
    let total = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let total = _mm_add_epi32(_mm256_castsi256_si128(total), _mm256_extracti128_si256::<1>(total));
    let total = _mm_add_epi32(total, _mm_shuffle_epi32::<0b01_00_11_10>(total));
    let sum = _mm_cvtsi128_si32(_mm_add_epi32(total, _mm_shuffle_epi32::<0b10_11_00_01>(total)));
    // Packing works within 128-bit halves; the permutation puts the values back in order.
    let bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    let quants = &mut dst[8..8 + QK];
    _mm256_storeu_si256(quants.as_mut_ptr().cast(), bytes);
    q8_header(d, sum, dst);
}

// SAFETY (all helpers below): callers run with AVX2, FMA and F16C enabled; each load reads
// exactly the bytes of a slice that was cut to that length first.

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load128(b: &[u8]) -> __m128i {
    let b = &b[..16];
    _mm_loadu_si128(b.as_ptr().cast())
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load256(b: &[u8]) -> __m256i {
    let b = &b[..32];
    _mm256_loadu_si256(b.as_ptr().cast())
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_i16x16(v: &[i16; 16]) -> __m256i {
    _mm256_loadu_si256(v.as_ptr().cast())
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_f32x8(b: &[u8]) -> __m256 {
    let b = &b[..32];
    _mm256_loadu_ps(b.as_ptr().cast())
}

/// Asks for the weights `PREFETCH_AHEAD` bytes past `block`. Decode streams every weight from
/// memory once per token, and the hardware prefetchers alone leave bandwidth unused: measured
/// on SmolLM2-135M's matmuls on one thread, 17.6 ms per token without this, 10.2 ms with it.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn prefetch_ahead(block: &[u8]) {
    const PREFETCH_AHEAD: usize = 4096;
    for line in (0..block.len()).step_by(64) {
        // A prefetch never faults, so the address may run past the slice (it is not dereferenced).
        _mm_prefetch::<_MM_HINT_T0>(block.as_ptr().wrapping_add(PREFETCH_AHEAD + line).cast());
    }
}

/// Each byte of `v` and `mask`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn mask8(v: __m256i, mask: u8) -> __m256i {
    _mm256_and_si256(v, _mm256_set1_epi8(mask as i8))
}

trait AvxFloat: FloatFormat {
    /// Eight consecutive values from `b`.
    unsafe fn load8(b: &[u8]) -> __m256;
}

impl AvxFloat for F32 {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load8(b: &[u8]) -> __m256 {
        load_f32x8(b)
    }
}

impl AvxFloat for F16 {
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn load8(b: &[u8]) -> __m256 {
        _mm256_cvtph_ps(load128(b))
    }
}

impl AvxFloat for BF16 {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load8(b: &[u8]) -> __m256 {
        // A bf16 is the top half of an f32.
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(b)), 16))
    }
}

trait Avx32: Format32 {
    /// Whether the quants are signed; unsigned ones are in 0..32 and go straight into `maddubs`.
    const SIGNED: bool;
    /// The 32 quants of block `b` in value order.
    unsafe fn quants(b: &[u8]) -> __m256i;

    /// The quants of the block at byte `at` of each of the [`ROW_TILE`] rows of `w` (`row`
    /// bytes each), a row per 32-bit lane: vector `k` holds quants `4k..4k + 4` of every row.
    /// (Always inlined, and so without `target_feature`: the kernels' features apply.)
    #[inline(always)]
    unsafe fn quants_rows(w: &[u8], row: usize, at: usize) -> [__m256i; ROW_TILE] {
        let mut q = [_mm256_setzero_si256(); ROW_TILE];
        for (r, q) in q.iter_mut().enumerate() {
            *q = Self::quants(&w[r * row + at..][..Self::TY.block_bytes()]);
        }
        transpose_8x8(q)
    }
}

/// The f16 scale that starts the block at byte `at` of each of the [`ROW_TILE`] rows of `w`
/// (`row` bytes each), and the f16 after it (the min, in the formats that have one), a row per
/// lane.
#[inline(always)]
unsafe fn scales_rows(w: &[u8], row: usize, at: usize) -> (__m256, __m256) {
    let mut pairs = [0i32; ROW_TILE];
    for (r, pair) in pairs.iter_mut().enumerate() {
        *pair = i32::from_le_bytes(bytes(w, r * row + at));
    }
    let [p0, p1, p2, p3, p4, p5, p6, p7] = pairs;
    let pairs = _mm256_setr_epi32(p0, p1, p2, p3, p4, p5, p6, p7);
    // Each half's four scales, then its four mins; then both halves' scales, then the mins.
    let split = _mm256_shuffle_epi8(
        pairs,
        _mm256_setr_epi8(
            0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10,
            11, 14, 15,
        ),
    );
    let split = _mm256_permute4x64_epi64::<0b11_01_10_00>(split);
    (_mm256_cvtph_ps(_mm256_castsi256_si128(split)), _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(split)))
}

/// The 8×8 matrix of 32-bit values whose rows are `v`, transposed.
#[inline(always)]
unsafe fn transpose_8x8(v: [__m256i; 8]) -> [__m256i; 8] {
    // Within each 128-bit half: pairs of rows interleaved by 32 bits, then by 64 bits, gives
    // columns of four rows; the halves then pair up across the two groups of four rows.
    let mut t = [_mm256_setzero_si256(); 8];
    for p in 0..4 {
        t[2 * p] = _mm256_unpacklo_epi32(v[2 * p], v[2 * p + 1]);
        t[2 * p + 1] = _mm256_unpackhi_epi32(v[2 * p], v[2 * p + 1]);
    }
    let mut u = [_mm256_setzero_si256(); 8];
    for g in 0..2 {
        let (a, b) = (4 * g, 4 * g + 2);
        u[a] = _mm256_unpacklo_epi64(t[a], t[b]);
        u[a + 1] = _mm256_unpackhi_epi64(t[a], t[b]);
        u[a + 2] = _mm256_unpacklo_epi64(t[a + 1], t[b + 1]);
        u[a + 3] = _mm256_unpackhi_epi64(t[a + 1], t[b + 1]);
    }
    let mut out = [_mm256_setzero_si256(); 8];
    for k in 0..4 {
        out[k] = _mm256_permute2x128_si256::<0x20>(u[k], u[k + 4]);
        out[k + 4] = _mm256_permute2x128_si256::<0x31>(u[k], u[k + 4]);
    }
    out
}

/// [`Avx32::quants_rows`] of 4-bit blocks whose nibbles start at byte `at`: the raw bytes of
/// the eight rows are transposed (4 bytes hold values `4k..4k + 4` in their low nibbles and
/// `16 + 4k..` in their high ones), and only then split into nibbles.
#[inline(always)]
unsafe fn nibbles_rows(w: &[u8], row: usize, at: usize) -> [__m256i; ROW_TILE] {
    // Rows r and r + 4 share a vector, a half each; a 4×4 transpose in each half.
    let mut v = [_mm256_setzero_si256(); 4];
    for (r, v) in v.iter_mut().enumerate() {
        *v = _mm256_set_m128i(load128(&w[(r + 4) * row + at..]), load128(&w[r * row + at..]));
    }
    let (t0, t1) = (_mm256_unpacklo_epi32(v[0], v[1]), _mm256_unpackhi_epi32(v[0], v[1]));
    let (t2, t3) = (_mm256_unpacklo_epi32(v[2], v[3]), _mm256_unpackhi_epi32(v[2], v[3]));
    let bytes = [
        _mm256_unpacklo_epi64(t0, t2),
        _mm256_unpackhi_epi64(t0, t2),
        _mm256_unpacklo_epi64(t1, t3),
        _mm256_unpackhi_epi64(t1, t3),
    ];
    let low4 = _mm256_set1_epi8(0x0F);
    let mut q = [_mm256_setzero_si256(); ROW_TILE];
    for (k, b) in bytes.into_iter().enumerate() {
        q[k] = _mm256_and_si256(b, low4);
        q[k + 4] = _mm256_and_si256(_mm256_srli_epi16(b, 4), low4);
    }
    q
}

/// 16 bytes of nibbles as 32 bytes: low nibbles (values 0..16) in the low lane.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn nibbles(b: &[u8]) -> __m256i {
    let raw = load128(b);
    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F))
}

/// Bit `j` of the little-endian u32 at `b[0..4]` as 0x10 in byte `j` (the fifth bit of value `j`).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn fifth_bits(b: &[u8]) -> __m256i {
    let bits = _mm256_set1_epi32(i32::from_le_bytes(bytes(b, 0)));
    // Byte j takes source byte j / 8 and tests bit j % 8 of it.
    let spread = _mm256_shuffle_epi8(
        bits,
        _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
        ),
    );
    let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
    mask8(set, 0x10)
}

impl Avx32 for Q4_0 {
    const SIGNED: bool = true;
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn quants(b: &[u8]) -> __m256i {
        _mm256_sub_epi8(nibbles(&b[2..]), _mm256_set1_epi8(8))
    }
    #[inline(always)]
    unsafe fn quants_rows(w: &[u8], row: usize, at: usize) -> [__m256i; ROW_TILE] {
        let mut q = nibbles_rows(w, row, at + 2);
        for q in &mut q {
            *q = _mm256_sub_epi8(*q, _mm256_set1_epi8(8));
        }
        q
    }
}

impl Avx32 for Q4_1 {
    const SIGNED: bool = false;
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn quants(b: &[u8]) -> __m256i {
        nibbles(&b[4..])
    }
    #[inline(always)]
    unsafe fn quants_rows(w: &[u8], row: usize, at: usize) -> [__m256i; ROW_TILE] {
        nibbles_rows(w, row, at + 4)
    }
}

impl Avx32 for Q5_0 {
    const SIGNED: bool = true;
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn quants(b: &[u8]) -> __m256i {
        let q = _mm256_or_si256(nibbles(&b[6..]), fifth_bits(&b[2..]));
        _mm256_sub_epi8(q, _mm256_set1_epi8(16))
    }
}

impl Avx32 for Q5_1 {
    const SIGNED: bool = false;
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn quants(b: &[u8]) -> __m256i {
        _mm256_or_si256(nibbles(&b[8..]), fifth_bits(&b[4..]))
    }
}

impl Avx32 for Q8_0 {
    const SIGNED: bool = true;
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn quants(b: &[u8]) -> __m256i {
        load256(&b[2..])
    }
}

trait AvxK: FormatK {
    /// The 256 quants (unsigned) in value order, 32 per vector.
    unsafe fn load(b: &[u8]) -> [__m256i; 8];
}

/// Q4_K/Q5_K quants, as in `formats::quants_q45k`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_q45k(qs: &[u8], qh: Option<&[u8]>) -> [__m256i; 8] {
    let low4 = _mm256_set1_epi8(0x0F);
    let qh = qh.map(|qh| load256(qh));
    let mut q = [_mm256_setzero_si256(); 8];
    for c in 0..4 {
        let raw = load256(&qs[32 * c..]);
        q[2 * c] = _mm256_and_si256(raw, low4);
        q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
        if let Some(qh) = qh {
            for (half, q) in q[2 * c..2 * c + 2].iter_mut().enumerate() {
                let bit = 1u8 << (2 * c + half);
                let set = _mm256_cmpeq_epi8(mask8(qh, bit), _mm256_set1_epi8(bit as i8));
                *q = _mm256_or_si256(*q, mask8(set, 0x10));
            }
        }
    }
    q
}

impl AvxK for Q4K {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load(b: &[u8]) -> [__m256i; 8] {
        load_q45k(&b[16..144], None)
    }
}

impl AvxK for Q5K {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load(b: &[u8]) -> [__m256i; 8] {
        load_q45k(&b[48..176], Some(&b[16..48]))
    }
}

impl AvxK for Q6K {
    /// As in `formats::Q6K::quants`: per half, four runs from `ql` nibbles and `qh` bit pairs.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load(b: &[u8]) -> [__m256i; 8] {
        let low4 = _mm256_set1_epi8(0x0F);
        let mut q = [_mm256_setzero_si256(); 8];
        for n in 0..2 {
            let ql0 = load256(&b[64 * n..]);
            let ql1 = load256(&b[64 * n + 32..]);
            let qh = load256(&b[128 + 32 * n..]);
            // Shifts are on 16-bit lanes; masking first keeps bits inside their byte.
            let lo0 = _mm256_and_si256(ql0, low4);
            let lo1 = _mm256_and_si256(ql1, low4);
            let hi0 = _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4);
            let hi1 = _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4);
            q[4 * n] = _mm256_or_si256(lo0, _mm256_slli_epi16(mask8(qh, 0x03), 4));
            q[4 * n + 1] = _mm256_or_si256(lo1, _mm256_slli_epi16(mask8(qh, 0x0C), 2));
            q[4 * n + 2] = _mm256_or_si256(hi0, mask8(qh, 0x30));
            q[4 * n + 3] = _mm256_or_si256(hi1, _mm256_srli_epi16(mask8(qh, 0xC0), 2));
        }
        q
    }
}
