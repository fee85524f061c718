//! Temper's local inference engine.

pub mod dtype;
pub mod gguf;
pub mod sampler;
pub mod stop;
pub mod template;
pub mod tokenizer;
