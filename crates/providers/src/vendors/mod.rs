//! What differs between vendors: endpoint, headers, request body, stream events, error bodies.

mod anthropic;
pub use anthropic::DEFAULT_MAX_TOKENS as ANTHROPIC_DEFAULT_MAX_TOKENS;
mod ollama;
mod openai;

use serde_json::Value;
use temper_core::{ChatRequest, FinishReason, TokenLogprob, TopLogprob};

use crate::frames::{Frame, Framing};
use crate::{ProviderError, Shared, Vendor};

/// Part of a tool call, or (in the stream) a call whose parts are still arriving.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct CallPiece {
    pub index: Option<u64>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

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
    /// Part of a tool call. `index` groups the parts of one call (OpenAI, Anthropic stream its
    /// arguments in pieces); `None` is a whole call of its own (Ollama).
    ToolCall(CallPiece),
    /// Log-probabilities of the tokens this frame carries.
    Logprobs(Vec<TokenLogprob>),
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
    request.validate().map_err(ProviderError::InvalidRequest)?;
    match shared.vendor {
        Vendor::OpenAi => openai::body(shared, request),
        Vendor::Anthropic => anthropic::body(shared, request),
        Vendor::Ollama => ollama::body(shared, request),
    }
}

/// Whether the vendor gives the request's JSON answer as a forced tool's input, to be read
/// as text (Anthropic, which has no response format).
pub(crate) fn answers_through_a_tool(vendor: Vendor, request: &ChatRequest) -> bool {
    vendor == Vendor::Anthropic && anthropic::answer_schema(request).is_some()
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

/// Token log-probabilities as OpenAI and Ollama write them: `[{"token", "logprob",
/// "top_logprobs": [{"token", "logprob"}…]}…]`.
fn token_logprobs(entries: &Value) -> Result<Vec<TokenLogprob>, Failure> {
    let shape = || Failure::Shape(format!("logprobs are not a list of tokens: {entries}"));
    let pair = |entry: &Value| -> Option<(String, f32)> {
        Some((entry.get("token")?.as_str()?.to_owned(), entry.get("logprob")?.as_f64()? as f32))
    };
    entries
        .as_array()
        .ok_or_else(shape)?
        .iter()
        .map(|entry| {
            let (token, logprob) = pair(entry).ok_or_else(shape)?;
            let top = match entry.get("top_logprobs").and_then(Value::as_array) {
                Some(list) => list
                    .iter()
                    .map(|alt| pair(alt).map(|(token, logprob)| TopLogprob { token, logprob }))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(shape)?,
                None => Vec::new(),
            };
            Ok(TokenLogprob { token, logprob, top })
        })
        .collect()
}

/// The JSON-schema'd tool list as OpenAI and Ollama take it.
fn function_tools(request: &ChatRequest) -> Value {
    request
        .tools
        .iter()
        .map(|tool| serde_json::json!({ "type": "function", "function": tool_json(tool, "parameters") }))
        .collect()
}

/// One tool as every vendor describes it: name, the JSON schema of its arguments under
/// `schema_key` (`parameters`, or Anthropic's `input_schema`), and the description if it has one.
fn tool_json(tool: &temper_core::Tool, schema_key: &str) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("name".into(), Value::from(tool.name.as_str()));
    object.insert(schema_key.into(), tool.parameters.clone());
    put(&mut object, "description", tool.description.as_ref());
    Value::Object(object)
}

/// A tool result must say which call it answers.
fn call_id(vendor: Vendor, message: &temper_core::Message) -> Result<&str, ProviderError> {
    message.tool_call_id.as_deref().ok_or_else(|| ProviderError::UnsupportedMessage {
        vendor: vendor.name(),
        reason: "a tool message must name the call it answers (build it with Message::tool_result)".into(),
    })
}

/// A call's arguments parsed as JSON, for vendors that take them as a value; text that is not
/// JSON cannot be sent to them.
fn call_arguments(vendor: Vendor, call: &temper_core::ToolCall) -> Result<Value, ProviderError> {
    call.parsed_arguments()
        .map_err(|e| ProviderError::UnsupportedMessage { vendor: vendor.name(), reason: e.to_string() })
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
