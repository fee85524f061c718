//! Sending one request to a vendor: timeouts, retries with backoff and `Retry-After`, the
//! circuit breaker, and error messages with the status and the vendor's own words.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

pub(crate) use temper_core::error_chain;

use crate::frames::preview;
use crate::retry::parse_retry_after;
use crate::{vendors, ProviderError, Shared};

/// How long to wait for each part of an exchange.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    /// From sending the request to the response's status line and headers.
    pub response: Duration,
    /// Between two pieces of a streamed body: a stream that goes quiet this long is broken.
    pub idle: Duration,
    /// From sending the request to the end of a streamed answer: a server that trickles a byte
    /// now and then, never quiet for `idle`, is cut off here.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            response: Duration::from_secs(120),
            idle: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

/// The request headers: content type, the vendor's own, and the key (marked sensitive, so
/// that reqwest's `Debug` output hides it).
pub(crate) fn headers(shared: &Shared) -> Result<HeaderMap, ProviderError> {
    let mut map = HeaderMap::new();
    for &(name, value) in vendors::headers(shared.vendor) {
        map.insert(name, HeaderValue::from_static(value));
    }
    if let Some(key) = &shared.key {
        let (name, prefix) = vendors::auth_header(shared.vendor);
        let mut value = HeaderValue::from_str(&format!("{prefix}{}", key.expose())).map_err(|_| {
            ProviderError::UnsupportedMessage {
                vendor: shared.vendor.name(),
                reason: "the API key holds characters that cannot go in an HTTP header".into(),
            }
        })?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// POSTs `body` and returns the successful response, retrying transient failures.
pub(crate) async fn send(
    shared: &Shared,
    body: &serde_json::Value,
) -> Result<reqwest::Response, ProviderError> {
    let vendor = shared.vendor.name();
    if let Err((failures, wait)) = shared.breaker.check() {
        return Err(ProviderError::CircuitOpen { vendor, url: shared.url.clone(), failures, wait });
    }
    let headers = headers(shared)?;
    let mut retry = 0;
    loop {
        let (error, retry_after) = match attempt(shared, &headers, body).await {
            Ok(response) => return Ok(response),
            Err(failure) => failure,
        };
        let attempts = retry + 1;
        if !error.is_transient() {
            return Err(error);
        }
        if retry >= shared.retry.max_retries {
            shared.breaker.failure();
            return Err(error.after_attempts(attempts));
        }
        let wait = match retry_after {
            Some(asked) if asked > shared.retry.max_retry_after => {
                shared.breaker.failure();
                let (status, message) = match error {
                    ProviderError::Http { status, message, .. } => (status, message),
                    other => (0, other.to_string()),
                };
                return Err(ProviderError::RetryAfterTooLong {
                    vendor,
                    url: shared.url.clone(),
                    status,
                    message,
                    retry_after: asked,
                    limit: shared.retry.max_retry_after,
                });
            }
            Some(asked) => asked,
            None => shared.retry.backoff(retry),
        };
        (shared.warn)(format!("{error}; retrying in {:.1} s", wait.as_secs_f64()));
        tokio::time::sleep(wait).await;
        retry += 1;
    }
}

/// One attempt: the response, or the error with the server's `Retry-After`.
async fn attempt(
    shared: &Shared,
    headers: &HeaderMap,
    body: &serde_json::Value,
) -> Result<reqwest::Response, (ProviderError, Option<Duration>)> {
    let (vendor, url) = (shared.vendor.name(), shared.url.clone());
    let request = shared.client.post(&shared.url).headers(headers.clone()).json(body).send();
    let response = match tokio::time::timeout(shared.timeouts.response, request).await {
        Err(_) => {
            let timeout = shared.timeouts.response;
            return Err((
                ProviderError::Timeout { vendor, url, what: "no response", timeout, attempts: 1 },
                None,
            ));
        }
        Ok(Err(err)) => {
            let reason = shared.scrub(&error_chain(&err));
            return Err((ProviderError::Connection { vendor, url, reason, attempts: 1 }, None));
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after =
        response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let text = match tokio::time::timeout(shared.timeouts.idle, response.text()).await {
        Ok(Ok(text)) => text,
        _ => String::new(),
    };
    let message = match vendors::error_message(shared.vendor, &text) {
        Some(message) => message,
        None if text.trim().is_empty() => status.canonical_reason().unwrap_or("no message").to_owned(),
        None => preview(text.trim()),
    };
    let message = shared.scrub(&message);
    Err((ProviderError::Http { vendor, url, status: status.as_u16(), message, attempts: 1 }, retry_after))
}
