//! Fallback chains and metering over real HTTP backends talking to loopback servers.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use temper_core::{ChatModel, ChatRequest, GenerationParams, Message, StreamEvent};
use temper_models::cost::{CallLog, Prices};
use temper_models::{Fallback, Metered};
use temper_providers::{HttpModel, ProviderConfig, Vendor, WarningSink};
use temper_testserver::{sse, Reply, Server};

fn chunk(content: &str) -> String {
    format!(
        r#"{{"choices":[{{"index":0,"delta":{{"content":{}}},"finish_reason":null}}]}}"#,
        serde_json::to_string(content).unwrap()
    )
}

const FINISH: &str = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
const USAGE: &str = r#"{"choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":200}}"#;

/// A whole answer made of `pieces`, with usage 1000 + 200.
fn answer(pieces: &[&str]) -> Reply {
    let chunks: Vec<String> = pieces.iter().map(|p| chunk(p)).collect();
    let mut frames: Vec<(Option<&str>, &str)> = chunks.iter().map(|c| (None, c.as_str())).collect();
    frames.extend([(None, FINISH), (None, USAGE), (None, "[DONE]")]);
    Reply::stream("text/event-stream", sse(frames))
}

fn quiet() -> WarningSink {
    Arc::new(|_| {})
}

fn openai(name: &str, server: &Server) -> Arc<dyn ChatModel> {
    let mut config = ProviderConfig::new(Vendor::OpenAi, "gpt-test");
    config.base_url = Some(server.url("/v1"));
    config.retry.max_retries = 0;
    config.timeouts.idle = Duration::from_millis(500);
    config.warn = quiet();
    Arc::new(HttpModel::new(name, config).unwrap())
}

fn question() -> ChatRequest {
    ChatRequest::new(vec![Message::user("Greet me")])
}

async fn events(model: &dyn ChatModel) -> Vec<Result<StreamEvent, String>> {
    model.chat_stream(question()).map(|e| e.map_err(|e| e.to_string())).collect().await
}

#[tokio::test]
async fn a_stream_broken_mid_answer_restarts_on_the_next_model() {
    // The first model sends two pieces, then the connection drops in the middle of an event.
    let mut broken = sse([(None, chunk("Hel").as_str()), (None, chunk("lo, wor").as_str())]);
    broken.push("data: {\"choices\":[{\"ind".into());
    let first = Server::start(vec![Reply::stream("text/event-stream", broken).cut()]);
    let second = Server::start(vec![answer(&["Good ", "day!"])]);
    let chain = Fallback::new("chain", vec![openai("first", &first), openai("second", &second)]).unwrap();

    let events = events(&chain).await;
    let events: Vec<StreamEvent> = events.into_iter().collect::<Result<_, _>>().unwrap();
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            StreamEvent::Delta(t) => format!("Delta({t})"),
            StreamEvent::Restart { .. } => "Restart".into(),
            StreamEvent::Done(r) => format!("Done({})", r.text),
            StreamEvent::ToolCall(d) => format!("ToolCall({d:?})"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["Delta(Hel)", "Delta(lo, wor)", "Restart", "Delta(Good )", "Delta(day!)", "Done(Good day!)"]
    );
    let StreamEvent::Restart { reason } = &events[2] else { unreachable!() };
    assert!(reason.contains("first failed") && reason.contains("falling back to second"), "{reason}");
    let StreamEvent::Done(response) = &events[5] else { unreachable!() };
    assert_eq!(response.model, "second");
}

#[tokio::test]
async fn a_failure_before_the_answer_moves_on_and_says_so() {
    let first = Server::start(vec![Reply::json(401, r#"{"error":{"message":"bad key"}}"#)]);
    let second = Server::start(vec![answer(&["Hi!"])]);
    let chain = Fallback::new("chain", vec![openai("first", &first), openai("second", &second)]).unwrap();
    let response = chain.chat(question()).await.unwrap();
    assert_eq!(response.text, "Hi!");
    let events = events(&chain).await;
    let StreamEvent::Restart { reason } = events[0].as_ref().unwrap() else { panic!("{events:?}") };
    assert!(reason.contains("HTTP 401: bad key"), "{reason}");
}

#[tokio::test]
async fn when_every_model_fails_the_error_names_each() {
    let first = Server::start(vec![Reply::json(500, r#"{"error":{"message":"boom"}}"#)]);
    let second = Server::start(vec![Reply::json(404, r#"{"error":{"message":"no such model"}}"#)]);
    let chain = Fallback::new("chain", vec![openai("first", &first), openai("second", &second)]).unwrap();
    let err = chain.chat(question()).await.unwrap_err().to_string();
    assert!(err.contains("every model of the chain failed"), "{err}");
    assert!(
        err.contains("first: ")
            && err.contains("boom")
            && err.contains("second: ")
            && err.contains("no such model"),
        "{err}"
    );
    assert!(Fallback::new("empty", vec![]).is_err());
}

#[tokio::test]
async fn metered_answers_carry_their_cost_and_are_logged() {
    let server = Server::start(vec![answer(&["Hi!"])]);
    let home = tempfile::tempdir().unwrap();
    let log = CallLog::in_home(home.path());
    let defaults = GenerationParams { temperature: Some(0.25), max_tokens: Some(9), ..Default::default() };
    let model = Metered::new("gpt-mini", openai("raw", &server), quiet())
        .with_defaults(defaults)
        .with_prices(Some(Prices { input_per_mtok: 0.15, output_per_mtok: 0.60 }))
        .with_log(log.clone());
    let request = question().with_params(GenerationParams { max_tokens: Some(3), ..Default::default() });
    let response = model.chat(request).await.unwrap();
    // 1000 × 0.15 / 1e6 + 200 × 0.60 / 1e6 = 0.00015 + 0.00012
    assert!((response.cost.unwrap() - 0.000_27).abs() < 1e-12, "{:?}", response.cost);
    assert_eq!(response.model, "gpt-mini");
    let body: serde_json::Value = serde_json::from_str(&server.requests()[0].body).unwrap();
    assert_eq!(body["max_tokens"], 3, "the request's own parameter wins");
    assert_eq!(body["temperature"], 0.25, "the profile's default fills in");
    let json = serde_json::to_value(&response).unwrap();
    assert!((json["cost"].as_f64().unwrap() - 0.000_27).abs() < 1e-12);

    let records = log.read().unwrap().records;
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].model.as_str(), records[0].prompt_tokens, records[0].completion_tokens),
        ("gpt-mini", 1000, 200)
    );
    assert_eq!(records[0].cost, response.cost);
}

#[tokio::test]
async fn the_call_log_traces_a_fallback_failure_then_the_answer() {
    let first = Server::start(vec![Reply::json(503, r#"{"error":{"message":"overloaded"}}"#)]);
    let second = Server::start(vec![answer(&["Hi!"])]);
    let home = tempfile::tempdir().unwrap();
    let log = CallLog::in_home(home.path());
    let metered = |name: &str, server: &Server| -> Arc<dyn ChatModel> {
        Arc::new(Metered::new(name, openai(name, server), quiet()).with_log(log.clone()))
    };
    let chain = Fallback::new("chain", vec![metered("first", &first), metered("second", &second)]).unwrap();
    assert_eq!(chain.chat(question()).await.unwrap().model, "second");

    let records = log.read().unwrap().records;
    let trace: Vec<(&str, Option<&str>)> =
        records.iter().map(|r| (r.model.as_str(), r.error.as_deref())).collect();
    assert_eq!(trace.len(), 2, "{trace:?}");
    assert_eq!(trace[0].0, "first");
    assert!(trace[0].1.is_some_and(|e| e.contains("HTTP 503: overloaded")), "{trace:?}");
    assert_eq!(trace[1], ("second", None));
    let totals = temper_models::cost::report(&records);
    assert_eq!((totals[0].calls, totals[0].failed_calls, totals[1].calls), (0, 1, 1));
}
