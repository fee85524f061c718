//! AVX-512 kernels (F for f32, VNNI for int8): a tile's 12 × 32 sums live in 24 zmm registers
//! for the whole depth; each depth step loads two vectors of `b` and broadcasts one value (f32)
//! or four bytes (int8, `vpdpbusd`) of each row of `a`.
//!
//! The safe entry points check every length the unsafe code relies on; the dispatcher hands
//! them out only when the CPU has the features.

use std::arch::x86_64::*;

use super::scalar::{ERF_A, ERF_P, TANH_C};
use super::{Activation, Dest, Finish, Scales, KG, MR, NR};

pub(super) fn tile_f32(a: &[f32], lda: usize, b: &[f32], depth: usize, out: Dest, finish: Finish) {
    out.check();
    assert!(a.len() >= (out.rows - 1) * lda + depth && b.len() >= depth * NR);
    // SAFETY: lengths checked above; the dispatcher checked the CPU features.
    unsafe { tile_f32_avx512(a, lda, b, depth, out, finish) }
}

pub(super) fn tile_i8(a: &[u8], b: &[i8], depth: usize, scales: &Scales, out: Dest, finish: Finish) {
    out.check();
    assert!(a.len() >= depth * MR * KG && b.len() >= depth * NR * KG);
    assert!(scales.rows.len() >= MR && scales.cols.len() >= NR && scales.offsets.len() >= NR);
    // SAFETY: as in `tile_f32`.
    unsafe { tile_i8_avx512(a, b, depth, scales, out, finish) }
}

pub(super) fn softmax(row: &mut [f32]) {
    // SAFETY: the dispatcher checked the CPU features; accesses are masked to the row.
    unsafe { softmax_avx512(row) }
}

/// The portable row quantizer, compiled to vectorize 16 wide.
pub(super) fn quantize_row(values: &[f32], out: &mut [u8]) -> f32 {
    #[target_feature(enable = "avx512f,avx512bw")]
    fn wide(values: &[f32], out: &mut [u8]) -> f32 {
        super::quantize_row_inline(values, out)
    }
    // SAFETY: the dispatcher checked the CPU features.
    unsafe { wide(values, out) }
}

/// The portable layer norm, compiled to vectorize 16 wide.
pub(super) fn layer_norm(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    #[target_feature(enable = "avx512f")]
    fn wide(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        super::layer_norm_inline(row, gamma, beta, eps)
    }
    // SAFETY: the dispatcher checked the CPU features.
    unsafe { wide(row, gamma, beta, eps) }
}

#[target_feature(enable = "avx512f")]
unsafe fn tile_f32_avx512(a: &[f32], lda: usize, b: &[f32], depth: usize, out: Dest, finish: Finish) {
    // Rows past the tile's end repeat its last row: computed, never stored.
    let rows: [*const f32; MR] = std::array::from_fn(|r| a.as_ptr().add(r.min(out.rows - 1) * lda));
    let b = b.as_ptr();
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for l in 0..depth {
        let b0 = _mm512_loadu_ps(b.add(l * NR));
        let b1 = _mm512_loadu_ps(b.add(l * NR + 16));
        for (row, acc) in rows.iter().zip(acc.iter_mut()) {
            let x = _mm512_set1_ps(*row.add(l));
            acc[0] = _mm512_fmadd_ps(x, b0, acc[0]);
            acc[1] = _mm512_fmadd_ps(x, b1, acc[1]);
        }
    }
    store(acc, out, finish);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_i8_avx512(a: &[u8], b: &[i8], depth: usize, scales: &Scales, out: Dest, finish: Finish) {
    let (a, b) = (a.as_ptr(), b.as_ptr());
    let mut acc = [[_mm512_setzero_si512(); 2]; MR];
    for g in 0..depth {
        let b0 = _mm512_loadu_si512(b.add(g * NR * KG).cast());
        let b1 = _mm512_loadu_si512(b.add(g * NR * KG + 64).cast());
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_epi32(a.add((g * MR + r) * KG).cast::<i32>().read_unaligned());
            acc[0] = _mm512_dpbusd_epi32(acc[0], x, b0);
            acc[1] = _mm512_dpbusd_epi32(acc[1], x, b1);
        }
    }
    let offsets = [
        _mm512_loadu_si512(scales.offsets.as_ptr().cast()),
        _mm512_loadu_si512(scales.offsets[16..].as_ptr().cast()),
    ];
    let cols = [_mm512_loadu_ps(scales.cols.as_ptr()), _mm512_loadu_ps(scales.cols[16..].as_ptr())];
    let mut values = [[_mm512_setzero_ps(); 2]; MR];
    for r in 0..MR {
        let row = _mm512_set1_ps(scales.rows[r]);
        for h in 0..2 {
            let sums = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][h], offsets[h]));
            values[r][h] = _mm512_mul_ps(sums, _mm512_mul_ps(row, cols[h]));
        }
    }
    store(values, out, finish);
}

/// The lanes of the first `n` of 16 values.
fn mask(n: usize) -> __mmask16 {
    match n {
        0..16 => ((1u32 << n) - 1) as __mmask16,
        _ => !0,
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn store(acc: [[__m512; 2]; MR], out: Dest, finish: Finish) {
    let masks = [mask(out.cols), mask(out.cols.saturating_sub(16))];
    let bias = match out.bias.is_empty() {
        true => [_mm512_setzero_ps(); 2],
        false => [
            _mm512_maskz_loadu_ps(masks[0], out.bias.as_ptr()),
            _mm512_maskz_loadu_ps(masks[1], out.bias.as_ptr().wrapping_add(16)),
        ],
    };
    let c = out.c.as_mut_ptr();
    for (r, acc) in acc.iter().enumerate().take(out.rows) {
        for h in 0..2 {
            // Masked lanes are never touched, so the pointer may run past the slice.
            let p = c.wrapping_add(r * out.stride + 16 * h);
            let v = _mm512_add_ps(acc[h], bias[h]);
            let v = match finish.accumulate {
                true => _mm512_add_ps(v, _mm512_maskz_loadu_ps(masks[h], p)),
                false => v,
            };
            let v = match finish.activation {
                Activation::None => v,
                Activation::Gelu => gelu(v),
                Activation::GeluTanh => gelu_tanh(v),
            };
            _mm512_mask_storeu_ps(p, masks[h], v);
        }
    }
}

/// `e^x` to about 1e-7 relative: `2^n · p(r)` with `x = n ln 2 + r`, `|r| ≤ ln 2 / 2`, `p` the
/// degree-7 Taylor polynomial. Inputs are clamped to where the result is a normal number.
#[target_feature(enable = "avx512f")]
unsafe fn exp(x: __m512) -> __m512 {
    let x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0)), _mm512_set1_ps(-87.0));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        x,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
    ));
    // ln 2 in two parts, so that n · ln 2 is exact enough.
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.0 / 5040.0);
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, n)
}

#[target_feature(enable = "avx512f")]
unsafe fn gelu(x: __m512) -> __m512 {
    // erf(|z|) for z = x / sqrt(2), as in `scalar::erf`, then the sign of x.
    let a = _mm512_abs_ps(_mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2)));
    let one = _mm512_set1_ps(1.0);
    let t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(ERF_P), a, one));
    let mut poly = _mm512_set1_ps(ERF_A[4]);
    for c in [ERF_A[3], ERF_A[2], ERF_A[1], ERF_A[0]] {
        poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(c));
    }
    poly = _mm512_mul_ps(poly, t);
    let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a)));
    let erf = _mm512_fnmadd_ps(poly, e, one);
    let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps());
    let erf = _mm512_mask_sub_ps(erf, negative, _mm512_setzero_ps(), erf);
    _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5), x), _mm512_add_ps(one, erf))
}

#[target_feature(enable = "avx512f")]
unsafe fn gelu_tanh(x: __m512) -> __m512 {
    let x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    let u = _mm512_mul_ps(_mm512_set1_ps(TANH_C[0]), _mm512_fmadd_ps(_mm512_set1_ps(TANH_C[1]), x3, x));
    // tanh(u) = 1 - 2 / (e^2u + 1)
    let one = _mm512_set1_ps(1.0);
    let e = exp(_mm512_add_ps(u, u));
    let tanh = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0), _mm512_add_ps(e, one)));
    _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5), x), _mm512_add_ps(one, tanh))
}

#[target_feature(enable = "avx512f")]
unsafe fn softmax_avx512(row: &mut [f32]) {
    let p = row.as_mut_ptr();
    let n = row.len();
    let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
    for i in (0..n).step_by(16) {
        let v = _mm512_mask_loadu_ps(max, mask(n - i), p.add(i));
        max = _mm512_max_ps(max, v);
    }
    let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
    let mut sum = _mm512_setzero_ps();
    for i in (0..n).step_by(16) {
        let m = mask(n - i);
        let e = exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, p.add(i)), max));
        sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(m, e));
        _mm512_mask_storeu_ps(p.add(i), m, e);
    }
    let inverse = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
    for i in (0..n).step_by(16) {
        let m = mask(n - i);
        _mm512_mask_storeu_ps(p.add(i), m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p.add(i)), inverse));
    }
}
