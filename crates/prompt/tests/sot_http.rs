//! Skeleton of thought over an HTTP backend: the OpenAI-compatible provider against the
//! loopback test server, which streams every expansion at a fixed pace (one SSE event per
//! 5 ms). Expanding five points with concurrent requests must take about as long as one
//! expansion, and five times less than expanding them one after another.

use std::time::Duration;

use temper_prompt::sot::{self, SotOptions};
use temper_providers::{HttpModel, ProviderConfig, Vendor};
use temper_testserver::{sse, Reply, Server};

const ROLE: &str = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
const FINISH: &str = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;

fn delta(text: &str) -> String {
    let content = serde_json::to_string(text).unwrap();
    format!(
        r#"{{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":0,"delta":{{"content":{content}}},"finish_reason":null}}]}}"#
    )
}

/// A streamed answer of `texts`, one SSE event each.
fn streamed(texts: &[String]) -> Reply {
    let deltas: Vec<String> = texts.iter().map(|t| delta(t)).collect();
    let mut frames: Vec<(Option<&str>, &str)> = vec![(None, ROLE)];
    frames.extend(deltas.iter().map(|d| (None, d.as_str())));
    frames.extend([(None, FINISH), (None, "[DONE]")]);
    Reply::stream("text/event-stream", sse(frames))
}

#[tokio::test]
async fn points_are_expanded_with_concurrent_requests() {
    let skeleton = streamed(&["1. Plan\n2. Shop\n3. Cook\n4. Serve\n5. Clean".to_owned()]);
    // Every later request (expansions, the normal answer) streams 40 words at 5 ms each.
    let expansion = streamed(&vec!["word ".to_owned(); 40]);
    let server = Server::start(vec![skeleton, expansion]);
    let mut config = ProviderConfig::new(Vendor::OpenAi, "m");
    config.base_url = Some(server.url("/v1"));
    let model = HttpModel::new("loopback", config).unwrap();

    let options = SotOptions { sequential: true, ..SotOptions::default() };
    let sot = sot::answer(&model, "How do I host a dinner?", &options).await.unwrap();

    assert_eq!(sot.points, vec!["Plan", "Shop", "Cook", "Serve", "Clean"]);
    assert!(
        sot.answer.starts_with("1. Plan: word word") && sot.answer.contains("\n5. Clean: word"),
        "{}",
        sot.answer
    );
    let t = &sot.timings;
    eprintln!("loopback HTTP: {t:?}");
    let one = Duration::from_millis(40 * 5).as_secs_f64() * 1e3;
    assert!(t.expand_ms < 2.0 * one + 100.0, "five concurrent expansions took {} ms", t.expand_ms);
    assert!(t.sequential_expand_ms.unwrap() > 5.0 * one, "{t:?}");
    assert!(t.batch_speedup.unwrap() > 3.0, "{t:?}");
    // 1 skeleton + 5 at once + 5 one after another + 1 normal answer.
    assert_eq!(server.requests().len(), 12);
}
