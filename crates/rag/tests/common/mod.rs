//! Helpers of the integration tests: a word counter and a recording progress (the fake embedder
//! is temper-testkit's `HashedWords`).
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

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
