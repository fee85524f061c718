#![doc = include_str!("../README.md")]

pub mod agent;
pub mod assertion;
pub mod cache;
pub mod dataset;
mod error;
pub mod judge;
pub mod metrics;
pub mod rag;
pub mod report;
mod runner;
pub mod spec;

pub use agent::{AgentRow, AgentSpec, ToolboxMaker};
pub use assertion::{Assertion, AssertionOutcome, AssertionSpec, Kind};
pub use cache::{Cache, CACHE_FILE};
pub use dataset::{Partition, Row, Split};
pub use error::{EvalError, Result};
pub use rag::{RagPipeline, RagRow, RagSpec};
pub use runner::{Evaluator, Resolver, RowReport, Settings, Variant, VariantReport};
pub use spec::{CacheSetting, RowSelection, Spec};
