#![doc = include_str!("../README.md")]

pub mod budget;
pub mod cod;
pub mod cot;
mod error;
mod file;
pub mod json;
mod parts;
pub mod render;
pub mod retrieval;
pub mod retry;
pub mod run;
pub mod schema;
#[cfg(any(test, feature = "scripted"))]
pub mod scripted;
pub mod sot;
mod template;

pub use budget::{Budget, Cut};
pub use error::{PromptError, Result};
pub use file::{line_column, parse_vars, Example, PromptFile, TestCase};
pub use parts::{PromptParts, DEFAULT_TEMPLATE};
pub use render::{CotMode, Document, Layout, Prompt};
pub use retrieval::{PassageRanker, Retrieval, Retrieved};
pub use run::{run, Answer, DocStrategy, RunOptions, RunReport};
pub use template::Template;
