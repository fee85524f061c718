//! The embedder against sentence-transformers' own output for all-MiniLM-L6-v2, and its errors
//! on broken model directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use temper_core::EmbeddingModel;
use temper_embed::{EmbedOptions, Embedder, Precision};

const MODEL: &str = "all-minilm-l6-v2";

/// The installed model's directory (`$TEMPER_HOME/models/…`, default `~/.cache/temper`).
/// Locally a missing model skips the test; under CI (`CI=true`) it fails it, because CI pulls
/// the models before running the tests.
fn model_dir() -> Option<PathBuf> {
    let home = std::env::var_os("TEMPER_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/temper")))
        .expect("neither TEMPER_HOME nor HOME is set");
    let dir = home.join("models").join(MODEL);
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    let message = format!("{MODEL} is not installed in {}; run `temper models pull {MODEL}`", dir.display());
    assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{message}");
    eprintln!("skipping: {message}");
    None
}

#[derive(Deserialize)]
struct Reference {
    text: String,
    input_ids: Vec<u32>,
    embedding: Vec<f32>,
}

/// The reference lines, from `shared/fixtures` next to the repository or any directory above it.
fn references() -> Vec<Reference> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let relative = "shared/fixtures/all-minilm-l6-v2/sentence-transformers-reference.jsonl";
    let path = manifest.ancestors().map(|dir| dir.join(relative)).find(|p| p.is_file());
    let text = fs::read_to_string(path.expect("the sentence-transformers fixture is missing")).unwrap();
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

fn assert_matches(references: &[Reference], vectors: &[Vec<f32>]) {
    for (reference, vector) in references.iter().zip(vectors) {
        let similarity = cosine(&reference.embedding, vector);
        assert!(similarity >= 0.9999, "cosine {similarity} for {:?}", reference.text);
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}: the model ships a Normalize module");
    }
}

#[test]
fn matches_sentence_transformers_one_by_one_and_in_padded_batches() {
    let Some(dir) = model_dir() else { return };
    let references = references();
    assert!(references.iter().any(|r| r.input_ids.len() == 256), "the fixture has a truncated case");
    let embedder = Embedder::load(&dir, MODEL, EmbedOptions::default()).unwrap();
    assert_eq!((embedder.dimensions(), embedder.max_seq_length()), (384, 256));
    for reference in &references {
        assert_eq!(embedder.tokenize(&reference.text).unwrap(), reference.input_ids, "{:?}", reference.text);
        assert_matches(std::slice::from_ref(reference), &embedder.embed_batch(&[&reference.text]).unwrap());
    }
    // All at once: sorted by length, batches of 4 texts of different lengths, padded.
    let options = EmbedOptions { threads: Some(1), batch_size: 4, ..Default::default() };
    let batched = Embedder::load(&dir, MODEL, options).unwrap();
    let texts: Vec<&str> = references.iter().map(|r| r.text.as_str()).collect();
    assert_matches(&references, &batched.embed_batch(&texts).unwrap());
}

#[test]
fn int8_vectors_stay_close_to_the_reference() {
    let Some(dir) = model_dir() else { return };
    let references = references();
    let options = EmbedOptions { precision: Precision::Int8, ..Default::default() };
    let embedder = Embedder::load(&dir, MODEL, options).unwrap();
    let texts: Vec<&str> = references.iter().map(|r| r.text.as_str()).collect();
    for (reference, vector) in references.iter().zip(embedder.embed_batch(&texts).unwrap()) {
        let similarity = cosine(&reference.embedding, &vector);
        // Close, not equal: the retrieval bench measures what the difference costs.
        assert!((0.99..0.9999).contains(&similarity), "cosine {similarity} for {:?}", reference.text);
    }
}

#[tokio::test]
async fn embeds_through_the_core_trait() {
    let Some(dir) = model_dir() else { return };
    let references = references();
    let model: Arc<dyn EmbeddingModel> =
        Arc::new(Embedder::load(&dir, MODEL, EmbedOptions::default()).unwrap());
    let texts: Vec<String> = references.iter().map(|r| r.text.clone()).collect();
    assert_matches(&references, &model.embed(&texts).await.unwrap());
    assert_eq!((model.name(), model.dimensions()), (MODEL, 384));
    assert!(model.embed(&[]).await.unwrap().is_empty());
}

/// A copy of the model directory (the weights linked, not copied) to break one file of.
fn copy_model(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for name in [
        "config.json",
        "modules.json",
        "sentence_bert_config.json",
        "tokenizer.json",
        "1_Pooling/config.json",
    ] {
        fs::create_dir_all(copy.path().join(name).parent().unwrap()).unwrap();
        fs::copy(dir.join(name), copy.path().join(name)).unwrap();
    }
    std::os::unix::fs::symlink(dir.join("model.safetensors"), copy.path().join("model.safetensors")).unwrap();
    copy
}

#[test]
fn a_missing_or_corrupt_file_is_named_in_the_error() {
    let Some(dir) = model_dir() else { return };
    let files =
        ["config.json", "model.safetensors", "tokenizer.json", "modules.json", "1_Pooling/config.json"];
    for file in files {
        for corrupt in [false, true] {
            let copy = copy_model(&dir);
            let path = copy.path().join(file);
            fs::remove_file(&path).unwrap();
            if corrupt {
                fs::write(&path, b"{\"truncated").unwrap();
            }
            let err = Embedder::load(copy.path(), MODEL, EmbedOptions::default()).err().expect("load fails");
            let message = err.to_string();
            assert!(message.contains(&path.display().to_string()), "{file} (corrupt: {corrupt}): {message}");
        }
    }
    // Weights of the wrong shape for the config are refused too, naming the tensor.
    let copy = copy_model(&dir);
    let config = fs::read_to_string(copy.path().join("config.json"))
        .unwrap()
        .replace("\"hidden_size\": 384", "\"hidden_size\": 768");
    fs::write(copy.path().join("config.json"), config).unwrap();
    let err = Embedder::load(copy.path(), MODEL, EmbedOptions::default()).err().expect("load fails");
    assert!(
        err.to_string().contains("model.safetensors: tensor `embeddings.position_embeddings.weight`"),
        "{err}"
    );
}
