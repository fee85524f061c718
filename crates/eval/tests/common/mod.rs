//! Helpers of temper-eval's tests: the prompt crate's scripted chat model (its `scripted`
//! feature), a price on its answers, and rows (the fake embedder is temper-testkit's `Letters`).
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;
use temper_core::{ChatModel, ChatRequest, EventStream, StreamEvent};
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
