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
        total: Duration::from_millis(1500),
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

/// The transport faults every backend must survive or report, on `vendor`'s server at
/// `base_path`: a 429 with `Retry-After` and a 503 are retried into `answer`, a hung
/// connection times out after the retries, and `unauthorised` (the vendor's 401 body, which
/// echoes the key) is a clear error without the key.
pub async fn transport_faults(
    vendor: Vendor,
    base_path: &str,
    answer: fn() -> temper_testserver::Reply,
    unauthorised: &str,
) {
    use temper_testserver::{Reply, Server};
    let limited = Reply::json(429, unauthorised.replace("401", "429")).header("retry-after", "1");
    let server = Server::start(vec![limited, Reply::json(503, "busy"), answer()]);
    let (settings, warnings) = config(vendor, server.url(base_path));
    let started = std::time::Instant::now();
    let response = same_as_local(&events(&model(settings), hello()).await.unwrap());
    assert!(!response.text.is_empty());
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was not honoured");
    assert_eq!(server.requests().len(), 3);
    let warnings = warnings.lock().unwrap().join("\n");
    assert!(warnings.contains("HTTP 429") && warnings.contains("HTTP 503"), "{warnings}");

    let server = Server::start(vec![Reply::hang()]);
    let (settings, _) = config(vendor, server.url(base_path));
    let err = events(&model(settings), hello()).await.unwrap_err();
    assert!(err.contains("did not answer within 0.4 s") && err.contains("after 3 attempts"), "{err}");

    let server = Server::start(vec![Reply::json(401, unauthorised.replace("KEY", KEY))]);
    let (settings, _) = config(vendor, server.url(base_path));
    let err = events(&model(settings), hello()).await.unwrap_err();
    assert!(err.contains("HTTP 401") && err.contains("[redacted]"), "{err}");
    no_key(&err);
    assert_eq!(server.requests().len(), 1, "a refused key is not retried");
}
