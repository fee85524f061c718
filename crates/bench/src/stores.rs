//! `temper-bench stores`: temper-rag's two stores, an SQLite file and PostgreSQL + pgvector, on
//! the same synthetic embeddings: ingest throughput (vectors computed beforehand), the latency of
//! one dense search at a time, and recall@k against exact search.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rayon::prelude::*;
use temper_rag::hnsw::HnswParams;
use temper_rag::store::{ChunkId, Filter, NewDocument};
use temper_rag::{Access, Chunk, Position, PostgresStore, SqliteStore, VectorStore};

use crate::ann;

/// The collection the bench fills, in both stores.
const COLLECTION: &str = "synthetic";

/// SqliteStore's default: smaller collections are scanned exactly. Set explicitly, so that the
/// report says which search it measured.
const SQLITE_HNSW_MIN_CHUNKS: usize = 20_000;

#[derive(clap::Args)]
pub struct Args {
    /// Chunks (vectors) in each store.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    #[arg(long, default_value_t = 384)]
    dimensions: usize,
    /// Queries, drawn like the vectors but not among them, searched one at a time.
    #[arg(long, default_value_t = 1_000)]
    queries: usize,
    /// Clusters the vectors gather around (as in `temper-bench vectors`).
    #[arg(long, default_value_t = 1_000)]
    clusters: usize,
    /// Norm of each vector's noise against its unit-length centre (as in `temper-bench vectors`).
    #[arg(long, default_value_t = 2.0)]
    spread: f32,
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Chunks per document: ingestion stores a file's chunks in one `put_document` call.
    #[arg(long, default_value_t = 10)]
    chunks_per_document: usize,
    /// The PostgreSQL database (a postgres:// URL) to measure next to SQLite; without it, SQLite
    /// alone. The bench's collection there (`synthetic`) is replaced.
    #[arg(long, value_name = "URL")]
    db: Option<String>,
}

/// One store's figures.
struct Measured {
    store: String,
    ingest: Duration,
    index: Duration,
    /// The first search, which on SQLite reads the vectors and builds the HNSW graph.
    first_search: Duration,
    /// Milliseconds per search after the first, sorted.
    latencies: Vec<f64>,
    recall: f64,
    bytes: u64,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let dim = args.dimensions;
    if [args.count, dim, args.queries, args.k, args.clusters, args.chunks_per_document].contains(&0) {
        bail!(
            "--count, --dimensions, --queries, --k, --clusters and --chunks-per-document must be at least 1"
        );
    }
    let (vectors, queries) = ann::clustered(args.count, args.queries, dim, args.clusters, args.spread);
    let start = Instant::now();
    // The truth is not timed: both cores take a share of the queries.
    let truth: Vec<Vec<u32>> = queries
        .par_chunks(dim * 16)
        .flat_map_iter(|some| ann::exact_neighbours(&vectors, some, dim, args.k))
        .collect();
    eprintln!(
        "{} vectors of {dim} dimensions, {} queries; exact top {} in {:.1} s",
        args.count,
        args.queries,
        args.k,
        start.elapsed().as_secs_f64()
    );

    let hnsw = HnswParams::default();
    let mut results = Vec::new();
    {
        let dir = tempfile::tempdir().context("creating a scratch directory for the SQLite store")?;
        let mut sqlite = SqliteStore::create(&dir.path().join("stores.db"))?;
        sqlite.set_hnsw(hnsw, SQLITE_HNSW_MIN_CHUNKS);
        let label = match args.count >= SQLITE_HNSW_MIN_CHUNKS {
            true => format!("SQLite, HNSW M={} efc={} ef={}", hnsw.m, hnsw.ef_construction, hnsw.ef_search),
            false => "SQLite, exact scan".to_owned(),
        };
        results.push(measure(&mut sqlite, label, &vectors, &queries, &truth, args)?);
    }
    if let Some(url) = &args.db {
        let mut postgres = PostgresStore::open(url, Access::Create)?;
        // pgvector's default m and ef_construction (temper-rag's index sets neither), and the
        // ef_search temper-rag sets: k, at least 100.
        let label = format!("PostgreSQL, pgvector HNSW m=16 efc=64 ef={}", args.k.max(100));
        results.push(measure(&mut postgres, label, &vectors, &queries, &truth, args)?);
    }

    println!(
        "rag stores: {} chunks × {dim} ({} clusters, spread {}), {} per document, {} queries one at a time, top {}\n",
        args.count, args.clusters, args.spread, args.chunks_per_document, args.queries, args.k
    );
    let width = results.iter().map(|m| m.store.chars().count()).max().unwrap_or(0);
    println!(
        "{:<width$} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "store", "chunks/s", "ingest s", "index s", "first s", "p50 ms", "p99 ms", "recall@k", "MiB"
    );
    for m in &results {
        println!(
            "{:<width$} {:>12.0} {:>10.1} {:>10.1} {:>10.2} {:>10.2} {:>10.2} {:>10.4} {:>9.0}",
            m.store,
            args.count as f64 / m.ingest.as_secs_f64(),
            m.ingest.as_secs_f64(),
            m.index.as_secs_f64(),
            m.first_search.as_secs_f64(),
            percentile(&m.latencies, 0.50),
            percentile(&m.latencies, 0.99),
            m.recall,
            m.bytes as f64 / (1 << 20) as f64
        );
    }
    println!(
        "\nchunks/s: put_document calls only, vectors computed beforehand. index s: build_index, which \
         ingestion calls when it finishes (PostgreSQL builds its HNSW index over the loaded chunks; SQLite \
         does nothing). first s: the first search alone (on SQLite it reads every vector and builds \
         its HNSW graph). p50/p99: all {} queries, one at a time, after \
         the first search. recall@k: against the exact top {} by brute force.",
        args.queries, args.k
    );
    Ok(())
}

/// Fills `store` with the vectors, documents of `--chunks-per-document` chunks, then searches it.
fn measure(
    store: &mut dyn VectorStore,
    label: String,
    vectors: &[f32],
    queries: &[f32],
    truth: &[Vec<u32>],
    args: &Args,
) -> anyhow::Result<Measured> {
    let dim = args.dimensions;
    if store.collections()?.iter().any(|c| c.name == COLLECTION) {
        store.remove_collection(COLLECTION)?;
    }
    store.ensure_collection(COLLECTION, "synthetic", dim)?;
    let metadata = serde_json::json!({});
    let per_document = args.chunks_per_document;
    let mut ingest = Duration::ZERO;
    let report_every = (args.count / per_document / 10).max(1);
    for (number, first) in (0..args.count).step_by(per_document).enumerate() {
        let chunks: Vec<(Chunk, Vec<f32>)> = (first..(first + per_document).min(args.count))
            .map(|i| {
                let chunk = Chunk {
                    text: format!("chunk {i}"),
                    position: Position::Record((i - first + 1) as u32),
                    heading: Vec::new(),
                };
                (chunk, vectors[i * dim..(i + 1) * dim].to_vec())
            })
            .collect();
        let path = format!("document {number}");
        let document = NewDocument { path: &path, hash: &path, metadata: &metadata };
        let start = Instant::now();
        store.put_document(COLLECTION, &document, &chunks)?;
        ingest += start.elapsed();
        if (number + 1) % report_every == 0 {
            eprintln!("{label}: {} chunks stored in {:.1} s", first + chunks.len(), ingest.as_secs_f64());
        }
    }

    // What ingestion does when it finishes: PostgreSQL builds its index over the loaded chunks.
    let start = Instant::now();
    store.build_index(COLLECTION)?;
    let index = start.elapsed();
    eprintln!("{label}: index built in {:.2} s", index.as_secs_f64());

    let filter = Filter::default();
    let start = Instant::now();
    store.dense_search(COLLECTION, &queries[..dim], args.k, &filter)?;
    let first_search = start.elapsed();
    eprintln!("{label}: first search {:.2} s", first_search.as_secs_f64());
    let mut latencies = Vec::with_capacity(args.queries);
    let mut found: Vec<Vec<ChunkId>> = Vec::with_capacity(args.queries);
    for query in queries.chunks_exact(dim) {
        let start = Instant::now();
        let hits = store.dense_search(COLLECTION, query, args.k, &filter)?;
        latencies.push(start.elapsed().as_secs_f64() * 1e3);
        found.push(hits.into_iter().map(|(id, _)| id).collect());
    }
    latencies.sort_unstable_by(f64::total_cmp);

    // The store numbers chunks its own way; each chunk's text names its vector.
    let mut ids: Vec<ChunkId> = found.iter().flatten().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut vector_of = HashMap::with_capacity(ids.len());
    for some in ids.chunks(1_000) {
        for chunk in store.chunks(some)? {
            let index = chunk.text.strip_prefix("chunk ").and_then(|n| n.parse::<u32>().ok());
            vector_of
                .insert(chunk.id, index.with_context(|| format!("unexpected chunk text {:?}", chunk.text))?);
        }
    }
    let found: Vec<Vec<u32>> =
        found.iter().map(|hits| hits.iter().map(|id| vector_of[id]).collect()).collect();
    Ok(Measured {
        store: label,
        ingest,
        index,
        first_search,
        latencies,
        recall: ann::recall(&found, truth, args.k),
        bytes: store.size()?,
    })
}

/// The value below which `share` of the `sorted` values lie (nearest rank).
fn percentile(sorted: &[f64], share: f64) -> f64 {
    let rank = ((share * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_ranks() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.50), 50.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }

    /// Below SQLite's HNSW threshold the search is exact, so the store's hits, mapped back to
    /// the bench's vectors, are the brute-force truth.
    #[test]
    fn an_exact_store_finds_the_exact_neighbours() {
        let args = Args {
            count: 450,
            dimensions: 16,
            queries: 20,
            clusters: 10,
            spread: 2.0,
            k: 5,
            chunks_per_document: 10,
            db: None,
        };
        let (vectors, queries) =
            ann::clustered(args.count, args.queries, args.dimensions, args.clusters, args.spread);
        let truth = ann::exact_neighbours(&vectors, &queries, args.dimensions, args.k);
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::create(&dir.path().join("s.db")).unwrap();
        let measured = measure(&mut store, "SQLite".into(), &vectors, &queries, &truth, &args).unwrap();
        assert_eq!(measured.recall, 1.0);
        assert_eq!(measured.latencies.len(), args.queries);
        assert_eq!(store.collection(COLLECTION).unwrap().documents, 45);
    }
}
