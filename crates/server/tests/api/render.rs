use std::path::Path;

use serde_json::{json, Value};
use temper_core::{ChatRequest, Message, TokenCounter};
use temper_engine::{LoadOptions, LocalModel};
use temper_models::Profiles;

use crate::common;

#[tokio::test(flavor = "multi_thread")]
async fn render_is_the_text_after_the_chat_template_with_its_token_count() {
    let Some(gguf) = temper_testkit::smollm2() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (base, server) = common::start(common::config(dir.path())).await;
    let client = reqwest::Client::new();
    let messages = vec![
        Message::system("You write as Shakespeare would."),
        Message::user("Say hello."),
        Message::assistant("Good morrow!"),
        Message::user("Say <b>goodbye</b> & leave."),
    ];
    let body = json!({ "model": "smollm2-135m-instruct", "messages": messages });
    let answer = client.post(format!("{base}/api/render")).json(&body).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let rendered: Value = answer.json().await.unwrap();

    let options = LoadOptions { context_window: Some(2048), ..LoadOptions::default() };
    let model = LocalModel::load(&gguf, "smollm2-135m-instruct", options).unwrap();
    let text = model.render_chat(&ChatRequest::new(messages.clone())).unwrap();
    assert!(text.contains("Say <b>goodbye</b> & leave."), "{text}");
    assert_eq!(rendered["text"], text);
    assert_eq!(rendered["tokens"], model.count_messages(&messages).unwrap());
    assert_eq!(
        (rendered["context_window"].as_u64(), rendered["model"].as_str()),
        (Some(2048), Some("smollm2-135m-instruct"))
    );

    let smaller =
        json!({ "model": "smollm2-135m-instruct", "messages": messages, "params": {"context_window": 512} });
    let answer: Value =
        client.post(format!("{base}/api/render")).json(&smaller).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["context_window"], 512);

    for (body, param) in [
        (json!({ "model": "smollm2-135m-instruct", "messages": [] }), "messages"),
        (
            json!({ "model": "smollm2-135m-instruct", "messages": [{"role": "wizard", "content": "hi"}] }),
            "messages[0].role",
        ),
        (
            json!({ "model": "smollm2-135m-instruct", "messages": messages, "params": {"context_window": 4096} }),
            "context_window",
        ),
        (
            json!({ "model": "smollm2-135m-instruct", "messages": messages, "params": {"top_p": 7} }),
            "params.top_p",
        ),
    ] {
        let answer = client.post(format!("{base}/api/render")).json(&body).send().await.unwrap();
        assert_eq!(answer.status(), 400);
        let error: Value = answer.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
    }
    let unknown = json!({ "model": "no-such-model", "messages": messages });
    let answer = client.post(format!("{base}/api/render")).json(&unknown).send().await.unwrap();
    assert_eq!(answer.status(), 404);
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_model_has_no_template_to_show() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = Profiles::parse(
        Path::new("temper.toml"),
        "[models.far]\nbackend = \"ollama\"\nmodel = \"llama3\"\nbase_url = \"http://127.0.0.1:9/v1\"\n",
    )
    .unwrap();
    let (base, server) = common::start_with(common::config(dir.path()), common::resolver(profiles)).await;
    let body = json!({ "model": "far", "messages": [{"role": "user", "content": "hi"}] });
    let answer = reqwest::Client::new().post(format!("{base}/api/render")).json(&body).send().await.unwrap();
    assert_eq!(answer.status(), 400);
    let error: Value = answer.json().await.unwrap();
    assert!(
        error["error"]["message"].as_str().unwrap().contains("remote models apply their own template"),
        "{error}"
    );
    server.abort();
}
