//! Helpers of the integration tests: a small deterministic embedder and a recording progress.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

use async_trait::async_trait;
use temper_core::EmbeddingModel;

/// Hashes each word of three letters or more (lower-cased, a plural `s` dropped) into one of
/// 4096 signed buckets: texts that share words point the same way, texts that do not are
/// nearly orthogonal. Deterministic, so rankings can be asserted.
pub struct HashedWords;

pub const DIMENSIONS: usize = 4096;

fn fnv(word: &str) -> u64 {
    word.bytes().fold(0xcbf29ce484222325, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

pub fn embed_one(text: &str) -> Vec<f32> {
    let mut v = vec![0.0; DIMENSIONS];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() >= 3) {
        let word = word.to_lowercase();
        let word = word.strip_suffix('s').unwrap_or(&word);
        if ["the", "and", "for", "are", "with", "that", "this", "what", "doe", "which", "from"]
            .contains(&word)
        {
            continue;
        }
        let h = fnv(word);
        v[(h % DIMENSIONS as u64) as usize] += if h >> 63 == 0 { 1.0 } else { -1.0 };
    }
    v
}

#[async_trait]
impl EmbeddingModel for HashedWords {
    fn name(&self) -> &str {
        "hashed-words"
    }

    fn dimensions(&self) -> usize {
        DIMENSIONS
    }

    async fn embed(&self, texts: &[String]) -> temper_core::Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| embed_one(t)).collect())
    }
}

/// Counts whitespace-separated words: chunk sizes that are easy to reason about.
pub fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// A progress sink that remembers what it was told.
#[derive(Default)]
pub struct Recorded {
    pub files: usize,
    pub read: usize,
    pub stored: usize,
}

impl temper_rag::IngestProgress for Recorded {
    fn start(&mut self, files: usize) {
        self.files = files;
    }

    fn file_read(&mut self, _path: &std::path::Path, _chunks: usize) {
        self.read += 1;
    }

    fn stored(&mut self, chunks: usize) {
        self.stored += chunks;
    }
}
