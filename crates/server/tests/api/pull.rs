use serde_json::{json, Value};

use crate::common;

#[tokio::test(flavor = "multi_thread")]
async fn pulling_an_installed_model_reports_it_done() {
    let Some(gguf) = temper_testkit::smollm2() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (base, server) = common::start(common::config(dir.path())).await;
    let client = reqwest::Client::new();
    let answer = client.post(format!("{base}/api/models/smollm2-135m-instruct/pull")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "text/event-stream");
    let (events, ended_with_done) = common::events(&answer.text().await.unwrap());
    assert_eq!(events, [json!({ "type": "done", "path": gguf })]);
    assert!(!ended_with_done, "progress streams end with their done event");

    let answer = client.post(format!("{base}/api/models/no-such-model/pull")).send().await.unwrap();
    assert_eq!(answer.status(), 404);
    let error: Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["code"], "model_not_found");
    server.abort();
}
