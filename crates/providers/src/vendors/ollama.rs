//! Ollama's native API: `POST /api/chat`, answered with one JSON object per line, the last with
//! `"done": true`, the finish reason and the token counts.

use serde_json::{json, Value};
use temper_core::{ChatRequest, FinishReason};

use super::{count, put, role_content_messages, Failure, Piece};
use crate::params::check;
use crate::{ProviderError, Shared, Vendor};

pub(super) fn body(shared: &Shared, request: &ChatRequest) -> Result<Value, ProviderError> {
    // Ollama's options cover every generation parameter Temper has.
    let params = check(shared, &request.params, &[])?;
    let mut options = serde_json::Map::new();
    put(&mut options, "temperature", params.temperature);
    put(&mut options, "top_p", params.top_p);
    put(&mut options, "top_k", params.top_k);
    put(&mut options, "min_p", params.min_p);
    put(&mut options, "repeat_penalty", params.repeat_penalty);
    put(&mut options, "frequency_penalty", params.frequency_penalty);
    put(&mut options, "presence_penalty", params.presence_penalty);
    put(&mut options, "num_predict", params.max_tokens);
    put(&mut options, "num_ctx", params.context_window);
    put(&mut options, "seed", params.seed);
    put(&mut options, "stop", (!params.stop.is_empty()).then_some(&params.stop));
    Ok(json!({
        "model": shared.model,
        "messages": role_content_messages(Vendor::Ollama, request)?,
        "stream": true,
        "options": options,
    }))
}

pub(super) fn parse(line: &Value) -> Result<Vec<Piece>, Failure> {
    if let Some(error) = line.get("error") {
        return Err(Failure::Vendor(error.as_str().unwrap_or("unknown error").to_owned()));
    }
    let done = line
        .get("done")
        .and_then(Value::as_bool)
        .ok_or_else(|| Failure::Shape("a line without `done`".into()))?;
    let mut pieces = Vec::new();
    if let Some(text) = line.pointer("/message/content").and_then(Value::as_str) {
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_owned()));
        }
    }
    if done {
        let reason = match line.get("done_reason").and_then(Value::as_str) {
            Some("length") => FinishReason::Length,
            _ => FinishReason::Stop,
        };
        pieces.push(Piece::Finish(reason));
        pieces.push(Piece::Usage {
            prompt: count(line, "prompt_eval_count"),
            completion: count(line, "eval_count"),
        });
        pieces.push(Piece::End);
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let delta = json!({"model": "m", "message": {"role": "assistant", "content": "Hi"}, "done": false});
        assert_eq!(parse(&delta).ok(), Some(vec![Piece::Text("Hi".into())]));
        let last = json!({"message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "length",
                          "prompt_eval_count": 7, "eval_count": 3});
        assert_eq!(
            parse(&last).ok(),
            Some(vec![
                Piece::Finish(FinishReason::Length),
                Piece::Usage { prompt: Some(7), completion: Some(3) },
                Piece::End
            ])
        );
        assert!(matches!(parse(&json!({"error": "model 'x' not found"})), Err(Failure::Vendor(_))));
    }
}
