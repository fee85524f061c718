//! Ranking metrics as BEIR computes them (pytrec_eval): linear gains, log2 discounts.

use std::collections::HashMap;

/// Relevance grades of one query's judged documents.
pub type Judgements = HashMap<String, u32>;

/// nDCG at `k`: the ranking's discounted gain over the best possible one.
pub fn ndcg(ranking: &[&str], judged: &Judgements, k: usize) -> f64 {
    let discount = |i: usize| 1.0 / (i as f64 + 2.0).log2();
    let gain = |id: &&str| f64::from(judged.get(*id).copied().unwrap_or(0));
    let dcg: f64 = ranking.iter().take(k).enumerate().map(|(i, id)| gain(id) * discount(i)).sum();
    let mut ideal: Vec<u32> = judged.values().copied().collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, &g)| f64::from(g) * discount(i)).sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

/// The share of relevant documents found in the first `k`.
pub fn recall(ranking: &[&str], judged: &Judgements, k: usize) -> f64 {
    let relevant = judged.values().filter(|&&g| g > 0).count();
    let found = ranking.iter().take(k).filter(|id| judged.get(**id).is_some_and(|&g| g > 0)).count();
    if relevant == 0 {
        0.0
    } else {
        found as f64 / relevant as f64
    }
}

/// Reciprocal rank of the first relevant document within the first `k` (0 if none).
pub fn reciprocal_rank(ranking: &[&str], judged: &Judgements, k: usize) -> f64 {
    let first = ranking.iter().take(k).position(|id| judged.get(*id).is_some_and(|&g| g > 0));
    first.map_or(0.0, |i| 1.0 / (i as f64 + 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, u32)]) -> Judgements {
        pairs.iter().map(|&(id, g)| (id.to_owned(), g)).collect()
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        let judged = judged(&[("a", 1), ("b", 1), ("z", 1)]);
        let ranking = ["x", "a", "y", "b"];
        // DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3) + 1/log2(4).
        let expected = (1.0 / 3f64.log2() + 1.0 / 5f64.log2()) / (1.0 + 1.0 / 3f64.log2() + 0.5);
        assert!((ndcg(&ranking, &judged, 10) - expected).abs() < 1e-12);
        assert!((recall(&ranking, &judged, 10) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(recall(&ranking, &judged, 1), 0.0);
        assert_eq!(reciprocal_rank(&ranking, &judged, 10), 0.5);
        assert_eq!(reciprocal_rank(&ranking, &judged, 1), 0.0);
        assert_eq!(ndcg(&["a", "b", "z"], &judged, 10), 1.0);
    }
}
