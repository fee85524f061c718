//! The OpenAI-compatible backend against a loopback server speaking the chat completions wire
//! format, including the faults: 429 with Retry-After, 500, a hung connection, malformed JSON,
//! an SSE stream cut mid-event, an unauthorised key, and the circuit breaker.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config, events, hello, model, no_key, same_as_local, KEY};
use serde_json::Value;
use temper_core::{ChatModel, FinishReason, GenerationParams};
use temper_providers::{BreakerPolicy, UnsupportedParams, Vendor};
use temper_testserver::{sse, Reply, Server};

fn chunk(content: &str) -> String {
    format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{{"index":0,"delta":{{"content":{}}},"finish_reason":null}}]}}"#,
        serde_json::to_string(content).unwrap()
    )
}

const ROLE: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
const FINISH: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
const USAGE: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#;

/// A whole streamed answer, "Hello!", with usage.
fn answer() -> Reply {
    let (hel, lo) = (chunk("Hel"), chunk("lo!"));
    let frames = [
        (None, ROLE),
        (None, hel.as_str()),
        (None, lo.as_str()),
        (None, FINISH),
        (None, USAGE),
        (None, "[DONE]"),
    ];
    Reply::stream("text/event-stream", sse(frames))
}

fn server_model(replies: Vec<Reply>) -> (Server, temper_providers::HttpModel) {
    let server = Server::start(replies);
    let (config, _) = config(Vendor::OpenAi, server.url("/v1"));
    (server, model(config))
}

#[tokio::test]
async fn streams_the_same_events_as_the_local_engine() {
    let (server, model) = server_model(vec![answer()]);
    let params = GenerationParams {
        temperature: Some(0.2),
        max_tokens: Some(5),
        stop: vec!["\n\n".into()],
        seed: Some(7),
        ..Default::default()
    };
    let events = events(&model, hello().with_params(params)).await.unwrap();
    let response = same_as_local(&events);
    assert_eq!(response.text, "Hello!");
    assert_eq!((response.usage.prompt_tokens, response.usage.completion_tokens), (9, 2));
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!(response.model, "test-profile");

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/v1/chat/completions"));
    assert_eq!(request.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    let body: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "Say hello");
    assert_eq!(body["max_tokens"], 5);
    assert_eq!(body["seed"], 7);
    assert_eq!(body["stop"][0], "\n\n");
    assert!((body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert!(body.get("top_p").is_none(), "unset parameters are left out: {body}");
}

#[tokio::test]
async fn an_unsupported_parameter_is_refused_or_dropped_with_a_warning() {
    let server = Server::start(vec![answer()]);
    let (config_refuse, _) = config(Vendor::OpenAi, server.url("/v1"));
    let request = hello().with_params(GenerationParams { top_k: Some(40), ..Default::default() });
    let err = events(&model(config_refuse), request.clone()).await.unwrap_err();
    assert!(err.contains("openai cannot honour `top_k`"), "{err}");
    assert!(server.requests().is_empty(), "a refused request is not sent");

    let (mut config_warn, warnings) = config(Vendor::OpenAi, server.url("/v1"));
    config_warn.unsupported = UnsupportedParams::Warn;
    let events = events(&model(config_warn), request).await.unwrap();
    assert_eq!(same_as_local(&events).text, "Hello!");
    let warnings = warnings.lock().unwrap().clone();
    assert!(warnings.iter().any(|w| w.contains("top_k") && w.contains("dropped")), "{warnings:?}");
    let body: Value = serde_json::from_str(&server.requests()[0].body).unwrap();
    assert!(body.get("top_k").is_none(), "{body}");
}

#[tokio::test]
async fn temperature_out_of_the_apis_range_is_refused() {
    let (_server, model) = server_model(vec![answer()]);
    let request = hello().with_params(GenerationParams { temperature: Some(3.0), ..Default::default() });
    let err = events(&model, request).await.unwrap_err();
    assert!(err.contains("temperature") && err.contains("0 to 2"), "{err}");
}

#[tokio::test]
async fn a_429_is_retried_after_the_time_retry_after_asks() {
    let limited = Reply::json(429, r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#)
        .header("retry-after", "1");
    let (server, model) = server_model(vec![limited, answer()]);
    let started = Instant::now();
    let events = events(&model, hello()).await.unwrap();
    assert_eq!(same_as_local(&events).text, "Hello!");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured: {:?}",
        started.elapsed()
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_limit_fails_at_once() {
    let limited = Reply::json(429, r#"{"error":{"message":"Slow down"}}"#).header("retry-after", "3600");
    let (server, model) = server_model(vec![limited, answer()]);
    let err = events(&model, hello()).await.unwrap_err();
    assert!(err.contains("retry after 3600 s") && err.contains("Slow down"), "{err}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_persistent_500_fails_after_the_retries_with_the_vendors_message() {
    let broken = Reply::json(500, r#"{"error":{"message":"The server had an error","type":"server_error"}}"#);
    let (server, model) = server_model(vec![broken]);
    let err = events(&model, hello()).await.unwrap_err();
    assert!(err.contains("HTTP 500") && err.contains("The server had an error"), "{err}");
    assert!(err.contains("after 3 attempts"), "{err}");
    assert_eq!(server.requests().len(), 3, "one attempt and two retries");
}

#[tokio::test]
async fn a_500_then_success_is_retried_transparently() {
    let (server, model) = server_model(vec![Reply::json(503, "upstream busy"), answer()]);
    let events = events(&model, hello()).await.unwrap();
    assert_eq!(same_as_local(&events).text, "Hello!");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_hung_connection_times_out() {
    let (server, model) = server_model(vec![Reply::hang()]);
    let started = Instant::now();
    let err = events(&model, hello()).await.unwrap_err();
    assert!(err.contains("did not answer within 0.4 s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(server.requests().len(), 3, "timeouts are retried");
}

#[tokio::test]
async fn a_stream_that_goes_quiet_times_out() {
    // Two events, then the connection stays open with nothing more: the idle timeout ends it.
    let hel = chunk("Hel");
    let reply = Reply::stream("text/event-stream", sse([(None, ROLE), (None, hel.as_str())])).stall();
    let (server, model) = server_model(vec![reply]);
    let err = events(&model, hello()).await.unwrap_err();
    assert!(err.contains("did not answer within 0.4 s (the stream went quiet)"), "{err}");
    assert_eq!(
        server.requests().len(),
        1,
        "a stream that started is never retried: that would splice answers"
    );
}

#[tokio::test]
async fn a_stream_that_trickles_is_cut_off_at_the_total_timeout() {
    // A piece every 0.3 s, never quiet for the 0.4 s idle timeout, for 6 s in all.
    let hel = chunk("Hel");
    let pieces = std::iter::repeat_n(hel.as_str(), 20).map(|c| (None, c));
    let reply = Reply::stream("text/event-stream", sse(pieces)).paced(Duration::from_millis(300));
    let (server, model) = server_model(vec![reply]);
    let started = Instant::now();
    let err = events(&model, hello()).await.unwrap_err();
    assert!(err.contains("did not answer within 1.5 s (the whole answer took too long)"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn malformed_json_in_the_stream_is_a_clear_error() {
    let hel = chunk("Hel");
    let reply =
        Reply::stream("text/event-stream", sse([(None, hel.as_str()), (None, "{\"choices\": [oops")]));
    let (_server, model) = server_model(vec![reply]);
    let err = events(&model, hello()).await.unwrap_err();
    assert!(err.contains("openai sent a malformed stream event") && err.contains("oops"), "{err}");
}

#[tokio::test]
async fn an_sse_stream_cut_mid_event_is_a_clear_error() {
    let hel = chunk("Hel");
    let mut frames = sse([(None, ROLE), (None, hel.as_str())]);
    frames.push("data: {\"id\":\"chatcmpl-1\",\"choi".into());
    let (_server, model) = server_model(vec![Reply::stream("text/event-stream", frames).cut()]);
    let err = events(&model, hello()).await.unwrap_err();
    assert!(err.contains("stream broke before the answer was complete"), "{err}");
}

#[tokio::test]
async fn a_stream_without_done_is_a_clear_error() {
    let hel = chunk("Hel");
    let (_server, model) =
        server_model(vec![Reply::stream("text/event-stream", sse([(None, hel.as_str())]))]);
    let err = events(&model, hello()).await.unwrap_err();
    assert!(err.contains("closed before the end-of-answer event"), "{err}");
}

#[tokio::test]
async fn an_unauthorised_key_is_a_clear_error_that_never_shows_the_key() {
    // Some servers echo the key they refused; it must not get further.
    let body = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {KEY}.","type":"invalid_request_error","code":"invalid_api_key"}}}}"#
    );
    let (server, model) = server_model(vec![Reply::json(401, body)]);
    let err = events(&model, hello()).await.unwrap_err();
    assert!(err.contains("HTTP 401") && err.contains("Incorrect API key provided: [redacted]"), "{err}");
    no_key(&err);
    no_key(&format!("{model:?}"));
    assert_eq!(server.requests().len(), 1, "a 401 is not retried");
}

#[tokio::test]
async fn the_circuit_opens_after_repeated_failures() {
    let server = Server::start(vec![Reply::json(500, r#"{"error":{"message":"down"}}"#)]);
    let (mut config, _) = config(Vendor::OpenAi, server.url("/v1"));
    config.retry.max_retries = 0;
    config.breaker = BreakerPolicy { failure_threshold: 2, cooldown: Duration::from_secs(60) };
    let model = model(config);
    for _ in 0..2 {
        let err = events(&model, hello()).await.unwrap_err();
        assert!(err.contains("HTTP 500"), "{err}");
    }
    let err = events(&model, hello()).await.unwrap_err();
    assert!(err.contains("failed 2 times in a row") && err.contains("circuit breaker"), "{err}");
    assert_eq!(server.requests().len(), 2, "an open circuit sends nothing");
}

#[tokio::test]
async fn usage_the_server_does_not_report_is_counted_locally() {
    let (hel, lo) = (chunk("Hello there"), chunk(" friend"));
    let frames = [(None, hel.as_str()), (None, lo.as_str()), (None, FINISH), (None, "[DONE]")];
    let server = Server::start(vec![Reply::stream("text/event-stream", sse(frames))]);
    let (mut config, _) = config(Vendor::OpenAi, server.url("/v1"));
    // Counting words stands in for the local tokenizer.
    config.counter = Some(Arc::new(|text: &str| text.split_whitespace().count()));
    let response = model(config).chat(hello()).await.unwrap();
    // "Be brief.\nSay hello" is 4 words; "Hello there friend" is 3.
    assert_eq!((response.usage.prompt_tokens, response.usage.completion_tokens), (4, 3));
}

#[tokio::test]
async fn an_unreachable_server_is_named() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (config, _) = config(Vendor::OpenAi, format!("http://127.0.0.1:{port}/v1"));
    let err = events(&model(config), hello()).await.unwrap_err();
    assert!(
        err.contains(&format!("cannot reach openai at http://127.0.0.1:{port}/v1/chat/completions")),
        "{err}"
    );
    no_key(&err);
}
