//! `temper agent`: one tool run directly (no model), and a run of the default model with tools.

mod common;

use std::path::Path;
use std::process::Output;

use serde_json::Value;

fn temper(dir: &Path, args: &[&str]) -> Output {
    common::temper_in(dir).args(args).output().expect("cannot start temper")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The JSON a successful run printed.
fn json(output: &Output) -> Value {
    assert!(output.status.success(), "temper failed:\n{}", stderr(output));
    serde_json::from_str(&stdout(output)).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout(output)))
}

/// The error a failed run printed.
fn error(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    stderr(output)
}

#[test]
fn agent_tool_runs_one_tool_and_says_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = json(&temper(d, &["agent", "tool", "calculator", "--args", r#"{"expression": "2^64 + 7/2"}"#]));
    assert_eq!(out["result"], "18446744073709551619.5");

    std::fs::create_dir(d.join("notes")).unwrap();
    std::fs::write(d.join("notes/todo.txt"), "buy rye bread\n").unwrap();
    let read = |path: &str| temper(d, &["agent", "tool", "read_file", "--root", "notes", "--args", path]);
    let out = json(&read(r#"{"path": "todo.txt"}"#));
    assert!(out.to_string().contains("buy rye bread"), "{out}");
    let err = error(&read(r#"{"path": "../notes/todo.txt"}"#));
    assert!(err.contains("refused"), "{err}");

    let err = error(&temper(d, &["agent", "tool", "read_file", "--args", r#"{"path": "x"}"#]));
    assert!(err.contains("read_file needs a directory to read inside (--root)"), "{err}");
    let err = error(&temper(d, &["agent", "tool", "shell", "--args", "{}"]));
    assert!(err.contains("there is no tool `shell`"), "{err}");
    let err = error(&temper(d, &["agent", "tool", "calculator", "--args", r#"{"expr": "1"}"#]));
    assert!(err.contains("invalid arguments"), "{err}");
    let err = error(&temper(d, &["agent", "tool", "calculator", "--args", "{"]));
    assert!(err.contains("not JSON"), "{err}");
    let err = error(&temper(d, &["agent", "run", "--max-steps", "0", "what is 2+2?"]));
    assert!(err.contains("--max-steps 0"), "{err}");
}

#[test]
fn agent_run_on_the_default_model_calls_a_tool_and_answers() {
    let Some(home) = temper_testkit::installed_home("smollm2-135m-instruct") else { return };
    let dir = tempfile::tempdir().unwrap();
    let output = common::temper_in(dir.path())
        .env("TEMPER_HOME", home)
        .args(["agent", "run", "--json", "--require-tool", "--tools", "calculator", "--temperature", "0"])
        .args(["--max-tokens", "64", "What is 347 times 892?"])
        .output()
        .unwrap();
    let run = json(&output);
    let steps = run["steps"].as_array().unwrap();
    let kinds: Vec<&str> = steps.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    // The first call must call the calculator (decoding is constrained to a valid call); its
    // result, or its error, goes back to the model, which then answers.
    assert_eq!(kinds[..2], ["model", "tool"], "{run:#}");
    assert_eq!(steps[1]["tool"], "calculator");
    assert!(steps[1]["arguments"]["expression"].is_string(), "{run:#}");
    assert!(steps[1]["result"].is_object() != steps[1]["error"].is_string(), "{run:#}");
    assert_eq!(kinds.last(), Some(&"model"));
    assert!(!run["answer"].as_str().unwrap().trim().is_empty(), "{run:#}");
    let usage = &run["usage"];
    assert!(
        usage["prompt_tokens"].as_u64().unwrap() > 100 && usage["completion_tokens"].as_u64().unwrap() > 0
    );
    let time = &run["time"];
    let parts = ["model_ms", "tools_ms", "loop_ms"].map(|k| time[k].as_f64().unwrap());
    assert!((parts.iter().sum::<f64>() - time["total_ms"].as_f64().unwrap()).abs() < 1.0, "{time}");
}
