//! RAG variants over a scripted model and a store built in the test: every grounding mode is a
//! variant, the model is asked once for all of them (the cache), and the RAG assertions see the
//! passages and citations.

mod common;

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use temper_core::ChatModel;
use temper_eval::{Cache, Evaluator, RagPipeline, Settings, Spec};
use temper_rag::{IngestOptions, NoProgress, SqliteStore, WordPieceEstimate};
use temper_testkit::HashedWords;

use common::{block_on, calls, last, Scripted};

const SPEC: &str = r#"
prompts = [{ name = "question", template = "{{ question }}" }]
models = ["scripted"]
[dataset]
path = "rows.jsonl"
[rag]
documents = "docs"
grounding = ["off", "strict", "annotate"]
min_similarity = 0.0
[[assertions]]
type = "declines"
[[assertions]]
type = "cites"
value = "{{ vars.source }}"
"#;

/// Answers the population question with a number the documents do not hold.
fn inventor() -> Arc<Scripted> {
    Arc::new(Scripted::new(|request| {
        if last(request).contains("population") {
            "The population of Harrowmere is 1,200 [1].".into()
        } else {
            "The Vellacott Bridge opened in 1897 [1].".into()
        }
    }))
}

#[test]
fn each_grounding_mode_is_a_variant_asked_once_and_checked_against_its_passages() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    let bridge = "# Vellacott Bridge\n\nThe Vellacott Bridge at Harrowmere opened to traffic in 1897.\n";
    std::fs::write(dir.path().join("docs/bridge.md"), bridge).unwrap();
    let rows = [
        json!({"question": "When did the Vellacott Bridge open?", "source": "bridge.md"}),
        json!({"question": "What is the population of Harrowmere?", "source": "bridge.md"}),
    ];
    let lines: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    std::fs::write(dir.path().join("rows.jsonl"), lines.join("\n")).unwrap();
    let spec = Spec::parse(&dir.path().join("spec.toml"), SPEC).unwrap();
    let rag = spec.rag.clone().unwrap();
    assert_eq!(rag.documents, vec![dir.path().join("docs")], "relative to the spec");

    let mut store = SqliteStore::create(&dir.path().join("rag.db")).unwrap();
    let options = IngestOptions::default();
    let mut progress = NoProgress;
    let ingest = temper_rag::ingest(
        &mut store,
        &HashedWords,
        &WordPieceEstimate,
        &rag.documents,
        &options,
        &mut progress,
    );
    block_on(ingest).unwrap();
    let pipeline = RagPipeline::new(Box::new(store), Arc::new(HashedWords), options.collection, &rag);

    let model = inventor();
    let scripted: Arc<dyn ChatModel> = model.clone();
    let resolve = move |_: &str| Ok(scripted.clone());
    let settings =
        Settings { assertions: spec.assertions.clone(), judge: None, concurrency: 2, constrain: true };
    let cache = Arc::new(Cache::open(&dir.path().join("cache.sqlite")).unwrap());
    let evaluator =
        Evaluator::new(settings, resolve, None, Some(cache)).unwrap().with_rag(Arc::new(pipeline));
    let variants = spec.variants("scripted");
    assert_eq!(variants.len(), 3);
    let reports = block_on(evaluator.evaluate_all(&variants, &spec.rows)).unwrap();

    let outputs = |i: usize| -> Vec<String> { reports[i].rows.iter().map(|r| r.output.clone()).collect() };
    assert_eq!(reports[0].prompt, "question (rag, grounding off)");
    assert_eq!(
        outputs(0),
        ["The Vellacott Bridge opened in 1897 [1].", "The population of Harrowmere is 1,200 [1]."]
    );
    let strict = outputs(1);
    assert_eq!(strict[0], "The Vellacott Bridge opened in 1897 [1].");
    assert!(
        strict[1].starts_with("The documents do not say: what is the population of Harrowmere?"),
        "{strict:?}"
    );
    assert_eq!(outputs(2)[1], "The population of Harrowmere is 1,200 [1]. [unsupported]");

    // Off: the invention is not declined; strict: it is, and the sources are still cited.
    let passed = |i: usize, row: usize, assertion: usize| reports[i].rows[row].assertions[assertion].pass;
    assert!(!passed(0, 1, 0) && passed(1, 1, 0));
    assert!(passed(0, 0, 1) && passed(1, 0, 1), "the answer cites bridge.md");
    let rag_row = reports[1].rows[1].rag.as_ref().unwrap();
    assert!(rag_row.declined && rag_row.sources[0].ends_with("bridge.md"));
    assert_eq!(rag_row.sentences[0].missing, vec!["1,200"]);

    // The model answered each question once; the other modes were answered from the cache.
    assert_eq!(calls(&model), 2, "{:?}", model.prompts());
    assert!(reports[1].rows.iter().all(|r| r.cached));
}

#[test]
fn a_rag_spec_says_what_is_wrong_with_its_table() {
    let parse = |rag: &str| {
        let text = format!("prompts = [{{ template = \"{{{{ q }}}}\" }}]\n[dataset]\npath = \"rows.jsonl\"\n[rag]\n{rag}\n[[assertions]]\ntype = \"declines\"\n");
        Spec::parse(Path::new("spec.toml"), &text).err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert!(parse("k = 3").contains("`rag` needs `documents` to ingest, or the `collection` of a store"));
    assert!(parse("documents = \"d\"\ncollection = \"c\"").contains("not both"));
    assert!(parse("documents = \"d\"\ngrounding = \"loose\"").contains("unknown variant `loose`"));
    assert!(parse("documents = \"d\"\nk = 0").contains("`rag.k` must be at least 1"));
}
