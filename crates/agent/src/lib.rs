#![doc = include_str!("../README.md")]

mod agent;
mod tool;
pub mod tools;

pub use agent::{Agent, AgentError, AgentOptions, Event, Limits, Run, Step, Stop, TimeSplit, DEFAULT_SYSTEM};
pub use tool::{arguments, clip, schema_of, Tool, ToolError, Toolbox, ToolboxError};
