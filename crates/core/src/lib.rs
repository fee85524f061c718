//! The values every step of Temper passes around: messages, generation parameters,
//! requests, responses, stream events, errors, and the [`ChatModel`] trait that every
//! backend (the local engine, HTTP vendors) implements.

mod error;
mod message;
mod model;
mod params;
mod response;

pub use error::{Error, Result};
pub use message::{Message, Role};
pub use model::{collect_response, ChatModel, ChatRequest, CompletionRequest, EventStream};
pub use params::GenerationParams;
pub use response::{ChatResponse, FinishReason, StreamEvent, Timings, Usage};
