//! sentence-transformers on PyTorch, in the bench's virtualenv.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use serde::Deserialize;

/// One timed encoding by the peer.
#[derive(Deserialize)]
pub struct PeerRun {
    pub seconds: f64,
    pub torch: String,
    pub sentence_transformers: String,
}

/// The venv's Python with torch (first, so that sentence-transformers finds it) and
/// sentence-transformers.
pub fn python() -> anyhow::Result<PathBuf> {
    crate::python::venv(&["torch", "sentence-transformers"])
}

/// Encodes `texts` with sentence-transformers and returns how long `encode` took.
pub fn encode(
    python: &Path,
    model_dir: &Path,
    texts: &[&str],
    threads: usize,
    max_seq_length: usize,
    batch_size: usize,
) -> anyhow::Result<PeerRun> {
    let script = crate::python::script("st_encode.py");
    let mut child = Command::new(python)
        .arg(&script)
        .arg(model_dir)
        .args([threads, max_seq_length, batch_size].map(|n| n.to_string()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", python.display()))?;
    let input = serde_json::to_vec(texts)?;
    child.stdin.take().context("no stdin")?.write_all(&input)?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("{} failed ({})", script.display(), output.status);
    }
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("unexpected output from {}", script.display()))
}
