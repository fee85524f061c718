//! The Pareto front of score (higher is better) against a cost (lower is better): the points
//! that no other point beats on one and matches or beats on the other.

/// The indices of the points `(score, cost)` on the front, by increasing cost (ties: higher
/// score first, then index). Equal points are all on the front when one is.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let dominated = |&(score, cost): &(f64, f64)| {
        points.iter().any(|&(s, c)| s >= score && c <= cost && (s > score || c < cost))
    };
    let mut front: Vec<usize> = (0..points.len()).filter(|&i| !dominated(&points[i])).collect();
    front.sort_by(|&a, &b| {
        let ((sa, ca), (sb, cb)) = (points[a], points[b]);
        ca.total_cmp(&cb).then(sb.total_cmp(&sa)).then(a.cmp(&b))
    });
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_points_nothing_beats() {
        let points = [
            (0.50, 1.0), // 0: cheapest
            (0.70, 3.0), // 1: dominated by 3 (better score, lower cost)
            (0.90, 5.0), // 2: best score
            (0.75, 2.0), // 3
            (0.50, 2.0), // 4: dominated by 0 (same score, dearer)
            (0.90, 6.0), // 5: dominated by 2 (same score, dearer)
            (0.75, 2.0), // 6: equal to 3, so on the front with it
        ];
        assert_eq!(pareto_front(&points), [0, 3, 6, 2]);
    }

    #[test]
    fn one_point_and_none() {
        assert_eq!(pareto_front(&[(0.1, 9.0)]), [0]);
        assert!(pareto_front(&[]).is_empty());
    }
}
