//! An agent as a variant: the same rows done by the model alone and by an agent with tools,
//! each scored like any prompt, with the tools each row called in its report.

mod common;

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use temper_agent::tools::Calculator;
use temper_agent::Toolbox;
use temper_core::{
    ChatModel, ChatRequest, ChatResponse, EventStream, GenerationParams, Role, StreamEvent, ToolCall,
};
use temper_eval::{Assertion, AssertionSpec, Evaluator, Settings, Spec, ToolboxMaker, Variant};
use temper_prompt::PromptFile;

use common::{block_on, row};

/// Guesses without tools; with them, sends the task's expression to the calculator and answers
/// with its result.
struct ToolUser;

impl ChatModel for ToolUser {
    fn name(&self) -> &str {
        "tool-user"
    }

    fn chat_stream(&self, request: ChatRequest) -> EventStream {
        let task = request.messages.iter().find(|m| m.role == Role::User).unwrap().content.clone();
        let result = request.messages.iter().rev().find(|m| m.role == Role::Tool).map(|m| m.content.clone());
        let mut response = ChatResponse { model: "tool-user".into(), ..Default::default() };
        match (request.tools.is_empty(), result) {
            (true, _) => response.text = "about a million".into(),
            (false, None) => {
                let expression = task.trim_start_matches("Compute ").to_owned();
                let arguments = json!({ "expression": expression }).to_string();
                response.tool_calls =
                    vec![ToolCall { id: "c1".into(), name: "calculator".into(), arguments }];
            }
            (false, Some(result)) => {
                let result: Value = serde_json::from_str(&result).unwrap();
                response.text = format!("It is {}.", result["result"].as_str().unwrap());
            }
        }
        Box::pin(futures::stream::once(async move { Ok(StreamEvent::Done(response)) }))
    }
}

/// A spec with `table` (an `[agent]`, say) over a dataset of one row.
fn parse(table: &str) -> temper_eval::Result<Spec> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rows.jsonl"), "{\"task\": \"Compute 1 + 1\", \"expected\": \"2\"}\n")
        .unwrap();
    let text = format!(
        "prompts = [{{ template = '{{{{ task }}}}' }}]\ndataset = {{ path = 'rows.jsonl' }}\n{table}\n\
         [[assertions]]\ntype = 'icontains'\n"
    );
    Spec::parse(&dir.path().join("spec.toml"), &text)
}

fn variant(tools: &[&str]) -> Variant {
    Variant {
        prompt: PromptFile::parse(Path::new("task.toml"), "template = \"{{ task }}\"\n").unwrap(),
        model: "tool-user".into(),
        params: GenerationParams { temperature: Some(0.0), ..Default::default() },
        grounding: None,
        tools: Some(tools.iter().map(|t| t.to_string()).collect()),
    }
}

fn evaluator() -> Evaluator {
    let icontains = Assertion::new(AssertionSpec { kind: "icontains".into(), ..Default::default() }).unwrap();
    let settings = Settings { assertions: vec![icontains], judge: None, concurrency: 2, constrain: true };
    let model: Arc<dyn ChatModel> = Arc::new(ToolUser);
    let resolve = move |_: &str| -> Result<Arc<dyn ChatModel>, String> { Ok(model.clone()) };
    let spec = parse("[agent]\ntools = [[], ['calculator']]\nmax_steps = 3").unwrap();
    let make: Arc<ToolboxMaker> = Arc::new(|names: &[String]| {
        let mut toolbox = Toolbox::new();
        for name in names {
            match name.as_str() {
                "calculator" => toolbox.add(Arc::new(Calculator)).map_err(|e| e.to_string())?,
                other => return Err(format!("no tool `{other}`")),
            }
        }
        Ok(toolbox)
    });
    Evaluator::new(settings, resolve, None, None).unwrap().with_agent(spec.agent.unwrap(), make)
}

#[test]
fn an_agent_with_tools_is_scored_against_the_model_alone() {
    let rows = vec![
        row(&[("task", "Compute 4783 * 2917")], Some(json!("13952011"))),
        row(&[("task", "Compute 2^31")], Some(json!("2147483648"))),
    ];
    let evaluator = evaluator();
    let alone = block_on(evaluator.evaluate(&variant(&[]), &rows)).unwrap();
    let tooled = block_on(evaluator.evaluate(&variant(&["calculator"]), &rows)).unwrap();

    assert_eq!(alone.prompt, "task.toml (agent, no tools)");
    assert_eq!(tooled.prompt, "task.toml (agent, tools calculator)");
    assert_eq!(alone.pass_rate, 0.0);
    assert_eq!(tooled.pass_rate, 1.0, "{:?}", tooled.rows.iter().map(|r| &r.output).collect::<Vec<_>>());
    assert_eq!(tooled.rows[0].output, "It is 13952011.");
    let agent = tooled.rows[1].agent.as_ref().unwrap();
    assert_eq!(
        (agent.tool_calls.as_slice(), agent.tool_errors, agent.model_calls),
        (&["calculator".to_owned()][..], 0, 2)
    );
    assert_eq!(alone.rows[0].agent.as_ref().unwrap().model_calls, 1);
    // The agent's model calls are counted like a prompt's.
    assert_eq!((alone.calls, tooled.calls), (2, 4));
}

#[test]
fn a_tool_set_the_maker_cannot_make_is_an_error_before_any_row() {
    let rows = vec![row(&[("task", "Compute 1 + 1")], Some(json!("2")))];
    let error = block_on(evaluator().evaluate(&variant(&["teleport"]), &rows)).unwrap_err();
    assert!(error.to_string().contains("no tool `teleport`"), "{error}");
}

#[test]
fn an_agent_table_is_checked_when_the_spec_is_read() {
    let parse = |agent: &str| parse(agent).map(|spec| spec.variants("m").len()).map_err(|e| e.to_string());
    assert_eq!(parse("[agent]\ntools = [[], ['calculator'], ['python']]"), Ok(3));
    assert!(parse("[agent]\ntools = []").unwrap_err().contains("`agent.tools` is empty"));
    assert!(parse("[agent]\ntools = [[]]\nmax_steps = 0").unwrap_err().contains("at least 1"));
    assert!(parse("[agent]\ntools = [[]]\nwhat = 1").unwrap_err().contains("unknown field `what`"));
    let both = parse("[agent]\ntools = [[]]\n[rag]\ndocuments = 'docs'");
    assert!(both.unwrap_err().contains("not both"));
}

#[test]
fn the_example_agent_tasks_load_with_an_expected_value_each_and_two_variants() {
    let mut tasks = 0;
    for name in ["arithmetic", "data", "documents"] {
        let path = temper_testkit::repo_file(&format!("examples/agents/{name}.toml"));
        let spec = Spec::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let agent = spec.agent.as_ref().unwrap();
        assert_eq!(agent.tools.len(), 2, "{name}: the model alone and with tools");
        assert!(agent.tools[0].is_empty() && !agent.tools[1].is_empty(), "{name}");
        assert!(spec.rows.iter().all(|row| row.expected.as_ref().is_some_and(|e| e.as_str().is_some())));
        assert_eq!(spec.variants("m").len(), 2);
        tasks += spec.rows.len();
        if let Some(root) = &agent.root {
            assert!(root.join("orders.csv").is_file(), "{}", root.display());
        }
        for documents in &agent.documents {
            assert!(documents.is_dir(), "{}", documents.display());
        }
    }
    assert_eq!(tasks, 34);
}
