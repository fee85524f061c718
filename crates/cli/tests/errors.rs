//! What `temper` prints when it fails: the error and its causes, each said once, and hints that
//! name commands which exist. None of these needs a model.

use std::path::Path;
use std::process::Output;

mod common;

/// `temper ARGS` run in `dir`, with an empty store that never pulls.
fn temper(dir: &Path, args: &[&str]) -> Output {
    common::temper_in(dir).args(args).output().expect("cannot start temper")
}

/// The printed error of a failed run, after checking that no cause repeats what is above it.
fn printed_error(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let mut above: Vec<&str> = Vec::new();
    for line in stderr.lines() {
        if let Some(cause) = line.strip_prefix("  caused by: ") {
            assert!(!above.iter().any(|l| l.contains(cause)), "a cause is printed twice:\n{stderr}");
        }
        above.push(line);
    }
    stderr
}

/// Runs every `temper …` command quoted in `text` with `--help`: each must be a real command.
fn assert_hints_are_commands(dir: &Path, text: &str) {
    let hints: Vec<&str> = text.split('`').skip(1).step_by(2).filter(|q| q.starts_with("temper ")).collect();
    assert!(!hints.is_empty(), "no hint in {text}");
    for hint in hints {
        let mut args: Vec<&str> = hint.split_whitespace().skip(1).collect();
        args.push("--help");
        let output = temper(dir, &args);
        assert!(output.status.success(), "the hint `{hint}` is not a temper command: {output:?}");
    }
}

#[test]
fn a_missing_prompt_file_names_the_file_then_the_system_error() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = printed_error(&temper(dir.path(), &["prompt", "render", "nofile.toml"]));
    let os_error = std::fs::read(dir.path().join("nofile.toml")).unwrap_err();
    assert_eq!(stderr, format!("error: cannot read the prompt file nofile.toml\n  caused by: {os_error}\n"));
}

#[test]
fn a_truncated_gguf_file_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short.gguf"), "GG").unwrap();
    let stderr = printed_error(&temper(dir.path(), &["ask", "--model", "./short.gguf", "hi"]));
    assert_eq!(
        stderr,
        "error: cannot load model `./short.gguf`\n  caused by: ./short.gguf: the file is truncated: \
         the magic number at byte 0 needs 4 bytes but the file has 2\n"
    );
}

#[test]
fn a_profile_without_its_key_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let toml =
        "[models.a]\nbackend = \"openai\"\nmodel = \"gpt-test\"\napi_key_env = \"TEMPER_TEST_UNSET_KEY\"\n";
    std::fs::write(dir.path().join("temper.toml"), toml).unwrap();
    let stderr = printed_error(&temper(dir.path(), &["ask", "--model", "a", "hi"]));
    assert_eq!(
        stderr,
        "error: profile `a`\n  caused by: environment variable TEMPER_TEST_UNSET_KEY is not set; it must hold \
         the API key (keys live in the environment, never in temper.toml)\n"
    );
}

#[test]
fn a_malformed_temper_toml_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("temper.toml"), "[models.a\nmodel = 1\n").unwrap();
    let stderr = printed_error(&temper(dir.path(), &["ask", "--model", "a", "hi"]));
    let file = dir.path().join("temper.toml");
    assert!(
        stderr.starts_with(&format!("error: {}: TOML parse error at line 1", file.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("caused by"), "{stderr}");
}

#[test]
fn a_corrupt_rag_store_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("corrupt.db"), "this is not a database, only text").unwrap();
    let stderr = printed_error(&temper(dir.path(), &["rag", "search", "--db", "corrupt.db", "hello"]));
    assert_eq!(stderr, "error: the store corrupt.db cannot be used: file is not a database\n");
}

#[test]
fn hints_name_commands_that_exist() {
    let dir = tempfile::tempdir().unwrap();
    let name = "smollm2-135m-instruct";

    let stderr = printed_error(&temper(dir.path(), &["models", "rm", name]));
    assert_eq!(
        stderr,
        format!(
            "error: model `{name}` is not installed (`temper models list` shows what is; \
             `temper models pull {name}` installs it)\n"
        )
    );
    assert_hints_are_commands(dir.path(), &stderr);

    // An install whose file is gone.
    std::fs::create_dir_all(dir.path().join("home/models").join(name)).unwrap();
    let stderr = printed_error(&temper(dir.path(), &["ask", "--model", name, "hi"]));
    assert!(stderr.ends_with(&format!("; `temper models pull {name}` repairs it\n")), "{stderr}");
    assert_hints_are_commands(dir.path(), &stderr);

    let stderr = printed_error(&temper(dir.path(), &["rag", "search", "--db", "none.db", "hello"]));
    assert_eq!(
        stderr,
        "error: there is no store at none.db; `temper rag ingest` creates one (check the path)\n\
         hint: --db PATH|URL names the store; without it, TEMPER_RAG_DB or temper.toml's [rag] db does, else $TEMPER_HOME/rag.db\n"
    );
    assert_hints_are_commands(dir.path(), &stderr);
}
