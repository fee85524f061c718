//! Retrieval modes on a tiny corpus with the deterministic test embedder, MMR, filters, and
//! the HNSW path of the store against its exact scan.

mod common;

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};

use temper_rag::{
    ingest, ChunkOptions, Filter, IngestOptions, Mmr, Mode, Retriever, SearchOptions, SqliteStore,
    VectorStore,
};

use common::Recorded;
use temper_testkit::HashedWords;

const CORPUS: &[(&str, &str)] = &[
    ("fish.md", "# Salmon\nSalmon swim upstream in autumn to spawn in cold rivers.\n"),
    ("bears.md", "# Bears\nBrown bears wait at waterfalls and catch leaping salmon.\n"),
    ("rust.txt", "The Rust compiler checks borrows so memory stays safe without a garbage collector.\n"),
    ("kettle.txt", "Error code E4021 means the kettle element has burned out.\n"),
    ("dup1.txt", "Cold rivers carry salmon eggs downstream every spring season.\n"),
    ("dup2.txt", "Cold rivers carry salmon eggs downstream every spring season!\n"),
];

fn tiny_store(dir: &Path) -> SqliteStore {
    for (name, text) in CORPUS {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let mut store = SqliteStore::create(&dir.join("rag.db")).unwrap();
    let options = IngestOptions { chunk: ChunkOptions { max_tokens: 64, overlap: 8 }, ..Default::default() };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let roots = [PathBuf::from(dir)];
    rt.block_on(ingest(&mut store, &HashedWords, &common::words, &roots, &options, &mut Recorded::default()))
        .unwrap();
    store
}

fn names(hits: &[temper_rag::Hit]) -> Vec<String> {
    hits.iter()
        .map(|h| Path::new(&h.chunk.path).file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn search(store: &SqliteStore, query: &str, options: SearchOptions, mmr: Option<&Mmr>) -> Vec<String> {
    let retriever = Retriever {
        store,
        embedder: &HashedWords,
        collection: "default",
        reranker: mmr.map(|m| m as &dyn temper_rag::Reranker),
    };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    names(&rt.block_on(retriever.search(query, &options)).unwrap())
}

#[test]
fn each_mode_finds_what_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path());
    let opts = |mode, k| SearchOptions { mode, k, ..Default::default() };
    assert_eq!(search(&store, "E4021", opts(Mode::Bm25, 1), None), vec!["kettle.txt"]);
    assert_eq!(search(&store, "compiler borrows memory", opts(Mode::Dense, 1), None), vec!["rust.txt"]);
    // Porter stemming: "spawning" matches "spawn".
    assert_eq!(search(&store, "spawning", opts(Mode::Bm25, 1), None), vec!["fish.md"]);
    let hybrid = search(&store, "which animals catch salmon", opts(Mode::Hybrid, 3), None);
    assert_eq!(hybrid[0], "bears.md", "{hybrid:?}");
    assert!(search(&store, "zzz qqq", opts(Mode::Bm25, 5), None).is_empty());

    let filtered = SearchOptions { filter: Filter::parse(&["kind=text"]).unwrap(), ..opts(Mode::Hybrid, 10) };
    let found = search(&store, "salmon", filtered, None);
    assert!(!found.is_empty() && found.iter().all(|n| n.ends_with(".txt")), "{found:?}");
}

#[test]
fn mmr_keeps_near_duplicates_from_filling_the_results() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path());
    let opts = SearchOptions { mode: Mode::Dense, k: 2, ..Default::default() };
    let plain = search(&store, "cold rivers salmon eggs", opts.clone(), None);
    let mut sorted = plain.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["dup1.txt", "dup2.txt"], "without MMR the two copies win");
    let diverse = search(&store, "cold rivers salmon eggs", opts, Some(&Mmr { lambda: 0.5 }));
    assert_eq!(diverse.len(), 2);
    assert!(diverse.iter().filter(|n| n.starts_with("dup")).count() == 1, "{diverse:?}");
}

#[test]
fn hits_carry_source_position_heading_and_similarity() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path());
    let retriever =
        Retriever { store: &store, embedder: &HashedWords, collection: "default", reranker: None };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let hits = rt.block_on(retriever.search("salmon spawn upstream", &SearchOptions::default())).unwrap();
    let top = &hits[0];
    assert!(top.chunk.path.ends_with("fish.md"));
    assert_eq!(top.chunk.heading, vec!["Salmon"]);
    assert_eq!(top.chunk.position, temper_rag::Position::Line(1));
    assert!(top.similarity > 0.3 && top.similarity <= 1.0001, "{}", top.similarity);
    let json = serde_json::to_value(top).unwrap();
    assert!(json["path"].as_str().unwrap().ends_with("fish.md"), "{json}");
    assert!(rt.block_on(retriever.search("  ", &SearchOptions::default())).is_err());
    let missing = Retriever { collection: "nope", ..retriever };
    let err = rt.block_on(missing.search("salmon", &SearchOptions::default())).unwrap_err();
    assert!(err.to_string().contains("no collection named `nope`"), "{err}");
}

#[test]
fn the_hnsw_path_agrees_with_the_exact_scan() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rag.db");
    let mut store = SqliteStore::create(&db).unwrap();
    store.ensure_collection("default", "hashed-words", HashedWords::DIMENSIONS).unwrap();
    let metadata = serde_json::json!({});
    // Random directions: no ties, so the exact top 10 is well defined.
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut random =
        || -> Vec<f32> { (0..HashedWords::DIMENSIONS).map(|_| rng.gen_range(-1.0f32..1.0)).collect() };
    for i in 0..600 {
        let chunk = temper_rag::Chunk {
            text: format!("record {i}"),
            position: temper_rag::Position::Line(1),
            heading: vec![],
        };
        let doc = temper_rag::store::NewDocument { path: &format!("/{i}"), hash: "h", metadata: &metadata };
        store.put_document("default", &doc, &[(chunk, random())]).unwrap();
    }
    let queries: Vec<Vec<f32>> = (0..30).map(|_| random()).collect();
    let exact: Vec<Vec<i64>> = queries
        .iter()
        .map(|q| {
            store.dense_search("default", q, 10, &Filter::default()).unwrap().iter().map(|h| h.0).collect()
        })
        .collect();
    store.set_hnsw(temper_rag::hnsw::HnswParams::default(), 100);
    let mut agree = 0;
    for (q, truth) in queries.iter().zip(&exact) {
        let approx = store.dense_search("default", q, 10, &Filter::default()).unwrap();
        agree += approx.iter().filter(|h| truth.contains(&h.0)).count();
    }
    assert!(agree as f64 / 300.0 >= 0.95, "recall@10 {}", agree as f64 / 300.0);
    // The graph was saved; a new process (here a new store) loads it instead of rebuilding.
    let saved: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM hnsw", [], |r| r.get(0))
        .unwrap();
    assert_eq!(saved, 1);
    let mut reopened = SqliteStore::open(&db).unwrap();
    reopened.set_hnsw(temper_rag::hnsw::HnswParams::default(), 100);
    let again = reopened.dense_search("default", &queries[0], 10, &Filter::default()).unwrap();
    assert_eq!(again, store.dense_search("default", &queries[0], 10, &Filter::default()).unwrap());
}
