//! Anthropic's Messages API: `POST /messages` with `stream: true`, answered with the SSE
//! sequence message_start, content_block_start, content_block_delta…, content_block_stop,
//! message_delta, message_stop (with `ping`s anywhere and `error` on failure).

use serde_json::{json, Value};
use temper_core::{ChatRequest, FinishReason, Role};

use super::{count, put, Failure, Piece};
use crate::params::{check, within, Unsupported};
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
    let messages = request
        .messages
        .iter()
        .filter(|m| m.role != Role::System)
        .map(|m| match m.role {
            Role::Tool => Err(ProviderError::UnsupportedMessage {
                vendor,
                reason: "a tool result needs a tool_use id, which Temper does not send yet".into(),
            }),
            role => Ok(json!({ "role": role.as_str(), "content": m.content })),
        })
        .collect::<Result<Vec<_>, _>>()?;
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
    Ok(body)
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
        "content_block_delta" => match event.pointer("/delta/text").and_then(Value::as_str) {
            Some(text) if !text.is_empty() => vec![Piece::Text(text.to_owned())],
            _ => vec![],
        },
        "message_delta" => {
            let mut pieces = Vec::new();
            match event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                Some("max_tokens") => pieces.push(Piece::Finish(FinishReason::Length)),
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
        // ping, content_block_start/stop, and event types added later carry no text.
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
}
