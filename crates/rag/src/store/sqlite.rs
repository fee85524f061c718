//! The embedded store: one SQLite file holding collections, documents, chunks, their vectors
//! (little-endian f32 blobs) and an FTS5 index, kept in step by triggers. WAL journaling: a
//! process killed at any moment leaves the last committed transaction in place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};
use serde_json::Value;

use super::{
    check_new_collection, position_columns, position_from, unit_query, unit_vectors, Access, ChunkId,
    CollectionInfo, Filter, NewDocument, StoreCheck, StoredChunk, StoredDocument, VectorStore,
};
use crate::chunk::Chunk;
use crate::error::StoreContext;
use crate::hnsw::{Hnsw, HnswParams};
use crate::vector::{dot, top_k};
use crate::{RagError, Result};

/// Bumped when the schema changes; a store from a newer Temper is refused, not misread.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE collections (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    embedder TEXT NOT NULL,
    dimensions INTEGER NOT NULL,
    -- Bumped by every write, so a cached or stored HNSW graph knows it is stale.
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE documents (
    id INTEGER PRIMARY KEY,
    collection_id INTEGER NOT NULL REFERENCES collections(id),
    path TEXT NOT NULL,
    hash TEXT NOT NULL,
    metadata TEXT NOT NULL,
    UNIQUE (collection_id, path)
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents(id),
    ord INTEGER NOT NULL,
    text TEXT NOT NULL,
    unit TEXT NOT NULL,
    position INTEGER NOT NULL,
    heading TEXT NOT NULL
);
CREATE INDEX chunks_by_document ON chunks(document_id);
-- Apart from the text, and with the collection repeated, so a dense scan reads only vectors.
CREATE TABLE vectors (
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id),
    collection_id INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX vectors_by_collection ON vectors(collection_id);
CREATE TABLE hnsw (
    collection_id INTEGER PRIMARY KEY REFERENCES collections(id),
    generation INTEGER NOT NULL,
    m INTEGER NOT NULL,
    ef_construction INTEGER NOT NULL,
    graph BLOB NOT NULL
);
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    text, heading, content='chunks', content_rowid='id', tokenize='porter unicode61'
);
CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text, heading) VALUES (new.id, new.text, new.heading);
END;
CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text, heading) VALUES ('delete', old.id, old.text, old.heading);
END;
";

/// A collection's vectors in memory, with the graph over them once it is large.
struct DenseIndex {
    generation: i64,
    ids: Vec<ChunkId>,
    dimensions: usize,
    vectors: Vec<f32>,
    hnsw: Option<Hnsw>,
}

/// The SQLite store.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    access: Access,
    hnsw_params: HnswParams,
    hnsw_min_chunks: usize,
    /// Collection id → its vectors, loaded on the first dense search and kept while unchanged.
    cache: Mutex<HashMap<i64, Arc<DenseIndex>>>,
}

impl SqliteStore {
    /// Opens the store at `path`, creating it (and its folder) if there is none: what
    /// ingestion uses. A file that is not a Temper store, or is damaged, is an error naming
    /// it; nothing in it is changed.
    pub fn create(path: &Path) -> Result<SqliteStore> {
        Self::open_as(path, Access::Create)
    }

    /// Opens the existing store at `path` to change it; no store there is
    /// [`RagError::NoStore`] (a mistyped path creates nothing).
    pub fn open(path: &Path) -> Result<SqliteStore> {
        Self::open_as(path, Access::Write)
    }

    /// Opens the existing store at `path` read-only, for searching and listing: the file is
    /// not changed (not even its journal mode), and one the user may only read works.
    pub fn open_read_only(path: &Path) -> Result<SqliteStore> {
        Self::open_as(path, Access::Read)
    }

    pub(super) fn open_as(path: &Path, access: Access) -> Result<SqliteStore> {
        let bad = |reason: String| RagError::BadStore { path: path.to_owned(), reason };
        let flags = match access {
            Access::Create => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| bad(format!("cannot create its folder: {e}")))?;
                }
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
            }
            Access::Write | Access::Read => {
                if !path.exists() {
                    return Err(RagError::NoStore { path: path.to_owned() });
                }
                match access {
                    Access::Read => OpenFlags::SQLITE_OPEN_READ_ONLY,
                    _ => OpenFlags::SQLITE_OPEN_READ_WRITE,
                }
            }
        };
        let flags = flags | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let mut conn = Connection::open_with_flags(path, flags).map_err(|e| bad(e.to_string()))?;
        if access == Access::Read && !readable(&conn) && !wal_path(path).exists() {
            // A WAL store in a folder the user may not write: SQLite cannot make the shared-memory
            // file that reading needs. With no WAL file there is no writer whose pages could be
            // missed, so the file alone is the store: read it as immutable.
            conn = Connection::open_with_flags(immutable_uri(path), flags).map_err(|e| bad(e.to_string()))?;
        }
        // SQLite falls back to reading a file it may not write; a command that writes says so
        // now rather than fail halfway.
        if access != Access::Read && conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(bad(
                "it is read-only for this user (search, ask, collections and stats still read it)".into(),
            ));
        }
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| bad(e.to_string()))?;
        // What the file is, read before anything is written to it: another program's database
        // must come out of here exactly as it went in.
        let (version, tables): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version), count(*) FROM sqlite_master",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| bad(e.to_string()))?;
        let empty = version == 0 && tables == 0;
        match version {
            0 if empty && access == Access::Create => {}
            0 if empty => return Err(bad("it is an empty database, not a Temper store".into())),
            0 => return Err(bad("it is an SQLite database of something else, not a Temper store".into())),
            SCHEMA_VERSION => {}
            v if v > SCHEMA_VERSION => {
                return Err(bad(format!(
                    "it was made by a newer Temper (schema {v}; this one reads {SCHEMA_VERSION})"
                )))
            }
            v => return Err(bad(format!("unknown schema version {v}"))),
        }
        if access != Access::Read {
            let setup = || -> rusqlite::Result<()> {
                conn.pragma_update(None, "journal_mode", "WAL")?;
                // In WAL mode NORMAL loses nothing when the process dies; only a power cut can
                // roll back the last transactions, and never leaves a half one.
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                conn.pragma_update(None, "foreign_keys", "ON")
            };
            setup().map_err(|e| bad(e.to_string()))?;
        }
        if empty {
            let create = format!("BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;");
            conn.execute_batch(&create).map_err(|e| bad(format!("cannot create the schema: {e}")))?;
        }
        // Damage in the pages holding the schema or the tables shows here, before any write.
        let check: String =
            conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0)).map_err(|e| bad(e.to_string()))?;
        if check != "ok" {
            return Err(bad(format!("it is damaged: {check}")));
        }
        Ok(SqliteStore {
            conn,
            path: path.to_owned(),
            access,
            hnsw_params: HnswParams::default(),
            hnsw_min_chunks: 20_000,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Dense search of collections with at least `min_chunks` chunks (and no filter) goes
    /// through an HNSW graph built with `params`; smaller ones are scanned exactly.
    pub fn set_hnsw(&mut self, params: HnswParams, min_chunks: usize) {
        self.hnsw_params = params;
        self.hnsw_min_chunks = min_chunks;
        self.cache().clear();
    }

    fn collection_row(&self, name: &str) -> Result<(i64, String, usize, i64)> {
        self.conn
            .query_row(
                "SELECT id, embedder, dimensions, generation FROM collections WHERE name = ?",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as usize, r.get(3)?)),
            )
            .optional()
            .context("reading a collection")?
            .ok_or_else(|| RagError::NoCollection(name.to_owned()))
    }

    fn info(&self, id: i64, name: String, embedder: String, dimensions: usize) -> Result<CollectionInfo> {
        let (documents, chunks): (i64, i64) = self
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM documents WHERE collection_id = ?1),
                        (SELECT count(*) FROM vectors WHERE collection_id = ?1)",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .context("counting a collection")?;
        Ok(CollectionInfo {
            name,
            embedder,
            dimensions,
            documents: documents as usize,
            chunks: chunks as usize,
        })
    }

    /// Deletes a document's chunks, vectors and index entries (inside the caller's transaction).
    fn delete_chunks(tx: &rusqlite::Transaction, document: i64) -> Result<()> {
        tx.execute(
            "DELETE FROM vectors WHERE chunk_id IN (SELECT id FROM chunks WHERE document_id = ?)",
            [document],
        )
        .context("deleting vectors")?;
        tx.execute("DELETE FROM chunks WHERE document_id = ?", [document]).context("deleting chunks")?;
        Ok(())
    }

    /// SQL conditions on `d.metadata` for a filter, and their parameters after `first`.
    fn filter_sql(filter: &Filter, first: rusqlite::types::Value) -> (String, Vec<rusqlite::types::Value>) {
        let mut sql = String::new();
        let mut values = vec![first];
        for (key, value) in &filter.equals {
            sql.push_str(" AND CAST(json_extract(d.metadata, ?) AS TEXT) = ?");
            values.push(format!("$.\"{key}\"").into());
            values.push(value.clone().into());
        }
        (sql, values)
    }

    /// The collection's vectors, from the cache while the collection is unchanged.
    fn dense_index(&self, collection: i64, generation: i64, dimensions: usize) -> Result<Arc<DenseIndex>> {
        if let Some(index) = self.cache().get(&collection).filter(|i| i.generation == generation) {
            return Ok(index.clone());
        }
        let mut stmt = self
            .conn
            .prepare("SELECT chunk_id, vector FROM vectors WHERE collection_id = ? ORDER BY chunk_id")
            .context("reading vectors")?;
        let mut rows = stmt.query([collection]).context("reading vectors")?;
        let (mut ids, mut vectors) = (Vec::new(), Vec::new());
        while let Some(row) = rows.next().context("reading vectors")? {
            ids.push(row.get(0).context("reading vectors")?);
            let blob = row.get_ref(1).context("reading vectors")?.as_blob().map_err(|e| self.corrupt(e))?;
            read_vector(blob, dimensions, &mut vectors).map_err(|e| self.corrupt(e))?;
        }
        let hnsw = if ids.len() >= self.hnsw_min_chunks {
            Some(self.hnsw(collection, generation, dimensions, &vectors)?)
        } else {
            None
        };
        let index = Arc::new(DenseIndex { generation, ids, dimensions, vectors, hnsw });
        self.cache().insert(collection, index.clone());
        Ok(index)
    }

    /// The stored graph if it matches this generation and these parameters, else a new one,
    /// which is stored for the next process (unless the store is open read-only).
    fn hnsw(&self, collection: i64, generation: i64, dimensions: usize, vectors: &[f32]) -> Result<Hnsw> {
        let p = self.hnsw_params;
        let stored: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT graph FROM hnsw WHERE collection_id = ? AND generation = ? AND m = ? AND ef_construction = ?",
                params![collection, generation, p.m as i64, p.ef_construction as i64],
                |r| r.get(0),
            )
            .optional()
            .context("reading the HNSW graph")?;
        if let Some(graph) = stored {
            // A graph that does not fit is rebuilt rather than trusted.
            if let Ok(index) = Hnsw::from_parts(dimensions, p, vectors.to_vec(), &graph) {
                return Ok(index);
            }
        }
        let index = Hnsw::build(dimensions, vectors, p)?;
        if self.access == Access::Read {
            // Kept for this process only; the next one that may write saves it.
            return Ok(index);
        }
        self.conn
            .execute(
                "INSERT OR REPLACE INTO hnsw (collection_id, generation, m, ef_construction, graph) VALUES (?, ?, ?, ?, ?)",
                params![collection, generation, p.m as i64, p.ef_construction as i64, index.graph_to_bytes()],
            )
            .context("saving the HNSW graph")?;
        Ok(index)
    }

    /// SQLite's integrity check, FTS5's, and one vector per chunk. FTS5 runs its check as a
    /// write, so a store opened read-only skips it: the result says whether it ran.
    fn check_file(&self) -> Result<StoreCheck> {
        let bad = |reason: String| RagError::BadStore { path: self.path.clone(), reason };
        let integrity: String = self
            .conn
            .query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))
            .map_err(|e| bad(e.to_string()))?;
        if integrity != "ok" {
            return Err(bad(format!("it is damaged: {integrity}")));
        }
        let full_text = self.access != Access::Read;
        if full_text {
            self.conn
                .execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)", [])
                .map_err(|e| bad(format!("the full-text index does not match the chunks: {e}")))?;
        }
        let orphans: i64 = self
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM chunks WHERE id NOT IN (SELECT chunk_id FROM vectors))
                      + (SELECT count(*) FROM vectors WHERE chunk_id NOT IN (SELECT id FROM chunks))
                      + (SELECT count(*) FROM chunks WHERE document_id NOT IN (SELECT id FROM documents))",
                [],
                |r| r.get(0),
            )
            .map_err(|e| bad(e.to_string()))?;
        if orphans != 0 {
            return Err(bad(format!("{orphans} chunks or vectors have lost their other half")));
        }
        Ok(StoreCheck { full_text })
    }

    /// The cache, even if a panic elsewhere poisoned its lock: it holds only copies.
    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<DenseIndex>>> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn corrupt(&self, reason: impl std::fmt::Display) -> RagError {
        RagError::BadStore {
            path: self.path.clone(),
            reason: format!("a stored vector is damaged: {reason}"),
        }
    }
}

/// Whether the connection can read the schema (opening is lazy: failures show at the first read).
fn readable(conn: &Connection) -> bool {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)).is_ok()
}

/// SQLite's write-ahead log of the store at `path`.
fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// `file:PATH?immutable=1`, with every byte of the path that could be read as URI syntax
/// escaped.
fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut uri = String::from("file:");
    for &byte in absolute.as_os_str().as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'_' | b'-' | b'~' => {
                uri.push(byte as char)
            }
            _ => uri.push_str(&format!("%{byte:02X}")),
        }
    }
    uri + "?immutable=1"
}

/// Appends a little-endian f32 blob of `dimensions` values to `out`.
fn read_vector(blob: &[u8], dimensions: usize, out: &mut Vec<f32>) -> std::result::Result<(), String> {
    if blob.len() != dimensions * 4 {
        return Err(format!("{} bytes where {} were expected", blob.len(), dimensions * 4));
    }
    out.extend(blob.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
    Ok(())
}

impl VectorStore for SqliteStore {
    fn ensure_collection(&mut self, name: &str, embedder: &str, dimensions: usize) -> Result<CollectionInfo> {
        check_new_collection(name, embedder, dimensions)?;
        match self.collection_row(name) {
            Ok((id, stored, stored_dimensions, _)) => {
                if stored != embedder || stored_dimensions != dimensions {
                    return Err(RagError::EmbedderMismatch {
                        collection: name.to_owned(),
                        stored,
                        stored_dimensions,
                        given: embedder.to_owned(),
                        given_dimensions: dimensions,
                    });
                }
                self.info(id, name.to_owned(), stored, dimensions)
            }
            Err(RagError::NoCollection(_)) => {
                self.conn
                    .execute(
                        "INSERT INTO collections (name, embedder, dimensions) VALUES (?, ?, ?)",
                        params![name, embedder, dimensions as i64],
                    )
                    .context("creating a collection")?;
                self.collection(name)
            }
            Err(other) => Err(other),
        }
    }

    fn collection(&self, name: &str) -> Result<CollectionInfo> {
        let (id, embedder, dimensions, _) = self.collection_row(name)?;
        self.info(id, name.to_owned(), embedder, dimensions)
    }

    fn collections(&self) -> Result<Vec<CollectionInfo>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, embedder, dimensions FROM collections ORDER BY name")
            .context("listing collections")?;
        let rows: Vec<(i64, String, String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .and_then(|rows| rows.collect())
            .context("listing collections")?;
        rows.into_iter()
            .map(|(id, name, embedder, dims)| self.info(id, name, embedder, dims as usize))
            .collect()
    }

    fn remove_collection(&mut self, name: &str) -> Result<()> {
        let (id, ..) = self.collection_row(name)?;
        let tx = self.conn.transaction().context("removing a collection")?;
        let remove = "
            DELETE FROM vectors WHERE collection_id = ?1;
            DELETE FROM chunks WHERE document_id IN (SELECT id FROM documents WHERE collection_id = ?1);
            DELETE FROM documents WHERE collection_id = ?1;
            DELETE FROM hnsw WHERE collection_id = ?1;
            DELETE FROM collections WHERE id = ?1;";
        for statement in remove.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            tx.execute(statement, [id]).context("removing a collection")?;
        }
        tx.commit().context("removing a collection")?;
        self.cache().remove(&id);
        Ok(())
    }

    fn document_hashes(&self, collection: &str) -> Result<HashMap<String, String>> {
        let (id, ..) = self.collection_row(collection)?;
        let mut stmt = self
            .conn
            .prepare("SELECT path, hash FROM documents WHERE collection_id = ?")
            .context("reading documents")?;
        let rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?))).context("reading documents")?;
        rows.collect::<rusqlite::Result<_>>().context("reading documents")
    }

    fn put_document(
        &mut self,
        collection: &str,
        document: &NewDocument,
        chunks: &[(Chunk, Vec<f32>)],
    ) -> Result<()> {
        let (id, _, dimensions, _) = self.collection_row(collection)?;
        let blobs: Vec<Vec<u8>> = unit_vectors(document, chunks, dimensions)?
            .iter()
            .map(|unit| unit.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .context("storing a document")?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM documents WHERE collection_id = ? AND path = ?",
                params![id, document.path],
                |r| r.get(0),
            )
            .optional()
            .context("storing a document")?;
        let metadata = document.metadata.to_string();
        let document_id = match existing {
            Some(doc) => {
                Self::delete_chunks(&tx, doc)?;
                tx.execute(
                    "UPDATE documents SET hash = ?, metadata = ? WHERE id = ?",
                    params![document.hash, metadata, doc],
                )
                .context("storing a document")?;
                doc
            }
            None => {
                tx.execute(
                    "INSERT INTO documents (collection_id, path, hash, metadata) VALUES (?, ?, ?, ?)",
                    params![id, document.path, document.hash, metadata],
                )
                .context("storing a document")?;
                tx.last_insert_rowid()
            }
        };
        {
            let mut insert_chunk = tx
                .prepare_cached("INSERT INTO chunks (document_id, ord, text, unit, position, heading) VALUES (?, ?, ?, ?, ?, ?)")
                .context("storing chunks")?;
            let mut insert_vector = tx
                .prepare_cached("INSERT INTO vectors (chunk_id, collection_id, vector) VALUES (?, ?, ?)")
                .context("storing vectors")?;
            for (ord, ((chunk, _), blob)) in chunks.iter().zip(&blobs).enumerate() {
                let (unit, position) = position_columns(chunk.position);
                let heading = serde_json::to_string(&chunk.heading).unwrap_or_else(|_| "[]".into());
                insert_chunk
                    .execute(params![document_id, ord as i64, chunk.text, unit, position, heading])
                    .context("storing chunks")?;
                insert_vector
                    .execute(params![tx.last_insert_rowid(), id, blob])
                    .context("storing vectors")?;
            }
        }
        tx.execute("UPDATE collections SET generation = generation + 1 WHERE id = ?", [id])
            .context("storing a document")?;
        tx.commit().context("storing a document")
    }

    fn remove_document(&mut self, collection: &str, path: &str) -> Result<bool> {
        let (id, ..) = self.collection_row(collection)?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .context("removing a document")?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM documents WHERE collection_id = ? AND path = ?",
                params![id, path],
                |r| r.get(0),
            )
            .optional()
            .context("removing a document")?;
        let Some(doc) = existing else { return Ok(false) };
        Self::delete_chunks(&tx, doc)?;
        tx.execute("DELETE FROM documents WHERE id = ?", [doc]).context("removing a document")?;
        tx.execute("UPDATE collections SET generation = generation + 1 WHERE id = ?", [id])
            .context("removing a document")?;
        tx.commit().context("removing a document")?;
        Ok(true)
    }

    fn dense_search(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<(ChunkId, f32)>> {
        let (id, _, dimensions, generation) = self.collection_row(collection)?;
        let query = unit_query(query, dimensions, collection)?;
        if filter.is_empty() {
            let index = self.dense_index(id, generation, dimensions)?;
            if let Some(hnsw) = &index.hnsw {
                let found = hnsw.search(&query, k)?;
                return Ok(found.into_iter().map(|(node, s)| (index.ids[node as usize], s)).collect());
            }
            let scores = index
                .ids
                .iter()
                .zip(index.vectors.chunks_exact(index.dimensions))
                .map(|(&c, v)| (c, dot(&query, v)));
            return Ok(top_k(scores, k));
        }
        let (conditions, values) = Self::filter_sql(filter, id.into());
        let sql = format!(
            "SELECT v.chunk_id, v.vector FROM vectors v JOIN chunks c ON c.id = v.chunk_id
             JOIN documents d ON d.id = c.document_id WHERE v.collection_id = ?{conditions}"
        );
        let mut stmt = self.conn.prepare(&sql).context("searching vectors")?;
        let mut rows = stmt.query(params_from_iter(values)).context("searching vectors")?;
        let mut scored = Vec::new();
        let mut buffer = Vec::with_capacity(dimensions);
        while let Some(row) = rows.next().context("searching vectors")? {
            buffer.clear();
            let blob = row.get_ref(1).context("searching vectors")?.as_blob().map_err(|e| self.corrupt(e))?;
            read_vector(blob, dimensions, &mut buffer).map_err(|e| self.corrupt(e))?;
            scored.push((row.get(0).context("searching vectors")?, dot(&query, &buffer)));
        }
        Ok(top_k(scored, k))
    }

    fn text_search(
        &self,
        collection: &str,
        query: &str,
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<(ChunkId, f32)>> {
        let (id, ..) = self.collection_row(collection)?;
        // Words only, each quoted, any of them: FTS5's own query syntax would turn a user's
        // punctuation into errors.
        let words: Vec<String> = query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| format!("\"{w}\""))
            .collect();
        if words.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let (conditions, mut values) = Self::filter_sql(filter, words.join(" OR ").into());
        values.push(id.into());
        values.push((k as i64).into());
        // The filter's parameters come between the query and the collection.
        let sql = format!(
            "SELECT c.id, -bm25(chunks_fts, 1.0, 0.5) FROM chunks_fts
             JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.document_id
             WHERE chunks_fts MATCH ?{conditions} AND d.collection_id = ?
             ORDER BY bm25(chunks_fts, 1.0, 0.5) LIMIT ?"
        );
        let mut stmt = self.conn.prepare(&sql).context("searching text")?;
        let rows = stmt
            .query_map(params_from_iter(values), |r| Ok((r.get(0)?, r.get::<_, f64>(1)? as f32)))
            .context("searching text")?;
        rows.collect::<rusqlite::Result<_>>().context("searching text")
    }

    fn chunks(&self, ids: &[ChunkId]) -> Result<Vec<StoredChunk>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.path, c.text, c.unit, c.position, c.heading, d.metadata
                 FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ?",
            )
            .context("reading chunks")?;
        ids.iter()
            .map(|&id| {
                let row = stmt
                    .query_row([id], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, String>(5)?,
                        ))
                    })
                    .optional()
                    .context("reading chunks")?
                    .ok_or_else(|| RagError::invalid("chunk id", format!("{id} is not in the store")))?;
                let (path, text, unit, position, heading, metadata) = row;
                let position = position_from(&unit, position)
                    .ok_or_else(|| self.corrupt("a chunk position is out of range"))?;
                let heading = serde_json::from_str(&heading).map_err(|e| self.corrupt(e))?;
                let metadata: Value = serde_json::from_str(&metadata).map_err(|e| self.corrupt(e))?;
                Ok(StoredChunk { id, path, text, position, heading, metadata })
            })
            .collect()
    }

    fn vectors(&self, ids: &[ChunkId]) -> Result<Vec<Vec<f32>>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT v.vector, c.dimensions FROM vectors v JOIN collections c ON c.id = v.collection_id
                 WHERE v.chunk_id = ?",
            )
            .context("reading vectors")?;
        ids.iter()
            .map(|&id| {
                let (blob, dimensions): (Vec<u8>, i64) = stmt
                    .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .context("reading vectors")?
                    .ok_or_else(|| RagError::invalid("chunk id", format!("{id} is not in the store")))?;
                let mut out = Vec::with_capacity(dimensions as usize);
                read_vector(&blob, dimensions as usize, &mut out).map_err(|e| self.corrupt(e))?;
                Ok(out)
            })
            .collect()
    }

    fn documents(&self, collection: &str, each: &mut dyn FnMut(StoredDocument) -> Result<()>) -> Result<()> {
        let (id, _, dimensions, _) = self.collection_row(collection)?;
        let mut list = self
            .conn
            .prepare("SELECT id, path, hash, metadata FROM documents WHERE collection_id = ? ORDER BY path")
            .context("reading documents")?;
        let documents: Vec<(i64, String, String, String)> = list
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .and_then(|rows| rows.collect())
            .context("reading documents")?;
        let mut read_chunks = self
            .conn
            .prepare(
                "SELECT c.text, c.unit, c.position, c.heading, v.vector FROM chunks c
                 JOIN vectors v ON v.chunk_id = c.id WHERE c.document_id = ? ORDER BY c.ord",
            )
            .context("reading chunks")?;
        for (document_id, path, hash, metadata) in documents {
            let mut rows = read_chunks.query([document_id]).context("reading chunks")?;
            let mut chunks = Vec::new();
            while let Some(r) = rows.next().context("reading chunks")? {
                let unit: String = r.get(1).context("reading chunks")?;
                let position = position_from(&unit, r.get(2).context("reading chunks")?)
                    .ok_or_else(|| self.corrupt("a chunk position is out of range"))?;
                let heading: String = r.get(3).context("reading chunks")?;
                let heading = serde_json::from_str(&heading).map_err(|e| self.corrupt(e))?;
                let mut vector = Vec::with_capacity(dimensions);
                let blob = r.get_ref(4).context("reading vectors")?.as_blob().map_err(|e| self.corrupt(e))?;
                read_vector(blob, dimensions, &mut vector).map_err(|e| self.corrupt(e))?;
                chunks.push((Chunk { text: r.get(0).context("reading chunks")?, position, heading }, vector));
            }
            let metadata = serde_json::from_str(&metadata).map_err(|e| self.corrupt(e))?;
            each(StoredDocument { path, hash, metadata, chunks })?;
        }
        Ok(())
    }

    fn check(&self) -> Result<StoreCheck> {
        self.check_file()
    }

    fn size(&self) -> Result<u64> {
        // The log holds committed pages not yet copied into the file.
        let bytes = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        Ok(bytes(&self.path) + bytes(&wal_path(&self.path)))
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}
