//! Ingestion: incremental re-runs, skipped files, and a real process killed with SIGKILL.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use temper_core::EmbeddingModel;
use temper_rag::{
    ingest, ingest_contents, ChunkOptions, DocumentStatus, FileContents, Filter, IngestOptions, IngestReport,
    LoadOptions, SqliteStore, VectorStore,
};

use common::Recorded;
use temper_testkit::HashedWords;

fn options() -> IngestOptions {
    IngestOptions { chunk: ChunkOptions { max_tokens: 40, overlap: 5 }, batch_size: 8, ..Default::default() }
}

fn run(db: &Path, roots: &[PathBuf], options: &IngestOptions) -> IngestReport {
    run_with(&HashedWords, db, roots, options)
}

fn run_with(
    embedder: &dyn EmbeddingModel,
    db: &Path,
    roots: &[PathBuf],
    options: &IngestOptions,
) -> IngestReport {
    let mut store = SqliteStore::create(db).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let counter = common::words;
    rt.block_on(ingest(&mut store, embedder, &counter, roots, options, &mut Recorded::default())).unwrap()
}

/// `HashedWords` at a steady pace per batch: the killed child's ingestion then lasts seconds on
/// any machine, so a kill at a random moment lands midway however fast the CPU is.
struct Paced;

#[async_trait::async_trait]
impl EmbeddingModel for Paced {
    fn name(&self) -> &str {
        HashedWords.name()
    }

    fn dimensions(&self) -> usize {
        HashedWords.dimensions()
    }

    async fn embed(&self, texts: &[String]) -> temper_core::Result<Vec<Vec<f32>>> {
        std::thread::sleep(Duration::from_millis(5));
        HashedWords.embed(texts).await
    }
}

fn texts_of(store: &SqliteStore, path: &Path) -> Vec<String> {
    let filter = Filter::parse(&[format!("path={}", path.display())]).unwrap();
    let ids: Vec<i64> = store
        .dense_search("default", &HashedWords::vector("x"), usize::MAX >> 1, &filter)
        .unwrap()
        .into_iter()
        .map(|h| h.0)
        .collect();
    let mut texts: Vec<String> = store.chunks(&ids).unwrap().into_iter().map(|c| c.text).collect();
    texts.sort();
    texts
}

#[test]
fn re_ingesting_adds_updates_skips_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(docs.join("sub")).unwrap();
    std::fs::write(docs.join("a.md"), "# Fish\nSalmon swim upstream to spawn.\n").unwrap();
    std::fs::write(docs.join("sub/b.txt"), "Rust checks borrows at compile time.\n").unwrap();
    std::fs::write(docs.join("c.txt"), "Gone soon.\n").unwrap();
    std::fs::write(docs.join("bin.dat"), b"\x00\x01\x02").unwrap();
    std::fs::write(docs.join("bad.txt"), b"caf\xe9").unwrap();
    std::fs::write(docs.join(".gitignore"), "ignored.txt\n").unwrap();
    std::fs::write(docs.join("ignored.txt"), "never read").unwrap();
    let db = dir.path().join("rag.db");
    let roots = [docs.clone()];

    let first = run(&db, &roots, &options());
    assert_eq!((first.added, first.updated, first.unchanged, first.removed), (3, 0, 0, 0), "{first:?}");
    let reasons: Vec<(String, String)> = first
        .skipped
        .iter()
        .map(|s| (s.path.file_name().unwrap().to_string_lossy().into_owned(), s.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("bad.txt".to_string(), "invalid UTF-8 at byte 3".to_string()),
            ("bin.dat".to_string(), "binary (contains NUL bytes)".to_string()),
        ]
    );

    let again = run(&db, &roots, &options());
    assert_eq!((again.added, again.updated, again.unchanged, again.chunks), (0, 0, 3, 0), "{again:?}");

    std::fs::write(docs.join("a.md"), "# Fish\nTrout live in cold rivers.\n").unwrap();
    std::fs::remove_file(docs.join("c.txt")).unwrap();
    let changed = run(&db, &roots, &options());
    assert_eq!(
        (changed.added, changed.updated, changed.unchanged, changed.removed),
        (0, 1, 1, 1),
        "{changed:?}"
    );
    let store = SqliteStore::open(&db).unwrap();
    let a = std::path::absolute(docs.join("a.md")).unwrap();
    assert_eq!(texts_of(&store, &a), vec!["# Fish\nTrout live in cold rivers."]);
    assert_eq!(store.collection("default").unwrap().documents, 2);
    store.check().unwrap();

    // A glob narrows the walk; files outside it are not removed, only files gone from disk.
    let md_only = IngestOptions { globs: vec!["*.md".into()], ..options() };
    let narrowed = run(&db, &roots, &md_only);
    assert_eq!((narrowed.unchanged, narrowed.removed), (1, 0), "{narrowed:?}");
}

#[test]
fn contents_are_ingested_under_their_names_and_never_opened() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rag.db");
    let options =
        IngestOptions { load: LoadOptions { max_file_bytes: 64, ..LoadOptions::default() }, ..options() };
    let ingest = |files: &[(&str, &[u8])]| {
        let files: Vec<FileContents> = files
            .iter()
            .map(|(name, bytes)| FileContents { name: (*name).into(), bytes: bytes.to_vec() })
            .collect();
        let mut store = SqliteStore::create(&db).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let counter = common::words;
        rt.block_on(ingest_contents(
            &mut store,
            &HashedWords,
            &counter,
            &files,
            &options,
            &mut Recorded::default(),
        ))
        .unwrap()
    };
    let status = |report: &IngestReport| -> Vec<(String, DocumentStatus, usize)> {
        report.documents.iter().map(|d| (d.path.clone(), d.status, d.chunks)).collect()
    };
    let first = ingest(&[
        ("fish.md", b"# Fish\nSalmon swim upstream.\n"),
        ("../../escape.txt", b"Rust checks borrows."),
        ("image.png", b"\x89PNG\0\0"),
        ("big.txt", &[b'a'; 65]),
    ]);
    assert_eq!(
        status(&first),
        [("fish.md".into(), DocumentStatus::Added, 1), ("../../escape.txt".into(), DocumentStatus::Added, 1)]
    );
    let skipped: Vec<(String, &str)> =
        first.skipped.iter().map(|s| (s.path.display().to_string(), s.reason.as_str())).collect();
    assert_eq!(
        skipped,
        [
            ("image.png".into(), "binary (contains NUL bytes)"),
            ("big.txt".into(), "too large: 65 bytes (the limit is 64)")
        ]
    );
    assert!(!dir.path().join("../../escape.txt").exists(), "a name is a key, never a path");
    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(texts_of(&store, Path::new("fish.md")), ["# Fish\nSalmon swim upstream."]);

    let again = ingest(&[
        ("fish.md", b"# Fish\nTrout live in cold rivers.\n"),
        ("../../escape.txt", b"Rust checks borrows."),
    ]);
    assert_eq!(
        status(&again),
        [
            ("../../escape.txt".into(), DocumentStatus::Unchanged, 0),
            ("fish.md".into(), DocumentStatus::Updated, 1)
        ],
        "unchanged ones are known at once, the others once stored"
    );
    assert_eq!((again.added, again.updated, again.unchanged, again.removed), (0, 1, 1, 0));
    assert_eq!(texts_of(&store, Path::new("fish.md")), ["# Fish\nTrout live in cold rivers."]);
    assert_eq!(store.collection("default").unwrap().documents, 2, "nothing is removed");
}

#[test]
fn a_document_reached_by_another_path_is_the_same_document() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("doc001.md"), "Salmon swim upstream.\n").unwrap();
    std::fs::write(corpus.join("doc002.md"), "Bears catch salmon.\n").unwrap();
    let link = dir.path().join("linked");
    std::os::unix::fs::symlink(&corpus, &link).unwrap();
    let db = dir.path().join("rag.db");

    let first = run(&db, std::slice::from_ref(&corpus), &options());
    assert_eq!(first.added, 2, "{first:?}");
    for other in [corpus.join("../corpus/doc002.md"), link.join("doc002.md"), link.clone()] {
        let again = run(&db, std::slice::from_ref(&other), &options());
        assert_eq!((again.added, again.updated), (0, 0), "{} added a copy: {again:?}", other.display());
    }
    let store = SqliteStore::open_read_only(&db).unwrap();
    assert_eq!(store.collection("default").unwrap().documents, 2);
    let canonical = std::fs::canonicalize(corpus.join("doc002.md")).unwrap();
    assert!(store.document_hashes("default").unwrap().contains_key(canonical.to_str().unwrap()));
    let hits = store.text_search("default", "bears", 10, &Filter::default()).unwrap();
    assert_eq!(hits.len(), 1, "the chunk is stored once");
}

#[test]
fn symbolic_links_inside_a_folder_are_listed_as_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(outside.join("secret.txt"), "Not in the corpus.\n").unwrap();
    std::fs::write(corpus.join("real.txt"), "In the corpus.\n").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), corpus.join("file-link.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, corpus.join("folder-link")).unwrap();
    std::os::unix::fs::symlink(&corpus, corpus.join("loop")).unwrap();

    let report = run(&dir.path().join("rag.db"), std::slice::from_ref(&corpus), &options());
    assert_eq!(report.added, 1, "{report:?}");
    let mut skipped: Vec<String> =
        report.skipped.iter().map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    skipped.sort();
    assert_eq!(skipped, ["file-link.txt", "folder-link", "loop"]);
    assert!(report.skipped.iter().all(|s| s.reason.contains("symbolic link")), "{report:?}");
}

#[test]
fn a_different_embedder_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rag.db");
    std::fs::write(dir.path().join("a.txt"), "words here").unwrap();
    let mut store = SqliteStore::create(&db).unwrap();
    store.ensure_collection("default", "another-embedder", 3).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let err = rt
        .block_on(ingest(
            &mut store,
            &HashedWords,
            &common::words,
            &[dir.path().join("a.txt")],
            &options(),
            &mut Recorded::default(),
        ))
        .unwrap_err();
    assert!(err.to_string().contains("another-embedder"), "{err}");
    assert_eq!(store.collection("default").unwrap().documents, 0);
}

/// Writes `files` files of distinct sentences; every chunk's text is unique.
fn corpus(dir: &Path, files: usize) {
    for f in 0..files {
        let text: String =
            (0..30).map(|s| format!("File {f} sentence {s} tells about item{f}x{s} today.\n\n")).collect();
        std::fs::write(dir.join(format!("doc{f:04}.txt")), text).unwrap();
    }
}

/// Each document holds exactly the chunks a fresh chunking of its file gives: none missing,
/// none twice.
fn assert_complete_documents(db: &Path, corpus: &Path) -> usize {
    let store = SqliteStore::open(db).unwrap();
    store.check().unwrap();
    let counter = common::words;
    let chunker = temper_rag::Chunker::new(options().chunk, &counter).unwrap();
    let hashes = match store.document_hashes("default") {
        // Killed before the collection's transaction committed: nothing stored, nothing lost.
        Err(temper_rag::RagError::NoCollection(_)) => return 0,
        hashes => hashes.unwrap(),
    };
    for path in hashes.keys() {
        let loaded = temper_rag::load::load_file(Path::new(path), &Default::default()).unwrap();
        let mut expected: Vec<String> =
            loaded.sections.iter().flat_map(|s| chunker.chunk(s)).map(|c| c.text).collect();
        expected.sort();
        assert_eq!(texts_of(&store, Path::new(path)), expected, "{path}");
    }
    assert!(hashes.keys().all(|p| Path::new(p).starts_with(std::path::absolute(corpus).unwrap())));
    hashes.len()
}

/// Not a test on its own: the child process `sigkill_leaves_a_consistent_store` starts and kills.
#[test]
#[ignore = "run as a child process by sigkill_leaves_a_consistent_store"]
fn ingest_child() {
    let corpus = PathBuf::from(std::env::var("RAG_CORPUS").expect("RAG_CORPUS"));
    let db = PathBuf::from(std::env::var("RAG_DB").expect("RAG_DB"));
    run_with(&Paced, &db, &[corpus], &options());
}

#[test]
fn sigkill_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let corpus_dir = dir.path().join("corpus");
    std::fs::create_dir(&corpus_dir).unwrap();
    let files = 400;
    corpus(&corpus_dir, files);
    let db = dir.path().join("rag.db");
    let child = || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "ingest_child", "--test-threads=1"])
            .env("RAG_CORPUS", &corpus_dir)
            .env("RAG_DB", &db)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut rng = rand::thread_rng();
    let mut killed_midway = 0;
    for _ in 0..3 {
        let mut process = child();
        // Wait for the store to exist, then a random moment more.
        let started = std::time::Instant::now();
        while !db.exists() && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..400)));
        process.kill().unwrap(); // SIGKILL on Unix
        let status = process.wait().unwrap();
        let stored = assert_complete_documents(&db, &corpus_dir);
        if !status.success() && stored < files {
            killed_midway += 1;
        }
    }
    assert!(killed_midway > 0, "no kill landed during ingestion: make the corpus larger");
    let mut finish = child();
    assert!(finish.wait().unwrap().success(), "the re-run must finish");
    assert_eq!(assert_complete_documents(&db, &corpus_dir), files);
    let total = SqliteStore::open(&db).unwrap().collection("default").unwrap().chunks;
    let counter = common::words;
    let chunker = temper_rag::Chunker::new(options().chunk, &counter).unwrap();
    let one = temper_rag::load::load_file(&corpus_dir.join("doc0000.txt"), &Default::default()).unwrap();
    let per_file: usize = one.sections.iter().map(|s| chunker.chunk(s).len()).sum();
    assert_eq!(total, files * per_file, "no duplicate and no missing chunk");
}
