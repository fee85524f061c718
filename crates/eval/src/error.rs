use std::path::PathBuf;

/// The result type of temper-eval.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

/// What went wrong, said so that a user can act on it: the file, the line or row, the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Something that cannot be used, and where it is: `reviews.jsonl:12`, `spec.toml:3:7`,
    /// `assertions[2]`. Found before any model call.
    #[error("{place}: {reason}")]
    Invalid { place: String, reason: String },

    /// The evaluation cache cannot be used. It is never wiped to recover.
    #[error("the evaluation cache {}: {reason}", path.display())]
    Cache { path: PathBuf, reason: String },

    /// A model that cannot be resolved or loaded.
    #[error("model `{name}`: {reason}")]
    Model { name: String, reason: String },

    #[error(transparent)]
    Prompt(#[from] temper_prompt::PromptError),
}

impl EvalError {
    pub fn invalid(place: impl Into<String>, reason: impl Into<String>) -> Self {
        EvalError::Invalid { place: place.into(), reason: reason.into() }
    }

    /// Something wrong at `line` of the file `path`.
    pub fn at_line(path: &std::path::Path, line: usize, reason: impl Into<String>) -> Self {
        Self::invalid(format!("{}:{line}", path.display()), reason)
    }
}
