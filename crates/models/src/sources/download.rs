//! Downloads of one file over HTTP(S) into a partial file that survives a failed pull: a retry, or
//! the next pull, continues it with `Range: bytes=N-`; the file is checked (size, SHA-256, GGUF
//! magic) before the caller moves it into place.
//!
//! The HTTP client is reqwest's blocking one, which the workspace already builds (with rustls):
//! the store's API is blocking (the CLI calls it directly, the server from blocking tasks). The
//! `hf-hub` crate was considered for the hub: it downloads into the Hugging Face cache rather
//! than a file of ours, does not continue a partial download, does not check the SHA-256, and
//! brings a second reqwest and the Xet client with it; the hub's API is two JSON requests, done
//! in `hf.rs`.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header::RANGE;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use super::{check_gguf, Secret};
use crate::error::StoreError;
use crate::progress::{PullProgress, Stage};

/// Tries of one download within one pull before it gives up (and keeps the partial file).
pub(crate) const ATTEMPTS: usize = 4;
/// The longest wait for the next bytes (or for the connection) before a try counts as broken.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const BUFFER: usize = 1 << 16;

/// An HTTP client for the hub and for downloads.
pub(crate) fn client() -> Result<Client, StoreError> {
    Client::builder()
        .timeout(READ_TIMEOUT)
        .user_agent(concat!("temper/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| StoreError::Http {
            url: "anything (the HTTP client did not start)".to_owned(),
            reason: reqwest_reason(e),
        })
}

/// One file to download.
pub(crate) struct Fetch<'a> {
    /// The model as the user named it, for messages.
    pub what: &'a str,
    pub url: &'a str,
    pub token: Option<&'a Secret>,
    /// What the file must be, when the source says.
    pub size: Option<u64>,
    pub sha256: Option<&'a str>,
    /// Advice for a 401 or 403 (such as setting `HF_TOKEN`).
    pub when_denied: &'a str,
}

/// What the downloaded file is.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub size: u64,
    pub sha256: String,
}

/// Why one try failed: worth another try, or not.
enum Failure {
    Retry(String),
    Fatal(StoreError),
}

/// Downloads `fetch` into `partial`, continuing what an earlier try left there, with a few tries
/// (waiting `retry_delay`, doubled each time) when the connection breaks or the server errs.
/// A file that turns out wrong (size, SHA-256, not a GGUF) is deleted; a download that keeps
/// breaking is kept for the next pull to continue.
pub(crate) fn fetch(
    client: &Client,
    fetch: &Fetch<'_>,
    partial: &Path,
    retry_delay: Duration,
    progress: &dyn PullProgress,
) -> Result<Fetched, StoreError> {
    let mut delay = retry_delay;
    let mut attempt = 1;
    loop {
        match try_once(client, fetch, partial, progress) {
            Ok(()) => return verify(fetch, partial, progress),
            Err(Failure::Fatal(err)) => return Err(err),
            Err(Failure::Retry(reason)) if attempt < ATTEMPTS => {
                progress.stage(Stage::Retrying { reason: &reason, attempt: attempt + 1, attempts: ATTEMPTS });
                std::thread::sleep(delay);
                delay *= 2;
                attempt += 1;
            }
            Err(Failure::Retry(reason)) => {
                let kept = fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
                return Err(StoreError::DownloadBroken {
                    what: fetch.what.to_owned(),
                    attempts: ATTEMPTS,
                    reason,
                    partial: partial.to_owned(),
                    kept,
                });
            }
        }
    }
}

fn try_once(
    client: &Client,
    fetch: &Fetch<'_>,
    partial: &Path,
    progress: &dyn PullProgress,
) -> Result<(), Failure> {
    let mut have = fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
    if fetch.size.is_some_and(|size| have > size) {
        // Not a prefix of this file (the repository changed since): start afresh.
        have = 0;
    }
    if have > 0 && fetch.size == Some(have) {
        return Ok(());
    }
    let mut request = client.get(fetch.url);
    if let Some(token) = fetch.token {
        request = request.bearer_auth(token.expose());
    }
    if have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
    }
    let mut response = request.send().map_err(|e| Failure::Retry(reqwest_reason(e)))?;
    let status = response.status();
    let start = match status {
        StatusCode::PARTIAL_CONTENT => have,
        // A server that ignores `Range` sends the whole file again.
        StatusCode::OK => 0,
        // Nothing past what is there: the file is whole, as `verify` checks.
        StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => return Ok(()),
        StatusCode::TOO_MANY_REQUESTS => return Err(Failure::Retry(format!("the server answered {status}"))),
        s if s.is_server_error() => return Err(Failure::Retry(format!("the server answered {status}"))),
        _ => return Err(Failure::Fatal(refused(fetch, status))),
    };
    let io = |action, e| Failure::Fatal(StoreError::io(action, partial, e));
    if let Some(parent) = partial.parent() {
        fs::create_dir_all(parent).map_err(|e| Failure::Fatal(StoreError::io("create", parent, e)))?;
    }
    let mut file = match start {
        0 => File::create(partial),
        _ => OpenOptions::new().append(true).open(partial),
    }
    .map_err(|e| io("open", e))?;
    let total = response.content_length().map(|rest| start + rest).or(fetch.size);
    progress.stage(Stage::Fetching { what: fetch.what, total_bytes: total, resumed_from: start });
    let mut buffer = vec![0; BUFFER];
    let mut written = start;
    loop {
        let n = match response.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // What arrived is kept: the next try continues after it.
                file.sync_all().map_err(|e| io("write", e))?;
                return Err(Failure::Retry(format!("the connection broke after {written} bytes: {e}")));
            }
        };
        file.write_all(&buffer[..n]).map_err(|e| io("write", e))?;
        written += n as u64;
        progress.advance(n as u64);
    }
    file.sync_all().map_err(|e| io("write", e))?;
    match total {
        Some(total) if written < total => {
            Err(Failure::Retry(format!("the connection closed after {written} of {total} bytes")))
        }
        _ => Ok(()),
    }
}

/// An answer that no retry changes: a missing file, or access refused.
fn refused(fetch: &Fetch<'_>, status: StatusCode) -> StoreError {
    let advice = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => fetch.when_denied.to_owned(),
        StatusCode::NOT_FOUND => "check the name or URL".to_owned(),
        _ => "pull again later, or check the URL".to_owned(),
    };
    StoreError::HttpStatus {
        what: fetch.what.to_owned(),
        url: fetch.url.to_owned(),
        status: status.to_string(),
        advice,
    }
}

/// Checks the finished download; a wrong one is deleted, since continuing it cannot mend it.
fn verify(fetch: &Fetch<'_>, partial: &Path, progress: &dyn PullProgress) -> Result<Fetched, StoreError> {
    progress.stage(Stage::Verifying);
    let fetched = hash_file(partial)?;
    let mismatch = |property: &str, expected: String, actual: String| StoreError::DownloadMismatch {
        what: fetch.what.to_owned(),
        property: property.to_owned(),
        expected,
        actual,
    };
    let wrong = match (fetch.size, fetch.sha256) {
        (Some(size), _) if size != fetched.size => {
            Some(mismatch("size", format!("{size} bytes"), format!("{} bytes", fetched.size)))
        }
        (_, Some(sha256)) if !sha256.eq_ignore_ascii_case(&fetched.sha256) => {
            Some(mismatch("SHA-256", sha256.to_ascii_lowercase(), fetched.sha256.clone()))
        }
        _ => check_gguf(partial).err(),
    };
    match wrong {
        None => Ok(fetched),
        Some(err) => {
            fs::remove_file(partial).map_err(|e| StoreError::io("remove", partial, e))?;
            Err(err)
        }
    }
}

/// The size and SHA-256 of the file at `path`.
pub(crate) fn hash_file(path: &Path) -> Result<Fetched, StoreError> {
    let mut file = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).map_err(|e| StoreError::io("read", path, e))?;
    Ok(Fetched { size, sha256: format!("{:x}", hasher.finalize()) })
}

/// A reqwest error with its causes (its own message alone says little: "error sending request"),
/// without the URL, which the messages that use it name already.
pub(crate) fn reqwest_reason(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut reason = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        reason.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    reason
}
