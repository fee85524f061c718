//! The x86 versions of the forward pass's f16 attention and SiLU: AVX2+FMA+F16C on eight
//! lanes, AVX-512 F on sixteen where a row is a whole number of them. Callers check the level.

use std::arch::x86_64::*;

use half::f16;

use super::KvRows;
// The order `dot_f16` has always added its lanes in, which the attention scores keep.
use temper_kernels::x86::hsum;

/// [`super::attend_heads`] for 1 to 8 heads, or false for more. `queries` are rounded to
/// f16 already; `scores` has room for a row per head; `wide` runs the value pass sixteen
/// lanes at a time (AVX-512 F, and `head_dim` a multiple of 16).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C, and AVX-512 F when `wide`. (Every access is through a
/// bounds-checked slice or a whole chunk of one.)
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn attend_heads(
    heads: usize,
    wide: bool,
    queries: &[f32],
    rows: &KvRows,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) -> bool {
    macro_rules! with_heads {
        ($($h:literal)*) => {
            match heads {
                $($h => {
                    scores_n::<$h>(queries, rows, scale, scores);
                    if wide {
                        weigh_values_512::<$h>(rows, scores, out);
                    } else {
                        weigh_values_256::<$h>(rows, scores, out);
                    }
                })*
                _ => return false,
            }
        };
    }
    with_heads!(1 2 3 4 5 6 7 8);
    true
}

/// Every head's dot product with each key, the key converted once: each head's sum runs
/// over the eight-lane chunks in order, as `dot_f16` does.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scores_n<const H: usize>(queries: &[f32], rows: &KvRows, scale: f32, scores: &mut [f32]) {
    let head_dim = queries.len() / H;
    let len = rows.positions.len();
    for (j, p) in rows.positions.clone().enumerate() {
        let key = rows.key(p, head_dim);
        let mut acc = [_mm256_setzero_ps(); H];
        for (c, k) in key.chunks_exact(8).enumerate() {
            let k = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().cast()));
            for (h, acc) in acc.iter_mut().enumerate() {
                let q = &queries[h * head_dim + 8 * c..][..8];
                *acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr()), k, *acc);
            }
        }
        for (h, acc) in acc.into_iter().enumerate() {
            scores[h * len + j] = hsum(acc) * scale;
        }
    }
}

/// `attend_f16` for every head at once from its row of `scores`, each value row converted
/// once; `$lanes` values per vector (the roundings are per value, so any width gives the
/// same results).
macro_rules! weigh_values {
    ($name:ident, $features:literal, $lanes:literal, $load:ident, $store:ident,
     $load_ph:ident, $to_f32:ident, $to_f16:ident, $mul:ident, $fmadd:ident, $set1:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name<const H: usize>(rows: &KvRows, scores: &[f32], out: &mut [f32]) {
            const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT;
            let head_dim = out.len() / H;
            let len = rows.positions.len();
            let (mut max, mut sum) = ([f32::NEG_INFINITY; H], [0.0f32; H]);
            out.fill(0.0);
            for (j, p) in rows.positions.clone().enumerate() {
                let (mut rescale, mut weight) = ([1.0f32; H], [0.0f32; H]);
                for h in 0..H {
                    let score = scores[h * len + j];
                    if score > max[h] {
                        rescale[h] = (max[h] - score).exp();
                        sum[h] *= rescale[h];
                        max[h] = score;
                    }
                    weight[h] = (score - max[h]).exp();
                    sum[h] += weight[h];
                }
                for (c, v) in rows.value(p, head_dim).chunks_exact($lanes).enumerate() {
                    let v = $to_f32($load_ph(v.as_ptr().cast()));
                    for h in 0..H {
                        let o = &mut out[h * head_dim + $lanes * c..][..$lanes];
                        let mut scaled = $load(o.as_ptr());
                        if rescale[h] != 1.0 {
                            scaled = $to_f32($to_f16::<NEAREST>($mul(scaled, $set1(rescale[h]))));
                        }
                        let sum = $fmadd(v, $set1(weight[h]), scaled);
                        $store(o.as_mut_ptr(), $to_f32($to_f16::<NEAREST>(sum)));
                    }
                }
            }
            for (out, sum) in out.chunks_exact_mut(head_dim).zip(sum) {
                let inv = 1.0 / sum;
                out.iter_mut().for_each(|o| *o *= inv);
            }
        }
    };
}

weigh_values!(
    weigh_values_256,
    "avx2,fma,f16c",
    8,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm_loadu_si128,
    _mm256_cvtph_ps,
    _mm256_cvtps_ph,
    _mm256_mul_ps,
    _mm256_fmadd_ps,
    _mm256_set1_ps
);
weigh_values!(
    weigh_values_512,
    "avx512f",
    16,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm256_loadu_si256,
    _mm512_cvtph_ps,
    _mm512_cvtps_ph,
    _mm512_mul_ps,
    _mm512_fmadd_ps,
    _mm512_set1_ps
);

/// `super::silu_gate` eight values at a time, on whole vectors.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn silu_gate(gate: &mut [f32], up: &[f32]) {
    let one = _mm256_set1_ps(1.0);
    for (g, u) in gate.chunks_exact_mut(8).zip(up.chunks_exact(8)) {
        let x = _mm256_loadu_ps(g.as_ptr());
        let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
        let silu = _mm256_div_ps(x, _mm256_add_ps(one, e));
        _mm256_storeu_ps(g.as_mut_ptr(), _mm256_mul_ps(silu, _mm256_loadu_ps(u.as_ptr())));
    }
}

/// e^y: y = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by its Taylor series to r^7 (the first term
/// left out is below f32 precision there), times 2^n built in the exponent bits. y is
/// clamped to where 2^n stays a normal number, far past where SiLU needs it.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp(y: __m256) -> __m256 {
    const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    let y = _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(-87.0)), _mm256_set1_ps(88.0));
    let n = _mm256_round_ps::<NEAREST>(_mm256_mul_ps(y, _mm256_set1_ps(std::f32::consts::LOG2_E)));
    // ln 2 in two parts, the first exact in few bits, so that n·ln2_hi is exact.
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), y);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.0 / 5040.0);
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
    _mm256_mul_ps(p, _mm256_castsi256_ps(bits))
}

/// The dot product of f32 values with f16 ones, over whole chunks of eight.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (a, b) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let b = _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().cast()));
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr()), b, acc);
    }
    hsum(acc)
}

/// `scale_add_f16` sixteen lanes at a time: half the instructions for the same roundings.
///
/// # Safety
/// The CPU has AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn scale_add_f16_512(out: &mut [f32], rescale: f32, value: &[f16], weight: f32) {
    const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT;
    let unscaled = rescale == 1.0;
    let (rescale, weight) = (_mm512_set1_ps(rescale), _mm512_set1_ps(weight));
    for (o, v) in out.chunks_exact_mut(16).zip(value.chunks_exact(16)) {
        let mut scaled = _mm512_loadu_ps(o.as_ptr());
        if !unscaled {
            scaled = _mm512_cvtph_ps(_mm512_cvtps_ph::<NEAREST>(_mm512_mul_ps(scaled, rescale)));
        }
        let v = _mm512_cvtph_ps(_mm256_loadu_si256(v.as_ptr().cast()));
        let sum = _mm512_cvtph_ps(_mm512_cvtps_ph::<NEAREST>(_mm512_fmadd_ps(v, weight, scaled)));
        _mm512_storeu_ps(o.as_mut_ptr(), sum);
    }
}

/// `out = f16(f16(out × rescale) + value × weight)`, eight lanes at a time.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn scale_add_f16(out: &mut [f32], rescale: f32, value: &[f16], weight: f32) {
    const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT;
    // `out` holds f16 values already, so scaling by 1 (the running maximum did not move,
    // the usual case) changes nothing and is skipped.
    let unscaled = rescale == 1.0;
    let (rescale, weight) = (_mm256_set1_ps(rescale), _mm256_set1_ps(weight));
    for (o, v) in out.chunks_exact_mut(8).zip(value.chunks_exact(8)) {
        let mut scaled = _mm256_loadu_ps(o.as_ptr());
        if !unscaled {
            scaled = _mm256_cvtph_ps(_mm256_cvtps_ph::<NEAREST>(_mm256_mul_ps(scaled, rescale)));
        }
        let v = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().cast()));
        let sum = _mm256_cvtph_ps(_mm256_cvtps_ph::<NEAREST>(_mm256_fmadd_ps(v, weight, scaled)));
        _mm256_storeu_ps(o.as_mut_ptr(), sum);
    }
}
