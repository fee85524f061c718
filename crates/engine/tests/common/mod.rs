//! Helpers shared by the integration tests that use the real default models.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

/// The GGUF file of an installed catalog model, from the store layout of temper-models
/// (`$TEMPER_HOME/models/<name>/<file>`, default `~/.cache/temper`).
/// Locally a missing model skips the test; under CI (`CI=true`) it fails it, because CI pulls
/// the models before running the tests.
pub fn model_file(name: &str, file: &str) -> Option<PathBuf> {
    let home = std::env::var_os("TEMPER_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/temper")))
        .expect("neither TEMPER_HOME nor HOME is set");
    let path = home.join("models").join(name).join(file);
    if path.is_file() {
        return Some(path);
    }
    let message =
        format!("model {name} is not installed at {}; run `temper models pull {name}`", path.display());
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("skipping: {message}");
    None
}

pub fn smollm2() -> Option<PathBuf> {
    model_file("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
}

pub fn gemma3() -> Option<PathBuf> {
    model_file("gemma3-270m", "gemma-3-270m-q4_k_m.gguf")
}

/// A fixture file under `shared/fixtures` next to the repository (or next to any directory above
/// it, so that a git worktree kept elsewhere finds it too).
pub fn shared_fixture(relative: &str) -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates: Vec<PathBuf> =
        manifest.ancestors().skip(2).map(|dir| dir.join("shared/fixtures").join(relative)).collect();
    let found = candidates.iter().find(|path| path.is_file());
    found.cloned().unwrap_or_else(|| panic!("fixture {relative} is missing; looked in {candidates:#?}"))
}
