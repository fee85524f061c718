#![doc = include_str!("../README.md")]

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

pub use local::{FinalPrompt, LoadOptions, LocalModel, DEFAULT_CONTEXT_WINDOW, DEFAULT_SEQUENCES};
pub use summary::ModelSummary;
