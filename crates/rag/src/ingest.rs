//! Ingestion as a stream: load → chunk → embed in batches → store, one document per
//! transaction, skipping files whose content hash is already stored.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;
use temper_core::EmbeddingModel;

use crate::chunk::{ChunkOptions, Chunker, TokenCounter};
use crate::load::{discover, load_file, LoadOptions, Skipped};
use crate::store::{NewDocument, VectorStore};
use crate::{Chunk, RagError, Result};

/// What to ingest and how.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    pub collection: String,
    /// Globs that narrow the walk of folders (`*.md`; `!drafts/**` excludes).
    pub globs: Vec<String>,
    pub load: LoadOptions,
    pub chunk: ChunkOptions,
    /// Chunks per call to the embedder.
    pub batch_size: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            collection: "default".into(),
            globs: Vec::new(),
            load: LoadOptions::default(),
            chunk: ChunkOptions::default(),
            batch_size: 32,
        }
    }
}

/// Told what ingestion is doing, for a progress bar.
pub trait IngestProgress {
    /// The files found; called once, first.
    fn start(&mut self, files: usize);
    /// A file has been read and chunked (or skipped, with no chunks), and `chunks` more are
    /// waiting to be embedded.
    fn file_read(&mut self, path: &Path, chunks: usize);
    /// `chunks` more chunks are embedded and stored.
    fn stored(&mut self, chunks: usize);
}

/// What an ingestion did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IngestReport {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    /// Chunks embedded and stored by this run.
    pub chunks: usize,
    pub skipped: Vec<Skipped>,
}

/// A document read and chunked, waiting for its vectors.
struct Pending {
    path: String,
    hash: String,
    metadata: serde_json::Value,
    chunks: Vec<Chunk>,
    new: bool,
}

/// Reads `roots` into the collection, each document under its file's canonical path. Unchanged
/// files are skipped by hash, changed ones replaced, and documents under `roots` whose file no
/// longer exists are removed (so a file moved inside a root is removed from its old path and
/// added at its new one).
pub async fn ingest(
    store: &mut dyn VectorStore,
    embedder: &dyn EmbeddingModel,
    counter: &dyn TokenCounter,
    roots: &[PathBuf],
    options: &IngestOptions,
    progress: &mut dyn IngestProgress,
) -> Result<IngestReport> {
    if options.batch_size == 0 {
        return Err(RagError::invalid("batch size", "must be at least 1"));
    }
    let chunker = Chunker::new(options.chunk, counter)?;
    // A document is its file's canonical path: `corpus/../corpus/a.md` or a symlinked folder
    // naming a file already stored finds it rather than adding it twice.
    let roots: Vec<PathBuf> = roots
        .iter()
        .map(|r| {
            std::fs::canonicalize(r)
                .map_err(|source| RagError::Io { context: format!("cannot read {}", r.display()), source })
        })
        .collect::<Result<_>>()?;
    let (files, mut skipped) = discover(&roots, &options.globs)?;
    let collection = &options.collection;
    store.ensure_collection(collection, embedder.name(), embedder.dimensions())?;
    let stored = store.document_hashes(collection)?;
    let mut report = IngestReport::default();
    progress.start(files.len());
    let mut pending: Vec<Pending> = Vec::new();
    for file in &files {
        let key = file.to_string_lossy().into_owned();
        let loaded = match load_file(file, &options.load) {
            Ok(loaded) => loaded,
            Err(reason) => {
                skipped.push(Skipped { path: file.clone(), reason });
                progress.file_read(file, 0);
                continue;
            }
        };
        let known = stored.get(&key);
        if known == Some(&loaded.hash) {
            report.unchanged += 1;
            progress.file_read(file, 0);
            continue;
        }
        let chunks: Vec<Chunk> = loaded.sections.iter().flat_map(|s| chunker.chunk(s)).collect();
        progress.file_read(file, chunks.len());
        let metadata = json!({
            "path": key,
            "name": file.file_name().map(|n| n.to_string_lossy()),
            "ext": file.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()),
            "kind": loaded.kind.as_str(),
        });
        pending.push(Pending { path: key, hash: loaded.hash, metadata, chunks, new: known.is_none() });
        if pending.iter().map(|p| p.chunks.len()).sum::<usize>() >= options.batch_size {
            flush(store, embedder, collection, &mut pending, options.batch_size, &mut report, progress)
                .await?;
        }
    }
    flush(store, embedder, collection, &mut pending, options.batch_size, &mut report, progress).await?;
    // Gone from disk, under a root this run read: removed. A file that is still there but
    // could not be read keeps what was stored.
    for path in stored.keys() {
        let under_root = roots.iter().any(|r| Path::new(path).starts_with(r));
        if under_root && !Path::new(path).exists() && store.remove_document(collection, path)? {
            report.removed += 1;
        }
    }
    report.skipped = skipped;
    Ok(report)
}

/// Embeds the pending documents' chunks in batches, then stores each document in its own
/// transaction.
async fn flush(
    store: &mut dyn VectorStore,
    embedder: &dyn EmbeddingModel,
    collection: &str,
    pending: &mut Vec<Pending>,
    batch_size: usize,
    report: &mut IngestReport,
    progress: &mut dyn IngestProgress,
) -> Result<()> {
    let texts: Vec<String> = pending.iter().flat_map(|p| p.chunks.iter().map(|c| c.text.clone())).collect();
    let mut vectors = Vec::with_capacity(texts.len());
    for batch in texts.chunks(batch_size) {
        let embedded = embedder.embed(batch).await?;
        if embedded.len() != batch.len() {
            return Err(RagError::invalid(
                "embedder output",
                format!("{} returned {} vectors for {} texts", embedder.name(), embedded.len(), batch.len()),
            ));
        }
        vectors.extend(embedded);
    }
    let mut vectors = vectors.into_iter();
    for doc in pending.drain(..) {
        let chunks: Vec<(Chunk, Vec<f32>)> = doc.chunks.into_iter().zip(vectors.by_ref()).collect();
        let document = NewDocument { path: &doc.path, hash: &doc.hash, metadata: &doc.metadata };
        store.put_document(collection, &document, &chunks)?;
        if doc.new {
            report.added += 1;
        } else {
            report.updated += 1;
        }
        report.chunks += chunks.len();
        progress.stored(chunks.len());
    }
    Ok(())
}
