//! The Python peers' virtualenv: at `$BENCH_VENV` (default `target/bench-venv` under the
//! workspace), created on first use, with each peer's packages installed by pip when missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The venv's Python, with `packages` (pip names, in install order; each imports under its
/// name with `-` as `_`) importable.
pub fn venv(packages: &[&str]) -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("BENCH_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(MANIFEST_DIR).join("../../target/bench-venv"),
    };
    let python = dir.join("bin/python");
    if !python.is_file() {
        eprintln!("creating the virtualenv {} (first run only)…", dir.display());
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir), "python3 -m venv")?;
    }
    let imports: Vec<String> = packages.iter().map(|p| p.replace('-', "_")).collect();
    let check = format!("import {}", imports.join(", "));
    let ready = Command::new(&python).args(["-c", &check]).output().is_ok_and(|o| o.status.success());
    if !ready {
        for package in packages {
            eprintln!("installing {package} into {} …", dir.display());
            run(Command::new(&python).args(["-m", "pip", "install", "--quiet", package]), "pip install")?;
        }
    }
    Ok(python)
}

/// A peer script shipped in `crates/bench/scripts`.
pub fn script(name: &str) -> PathBuf {
    Path::new(MANIFEST_DIR).join("scripts").join(name)
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
