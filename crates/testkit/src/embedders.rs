//! Fake embedders: deterministic vectors computed from the words or letters of a text, so tests
//! can assert rankings without a real model.

use async_trait::async_trait;
use temper_core::EmbeddingModel;

/// Hashes each word of three letters or more (lower-cased, a plural `s` dropped, a few stop
/// words skipped) into one of [`HashedWords::DIMENSIONS`] signed buckets: texts that share words
/// point the same way, texts that do not are nearly orthogonal.
pub struct HashedWords;

impl HashedWords {
    pub const DIMENSIONS: usize = 4096;

    /// The vector of one text, as [`EmbeddingModel::embed`] gives it.
    pub fn vector(text: &str) -> Vec<f32> {
        let mut v = vec![0.0; Self::DIMENSIONS];
        for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() >= 3) {
            let word = word.to_lowercase();
            let word = word.strip_suffix('s').unwrap_or(&word);
            if ["the", "and", "for", "are", "with", "that", "this", "what", "doe", "which", "from"]
                .contains(&word)
            {
                continue;
            }
            let h = fnv(word);
            v[(h % Self::DIMENSIONS as u64) as usize] += if h >> 63 == 0 { 1.0 } else { -1.0 };
        }
        v
    }
}

/// FNV-1a: a stable hash, the same on every platform and run.
fn fnv(word: &str) -> u64 {
    word.bytes().fold(0xcbf29ce484222325, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

#[async_trait]
impl EmbeddingModel for HashedWords {
    fn name(&self) -> &str {
        "hashed-words"
    }

    fn dimensions(&self) -> usize {
        Self::DIMENSIONS
    }

    async fn embed(&self, texts: &[String]) -> temper_core::Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| Self::vector(t)).collect())
    }
}

/// Counts the letters a–z of a text, case folded: texts made of the same letters point the same
/// way, whatever their words.
pub struct Letters;

#[async_trait]
impl EmbeddingModel for Letters {
    fn name(&self) -> &str {
        "letters"
    }

    fn dimensions(&self) -> usize {
        26
    }

    async fn embed(&self, texts: &[String]) -> temper_core::Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0.0; 26];
                t.to_lowercase()
                    .bytes()
                    .filter(u8::is_ascii_lowercase)
                    .for_each(|b| v[(b - b'a') as usize] += 1.0);
                v
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    }

    #[test]
    fn shared_words_point_the_same_way() {
        let v = HashedWords::vector;
        assert_eq!(v("Salmon swim"), v("the salmons SWIM"), "case, plurals and stop words do not count");
        assert!(cosine(&v("salmon swim upstream"), &v("where salmon swim")) > 0.5);
        assert_eq!(cosine(&v("salmon"), &v("invoice")), 0.0);
        assert!(v("a an to").iter().all(|&x| x == 0.0), "words under three letters are skipped");
    }

    #[test]
    fn letters_are_counted() {
        let v = futures::executor::block_on(Letters.embed(&["Abba!".into()])).unwrap().remove(0);
        assert_eq!((v[0], v[1], v.iter().sum::<f32>()), (2.0, 2.0, 4.0));
    }
}
