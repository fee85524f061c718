//! What Temper's tests share: where the real catalog models are installed (asked of
//! temper-models' store, exactly as the CLI finds them), the reference fixtures kept inside the
//! repository, and fake embedders ([`HashedWords`], [`Letters`]).
//!
//! A real-model test calls [`smollm2`] (or another lookup) and returns early on `None`: locally a
//! missing model skips the test with a message, under CI (`CI=true`) it fails the test, because
//! CI pulls every catalog model before running the tests.

use std::path::{Path, PathBuf};

use temper_models::ModelStore;

mod embedders;
mod postgres;
pub use embedders::{HashedWords, Letters};
pub use postgres::postgres_database;

/// The model store of `$TEMPER_HOME` (default `~/.cache/temper`).
pub fn store() -> ModelStore {
    ModelStore::from_env().expect("neither TEMPER_HOME nor HOME is set")
}

/// What the engine or embedder loads of the installed catalog model `name` (its GGUF, or the
/// embedder's directory), or `None` to skip the test; under CI a missing model fails it.
pub fn installed(name: &str) -> Option<PathBuf> {
    let store = store();
    if let Some(path) = store.installed_path(name) {
        return Some(path);
    }
    let message = format!(
        "model {name} is not installed in the store at {}; run `temper models pull {name}`",
        store.root().display()
    );
    assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "{message}");
    eprintln!("skipping: {message}");
    None
}

/// The store's root when catalog model `name` is installed in it (for tests that run the CLI
/// against the real store), or `None` as [`installed`].
pub fn installed_home(name: &str) -> Option<PathBuf> {
    installed(name).map(|_| store().root().to_path_buf())
}

/// The default chat model's GGUF.
pub fn smollm2() -> Option<PathBuf> {
    installed("smollm2-135m-instruct")
}

/// The base gemma-3-270m GGUF.
pub fn gemma3() -> Option<PathBuf> {
    installed("gemma3-270m")
}

/// The default embedder's directory (safetensors, tokenizer.json, config).
pub fn minilm() -> Option<PathBuf> {
    installed("all-minilm-l6-v2")
}

/// A file of the repository, by its path from the repository's root. It must exist: tests read
/// nothing outside the repository and the model store.
pub fn repo_file(relative: &str) -> PathBuf {
    // This crate lives at crates/testkit.
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("crates/testkit has two parents");
    let path = root.join(relative);
    assert!(path.is_file(), "{} is missing from the repository", path.display());
    path
}

/// llama.cpp's reference for the default chat model (`crates/engine/tests/fixtures/README.md`).
pub fn smollm2_llamacpp_reference() -> PathBuf {
    repo_file("crates/engine/tests/fixtures/smollm2-135m-instruct-q4_1/llamacpp-reference.jsonl")
}

/// llama.cpp's reference for gemma-3-270m.
pub fn gemma3_llamacpp_reference() -> PathBuf {
    repo_file("crates/engine/tests/fixtures/gemma3-270m/llamacpp-reference.jsonl")
}

/// sentence-transformers' embeddings from the default embedder
/// (`crates/embed/tests/fixtures/README.md`).
pub fn minilm_reference() -> PathBuf {
    repo_file("crates/embed/tests/fixtures/all-minilm-l6-v2/sentence-transformers-reference.jsonl")
}
