#![doc = include_str!("../README.md")]

mod catalog;
pub mod cost;
mod error;
mod fallback;
mod metered;
mod pip;
pub mod profiles;
mod progress;
mod resolve;
mod sources;
mod store;

pub use catalog::{
    catalog, find, CatalogEntry, ModelFile, ModelKind, Package, Part, DEFAULT_CHAT_MODEL,
    DEFAULT_EMBEDDING_MODEL, PYTHON_RUNTIME,
};
pub use error::StoreError;
pub use fallback::Fallback;
pub use metered::Metered;
pub use pip::PIP_ENV;
pub use profiles::{Backend, Profile, ProfileError, Profiles};
pub use progress::{ConsoleProgress, PullProgress, Silent, Stage};
pub use resolve::{Loaded, ResolveError, Resolver, Target};
pub use sources::{Origin, Secret, Sources, DEFAULT_HF_ENDPOINT};
pub use store::{
    Downloaded, FileStatus, Located, ModelInfo, ModelStatus, ModelStore, ResolvedModel, HOME_ENV,
};
