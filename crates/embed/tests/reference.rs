//! The embedder against sentence-transformers' own output for all-MiniLM-L6-v2, and its errors
//! on broken model directories.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use temper_core::EmbeddingModel;
use temper_embed::{EmbedOptions, Embedder, Precision};

const MODEL: &str = "all-minilm-l6-v2";

#[derive(Deserialize)]
struct Reference {
    text: String,
    input_ids: Vec<u32>,
    embedding: Vec<f32>,
}

/// The reference lines (see `tests/fixtures/README.md`).
fn references() -> Vec<Reference> {
    let text = fs::read_to_string(temper_testkit::minilm_reference()).unwrap();
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
    let Some(dir) = temper_testkit::minilm() else { return };
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
    let Some(dir) = temper_testkit::minilm() else { return };
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
    let Some(dir) = temper_testkit::minilm() else { return };
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
    let Some(dir) = temper_testkit::minilm() else { return };
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
