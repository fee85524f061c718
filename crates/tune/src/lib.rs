#![doc = include_str!("../README.md")]

mod error;
mod file;
pub mod pareto;
pub mod prompt;
pub mod propose;
pub mod search;
pub mod space;
pub mod spec;

pub use error::{Result, TuneError};
pub use file::write_prompt;
pub use pareto::pareto_front;
pub use prompt::{
    describe_task, optimise_prompt, Candidate, Origin, PromptHeldOut, PromptObjective, PromptReport,
    RowOutcome, Scored,
};
pub use search::{describe, search_params, HeldOut, Measurement, ParamObjective, ParamReport, Trial};
pub use space::{Choice, Dimension, Param, Space};
pub use spec::{Method, PromptSpec, TuneSpec};
