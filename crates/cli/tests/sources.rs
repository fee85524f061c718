//! `temper models pull|list|info|rm` with models named by their source, against a fake hub and
//! a URL on loopback: what a user types and reads.

use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use temper_engine::gguf::{GgufWriter, MetaValue};
use temper_testserver::{Reply, Server};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const TOKEN: &str = "hf_not_to_be_printed";

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// `temper ARGS` with everything it reads from the environment inside `home`, the hub at `hub`.
fn temper(home: &Path, hub: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_temper"))
        .args(args)
        .env("TEMPER_HOME", home.join("temper"))
        .env("TEMPER_PIP", "false")
        .env("HF_ENDPOINT", hub)
        .env("HF_TOKEN", TOKEN)
        .env("HF_HUB_CACHE", home.join("hf"))
        .env("OLLAMA_MODELS", home.join("ollama"))
        .env_remove("HF_HOME")
        .env_remove("CI")
        .output()
        .expect("cannot run temper")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn an_hf_model_is_pulled_listed_shown_and_removed() {
    let home = tempfile::tempdir().unwrap();
    let file = GgufWriter::new().meta("general.name", MetaValue::String("cli".into())).to_bytes();
    let listing = serde_json::json!({
        "id": "o/r", "sha": COMMIT,
        "siblings": [{ "rfilename": "m-Q8_0.gguf", "size": file.len(), "lfs": { "sha256": sha256(&file), "size": file.len() } }]
    });
    let server = Server::start(vec![
        Reply::json(200, listing.to_string()),
        Reply::redirect("/cdn/blob"),
        Reply::bytes("application/octet-stream", file.clone()).ranged(),
    ]);
    let hub = server.url("");

    let pulled = temper(home.path(), &hub, &["models", "pull", "hf:o/r:Q8_0"]);
    let err = text(&pulled.stderr);
    assert!(pulled.status.success(), "{err}");
    assert!(err.contains("hf:o/r:Q8_0: using m-Q8_0.gguf (quantization Q8_0)"), "{err}");
    assert!(err.contains("hf:o/r:Q8_0 installed at"), "{err}");

    let again = temper(home.path(), &hub, &["models", "pull", "hf:o/r:Q8_0"]);
    assert!(text(&again.stderr).contains("already installed"), "{}", text(&again.stderr));
    assert_eq!(server.requests().len(), 3);

    let list = text(&temper(home.path(), &hub, &["models", "list"]).stdout);
    assert!(list.contains("hf:o/r:m-Q8_0.gguf") && list.contains("o/r at 0123456789ab"), "{list}");
    let info = text(&temper(home.path(), &hub, &["models", "info", "hf:o/r:Q8_0"]).stdout);
    for expected in ["repository: o/r", "file: m-Q8_0.gguf", COMMIT, &sha256(&file)] {
        assert!(info.contains(expected), "`{expected}` missing from:\n{info}");
    }
    let verified = temper(home.path(), &hub, &["models", "verify", "hf:o/r:Q8_0"]);
    assert!(text(&verified.stdout).contains("hf:o/r:Q8_0: ok"), "{}", text(&verified.stderr));

    let removed = temper(home.path(), &hub, &["models", "rm", "hf:o/r:Q8_0"]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    let info = text(&temper(home.path(), &hub, &["models", "info", "hf:o/r:Q8_0"]).stdout);
    assert!(info.contains("not on this machine"), "{info}");
    for output in [&pulled, &again] {
        assert!(!text(&output.stderr).contains(TOKEN) && !text(&output.stdout).contains(TOKEN));
    }
}

#[test]
fn a_url_with_the_wrong_sha256_is_refused_and_nothing_is_kept() {
    let home = tempfile::tempdir().unwrap();
    let file = GgufWriter::new().to_bytes();
    let server = Server::start(vec![Reply::bytes("application/octet-stream", file.clone())]);
    let url = server.url("/tiny.gguf");
    let wrong = "0".repeat(64);

    let refused = temper(home.path(), "http://127.0.0.1:9", &["models", "pull", &url, "--sha256", &wrong]);
    let err = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&wrong) && err.contains(&sha256(&file)) && err.contains("nothing was installed"),
        "{err}"
    );

    let pulled =
        temper(home.path(), "http://127.0.0.1:9", &["models", "pull", &url, "--sha256", &sha256(&file)]);
    assert!(pulled.status.success(), "{}", text(&pulled.stderr));
    let list = text(&temper(home.path(), "http://127.0.0.1:9", &["models", "list"]).stdout);
    assert!(list.contains(&url), "{list}");
}

#[test]
fn an_ollama_model_that_is_not_there_says_where_it_looked() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("ollama/manifests/registry.ollama.ai/library/qwen2.5")).unwrap();
    std::fs::write(home.path().join("ollama/manifests/registry.ollama.ai/library/qwen2.5/0.5b"), "{}")
        .unwrap();
    let output = temper(home.path(), "http://127.0.0.1:9", &["ask", "--model", "ollama:llama3.2", "hi"]);
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("llama3.2:latest is not in Ollama's store at"), "{err}");
    assert!(err.contains("it has: qwen2.5:0.5b"), "{err}");
}
