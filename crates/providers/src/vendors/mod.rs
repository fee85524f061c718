//! What differs between vendors: endpoint, headers, request body, stream events, error bodies.

mod anthropic;
pub use anthropic::DEFAULT_MAX_TOKENS as ANTHROPIC_DEFAULT_MAX_TOKENS;
mod ollama;
mod openai;

use serde_json::Value;
use temper_core::{ChatRequest, FinishReason, Role};

use crate::frames::{Frame, Framing};
use crate::{ProviderError, Shared, Vendor};

/// What one frame of a stream says.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Piece {
    Text(String),
    /// Token counts, as far as this frame reports them.
    Usage {
        prompt: Option<u32>,
        completion: Option<u32>,
    },
    Finish(FinishReason),
    /// The vendor's end-of-answer marker.
    End,
}

pub(crate) fn framing(vendor: Vendor) -> Framing {
    match vendor {
        Vendor::OpenAi | Vendor::Anthropic => Framing::Sse,
        Vendor::Ollama => Framing::Ndjson,
    }
}

/// The path under the base URL that takes chat requests.
pub(crate) fn chat_path(vendor: Vendor) -> &'static str {
    match vendor {
        Vendor::OpenAi => "/chat/completions",
        Vendor::Anthropic => "/messages",
        Vendor::Ollama => "/api/chat",
    }
}

pub(crate) fn headers(vendor: Vendor) -> &'static [(&'static str, &'static str)] {
    match vendor {
        Vendor::Anthropic => &[("anthropic-version", anthropic::API_VERSION)],
        Vendor::OpenAi | Vendor::Ollama => &[],
    }
}

/// The header that carries the key, and what goes before the key in it.
pub(crate) fn auth_header(vendor: Vendor) -> (&'static str, &'static str) {
    match vendor {
        Vendor::Anthropic => ("x-api-key", ""),
        Vendor::OpenAi | Vendor::Ollama => ("authorization", "Bearer "),
    }
}

/// The request body for a streamed answer to `request`.
pub(crate) fn chat_body(shared: &Shared, request: &ChatRequest) -> Result<Value, ProviderError> {
    match shared.vendor {
        Vendor::OpenAi => openai::body(shared, request),
        Vendor::Anthropic => anthropic::body(shared, request),
        Vendor::Ollama => ollama::body(shared, request),
    }
}

/// What one frame of the stream says.
pub(crate) fn parse(vendor: Vendor, frame: &Frame) -> Result<Vec<Piece>, ProviderError> {
    let json = || {
        serde_json::from_str::<Value>(&frame.data).map_err(|e| ProviderError::Malformed {
            vendor: vendor.name(),
            what: "stream event",
            reason: format!("{e} in `{}`", crate::frames::preview(&frame.data)),
        })
    };
    match vendor {
        Vendor::OpenAi if frame.data.trim() == "[DONE]" => Ok(vec![Piece::End]),
        Vendor::OpenAi => openai::parse(&json()?),
        Vendor::Anthropic => anthropic::parse(&json()?),
        Vendor::Ollama => ollama::parse(&json()?),
    }
    .map_err(|reason| match reason {
        Failure::Vendor(message) => ProviderError::StreamError { vendor: vendor.name(), message },
        Failure::Shape(reason) => {
            ProviderError::Malformed { vendor: vendor.name(), what: "stream event", reason }
        }
    })
}

/// Why a frame could not be turned into pieces.
pub(crate) enum Failure {
    /// The vendor reported an error in the stream.
    Vendor(String),
    /// The frame is not shaped as the API documents.
    Shape(String),
}

/// The message in a vendor's error body: `{"error": {"message": …}}` (OpenAI, Anthropic, with
/// Anthropic's error type in front) or `{"error": "…"}` (Ollama).
pub(crate) fn error_message(vendor: Vendor, body: &str) -> Option<String> {
    let json: Value = serde_json::from_str(body).ok()?;
    let error = json.get("error")?;
    if let Some(text) = error.as_str() {
        return Some(text.to_owned());
    }
    let message = error.get("message")?.as_str()?;
    match (vendor, error.get("type").and_then(Value::as_str)) {
        (Vendor::Anthropic, Some(kind)) => Some(format!("{kind}: {message}")),
        _ => Some(message.to_owned()),
    }
}

/// `{"role": …, "content": …}` messages, for the vendors that take a system message in the list.
fn role_content_messages(vendor: Vendor, request: &ChatRequest) -> Result<Vec<Value>, ProviderError> {
    request
        .messages
        .iter()
        .map(|m| match m.role {
            // A tool result needs the id of the call it answers, which core does not carry yet.
            Role::Tool if vendor == Vendor::OpenAi => Err(ProviderError::UnsupportedMessage {
                vendor: vendor.name(),
                reason: "a tool message needs a tool call id, which Temper does not send yet".into(),
            }),
            role => Ok(serde_json::json!({ "role": role.as_str(), "content": m.content })),
        })
        .collect()
}

/// A JSON field as a token count.
fn count(value: &Value, field: &str) -> Option<u32> {
    value.get(field).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok())
}

/// Inserts `value` under `key` when it is set.
fn put<T: serde::Serialize>(object: &mut serde_json::Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(value) = value.and_then(|v| serde_json::to_value(v).ok()) {
        object.insert(key.to_owned(), value);
    }
}
