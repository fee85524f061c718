//! API keys: `Authorization: Bearer KEY`, compared in constant time, never printed.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::AppState;

/// The keys a client may send. `Debug` shows how many there are, never what they are.
#[derive(Clone, Default)]
pub struct ApiKeys(Vec<String>);

impl ApiKeys {
    /// The keys given, without empty ones.
    pub fn new(keys: impl IntoIterator<Item = String>) -> ApiKeys {
        ApiKeys(keys.into_iter().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `presented` is one of the keys. Every key is compared in full, so the time taken
    /// says nothing about which bytes matched.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        self.0.iter().fold(false, |found, key| found | constant_time_eq(key.as_bytes(), presented))
    }
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.0.len())
    }
}

/// Equal bytes, in a time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let longest = a.len().max(b.len());
    let mut difference = u8::from(a.len() != b.len());
    for i in 0..longest {
        difference |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(difference) == 0
}

/// Lets a request through when the server has no keys or the request carries one of them.
pub async fn require_key(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if state.keys.is_empty() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::trim_ascii);
    match presented {
        Some(key) if state.keys.accepts(key) => next.run(request).await,
        _ => ApiError::unauthorized().into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_keys_and_never_shows_them() {
        let keys = ApiKeys::new(["sk-one".to_owned(), " sk-two ".to_owned(), String::new()]);
        assert!(keys.accepts(b"sk-one") && keys.accepts(b"sk-two"));
        assert!(!keys.accepts(b"sk-on") && !keys.accepts(b"sk-one1") && !keys.accepts(b""));
        assert_eq!(format!("{keys:?}"), "ApiKeys(2 keys)");
        assert!(ApiKeys::new([" ".to_owned()]).is_empty());
    }
}
