//! The PostgreSQL store: the same collections, documents and chunks as the SQLite file, in a
//! `temper` schema of a database the user names by URL. Vectors are pgvector columns with one
//! HNSW index per collection (inner product over unit vectors, so scores are the same cosine
//! similarities as on SQLite), built once after a collection's first load and kept up to date
//! by every insert after that; the keyword side is PostgreSQL's own full-text search (English
//! stemming, a GIN index over `tsvector`s), ranked by BM25 computed from those `tsvector`s as
//! FTS5 computes it on SQLite (`ts_rank` has no inverse document frequency: on SciFact it
//! scores 0.11 nDCG@10 lower). Every write is one transaction, and every write is idempotent,
//! so one cut off by a lost connection is retried whole.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use pgvector::Vector;
use serde_json::Value;
use tokio_postgres::config::Host;
use tokio_postgres::{Config, NoTls};

use super::{
    check_new_collection, position_columns, position_from, unit_query, unit_vectors, Access, ChunkId,
    CollectionInfo, Filter, NewDocument, StoreCheck, StoredChunk, StoredDocument, VectorStore,
};
use crate::chunk::Chunk;
use crate::{RagError, Result};

/// Bumped with each migration; a database migrated by a newer Temper is refused, not misread.
const SCHEMA_VERSION: i32 = 1;

/// `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &["
CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA IF NOT EXISTS temper;
CREATE TABLE temper.schema_version (version integer NOT NULL);
INSERT INTO temper.schema_version VALUES (0);
CREATE TABLE temper.collections (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    embedder text NOT NULL,
    dimensions integer NOT NULL
);
CREATE TABLE temper.documents (
    id bigserial PRIMARY KEY,
    collection_id bigint NOT NULL REFERENCES temper.collections(id) ON DELETE CASCADE,
    path text NOT NULL,
    hash text NOT NULL,
    metadata jsonb NOT NULL,
    UNIQUE (collection_id, path)
);
-- A vector column of no fixed size holds every collection's; each collection's HNSW index is a
-- partial index over its rows cast to its dimensions.
CREATE TABLE temper.chunks (
    id bigserial PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES temper.documents(id) ON DELETE CASCADE,
    collection_id bigint NOT NULL REFERENCES temper.collections(id) ON DELETE CASCADE,
    ord integer NOT NULL,
    text text NOT NULL,
    unit text NOT NULL,
    position bigint NOT NULL,
    heading text NOT NULL,
    -- Words in the text, stop words included (as FTS5 counts them): BM25's document length.
    length integer NOT NULL,
    embedding vector NOT NULL,
    -- Headings count less than the text, as on SQLite (weight B against A).
    words tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', text), 'A') || setweight(to_tsvector('english', heading), 'B')
    ) STORED
);
CREATE INDEX chunks_by_document ON temper.chunks (document_id);
CREATE INDEX chunks_by_collection ON temper.chunks (collection_id);
CREATE INDEX chunks_words ON temper.chunks USING gin (words);
"];

/// Taken (for the transaction) by migrations and by collection changes, so that several
/// processes starting at once migrate once and create each collection's index once.
const SCHEMA_LOCK: i64 = 0x7465_6d70_6572; // "temper"

/// pgvector indexes `vector` columns of at most this many dimensions; larger collections are
/// searched exactly.
const MAX_INDEXED_DIMENSIONS: usize = 2000;

/// Candidates the HNSW search keeps (`hnsw.ef_search`, set for each session) when `k` is
/// smaller: recall@10 0.99 at 100k vectors in docs/benchmarks.md. pgvector allows at most
/// 1000; a larger `k` is searched exactly.
const EF_SEARCH: usize = 100;
const MAX_EF_SEARCH: usize = 1000;

/// The PostgreSQL store.
pub struct PostgresStore {
    /// Drives the pool's connections; the store's methods are synchronous (as SQLite's are) and
    /// wait on it, from plain threads and async tasks alike.
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// The URL without its password: what messages show.
    shown: String,
}

impl PostgresStore {
    /// Opens the store in the database at `url` (`postgres://user@host:port/db`), creating its
    /// schema if `access` is [`Access::Create`] and migrating an older one unless it is
    /// [`Access::Read`]. A read-only store runs every statement in read-only transactions.
    pub fn open(url: &str, access: Access) -> Result<PostgresStore> {
        let shown = redact(url);
        let bad = |reason: String| RagError::BadStore { path: PathBuf::from(&shown), reason };
        let mut config = Config::from_str(url).map_err(|e| bad(format!("the URL is not valid: {e}")))?;
        complete_config(&mut config, access);
        let manager =
            Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("temper-rag-postgres")
            .enable_all()
            .build()
            .map_err(|e| bad(format!("cannot start its connection thread: {e}")))?;
        let pool = {
            let _entered = runtime.enter();
            Pool::builder(manager)
                .max_size(4)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .create_timeout(Some(Duration::from_secs(15)))
                .build()
                .map_err(|e| bad(e.to_string()))?
        };
        let store = PostgresStore { runtime: Some(runtime), pool, shown };
        store.prepare_schema(access)?;
        Ok(store)
    }

    /// Checks the schema version, and creates or migrates the schema where `access` allows.
    fn prepare_schema(&self, access: Access) -> Result<()> {
        let bad = |reason: String| RagError::BadStore { path: PathBuf::from(&self.shown), reason };
        self.block_on(async {
            let mut client = self.pool.get().await.map_err(|e| bad(connect_error(&e)))?;
            let version = schema_version(&client).await.map_err(|e| bad(e.to_string()))?;
            match version {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(bad(format!(
                        "it was made by a newer Temper (schema {v}; this one reads {SCHEMA_VERSION})"
                    )))
                }
                Some(SCHEMA_VERSION) => return Ok(()),
                None if access != Access::Create => {
                    return Err(RagError::NoStore { path: PathBuf::from(&self.shown) })
                }
                Some(v) if access == Access::Read => {
                    return Err(bad(format!(
                        "its schema is version {v}, older than this Temper's {SCHEMA_VERSION}; \
                         `temper rag ingest` into it migrates it"
                    )))
                }
                _ => {}
            }
            let tx = client.transaction().await.map_err(|e| bad(e.to_string()))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
                .await
                .map_err(|e| bad(e.to_string()))?;
            // Another process may have migrated while this one waited for the lock.
            let from = schema_version(&tx).await.map_err(|e| bad(e.to_string()))?.unwrap_or(0);
            for (done, migration) in MIGRATIONS.iter().enumerate().skip(from as usize) {
                tx.batch_execute(migration).await.map_err(|e| bad(migration_error(done + 1, &e)))?;
                tx.execute("UPDATE temper.schema_version SET version = $1", &[&(done as i32 + 1)])
                    .await
                    .map_err(|e| bad(e.to_string()))?;
            }
            tx.commit().await.map_err(|e| bad(e.to_string()))
        })
    }

    /// Runs `work` on the store's runtime and waits for it. The future is polled on this thread
    /// (so it may borrow), while the connections it talks to run on the runtime's own thread:
    /// this works inside another runtime's task too, where `Runtime::block_on` would panic.
    fn block_on<F: Future>(&self, work: F) -> F::Output {
        let runtime = self.runtime.as_ref().expect("the runtime lives as long as the store");
        let _entered = runtime.enter();
        futures::executor::block_on(work)
    }

    /// Runs `work` with a pooled connection; when the connection was lost (the server
    /// restarted, a proxy dropped it), runs it once more on a new one. Only for work that is
    /// safe to repeat: reads, and writes that are one idempotent transaction.
    fn with_client<T>(
        &self,
        context: &str,
        work: impl AsyncFn(&mut deadpool_postgres::Client) -> std::result::Result<T, StepError>,
    ) -> Result<T> {
        self.block_on(async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut client =
                    self.pool.get().await.map_err(|e| self.failed(context, connect_error(&e)))?;
                match work(&mut client).await {
                    Ok(value) => return Ok(value),
                    Err(StepError::Postgres(e)) if attempt == 1 && connection_lost(&e) => {
                        // What ended this connection (a restart, a proxy, an administrator)
                        // most likely ended the idle ones too: the retry gets a new one.
                        drop(client);
                        self.pool.retain(|_, _| false);
                        continue;
                    }
                    Err(StepError::Postgres(e)) => return Err(self.failed(context, describe(&e))),
                    Err(StepError::Rag(e)) => return Err(e),
                }
            }
        })
    }

    fn failed(&self, context: &str, reason: String) -> RagError {
        RagError::Database { store: self.shown.clone(), context: context.to_owned(), reason }
    }

    /// The collection's id and dimensions.
    async fn collection_row(
        client: &impl deadpool_postgres::GenericClient,
        name: &str,
    ) -> std::result::Result<(i64, usize), StepError> {
        let row = client
            .query_opt("SELECT id, dimensions FROM temper.collections WHERE name = $1", &[&name])
            .await?
            .ok_or_else(|| RagError::NoCollection(name.to_owned()))?;
        Ok((row.get(0), row.get::<_, i32>(1) as usize))
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Without waiting: a store dropped inside an async task must not block it.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A failed step of a store method: the database's error (which may be retried) or the store's own.
enum StepError {
    Postgres(tokio_postgres::Error),
    Rag(RagError),
}

impl From<tokio_postgres::Error> for StepError {
    fn from(e: tokio_postgres::Error) -> Self {
        StepError::Postgres(e)
    }
}

impl From<RagError> for StepError {
    fn from(e: RagError) -> Self {
        StepError::Rag(e)
    }
}

/// The schema version, or `None` in a database with no Temper schema.
async fn schema_version(
    client: &impl deadpool_postgres::GenericClient,
) -> std::result::Result<Option<i32>, tokio_postgres::Error> {
    // A scan of the catalog table rather than to_regclass, whose cached lookup can miss a
    // schema that another process committed while this one waited for the migration lock.
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_tables WHERE schemaname = 'temper' AND tablename = 'schema_version')",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client.query_opt("SELECT version FROM temper.schema_version", &[]).await?;
    Ok(Some(row.map_or(0, |r| r.get(0))))
}

/// What libpq would fill in that tokio-postgres leaves to the caller: the password from
/// `PGPASSWORD` or the password file, the user from `PGUSER` or the login name, a host, and
/// timeouts; a read-only store's sessions refuse writes.
fn complete_config(config: &mut Config, access: Access) {
    if config.get_user().is_none() {
        if let Some(user) = std::env::var("PGUSER").ok().or_else(|| std::env::var("USER").ok()) {
            config.user(&user);
        }
    }
    if config.get_hosts().is_empty() {
        config.host(std::env::var("PGHOST").unwrap_or_else(|_| "localhost".into()));
    }
    if config.get_password().is_none() {
        let from_file = || password_file().and_then(|file| password_from_file(config, &file));
        if let Some(password) = std::env::var("PGPASSWORD").ok().or_else(from_file) {
            config.password(password);
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("temper");
    }
    let mut options = format!("-c hnsw.ef_search={EF_SEARCH}");
    if access == Access::Read {
        options.push_str(" -c default_transaction_read_only=on");
    }
    config.options(&options);
}

/// libpq's password file: `PGPASSFILE`, else `~/.pgpass`.
fn password_file() -> Option<PathBuf> {
    std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pgpass")))
}

/// The password for this connection in a password file (`host:port:db:user:password`, `*`
/// matching anything, `\` escaping), as libpq reads it.
fn password_from_file(config: &Config, file: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let host = match config.get_hosts().first()? {
        Host::Tcp(host) => host.clone(),
        Host::Unix(_) => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = config.get_user().unwrap_or_default().to_owned();
    let db = config.get_dbname().map_or_else(|| user.clone(), str::to_owned);
    let wanted = [host.as_str(), port.as_str(), db.as_str(), user.as_str()];
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let fields = split_pgpass(line);
        let matches = fields.len() == 5 && fields.iter().zip(wanted).all(|(f, w)| f == "*" || f == w);
        matches.then(|| fields[4].clone())
    })
}

/// A password-file line's fields: `:` separates, `\` escapes the next character.
fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().unwrap().extend(chars.next()),
            ':' => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// The URL as it may be shown: no password, in the user part or among the parameters.
pub fn redact(url: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                    format!("{user}@{host}")
                }
                None => authority.to_owned(),
            };
            match path {
                Some(path) => format!("{scheme}://{authority}/{path}"),
                None => format!("{scheme}://{authority}"),
            }
        }
        None => base.to_owned(),
    };
    let kept: Vec<&str> = query.split('&').filter(|p| !p.is_empty() && !p.starts_with("password=")).collect();
    match kept.is_empty() {
        true => base,
        false => format!("{base}?{}", kept.join("&")),
    }
}

/// Whether `e` means the connection is gone (so the work never reached, or never finished on,
/// the server), as opposed to the server refusing the statement.
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.as_db_error().is_some_and(|db| {
            // Terminated by an administrator or a server shutdown.
            matches!(db.code().code(), "57P01" | "57P02" | "57P03")
        })
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// The database's message with its detail and hint, which tokio-postgres's Display leaves out.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = db.message().to_owned();
            for extra in [db.detail(), db.hint()].into_iter().flatten() {
                text.push_str(&format!(" ({extra})"));
            }
            text
        }
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

fn connect_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => format!("cannot connect: {}", describe(e)),
        deadpool_postgres::PoolError::Timeout(_) => "cannot connect: no answer within 15 s".to_owned(),
        other => format!("cannot connect: {other}"),
    }
}

fn migration_error(version: usize, e: &tokio_postgres::Error) -> String {
    let reason = describe(e);
    if reason.contains("extension \"vector\"") {
        return format!(
            "the server has no pgvector extension ({reason}); install it (Debian: postgresql-NN-pgvector) \
             or ask the database's administrator to"
        );
    }
    format!("cannot create schema version {version}: {reason}")
}

/// The words of `text` as FTS5's tokenizer splits it: runs of letters and digits.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty())
}

/// SQL conditions on `d.metadata` for a filter, numbered from `$first`, and their values.
fn filter_sql(filter: &Filter, first: usize) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut values = Vec::new();
    for (i, (key, value)) in filter.equals.iter().enumerate() {
        let n = first + 2 * i;
        // jsonb_extract_path_text gives a number or a boolean as its JSON text, as SQLite's
        // json_extract + CAST does for numbers.
        sql.push_str(&format!(" AND jsonb_extract_path_text(d.metadata, ${n}) = ${}", n + 1));
        values.push(key.clone());
        values.push(value.clone());
    }
    (sql, values)
}

/// Parameters for a query: the fixed ones, then the filter's.
fn with_filter<'a>(
    fixed: Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)>,
    filter_values: &'a [String],
) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
    let mut params = fixed;
    params.extend(filter_values.iter().map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)));
    params
}

impl VectorStore for PostgresStore {
    fn ensure_collection(&mut self, name: &str, embedder: &str, dimensions: usize) -> Result<CollectionInfo> {
        check_new_collection(name, embedder, dimensions)?;
        self.with_client("creating a collection", async |client| {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await?;
            let row = tx
                .query_opt("SELECT embedder, dimensions FROM temper.collections WHERE name = $1", &[&name])
                .await?;
            if let Some(row) = row {
                let (stored, stored_dimensions): (String, i32) = (row.get(0), row.get(1));
                if stored != embedder || stored_dimensions as usize != dimensions {
                    return Err(RagError::EmbedderMismatch {
                        collection: name.to_owned(),
                        stored,
                        stored_dimensions: stored_dimensions as usize,
                        given: embedder.to_owned(),
                        given_dimensions: dimensions,
                    }
                    .into());
                }
                return Ok(());
            }
            tx.execute(
                "INSERT INTO temper.collections (name, embedder, dimensions) VALUES ($1, $2, $3)",
                &[&name, &embedder, &(dimensions as i32)],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })?;
        self.collection(name)
    }

    fn build_index(&mut self, collection: &str) -> Result<()> {
        self.with_client("building the vector index", async |client| {
            let tx = client.transaction().await?;
            // One builder at a time; the others find the index made.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await?;
            let (id, dimensions) = Self::collection_row(&tx, collection).await?;
            if dimensions <= MAX_INDEXED_DIMENSIONS {
                // The graph is built in memory when it fits, several times faster than on
                // disk: at least 1 GB for this transaction (a server set higher keeps its own).
                // The id and the size are numbers of ours, not user text, and the planner needs
                // them literal to match a query to this partial index.
                tx.batch_execute(&format!(
                    "SELECT set_config('maintenance_work_mem', '1GB', true)
                     WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes('1GB');
                     CREATE INDEX IF NOT EXISTS chunks_dense_{id} ON temper.chunks
                     USING hnsw ((embedding::vector({dimensions})) vector_ip_ops) WHERE collection_id = {id}"
                ))
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn collection(&self, name: &str) -> Result<CollectionInfo> {
        self.collections()?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| RagError::NoCollection(name.to_owned()))
    }

    fn collections(&self) -> Result<Vec<CollectionInfo>> {
        self.with_client("listing collections", async |client| {
            let rows = client
                .query(
                    "SELECT c.name, c.embedder, c.dimensions,
                            (SELECT count(*) FROM temper.documents d WHERE d.collection_id = c.id),
                            (SELECT count(*) FROM temper.chunks k WHERE k.collection_id = c.id)
                     FROM temper.collections c ORDER BY c.name",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| CollectionInfo {
                    name: r.get(0),
                    embedder: r.get(1),
                    dimensions: r.get::<_, i32>(2) as usize,
                    documents: r.get::<_, i64>(3) as usize,
                    chunks: r.get::<_, i64>(4) as usize,
                })
                .collect())
        })
    }

    fn remove_collection(&mut self, name: &str) -> Result<()> {
        self.with_client("removing a collection", async |client| {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await?;
            let (id, _) = Self::collection_row(&tx, name).await?;
            tx.execute("DELETE FROM temper.collections WHERE id = $1", &[&id]).await?;
            tx.batch_execute(&format!("DROP INDEX IF EXISTS temper.chunks_dense_{id}")).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn document_hashes(&self, collection: &str) -> Result<HashMap<String, String>> {
        self.with_client("reading documents", async |client| {
            let (id, _) = Self::collection_row(&*client, collection).await?;
            let rows = client
                .query("SELECT path, hash FROM temper.documents WHERE collection_id = $1", &[&id])
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn put_document(
        &mut self,
        collection: &str,
        document: &NewDocument,
        chunks: &[(Chunk, Vec<f32>)],
    ) -> Result<()> {
        let (_, dimensions) = self.with_client("storing a document", async |client| {
            Self::collection_row(&*client, collection).await
        })?;
        let units = unit_vectors(document, chunks, dimensions)?;
        let mut ords = Vec::with_capacity(chunks.len());
        let (mut texts, mut units_of, mut positions, mut headings) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut lengths = Vec::with_capacity(chunks.len());
        for (ord, (chunk, _)) in chunks.iter().enumerate() {
            let (unit, position) = position_columns(chunk.position);
            ords.push(ord as i32);
            texts.push(chunk.text.as_str());
            units_of.push(unit);
            positions.push(position);
            headings.push(serde_json::to_string(&chunk.heading).unwrap_or_else(|_| "[]".into()));
            lengths.push(words(&chunk.text).count() as i32);
        }
        let vectors: Vec<Vector> = units.into_iter().map(Vector::from).collect();
        // One transaction: the document with all its chunks, or (killed, cut off) nothing. An
        // upsert and a delete of the old chunks make it safe to run again, and make two
        // ingesters of the same file wait for each other on the document's row.
        self.with_client("storing a document", async |client| {
            let tx = client.transaction().await?;
            let (collection_id, _) = Self::collection_row(&tx, collection).await?;
            let document_id: i64 = tx
                .query_one(
                    "INSERT INTO temper.documents (collection_id, path, hash, metadata) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (collection_id, path) DO UPDATE SET hash = excluded.hash, metadata = excluded.metadata
                     RETURNING id",
                    &[&collection_id, &document.path, &document.hash, document.metadata],
                )
                .await?
                .get(0);
            tx.execute("DELETE FROM temper.chunks WHERE document_id = $1", &[&document_id]).await?;
            tx.execute(
                "INSERT INTO temper.chunks
                     (document_id, collection_id, ord, text, unit, position, heading, length, embedding)
                 SELECT $1, $2, * FROM unnest(
                     $3::integer[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::integer[], $9::vector[])",
                &[&document_id, &collection_id, &ords, &texts, &units_of, &positions, &headings, &lengths, &vectors],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn remove_document(&mut self, collection: &str, path: &str) -> Result<bool> {
        self.with_client("removing a document", async |client| {
            let (id, _) = Self::collection_row(&*client, collection).await?;
            let removed = client
                .execute("DELETE FROM temper.documents WHERE collection_id = $1 AND path = $2", &[&id, &path])
                .await?;
            Ok(removed > 0)
        })
    }

    fn dense_search(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<(ChunkId, f32)>> {
        self.with_client("searching vectors", async |client| {
            let (id, dimensions) = Self::collection_row(&*client, collection).await?;
            let query = Vector::from(unit_query(query, dimensions, collection)?);
            let limit = k as i64;
            let (conditions, values) = filter_sql(filter, 3);
            // The index answers unfiltered searches; with a filter (as on SQLite) the matching
            // chunks are scored exactly, which an expression the index does not cover makes
            // the planner do.
            let indexed = filter.is_empty() && dimensions <= MAX_INDEXED_DIMENSIONS && k <= MAX_EF_SEARCH;
            let distance = match indexed {
                true => format!("c.embedding::vector({dimensions}) <#> $1::vector({dimensions})"),
                false => "c.embedding <#> $1".to_owned(),
            };
            let sql = format!(
                "SELECT c.id, -({distance})::real FROM temper.chunks c JOIN temper.documents d ON d.id = c.document_id
                 WHERE c.collection_id = {id}{conditions} ORDER BY {distance} LIMIT $2"
            );
            let params = with_filter(vec![&query, &limit], &values);
            let rows = match k > EF_SEARCH && indexed {
                // The session's ef_search would return fewer than k.
                true => {
                    let tx = client.transaction().await?;
                    tx.batch_execute(&format!("SET LOCAL hnsw.ef_search = {k}")).await?;
                    let rows = tx.query(&sql, &params).await?;
                    tx.commit().await?;
                    rows
                }
                false => client.query(&sql, &params).await?,
            };
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn text_search(
        &self,
        collection: &str,
        query: &str,
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<(ChunkId, f32)>> {
        // Words only, any of them, as on SQLite: to_tsquery's own syntax would turn a user's
        // punctuation into errors.
        let query_words: Vec<&str> = words(query).collect();
        if query_words.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let (any_word, all_words) = (query_words.join(" | "), query_words.join(" "));
        self.with_client("searching text", async |client| {
            let (id, _) = Self::collection_row(&*client, collection).await?;
            let limit = k as i64;
            let (conditions, values) = filter_sql(filter, 4);
            // BM25 (k1 = 1.2, b = 0.75) as FTS5 scores it: a word's rarity over the whole
            // collection (every chunk holding a query word matches the query, so the matches
            // give each word's document count), its count in the chunk (heading words at half
            // weight, as on SQLite) against the chunk's length. The filter only picks among them.
            let sql = format!(
                "WITH query_words AS (
                     SELECT unnest(tsvector_to_array(to_tsvector('english', $2))) AS lexeme),
                 matches AS (
                     SELECT c.id, c.document_id, c.length, c.words FROM temper.chunks c
                     WHERE c.collection_id = {id} AND c.words @@ to_tsquery('english', $1)),
                 counts AS (
                     SELECT m.id, m.document_id, m.length, w.lexeme,
                            (SELECT count(*) FILTER (WHERE x = 'A') + 0.5 * count(*) FILTER (WHERE x = 'B')
                             FROM unnest(w.weights) x)::float8 AS tf
                     FROM matches m, unnest(m.words) w WHERE w.lexeme IN (SELECT lexeme FROM query_words)),
                 rarity AS (
                     SELECT lexeme, greatest(ln((n - count(*) + 0.5) / (count(*) + 0.5)), 1e-6) AS idf
                     FROM counts, (SELECT count(*)::float8 AS n FROM temper.chunks WHERE collection_id = {id}) total
                     GROUP BY lexeme, n),
                 average AS (
                     SELECT greatest(avg(length), 1)::float8 AS length FROM temper.chunks WHERE collection_id = {id})
                 SELECT c.id, sum(r.idf * c.tf * 2.2 / (c.tf + 1.2 * (0.25 + 0.75 * c.length / a.length)))::real AS score
                 FROM counts c JOIN rarity r USING (lexeme) CROSS JOIN average a
                      JOIN temper.documents d ON d.id = c.document_id
                 WHERE true{conditions}
                 GROUP BY c.id ORDER BY score DESC, c.id LIMIT $3"
            );
            let rows = client.query(&sql, &with_filter(vec![&any_word, &all_words, &limit], &values)).await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn chunks(&self, ids: &[ChunkId]) -> Result<Vec<StoredChunk>> {
        let rows = self.with_client("reading chunks", async |client| {
            Ok(client
                .query(
                    "SELECT c.id, d.path, c.text, c.unit, c.position, c.heading, d.metadata
                     FROM temper.chunks c JOIN temper.documents d ON d.id = c.document_id WHERE c.id = ANY($1)",
                    &[&ids],
                )
                .await?)
        })?;
        let mut found = HashMap::with_capacity(rows.len());
        for r in rows {
            let (id, unit, position, heading): (i64, String, i64, String) =
                (r.get(0), r.get(3), r.get(4), r.get(5));
            let position = position_from(&unit, position)
                .ok_or_else(|| self.corrupt("a chunk position is out of range"))?;
            let heading = serde_json::from_str(&heading).map_err(|e| self.corrupt(e))?;
            let metadata: Value = r.get(6);
            found.insert(id, StoredChunk { id, path: r.get(1), text: r.get(2), position, heading, metadata });
        }
        ids.iter()
            .map(|id| {
                found
                    .get(id)
                    .cloned()
                    .ok_or_else(|| RagError::invalid("chunk id", format!("{id} is not in the store")))
            })
            .collect()
    }

    fn vectors(&self, ids: &[ChunkId]) -> Result<Vec<Vec<f32>>> {
        let found: HashMap<i64, Vector> = self.with_client("reading vectors", async |client| {
            let rows =
                client.query("SELECT id, embedding FROM temper.chunks WHERE id = ANY($1)", &[&ids]).await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        ids.iter()
            .map(|id| {
                found
                    .get(id)
                    .map(|v| v.as_slice().to_vec())
                    .ok_or_else(|| RagError::invalid("chunk id", format!("{id} is not in the store")))
            })
            .collect()
    }

    fn documents(&self, collection: &str, each: &mut dyn FnMut(StoredDocument) -> Result<()>) -> Result<()> {
        let (id, _) = self.with_client("reading documents", async |client| {
            Self::collection_row(&*client, collection).await
        })?;
        let listed = self.with_client("reading documents", async |client| {
            let rows = client
                .query("SELECT id, path, hash, metadata FROM temper.documents WHERE collection_id = $1 ORDER BY path", &[&id])
                .await?;
            Ok(rows.iter().map(|r| (r.get::<_, i64>(0), r.get(1), r.get(2), r.get(3))).collect::<Vec<(i64, String, String, Value)>>())
        })?;
        for (document_id, path, hash, metadata) in listed {
            let rows = self.with_client("reading chunks", async |client| {
                Ok(client
                    .query(
                        "SELECT text, unit, position, heading, embedding FROM temper.chunks WHERE document_id = $1 ORDER BY ord",
                        &[&document_id],
                    )
                    .await?)
            })?;
            let mut chunks = Vec::with_capacity(rows.len());
            for r in rows {
                let position = position_from(&r.get::<_, String>(1), r.get(2))
                    .ok_or_else(|| self.corrupt("a chunk position is out of range"))?;
                let heading = serde_json::from_str(&r.get::<_, String>(3)).map_err(|e| self.corrupt(e))?;
                let vector: Vector = r.get(4);
                chunks.push((Chunk { text: r.get(0), position, heading }, vector.to_vec()));
            }
            each(StoredDocument { path, hash, metadata, chunks })?;
        }
        Ok(())
    }

    fn check(&self) -> Result<StoreCheck> {
        let problems: i64 = self.with_client("checking the store", async |client| {
            Ok(client
                .query_one(
                    "SELECT (SELECT count(*) FROM temper.chunks c JOIN temper.documents d ON d.id = c.document_id
                             WHERE d.collection_id <> c.collection_id)
                          + (SELECT count(*) FROM pg_index WHERE indrelid = 'temper.chunks'::regclass AND NOT indisvalid)",
                    &[],
                )
                .await?
                .get(0))
        })?;
        if problems != 0 {
            return Err(self.corrupt(format!("{problems} chunks or indexes do not match their collection")));
        }
        Ok(StoreCheck { full_text: true })
    }

    fn size(&self) -> Result<u64> {
        self.with_client("measuring the store", async |client| {
            let bytes: i64 = client
                .query_one(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'temper' AND c.relkind = 'r'",
                    &[],
                )
                .await?
                .get(0);
            Ok(bytes as u64)
        })
    }

    fn location(&self) -> String {
        self.shown.clone()
    }
}

impl PostgresStore {
    fn corrupt(&self, reason: impl std::fmt::Display) -> RagError {
        RagError::BadStore {
            path: PathBuf::from(&self.shown),
            reason: format!("a stored chunk is damaged: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact("postgres://ann:s3cret@db.example:5432/rag"), "postgres://ann@db.example:5432/rag");
        assert_eq!(
            redact("postgresql://ann@h/rag?sslmode=disable&password=x"),
            "postgresql://ann@h/rag?sslmode=disable"
        );
        assert_eq!(redact("postgres://a:b:c@h"), "postgres://a@h");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn password_file_lines_are_read_as_libpq_reads_them() {
        assert_eq!(split_pgpass(r"h:5432:*:ann:pa\:ss\\"), ["h", "5432", "*", "ann", r"pa:ss\"]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "# comment\nother:5432:*:ann:no\nh:*:rag:ann:yes\n").unwrap();
        let config = Config::from_str("postgres://ann@h:6000/rag").unwrap();
        assert_eq!(password_from_file(&config, &file).as_deref(), Some("yes"));
        let config = Config::from_str("postgres://bob@h:6000/rag").unwrap();
        assert_eq!(password_from_file(&config, &file), None);
    }

    #[test]
    fn filters_become_numbered_parameters() {
        let filter = Filter::parse(&["kind=text", "year=2020"]).unwrap();
        let (sql, values) = filter_sql(&filter, 3);
        assert_eq!(
            sql,
            " AND jsonb_extract_path_text(d.metadata, $3) = $4 AND jsonb_extract_path_text(d.metadata, $5) = $6"
        );
        assert_eq!(values, ["kind", "text", "year", "2020"]);
    }
}
