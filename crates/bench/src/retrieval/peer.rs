//! sentence-transformers on PyTorch, run in the virtualenv that `scripts/setup-python.sh` makes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use serde::Deserialize;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// One timed encoding by the peer.
#[derive(Deserialize)]
pub struct PeerRun {
    pub seconds: f64,
    pub torch: String,
    pub sentence_transformers: String,
}

/// The venv's Python, after creating the venv on first use.
pub fn python() -> anyhow::Result<PathBuf> {
    let venv = match std::env::var_os("BENCH_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(MANIFEST_DIR).join("../../target/bench-venv"),
    };
    let python = venv.join("bin/python");
    if !python.is_file() {
        eprintln!("creating {} with sentence-transformers and torch (first run only)…", venv.display());
        let script = Path::new(MANIFEST_DIR).join("scripts/setup-python.sh");
        let status = Command::new("bash").arg(&script).env("BENCH_VENV", &venv).status()?;
        if !status.success() {
            bail!("{} failed ({status})", script.display());
        }
    }
    Ok(python)
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
    let script = Path::new(MANIFEST_DIR).join("scripts/st_encode.py");
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
