//! The Ollama backend against a loopback server speaking `/api/chat`'s NDJSON stream.

mod common;

use common::{config, events, hello, model, same_as_local};
use serde_json::Value;
use temper_core::{FinishReason, GenerationParams};
use temper_providers::Vendor;
use temper_testserver::{Reply, Server};

fn line(content: &str) -> String {
    format!(
        "{{\"model\":\"llama3.2\",\"created_at\":\"2024-07-22T20:33:28.123Z\",\"message\":{{\"role\":\"assistant\",\"content\":{}}},\"done\":false}}\n",
        serde_json::to_string(content).unwrap()
    )
}

const LAST: &str = "{\"model\":\"llama3.2\",\"created_at\":\"2024-07-22T20:33:28.5Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":4883583458,\"load_duration\":1334875,\"prompt_eval_count\":26,\"prompt_eval_duration\":342546000,\"eval_count\":2,\"eval_duration\":4535599000}\n";

#[tokio::test]
async fn streams_the_same_events_as_the_local_engine_and_maps_every_parameter() {
    let server = Server::start(vec![answer()]);
    let (mut config, _) = config(Vendor::Ollama, server.url(""));
    config.api_key = None;
    let params = GenerationParams {
        temperature: Some(0.3),
        top_k: Some(30),
        min_p: Some(0.05),
        repeat_penalty: Some(1.1),
        max_tokens: Some(64),
        context_window: Some(2048),
        seed: Some(3),
        stop: vec!["\n".into()],
        ..Default::default()
    };
    let response = same_as_local(&events(&model(config), hello().with_params(params)).await.unwrap());
    assert_eq!(response.text, "Hello!");
    assert_eq!((response.usage.prompt_tokens, response.usage.completion_tokens), (26, 2));
    assert_eq!(response.finish_reason, FinishReason::Stop);

    let request = &server.requests()[0];
    assert_eq!(request.path, "/api/chat");
    assert_eq!(request.header("authorization"), None, "no key, no header");
    let body: Value = serde_json::from_str(&request.body).unwrap();
    let options = &body["options"];
    assert_eq!(options["top_k"], 30);
    assert_eq!(options["num_predict"], 64);
    assert_eq!(options["num_ctx"], 2048);
    assert_eq!(options["seed"], 3);
    assert_eq!(options["stop"][0], "\n");
    assert!((options["min_p"].as_f64().unwrap() - 0.05).abs() < 1e-6);
    assert!((options["repeat_penalty"].as_f64().unwrap() - 1.1).abs() < 1e-6);
    assert_eq!(body["messages"][0]["role"], "system");
}

fn answer() -> Reply {
    Reply::stream("application/x-ndjson", [line("Hel"), line("lo!"), LAST.to_owned()])
}

#[tokio::test]
async fn transport_faults_are_retried_or_reported() {
    common::transport_faults(Vendor::Ollama, "", answer, r#"{"error":"unauthorized key KEY (401)"}"#).await;
}

#[tokio::test]
async fn an_unknown_model_is_a_clear_error() {
    let server = Server::start(vec![Reply::json(
        404,
        r#"{"error":"model \"nosuch\" not found, try pulling it first"}"#,
    )]);
    let (config, _) = config(Vendor::Ollama, server.url(""));
    let err = events(&model(config), hello()).await.unwrap_err();
    assert!(err.contains("HTTP 404: model \"nosuch\" not found"), "{err}");
}

#[tokio::test]
async fn malformed_json_and_a_cut_line_are_clear_errors() {
    let server = Server::start(vec![Reply::stream(
        "application/x-ndjson",
        [line("Hel"), "{\"done\": fals\n".to_owned()],
    )]);
    let (first, _) = config(Vendor::Ollama, server.url(""));
    let err = events(&model(first), hello()).await.unwrap_err();
    assert!(err.contains("ollama sent a malformed stream event"), "{err}");

    let cut =
        Reply::stream("application/x-ndjson", [line("Hel"), "{\"model\":\"llama3.2\",\"mess".to_owned()])
            .cut();
    let server = Server::start(vec![cut]);
    let (second, _) = config(Vendor::Ollama, server.url(""));
    let err = events(&model(second), hello()).await.unwrap_err();
    assert!(err.contains("ollama's stream broke"), "{err}");
}
