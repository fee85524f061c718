#![doc = include_str!("../README.md")]

mod bert;
mod config;
mod embedder;
mod error;
mod gelu;

pub use config::Pooling;
pub use embedder::{EmbedOptions, Embedder};
pub use error::{EmbedError, Result};
