//! OpenAI's chat completions API, as OpenAI, vLLM, llama.cpp's server, LM Studio and Ollama's
//! `/v1` serve it: `POST /chat/completions` with `stream: true`, answered with SSE chunks and
//! `data: [DONE]`.

use serde_json::{json, Value};
use temper_core::{ChatRequest, FinishReason, ResponseFormat, Role, ToolChoice};

use super::{call_id, count, function_tools, put, token_logprobs, CallPiece, Failure, Piece};
use crate::params::{check, vendor_can_enforce_format, within, Unsupported};
use crate::{ProviderError, Shared, Vendor};

const UNSUPPORTED: &[Unsupported] = &[
    ("top_k", "the chat completions API has no top-k sampling"),
    ("min_p", "the chat completions API has no min-p sampling"),
    ("repeat_penalty", "the chat completions API has frequency and presence penalties instead"),
    ("context_window", "the context window is fixed by the server"),
];

pub(super) fn body(shared: &Shared, request: &ChatRequest) -> Result<Value, ProviderError> {
    let params = check(shared, &request.params, UNSUPPORTED)?;
    within(Vendor::OpenAi.name(), "temperature", params.temperature, 2.0, "the API accepts 0 to 2")?;
    let mut body = json!({
        "model": shared.model,
        "messages": messages(request)?,
        "stream": true,
        // Without it the stream carries no token counts.
        "stream_options": { "include_usage": true },
    });
    let object = body.as_object_mut().expect("a JSON object literal");
    put(object, "temperature", params.temperature);
    put(object, "top_p", params.top_p);
    put(object, "frequency_penalty", params.frequency_penalty);
    put(object, "presence_penalty", params.presence_penalty);
    put(object, "max_tokens", params.max_tokens);
    put(object, "seed", params.seed);
    put(object, "stop", (!params.stop.is_empty()).then_some(&params.stop));
    if !request.tools.is_empty() {
        object.insert("tools".into(), function_tools(request));
        object.insert("tool_choice".into(), tool_choice(&request.tool_choice));
        put(object, "parallel_tool_calls", request.parallel_tool_calls);
    }
    if vendor_can_enforce_format(shared, request)? {
        put(object, "response_format", request.response_format.as_ref().map(response_format));
    }
    if let Some(top) = request.logprobs {
        object.insert("logprobs".into(), Value::Bool(true));
        object.insert("top_logprobs".into(), top.into());
    }
    Ok(body)
}

/// The conversation, with assistant tool calls and tool results as the API links them by id.
fn messages(request: &ChatRequest) -> Result<Vec<Value>, ProviderError> {
    request
        .messages
        .iter()
        .map(|m| {
            Ok(match m.role {
                Role::Tool => json!({ "role": "tool", "tool_call_id": call_id(Vendor::OpenAi, m)?, "content": m.content }),
                Role::Assistant if !m.tool_calls.is_empty() => {
                    let calls: Vec<Value> = m
                        .tool_calls
                        .iter()
                        .map(|c| json!({ "id": c.id, "type": "function", "function": { "name": c.name, "arguments": c.arguments } }))
                        .collect();
                    let content = (!m.content.is_empty()).then_some(m.content.as_str());
                    json!({ "role": "assistant", "content": content, "tool_calls": calls })
                }
                role => json!({ "role": role.as_str(), "content": m.content }),
            })
        })
        .collect()
}

fn tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => "auto".into(),
        ToolChoice::None => "none".into(),
        ToolChoice::Required => "required".into(),
        ToolChoice::Function(name) => json!({ "type": "function", "function": { "name": name } }),
    }
}

fn response_format(format: &ResponseFormat) -> Value {
    match format {
        ResponseFormat::Text => json!({ "type": "text" }),
        ResponseFormat::JsonObject => json!({ "type": "json_object" }),
        ResponseFormat::JsonSchema { name, schema, strict } => {
            json!({ "type": "json_schema", "json_schema": { "name": name, "schema": schema, "strict": strict } })
        }
        // Refused before the body is built (`vendor_can_enforce_format`).
        ResponseFormat::Grammar { .. } | ResponseFormat::Regex { .. } => Value::Null,
    }
}

/// One `chat.completion.chunk`: a content delta, pieces of tool calls, log-probabilities and, at
/// the end, the finish reason and usage.
pub(super) fn parse(chunk: &Value) -> Result<Vec<Piece>, Failure> {
    if let Some(error) = chunk.get("error") {
        let message = error.get("message").and_then(Value::as_str).unwrap_or("unknown error");
        return Err(Failure::Vendor(message.to_owned()));
    }
    let choices = chunk
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::Shape("a chunk without `choices`".into()))?;
    let mut pieces = Vec::new();
    if let Some(choice) = choices.first() {
        if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str) {
            if !text.is_empty() {
                pieces.push(Piece::Text(text.to_owned()));
            }
        }
        for call in choice.pointer("/delta/tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let text = |pointer: &str| call.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
            pieces.push(Piece::ToolCall(CallPiece {
                index: Some(call.get("index").and_then(Value::as_u64).unwrap_or(0)),
                id: text("/id"),
                name: text("/function/name"),
                arguments: text("/function/arguments").unwrap_or_default(),
            }));
        }
        if let Some(entries) = choice.pointer("/logprobs/content").filter(|c| !c.is_null()) {
            pieces.push(Piece::Logprobs(token_logprobs(entries)?));
        }
        match choice.get("finish_reason").and_then(Value::as_str) {
            Some("length") => pieces.push(Piece::Finish(FinishReason::Length)),
            Some("tool_calls" | "function_call") => pieces.push(Piece::Finish(FinishReason::ToolCalls)),
            Some(_) => pieces.push(Piece::Finish(FinishReason::Stop)),
            None => {}
        }
    }
    if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
        pieces.push(Piece::Usage {
            prompt: count(usage, "prompt_tokens"),
            completion: count(usage, "completion_tokens"),
        });
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks() {
        let delta = json!({"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}]});
        assert_eq!(parse(&delta).ok(), Some(vec![Piece::Text("Hi".into())]));
        let last = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]});
        assert_eq!(parse(&last).ok(), Some(vec![Piece::Finish(FinishReason::Length)]));
        let usage = json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}});
        assert_eq!(parse(&usage).ok(), Some(vec![Piece::Usage { prompt: Some(9), completion: Some(2) }]));
        assert!(matches!(parse(&json!({"id": 1})), Err(Failure::Shape(_))));
    }

    #[test]
    fn tool_call_and_logprob_chunks() {
        let call = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "weather", "arguments": ""}}]}, "finish_reason": null}]});
        assert_eq!(
            parse(&call).ok(),
            Some(vec![Piece::ToolCall(CallPiece {
                index: Some(0),
                id: Some("call_1".into()),
                name: Some("weather".into()),
                arguments: String::new()
            })])
        );
        let more = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\""}}]}}]});
        assert_eq!(
            parse(&more).ok(),
            Some(vec![Piece::ToolCall(CallPiece {
                index: Some(0),
                id: None,
                name: None,
                arguments: "{\"city\"".into()
            })])
        );
        let end = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]});
        assert_eq!(parse(&end).ok(), Some(vec![Piece::Finish(FinishReason::ToolCalls)]));
        let logprobs = json!({"choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": {"content": [
            {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": [{"token": "Hi", "logprob": -0.25, "bytes": null}]}]}}]});
        let pieces = parse(&logprobs).ok().unwrap();
        assert!(
            matches!(&pieces[1], Piece::Logprobs(l) if l[0].token == "Hi" && l[0].logprob == -0.25 && l[0].top.len() == 1)
        );
        let broken =
            json!({"choices": [{"index": 0, "delta": {}, "logprobs": {"content": [{"token": "Hi"}]}}]});
        assert!(matches!(parse(&broken), Err(Failure::Shape(_))));
    }
}
