#![doc = include_str!("../README.md")]

mod agent;
mod threads;
mod tool;
pub mod tools;

pub use agent::{Agent, AgentError, AgentOptions, Event, Limits, Run, Step, Stop, TimeSplit, DEFAULT_SYSTEM};
/// The sandbox the `python` tool runs code in.
pub use temper_sandbox as sandbox;
pub use threads::{with_every_result, Thread, ThreadError, ThreadInfo, Threads, INTERRUPTED};
pub use tool::{arguments, clip, schema_of, Tool, ToolError, Toolbox, ToolboxError};
