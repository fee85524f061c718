use std::path::PathBuf;

/// The result type of every Temper library call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, said so that a user can act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A generation parameter is out of range or of the wrong type.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParam { name: String, reason: String },

    /// The prompt does not fit in the context window. Nothing is truncated unless asked.
    #[error(
        "the prompt is {prompt_tokens} tokens but the context window is {context_window} tokens; \
         shorten the prompt, use a larger context window, or allow truncation"
    )]
    ContextOverflow { prompt_tokens: usize, context_window: usize },

    /// A request the backend cannot serve (an unsupported parameter, feature or format).
    #[error("{0}")]
    Unsupported(String),

    /// A model file that cannot be used: corrupt, truncated, or of an unknown kind.
    #[error("{path}: {reason}")]
    InvalidModel { path: PathBuf, reason: String },

    /// A model name that is neither in the catalog nor a file.
    #[error("{0}")]
    ModelNotFound(String),

    /// The backend failed while running a request.
    #[error("{0}")]
    Backend(String),

    /// A file or stream operation failed; `context` says which, the source says why.
    #[error("{context}")]
    Io { context: String, source: std::io::Error },
}

impl Error {
    pub fn invalid_param(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidParam { name: name.into(), reason: reason.into() }
    }

    pub fn invalid_model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::InvalidModel { path: path.into(), reason: reason.into() }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

/// An error and every cause below it, on one line (`Display` of most errors shows only the
/// top, which alone may say no more than "error sending request").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_says_each_cause_once() {
        let cause = std::io::Error::new(std::io::ErrorKind::NotFound, "no such thing");
        let err = Error::io("cannot read p.toml", cause);
        assert_eq!(err.to_string(), "cannot read p.toml");
        assert_eq!(error_chain(&err), "cannot read p.toml: no such thing");
    }
}
