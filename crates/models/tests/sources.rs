//! Models named by their source, against a fake hub, a fake Hugging Face cache, a fake Ollama
//! store and URLs, all on this machine: nothing here reaches the internet.

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use temper_engine::gguf::{GgufWriter, MetaValue};
use temper_engine::LoadOptions;
use temper_models::{
    Located, ModelStore, Profiles, PullProgress, Resolver, Secret, Sources, Stage, StoreError,
};
use temper_testserver::{Reply, Server};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A small valid GGUF file (a header and one metadata key), different for each `tag`.
fn gguf(tag: &str) -> Vec<u8> {
    GgufWriter::new().meta("general.name", MetaValue::String(tag.into())).to_bytes()
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A temporary home with a store, a Hugging Face cache and an Ollama store.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The store, with the hub at `server` (when given) and the token `hf_test`.
    fn store(&self, server: Option<&Server>) -> ModelStore {
        ModelStore::new(self.path("temper")).with_sources(Sources {
            hf_endpoint: server.map_or("http://127.0.0.1:9".to_owned(), |s| s.url("")),
            hf_token: Some(Secret::new("hf_test")),
            hf_cache: Some(self.path("hf")),
            ollama_models: Some(self.path("ollama")),
            retry_delay: Duration::from_millis(10),
        })
    }
}

/// The hub's answer to `GET /api/models/o/r/revision/main?blobs=true`: every file with its LFS
/// SHA-256 and size (as `lfs` says them, which need not be the bytes served), and a README.
fn listing(files: &[(&str, &str, usize)]) -> String {
    let siblings: Vec<serde_json::Value> = files
        .iter()
        .map(|(name, sha, size)| {
            serde_json::json!({
                "rfilename": name, "size": size, "blobId": "b10b",
                "lfs": { "sha256": sha, "size": size, "pointerSize": 135 }
            })
        })
        .chain([serde_json::json!({ "rfilename": "README.md", "size": 12, "blobId": "aaaa" })])
        .collect();
    serde_json::json!({ "id": "o/r", "sha": COMMIT, "private": false, "siblings": siblings }).to_string()
}

/// The hub's resolve endpoint: a redirect to the CDN, with the hash in `x-linked-etag`.
fn resolve_redirect(bytes: &[u8]) -> Reply {
    Reply::redirect("/cdn/blob")
        .header("x-linked-etag", &format!("\"{}\"", sha256(bytes)))
        .header("x-linked-size", &bytes.len().to_string())
        .header("x-repo-commit", COMMIT)
}

/// The CDN: the file, honouring `Range`.
fn cdn(bytes: &[u8]) -> Reply {
    Reply::bytes("application/octet-stream", bytes.to_vec())
        .ranged()
        .header("etag", &format!("\"{}\"", sha256(bytes)))
}

/// A fake hub serving `files` (name, bytes), whose download is `name`'s.
fn hub(files: &[(&str, &[u8])], served: &[u8]) -> Server {
    let listed: Vec<(&str, String, usize)> = files.iter().map(|(n, b)| (*n, sha256(b), b.len())).collect();
    let listed: Vec<(&str, &str, usize)> = listed.iter().map(|(n, s, l)| (*n, s.as_str(), *l)).collect();
    Server::start(vec![Reply::json(200, listing(&listed)), resolve_redirect(served), cdn(served)])
}

/// Records the stages of a pull.
#[derive(Default)]
struct Recorder {
    stages: RefCell<Vec<String>>,
}

impl PullProgress for Recorder {
    fn stage(&self, stage: Stage<'_>) {
        let label = match stage {
            Stage::Chose { file, why, .. } => format!("chose {file} ({why})"),
            Stage::InPlace { place, .. } => format!("in place in {place}"),
            Stage::Fetching { resumed_from, .. } => format!("fetch from {resumed_from}"),
            Stage::Retrying { attempt, .. } => format!("retry {attempt}"),
            Stage::FirstUse { model } => format!("first use {model}"),
            Stage::Installed { model, .. } => format!("installed {model}"),
            Stage::Failed => "failed".to_owned(),
            other => format!("{other:?}"),
        };
        self.stages.borrow_mut().push(label);
    }

    fn advance(&self, _: u64) {}
}

fn paths(server: &Server) -> Vec<String> {
    server.requests().iter().map(|r| r.path.clone()).collect()
}

#[test]
fn an_hf_quant_is_downloaded_checked_recorded_and_found_again_offline() {
    let home = Home::new();
    let (q8, q4) = (gguf("q8"), gguf("q4"));
    let server = hub(&[("m-Q8_0.gguf", &q8), ("m-Q4_K_M.gguf", &q4)], &q8);
    let store = home.store(Some(&server));
    let progress = Recorder::default();

    let path = store.resolve("hf:o/r:q8_0", &progress).unwrap();
    assert_eq!(path, home.path("temper/models/hf--o--r--m-Q8_0/m-Q8_0.gguf"));
    assert_eq!(fs::read(&path).unwrap(), q8);
    assert_eq!(
        paths(&server),
        [
            "/api/models/o/r/revision/main?blobs=true",
            &format!("/o/r/resolve/{COMMIT}/m-Q8_0.gguf"),
            "/cdn/blob"
        ]
    );
    let api = &server.requests()[0];
    assert_eq!(api.header("authorization"), Some("Bearer hf_test"));
    assert_eq!(
        *progress.stages.borrow(),
        [
            "first use hf:o/r:q8_0",
            "chose m-Q8_0.gguf (quantization q8_0)",
            "fetch from 0",
            "Verifying",
            "installed hf:o/r:q8_0"
        ]
    );

    // Recorded for `info` and `list`, and found again with no request.
    let Some(Located::Stored(downloaded)) = store.locate_source("hf:o/r:Q8_0").unwrap() else { panic!() };
    assert_eq!(downloaded.origin.repo.as_deref(), Some("o/r"));
    assert_eq!(downloaded.origin.commit.as_deref(), Some(COMMIT));
    assert_eq!(downloaded.origin.sha256, sha256(&q8));
    assert!(downloaded.origin.url.ends_with(&format!("/o/r/resolve/{COMMIT}/m-Q8_0.gguf")));
    let shown = Located::Stored(downloaded).to_string();
    assert!(shown.contains("repository: o/r") && shown.contains(&sha256(&q8)), "{shown}");
    assert!(!fs::read_to_string(path.with_file_name("source.json")).unwrap().contains("hf_test"));
    assert_eq!(store.downloaded().len(), 1);
    assert_eq!(store.resolve("hf:o/r:Q8_0", &progress).unwrap(), path);
    assert_eq!(server.requests().len(), 3);

    // Removed from the store, and only from there.
    store.remove("hf:o/r:q8_0").unwrap();
    assert!(!path.exists());
    assert!(store.downloaded().is_empty());
    let err = store.remove("hf:o/r:q8_0").unwrap_err();
    assert!(matches!(err, StoreError::NotInstalled { .. }), "{err}");
}

#[test]
fn without_a_quant_q4_k_m_is_picked_and_said_so() {
    let home = Home::new();
    let (q8, q4) = (gguf("q8"), gguf("q4"));
    let server = hub(&[("m-Q8_0.gguf", &q8), ("m-Q4_K_M.gguf", &q4)], &q4);
    let progress = Recorder::default();
    let path = home.store(Some(&server)).pull("hf:o/r", &progress).unwrap();
    assert_eq!(path.file_name().unwrap(), "m-Q4_K_M.gguf");
    assert!(progress
        .stages
        .borrow()
        .contains(&"chose m-Q4_K_M.gguf (Q4_K_M, the default quantization)".to_owned()));
}

#[test]
fn a_dropped_connection_is_continued_with_a_range() {
    let home = Home::new();
    let file = gguf("resumed");
    let server = Server::start(vec![
        Reply::json(200, listing(&[("m-Q4_K_M.gguf", &sha256(&file), file.len())])),
        resolve_redirect(&file),
        cdn(&file).cut_at(40),
        resolve_redirect(&file),
        cdn(&file),
    ]);
    let progress = Recorder::default();
    let path = home.store(Some(&server)).pull("hf:o/r:Q4_K_M", &progress).unwrap();
    assert_eq!(sha256(&fs::read(&path).unwrap()), sha256(&file));
    let requests = server.requests();
    assert_eq!(requests[2].header("range"), None);
    assert_eq!(requests[3].header("range"), Some("bytes=40-"));
    assert_eq!(requests[4].header("range"), Some("bytes=40-"));
    let stages = progress.stages.borrow();
    assert!(
        stages.contains(&"retry 2".to_owned()) && stages.contains(&"fetch from 40".to_owned()),
        "{stages:?}"
    );
}

#[test]
fn a_download_that_keeps_breaking_is_kept_and_the_next_pull_continues_it() {
    let home = Home::new();
    let file = gguf("kept");
    let listed = listing(&[("m-Q4_K_M.gguf", &sha256(&file), file.len())]);
    let failing = Server::start(vec![
        Reply::json(200, listed.clone()),
        resolve_redirect(&file),
        cdn(&file).cut_at(40),
        Reply::json(503, "{}"),
    ]);
    let err = home.store(Some(&failing)).pull("hf:o/r", &Recorder::default()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::DownloadBroken { kept: 40, .. }), "{message}");
    assert!(message.contains("next pull continues"), "{message}");
    assert!(home.store(None).downloaded().is_empty());

    let server = hub(&[("m-Q4_K_M.gguf", &file)], &file);
    let path = home.store(Some(&server)).pull("hf:o/r", &Recorder::default()).unwrap();
    assert_eq!(fs::read(&path).unwrap(), file);
    assert_eq!(server.requests()[1].header("range"), Some("bytes=40-"));
}

#[test]
fn a_missing_quant_lists_the_files_there() {
    let home = Home::new();
    let q8 = gguf("q8");
    let server = hub(&[("m-Q8_0.gguf", &q8), ("m-Q6_K.gguf", &q8)], &q8);
    let err = home.store(Some(&server)).resolve("hf:o/r:Q2_K", &Recorder::default()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::NoSuchRepoFile { .. }), "{message}");
    assert!(message.contains("`Q2_K`") && message.contains("m-Q8_0.gguf, m-Q6_K.gguf"), "{message}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_missing_repo_and_a_gated_one_say_what_to_do() {
    let home = Home::new();
    let missing = Server::start(vec![Reply::json(404, r#"{"error":"Repository not found"}"#)]);
    let err = home.store(Some(&missing)).resolve("hf:o/nope", &Recorder::default()).unwrap_err();
    assert!(err.to_string().contains("the repository o/nope is not on http://127.0.0.1"), "{err}");

    // Without a token the hub answers 401 both for a private (or missing) and a gated repository.
    let hidden = Server::start(vec![Reply::json(401, r#"{"error":"Invalid username or password."}"#)
        .header("x-error-code", "RepoNotFound")]);
    let no_token = Sources { hf_token: None, ..home.store(Some(&hidden)).sources().clone() };
    let err = home
        .store(None)
        .with_sources(no_token.clone())
        .resolve("hf:o/private", &Recorder::default())
        .unwrap_err();
    assert!(err.to_string().contains("if it is private, set HF_TOKEN"), "{err}");

    let gated =
        Server::start(vec![Reply::json(401, r#"{"error":"Access to model o/gated is restricted."}"#)
            .header("x-error-code", "GatedRepo")]);
    let sources = Sources { hf_endpoint: gated.url(""), ..no_token };
    let err = home.store(None).with_sources(sources).resolve("hf:o/gated", &Recorder::default()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::RepoDenied { has_token: false, .. }), "{message}");
    assert!(message.contains("set HF_TOKEN") && message.contains(&gated.url("/o/gated")), "{message}");
    assert_eq!(gated.requests()[0].header("authorization"), None);

    // The hub lists a gated repository to anyone; its files are what it refuses.
    let file = gguf("gated");
    let listed = listing(&[("m-Q4_K_M.gguf", &sha256(&file), file.len())]);
    let files_gated = Server::start(vec![
        Reply::json(200, listed),
        Reply::json(401, r#"{"error":"Access restricted"}"#).header("x-error-code", "GatedRepo"),
    ]);
    let sources = Sources { hf_endpoint: files_gated.url(""), ..home.store(None).sources().clone() };
    let err = home.store(None).with_sources(sources).pull("hf:o/r", &Recorder::default()).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("401") && message.contains("HF_TOKEN has no access"), "{message}");
    assert!(message.contains(&files_gated.url("/o/r")), "{message}");
    assert_eq!(files_gated.requests().len(), 2);
}

#[test]
fn a_hash_mismatch_deletes_the_download_and_installs_nothing() {
    let home = Home::new();
    let (listed, served) = (gguf("listed"), gguf("served"));
    let server = Server::start(vec![
        Reply::json(200, listing(&[("m-Q4_K_M.gguf", &sha256(&listed), served.len())])),
        resolve_redirect(&served),
        cdn(&served),
    ]);
    let store = home.store(Some(&server));
    let err = store.pull("hf:o/r", &Recorder::default()).unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&sha256(&listed)) && message.contains(&sha256(&served)), "{message}");
    assert!(message.contains("deleted"), "{message}");
    assert!(store.downloaded().is_empty());
    assert_eq!(fs::read_dir(home.path("temper/downloads")).unwrap().count(), 0);
}

/// Lays out the Hugging Face cache as the hub's clients do: the snapshot's file is a link into
/// `blobs/`, and `refs/main` names the snapshot's commit.
fn cache_file(cache: &Path, name: &str, target: &Path) -> PathBuf {
    let repo = cache.join("models--o--r");
    let blob = repo.join("blobs").join("5e1f");
    let snapshot = repo.join("snapshots").join(COMMIT);
    fs::create_dir_all(blob.parent().unwrap()).unwrap();
    fs::create_dir_all(&snapshot).unwrap();
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::write(repo.join("refs/main"), COMMIT).unwrap();
    std::os::unix::fs::symlink(target, &blob).unwrap();
    std::os::unix::fs::symlink("../../blobs/5e1f", snapshot.join(name)).unwrap();
    snapshot.join(name)
}

#[test]
fn the_hf_cache_is_used_in_place_without_the_network() {
    let home = Home::new();
    let original = home.path("original.gguf");
    fs::write(&original, gguf("cached")).unwrap();
    let in_cache = cache_file(&home.path("hf"), "m-Q4_K_M.gguf", &original);
    let server = Server::start(vec![Reply::json(500, "{}")]);
    let store = home.store(Some(&server));
    let progress = Recorder::default();

    assert_eq!(store.resolve("hf:o/r", &progress).unwrap(), in_cache);
    assert_eq!(store.resolve("hf:o/r:q4_k_m", &progress).unwrap(), in_cache);
    assert!(server.requests().is_empty());
    assert_eq!(*progress.stages.borrow(), ["in place in the Hugging Face cache"; 2]);
    let err = store.remove("hf:o/r").unwrap_err();
    assert!(matches!(err, StoreError::OnlyReferenced { .. }), "{err}");
    assert!(in_cache.is_file());
}

#[test]
fn an_hf_name_loads_as_a_chat_model() {
    let Some(smollm2) = temper_testkit::smollm2() else { return };
    let home = Home::new();
    cache_file(&home.path("hf"), "SmolLM2-135M-Instruct.Q4_1.gguf", &smollm2);
    let resolver = Resolver::new(home.store(None), Profiles::default(), Arc::new(|_| ()));
    let options = LoadOptions { threads: Some(1), context_window: Some(256), sequences: Some(1) };
    let model = resolver.local("hf:o/r", options, &Recorder::default(), "this test").unwrap();
    assert_eq!(model.summary().context_window, 256);
}

/// An Ollama store with `tiny:latest`, `tiny:v2` (with stop strings and a template of no known
/// shape), `broken` (a model layer that is not GGUF), and `chatml` and `own` (a ChatML template
/// layer, for a GGUF without a template and one with its own).
fn ollama_store(root: &Path) {
    let blob = |bytes: &[u8]| {
        let digest = sha256(bytes);
        fs::create_dir_all(root.join("blobs")).unwrap();
        fs::write(root.join("blobs").join(format!("sha256-{digest}")), bytes).unwrap();
        format!("sha256:{digest}")
    };
    let manifest = |name: &str, tag: &str, layers: &[(&str, String)]| {
        let layers: Vec<serde_json::Value> = layers
            .iter()
            .map(|(kind, digest)| serde_json::json!({ "mediaType": kind, "digest": digest, "size": 1 }))
            .collect();
        let dir = root.join("manifests/registry.ollama.ai/library").join(name);
        fs::create_dir_all(&dir).unwrap();
        let json = serde_json::json!({ "schemaVersion": 2, "layers": layers });
        fs::write(dir.join(tag), json.to_string()).unwrap();
    };
    let model = "application/vnd.ollama.image.model";
    manifest("tiny", "latest", &[(model, blob(&gguf("latest")))]);
    manifest(
        "tiny",
        "v2",
        &[
            (model, blob(&gguf("v2"))),
            ("application/vnd.ollama.image.template", blob(b"{{ .Prompt }}")),
            ("application/vnd.ollama.image.params", blob(br#"{"stop":["<|im_end|>"],"temperature":0.2}"#)),
        ],
    );
    manifest("broken", "latest", &[(model, blob(b"<html>not a model</html>"))]);
    let chatml = blob(b"<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n");
    let template = "application/vnd.ollama.image.template";
    manifest("chatml", "latest", &[(model, blob(&gguf("no template"))), (template, chatml.clone())]);
    let own = GgufWriter::new().meta("tokenizer.chat_template", MetaValue::String("{{ messages }}".into()));
    manifest("own", "latest", &[(model, blob(&own.to_bytes())), (template, chatml)]);
}

#[test]
fn ollama_models_are_used_in_place_with_their_parameters() {
    let home = Home::new();
    ollama_store(&home.path("ollama"));
    let store = home.store(None);
    let progress = Recorder::default();

    let latest = store.resolve_model("ollama:tiny", &progress).unwrap();
    assert_eq!(fs::read(&latest.path).unwrap(), gguf("latest"));
    assert!(latest.path.starts_with(home.path("ollama/blobs")));
    assert!(latest.defaults.stop.is_empty());
    let v2 = store.resolve_model("ollama:library/tiny:v2", &progress).unwrap();
    assert_eq!(fs::read(&v2.path).unwrap(), gguf("v2"));
    assert_eq!(v2.defaults.stop, ["<|im_end|>"]);
    assert_eq!(v2.defaults.temperature, Some(0.2));

    // Ollama's template (a Go template) stands in, as Jinja, only for a GGUF that has none.
    assert_eq!(v2.chat_template, None, "an unknown shape is left alone");
    let chatml = store.resolve_model("ollama:chatml", &progress).unwrap();
    assert!(chatml.chat_template.unwrap().contains("<|im_start|>"));
    assert_eq!(store.resolve_model("ollama:own", &progress).unwrap().chat_template, None);

    let err = store.remove("ollama:tiny:v2").unwrap_err();
    assert!(err.to_string().contains("never removes"), "{err}");
    assert!(v2.path.is_file());
}

#[test]
fn ollama_errors_say_what_is_there_and_what_is_wrong() {
    let home = Home::new();
    ollama_store(&home.path("ollama"));
    let store = home.store(None);

    let err = store.resolve("ollama:nope", &Recorder::default()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::NotInOllama { .. }), "{message}");
    assert!(message.contains(&home.path("ollama").display().to_string()), "{message}");
    assert!(message.contains("broken:latest, chatml:latest, own:latest, tiny:latest, tiny:v2"), "{message}");

    let err = store.resolve("ollama:broken", &Recorder::default()).unwrap_err();
    assert!(matches!(err, StoreError::NotGguf { .. }), "{err}");
    assert!(err.to_string().contains("\"<htm\""), "{err}");

    let latest = store.resolve("ollama:tiny", &Recorder::default()).unwrap();
    fs::remove_file(&latest).unwrap();
    let err = store.resolve("ollama:tiny", &Recorder::default()).unwrap_err();
    assert!(matches!(err, StoreError::MissingOllamaBlob { .. }), "{err}");
}

#[test]
fn a_url_is_downloaded_checked_against_sha256_and_recorded() {
    let home = Home::new();
    let file = gguf("url");
    let server = Server::start(vec![cdn(&file)]);
    let store = home.store(None);
    let url = server.url("/files/tiny.gguf");

    let wrong = sha256(b"something else");
    let err = store.pull_source(&url, Some(&wrong), &Recorder::default()).unwrap_err();
    assert!(matches!(err, StoreError::DownloadMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&wrong) && err.to_string().contains(&sha256(&file)), "{err}");
    assert!(store.downloaded().is_empty());

    let path = store.pull_source(&url, Some(&sha256(&file).to_uppercase()), &Recorder::default()).unwrap();
    assert_eq!(path.file_name().unwrap(), "tiny.gguf");
    assert_eq!(fs::read(&path).unwrap(), file);
    let Some(Located::Stored(downloaded)) = store.locate_source(&url).unwrap() else { panic!() };
    assert_eq!(downloaded.origin.url, url);
    assert_eq!(store.resolve(&url, &Recorder::default()).unwrap(), path);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_url_that_is_not_a_gguf_is_refused() {
    let home = Home::new();
    let server = Server::start(vec![Reply::bytes("text/html", b"<html>login</html>".to_vec())]);
    let err = home.store(None).resolve(&server.url("/model.gguf"), &Recorder::default()).unwrap_err();
    assert!(matches!(err, StoreError::NotGguf { .. }), "{err}");
    assert!(home.store(None).downloaded().is_empty());

    let err = home.store(None).resolve("http://example.org/model.gguf", &Recorder::default()).unwrap_err();
    assert!(err.to_string().contains("use https://"), "{err}");
}

/// The server resolves models on tokio's blocking threads; the blocking HTTP client works there.
#[tokio::test]
async fn a_download_works_from_a_blocking_task_of_an_async_server() {
    let home = Home::new();
    let file = gguf("async");
    let server = Server::start(vec![cdn(&file)]);
    let (store, url) = (home.store(None), server.url("/m.gguf"));
    let path = tokio::task::spawn_blocking(move || {
        store.resolve(&url, &Recorder::default()).map_err(|e| e.to_string())
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(fs::read(path).unwrap(), file);
}

#[test]
fn a_source_name_is_refused_as_an_embedder_before_any_download() {
    let home = Home::new();
    let resolver = Resolver::new(home.store(None), Profiles::default(), Arc::new(|_| ()));
    let options = temper_embed::EmbedOptions::default();
    let err = resolver.local_embedder("hf:o/r", false, options, &Recorder::default()).err().unwrap();
    assert!(err.to_string().contains("embeddings need an embedding model"), "{err}");
}

#[test]
fn a_disk_error_names_the_path_and_keeps_the_installed_copy() {
    let home = Home::new();
    let file = gguf("kept");
    let server = Server::start(vec![cdn(&file)]);
    let (store, url) = (home.store(None), server.url("/m.gguf"));
    let installed = store.pull(&url, &Recorder::default()).unwrap();

    // Where downloads go, a file: nothing can be written there.
    let downloads = home.path("temper/downloads");
    fs::remove_dir_all(&downloads).unwrap();
    fs::write(&downloads, "in the way").unwrap();
    let err = store.pull(&url, &Recorder::default()).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(err.to_string().contains("downloads") && err.to_string().contains("free disk space"), "{err}");
    assert_eq!(store.resolve(&url, &Recorder::default()).unwrap(), installed);
    assert_eq!(fs::read(&installed).unwrap(), file);
}
