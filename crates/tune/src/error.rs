/// The result type of temper-tune.
pub type Result<T, E = TuneError> = std::result::Result<T, E>;

/// What went wrong, said so that a user can act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TuneError {
    /// A bad entry of the `[tune]` table, named by its key (`tune.space.top_p`).
    #[error("{key}: {reason}")]
    Spec { key: String, reason: String },

    /// No setting meets the latency and cost limits.
    #[error("{0}")]
    Limits(String),

    /// The objective (the evaluator behind it) failed.
    #[error("the evaluation failed")]
    Objective(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// A tuned prompt file that cannot be written.
    #[error("cannot write the tuned prompt to {}: {reason}", path.display())]
    Write { path: std::path::PathBuf, reason: String },

    /// The proposer model failed.
    #[error(transparent)]
    Model(#[from] temper_core::Error),

    /// A prompt file that cannot be built or written.
    #[error(transparent)]
    Prompt(#[from] temper_prompt::PromptError),
}

impl TuneError {
    pub fn spec(key: impl Into<String>, reason: impl Into<String>) -> Self {
        TuneError::Spec { key: key.into(), reason: reason.into() }
    }

    /// Wraps the error of an objective's evaluator.
    pub fn objective(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        TuneError::Objective(error.into())
    }
}
