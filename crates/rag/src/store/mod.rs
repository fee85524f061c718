//! Where chunks, vectors and the full-text index live. Retrieval and ingestion see only the
//! [`VectorStore`] trait, so another store (PostgreSQL + pgvector) can run the same tests.

mod sqlite;

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

pub use sqlite::{SqliteStore, StoreCheck};

use crate::chunk::Chunk;
use crate::load::Position;
use crate::{RagError, Result};

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
}
