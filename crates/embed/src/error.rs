use std::path::PathBuf;

/// The result type of temper-embed.
pub type Result<T, E = EmbedError> = std::result::Result<T, E>;

/// What went wrong loading or running an embedder; load errors name the file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// A file of the model directory is missing or unreadable.
    #[error("cannot read {}", path.display())]
    Read { path: PathBuf, source: std::io::Error },

    /// A file of the model directory is readable but not usable.
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },

    /// The tokenizer refused a text.
    #[error("cannot tokenize text #{index}: {reason}")]
    Tokenize { index: usize, reason: String },

    /// The worker threads could not be started.
    #[error("cannot start {threads} embedding threads: {reason}")]
    Threads { threads: usize, reason: String },
}

impl EmbedError {
    pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        EmbedError::Invalid { path: path.into(), reason: reason.to_string() }
    }
}

impl From<EmbedError> for temper_core::Error {
    fn from(err: EmbedError) -> Self {
        match err {
            EmbedError::Invalid { path, reason } => temper_core::Error::invalid_model(path, reason),
            EmbedError::Read { path, source } => {
                temper_core::Error::io(format!("cannot read {}", path.display()), source)
            }
            other => temper_core::Error::Backend(other.to_string()),
        }
    }
}
