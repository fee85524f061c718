//! Where chunks, vectors and the full-text index live: an SQLite file (the default) or a
//! PostgreSQL database with pgvector. Retrieval and ingestion see only the [`VectorStore`]
//! trait, and the same contract tests run against both.

mod postgres;
mod sqlite;

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

pub use postgres::{redact, PostgresStore};
pub use sqlite::SqliteStore;

use crate::chunk::Chunk;
use crate::load::Position;
use crate::{RagError, Result};

/// How a store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Created if missing (a file with its folder, a database's schema): only ingestion does this.
    Create,
    /// An existing store, to change.
    Write,
    /// An existing store, to read: nothing in it is changed (a file the user may read but not
    /// write works; a database session refuses writes).
    Read,
}

/// Where a store is: a `postgres://` or `postgresql://` URL names a database, anything else a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    File(PathBuf),
    Postgres(String),
}

impl StoreLocation {
    pub fn parse(text: &str) -> StoreLocation {
        match text.starts_with("postgres://") || text.starts_with("postgresql://") {
            true => StoreLocation::Postgres(text.to_owned()),
            false => StoreLocation::File(PathBuf::from(text)),
        }
    }

    pub fn open(&self, access: Access) -> Result<Box<dyn VectorStore>> {
        Ok(match self {
            StoreLocation::File(path) => Box::new(SqliteStore::open_as(path, access)?),
            StoreLocation::Postgres(url) => Box::new(PostgresStore::open(url, access)?),
        })
    }
}

/// The path, or the URL without its password.
impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::File(path) => write!(f, "{}", path.display()),
            StoreLocation::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// What [`VectorStore::check`] checked, beyond the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreCheck {
    /// Whether the full-text index was checked against the chunks (not on a read-only SQLite
    /// file, where FTS5's check would be a write).
    pub full_text: bool,
}

/// A document with its chunks and their unit vectors, as an export carries it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredDocument {
    pub path: String,
    pub hash: String,
    pub metadata: Value,
    pub chunks: Vec<(Chunk, Vec<f32>)>,
}

/// A chunk's id in its store.
pub type ChunkId = i64;

/// A collection and what it holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CollectionInfo {
    pub name: String,
    /// The embedder whose vectors it holds; searching it with another would be meaningless.
    pub embedder: String,
    pub dimensions: usize,
    pub documents: usize,
    pub chunks: usize,
}

/// A document to store: its path (the key within a collection), the hash of its content and
/// its metadata, a JSON object that filters match.
#[derive(Clone, Debug)]
pub struct NewDocument<'a> {
    pub path: &'a str,
    pub hash: &'a str,
    pub metadata: &'a Value,
}

/// A chunk as retrieval returns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredChunk {
    pub id: ChunkId,
    /// The path of its document.
    pub path: String,
    pub text: String,
    pub position: Position,
    pub heading: Vec<String>,
    pub metadata: Value,
}

/// Metadata conditions, all of which a chunk's document must meet: `key=value` each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub equals: Vec<(String, String)>,
}

impl Filter {
    /// Parses `key=value` conditions as a user types them.
    pub fn parse<S: AsRef<str>>(conditions: &[S]) -> Result<Filter> {
        let equals = conditions
            .iter()
            .map(|c| {
                let c = c.as_ref();
                match c.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() && !k.contains('"') => {
                        Ok((k.trim().to_owned(), v.to_owned()))
                    }
                    _ => Err(RagError::invalid(
                        format!("filter `{c}`"),
                        "expected key=value, with a key that is not empty and has no quotes",
                    )),
                }
            })
            .collect::<Result<_>>()?;
        Ok(Filter { equals })
    }

    pub fn is_empty(&self) -> bool {
        self.equals.is_empty()
    }
}

/// The store behind ingestion and retrieval. Every write is atomic: a document is stored with
/// all its chunks and vectors or not at all, so an interrupted ingestion leaves no half
/// document, and its content hash is written last of all (in the same transaction).
pub trait VectorStore: Send {
    /// Opens a collection for writing, creating it for `embedder` if it is new; an existing
    /// collection of another embedder or dimension is an error.
    fn ensure_collection(&mut self, name: &str, embedder: &str, dimensions: usize) -> Result<CollectionInfo>;

    /// The collection, or [`RagError::NoCollection`].
    fn collection(&self, name: &str) -> Result<CollectionInfo>;

    fn collections(&self) -> Result<Vec<CollectionInfo>>;

    /// Removes a collection with everything in it.
    fn remove_collection(&mut self, name: &str) -> Result<()>;

    /// Path → content hash of every document in the collection.
    fn document_hashes(&self, collection: &str) -> Result<HashMap<String, String>>;

    /// Stores a document with its chunks and their vectors, replacing any earlier version.
    fn put_document(
        &mut self,
        collection: &str,
        document: &NewDocument,
        chunks: &[(Chunk, Vec<f32>)],
    ) -> Result<()>;

    /// Removes a document and its chunks; false if there was none at `path`.
    fn remove_document(&mut self, collection: &str, path: &str) -> Result<bool>;

    /// The `k` chunks whose vectors are most similar to `query` (cosine), best first.
    fn dense_search(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<(ChunkId, f32)>>;

    /// The `k` chunks that best match the words of `query` by BM25, best first (higher is better).
    fn text_search(
        &self,
        collection: &str,
        query: &str,
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<(ChunkId, f32)>>;

    /// The chunks with these ids, in the same order; an unknown id is an error.
    fn chunks(&self, ids: &[ChunkId]) -> Result<Vec<StoredChunk>>;

    /// The unit vectors of these chunks, in the same order.
    fn vectors(&self, ids: &[ChunkId]) -> Result<Vec<Vec<f32>>>;

    /// Builds the collection's search index if the store keeps one and it is missing: after a
    /// bulk load one build is much faster than updating the index with every insert, so
    /// ingestion and import call this when they finish. Until then a search still finds
    /// everything, scanning exactly. (SQLite builds its graph on the first large search instead.)
    fn build_index(&mut self, _collection: &str) -> Result<()> {
        Ok(())
    }

    /// Every document of the collection with its chunks and vectors, by path, one at a time
    /// (a collection may not fit in memory).
    fn documents(&self, collection: &str, each: &mut dyn FnMut(StoredDocument) -> Result<()>) -> Result<()>;

    /// Checks the whole store and the invariants between its tables: slower than opening it;
    /// for tests and `temper rag stats --check`.
    fn check(&self) -> Result<StoreCheck>;

    /// Bytes the store takes on disk.
    fn size(&self) -> Result<u64>;

    /// Where the store is, as messages show it (a database URL without its password).
    fn location(&self) -> String;
}

/// A new collection's name and size, checked before anything is written.
fn check_new_collection(name: &str, embedder: &str, dimensions: usize) -> Result<()> {
    if name.trim().is_empty() {
        return Err(RagError::invalid("collection name", "is empty"));
    }
    if dimensions == 0 {
        return Err(RagError::invalid("embedder", format!("{embedder} reports 0 dimensions")));
    }
    Ok(())
}

/// The chunks' vectors scaled to unit length, after checking every one (size, finite values)
/// before the store is touched. A vector with no direction (an empty text) stays zero: it
/// matches nothing.
fn unit_vectors(
    document: &NewDocument,
    chunks: &[(Chunk, Vec<f32>)],
    dimensions: usize,
) -> Result<Vec<Vec<f32>>> {
    if !document.metadata.is_object() {
        return Err(RagError::invalid("document metadata", "must be a JSON object"));
    }
    chunks
        .iter()
        .enumerate()
        .map(|(i, (_, vector))| {
            if vector.len() != dimensions || vector.iter().any(|x| !x.is_finite()) {
                return Err(RagError::invalid(
                    format!("vector of chunk {} of {}", i + 1, document.path),
                    format!("expected {dimensions} finite values, got {}", vector.len()),
                ));
            }
            let mut unit = vector.clone();
            crate::vector::normalize(&mut unit);
            Ok(unit)
        })
        .collect()
}

/// A search's query vector scaled to unit length, after checking it has the collection's size.
fn unit_query(query: &[f32], dimensions: usize, collection: &str) -> Result<Vec<f32>> {
    if query.len() != dimensions {
        return Err(RagError::invalid(
            "query vector",
            format!("has {} dimensions, collection `{collection}` {dimensions}", query.len()),
        ));
    }
    let mut unit = query.to_vec();
    crate::vector::normalize(&mut unit);
    Ok(unit)
}

/// A position as the stores keep it: its unit and its number.
fn position_columns(position: Position) -> (&'static str, i64) {
    match position {
        Position::Line(n) => ("line", n.into()),
        Position::Page(n) => ("page", n.into()),
        Position::Record(n) => ("record", n.into()),
    }
}

/// The position a unit and a number stand for; `None` for a number out of range.
fn position_from(unit: &str, n: i64) -> Option<Position> {
    let n = u32::try_from(n).ok()?;
    Some(match unit {
        "page" => Position::Page(n),
        "record" => Position::Record(n),
        _ => Position::Line(n),
    })
}
