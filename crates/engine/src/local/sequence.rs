//! One request being answered: its sampler, the text streamed so far, and its response.

use std::time::Instant;

use temper_core::{ChatResponse, Error, FinishReason, GenerationParams, StreamEvent, Timings, Usage};

use super::scheduler::{Decoding, Events, Request};
use crate::constraint::Guide;
use crate::logprobs::LogprobRecorder;
use crate::sampler::Sampler;
use crate::stop::{StopMatcher, Utf8Decoder};
use crate::tokenizer::Tokenizer;
use crate::tool_calls::{self, CallStreamer};

/// A request being answered: its sampling and streaming state.
pub(super) struct Sequence {
    params: GenerationParams,
    window: usize,
    events: Events,
    received: Instant,
    /// When the sequence got its slot and started reading its prompt.
    started: Instant,
    prompt_tokens: usize,
    /// Prompt tokens run through the model (those after the reused prefix).
    evaluated: usize,
    sampler: Sampler,
    /// The prompt and the tokens generated so far. Those past the cache's length are the ones
    /// the next forward pass feeds: the rest of the prompt, or the token just sampled.
    history: Vec<u32>,
    utf8: Utf8Decoder,
    stops: StopMatcher,
    /// Present when the request asked for log-probabilities.
    logprobs: Option<LogprobRecorder>,
    /// The grammar the answer follows, if any.
    guide: Option<Guide>,
    reads_calls: bool,
    /// The calls streamed so far, when the request offered tools.
    calls: CallStreamer,
    text: String,
    /// How much of `text` the caller has been sent.
    sent: usize,
    generated: usize,
    first_token_at: Option<Instant>,
}

/// What a sequence does after sampling.
pub(super) enum Step {
    /// Feed the sampled token and go on.
    Continue,
    /// Finished with this response.
    Done(ChatResponse),
    /// Failed with this error.
    Failed(Error),
    /// The caller went away.
    Abandoned,
}

impl Sequence {
    /// A sequence for `prompt`, of which the last `evaluated` tokens are still to be read.
    pub fn new(request: Request, evaluated: usize) -> Sequence {
        let Request { prompt, params, window, decoding, events, received } = request;
        let Decoding { logprobs, guide, reads_calls } = decoding;
        Sequence {
            sampler: Sampler::new(&params),
            stops: StopMatcher::new(&params.stop),
            params,
            window,
            events,
            received,
            started: Instant::now(),
            prompt_tokens: prompt.len(),
            evaluated,
            history: prompt,
            utf8: Utf8Decoder::default(),
            logprobs: logprobs.map(LogprobRecorder::new),
            guide,
            reads_calls,
            calls: CallStreamer::default(),
            text: String::new(),
            sent: 0,
            generated: 0,
            first_token_at: None,
        }
    }

    /// The prompt and the tokens generated so far.
    pub fn history(&self) -> &[u32] {
        &self.history
    }

    /// Whether the sequence is still reading its prompt.
    pub fn is_reading(&self) -> bool {
        self.first_token_at.is_none()
    }

    /// Ends the sequence with `error`.
    pub fn fail(self, error: Error) {
        let _ = self.events.send(Err(error));
    }

    /// Ends the sequence with its response.
    pub fn finish_with(self, response: ChatResponse) {
        let _ = self.events.send(Ok(StreamEvent::Done(response)));
    }

    /// Samples the next token from `logits`, streams its text, and says whether to go on.
    /// `cache_len` is how many positions the sequence's cache holds.
    pub fn advance(
        &mut self,
        logits: &mut [f32],
        tokenizer: &Tokenizer,
        cache_len: usize,
        name: &str,
    ) -> Step {
        if self.events.is_closed() {
            return Step::Abandoned;
        }
        if let Some(Err(error)) = self.guide.as_mut().map(|guide| guide.restrict(logits)) {
            return Step::Failed(error);
        }
        let token = self.sampler.sample(logits, &self.history);
        self.first_token_at.get_or_insert_with(Instant::now);
        if tokenizer.is_end_of_generation(token) {
            return self.finish(FinishReason::Stop, false, name);
        }
        if let Some(Err(error)) = self.guide.as_mut().map(|guide| guide.accept(token)) {
            return Step::Failed(error);
        }
        self.generated += 1;
        self.history.push(token);
        let bytes = tokenizer.token_bytes(token);
        if let Some(logprobs) = &mut self.logprobs {
            // The sampler leaves the row as the model produced it.
            logprobs.record(logits, token, bytes.len(), tokenizer);
        }
        let outcome = self.stops.push(&self.utf8.push(&bytes));
        if !self.emit(outcome.text) {
            return Step::Abandoned;
        }
        if outcome.stopped {
            return self.finish(FinishReason::Stop, true, name);
        }
        // A complete answer ends here rather than waiting for the model to end its turn.
        if self.guide.as_ref().is_some_and(Guide::is_complete) {
            return self.finish(FinishReason::Stop, false, name);
        }
        let max_tokens = self.params.max_tokens.map_or(usize::MAX, |m| m as usize);
        if self.generated >= max_tokens || cache_len >= self.window {
            return self.finish(FinishReason::Length, false, name);
        }
        Step::Continue
    }

    /// Sends `piece` to the caller; false when the caller went away.
    /// Text that may be a tool call is held back until it is known not to be one.
    fn emit(&mut self, piece: String) -> bool {
        if piece.is_empty() {
            return true;
        }
        self.text.push_str(&piece);
        if self.reads_calls && tool_calls::may_be_call(&self.text) {
            for delta in self.calls.advance(&self.text) {
                if self.events.send(Ok(StreamEvent::ToolCall(delta))).is_err() {
                    return false;
                }
            }
            return true;
        }
        self.flush()
    }

    /// Sends the text not sent yet; false when the caller went away.
    fn flush(&mut self) -> bool {
        if self.sent == self.text.len() {
            return true;
        }
        let unsent = self.text[self.sent..].to_string();
        self.sent = self.text.len();
        self.events.send(Ok(StreamEvent::Delta(unsent))).is_ok()
    }

    fn finish(&mut self, finish_reason: FinishReason, hit_stop: bool, name: &str) -> Step {
        let mut cut_short = hit_stop;
        if !hit_stop {
            let tail = self.stops.push(&self.utf8.finish());
            let mut rest = tail.text;
            if tail.stopped {
                cut_short = true;
            } else {
                rest.push_str(&self.stops.finish());
            }
            if !self.emit(rest) {
                return Step::Abandoned;
            }
        }
        let calls = match finish_reason {
            FinishReason::Stop if self.reads_calls => {
                // The ids the calls were streamed with.
                let mut index = 0;
                tool_calls::parse_calls(&self.text, || {
                    index += 1;
                    self.calls.id(index - 1).map_or_else(tool_calls::call_id, str::to_string)
                })
            }
            _ => None,
        };
        let finish_reason = if calls.is_some() { FinishReason::ToolCalls } else { finish_reason };
        if calls.is_none() && !self.flush() {
            return Step::Abandoned;
        }
        // A stop string ends the text before the tokens that spell it: their log-probabilities go too.
        let text_len = cut_short.then_some(self.text.len());
        let first = self.first_token_at.unwrap_or_else(Instant::now);
        let decode_secs = first.elapsed().as_secs_f64();
        let per_second = |n: usize, secs: f64| if secs > 0.0 && n > 0 { n as f64 / secs } else { 0.0 };
        Step::Done(ChatResponse {
            model: name.to_string(),
            logprobs: self.logprobs.take().map(|l| l.finish(text_len)),
            text: if calls.is_some() { String::new() } else { std::mem::take(&mut self.text) },
            tool_calls: calls.unwrap_or_default(),
            finish_reason,
            usage: Usage {
                prompt_tokens: self.prompt_tokens as u32,
                completion_tokens: self.generated as u32,
            },
            timings: Timings {
                ttft_ms: first.duration_since(self.received).as_secs_f64() * 1000.0,
                prefill_tokens_per_second: per_second(
                    self.evaluated,
                    first.duration_since(self.started).as_secs_f64(),
                ),
                decode_tokens_per_second: per_second(self.generated.saturating_sub(1), decode_secs),
            },
            ..Default::default()
        })
    }
}
