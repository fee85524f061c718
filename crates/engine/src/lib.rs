//! Temper's local inference engine.

pub mod dtype;
pub mod gguf;
pub mod tokenizer;
