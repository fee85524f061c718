use serde::{Deserialize, Serialize};

use crate::{TokenLogprob, ToolCall};

/// Why generation ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn or a stop string was reached.
    #[default]
    Stop,
    /// `max_tokens` or the context window was reached.
    Length,
    /// The model called tools and waits for their results.
    ToolCalls,
}

/// Tokens read and written by one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// How fast one request ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// From the request to the first generated token.
    pub ttft_ms: f64,
    pub prefill_tokens_per_second: f64,
    pub decode_tokens_per_second: f64,
}

/// The whole answer to one request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The model that answered.
    pub model: String,
    pub text: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub timings: Timings,
    /// What the request cost in USD, from the prices of the model's profile (none when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// The tools the model called, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Per generated token, when the request asked for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// A piece of a tool call as the model writes it: the first piece of call `index` carries its
/// id and name, the next ones more of its arguments. The final response holds the calls whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCallDelta {
    pub index: usize,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

/// What a streaming request yields. Every backend yields the same events.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// More text of the answer.
    Delta(String),
    /// More of a tool call (backends that stream calls; the others give them whole in `Done`).
    ToolCall(ToolCallDelta),
    /// The text so far is void: the answer starts again (a fallback to another model).
    Restart { reason: String },
    /// The answer is complete; the last event of a stream.
    Done(ChatResponse),
}
