//! Vector arithmetic for search: dot products written so the compiler vectorises them, and
//! top-k selection.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Dot product. Eight independent accumulators let the compiler keep eight lanes busy (AVX2)
/// instead of one serial chain of additions.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
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
