//! Grounded answers: the relevance threshold on real reference vectors, and citations from the
//! real default chat model over this repository's docs (skipped locally when the model is
//! missing, failed under CI=true).

mod common;

use std::path::PathBuf;

use futures::StreamExt;
use temper_core::{ChatModel, GenerationParams, StreamEvent};
use temper_engine::{LoadOptions, LocalModel};
use temper_rag::answer::citations;
use temper_rag::{ingest, AskOptions, IngestOptions, Retriever, SearchOptions, SqliteStore, MIN_SIMILARITY};

use common::Recorded;
use temper_testkit::HashedWords;

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f64>().sqrt() * b.iter().map(|x| x * x).sum::<f64>().sqrt())
}

#[test]
fn the_relevance_threshold_separates_related_from_unrelated_minilm_pairs() {
    let path = temper_testkit::minilm_reference();
    let rows: Vec<(String, Vec<f64>)> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let e = v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            (v["text"].as_str().unwrap().to_owned(), e)
        })
        .collect();
    let find = |prefix: &str| rows.iter().position(|(t, _)| t.starts_with(prefix)).unwrap();
    let related = [("The cat sits", "A feline"), ("What is the capital of France", "Paris is the capital")];
    let related: Vec<(usize, usize)> = related.iter().map(|(a, b)| (find(a), find(b))).collect();
    for i in 0..rows.len() {
        for j in i + 1..rows.len() {
            let sim = cosine(&rows[i].1, &rows[j].1) as f32;
            if related.contains(&(i, j)) || related.contains(&(j, i)) {
                assert!(sim > MIN_SIMILARITY + 0.2, "{} / {}: {sim}", rows[i].0, rows[j].0);
            } else {
                assert!(sim < MIN_SIMILARITY, "unrelated {} / {}: {sim}", rows[i].0, rows[j].0);
            }
        }
    }
}

/// The repository's docs folder: a small corpus that ships with the code.
fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

#[test]
fn every_citation_of_the_default_model_names_a_retrieved_chunk() {
    let Some(model_path) = temper_testkit::smollm2() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::create(&dir.path().join("rag.db")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let report = rt
        .block_on(ingest(
            &mut store,
            &HashedWords,
            &temper_rag::WordPieceEstimate,
            &[docs()],
            &IngestOptions::default(),
            &mut Recorded::default(),
        ))
        .unwrap();
    assert!(report.chunks > 10, "{report:?}");
    let model = LocalModel::load(
        &model_path,
        "smollm2-135m-instruct",
        LoadOptions { threads: Some(2), context_window: Some(2048), sequences: None },
    )
    .unwrap();
    let retriever =
        Retriever { store: &store, embedder: &HashedWords, collection: "default", reranker: None };
    let count = |t: &str| model.tokenize(t, false).map_or(t.len(), |ids| ids.len());
    // The hashed-word test embedder gives lower cosines than a trained one.
    let options = AskOptions {
        min_similarity: 0.1,
        context_window: 2048,
        answer_tokens: 160,
        params: GenerationParams { temperature: Some(0.0), ..Default::default() },
    };
    for question in
        ["What does the --truncate option do?", "Which environment variable names the store of models?"]
    {
        let hits =
            rt.block_on(retriever.search(question, &SearchOptions { k: 5, ..Default::default() })).unwrap();
        let grounded =
            temper_rag::prepare(question, hits, &options, &count).unwrap().expect("the docs cover this");
        let sources = grounded.sources.len();
        assert!(sources >= 1);
        let mut stream = temper_rag::grounded_stream(model.chat_stream(grounded.request), &grounded.sources);
        let text = rt.block_on(async {
            let mut streamed = String::new();
            while let Some(event) = stream.next().await {
                match event.unwrap() {
                    StreamEvent::Delta(t) => streamed.push_str(&t),
                    StreamEvent::Done(response) => {
                        assert_eq!(response.text, streamed);
                        return streamed;
                    }
                    StreamEvent::Restart { .. } => streamed.clear(),
                    StreamEvent::ToolCall(delta) => panic!("a RAG answer calls no tools: {delta:?}"),
                }
            }
            panic!("no Done event");
        });
        eprintln!("Q: {question}\nA: {text}\n({sources} sources)");
        assert!(!text.trim().is_empty());
        for n in citations(&text) {
            assert!((1..=sources).contains(&n), "[{n}] cites none of the {sources} sources: {text}");
        }
    }
    // Nothing in the docs is about this: the answer is refused before the model is asked.
    let hits =
        rt.block_on(retriever.search("zebra giraffe savanna migration", &SearchOptions::default())).unwrap();
    assert!(temper_rag::prepare("Where do zebras migrate?", hits, &options, &count).unwrap().is_none());
}
