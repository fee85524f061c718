#![doc = include_str!("../README.md")]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

mod cpu;
pub mod dtype;
pub mod quant;
mod vector;
#[cfg(target_arch = "x86_64")]
pub mod x86;

pub use cpu::{cpu_level, CpuLevel};
pub use dtype::GgmlType;
pub use vector::{dot, normalize};
