//! Text similarity measures of the metric assertions, each in [0, 1] (1 is identical).

/// ROUGE-L F1: the longest common subsequence of words (lower-cased, punctuation dropped),
/// as the harmonic mean of its share of each text's words. Two empty texts are identical.
pub fn rouge_l(output: &str, reference: &str) -> f64 {
    let (a, b) = (words(output), words(reference));
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let common = lcs(&a, &b) as f64;
    if common == 0.0 {
        return 0.0;
    }
    let (precision, recall) = (common / a.len() as f64, common / b.len() as f64);
    2.0 * precision * recall / (precision + recall)
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Length of the longest common subsequence, one row of the table at a time.
fn lcs<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y { diagonal + 1 } else { above.max(row[j]) };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Edit distance in characters (insertions, deletions, substitutions).
pub fn levenshtein(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(x != y)).min(above + 1).min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// 1 − distance / length of the longer text: 1 for equal texts, 0 for nothing in common.
pub fn levenshtein_similarity(a: &str, b: &str) -> f64 {
    let longest = a.chars().count().max(b.chars().count());
    if longest == 0 {
        return 1.0;
    }
    1.0 - levenshtein(a, b) as f64 / longest as f64
}

/// Cosine of the angle between two vectors; 0 when either is all zeros.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na * nb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rouge_l_counts_the_longest_common_word_sequence() {
        assert_eq!(rouge_l("The cat sat.", "the cat sat"), 1.0);
        // LCS "the cat on mat" = 4 of 6 and of 5 words.
        let f = rouge_l("the cat sat on the mat", "the cat lay on mat");
        assert!((f - 2.0 * (4.0 / 6.0) * (4.0 / 5.0) / (4.0 / 6.0 + 4.0 / 5.0)).abs() < 1e-12, "{f}");
        assert_eq!(rouge_l("dogs bark", "cats meow"), 0.0);
        assert_eq!((rouge_l("", ""), rouge_l("", "x")), (1.0, 0.0));
    }

    #[test]
    fn levenshtein_counts_edits_in_characters() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("café", "cafe"), 1);
        assert!((levenshtein_similarity("kitten", "sitting") - (1.0 - 3.0 / 7.0)).abs() < 1e-12);
        assert_eq!((levenshtein_similarity("", ""), levenshtein_similarity("ab", "cd")), (1.0, 0.0));
    }

    #[test]
    fn cosine_of_vectors() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }
}
