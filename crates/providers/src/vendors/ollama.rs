//! Ollama's native API: `POST /api/chat`, answered with one JSON object per line, the last with
//! `"done": true`, the finish reason and the token counts.

use serde_json::{json, Value};
use temper_core::{ChatRequest, FinishReason, Message, ResponseFormat, Role, ToolChoice};

use super::{call_arguments, count, function_tools, put, token_logprobs, CallPiece, Failure, Piece};
use crate::params::{check, refuse, vendor_can_enforce_format};
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
    let mut body = json!({
        "model": shared.model,
        "messages": messages(request)?,
        "stream": true,
        "options": options,
    });
    let object = body.as_object_mut().expect("a JSON object literal");
    // Ollama always lets the model choose; "none" is honoured by offering no tools.
    match &request.tool_choice {
        _ if request.tools.is_empty() => {}
        ToolChoice::None => {}
        ToolChoice::Auto => {
            object.insert("tools".into(), function_tools(request));
        }
        ToolChoice::Required | ToolChoice::Function(_) => {
            refuse(shared, "tool_choice", "Ollama's API cannot force a tool call")?;
            object.insert("tools".into(), function_tools(request));
        }
    }
    let enforce = vendor_can_enforce_format(shared, request)?;
    match request.structured_format().filter(|_| enforce) {
        Some(ResponseFormat::JsonObject) => {
            object.insert("format".into(), "json".into());
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            object.insert("format".into(), schema.clone());
        }
        // Plain text is what Ollama answers with unasked.
        None | Some(ResponseFormat::Text | ResponseFormat::Grammar { .. } | ResponseFormat::Regex { .. }) => {
        }
    }
    if let Some(top) = request.logprobs {
        object.insert("logprobs".into(), Value::Bool(true));
        object.insert("top_logprobs".into(), top.into());
    }
    Ok(body)
}

/// The conversation. Tool calls carry their arguments as objects; a tool result names the tool
/// whose call it answers (Ollama matches results by name, not by id).
fn messages(request: &ChatRequest) -> Result<Vec<Value>, ProviderError> {
    let tool_name = |id: &str| {
        request.messages.iter().flat_map(|m| &m.tool_calls).find(|c| c.id == id).map(|c| c.name.clone())
    };
    request
        .messages
        .iter()
        .map(|m| {
            let mut message = json!({ "role": m.role.as_str(), "content": m.content });
            let object = message.as_object_mut().expect("a JSON object literal");
            if m.role == Role::Tool {
                put(object, "tool_name", m.tool_call_id.as_deref().and_then(tool_name));
            }
            if !m.tool_calls.is_empty() {
                object.insert("tool_calls".into(), tool_calls(m)?);
            }
            Ok(message)
        })
        .collect()
}

fn tool_calls(message: &Message) -> Result<Value, ProviderError> {
    message
        .tool_calls
        .iter()
        .map(|call| {
            let arguments = call_arguments(Vendor::Ollama, call)?;
            Ok(json!({ "function": { "name": call.name, "arguments": arguments } }))
        })
        .collect()
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
    // Ollama sends each call whole, with its arguments as an object.
    for call in line.pointer("/message/tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let name = call.pointer("/function/name").and_then(Value::as_str);
        let name = name.ok_or_else(|| Failure::Shape(format!("a tool call without a name: {call}")))?;
        let arguments = call.pointer("/function/arguments").cloned().unwrap_or_else(|| json!({}));
        pieces.push(Piece::ToolCall(CallPiece {
            index: None,
            id: call.get("id").and_then(Value::as_str).map(str::to_owned),
            name: Some(name.to_owned()),
            arguments: arguments.to_string(),
        }));
    }
    if let Some(entries) = line.get("logprobs").filter(|l| !l.is_null()) {
        pieces.push(Piece::Logprobs(token_logprobs(entries)?));
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

    #[test]
    fn tool_calls_and_logprobs() {
        let call = json!({"message": {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "weather", "arguments": {"city": "Oslo"}}}]}, "done": false});
        assert_eq!(
            parse(&call).ok(),
            Some(vec![Piece::ToolCall(CallPiece {
                index: None,
                id: None,
                name: Some("weather".into()),
                arguments: r#"{"city":"Oslo"}"#.into()
            })])
        );
        let nameless = json!({"message": {"role": "assistant", "content": "", "tool_calls": [{"function": {}}]}, "done": false});
        assert!(matches!(parse(&nameless), Err(Failure::Shape(_))));
        let logprobs = json!({"message": {"role": "assistant", "content": "Hi"}, "done": false,
            "logprobs": [{"token": "Hi", "logprob": -0.5, "top_logprobs": [{"token": "Hello", "logprob": -1.5}]}]});
        let pieces = parse(&logprobs).ok().unwrap();
        assert!(matches!(&pieces[1], Piece::Logprobs(l) if l[0].top[0].token == "Hello"));
    }
}
