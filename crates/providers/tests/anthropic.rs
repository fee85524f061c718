//! The Anthropic backend against a loopback server speaking the Messages API's SSE sequence.

mod common;

use common::{config, events, hello, model, no_key, same_as_local, KEY};
use serde_json::Value;
use temper_core::{FinishReason, GenerationParams};
use temper_providers::{Vendor, ANTHROPIC_DEFAULT_MAX_TOKENS};
use temper_testserver::{sse, Reply, Server};

const START: &str = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-test","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":14,"output_tokens":1}}}"#;
const BLOCK_START: &str =
    r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#;
const PING: &str = r#"{"type": "ping"}"#;
const HEL: &str = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#;
const LO: &str = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo!"}}"#;
const BLOCK_STOP: &str = r#"{"type":"content_block_stop","index":0}"#;
const DELTA: &str = r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":3}}"#;
const STOP: &str = r#"{"type":"message_stop"}"#;

fn answer() -> Reply {
    Reply::stream(
        "text/event-stream",
        sse([
            (Some("message_start"), START),
            (Some("content_block_start"), BLOCK_START),
            (Some("ping"), PING),
            (Some("content_block_delta"), HEL),
            (Some("content_block_delta"), LO),
            (Some("content_block_stop"), BLOCK_STOP),
            (Some("message_delta"), DELTA),
            (Some("message_stop"), STOP),
        ]),
    )
}

#[tokio::test]
async fn streams_the_same_events_as_the_local_engine() {
    let server = Server::start(vec![answer()]);
    let (config, _) = config(Vendor::Anthropic, server.url("/v1"));
    let params = GenerationParams {
        temperature: Some(0.5),
        top_k: Some(20),
        stop: vec!["END".into()],
        ..Default::default()
    };
    let response = same_as_local(&events(&model(config), hello().with_params(params)).await.unwrap());
    assert_eq!(response.text, "Hello!");
    assert_eq!((response.usage.prompt_tokens, response.usage.completion_tokens), (14, 3));
    assert_eq!(response.finish_reason, FinishReason::Length);

    let request = &server.requests()[0];
    assert_eq!(request.path, "/v1/messages");
    assert_eq!(request.header("x-api-key"), Some(KEY));
    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(request.header("authorization"), None);
    let body: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(body["system"], "Be brief.");
    assert_eq!(body["messages"].as_array().unwrap().len(), 1, "the system message is not in the list");
    assert_eq!(body["messages"][0]["role"], "user");
    assert_eq!(body["max_tokens"], ANTHROPIC_DEFAULT_MAX_TOKENS);
    assert_eq!(body["top_k"], 20);
    assert_eq!(body["stop_sequences"][0], "END");
    assert_eq!(body["stream"], true);
}

#[tokio::test]
async fn min_p_and_a_temperature_above_one_are_refused() {
    let server = Server::start(vec![answer()]);
    let (config, _) = config(Vendor::Anthropic, server.url("/v1"));
    let model = model(config);
    let err =
        events(&model, hello().with_params(GenerationParams { min_p: Some(0.1), ..Default::default() }))
            .await
            .unwrap_err();
    assert!(err.contains("anthropic cannot honour `min_p`"), "{err}");
    let err = events(
        &model,
        hello().with_params(GenerationParams { temperature: Some(1.5), ..Default::default() }),
    )
    .await
    .unwrap_err();
    assert!(err.contains("`temperature`") && err.contains("0 to 1"), "{err}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn an_error_event_mid_stream_is_reported() {
    let overloaded = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let reply = Reply::stream(
        "text/event-stream",
        sse([
            (Some("message_start"), START),
            (Some("content_block_delta"), HEL),
            (Some("error"), overloaded),
        ]),
    );
    let server = Server::start(vec![reply]);
    let (config, _) = config(Vendor::Anthropic, server.url("/v1"));
    let err = events(&model(config), hello()).await.unwrap_err();
    assert!(err.contains("anthropic reported an error mid-stream: overloaded_error: Overloaded"), "{err}");
}

#[tokio::test]
async fn an_unauthorised_key_is_a_clear_error() {
    let body = r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
    let server = Server::start(vec![Reply::json(401, body)]);
    let (config, _) = config(Vendor::Anthropic, server.url("/v1"));
    let err = events(&model(config), hello()).await.unwrap_err();
    assert!(err.contains("HTTP 401: authentication_error: invalid x-api-key"), "{err}");
    no_key(&err);
}

#[tokio::test]
async fn transport_faults_are_retried_or_reported() {
    let unauthorised =
        r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key KEY (401)"}}"#;
    common::transport_faults(Vendor::Anthropic, "/v1", answer, unauthorised).await;
}

#[tokio::test]
async fn malformed_json_in_the_stream_is_a_clear_error() {
    let frames = sse([(Some("message_start"), START), (Some("content_block_delta"), "{\"type\": oops")]);
    let server = Server::start(vec![Reply::stream("text/event-stream", frames)]);
    let (config, _) = config(Vendor::Anthropic, server.url("/v1"));
    let err = events(&model(config), hello()).await.unwrap_err();
    assert!(err.contains("anthropic sent a malformed stream event") && err.contains("oops"), "{err}");
}

#[tokio::test]
async fn an_sse_stream_cut_mid_event_is_a_clear_error() {
    let mut frames = sse([(Some("message_start"), START), (Some("content_block_delta"), HEL)]);
    frames.push("event: content_block_delta\ndata: {\"type\":\"content_bl".into());
    let server = Server::start(vec![Reply::stream("text/event-stream", frames).cut()]);
    let (config, _) = config(Vendor::Anthropic, server.url("/v1"));
    let err = events(&model(config), hello()).await.unwrap_err();
    assert!(err.contains("anthropic's stream broke"), "{err}");
}
