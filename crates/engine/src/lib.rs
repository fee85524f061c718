//! Temper's local inference engine.

pub mod dtype;
pub mod sampler;
pub mod stop;
