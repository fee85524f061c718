//! The store contract, run against SQLite and PostgreSQL, the errors a damaged or foreign store
//! gives, and what concurrent, killed or cut-off writers leave in PostgreSQL.

use serde_json::json;
use temper_rag::store::NewDocument;
use temper_rag::{Access, Chunk, Filter, Position, PostgresStore, RagError, SqliteStore, VectorStore};
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

#[test]
fn postgres_keeps_the_store_contract() {
    let Some(url) = temper_testkit::postgres_database() else { return };
    let mut store = PostgresStore::open(&url, Access::Create).unwrap();
    contract(&mut store);
    store.check().unwrap();
}

#[test]
fn postgres_refuses_a_missing_store_a_newer_one_and_writes_when_reading() {
    let Some(url) = temper_testkit::postgres_database() else { return };
    for access in [Access::Read, Access::Write] {
        let err = PostgresStore::open(&url, access).err().expect("no schema, no store");
        assert!(matches!(err, RagError::NoStore { .. }), "{err}");
    }
    let mut store = PostgresStore::open(&url, Access::Create).unwrap();
    store.ensure_collection("c", "hashed-words", HashedWords::DIMENSIONS).unwrap();
    put(&mut store, "/a", "h", "text", &["salmon swim upstream"]);

    let mut reader = PostgresStore::open(&url, Access::Read).unwrap();
    assert_eq!(reader.collection("c").unwrap().chunks, 1);
    let err = temper_core::error_chain(&reader.remove_collection("c").unwrap_err());
    assert!(err.contains("read-only transaction"), "{err}");
    assert_eq!(store.collection("c").unwrap().chunks, 1, "nothing was removed");

    sql(&url, "UPDATE temper.schema_version SET version = 99");
    let err = PostgresStore::open(&url, Access::Write).err().unwrap().to_string();
    assert!(err.contains("newer Temper"), "{err}");
}

#[test]
fn postgres_passwords_never_show_in_errors() {
    let err =
        PostgresStore::open("postgres://ann:s3cret@127.0.0.1:1/rag", Access::Read).err().unwrap().to_string();
    assert!(err.contains("postgres://ann@127.0.0.1:1/rag") && err.contains("cannot connect"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn postgres_survives_a_lost_connection() {
    let Some(url) = temper_testkit::postgres_database() else { return };
    let mut store = PostgresStore::open(&url, Access::Create).unwrap();
    store.ensure_collection("c", "hashed-words", HashedWords::DIMENSIONS).unwrap();
    put(&mut store, "/a", "h", "text", &["salmon swim upstream"]);
    // The server ends every session of the store (as a restart or a proxy would): the next
    // read and the next write each go through on a new connection.
    let database = url.rsplit('/').next().unwrap();
    sql(&url, &format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    ));
    assert_eq!(store.text_search("c", "salmon", 5, &Filter::default()).unwrap().len(), 1);
    sql(&url, &format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    ));
    put(&mut store, "/b", "h", "text", &["bears catch salmon"]);
    assert_eq!(store.collection("c").unwrap().documents, 2);
}

/// Documents `first..first + count`, document `i` with `i % 4 + 1` chunks, the way the
/// concurrency tests write and check them.
fn put_numbered(store: &mut dyn VectorStore, first: usize, count: usize) {
    for i in first..first + count {
        let texts: Vec<String> =
            (0..i % 4 + 1).map(|j| format!("document {i} part {j} about rivers")).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        put(store, &format!("/doc/{i}"), &format!("h{i}"), "text", &texts);
    }
}

/// Run by the concurrency tests in processes of their own (`TEMPER_TEST_INGESTER` says what
/// to write); not a test by itself.
#[test]
#[ignore = "a child process of the concurrency tests"]
fn child_process_ingester() {
    let spec = std::env::var("TEMPER_TEST_INGESTER").expect("run by the concurrency tests");
    let (url, first, count) = {
        let mut parts = spec.splitn(3, ' ');
        let (first, count, url) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        (url.to_owned(), first.parse().unwrap(), count.parse().unwrap())
    };
    let mut store = PostgresStore::open(&url, Access::Create).unwrap();
    store.ensure_collection("c", "hashed-words", HashedWords::DIMENSIONS).unwrap();
    put_numbered(&mut store, first, count);
    store.build_index("c").unwrap();
}

fn ingester(url: &str, first: usize, count: usize) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_ingester", "--ignored", "--quiet"])
        .env("TEMPER_TEST_INGESTER", format!("{first} {count} {url}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Every document of `/doc/0..n` is whole: as many chunks as it was written with, no more.
fn assert_whole(store: &dyn VectorStore, n: usize) {
    let mut seen = 0;
    store
        .documents("c", &mut |doc| {
            let i: usize = doc.path.trim_start_matches("/doc/").parse().unwrap();
            assert_eq!(doc.chunks.len(), i % 4 + 1, "{} has {} chunks", doc.path, doc.chunks.len());
            seen += 1;
            Ok(())
        })
        .unwrap();
    assert!(seen <= n);
}

#[test]
fn postgres_four_ingesters_at_once_lose_and_duplicate_nothing() {
    let Some(url) = temper_testkit::postgres_database() else { return };
    // Four processes, each overlapping the next by half: all of them start on an empty
    // database, so they also race to create the schema and the collection.
    let children: Vec<_> = (0..4).map(|p| ingester(&url, p * 30, 60)).collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let store = PostgresStore::open(&url, Access::Read).unwrap();
    let info = store.collection("c").unwrap();
    let chunks: usize = (0..150).map(|i| i % 4 + 1).sum();
    assert_eq!((info.documents, info.chunks), (150, chunks));
    assert_whole(&store, 150);
    store.check().unwrap();
}

#[test]
fn postgres_builds_a_collections_vector_index_once_and_searches_through_it() {
    let Some(url) = temper_testkit::postgres_database() else { return };
    let mut store = PostgresStore::open(&url, Access::Create).unwrap();
    store.ensure_collection("v", "tiny", 3).unwrap();
    let metadata = json!({});
    for i in 0..200 {
        let angle = i as f32 / 200.0 * std::f32::consts::PI;
        let path = format!("/{i}");
        let doc = NewDocument { path: &path, hash: "h", metadata: &metadata };
        let vector = vec![angle.cos(), angle.sin(), 0.1];
        store.put_document("v", &doc, &[(chunk(&format!("point {i}"), 1), vector)]).unwrap();
    }
    let q = [1.0f32, -0.05, 0.1];
    let exact = store.dense_search("v", &q, 5, &Filter::default()).unwrap();
    let indexes =
        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'temper' AND indexname LIKE 'chunks_dense_%'";
    assert_eq!(sql_count(&url, indexes), 0, "a collection's first load goes in without an index");
    store.build_index("v").unwrap();
    store.build_index("v").unwrap();
    assert_eq!(sql_count(&url, indexes), 1);
    // Through the index, the same nearest chunks with the same scores as the exact scan.
    assert_eq!(store.dense_search("v", &q, 5, &Filter::default()).unwrap(), exact);
    assert_eq!(store.chunks(&[exact[0].0]).unwrap()[0].text, "point 0");
    // Later documents go into the index as they are stored.
    let doc = NewDocument { path: "/new", hash: "h", metadata: &metadata };
    store.put_document("v", &doc, &[(chunk("newest", 1), q.to_vec())]).unwrap();
    let best = store.dense_search("v", &q, 1, &Filter::default()).unwrap();
    assert_eq!(store.chunks(&[best[0].0]).unwrap()[0].text, "newest");
    store.remove_collection("v").unwrap();
    assert_eq!(sql_count(&url, indexes), 0, "the index goes with its collection");
}

#[test]
fn postgres_a_killed_ingester_leaves_every_document_whole_or_absent() {
    let Some(url) = temper_testkit::postgres_database() else { return };
    let mut store = PostgresStore::open(&url, Access::Create).unwrap();
    store.ensure_collection("c", "hashed-words", HashedWords::DIMENSIONS).unwrap();
    let mut child = ingester(&url, 0, 100_000);
    // Killed while it writes, at whatever statement it is in.
    while store.collection("c").unwrap().documents < 20 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let written = store.collection("c").unwrap().documents;
    assert_whole(&store, written);
    // A re-run over the same documents completes them without duplicates.
    put_numbered(&mut store, 0, written + 5);
    let chunks: usize = (0..written + 5).map(|i| i % 4 + 1).sum();
    assert_eq!(store.collection("c").unwrap().chunks, chunks);
}

/// Runs SQL on the test database directly, as an administrator would.
fn sql(url: &str, statement: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        client.batch_execute(statement).await.unwrap();
        drop(client);
        let _ = connection.await;
    });
}

/// A collection of `store` as its documents, in path order (what an export carries).
fn contents(store: &dyn VectorStore, collection: &str) -> Vec<temper_rag::StoredDocument> {
    let mut docs = Vec::new();
    store
        .documents(collection, &mut |d| {
            docs.push(d);
            Ok(())
        })
        .unwrap();
    docs
}

#[test]
fn a_collection_moves_between_sqlite_and_postgres_without_embedding_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = SqliteStore::create(&dir.path().join("rag.db")).unwrap();
    sqlite.ensure_collection("c", "hashed-words", HashedWords::DIMENSIONS).unwrap();
    put_numbered(&mut sqlite, 0, 25);
    let mut file = Vec::new();
    let moved = temper_rag::transfer::export(&sqlite, "c", &mut file).unwrap();
    assert_eq!(moved.documents, 25);

    // Into another SQLite file under a new name, and (with a server) into PostgreSQL: the same
    // documents, chunks, metadata and vectors, bit for bit, and the same search results.
    let mut copy = SqliteStore::create(&dir.path().join("copy.db")).unwrap();
    let (name, again) =
        temper_rag::transfer::import(&mut copy, &mut file.as_slice(), "c.jsonl", Some("d")).unwrap();
    assert_eq!((name.as_str(), again), ("d", moved));
    assert_eq!(contents(&copy, "d"), contents(&sqlite, "c"));
    let mut stores: Vec<Box<dyn VectorStore>> = vec![Box::new(copy)];
    if let Some(url) = temper_testkit::postgres_database() {
        let mut postgres = PostgresStore::open(&url, Access::Create).unwrap();
        temper_rag::transfer::import(&mut postgres, &mut file.as_slice(), "c.jsonl", Some("d")).unwrap();
        assert_eq!(contents(&postgres, "d"), contents(&sqlite, "c"));
        // And back out of PostgreSQL: the same file, line for line.
        let mut out = Vec::new();
        temper_rag::transfer::export(&postgres, "d", &mut out).unwrap();
        let expected = String::from_utf8(file.clone()).unwrap().replacen("\"c\"", "\"d\"", 1);
        for (n, (got, want)) in String::from_utf8(out).unwrap().lines().zip(expected.lines()).enumerate() {
            let cut = |s: &str| s.chars().take(300).collect::<String>();
            // As JSON: PostgreSQL's jsonb keeps an object's keys in an order of its own.
            let same = serde_json::from_str::<serde_json::Value>(got).unwrap()
                == serde_json::from_str::<serde_json::Value>(want).unwrap();
            assert!(same, "line {} differs:\n{}\n{}", n + 1, cut(got), cut(want));
        }
        stores.push(Box::new(postgres));
    }
    let q = HashedWords::vector("document 7 part 2 about rivers");
    let texts = |store: &dyn VectorStore, collection: &str| -> Vec<(String, String)> {
        // Every chunk, so that ties (broken by chunk ids, which differ between stores) don't matter.
        let hits = store.dense_search(collection, &q, 100, &Filter::default()).unwrap();
        let chunks = store.chunks(&hits.iter().map(|h| h.0).collect::<Vec<_>>()).unwrap();
        let mut scored: Vec<_> =
            chunks.iter().zip(&hits).map(|(c, h)| (c.text.clone(), format!("{:.5}", h.1))).collect();
        scored.sort();
        scored
    };
    for store in &stores {
        assert_eq!(texts(store.as_ref(), "d"), texts(&sqlite, "c"));
    }
}

#[test]
fn a_damaged_export_is_refused_with_its_line_and_a_cut_one_is_completed_by_importing_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = SqliteStore::create(&dir.path().join("rag.db")).unwrap();
    sqlite.ensure_collection("c", "hashed-words", HashedWords::DIMENSIONS).unwrap();
    put_numbered(&mut sqlite, 0, 10);
    let mut file = Vec::new();
    temper_rag::transfer::export(&sqlite, "c", &mut file).unwrap();
    let text = String::from_utf8(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    let mut target = SqliteStore::create(&dir.path().join("target.db")).unwrap();
    let cut = lines[..6].join("\n");
    let err = temper_rag::transfer::import(&mut target, &mut cut.as_bytes(), "cut.jsonl", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cut.jsonl") && err.contains("cut short") && err.contains("5 whole documents"),
        "{err}"
    );
    assert_eq!(target.collection("c").unwrap().documents, 5);
    temper_rag::transfer::import(&mut target, &mut text.as_bytes(), "all.jsonl", None).unwrap();
    assert_eq!(contents(&target, "c"), contents(&sqlite, "c"));

    let mut damaged: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    damaged[3] = damaged[3].replacen("\"vector\":[", "\"vector\":[\"x\",", 1);
    let err =
        temper_rag::transfer::import(&mut target, &mut damaged.join("\n").as_bytes(), "bad.jsonl", None)
            .unwrap_err()
            .to_string();
    assert!(err.contains("bad.jsonl, line 4"), "{err}");
    let err = temper_rag::transfer::import(&mut target, &mut "{\"a\":1}\n".as_bytes(), "x.json", None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("x.json, line 1") && err.contains("not a Temper collection export"), "{err}");
    // Another embedder's collection under the same name is refused before anything is written.
    let other = lines[0].replace("hashed-words", "other-embedder");
    let err = temper_rag::transfer::import(&mut target, &mut other.as_bytes(), "o.jsonl", None).unwrap_err();
    assert!(matches!(err, RagError::EmbedderMismatch { .. }), "{err}");
}

/// The count a query of the test database returns.
fn sql_count(url: &str, query: &str) -> i64 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        let count = client.query_one(query, &[]).await.unwrap().get(0);
        drop(client);
        let _ = connection.await;
        count
    })
}
