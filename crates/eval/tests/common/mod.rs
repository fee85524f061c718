//! Helpers of temper-eval's tests: the prompt crate's scripted chat model (its `scripted`
//! feature), a price on its answers, a small deterministic embedder, and rows.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::Value;
use temper_core::{ChatModel, ChatRequest, EmbeddingModel, EventStream, StreamEvent};
use temper_eval::Row;

pub use temper_prompt::scripted::{block_on, Scripted};

/// The requests a scripted model has answered.
pub fn calls(model: &Scripted) -> usize {
    model.requests.lock().unwrap().len()
}

/// The last message of a request.
pub fn last(request: &ChatRequest) -> &str {
    request.messages.last().map_or("", |m| m.content.as_str())
}

/// A scripted model whose every answer costs `usd`, as a priced profile reports it.
pub struct Priced {
    pub inner: Arc<Scripted>,
    pub usd: f64,
}

impl ChatModel for Priced {
    fn name(&self) -> &str {
        "priced"
    }

    fn chat_stream(&self, request: ChatRequest) -> EventStream {
        let usd = self.usd;
        Box::pin(self.inner.chat_stream(request).map(move |event| match event {
            Ok(StreamEvent::Done(mut response)) => {
                response.cost = Some(usd);
                Ok(StreamEvent::Done(response))
            }
            other => other,
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
