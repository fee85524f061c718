//! The words of a text that carry its meaning, to compare a sentence with a passage.

use std::collections::HashSet;

/// Lowercase words that carry meaning: three letters or more and not a function word, or
/// numbers of two digits or more (years, amounts).
pub fn content_words(text: &str) -> HashSet<String> {
    const FUNCTION_WORDS: &[&str] = &[
        "the", "and", "was", "were", "for", "with", "that", "this", "from", "are", "has", "have", "had",
        "its", "their", "which", "not", "but", "can", "all", "also", "into", "than", "then", "there",
        "these", "those", "been", "they", "you", "your", "our", "his", "her", "she", "him", "who", "what",
        "when", "where", "why", "how", "does", "did", "will", "would", "should", "could", "about", "after",
        "before", "over", "under", "only", "each", "any", "some", "such", "more", "most", "other", "may",
        "answer", "source", "sources",
    ];
    text.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| {
            let number = w.chars().all(|c| c.is_ascii_digit());
            (number && w.len() >= 2)
                || (!number && w.chars().count() >= 3 && !FUNCTION_WORDS.contains(&w.as_str()))
        })
        .collect()
}
