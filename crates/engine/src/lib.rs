#![doc = include_str!("../README.md")]

mod constraint;
pub mod dtype;
pub mod gguf;
mod local;
mod logprobs;
mod memory;
pub mod model;
pub mod quant;
pub mod sampler;
pub mod stop;
mod summary;
pub mod template;
pub mod tokenizer;
mod tool_calls;

pub use local::{LoadOptions, LocalModel, DEFAULT_CONTEXT_WINDOW, DEFAULT_SEQUENCES};
pub use summary::ModelSummary;
