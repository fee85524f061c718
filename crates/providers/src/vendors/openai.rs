//! OpenAI's chat completions API, as OpenAI, vLLM, llama.cpp's server, LM Studio and Ollama's
//! `/v1` serve it: `POST /chat/completions` with `stream: true`, answered with SSE chunks and
//! `data: [DONE]`.

use serde_json::{json, Value};
use temper_core::{ChatRequest, FinishReason};

use super::{count, put, role_content_messages, Failure, Piece};
use crate::params::{check, within, Unsupported};
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
        "messages": role_content_messages(Vendor::OpenAi, request)?,
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
    Ok(body)
}

/// One `chat.completion.chunk`: a content delta and, at the end, the finish reason and usage.
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
        match choice.get("finish_reason").and_then(Value::as_str) {
            Some("length") => pieces.push(Piece::Finish(FinishReason::Length)),
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
}
