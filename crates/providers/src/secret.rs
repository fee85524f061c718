//! API keys: read from the environment, sent in a header, shown nowhere.

use std::fmt;

use crate::ProviderError;

/// An API key. Its `Debug` and `Display` print `[redacted]`, so it cannot leak through a log,
/// an error or a panic message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key in environment variable `var`; an unset or empty variable is an error naming it.
    pub fn from_env(var: &str) -> Result<ApiKey, ProviderError> {
        match std::env::var(var) {
            Ok(key) if !key.trim().is_empty() => Ok(ApiKey(key.trim().to_owned())),
            _ => Err(ProviderError::MissingKey { var: var.to_owned() }),
        }
    }

    /// The key itself, for the one place that needs it: the request header.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced, for vendor messages that echo it.
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.0, "[redacted]")
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let key = ApiKey::new("sk-secret-123");
        assert!(!format!("{key:?} {key} {:?}", Some(&key)).contains("sk-secret"));
        assert_eq!(key.scrub("bad key sk-secret-123!"), "bad key [redacted]!");
    }

    #[test]
    fn missing_variable_is_named() {
        let err = ApiKey::from_env("TEMPER_TEST_SURELY_UNSET_KEY").unwrap_err();
        assert!(err.to_string().contains("TEMPER_TEST_SURELY_UNSET_KEY"), "{err}");
    }
}
