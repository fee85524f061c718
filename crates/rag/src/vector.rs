//! Vector arithmetic for search: SIMD dot products and top-k selection.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Dot product, with the widest SIMD this CPU has (chosen once, at first use): search spends
/// nearly all its time here, and the portable build only assumes SSE2.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    static KERNEL: std::sync::OnceLock<DotKernel> = std::sync::OnceLock::new();
    let n = a.len().min(b.len());
    KERNEL.get_or_init(simd::best)(&a[..n], &b[..n])
}

type DotKernel = fn(&[f32], &[f32]) -> f32;

/// The portable dot product: eight independent accumulators, so the compiler keeps eight lanes
/// busy instead of one serial chain of additions.
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    pub fn best() -> super::DotKernel {
        if is_x86_feature_detected!("avx512f") {
            |a, b| unsafe { dot_avx512(a, b) }
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            |a, b| unsafe { dot_avx2(a, b) }
        } else {
            super::dot_portable
        }
    }

    /// `a` and `b` have the same length.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len() / 32 * 32;
        let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        for i in (0..n).step_by(32) {
            let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa), _mm512_loadu_ps(pb), s0);
            s1 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(16)), _mm512_loadu_ps(pb.add(16)), s1);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) + super::dot_portable(&a[n..], &b[n..])
    }

    /// `a` and `b` have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len() / 16 * 16;
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in (0..n).step_by(16) {
            let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa), _mm256_loadu_ps(pb), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(8)), _mm256_loadu_ps(pb.add(8)), s1);
        }
        let s = _mm256_add_ps(s0, s1);
        let quad = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        let one = _mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1));
        _mm_cvtss_f32(one) + super::dot_portable(&a[n..], &b[n..])
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod simd {
    pub fn best() -> super::DotKernel {
        super::dot_portable
    }
}

/// Scales `v` to unit length, so that cosine similarity is a dot product. Returns false (and
/// leaves `v` alone) when it has no direction: all zeros or not finite.
pub fn normalize(v: &mut [f32]) -> bool {
    let norm = dot(v, v).sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

/// A score that orders totally (NaN last), for heaps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scored<T> {
    pub score: f32,
    pub item: T,
}

impl<T: PartialEq> Eq for Scored<T> {}

impl<T: PartialEq> PartialOrd for Scored<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: PartialEq> Ord for Scored<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score)
    }
}

/// The `k` items with the highest scores, best first.
pub fn top_k<T: PartialEq>(items: impl IntoIterator<Item = (T, f32)>, k: usize) -> Vec<(T, f32)> {
    if k == 0 {
        return Vec::new();
    }
    // A min-heap of the best k so far: its top is the one to beat.
    let mut heap: BinaryHeap<std::cmp::Reverse<Scored<T>>> = BinaryHeap::with_capacity(k.min(4096) + 1);
    for (item, score) in items {
        if heap.len() < k {
            heap.push(std::cmp::Reverse(Scored { score, item }));
        } else if heap.peek().is_some_and(|worst| score > worst.0.score) {
            heap.pop();
            heap.push(std::cmp::Reverse(Scored { score, item }));
        }
    }
    let mut best: Vec<(T, f32)> = heap.into_iter().map(|r| (r.0.item, r.0.score)).collect();
    best.sort_by(|a, b| b.1.total_cmp(&a.1));
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dot_kernel_agrees_with_the_portable_one_at_odd_lengths() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for n in [0, 1, 7, 15, 16, 31, 33, 384, 1000] {
            let a: Vec<f32> = (0..n).map(|_| random()).collect();
            let b: Vec<f32> = (0..n).map(|_| random()).collect();
            let want = dot_portable(&a, &b);
            let mut kernels: Vec<(&str, DotKernel)> = vec![("dispatched", dot)];
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    kernels.push(("avx2", |a, b| unsafe { simd::dot_avx2(a, b) }));
                }
                if is_x86_feature_detected!("avx512f") {
                    kernels.push(("avx512", |a, b| unsafe { simd::dot_avx512(a, b) }));
                }
            }
            for (name, kernel) in kernels {
                let got = kernel(&a, &b);
                assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{name} at {n}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn dot_matches_the_plain_sum_at_every_length() {
        for n in [0, 1, 7, 8, 9, 31, 384] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "n={n}");
        }
    }

    #[test]
    fn normalize_refuses_vectors_without_direction() {
        let mut v = vec![3.0, 4.0];
        assert!(normalize(&mut v));
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0.0; 3];
        assert!(!normalize(&mut zero));
        let mut nan = vec![f32::NAN, 1.0];
        assert!(!normalize(&mut nan));
    }

    #[test]
    fn top_k_keeps_the_best_in_order() {
        let items = [(1, 0.5), (2, 0.9), (3, -1.0), (4, 0.7), (5, 0.1)];
        assert_eq!(top_k(items, 3), vec![(2, 0.9), (4, 0.7), (1, 0.5)]);
        assert_eq!(top_k(items, 0), vec![]);
        assert_eq!(top_k(items, 10).len(), 5);
        assert_eq!(top_k(items, usize::MAX).len(), 5, "a huge k is not an allocation");
    }
}
