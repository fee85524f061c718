//! Okapi BM25 as rank_bm25's `BM25Okapi` scores it, over lowercase `\w+` tokens: the reference
//! the dataset's published BM25 figure was measured with, printed next to temper-rag's FTS5 BM25.

use std::collections::HashMap;

const K1: f64 = 1.5;
const B: f64 = 0.75;
/// rank_bm25 floors negative IDFs (words in more than half the documents) at this share of the
/// mean IDF.
const EPSILON: f64 = 0.25;

/// Lowercase runs of word characters (letters, digits, underscore), like Python's `\w+`.
pub fn tokenize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

pub struct Bm25 {
    /// Term frequencies of each document.
    docs: Vec<HashMap<String, u32>>,
    lengths: Vec<f64>,
    average_length: f64,
    idf: HashMap<String, f64>,
}

impl Bm25 {
    pub fn new(texts: &[&str]) -> Self {
        let mut docs = Vec::with_capacity(texts.len());
        let mut lengths = Vec::with_capacity(texts.len());
        let mut document_frequency: HashMap<String, u32> = HashMap::new();
        for text in texts {
            let tokens = tokenize(text);
            lengths.push(tokens.len() as f64);
            let mut counts: HashMap<String, u32> = HashMap::new();
            for token in tokens {
                *counts.entry(token).or_default() += 1;
            }
            for word in counts.keys() {
                *document_frequency.entry(word.clone()).or_default() += 1;
            }
            docs.push(counts);
        }
        let n = texts.len() as f64;
        let mut idf: HashMap<String, f64> = document_frequency
            .into_iter()
            .map(|(word, df)| (word, (n - f64::from(df) + 0.5).ln() - (f64::from(df) + 0.5).ln()))
            .collect();
        let floor = EPSILON * idf.values().sum::<f64>() / idf.len().max(1) as f64;
        idf.values_mut().filter(|v| **v < 0.0).for_each(|v| *v = floor);
        let average_length = lengths.iter().sum::<f64>() / n.max(1.0);
        Bm25 { docs, lengths, average_length, idf }
    }

    /// One score per document; a word repeated in the query counts each time, as in rank_bm25.
    pub fn scores(&self, query: &str) -> Vec<f64> {
        let query = tokenize(query);
        let norms = self.lengths.iter().map(|&len| K1 * (1.0 - B + B * len / self.average_length));
        self.docs
            .iter()
            .zip(norms)
            .map(|(counts, norm)| {
                query
                    .iter()
                    .filter_map(|word| Some((self.idf.get(word)?, f64::from(*counts.get(word)?))))
                    .map(|(idf, tf)| idf * tf * (K1 + 1.0) / (tf + norm))
                    .sum()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_lowercase_word_runs() {
        assert_eq!(
            tokenize("Hello, WORLD! snake_case 42x ünïcode"),
            ["hello", "world", "snake_case", "42x", "ünïcode"]
        );
    }

    #[test]
    fn scores_equal_rank_bm25() {
        // Expected values printed by rank_bm25 0.2.2: BM25Okapi(corpus).get_scores(query) with the
        // same tokenization.
        let corpus = [
            "the cat sat on the mat",
            "the dog sat on the log",
            "the cats and dogs",
            "a cat and a cat and a cat",
            "The bird flew over the house",
            "fish swim",
        ];
        let bm25 = Bm25::new(&corpus);
        // "the" is in more than half the documents: its IDF is floored, not negative.
        let expected = [
            1.4634814470233555,
            0.35051261407259765,
            0.2875684474609692,
            1.7415901182285007,
            1.580603013249176,
            0.0,
        ];
        let scores = bm25.scores("the cat CAT bird");
        assert_eq!(scores.len(), expected.len());
        for (got, want) in scores.iter().zip(expected) {
            assert!((got - want).abs() < 1e-9, "{got} != {want}");
        }
    }
}
