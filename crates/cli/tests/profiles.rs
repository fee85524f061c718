//! Profiles, remote backends, fallback and cost through the `temper` binary, against loopback
//! servers that speak OpenAI's chat completions wire format. No model is needed.

mod common;

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use temper_testserver::{sse, Reply, Server};

const KEY_VAR: &str = "TEMPER_TEST_VENDOR_KEY";
const KEY: &str = "sk-cli-5ecret-0123456789abcdef";

/// `temper ARGS` run in `dir`, with its store in `dir/home` and the test key in the environment.
fn temper(dir: &Path, args: &[&str]) -> Output {
    common::temper_in(dir).args(args).env(KEY_VAR, KEY).output().expect("cannot run temper")
}

fn ok(output: &Output) -> String {
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "temper failed:\n{err}");
    assert!(!err.contains(KEY), "the key leaked on stderr: {err}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn failed(output: &Output) -> String {
    let (out, err) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr).into_owned());
    assert_eq!(output.status.code(), Some(1), "expected a failure; stderr:\n{err}");
    assert!(err.contains("error: ") && !err.contains("panicked"), "{err}");
    assert!(!err.contains(KEY) && !out.contains(KEY), "the key leaked: {err}");
    err
}

fn chunk(content: &str) -> String {
    format!(
        r#"{{"choices":[{{"index":0,"delta":{{"content":{}}},"finish_reason":null}}]}}"#,
        serde_json::to_string(content).unwrap()
    )
}

/// A whole streamed answer with usage 1000 + 200.
fn answer(text: &str) -> Reply {
    let piece = chunk(text);
    let finish = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
    let usage = r#"{"choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":200}}"#;
    Reply::stream(
        "text/event-stream",
        sse([(None, piece.as_str()), (None, finish), (None, usage), (None, "[DONE]")]),
    )
}

/// A temp dir with a temper.toml holding `profiles`.
fn project(profiles: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("temper.toml"), profiles).unwrap();
    dir
}

fn remote(name: &str, server: &Server, extra: &str) -> String {
    format!(
        "[models.{name}]\nbackend = \"openai\"\nmodel = \"gpt-test\"\nbase_url = \"{}\"\napi_key_env = \"{KEY_VAR}\"\n\
         input_price_per_mtok = 0.15\noutput_price_per_mtok = 0.60\nmax_retries = 0\ntimeout_secs = 2\n{extra}\n",
        server.url("/v1")
    )
}

#[test]
fn init_writes_profiles_that_models_list_shows() {
    let dir = tempfile::tempdir().unwrap();
    ok(&temper(dir.path(), &["init"]));
    let err = failed(&temper(dir.path(), &["init"]));
    assert!(err.contains("already exists"), "{err}");
    let out = ok(&temper(dir.path(), &["models", "list"]));
    assert!(out.contains("smollm2-135m-instruct"), "{out}");
    let profiles = out.split("profiles (").nth(1).unwrap_or_else(|| panic!("no profiles in:\n{out}"));
    assert!(
        profiles.contains("gpt-mini") && profiles.contains("openai") && profiles.contains("0.15/0.6"),
        "{out}"
    );
    assert!(profiles.contains("local") && profiles.contains("smollm2-135m-instruct"), "{out}");
}

#[test]
fn ask_through_a_profile_prints_the_cost_and_logs_the_call() {
    let server = Server::start(vec![answer("Hi there!")]);
    let dir = project(&remote("gpt", &server, "[models.gpt.params]\ntemperature = 0.25"));
    let out = ok(&temper(dir.path(), &["ask", "--model", "gpt", "--json", "--max-tokens", "9", "Greet me"]));
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["text"], "Hi there!");
    assert_eq!(json["model"], "gpt");
    // 1000 × 0.15 / 1e6 + 200 × 0.60 / 1e6
    assert!((json["cost"].as_f64().unwrap() - 0.000_27).abs() < 1e-12, "{json}");

    let request = &server.requests()[0];
    assert_eq!(request.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    let body: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!((body["max_tokens"].as_u64(), body["temperature"].as_f64()), (Some(9), Some(0.25)));

    let report = ok(&temper(dir.path(), &["cost", "report"]));
    let row = report.lines().find(|l| l.contains("gpt")).unwrap_or_else(|| panic!("{report}"));
    assert!(
        row.contains(" 1 ") && row.contains("1000") && row.contains("200") && row.contains("$0.000270"),
        "{report}"
    );
    let json: Value = serde_json::from_str(&ok(&temper(dir.path(), &["cost", "report", "--json"]))).unwrap();
    assert_eq!(json[0]["calls"], 1);
}

#[test]
fn a_broken_stream_falls_back_and_json_holds_only_the_second_answer() {
    let mut cut = sse([(None, chunk("Half an ans").as_str())]);
    cut.push("data: {\"choi".into());
    let first = Server::start(vec![Reply::stream("text/event-stream", cut).cut()]);
    let second = Server::start(vec![answer("Whole answer.")]);
    let profiles = remote("first", &first, "fallback = [\"second\"]") + &remote("second", &second, "");
    let dir = project(&profiles);
    let output = temper(dir.path(), &["ask", "--model", "first", "--json", "Hi"]);
    let json: Value = serde_json::from_str(&ok(&output)).unwrap();
    assert_eq!(json["text"], "Whole answer.");
    assert_eq!(json["model"], "second");

    let streamed = temper(dir.path(), &["ask", "--model", "first", "Hi"]);
    let stderr = String::from_utf8_lossy(&streamed.stderr).into_owned();
    assert!(stderr.contains("the answer starts again: first failed"), "{stderr}");
    assert!(ok(&streamed).ends_with("Whole answer.\n"));
    let report = ok(&temper(dir.path(), &["cost", "report", "--json"]));
    let totals: Value = serde_json::from_str(&report).unwrap();
    let first = totals.as_array().unwrap().iter().find(|t| t["model"] == "first").unwrap();
    assert_eq!((first["calls"].as_u64(), first["failed_calls"].as_u64()), (Some(0), Some(2)), "{report}");
}

#[test]
fn a_refused_key_is_reported_without_the_key() {
    let body =
        format!(r#"{{"error":{{"message":"Incorrect API key provided: {KEY}","code":"invalid_api_key"}}}}"#);
    let server = Server::start(vec![Reply::json(401, body)]);
    let dir = project(&remote("gpt", &server, ""));
    let err = failed(&temper(dir.path(), &["ask", "--model", "gpt", "Hi"]));
    assert!(err.contains("HTTP 401") && err.contains("Incorrect API key provided: [redacted]"), "{err}");
    // The call log traces the failure, without the key.
    let log = std::fs::read_to_string(dir.path().join("home/calls.jsonl")).unwrap();
    assert!(log.contains("\"error\"") && log.contains("HTTP 401") && !log.contains(KEY), "{log}");
}

#[test]
fn a_missing_key_variable_and_a_remote_tokenize_are_clear_errors() {
    let server = Server::start(vec![answer("unused")]);
    let profiles = remote("gpt", &server, "").replace(KEY_VAR, "TEMPER_TEST_UNSET_VARIABLE");
    let dir = project(&profiles);
    let err = failed(&temper(dir.path(), &["ask", "--model", "gpt", "Hi"]));
    assert!(err.contains("profile `gpt`") && err.contains("TEMPER_TEST_UNSET_VARIABLE"), "{err}");

    let dir = project(&remote("gpt", &server, ""));
    let err = failed(&temper(dir.path(), &["tokenize", "--model", "gpt", "Hi"]));
    assert!(err.contains("`tokenize`") && err.contains("remote profile"), "{err}");
    let err = failed(&temper(dir.path(), &["ask", "--model", "nosuch", "Hi"]));
    assert!(err.contains("or a profile of") && err.contains("gpt"), "{err}");
    assert!(server.requests().is_empty());
}

#[test]
fn compare_runs_every_model_and_shows_them_side_by_side() {
    let (a, b) = (Server::start(vec![answer("Answer A")]), Server::start(vec![answer("Answer B")]));
    let dir = project(&(remote("alpha", &a, "") + &remote("beta", &b, "")));
    std::fs::write(dir.path().join("prompt.txt"), "Compare us").unwrap();
    let out = ok(&temper(
        dir.path(),
        &["models", "compare", "--models", "alpha,beta", "--prompt-file", "prompt.txt"],
    ));
    for expected in
        ["MODEL", "alpha", "beta", "1000+200", "$0.000270", "── alpha ──\nAnswer A", "── beta ──\nAnswer B"]
    {
        assert!(out.contains(expected), "`{expected}` missing from:\n{out}");
    }
    let prompt: Value = serde_json::from_str(&a.requests()[0].body).unwrap();
    assert_eq!(prompt["messages"][0]["content"], "Compare us");

    let broken = Server::start(vec![Reply::json(500, r#"{"error":{"message":"down"}}"#)]);
    let dir = project(&(remote("alpha", &a, "") + &remote("gamma", &broken, "")));
    let output = temper(dir.path(), &["models", "compare", "--models", "alpha,gamma", "--json", "Hi"]);
    let err = failed(&output);
    assert!(err.contains("1 of 2 models failed: gamma"), "{err}");
    let rows: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(rows[0]["response"]["text"], "Answer A");
    assert!(rows[1]["error"].as_str().unwrap().contains("HTTP 500: down"), "{rows}");
}

#[test]
fn cost_estimate_prices_each_profile_against_the_vm() {
    let dir = tempfile::tempdir().unwrap();
    ok(&temper(dir.path(), &["init"]));
    let args =
        ["cost", "estimate", "--requests-per-day", "1000", "--input-tokens", "500", "--output-tokens", "200"];
    let out = ok(&temper(dir.path(), &[&args[..], &["--vm-hourly", "0.5"]].concat()));
    // gpt-mini: 195e-6 USD a request → $5.93 a month; the VM $365.00; even at 61538 a day.
    let gpt = out.lines().find(|l| l.starts_with("gpt-mini")).unwrap_or_else(|| panic!("{out}"));
    assert!(
        gpt.contains("$5.93")
            && gpt.contains("$365.00")
            && gpt.contains("api")
            && gpt.contains("61538 requests/day"),
        "{out}"
    );
    let local = out.lines().find(|l| l.starts_with("local")).unwrap_or_else(|| panic!("{out}"));
    assert!(local.contains("never"), "{out}");
    let err = failed(&temper(dir.path(), &[&args[..], &["--vm-hourly", "-1"]].concat()));
    assert!(err.contains("--vm-hourly"), "{err}");
}

#[test]
fn ask_offers_tools_and_a_schema_and_prints_the_calls() {
    let call = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Oslo\"}"}}]},"finish_reason":null}]}"#;
    let finish = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#;
    let reply = || Reply::stream("text/event-stream", sse([(None, call), (None, finish), (None, "[DONE]")]));
    let server = Server::start(vec![reply(), reply()]);
    let dir = project(&remote("gpt", &server, ""));
    let tools =
        r#"[{"name": "weather", "description": "Today's weather", "parameters": {"type": "object"}}]"#;
    std::fs::write(dir.path().join("tools.json"), tools).unwrap();
    std::fs::write(dir.path().join("city.schema.json"), r#"{"type": "object"}"#).unwrap();

    let args = ["ask", "--model", "gpt", "--tools", "tools.json", "--json-schema", "city.schema.json"];
    let json: Value =
        serde_json::from_str(&ok(&temper(dir.path(), &[&args[..], &["--json", "Weather?"]].concat())))
            .unwrap();
    assert_eq!(json["finish_reason"], "tool_calls");
    assert_eq!(
        json["tool_calls"][0],
        serde_json::json!({"id": "call_1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"})
    );
    let streamed = ok(&temper(dir.path(), &[&args[..], &["Weather?"]].concat()));
    assert!(streamed.contains("[tool call call_1] weather({\"city\":\"Oslo\"})"), "{streamed}");

    let sent: Value = serde_json::from_str(&server.requests()[0].body).unwrap();
    assert_eq!(sent["tools"][0]["function"]["name"], "weather");
    assert_eq!(sent["response_format"]["json_schema"]["name"], "city_schema");

    std::fs::write(dir.path().join("tools.json"), r#"[{"name": "weather"}]"#).unwrap();
    let err = failed(&temper(dir.path(), &["ask", "--model", "gpt", "--tools", "tools.json", "Weather?"]));
    assert!(err.contains("tools.json does not hold a list of tools") && err.contains("parameters"), "{err}");
}

#[test]
fn embed_through_a_profile() {
    let vectors = r#"{"object":"list","data":[{"index":0,"embedding":[0.5,0.5]}],"usage":{"prompt_tokens":1,"total_tokens":1}}"#;
    let two =
        r#"{"object":"list","data":[{"index":0,"embedding":[1.0,0.0]},{"index":1,"embedding":[0.0,1.0]}]}"#;
    let server = Server::start(vec![Reply::json(200, vectors), Reply::json(200, two)]);
    let dir = project(&remote("remote-embedder", &server, ""));
    let out = ok(&temper(dir.path(), &["embed", "--model", "remote-embedder", "first", "second"]));
    let got: Vec<Vec<f32>> = serde_json::from_str(&out).unwrap();
    assert_eq!(got, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    assert_eq!(server.requests()[1].path, "/v1/embeddings");
}

#[test]
fn eval_run_scores_a_spec_and_a_warm_rerun_asks_nothing() {
    let server = Server::start(vec![answer("positive"), answer("positive")]);
    let dir = project(&remote("gpt", &server, ""));
    let rows = "{\"review\": \"Love it\", \"label\": \"positive\"}\n{\"review\": \"Broke <fast>\", \"label\": \"negative\"}\n";
    std::fs::write(dir.path().join("rows.jsonl"), rows).unwrap();
    let spec = "prompts = [{ name = \"plain\", template = \"Review: {{ review }}\" }]\nmodels = [\"gpt\"]\n\
                [dataset]\npath = \"rows.jsonl\"\nexpected = \"label\"\n[[assertions]]\ntype = \"equals\"\n";
    std::fs::write(dir.path().join("spec.toml"), spec).unwrap();
    let args = ["eval", "run", "spec.toml", "--json", "--concurrency", "1", "--html", "report.html"];
    let cold: Value = serde_json::from_str(&ok(&temper(dir.path(), &args))).unwrap();
    let variant = &cold["variants"][0];
    assert_eq!(
        (variant["prompt"].as_str(), variant["model"].as_str()),
        (Some("plain"), Some("gpt")),
        "{cold}"
    );
    assert_eq!((variant["score"].as_f64(), variant["pass_rate"].as_f64()), (Some(0.5), Some(0.5)), "{cold}");
    assert_eq!(variant["calls"], 2);
    assert_eq!(variant["rows"][1]["assertions"][0]["reason"], "the output is not `negative`");
    // 2 × (1000 × 0.15 + 200 × 0.60) / 1e6
    assert!((variant["cost_usd"].as_f64().unwrap() - 0.000_54).abs() < 1e-12, "{cold}");
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("Broke &lt;fast&gt;") && !html.contains("http://"), "{html}");
    assert_eq!(server.requests().len(), 2);

    let output = temper(dir.path(), &["eval", "run", "spec.toml"]);
    let table = ok(&output);
    assert_eq!(server.requests().len(), 2, "a warm re-run makes no model call");
    assert!(String::from_utf8_lossy(&output.stderr).contains("0 model calls; 2 answers from the cache"));
    let line = table.lines().nth(1).unwrap_or_else(|| panic!("{table}"));
    assert!(line.starts_with("plain") && line.contains("0.500") && line.contains("50.0%"), "{table}");
}

#[test]
fn eval_run_refuses_a_bad_spec_before_any_call() {
    let server = Server::start(vec![answer("unused")]);
    let dir = project(&remote("gpt", &server, ""));
    std::fs::write(dir.path().join("rows.jsonl"), "{\"review\": \"x\"}\n").unwrap();
    let spec =
        "prompts = [{ template = \"{{ review }}\" }]\nmodels = [\"gpt\"]\n[dataset]\npath = \"rows.jsonl\"\n\
                [[assertions]]\ntype = \"regex\"\nvalue = \"(\"\n";
    std::fs::write(dir.path().join("spec.toml"), spec).unwrap();
    let err = failed(&temper(dir.path(), &["eval", "run", "spec.toml"]));
    assert!(err.contains("spec.toml:5:1: regex: invalid regex"), "{err}");
    let spec = spec.replace("regex\"\nvalue = \"(\"", "equals\"");
    std::fs::write(dir.path().join("spec.toml"), spec).unwrap();
    let err = failed(&temper(dir.path(), &["eval", "run", "spec.toml", "--no-cache"]));
    assert!(err.contains("rows.jsonl:1: equals compares with the row's expected value"), "{err}");
    assert!(server.requests().is_empty());
}

#[test]
fn a_local_profile_that_cannot_load_falls_back_and_is_named() {
    let server = Server::start(vec![answer("From the fallback.")]);
    let broken =
        "[models.broken]\nbackend = \"local\"\nmodel = \"/no/such/model.gguf\"\nfallback = [\"spare\"]\n";
    let dir = project(&(broken.to_owned() + &remote("spare", &server, "")));
    let output = temper(dir.path(), &["ask", "--model", "broken", "--json", "Hi"]);
    let json: Value = serde_json::from_str(&ok(&output)).unwrap();
    assert_eq!((json["text"].as_str(), json["model"].as_str()), (Some("From the fallback."), Some("spare")));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("profile `broken` cannot be loaded (no such file: /no/such/model.gguf); trying its fallback `spare`"),
        "{stderr}"
    );

    // Every member failing: the profile is named with each reason.
    let alone = "[models.alone]\nbackend = \"local\"\nmodel = \"/no/such/model.gguf\"\n";
    let both = broken.replace("spare", "alone") + alone;
    let dir = project(&both);
    let err = failed(&temper(dir.path(), &["ask", "--model", "broken", "Hi"]));
    assert!(
        err.contains("profile `broken`: no model of its chain could be loaded: broken: no such file: /no/such/model.gguf; alone: no such file: /no/such/model.gguf"),
        "{err}"
    );
    let err = failed(&temper(dir.path(), &["ask", "--model", "alone", "Hi"]));
    assert!(
        err.starts_with("error: profile `alone`\n  caused by: no such file: /no/such/model.gguf"),
        "{err}"
    );
}

#[test]
fn a_bad_line_in_the_call_log_is_skipped_and_counted() {
    let server = Server::start(vec![answer("Hi there!"), answer("Again.")]);
    let dir = project(&remote("gpt", &server, ""));
    ok(&temper(dir.path(), &["ask", "--model", "gpt", "Greet me"]));
    // A line torn by a crash, without its newline: the next record must not be glued to it.
    let log = dir.path().join("home/calls.jsonl");
    let mut text = std::fs::read(&log).unwrap();
    text.extend_from_slice(b"{\"unix_time\": 17, \"mod");
    std::fs::write(&log, text).unwrap();
    ok(&temper(dir.path(), &["ask", "--model", "gpt", "Greet me"]));
    let output = temper(dir.path(), &["cost", "report", "--json"]);
    let totals: Value = serde_json::from_str(&ok(&output)).unwrap();
    assert_eq!(totals[0]["calls"], 2, "{totals}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("skipped 1 line of")
            && stderr.contains("calls.jsonl that is not a call record (line 2: "),
        "{stderr}"
    );
    std::fs::write(&log, "garbage\n{\"unix_time\": 1}\n").unwrap();
    let output = temper(dir.path(), &["cost", "report"]);
    assert!(ok(&output).starts_with("no call records in "), "{}", ok(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("skipped 2 lines of"));
}
