#![doc = include_str!("../README.md")]

mod error;
mod message;
mod model;
mod params;
mod response;
mod tokens;
mod tools;

pub use error::{error_chain, Error, Result};
pub use message::{Message, Role};
pub use model::{collect_response, ChatModel, ChatRequest, CompletionRequest, EmbeddingModel, EventStream};
pub use params::GenerationParams;
pub use response::{ChatResponse, FinishReason, StreamEvent, Timings, ToolCallDelta, Usage};
pub use tokens::TokenCounter;
pub use tools::{ResponseFormat, TokenLogprob, Tool, ToolCall, ToolChoice, TopLogprob, MAX_TOP_LOGPROBS};
