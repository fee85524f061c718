//! An agent as a variant: each row's task (its rendered prompt) given to an agent with a set of
//! tools, once per set, so that what tools add is measured like any prompt's accuracy. An
//! empty set is the model alone, through the same loop.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use temper_agent::{Agent, AgentOptions, Event, Limits, Toolbox};
use temper_core::{ChatModel, ChatResponse, GenerationParams};

use crate::rag::one_or_many;

/// The `[agent]` table of a spec.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Each list is a variant: the tools its agent gets (`[]`: none).
    pub tools: Vec<Vec<String>>,
    /// The most model calls that may call tools; then the model must answer.
    #[serde(default = "default_max_steps")]
    pub max_steps: usize,
    /// The first model call must call a tool (in the variants that have tools).
    #[serde(default)]
    pub require_tool: bool,
    /// The directory `read_file` and `list_files` read and `python` sees as `/data`
    /// (relative to the spec).
    pub root: Option<PathBuf>,
    /// Files or folders (relative to the spec) ingested for `rag_search`.
    #[serde(default, deserialize_with = "one_or_many")]
    pub documents: Vec<PathBuf>,
}

fn default_max_steps() -> usize {
    Limits::default().max_steps
}

/// Makes the toolbox of a variant's tool names (the caller knows where the runtime, the files
/// and the collection are).
pub type ToolboxMaker = dyn Fn(&[String]) -> Result<Toolbox, String> + Send + Sync;

/// What an agent row shows besides its answer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AgentRow {
    /// The tools called, in order.
    pub tool_calls: Vec<String>,
    /// How many calls returned an error.
    pub tool_errors: usize,
    /// Model calls made.
    pub model_calls: usize,
    /// The limit that ended the run, if one did.
    pub stopped: Option<String>,
}

/// Runs `task` with `model` and `tools`; the answer as a response carrying the run's usage and
/// cost.
pub(crate) async fn run(
    task: &str,
    model: Arc<dyn ChatModel>,
    tools: Toolbox,
    params: &GenerationParams,
    spec: &AgentSpec,
) -> Result<(ChatResponse, AgentRow), String> {
    let has_tools = !tools.names().is_empty();
    let options = AgentOptions {
        params: params.clone(),
        limits: Limits { max_steps: spec.max_steps, ..Limits::default() },
        require_tool: spec.require_tool && has_tools,
        ..AgentOptions::default()
    };
    let agent = Agent::new(model, tools, options);
    let run = agent.run(task, &mut |_: &Event| {}).await.map_err(|e| e.to_string())?;
    let row = AgentRow {
        tool_calls: run.steps.iter().filter(|s| s.kind == "tool").filter_map(|s| s.tool.clone()).collect(),
        tool_errors: run.steps.iter().filter(|s| s.kind == "tool" && s.error.is_some()).count(),
        model_calls: run.steps.iter().filter(|s| s.kind == "model").count(),
        stopped: run.stopped.map(|stop| stop.to_string()),
    };
    let response = ChatResponse { text: run.answer, usage: run.usage, cost: run.cost, ..Default::default() };
    Ok((response, row))
}
