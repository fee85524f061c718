use std::path::PathBuf;

/// The result type of temper-rag.
pub type Result<T, E = RagError> = std::result::Result<T, E>;

/// What went wrong, said so that a user can act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RagError {
    /// The store file cannot be opened or used: corrupt, not a database, or from elsewhere.
    #[error("the store {path} cannot be used: {reason}")]
    BadStore { path: PathBuf, reason: String },

    /// A command that reads a store was given a path (or a database) where there is none; only
    /// ingestion creates one.
    #[error("there is no store at {}; `temper rag ingest` creates one (check the path)", path.display())]
    NoStore { path: PathBuf },

    /// A store operation failed.
    #[error("store: {context}")]
    Store { context: String, source: rusqlite::Error },

    /// A statement of a database store failed: `store` is its URL without the password.
    #[error("the store {store}: {context}: {reason}")]
    Database { store: String, context: String, reason: String },

    #[error("there is no collection named `{0}`; `temper rag collections` lists them")]
    NoCollection(String),

    /// A collection holds vectors of another embedder: mixing them would make search meaningless.
    #[error(
        "collection `{collection}` holds vectors of {stored} ({stored_dimensions} dimensions) \
         but the embedder is {given} ({given_dimensions} dimensions); use another collection or remove this one"
    )]
    EmbedderMismatch {
        collection: String,
        stored: String,
        stored_dimensions: usize,
        given: String,
        given_dimensions: usize,
    },

    /// A value given by the caller that cannot be used (a filter, a size, a query).
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },

    /// The embedder or the chat model failed.
    #[error(transparent)]
    Model(#[from] temper_core::Error),

    #[error("{context}")]
    Io { context: String, source: std::io::Error },
}

impl RagError {
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        RagError::Invalid { what: what.into(), reason: reason.into() }
    }
}

/// Adds what the store was doing to a SQLite error.
pub(crate) trait StoreContext<T> {
    fn context(self, context: &str) -> Result<T>;
}

impl<T> StoreContext<T> for std::result::Result<T, rusqlite::Error> {
    fn context(self, context: &str) -> Result<T> {
        self.map_err(|source| RagError::Store { context: context.to_owned(), source })
    }
}
