//! A tiny scripted `ChatModel` for unit tests: each reply is computed by the test from the
//! request, every request is recorded, and the most requests in flight at once is tracked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use temper_core::{ChatModel, ChatRequest, ChatResponse, EventStream, StreamEvent};

type Script = dyn Fn(&ChatRequest) -> String + Send + Sync;

pub struct Scripted {
    script: Box<Script>,
    pub requests: Arc<Mutex<Vec<ChatRequest>>>,
    delay: Duration,
    in_flight: Arc<AtomicUsize>,
    pub max_in_flight: Arc<AtomicUsize>,
}

impl Scripted {
    pub fn new(script: impl Fn(&ChatRequest) -> String + Send + Sync + 'static) -> Scripted {
        Scripted {
            script: Box::new(script),
            requests: Arc::default(),
            delay: Duration::ZERO,
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
        }
    }

    /// Each answer takes `delay`, so that tests can see requests overlap.
    pub fn with_delay(mut self, delay: Duration) -> Scripted {
        self.delay = delay;
        self
    }

    /// The last message of every request so far, in order.
    pub fn prompts(&self) -> Vec<String> {
        let requests = self.requests.lock().unwrap();
        requests.iter().map(|r| r.messages.last().map(|m| m.content.clone()).unwrap_or_default()).collect()
    }
}

/// Runs a future on a runtime with timers, as the scripted delays need.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(future)
}

/// A response read from JSON, so that fields added to `ChatResponse` later keep their defaults.
pub fn response(text: &str, prompt_words: usize) -> ChatResponse {
    serde_json::from_value(serde_json::json!({
        "model": "scripted",
        "text": text,
        "finish_reason": "stop",
        "usage": {"prompt_tokens": prompt_words, "completion_tokens": text.split_whitespace().count()},
        "timings": {"ttft_ms": 0.0, "prefill_tokens_per_second": 0.0, "decode_tokens_per_second": 0.0}
    }))
    .expect("a valid response")
}

impl ChatModel for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn chat_stream(&self, request: ChatRequest) -> EventStream {
        let text = (self.script)(&request);
        let words = request.messages.iter().map(|m| m.content.split_whitespace().count()).sum();
        self.requests.lock().unwrap().push(request);
        let (delay, in_flight, max) = (self.delay, self.in_flight.clone(), self.max_in_flight.clone());
        Box::pin(futures::stream::once(async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(StreamEvent::Done(response(&text, words)))
        }))
    }
}
