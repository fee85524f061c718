use std::time::Duration;

/// What went wrong talking to a vendor, said so that a user can act on it. No variant ever holds
/// an API key; vendor messages are scrubbed of the key before they get here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The vendor answered with an error status.
    #[error("{vendor} at {url} answered HTTP {status}: {message}{}", attempts_note(*attempts))]
    Http { vendor: &'static str, url: String, status: u16, message: String, attempts: u32 },

    /// No answer (or no next piece of a streamed answer) within the timeout.
    #[error("{vendor} at {url} did not answer within {:.1} s ({what}){}", timeout.as_secs_f64(), attempts_note(*attempts))]
    Timeout { vendor: &'static str, url: String, what: &'static str, timeout: Duration, attempts: u32 },

    /// The connection could not be made or broke.
    #[error("cannot reach {vendor} at {url}: {reason}{}", attempts_note(*attempts))]
    Connection { vendor: &'static str, url: String, reason: String, attempts: u32 },

    /// The server asked to wait longer than the retry policy allows.
    #[error("{vendor} at {url} answered HTTP {status} and asked to retry after {} s, longer than the {} s allowed: {message}", retry_after.as_secs(), limit.as_secs())]
    RetryAfterTooLong {
        vendor: &'static str,
        url: String,
        status: u16,
        message: String,
        retry_after: Duration,
        limit: Duration,
    },

    /// Too many recent failures: requests to this endpoint are refused for a while.
    #[error("{vendor} at {url} failed {failures} times in a row; not calling it again for {} s (circuit breaker)", wait.as_secs_f64().ceil())]
    CircuitOpen { vendor: &'static str, url: String, failures: u32, wait: Duration },

    /// A body (or a streamed event) that is not what the vendor's API documents.
    #[error("{vendor} sent a malformed {what}: {reason}")]
    Malformed { vendor: &'static str, what: &'static str, reason: String },

    /// The stream stopped before the vendor's end-of-answer marker.
    #[error("{vendor}'s stream broke before the answer was complete: {reason}")]
    StreamBroken { vendor: &'static str, reason: String },

    /// The vendor reported an error inside a stream that had started well.
    #[error("{vendor} reported an error mid-stream: {message}")]
    StreamError { vendor: &'static str, message: String },

    /// A generation parameter the vendor's API has no equivalent for.
    #[error("{vendor} cannot honour `{name}`: {reason} (unset it, or set unsupported_params = \"warn\" in the profile to drop it with a warning)")]
    UnsupportedParam { vendor: &'static str, name: &'static str, reason: &'static str },

    /// A request that is wrong whatever the vendor (a parameter out of range, a tool choice
    /// naming no tool).
    #[error(transparent)]
    InvalidRequest(temper_core::Error),

    /// A message the vendor's API cannot carry.
    #[error("{vendor} cannot take this conversation: {reason}")]
    UnsupportedMessage { vendor: &'static str, reason: String },

    /// The environment variable that should hold the API key is unset or empty.
    #[error("environment variable {var} is not set; it must hold the API key (keys live in the environment, never in temper.toml)")]
    MissingKey { var: String },

    /// A base URL that cannot be used.
    #[error("invalid base_url `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

impl ProviderError {
    /// Whether another attempt at the same endpoint may succeed.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            ProviderError::Http { status, .. } => *status == 429 || *status >= 500,
            ProviderError::Timeout { .. } | ProviderError::Connection { .. } => true,
            _ => false,
        }
    }

    /// Records how many attempts the error is the last of.
    pub(crate) fn after_attempts(mut self, n: u32) -> Self {
        match &mut self {
            ProviderError::Http { attempts, .. }
            | ProviderError::Timeout { attempts, .. }
            | ProviderError::Connection { attempts, .. } => *attempts = n,
            _ => {}
        }
        self
    }
}

impl From<ProviderError> for temper_core::Error {
    fn from(err: ProviderError) -> Self {
        match err {
            ProviderError::InvalidRequest(err) => err,
            ProviderError::UnsupportedParam { .. } | ProviderError::UnsupportedMessage { .. } => {
                temper_core::Error::Unsupported(err.to_string())
            }
            other => temper_core::Error::Backend(other.to_string()),
        }
    }
}
