//! Temper's local inference engine.

pub mod dtype;
pub mod gguf;
pub mod template;
pub mod tokenizer;
