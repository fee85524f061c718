#![doc = include_str!("../README.md")]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

mod constraint;
pub mod gguf;
mod local;
mod logprobs;
mod memory;
pub mod model;
pub mod sampler;
pub mod stop;
mod summary;
pub mod template;
pub mod tokenizer;
mod tool_calls;

pub use local::{FinalPrompt, LoadOptions, LocalModel, DEFAULT_CONTEXT_WINDOW, DEFAULT_SEQUENCES};
pub use summary::ModelSummary;
