//! The OpenAI-compatible routes under `/v1`: chat completions, text completions, embeddings and
//! the model list.

pub(crate) mod wire;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use futures::StreamExt;
use serde_json::{json, Value};
use temper_core::{ChatResponse, EventStream, StreamEvent, TokenLogprob, ToolCallDelta};
use temper_models::{catalog, ModelKind};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{ApiError, ApiJson};
use crate::pool::Lease;
use crate::AppState;
use wire::{parse_body, ChatCompletionBody, CompletionBody, EmbeddingInput, EmbeddingsBody};

/// The most texts one embeddings request may carry (OpenAI's limit).
const MAX_EMBEDDING_INPUTS: usize = 2048;

/// Whether the client asked for a 503 instead of waiting while the model loads.
pub(crate) fn waits(headers: &HeaderMap) -> bool {
    !headers.get("x-temper-no-wait").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true") || v == "1")
}

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (body, sampling) = parse_body::<ChatCompletionBody>(body)?;
    let call = body.into_call(sampling)?;
    let lease = state.pool.chat(&call.model, waits(&headers)).await?;
    let events = lease.model.model.chat_stream(call.request);
    let shape = Shape::new(Kind::Chat, call.model, call.include_usage);
    generate(state, lease, events, shape, call.stream, started).await
}

pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (body, sampling) = parse_body::<CompletionBody>(body)?;
    let call = body.into_call(sampling)?;
    let lease = state.pool.chat(&call.model, waits(&headers)).await?;
    let events = lease.model.model.complete_stream(call.request);
    let shape = Shape::new(Kind::Completion, call.model, call.include_usage);
    generate(state, lease, events, shape, call.stream, started).await
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Completion,
}

/// How one answer is written: its id, object names and options.
struct Shape {
    kind: Kind,
    /// The model asked for, named in every chunk until the answer says which one answered.
    model: String,
    id: String,
    created: u64,
    include_usage: bool,
}

impl Shape {
    fn new(kind: Kind, model: String, include_usage: bool) -> Shape {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let prefix = if kind == Kind::Chat { "chatcmpl" } else { "cmpl" };
        let id = format!("{prefix}-{created:x}{:08x}", NEXT.fetch_add(1, Ordering::Relaxed));
        Shape { kind, model, id, created, include_usage }
    }

    /// The whole answer, for a request that did not stream.
    fn response(&self, response: &ChatResponse) -> Value {
        let finish = finish_reason(response);
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0,
                "message": message(response),
                "logprobs": logprobs(response),
                "finish_reason": finish,
            }),
            Kind::Completion => {
                json!({ "index": 0, "text": response.text, "logprobs": null, "finish_reason": finish })
            }
        };
        json!({
            "id": self.id,
            "object": if self.kind == Kind::Chat { "chat.completion" } else { "text_completion" },
            "created": self.created,
            "model": response.model,
            "choices": [choice],
            "usage": usage(response),
            "temper": { "timings": response.timings },
        })
    }

    /// One streamed chunk around `choices`.
    fn chunk(&self, model: &str, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": if self.kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" },
            "created": self.created,
            "model": model,
            "choices": choices,
        })
    }

    /// The chunk carrying a piece of text (and, for chat, the role with the first one).
    fn delta(&self, text: &str, first: bool) -> Value {
        let choice = match (self.kind, first) {
            (Kind::Chat, true) => {
                json!({ "index": 0, "delta": { "role": "assistant", "content": text }, "logprobs": null, "finish_reason": null })
            }
            (Kind::Chat, false) => {
                json!({ "index": 0, "delta": { "content": text }, "logprobs": null, "finish_reason": null })
            }
            (Kind::Completion, _) => {
                json!({ "index": 0, "text": text, "logprobs": null, "finish_reason": null })
            }
        };
        self.chunk(&self.model, json!([choice]))
    }

    /// The chunk carrying a piece of a tool call, as OpenAI streams them: the id, type and name
    /// with the call's first piece, then its arguments (and the role with the answer's first chunk).
    fn call_delta(&self, delta: &ToolCallDelta, first: bool) -> Value {
        let mut call = json!({ "index": delta.index, "function": { "arguments": delta.arguments } });
        if let (Some(id), Some(name)) = (&delta.id, &delta.name) {
            call["id"] = id.as_str().into();
            call["type"] = "function".into();
            call["function"]["name"] = name.as_str().into();
        }
        let mut delta = json!({ "tool_calls": [call] });
        if first {
            delta["role"] = "assistant".into();
        }
        self.chunk(
            &self.model,
            json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": null }]),
        )
    }

    /// The chunks that end a stream: the tool calls unless they were streamed, the finish reason
    /// (with the log-probabilities) and, when asked, the usage.
    fn ending(&self, response: &ChatResponse, calls_streamed: bool) -> Vec<Value> {
        let mut chunks = Vec::new();
        let model = &response.model;
        if !response.tool_calls.is_empty() && !calls_streamed {
            let calls: Vec<Value> = response
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, c)| json!({ "index": i, "id": c.id, "type": "function", "function": { "name": c.name, "arguments": c.arguments } }))
                .collect();
            let choice = json!({ "index": 0, "delta": { "tool_calls": calls }, "logprobs": null, "finish_reason": null });
            chunks.push(self.chunk(model, json!([choice])));
        }
        let finish = finish_reason(response);
        let last = match self.kind {
            Kind::Chat => {
                json!({ "index": 0, "delta": {}, "logprobs": logprobs(response), "finish_reason": finish })
            }
            Kind::Completion => json!({ "index": 0, "text": "", "logprobs": null, "finish_reason": finish }),
        };
        let mut last = self.chunk(model, json!([last]));
        last["temper"] = json!({ "timings": response.timings });
        chunks.push(last);
        if self.include_usage {
            let mut usage_chunk = self.chunk(model, json!([]));
            usage_chunk["usage"] = usage(response);
            chunks.push(usage_chunk);
        }
        chunks
    }
}

fn finish_reason(response: &ChatResponse) -> Value {
    serde_json::to_value(response.finish_reason).expect("an enum of names serializes")
}

fn message(response: &ChatResponse) -> Value {
    let mut message = json!({ "role": "assistant", "content": response.text, "refusal": null });
    if !response.tool_calls.is_empty() {
        let calls: Vec<Value> = response
            .tool_calls
            .iter()
            .map(|c| json!({ "id": c.id, "type": "function", "function": { "name": c.name, "arguments": c.arguments } }))
            .collect();
        message["tool_calls"] = calls.into();
        if response.text.is_empty() {
            message["content"] = Value::Null;
        }
    }
    message
}

pub(crate) fn usage(response: &ChatResponse) -> Value {
    let usage = response.usage;
    let mut value = json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    });
    if let Some(cost) = response.cost {
        value["cost"] = cost.into();
    }
    value
}

fn logprobs(response: &ChatResponse) -> Value {
    let Some(tokens) = &response.logprobs else { return Value::Null };
    let entry =
        |token: &str, logprob: f32| json!({ "token": token, "logprob": logprob, "bytes": token.as_bytes() });
    let content: Vec<Value> = tokens
        .iter()
        .map(|t: &TokenLogprob| {
            let mut value = entry(&t.token, t.logprob);
            value["top_logprobs"] = t.top.iter().map(|alt| entry(&alt.token, alt.logprob)).collect();
            value
        })
        .collect();
    json!({ "content": content, "refusal": null })
}

/// Runs one generation, streamed as server-sent events or answered whole. The first event is
/// awaited before anything is sent, so a request the model refuses gets its proper status
/// rather than a 200 followed by an error event.
async fn generate<M: Send + 'static>(
    state: Arc<AppState>,
    lease: Lease<M>,
    mut events: EventStream,
    shape: Shape,
    stream: bool,
    started: Instant,
) -> Result<Response, ApiError> {
    let first = state.first_event(&mut events).await?;
    if matches!(first, StreamEvent::Delta(_) | StreamEvent::ToolCall(_)) {
        state.metrics.first_token(started.elapsed());
    }
    if !stream {
        let mut event = first;
        loop {
            if let StreamEvent::Done(response) = event {
                state.metrics.tokens(response.usage.prompt_tokens, response.usage.completion_tokens);
                state.metrics.generation(started.elapsed());
                drop(lease);
                return Ok(Json(shape.response(&response)).into_response());
            }
            event = tokio::select! {
                event = events.next() => match event {
                    Some(event) => event?,
                    None => return Err(ApiError::internal("the model's stream ended before the answer was complete")),
                },
                _ = state.terminating() => return Err(ApiError::shutting_down()),
            };
        }
    }
    let (sender, receiver) = mpsc::channel::<Event>(64);
    tokio::spawn(relay(state, lease, first, events, shape, sender, started));
    let body = ReceiverStream::new(receiver).map(Ok::<_, Infallible>);
    Ok(Sse::new(body).keep_alive(KeepAlive::default()).into_response())
}

/// Turns a model's events into SSE chunks until the answer ends, the client goes away (a failed
/// send: dropping `events` then cancels the generation and frees its slot), or the server's
/// grace period for shutting down runs out.
async fn relay<M>(
    state: Arc<AppState>,
    lease: Lease<M>,
    first: StreamEvent,
    mut events: EventStream,
    shape: Shape,
    sender: mpsc::Sender<Event>,
    started: Instant,
) {
    let data = |value: &Value| Event::default().data(value.to_string());
    let mut first_text = true;
    let mut calls_streamed = false;
    let mut next = Some(Ok(first));
    loop {
        let event = match next.take() {
            Some(event) => event,
            None => tokio::select! {
                event = events.next() => match event {
                    Some(event) => event,
                    None => Err(temper_core::Error::Backend("the model's stream ended before the answer was complete".into())),
                },
                _ = state.terminating() => Err(temper_core::Error::Backend("the server is shutting down".into())),
            },
        };
        let chunks = match event {
            Ok(StreamEvent::Delta(text)) => {
                let chunk = shape.delta(&text, first_text);
                first_text = false;
                vec![chunk]
            }
            Ok(StreamEvent::ToolCall(delta)) => {
                let chunk = shape.call_delta(&delta, first_text);
                (first_text, calls_streamed) = (false, true);
                vec![chunk]
            }
            Ok(StreamEvent::Restart { reason }) => {
                let mut chunk = shape.chunk(&shape.model, json!([]));
                chunk["temper"] = json!({ "restart": reason });
                (first_text, calls_streamed) = (true, false);
                vec![chunk]
            }
            Ok(StreamEvent::Done(response)) => {
                state.metrics.tokens(response.usage.prompt_tokens, response.usage.completion_tokens);
                state.metrics.generation(started.elapsed());
                let mut chunks: Vec<Event> =
                    shape.ending(&response, calls_streamed).iter().map(data).collect();
                chunks.push(Event::default().data("[DONE]"));
                for chunk in chunks {
                    if sender.send(chunk).await.is_err() {
                        break;
                    }
                }
                break;
            }
            Err(error) => {
                let _ = sender.send(data(&ApiError::from(error).body())).await;
                break;
            }
        };
        for chunk in &chunks {
            if sender.send(data(chunk)).await.is_err() {
                tracing::debug!("the client went away; generation cancelled");
                return;
            }
        }
    }
    drop(lease);
}

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EmbeddingsBody>,
) -> Result<Response, ApiError> {
    let texts = match body.input {
        EmbeddingInput::Texts(texts) => texts.into_vec(),
        EmbeddingInput::Tokens(_) => {
            return Err(ApiError::bad_request(
                "input must be a string or a list of strings (token ids are not read)",
                Some("input"),
            ))
        }
    };
    if texts.is_empty() || texts.len() > MAX_EMBEDDING_INPUTS {
        let message =
            format!("input must hold 1 to {MAX_EMBEDDING_INPUTS} texts ({} were sent)", texts.len());
        return Err(ApiError::bad_request(message, Some("input")));
    }
    if let Some(i) = texts.iter().position(|t| t.is_empty()) {
        return Err(ApiError::bad_request("texts must not be empty", Some(&format!("input[{i}]"))));
    }
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("`{other}` is not an encoding; use float or base64"),
                Some("encoding_format"),
            ))
        }
    };
    let lease = state.pool.embeddings(&body.model, waits(&headers)).await?;
    let embeddings = &lease.model;
    let dimensions = embeddings.model.dimensions();
    if body.dimensions.is_some_and(|d| d != dimensions) {
        let message =
            format!("`{}` makes vectors of {dimensions} dimensions and cannot shorten them", body.model);
        return Err(ApiError::bad_request(message, Some("dimensions")));
    }
    let (vectors, tokens) = match &embeddings.local {
        // The encoder is CPU work: off the async threads.
        Some(local) => {
            let local = local.clone();
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let vectors = local.embed_batch(&refs)?;
                let tokens: usize = refs.iter().map(|t| local.tokenize(t).map_or(0, |ids| ids.len())).sum();
                Ok::<_, temper_embed::EmbedError>((vectors, tokens))
            })
            .await
            .map_err(|e| ApiError::internal(format!("the embedder failed: {e}")))?
            .map_err(|e| ApiError::internal(crate::error::chain(&e)))?
        }
        None => (embeddings.model.embed(&texts).await?, 0),
    };
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding: Value = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                base64::engine::general_purpose::STANDARD.encode(bytes).into()
            } else {
                vector.iter().map(|&x| x as f64).collect()
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let usage = json!({ "prompt_tokens": tokens, "total_tokens": tokens });
    Ok(Json(json!({ "object": "list", "data": data, "model": body.model, "usage": usage })).into_response())
}

/// Every catalog model, installed or pullable, and every profile of `temper.toml`.
pub async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "object": "list", "data": model_list(&state) }))
}

pub async fn model(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    model_list(&state).into_iter().find(|m| m["id"] == id.as_str()).map(Json).ok_or_else(|| {
        ApiError::not_found(format!("no model `{id}`; GET /v1/models lists them"), "model_not_found")
    })
}

fn model_list(state: &AppState) -> Vec<Value> {
    let resolver = state.pool.resolver();
    let store = resolver.store();
    let loaded = state.pool.loaded();
    let mut list: Vec<Value> = catalog()
        .iter()
        .filter(|entry| entry.kind != ModelKind::Runtime)
        .map(|entry| {
            let kind = entry.kind.to_string();
            json!({
                "id": entry.name,
                "object": "model",
                "created": 0,
                "owned_by": "temper",
                "temper": {
                    "source": "catalog",
                    "kind": kind,
                    "installed": store.installed_path(entry.name).is_some(),
                    "loaded": loaded.iter().any(|l| l == entry.name),
                    "description": entry.description,
                },
            })
        })
        .collect();
    for (name, profile) in resolver.profiles().iter() {
        list.push(json!({
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": profile.backend.name(),
            "temper": {
                "source": "profile",
                "model": profile.model,
                "loaded": loaded.iter().any(|l| l == name),
                "fallback": profile.fallback,
            },
        }));
    }
    list
}
