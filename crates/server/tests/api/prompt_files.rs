use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use temper_core::GenerationParams;
use temper_prompt::{Example, PromptFile, Template};

use crate::common;

#[tokio::test(flavor = "multi_thread")]
async fn an_exported_prompt_file_reads_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (base, server) = common::start(common::config(dir.path())).await;
    let client = reqwest::Client::new();
    let parts = json!({
        "description": "Shakespearean writing assistant",
        "model": "smollm2-135m-instruct",
        "system": "You are a writing assistant who answers as Shakespeare would.\nKeep \"quotes\" and 'apostrophes'.",
        "examples": [
            {"prompt": "Write a greeting.", "response": "Good morrow to thee, friend!"},
            {"prompt": "Say it is raining.", "response": "The heavens do weep upon us."}
        ],
        "params": {"temperature": 0.7, "top_p": 0.9, "top_k": 40, "max_tokens": 128, "stop": ["\n\n"], "seed": 42}
    });
    let exported: Value = common::post_json(&client, &format!("{base}/api/prompt-file/export"), &parts).await;
    let toml = exported["toml"].as_str().unwrap_or_else(|| panic!("{exported}"));

    // What `temper prompt run FILE` reads.
    let file = PromptFile::parse(Path::new("saved.toml"), toml).unwrap();
    assert_eq!(file.system.as_ref().map(Template::source), parts["system"].as_str());
    assert_eq!(file.template.source(), "{{ input }}", "the user's message is the variable `input`");
    assert_eq!(file.model.as_deref(), Some("smollm2-135m-instruct"));
    assert_eq!(file.description.as_deref(), Some("Shakespearean writing assistant"));
    let sent = |field: &str| parts[field].clone();
    assert_eq!(file.examples, serde_json::from_value::<Vec<Example>>(sent("examples")).unwrap());
    assert_eq!(file.params, serde_json::from_value::<GenerationParams>(sent("params")).unwrap());
    let vars = BTreeMap::from([("input".to_owned(), json!("Say farewell."))]);
    assert_eq!(file.prompt(&vars).unwrap().task, "Say farewell.");

    let imported: Value =
        common::post_json(&client, &format!("{base}/api/prompt-file/import"), &json!({ "toml": toml })).await;
    for field in ["description", "model", "system", "examples", "params"] {
        assert_eq!(imported[field], parts[field], "{field}: {imported}");
    }
    assert_eq!(imported["template"], "{{ input }}");
    assert_eq!((imported["vars"].clone(), imported["tests"].clone()), (json!({}), json!([])));
    // What import gives, export takes: saving an opened file loses nothing.
    let again: Value = common::post_json(&client, &format!("{base}/api/prompt-file/export"), &imported).await;
    assert_eq!(again["toml"], toml);
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_prompt_files_are_refused_where_they_are_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let (base, server) = common::start(common::config(dir.path())).await;
    let client = reqwest::Client::new();
    let import = |toml: &str| {
        client.post(format!("{base}/api/prompt-file/import")).json(&json!({ "toml": toml })).send()
    };
    let answer = import("template = \"x\"\nsystem = \n").await.unwrap();
    assert_eq!(answer.status(), 400);
    let error: Value = answer.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().starts_with("line 2, column 10: "), "{error}");
    assert_eq!(error["error"]["param"], "toml");
    let error: Value = import("template = \"{{ x \"\n").await.unwrap().json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().starts_with("line 1, column "), "{error}");

    let export = |body: Value| client.post(format!("{base}/api/prompt-file/export")).json(&body).send();
    let answer = export(json!({ "params": {"temperature": -1} })).await.unwrap();
    assert_eq!(answer.status(), 400);
    let error: Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["param"], "params", "{error}");
    let error: Value =
        export(json!({ "system": "{% if x %}never closed" })).await.unwrap().json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("system: "), "{error}");
    let error: Value = export(json!({ "sytem": "typo" })).await.unwrap().json().await.unwrap();
    assert_eq!(error["error"]["param"], "sytem", "{error}");
    let error: Value = export(json!({ "examples": [{"prompt": "a"}] })).await.unwrap().json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("response"), "{error}");
    server.abort();
}
