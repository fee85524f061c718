//! Helpers shared by the backend tests: quick policies, collecting events.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use temper_core::{ChatModel, ChatRequest, ChatResponse, Message, StreamEvent};
use temper_providers::{ApiKey, HttpModel, ProviderConfig, RetryPolicy, Timeouts, Vendor};

pub const KEY: &str = "sk-test-5ecret-key-0123456789";

/// A config for `vendor` at `base_url` with the test key, quick retries and short timeouts,
/// and warnings collected into the returned list.
pub fn config(vendor: Vendor, base_url: String) -> (ProviderConfig, Arc<Mutex<Vec<String>>>) {
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let sink = warnings.clone();
    let mut config = ProviderConfig::new(vendor, "test-model");
    config.base_url = Some(base_url);
    config.api_key = Some(ApiKey::new(KEY));
    config.retry = RetryPolicy {
        max_retries: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    };
    config.timeouts = Timeouts {
        connect: Duration::from_secs(2),
        response: Duration::from_millis(400),
        idle: Duration::from_millis(400),
    };
    config.warn = Arc::new(move |message| sink.lock().unwrap().push(message));
    (config, warnings)
}

pub fn model(config: ProviderConfig) -> HttpModel {
    HttpModel::new("test-profile", config).expect("a valid config")
}

pub fn hello() -> ChatRequest {
    ChatRequest::new(vec![Message::system("Be brief."), Message::user("Say hello")])
}

/// Every event of a streamed answer, stopping at the first error.
pub async fn events(model: &HttpModel, request: ChatRequest) -> Result<Vec<StreamEvent>, String> {
    let mut stream = model.chat_stream(request);
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.map_err(|e| e.to_string())?);
    }
    Ok(events)
}

/// Checks the stream is what the local engine yields: deltas, then one `Done` whose text is
/// the deltas joined. Returns the response.
pub fn same_as_local(events: &[StreamEvent]) -> ChatResponse {
    let (last, deltas) = events.split_last().expect("at least one event");
    let StreamEvent::Done(response) = last else { panic!("the last event is not Done: {events:?}") };
    let mut text = String::new();
    for event in deltas {
        match event {
            StreamEvent::Delta(piece) => text.push_str(piece),
            other => panic!("unexpected event before Done: {other:?}"),
        }
    }
    assert!(!deltas.is_empty(), "no deltas");
    assert_eq!(text, response.text);
    response.clone()
}

/// Asserts an error message never shows the key, whole or in part.
pub fn no_key(text: &str) {
    assert!(!text.contains(KEY) && !text.contains("5ecret"), "the key leaked: {text}");
}
