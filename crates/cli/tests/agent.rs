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
fn the_command_tools_of_temper_toml_are_offered_without_a_tools_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("temper.toml"),
        "[models.fast]\nbackend = \"local\"\nmodel = \"smollm2-135m-instruct\"\n\n\
         [[tools]]\nname = \"shout\"\ndescription = \"Upper-cases its arguments.\"\n\
         command = [\"sh\", \"-c\", \"tr a-z A-Z\"]\n",
    )
    .unwrap();
    let out = json(&temper(d, &["agent", "tool", "shout", "--args", r#"{"word": "hello"}"#]));
    assert_eq!(out, serde_json::json!({"WORD": "HELLO"}));
}

#[test]
fn agent_tool_python_runs_code_in_the_sandbox_of_the_real_runtime() {
    let Some(home) = temper_testkit::installed_home(temper_models::PYTHON_RUNTIME) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("data")).unwrap();
    std::fs::write(d.join("data/n.csv"), "n\n3\n4\n").unwrap();
    let python = |code: &str| {
        let args = serde_json::json!({ "code": code }).to_string();
        let command = ["agent", "tool", "python", "--root", "data", "--scratch", "out", "--args", &args];
        common::temper_in(d).env("TEMPER_HOME", &home).args(command).output().unwrap()
    };
    let code = "import csv\nrows = list(csv.DictReader(open('/data/n.csv')))\n\
                open('sum.txt', 'w').write(str(sum(int(r['n']) for r in rows)))\nlen(rows)";
    let out = json(&python(code));
    assert_eq!(out["value"], "2");
    assert_eq!(out["files"], serde_json::json!([{"path": "sum.txt", "bytes": 1}]));
    assert_eq!(std::fs::read_to_string(d.join("out/sum.txt")).unwrap(), "7");
    let err = error(&python("open('/data/n.csv', 'w')"));
    assert!(err.contains("the code failed") && err.contains("Error"), "{err}");
}

#[test]
fn agent_run_on_the_default_model_calls_a_tool_answers_and_keeps_its_thread() {
    let Some(home) = temper_testkit::installed_home("smollm2-135m-instruct") else { return };
    let dir = tempfile::tempdir().unwrap();
    let threads = dir.path().join("agent.db");
    let output = common::temper_in(dir.path())
        .env("TEMPER_HOME", &home)
        .env("TEMPER_AGENT_DB", &threads)
        .args(["agent", "run", "--json", "--require-tool", "--tools", "calculator", "--temperature", "0"])
        .args(["--max-tokens", "64", "--thread", "sums", "What is 347 times 892?"])
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

    // The run is in its thread, step by step; a chat continues it, a line a task.
    let agent = || {
        let mut command = common::temper_in(dir.path());
        command.env("TEMPER_HOME", &home).env("TEMPER_AGENT_DB", &threads);
        command
    };
    let in_home = |args: &[&str]| agent().args(args).output().unwrap();
    let thread = json(&in_home(&["agent", "threads", "show", "sums", "--json"]));
    let messages = thread["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "{thread:#}");
    assert_eq!(messages[0]["content"], "What is 347 times 892?");
    assert_eq!(messages[1]["tool_calls"][0]["name"], "calculator");
    assert_eq!(messages[2]["role"], "tool");
    assert_eq!(messages[3]["content"], run["answer"]);

    let mut chat = agent()
        .args([
            "agent",
            "chat",
            "--thread",
            "sums",
            "--tools",
            "calculator",
            "--temperature",
            "0",
            "--max-tokens",
            "24",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    chat.stdin.take().unwrap().write_all(b"Thank you.\n\nWhat was the first question?\n").unwrap();
    let output = chat.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let thread = json(&in_home(&["agent", "threads", "show", "sums", "--json"]));
    let messages = thread["messages"].as_array().unwrap();
    let users: Vec<&str> =
        messages.iter().filter(|m| m["role"] == "user").map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(users, ["What is 347 times 892?", "Thank you.", "What was the first question?"]);

    let list = json(&in_home(&["agent", "threads", "list", "--json"]));
    assert_eq!(list[0]["name"], "sums");
    assert_eq!(list[0]["messages"], messages.len());
    assert!(in_home(&["agent", "threads", "rm", "sums"]).status.success());
    let err = error(&in_home(&["agent", "threads", "show", "sums"]));
    assert!(err.contains("there is no thread `sums`"), "{err}");
}
