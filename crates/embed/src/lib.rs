#![doc = include_str!("../README.md")]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

mod bert;
mod config;
mod embedder;
mod error;
mod kernels;

pub use config::Pooling;
pub use embedder::{EmbedOptions, Embedder, Precision};
pub use error::{EmbedError, Result};
