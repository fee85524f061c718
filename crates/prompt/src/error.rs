use std::path::PathBuf;

/// The result type of temper-prompt.
pub type Result<T, E = PromptError> = std::result::Result<T, E>;

/// What went wrong, said so that a user can act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromptError {
    /// Something wrong at a place in a prompt file: its syntax, a field, a template.
    #[error("{}:{line}:{column}: {message}", path.display())]
    File { path: PathBuf, line: usize, column: usize, message: String },

    /// A prompt file that cannot be read.
    #[error("cannot read the prompt file {}", path.display())]
    Read { path: PathBuf, source: std::io::Error },

    /// A value given by the caller that cannot be used (a variable, a document, an option).
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },

    /// The prompt does not fit in the context window and the strategy is to refuse.
    #[error(
        "the prompt is {prompt_tokens} tokens and {answer_tokens} more are kept for the answer, \
         but the context window is {context_window} tokens: {} tokens too many; shorten the documents, \
         use a larger context window, or the truncate or map-reduce document strategy",
        prompt_tokens + answer_tokens - context_window
    )]
    Overflow { prompt_tokens: usize, answer_tokens: usize, context_window: usize },

    /// The model's replies could not be used, even after the retries.
    #[error("{what}: no usable reply after {attempts} attempts; the last one: {reason}")]
    Unusable { what: String, attempts: usize, reason: String },

    /// The chat model failed.
    #[error(transparent)]
    Model(#[from] temper_core::Error),
}

impl PromptError {
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        PromptError::Invalid { what: what.into(), reason: reason.into() }
    }

    /// The error, counting `requests` made before the failed step among its attempts.
    pub fn after(self, requests: usize) -> Self {
        match self {
            PromptError::Unusable { what, attempts, reason } => {
                PromptError::Unusable { what, attempts: attempts + requests, reason }
            }
            other => other,
        }
    }
}
