#![doc = include_str!("../README.md")]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub mod answer;
pub mod chunk;
mod error;
pub mod hnsw;
pub mod ingest;
pub mod load;
pub mod retrieve;
pub mod store;
pub mod transfer;
pub mod vector;

pub use answer::{
    checked_answer, ground, grounded_stream, prepare, AskOptions, CheckedAnswer, GroundedRequest,
    MIN_SIMILARITY, NOT_IN_DOCUMENTS,
};
pub use chunk::{Chunk, ChunkOptions, Chunker, WordPieceEstimate};
pub use error::{RagError, Result};
pub use ingest::{
    ingest, ingest_contents, DocumentReport, DocumentStatus, FileContents, IngestOptions, IngestProgress,
    IngestReport, NoProgress,
};
pub use load::{Kind, LoadOptions, Position, Skipped};
pub use retrieve::{embed_query, Hit, Mmr, Mode, Reranker, Retriever, SearchOptions};
pub use store::{
    Access, CollectionInfo, Filter, PostgresStore, SqliteStore, StoreCheck, StoreLocation, StoredDocument,
    VectorStore,
};
