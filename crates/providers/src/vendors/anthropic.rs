//! Anthropic's Messages API: `POST /messages` with `stream: true`, answered with the SSE
//! sequence message_start, content_block_start, content_block_delta…, content_block_stop,
//! message_delta, message_stop (with `ping`s anywhere and `error` on failure).

use serde_json::{json, Value};
use temper_core::{ChatRequest, FinishReason, Message, ResponseFormat, Role, ToolChoice};

use super::{call_arguments, call_id, count, put, tool_json, CallPiece, Failure, Piece};
use crate::params::{check, refuse, within, Unsupported};
use crate::{ProviderError, Shared, Vendor};

pub(super) const API_VERSION: &str = "2023-06-01";

/// The API requires `max_tokens`; this is used when neither the request nor the profile sets it.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

const UNSUPPORTED: &[Unsupported] = &[
    ("min_p", "the Messages API has no min-p sampling"),
    ("repeat_penalty", "the Messages API has no repetition penalty"),
    ("frequency_penalty", "the Messages API has no frequency penalty"),
    ("presence_penalty", "the Messages API has no presence penalty"),
    ("seed", "the Messages API has no seed"),
    ("context_window", "the context window is fixed by the server"),
];

pub(super) fn body(shared: &Shared, request: &ChatRequest) -> Result<Value, ProviderError> {
    let params = check(shared, &request.params, UNSUPPORTED)?;
    let vendor = Vendor::Anthropic.name();
    within(vendor, "temperature", params.temperature, 1.0, "the Messages API accepts 0 to 1")?;
    // System messages go in a top-level field, the rest alternate user/assistant.
    let system: Vec<&str> =
        request.messages.iter().filter(|m| m.role == Role::System).map(|m| m.content.as_str()).collect();
    let messages = messages(request)?;
    let mut body = json!({
        "model": shared.model,
        "messages": messages,
        "max_tokens": params.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "stream": true,
    });
    let object = body.as_object_mut().expect("a JSON object literal");
    put(object, "system", (!system.is_empty()).then(|| system.join("\n\n")));
    put(object, "temperature", params.temperature);
    put(object, "top_p", params.top_p);
    put(object, "top_k", params.top_k);
    put(object, "stop_sequences", (!params.stop.is_empty()).then_some(&params.stop));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request.tools.iter().map(|tool| tool_json(tool, "input_schema")).collect();
        object.insert("tools".into(), tools.into());
        object.insert("tool_choice".into(), tool_choice(&request.tool_choice));
    }
    match answer_schema(request) {
        // The Messages API has no response format: the answer is asked for as the input of one
        // forced tool, which the stream then reads as the answer's text (`Run::take`).
        Some(schema) => {
            let tool =
                json!({ "name": ANSWER_TOOL, "description": "Give the answer.", "input_schema": schema });
            object.insert("tools".into(), json!([tool]));
            object.insert("tool_choice".into(), json!({ "type": "tool", "name": ANSWER_TOOL }));
        }
        None if request.structured_format().is_some() => refuse(
            shared,
            "response_format",
            "the Messages API enforces only JSON object formats, and not beside the request's own tools",
        )?,
        None => {}
    }
    if request.logprobs.is_some() {
        refuse(shared, "logprobs", "the Messages API does not return log-probabilities")?;
    }
    Ok(body)
}

/// The turns after the system prompt. Tool calls become `tool_use` blocks; tool results become
/// `tool_result` blocks of a user turn, consecutive results sharing one turn as the API wants.
fn messages(request: &ChatRequest) -> Result<Vec<Value>, ProviderError> {
    let mut turns: Vec<Value> = Vec::new();
    for m in request.messages.iter().filter(|m| m.role != Role::System) {
        match m.role {
            Role::Tool => {
                let block = json!({ "type": "tool_result", "tool_use_id": call_id(Vendor::Anthropic, m)?, "content": m.content });
                match turns.last_mut().and_then(|turn| turn.get_mut("content")).and_then(Value::as_array_mut)
                {
                    Some(blocks) if blocks.iter().all(|b| b["type"] == "tool_result") => blocks.push(block),
                    _ => turns.push(json!({ "role": "user", "content": [block] })),
                }
            }
            Role::Assistant if !m.tool_calls.is_empty() => turns.push(tool_use_turn(m)?),
            role => turns.push(json!({ "role": role.as_str(), "content": m.content })),
        }
    }
    Ok(turns)
}

fn tool_use_turn(message: &Message) -> Result<Value, ProviderError> {
    let mut blocks = Vec::new();
    if !message.content.is_empty() {
        blocks.push(json!({ "type": "text", "text": message.content }));
    }
    for call in &message.tool_calls {
        // The API takes the input as an object, not as the text the model wrote.
        let input = if call.arguments.trim().is_empty() {
            json!({})
        } else {
            call_arguments(Vendor::Anthropic, call)?
        };
        blocks.push(json!({ "type": "tool_use", "id": call.id, "name": call.name, "input": input }));
    }
    Ok(json!({ "role": "assistant", "content": blocks }))
}

/// The forced tool whose input is a JSON answer.
const ANSWER_TOOL: &str = "answer";

/// The schema of the JSON answer a request asks for, when Anthropic can give it as a forced
/// tool's input: a JSON object format, on a request offering no tools of its own.
pub(crate) fn answer_schema(request: &ChatRequest) -> Option<Value> {
    if !request.tools.is_empty() {
        return None;
    }
    match request.structured_format()? {
        ResponseFormat::JsonObject => Some(json!({ "type": "object" })),
        ResponseFormat::JsonSchema { schema, .. } if schema["type"] == "object" => Some(schema.clone()),
        _ => None,
    }
}

fn tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!({ "type": "auto" }),
        ToolChoice::None => json!({ "type": "none" }),
        ToolChoice::Required => json!({ "type": "any" }),
        ToolChoice::Function(name) => json!({ "type": "tool", "name": name }),
    }
}

pub(super) fn parse(event: &Value) -> Result<Vec<Piece>, Failure> {
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::Shape("an event without `type`".into()))?;
    Ok(match kind {
        "message_start" => {
            let usage = event
                .pointer("/message/usage")
                .ok_or_else(|| Failure::Shape("message_start without usage".into()))?;
            vec![Piece::Usage {
                prompt: count(usage, "input_tokens"),
                completion: count(usage, "output_tokens"),
            }]
        }
        "content_block_start" => match event.get("content_block") {
            Some(block) if block["type"] == "tool_use" => vec![Piece::ToolCall(CallPiece {
                index: event.get("index").and_then(Value::as_u64),
                id: block.get("id").and_then(Value::as_str).map(str::to_owned),
                name: block.get("name").and_then(Value::as_str).map(str::to_owned),
                arguments: String::new(),
            })],
            _ => vec![],
        },
        "content_block_delta" => match event.pointer("/delta/type").and_then(Value::as_str) {
            Some("input_json_delta") => vec![Piece::ToolCall(CallPiece {
                index: event.get("index").and_then(Value::as_u64),
                id: None,
                name: None,
                arguments: event
                    .pointer("/delta/partial_json")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            })],
            _ => match event.pointer("/delta/text").and_then(Value::as_str) {
                Some(text) if !text.is_empty() => vec![Piece::Text(text.to_owned())],
                _ => vec![],
            },
        },
        "message_delta" => {
            let mut pieces = Vec::new();
            match event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                Some("max_tokens") => pieces.push(Piece::Finish(FinishReason::Length)),
                Some("tool_use") => pieces.push(Piece::Finish(FinishReason::ToolCalls)),
                Some(_) => pieces.push(Piece::Finish(FinishReason::Stop)),
                None => {}
            }
            if let Some(usage) = event.get("usage") {
                pieces.push(Piece::Usage {
                    prompt: count(usage, "input_tokens"),
                    completion: count(usage, "output_tokens"),
                });
            }
            pieces
        }
        "message_stop" => vec![Piece::End],
        "error" => {
            let error = event.get("error");
            let message =
                error.and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or("unknown error");
            let kind = error.and_then(|e| e.get("type")).and_then(Value::as_str).unwrap_or("error");
            return Err(Failure::Vendor(format!("{kind}: {message}")));
        }
        // ping, content_block_stop, and event types added later carry no text.
        _ => vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events() {
        let start =
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 12, "output_tokens": 1}}});
        assert_eq!(parse(&start).ok(), Some(vec![Piece::Usage { prompt: Some(12), completion: Some(1) }]));
        let delta =
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}});
        assert_eq!(parse(&delta).ok(), Some(vec![Piece::Text("Hi".into())]));
        let end = json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 5}});
        assert_eq!(
            parse(&end).ok(),
            Some(vec![
                Piece::Finish(FinishReason::Length),
                Piece::Usage { prompt: None, completion: Some(5) }
            ])
        );
        let error = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        assert!(matches!(parse(&error), Err(Failure::Vendor(m)) if m == "overloaded_error: Overloaded"));
    }

    #[test]
    fn tool_use_events() {
        let start = json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}});
        assert_eq!(
            parse(&start).ok(),
            Some(vec![Piece::ToolCall(CallPiece {
                index: Some(1),
                id: Some("toolu_1".into()),
                name: Some("weather".into()),
                arguments: String::new()
            })])
        );
        let delta = json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Oslo\"}"}});
        assert_eq!(
            parse(&delta).ok(),
            Some(vec![Piece::ToolCall(CallPiece {
                index: Some(1),
                id: None,
                name: None,
                arguments: "{\"city\": \"Oslo\"}".into()
            })])
        );
        let text_start =
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}});
        assert_eq!(parse(&text_start).ok(), Some(vec![]));
        let end = json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}});
        assert_eq!(parse(&end).ok(), Some(vec![Piece::Finish(FinishReason::ToolCalls)]));
    }
}
