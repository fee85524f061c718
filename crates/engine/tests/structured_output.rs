//! Constrained decoding on the real default model: every answer that finishes follows its JSON
//! schema, and every tool call names an offered tool with arguments valid for it, checked by an
//! independent validator (the `jsonschema` crate, not the grammar engine that made them).
//!
//! The cases are `fixtures/structured/schemas.jsonl` (72 schemas) and `tools.jsonl` (32 tool
//! sets), each decoded greedily and with three sampling seeds. The table this prints is the
//! validity table of docs/structured-output.md:
//!
//! ```sh
//! cargo test --release -p temper-engine --test structured_output -- --nocapture
//! ```

use futures::future::join_all;
use serde_json::Value;
use temper_core::{
    ChatModel, ChatRequest, Error, FinishReason, GenerationParams, Message, ResponseFormat, Tool, ToolChoice,
};
use temper_engine::{LoadOptions, LocalModel};

fn cases(file: &str) -> Vec<Value> {
    let path = temper_testkit::repo_file(&format!("crates/engine/tests/fixtures/structured/{file}"));
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options().should_validate_formats(true).build(schema).unwrap()
}

/// Greedy, then three seeds at the sampler's defaults.
fn decodings() -> Vec<(&'static str, GenerationParams)> {
    let with = |temperature: f32, seed: u64| GenerationParams {
        temperature: Some(temperature),
        seed: Some(seed),
        max_tokens: Some(200),
        ..Default::default()
    };
    vec![
        ("greedy", with(0.0, 0)),
        ("seed 1", with(0.8, 1)),
        ("seed 2", with(0.8, 2)),
        ("seed 3", with(0.8, 3)),
    ]
}

/// How the answers of one decoding went.
#[derive(Default)]
struct Tally {
    finished: usize,
    valid: usize,
    cut_off: usize,
    invalid: Vec<String>,
}

impl Tally {
    fn line(&self, what: &str, decoding: &str) -> String {
        let total = self.finished + self.cut_off;
        format!(
            "| {what} | {decoding} | {total} | {} ({:.0}%) | {} of {} (100% required) |",
            self.finished,
            100.0 * self.finished as f64 / total as f64,
            self.valid,
            self.finished
        )
    }
}

fn model() -> Option<LocalModel> {
    let path = temper_testkit::smollm2()?;
    let options = LoadOptions { threads: Some(2), context_window: Some(2048), sequences: Some(4) };
    Some(LocalModel::load(&path, "smollm2-135m-instruct", options).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_finished_answer_follows_its_schema_and_every_call_its_tool() {
    let Some(model) = model() else { return };
    let schemas = cases("schemas.jsonl");
    let tool_sets = cases("tools.jsonl");
    assert!(schemas.len() >= 50 && tool_sets.len() >= 20);
    let mut table =
        vec!["| cases | decoding | answers | finished | valid |".to_string(), "|---|---|---|---|---|".into()];
    let mut failures = Vec::new();
    for (decoding, params) in decodings() {
        let requests = schemas.iter().map(|case| {
            let format = ResponseFormat::JsonSchema {
                name: case["name"].as_str().unwrap().into(),
                schema: case["schema"].clone(),
                strict: true,
            };
            let request = ChatRequest::new(vec![Message::user(case["prompt"].as_str().unwrap())])
                .with_params(params.clone())
                .with_response_format(format);
            model.chat(request)
        });
        let mut tally = Tally::default();
        for (case, response) in schemas.iter().zip(join_all(requests).await) {
            let response = response.unwrap();
            if response.finish_reason == FinishReason::Length {
                tally.cut_off += 1;
                continue;
            }
            tally.finished += 1;
            let name = case["name"].as_str().unwrap();
            match serde_json::from_str::<Value>(&response.text) {
                Ok(json) => match validator(&case["schema"]).validate(&json) {
                    Ok(()) => tally.valid += 1,
                    Err(e) => tally.invalid.push(format!("{name} ({decoding}): {e}: {}", response.text)),
                },
                Err(e) => {
                    tally.invalid.push(format!("{name} ({decoding}): not JSON ({e}): {}", response.text))
                }
            }
        }
        table.push(tally.line(&format!("{} schemas", schemas.len()), decoding));
        failures.extend(tally.invalid);

        let requests = tool_sets.iter().enumerate().map(|(index, case)| {
            let tools: Vec<Tool> = serde_json::from_value(case["tools"].clone()).unwrap();
            let choice = match &case["tool_choice"] {
                Value::String(s) if s == "auto" => ToolChoice::Auto,
                Value::String(s) if s == "required" => ToolChoice::Required,
                other => ToolChoice::Function(other["function"].as_str().unwrap().into()),
            };
            let mut request = ChatRequest::new(vec![Message::user(case["prompt"].as_str().unwrap())])
                .with_params(params.clone())
                .with_tools(tools, choice);
            // Every other set may call several tools in one turn.
            request.parallel_tool_calls = Some(index % 2 == 1);
            model.chat(request)
        });
        let mut tally = Tally::default();
        for (case, response) in tool_sets.iter().zip(join_all(requests).await) {
            let response = response.unwrap();
            if response.finish_reason == FinishReason::Length {
                assert!(response.tool_calls.is_empty(), "a call cut off is not passed on as a call");
                tally.cut_off += 1;
                continue;
            }
            tally.finished += 1;
            let name = case["name"].as_str().unwrap();
            let choice = &case["tool_choice"];
            let problems: Vec<String> = check_calls(case, &response.tool_calls);
            let must_call = choice != "auto";
            if must_call && response.finish_reason != FinishReason::ToolCalls {
                tally.invalid.push(format!(
                    "{name} ({decoding}): tool_choice {choice} but no call: {}",
                    response.text
                ));
            } else if !problems.is_empty() {
                tally.invalid.push(format!("{name} ({decoding}): {}", problems.join("; ")));
            } else {
                tally.valid += 1;
            }
        }
        table.push(tally.line(&format!("{} tool sets", tool_sets.len()), decoding));
        failures.extend(tally.invalid);
    }
    println!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{} invalid answers:\n{}", failures.len(), failures.join("\n"));
}

/// What is wrong with `calls` for the case's tools: an unknown tool, a call of another tool than
/// the one named, or arguments that do not follow the tool's schema.
fn check_calls(case: &Value, calls: &[temper_core::ToolCall]) -> Vec<String> {
    let tools = case["tools"].as_array().unwrap();
    let named = case["tool_choice"]["function"].as_str();
    calls
        .iter()
        .filter_map(|call| {
            let Some(tool) = tools.iter().find(|t| t["name"] == call.name.as_str()) else {
                return Some(format!("called `{}`, which was not offered", call.name));
            };
            if named.is_some_and(|n| n != call.name) {
                return Some(format!("called `{}`, not the named `{}`", call.name, named.unwrap()));
            }
            let arguments: Value = match serde_json::from_str(&call.arguments) {
                Ok(arguments) => arguments,
                Err(e) => {
                    return Some(format!("`{}` arguments are not JSON ({e}): {}", call.name, call.arguments))
                }
            };
            validator(&tool["parameters"])
                .validate(&arguments)
                .err()
                .map(|e| format!("`{}` arguments {}: {e}", call.name, call.arguments))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_enforced_is_refused_before_any_token_naming_the_place() {
    let Some(model) = model() else { return };
    let ask = |format: ResponseFormat| {
        let request = ChatRequest::new(vec![Message::user("Hi")]).with_response_format(format);
        model.chat(request)
    };
    let schema = |schema: Value| ResponseFormat::JsonSchema { name: "s".into(), schema, strict: true };
    let refusal = |result: temper_core::Result<temper_core::ChatResponse>| match result {
        Err(Error::InvalidParam { name, reason }) => format!("{name}: {reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let bad_type = refusal(
        ask(schema(serde_json::json!({"type": "object", "properties": {"a": {"type": "text"}}}))).await,
    );
    assert_eq!(bad_type, "response_format.schema/properties/a: cannot be enforced: Invalid type: text");
    let unsupported = refusal(
        ask(schema(serde_json::json!({"type": "object", "properties": {"l": {"type": "array", "items": {"not": {}}}}})))
            .await,
    );
    assert_eq!(
        unsupported,
        r#"response_format.schema/properties/l/items: cannot be enforced: Unimplemented keys: ["not"]"#
    );
    let tools = vec![
        Tool::new("fine", "", serde_json::json!({"type": "object"})),
        Tool::new(
            "odd",
            "",
            serde_json::json!({"type": "object", "properties": {"x": {"uniqueItems": true}}}),
        ),
    ];
    let request = ChatRequest::new(vec![Message::user("Hi")]).with_tools(tools, ToolChoice::Auto);
    let tool = refusal(model.chat(request).await);
    assert_eq!(
        tool,
        r#"tools[1].parameters/properties/x: cannot be enforced: Unimplemented keys: ["uniqueItems"]"#
    );
    let unsatisfiable = refusal(
        ask(schema(serde_json::json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 1}}, "required": ["n"]}))).await,
    );
    assert!(unsatisfiable.contains("cannot be enforced"), "{unsatisfiable}");
    let grammar = refusal(ask(ResponseFormat::Grammar { grammar: "start: missing_rule".into() }).await);
    assert!(grammar.contains("missing_rule"), "{grammar}");
    let regex = refusal(ask(ResponseFormat::Regex { pattern: "(unclosed".into() }).await);
    assert!(regex.contains("cannot be enforced"), "{regex}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_stream_as_deltas_that_add_up_to_the_calls_of_the_answer() {
    use futures::StreamExt;
    use temper_core::StreamEvent;
    let Some(model) = model() else { return };
    let tools: Vec<Tool> = serde_json::from_value(cases("tools.jsonl")[0]["tools"].clone()).unwrap();
    let request = ChatRequest::new(vec![Message::user("What is the weather in Oslo?")])
        .with_params(GenerationParams { temperature: Some(0.0), max_tokens: Some(120), ..Default::default() })
        .with_tools(tools, ToolChoice::Required);
    let mut events = model.chat_stream(request);
    let (mut deltas, mut text) = (Vec::new(), String::new());
    let response = loop {
        match events.next().await.unwrap().unwrap() {
            StreamEvent::ToolCall(delta) => deltas.push(delta),
            StreamEvent::Delta(piece) => text.push_str(&piece),
            StreamEvent::Done(response) => break response,
            StreamEvent::Restart { .. } => unreachable!(),
        }
    };
    assert_eq!(response.finish_reason, FinishReason::ToolCalls, "{response:?}");
    assert!(text.is_empty() && response.text.is_empty(), "no call is streamed as text: {text:?}");
    assert!(!response.tool_calls.is_empty());
    for (index, call) in response.tool_calls.iter().enumerate() {
        let mine: Vec<_> = deltas.iter().filter(|d| d.index == index).collect();
        assert_eq!(mine[0].id.as_deref(), Some(call.id.as_str()));
        assert_eq!(mine[0].name.as_deref(), Some(call.name.as_str()));
        let arguments: String = mine.iter().map(|d| d.arguments.as_str()).collect();
        let streamed: Value = serde_json::from_str(&arguments).unwrap();
        assert_eq!(streamed, serde_json::from_str::<Value>(&call.arguments).unwrap());
    }
}
