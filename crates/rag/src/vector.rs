//! Vector arithmetic for search: dot products (temper-kernels') and top-k selection.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

// The kernels are shared with the engine and the embedder, under the one `TEMPER_CPU` switch.
pub use temper_kernels::{dot, normalize};

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
    fn top_k_keeps_the_best_in_order() {
        let items = [(1, 0.5), (2, 0.9), (3, -1.0), (4, 0.7), (5, 0.1)];
        assert_eq!(top_k(items, 3), vec![(2, 0.9), (4, 0.7), (1, 0.5)]);
        assert_eq!(top_k(items, 0), vec![]);
        assert_eq!(top_k(items, 10).len(), 5);
        assert_eq!(top_k(items, usize::MAX).len(), 5, "a huge k is not an allocation");
    }
}
