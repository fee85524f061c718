//! x86 primitives more than one family of kernels uses: the horizontal sum whose order the
//! engine's attention scores keep, and the f32 dot products behind [`crate::dot`].

use std::arch::x86_64::*;

use crate::vector::dot_portable;

/// The sum of the eight lanes, pairwise: halves, then pairs, then the last two.
///
/// # Safety
/// The CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2")]
pub unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// # Safety
/// The CPU has AVX-512 F, and `a` and `b` have the same length.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len() / 32 * 32;
    let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for i in (0..n).step_by(32) {
        // `i + 32 <= n <= len` for both slices.
        let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa), _mm512_loadu_ps(pb), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(16)), _mm512_loadu_ps(pb.add(16)), s1);
    }
    _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) + dot_portable(&a[n..], &b[n..])
}

/// # Safety
/// The CPU has AVX2 and FMA, and `a` and `b` have the same length.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len() / 16 * 16;
    let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for i in (0..n).step_by(16) {
        // `i + 16 <= n <= len` for both slices.
        let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa), _mm256_loadu_ps(pb), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(8)), _mm256_loadu_ps(pb.add(8)), s1);
    }
    hsum(_mm256_add_ps(s0, s1)) + dot_portable(&a[n..], &b[n..])
}
