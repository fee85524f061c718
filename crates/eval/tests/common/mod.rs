//! Helpers of temper-eval's tests: a scripted chat model that counts its calls, a small
//! deterministic embedder, and rows.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use temper_core::{ChatModel, ChatRequest, ChatResponse, EmbeddingModel, EventStream, StreamEvent, Usage};
use temper_eval::Row;

type Script = dyn Fn(&ChatRequest) -> String + Send + Sync;

/// Answers each request with what the test's script computes from it; counts the requests.
pub struct Scripted {
    script: Box<Script>,
    pub calls: AtomicUsize,
    /// USD per answer, as a priced profile would report it.
    pub cost: Option<f64>,
    /// How long each answer takes, so that tests can see requests overlap.
    delay: Duration,
    in_flight: Arc<AtomicUsize>,
    /// The most requests answered at once so far.
    pub max_in_flight: Arc<AtomicUsize>,
}

impl Scripted {
    fn build(
        script: impl Fn(&ChatRequest) -> String + Send + Sync + 'static,
        cost: Option<f64>,
        delay: Duration,
    ) -> Arc<Scripted> {
        Arc::new(Scripted {
            script: Box::new(script),
            calls: AtomicUsize::new(0),
            cost,
            delay,
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
        })
    }

    pub fn new(script: impl Fn(&ChatRequest) -> String + Send + Sync + 'static) -> Arc<Scripted> {
        Scripted::build(script, None, Duration::ZERO)
    }

    pub fn priced(
        script: impl Fn(&ChatRequest) -> String + Send + Sync + 'static,
        cost: f64,
    ) -> Arc<Scripted> {
        Scripted::build(script, Some(cost), Duration::ZERO)
    }

    /// Each answer takes `delay`.
    pub fn slow(
        script: impl Fn(&ChatRequest) -> String + Send + Sync + 'static,
        delay: Duration,
    ) -> Arc<Scripted> {
        Scripted::build(script, None, delay)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The last message of a request.
pub fn last(request: &ChatRequest) -> &str {
    request.messages.last().map_or("", |m| m.content.as_str())
}

impl ChatModel for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn chat_stream(&self, request: ChatRequest) -> EventStream {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let response = ChatResponse {
            model: "scripted".into(),
            text: (self.script)(&request),
            usage: Usage { prompt_tokens: 10, completion_tokens: 2 },
            cost: self.cost,
            ..Default::default()
        };
        let (delay, in_flight, max) = (self.delay, self.in_flight.clone(), self.max_in_flight.clone());
        Box::pin(futures::stream::once(async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(StreamEvent::Done(response))
        }))
    }
}

/// Counts letters a–z: texts made of the same letters point the same way.
pub struct Letters;

#[async_trait]
impl EmbeddingModel for Letters {
    fn name(&self) -> &str {
        "letters"
    }

    fn dimensions(&self) -> usize {
        26
    }

    async fn embed(&self, texts: &[String]) -> temper_core::Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0.0; 26];
                t.to_lowercase()
                    .bytes()
                    .filter(u8::is_ascii_lowercase)
                    .for_each(|b| v[(b - b'a') as usize] += 1.0);
                v
            })
            .collect())
    }
}

/// A row with string variables and an expected value.
pub fn row(vars: &[(&str, &str)], expected: Option<Value>) -> Row {
    Row {
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect::<BTreeMap<_, _>>(),
        expected,
        split: None,
        source: "rows.jsonl:1".into(),
    }
}

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}
