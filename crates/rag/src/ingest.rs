//! Ingestion as a stream: load → chunk → embed in batches → store, one document per
//! transaction, skipping files whose content hash is already stored. Files come from disk
//! (paths and folders) or from the caller (uploads, by name and bytes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;
use temper_core::{EmbeddingModel, TokenCounter};

use crate::chunk::{ChunkOptions, Chunker};
use crate::load::{discover, load_file, parse, too_large, Kind, LoadOptions, LoadedFile, Skipped};
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
    /// Every document that was not skipped, with what became of it.
    pub documents: Vec<DocumentReport>,
}

/// One document of an ingestion.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DocumentReport {
    /// Its key in the collection: the file's absolute path, or the name it was given.
    pub path: String,
    pub status: DocumentStatus,
    /// Chunks embedded and stored for it by this run (none when unchanged).
    pub chunks: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentStatus {
    Added,
    Updated,
    /// Stored already with the same content.
    Unchanged,
}

/// A file given by its name and bytes rather than read from disk: an upload. The name is the
/// document's key in the collection and is never opened as a path.
#[derive(Clone, Debug)]
pub struct FileContents {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Reports nothing, for callers without a progress bar.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl IngestProgress for NoProgress {
    fn start(&mut self, _: usize) {}
    fn file_read(&mut self, _: &Path, _: usize) {}
    fn stored(&mut self, _: usize) {}
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
    // A document is its file's canonical path: `corpus/../corpus/a.md` or a symlinked folder
    // naming a file already stored finds it rather than adding it twice.
    let roots: Vec<PathBuf> = roots
        .iter()
        .map(|r| {
            std::fs::canonicalize(r)
                .map_err(|source| RagError::Io { context: format!("cannot read {}", r.display()), source })
        })
        .collect::<Result<_>>()?;
    let (files, skipped) = discover(&roots, &options.globs)?;
    let mut run = Run::start(store, embedder, counter, options, progress, files.len())?;
    run.report.skipped = skipped;
    for file in &files {
        run.add(file.to_string_lossy().into_owned(), load_file(file, &options.load)).await?;
    }
    let stored = std::mem::take(&mut run.stored);
    let (store, mut report) = run.finish().await?;
    // Gone from disk, under a root this run read: removed. A file that is still there but
    // could not be read keeps what was stored.
    for path in stored.keys() {
        let under_root = roots.iter().any(|r| Path::new(path).starts_with(r));
        if under_root && !Path::new(path).exists() && store.remove_document(&options.collection, path)? {
            report.removed += 1;
        }
    }
    Ok(report)
}

/// Reads files given by their contents into the collection, each under its name: a name
/// stored with the same content is left alone, with other content replaced. Files that cannot
/// be used (too large, binary, no text) come back in `skipped`; nothing is removed.
pub async fn ingest_contents(
    store: &mut dyn VectorStore,
    embedder: &dyn EmbeddingModel,
    counter: &dyn TokenCounter,
    files: &[FileContents],
    options: &IngestOptions,
    progress: &mut dyn IngestProgress,
) -> Result<IngestReport> {
    let mut run = Run::start(store, embedder, counter, options, progress, files.len())?;
    for file in files {
        let size = file.bytes.len() as u64;
        let loaded = if size > options.load.max_file_bytes {
            Err(too_large(size, options.load.max_file_bytes))
        } else {
            parse(Kind::of(Path::new(&file.name)), &file.bytes, &options.load)
        };
        run.add(file.name.clone(), loaded).await?;
    }
    Ok(run.finish().await?.1)
}

/// One ingestion under way: the documents waiting for vectors, and what was done so far.
struct Run<'a> {
    store: &'a mut dyn VectorStore,
    embedder: &'a dyn EmbeddingModel,
    chunker: Chunker<'a>,
    options: &'a IngestOptions,
    progress: &'a mut dyn IngestProgress,
    /// Path → content hash of the documents stored before this run.
    stored: HashMap<String, String>,
    pending: Vec<Pending>,
    report: IngestReport,
}

impl<'a> Run<'a> {
    /// Opens the collection for `files` files.
    fn start(
        store: &'a mut dyn VectorStore,
        embedder: &'a dyn EmbeddingModel,
        counter: &'a dyn TokenCounter,
        options: &'a IngestOptions,
        progress: &'a mut dyn IngestProgress,
        files: usize,
    ) -> Result<Run<'a>> {
        if options.batch_size == 0 {
            return Err(RagError::invalid("batch size", "must be at least 1"));
        }
        let chunker = Chunker::new(options.chunk, counter)?;
        store.ensure_collection(&options.collection, embedder.name(), embedder.dimensions())?;
        let stored = store.document_hashes(&options.collection)?;
        progress.start(files);
        Ok(Run {
            store,
            embedder,
            chunker,
            options,
            progress,
            stored,
            pending: Vec::new(),
            report: IngestReport::default(),
        })
    }

    /// The document `path`, as loaded (or the reason it could not be): skipped, unchanged, or
    /// chunked and queued for embedding.
    async fn add(&mut self, path: String, loaded: std::result::Result<LoadedFile, String>) -> Result<()> {
        let name = Path::new(&path);
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(reason) => {
                self.progress.file_read(name, 0);
                self.report.skipped.push(Skipped { path: name.to_owned(), reason });
                return Ok(());
            }
        };
        let known = self.stored.get(&path);
        if known == Some(&loaded.hash) {
            self.progress.file_read(name, 0);
            self.report.unchanged += 1;
            let status = DocumentStatus::Unchanged;
            self.report.documents.push(DocumentReport { path, status, chunks: 0 });
            return Ok(());
        }
        let chunks: Vec<Chunk> = loaded.sections.iter().flat_map(|s| self.chunker.chunk(s)).collect();
        self.progress.file_read(name, chunks.len());
        let metadata = json!({
            "path": path,
            "name": name.file_name().map(|n| n.to_string_lossy()),
            "ext": name.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()),
            "kind": loaded.kind.as_str(),
        });
        let new = known.is_none();
        self.pending.push(Pending { path, hash: loaded.hash, metadata, chunks, new });
        if self.pending.iter().map(|p| p.chunks.len()).sum::<usize>() >= self.options.batch_size {
            self.flush().await?;
        }
        Ok(())
    }

    /// Stores what is still pending; gives the store back with the report.
    async fn finish(mut self) -> Result<(&'a mut dyn VectorStore, IngestReport)> {
        self.flush().await?;
        self.store.build_index(&self.options.collection)?;
        Ok((self.store, self.report))
    }

    /// Embeds the pending documents' chunks in batches, then stores each document in its own
    /// transaction.
    async fn flush(&mut self) -> Result<()> {
        let (embedder, batch_size) = (self.embedder, self.options.batch_size);
        let texts: Vec<String> =
            self.pending.iter().flat_map(|p| p.chunks.iter().map(|c| c.text.clone())).collect();
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(batch_size) {
            let embedded = embedder.embed(batch).await?;
            if embedded.len() != batch.len() {
                return Err(RagError::invalid(
                    "embedder output",
                    format!(
                        "{} returned {} vectors for {} texts",
                        embedder.name(),
                        embedded.len(),
                        batch.len()
                    ),
                ));
            }
            vectors.extend(embedded);
        }
        let mut vectors = vectors.into_iter();
        for doc in self.pending.drain(..) {
            let chunks: Vec<(Chunk, Vec<f32>)> = doc.chunks.into_iter().zip(vectors.by_ref()).collect();
            let document = NewDocument { path: &doc.path, hash: &doc.hash, metadata: &doc.metadata };
            self.store.put_document(&self.options.collection, &document, &chunks)?;
            let report = &mut self.report;
            let status = if doc.new {
                report.added += 1;
                DocumentStatus::Added
            } else {
                report.updated += 1;
                DocumentStatus::Updated
            };
            report.chunks += chunks.len();
            report.documents.push(DocumentReport { path: doc.path, status, chunks: chunks.len() });
            self.progress.stored(chunks.len());
        }
        Ok(())
    }
}
