//! The store contract, run against SQLite (a later store runs the same `contract`), and the
//! errors a damaged or foreign store file gives.

use serde_json::json;
use temper_rag::store::NewDocument;
use temper_rag::{Chunk, Filter, Position, RagError, SqliteStore, VectorStore};
use temper_testkit::HashedWords;

fn chunk(text: &str, line: u32) -> Chunk {
    Chunk { text: text.into(), position: Position::Line(line), heading: vec!["Top".into(), "Sub".into()] }
}

fn with_vectors(chunks: Vec<Chunk>) -> Vec<(Chunk, Vec<f32>)> {
    chunks
        .into_iter()
        .map(|c| {
            let v = HashedWords::vector(&c.text);
            (c, v)
        })
        .collect()
}

fn put(store: &mut dyn VectorStore, path: &str, hash: &str, kind: &str, texts: &[&str]) {
    let metadata = json!({ "path": path, "kind": kind });
    let doc = NewDocument { path, hash, metadata: &metadata };
    let chunks = texts.iter().enumerate().map(|(i, t)| chunk(t, i as u32 + 1)).collect();
    store.put_document("c", &doc, &with_vectors(chunks)).unwrap();
}

/// What every `VectorStore` must do.
fn contract(store: &mut dyn VectorStore) {
    assert!(matches!(store.collection("c"), Err(RagError::NoCollection(_))));
    store.ensure_collection("c", "hashed-words", HashedWords::DIMENSIONS).unwrap();
    let err = store.ensure_collection("c", "other", 3).unwrap_err();
    assert!(matches!(err, RagError::EmbedderMismatch { .. }), "{err}");

    put(store, "/a.md", "h1", "markdown", &["salmon swim upstream", "bears catch salmon"]);
    put(store, "/b.txt", "h2", "text", &["rust compilers check borrows"]);
    let info = store.collection("c").unwrap();
    assert_eq!((info.documents, info.chunks), (2, 3));

    // Replacing a document replaces all its chunks.
    put(store, "/a.md", "h3", "markdown", &["eagles fly high"]);
    assert_eq!(store.collection("c").unwrap().chunks, 2);
    let hashes = store.document_hashes("c").unwrap();
    assert_eq!(hashes.get("/a.md").map(String::as_str), Some("h3"));
    assert!(
        store.text_search("c", "salmon", 10, &Filter::default()).unwrap().is_empty(),
        "old text is gone from the index"
    );

    let found = store.text_search("c", "borrows!", 10, &Filter::default()).unwrap();
    assert_eq!(found.len(), 1);
    let stored = store.chunks(&[found[0].0]).unwrap();
    assert_eq!(stored[0].path, "/b.txt");
    assert_eq!(stored[0].heading, vec!["Top", "Sub"]);
    assert_eq!(stored[0].position, Position::Line(1));
    assert!(
        store.text_search("c", "\"(*", 10, &Filter::default()).unwrap().is_empty(),
        "punctuation is not an error"
    );

    let q = HashedWords::vector("eagles high");
    let dense = store.dense_search("c", &q, 1, &Filter::default()).unwrap();
    assert_eq!(store.chunks(&[dense[0].0]).unwrap()[0].text, "eagles fly high");
    assert!(dense[0].1 > 0.7 && dense[0].1 <= 1.0001, "cosine {}", dense[0].1);
    let unit = &store.vectors(&[dense[0].0]).unwrap()[0];
    assert!((unit.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5, "vectors are stored unit length");

    let texts_only = Filter::parse(&["kind=text"]).unwrap();
    let filtered = store.dense_search("c", &q, 5, &texts_only).unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(store.chunks(&[filtered[0].0]).unwrap()[0].path, "/b.txt");
    assert!(store.text_search("c", "eagles", 5, &texts_only).unwrap().is_empty());

    // A wrong vector is refused and the document keeps what it had.
    let metadata = json!({});
    let doc = NewDocument { path: "/b.txt", hash: "h9", metadata: &metadata };
    assert!(store.put_document("c", &doc, &[(chunk("x", 1), vec![1.0; 3])]).is_err());
    assert!(store
        .put_document("c", &doc, &[(chunk("x", 1), vec![f32::NAN; HashedWords::DIMENSIONS])])
        .is_err());
    assert_eq!(store.document_hashes("c").unwrap()["/b.txt"], "h2");
    assert!(store.dense_search("c", &[1.0], 1, &Filter::default()).is_err());
    assert!(store.chunks(&[987654]).is_err());

    assert!(store.remove_document("c", "/b.txt").unwrap());
    assert!(!store.remove_document("c", "/b.txt").unwrap());
    assert_eq!(store.collection("c").unwrap().chunks, 1);
    store.remove_collection("c").unwrap();
    assert!(store.collections().unwrap().is_empty());
    assert!(matches!(store.remove_collection("c"), Err(RagError::NoCollection(_))));
}

#[test]
fn sqlite_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/rag.db");
    let mut store = SqliteStore::create(&path).unwrap();
    contract(&mut store);
    store.check().unwrap();
}

#[test]
fn filters_are_parsed_and_refused_clearly() {
    let f = Filter::parse(&["kind=markdown", "name=a=b"]).unwrap();
    assert_eq!(f.equals[1], ("name".to_string(), "a=b".to_string()));
    for bad in ["kind", "=x", "k\"=v"] {
        let err = Filter::parse(&[bad]).unwrap_err().to_string();
        assert!(err.contains("key=value"), "{err}");
    }
}

#[test]
fn a_damaged_or_foreign_file_is_a_clear_error_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    let bytes =
        b"this is not a database at all, just some text that is long enough to be a header ....".repeat(50);
    std::fs::write(&garbage, &bytes).unwrap();
    let err = SqliteStore::open(&garbage).err().expect("garbage must not open").to_string();
    assert!(err.contains("garbage.db") && err.contains("cannot be used"), "{err}");
    assert_eq!(std::fs::read(&garbage).unwrap(), bytes, "the file is not changed");

    // A real store with its pages overwritten in the middle.
    let damaged = dir.path().join("damaged.db");
    {
        let mut store = SqliteStore::create(&damaged).unwrap();
        store.ensure_collection("c", "hashed-words", HashedWords::DIMENSIONS).unwrap();
        for i in 0..40 {
            put(
                &mut store,
                &format!("/{i}"),
                "h",
                "text",
                &[&format!("document number {i} about salmon and rivers ").repeat(20)],
            );
        }
    }
    // Checkpointed into the main file by the close; now wreck pages past the schema.
    let mut raw = std::fs::read(&damaged).unwrap();
    assert!(raw.len() > 40_000, "the store is {} bytes", raw.len());
    let end = raw.len() - 4096;
    for b in &mut raw[8192..end] {
        *b = 0xA5;
    }
    std::fs::write(&damaged, &raw).unwrap();
    let err = SqliteStore::open(&damaged).err().expect("a damaged store must not open").to_string();
    assert!(err.contains("damaged.db"), "{err}");

    // Another program's SQLite database.
    let other = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.execute_batch("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('mine');").unwrap();
    drop(conn);
    let err = SqliteStore::open(&other).err().unwrap().to_string();
    assert!(err.contains("not a Temper store"), "{err}");
    let conn = rusqlite::Connection::open(&other).unwrap();
    let kept: String = conn.query_row("SELECT x FROM notes", [], |r| r.get(0)).unwrap();
    assert_eq!(kept, "mine");

    // A store from a newer Temper.
    let newer = dir.path().join("newer.db");
    drop(SqliteStore::create(&newer).unwrap());
    rusqlite::Connection::open(&newer).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let err = SqliteStore::open(&newer).err().unwrap().to_string();
    assert!(err.contains("newer Temper"), "{err}");
}

#[test]
fn only_create_makes_a_store_and_a_missing_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("no/such/folder/typo.db");
    for open in [SqliteStore::open, SqliteStore::open_read_only] {
        let err = open(&typo).err().expect("a missing store must not open");
        assert!(matches!(err, RagError::NoStore { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("typo.db") && message.contains("temper rag ingest"), "{message}");
    }
    assert!(!dir.path().join("no").exists(), "nothing was created");
    drop(SqliteStore::create(&typo).unwrap());
    assert!(typo.is_file());
    SqliteStore::open(&typo).unwrap();
}

#[test]
fn another_programs_database_is_not_changed_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.execute_batch("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('mine');").unwrap();
    drop(conn);
    let before = std::fs::read(&other).unwrap();
    for open in [SqliteStore::create, SqliteStore::open, SqliteStore::open_read_only] {
        let err = open(&other).err().expect("a foreign database must not open").to_string();
        assert!(err.contains("not a Temper store"), "{err}");
    }
    // Its journal mode (a byte of the header) and everything else are as they were.
    assert_eq!(std::fs::read(&other).unwrap(), before);
    let conn = rusqlite::Connection::open(&other).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "delete");
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let err = SqliteStore::open_read_only(&empty).err().unwrap().to_string();
    assert!(err.contains("empty database"), "{err}");
}

#[test]
fn a_store_opened_read_only_is_searched_checked_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rag.db");
    {
        let mut store = SqliteStore::create(&path).unwrap();
        store.ensure_collection("c", "hashed-words", HashedWords::DIMENSIONS).unwrap();
        for i in 0..30 {
            put(&mut store, &format!("/{i}"), "h", "text", &[&format!("salmon number {i} swims upstream")]);
        }
    }
    let before = std::fs::read(&path).unwrap();
    let mut store = SqliteStore::open_read_only(&path).unwrap();
    // A graph built by a reader is not saved into the store it only reads.
    store.set_hnsw(temper_rag::hnsw::HnswParams::default(), 10);
    assert_eq!(store.collection("c").unwrap().documents, 30);
    let q = HashedWords::vector("salmon number 7");
    assert_eq!(store.dense_search("c", &q, 3, &Filter::default()).unwrap().len(), 3);
    assert_eq!(store.text_search("c", "upstream", 3, &Filter::default()).unwrap().len(), 3);
    assert_eq!(store.check().unwrap(), temper_rag::store::StoreCheck { full_text: false });
    let err = temper_core::error_chain(&store.remove_collection("c").unwrap_err());
    assert!(err.contains("readonly") || err.contains("read-only"), "{err}");
    drop(store);
    assert_eq!(std::fs::read(&path).unwrap(), before, "reading changed the file");
}
