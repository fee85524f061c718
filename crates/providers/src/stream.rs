//! One streamed answer: send the request, split the body into frames, turn the frames into
//! `Delta`s and one final `Done`, the same events the local engine yields.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use temper_core::{
    ChatRequest, ChatResponse, EventStream, FinishReason, StreamEvent, Timings, TokenLogprob, ToolCall, Usage,
};

use crate::frames::Decoder;
use crate::http::{self, error_chain};
use crate::vendors::{self, CallPiece, Piece};
use crate::{ProviderError, Shared};

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

pub(crate) fn chat(name: String, shared: Arc<Shared>, request: ChatRequest) -> EventStream {
    let run = Run {
        decoder: Decoder::new(vendors::framing(shared.vendor)),
        answer_through_a_tool: vendors::answers_through_a_tool(shared.vendor, &request),
        name,
        shared,
        request,
        body: None,
        pending: VecDeque::new(),
        finished: false,
        text: String::new(),
        usage: (None, None),
        finish: None,
        calls: Vec::new(),
        logprobs: None,
        started: Instant::now(),
        first_token: None,
    };
    Box::pin(futures::stream::unfold(
        run,
        |mut run| async move { run.next().await.map(|event| (event, run)) },
    ))
}

struct Run {
    name: String,
    shared: Arc<Shared>,
    request: ChatRequest,
    body: Option<Body>,
    decoder: Decoder,
    pending: VecDeque<StreamEvent>,
    finished: bool,
    text: String,
    /// Prompt and completion tokens, as far as the vendor reported them.
    usage: (Option<u32>, Option<u32>),
    finish: Option<FinishReason>,
    /// Tool calls as their pieces arrive.
    calls: Vec<CallPiece>,
    /// The JSON answer comes as a forced tool's input: its pieces are the answer's text.
    answer_through_a_tool: bool,
    logprobs: Option<Vec<TokenLogprob>>,
    started: Instant,
    first_token: Option<Instant>,
}

impl Run {
    async fn next(&mut self) -> Option<temper_core::Result<StreamEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            if let Err(err) = self.advance().await {
                self.finished = true;
                if matches!(
                    err,
                    ProviderError::StreamBroken { .. }
                        | ProviderError::Timeout { .. }
                        | ProviderError::Malformed { .. }
                ) {
                    self.shared.breaker.failure();
                }
                return Some(Err(err.into()));
            }
        }
    }

    /// Starts the request, or reads the next piece of the body.
    async fn advance(&mut self) -> Result<(), ProviderError> {
        let vendor = self.shared.vendor.name();
        let Some(body) = &mut self.body else {
            let json = vendors::chat_body(&self.shared, &self.request)?;
            let response = http::send(&self.shared, &json).await?;
            self.body =
                Some(Box::pin(response.bytes_stream().map(|chunk| chunk.map(|bytes| bytes.to_vec()))));
            return Ok(());
        };
        let timeouts = &self.shared.timeouts;
        let left = timeouts.total.saturating_sub(self.started.elapsed());
        let (wait, what, timeout) = if left < timeouts.idle {
            (left, "the whole answer took too long", timeouts.total)
        } else {
            (timeouts.idle, "the stream went quiet", timeouts.idle)
        };
        let bytes = match tokio::time::timeout(wait, body.next()).await {
            Err(_) => {
                let url = self.shared.url.clone();
                return Err(ProviderError::Timeout { vendor, url, what, timeout, attempts: 1 });
            }
            Ok(None) => {
                self.decoder.finish().map_err(|reason| ProviderError::StreamBroken { vendor, reason })?;
                let reason = "the connection closed before the end-of-answer event".into();
                return Err(ProviderError::StreamBroken { vendor, reason });
            }
            Ok(Some(Err(err))) => {
                let reason = self.shared.scrub(&error_chain(&err));
                return Err(ProviderError::StreamBroken { vendor, reason });
            }
            Ok(Some(Ok(bytes))) => bytes,
        };
        let frames = self.decoder.push(&bytes).map_err(|reason| ProviderError::Malformed {
            vendor,
            what: "stream",
            reason,
        })?;
        for frame in frames {
            for piece in vendors::parse(self.shared.vendor, &frame).map_err(|e| self.scrubbed(e))? {
                self.take(piece)?;
            }
            if self.finished {
                break;
            }
        }
        Ok(())
    }

    /// Vendor messages may echo what was sent; the key never goes further.
    fn scrubbed(&self, err: ProviderError) -> ProviderError {
        match err {
            ProviderError::StreamError { vendor, message } => {
                ProviderError::StreamError { vendor, message: self.shared.scrub(&message) }
            }
            other => other,
        }
    }

    fn take(&mut self, piece: Piece) -> Result<(), ProviderError> {
        match piece {
            Piece::Text(text) => {
                self.first_token.get_or_insert_with(Instant::now);
                self.text.push_str(&text);
                self.pending.push_back(StreamEvent::Delta(text));
            }
            Piece::Usage { prompt, completion } => {
                self.usage = (prompt.or(self.usage.0), completion.or(self.usage.1));
            }
            Piece::Finish(FinishReason::ToolCalls) if self.answer_through_a_tool => {
                self.finish = Some(FinishReason::Stop)
            }
            Piece::Finish(reason) => self.finish = Some(reason),
            Piece::ToolCall(piece) if self.answer_through_a_tool => {
                if !piece.arguments.is_empty() {
                    self.take(Piece::Text(piece.arguments))?;
                }
            }
            Piece::ToolCall(piece) => {
                self.first_token.get_or_insert_with(Instant::now);
                match self.calls.iter_mut().find(|call| piece.index.is_some() && call.index == piece.index) {
                    Some(call) => {
                        call.id = call.id.take().or(piece.id);
                        call.name = call.name.take().or(piece.name);
                        call.arguments.push_str(&piece.arguments);
                    }
                    None => self.calls.push(piece),
                }
            }
            Piece::Logprobs(tokens) => self.logprobs.get_or_insert_with(Vec::new).extend(tokens),
            Piece::End => {
                let response = self.response()?;
                self.shared.breaker.success();
                self.pending.push_back(StreamEvent::Done(response));
                self.finished = true;
            }
        }
        Ok(())
    }

    /// The calls the model made, each with an id (made up when the vendor gives none, as
    /// Ollama does) so that results can answer them.
    fn tool_calls(&self) -> Result<Vec<ToolCall>, ProviderError> {
        let vendor = self.shared.vendor.name();
        self.calls
            .iter()
            .enumerate()
            .map(|(n, call)| {
                let name = call.name.clone().ok_or_else(|| ProviderError::Malformed {
                    vendor,
                    what: "tool call",
                    reason: format!("call {n} has no function name"),
                })?;
                let arguments =
                    if call.arguments.trim().is_empty() { "{}".into() } else { call.arguments.clone() };
                Ok(ToolCall { id: call.id.clone().unwrap_or_else(|| format!("call_{n}")), name, arguments })
            })
            .collect()
    }

    fn response(&self) -> Result<ChatResponse, ProviderError> {
        let tool_calls = self.tool_calls()?;
        if self.request.logprobs.is_some() && self.logprobs.is_none() {
            (self.shared.warn)(format!("{} returned no logprobs although they were asked for", self.name));
        }
        let end = Instant::now();
        let count = |text: &str| {
            let counter = self.shared.counter.as_ref()?;
            u32::try_from(counter.count_text(text).ok()?).ok()
        };
        let prompt: Vec<&str> = self.request.messages.iter().map(|m| m.content.as_str()).collect();
        let usage = Usage {
            prompt_tokens: self.usage.0.or_else(|| count(&prompt.join("\n"))).unwrap_or(0),
            completion_tokens: self.usage.1.or_else(|| count(&self.text)).unwrap_or(0),
        };
        let first = self.first_token.unwrap_or(end);
        let ttft = first.duration_since(self.started).as_secs_f64();
        let decode = end.duration_since(first).as_secs_f64();
        let rate = |tokens: u32, seconds: f64| if seconds > 0.0 { f64::from(tokens) / seconds } else { 0.0 };
        let finish_reason = match self.finish {
            // Ollama ends a turn of tool calls as it ends any other.
            None | Some(FinishReason::Stop) if !tool_calls.is_empty() => FinishReason::ToolCalls,
            finish => finish.unwrap_or(FinishReason::Stop),
        };
        Ok(ChatResponse {
            model: self.name.clone(),
            text: self.text.clone(),
            finish_reason,
            usage,
            timings: Timings {
                ttft_ms: ttft * 1e3,
                // Over HTTP the prompt's processing is hidden in the time to the first token.
                prefill_tokens_per_second: rate(usage.prompt_tokens, ttft),
                decode_tokens_per_second: rate(usage.completion_tokens, decode),
            },
            cost: None,
            tool_calls,
            logprobs: self.logprobs.clone(),
        })
    }
}
