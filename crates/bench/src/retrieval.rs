//! `temper-bench retrieval`: nDCG@10, recall@100 and MRR@10 on a BEIR dataset for dense, BM25 and
//! hybrid retrieval, and the speed of encoding its corpus next to sentence-transformers.

mod bm25;
mod cache;
mod metrics;
mod peer;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::Deserialize;
use temper_core::EmbeddingModel;
use temper_embed::{EmbedOptions, Embedder, Precision};
use temper_models::{ConsoleProgress, ModelStore, DEFAULT_EMBEDDING_MODEL};
use temper_rag::retrieve::RRF_K;
use temper_rag::store::NewDocument;
use temper_rag::{
    Access, Chunk, Mode, Position, PostgresStore, Retriever, SearchOptions, SqliteStore, VectorStore,
};

use self::bm25::Bm25;
use self::metrics::Judgements;

/// Documents kept per query and mode: enough for recall@100.
const DEPTH: usize = 100;

#[derive(clap::Args)]
pub struct Args {
    /// A BEIR dataset directory: corpus.jsonl, queries.jsonl, qrels/test.tsv.
    #[arg(long)]
    beir: PathBuf,
    /// The embedder: a catalog name (pulled on first use) or a model directory.
    #[arg(long, default_value = DEFAULT_EMBEDDING_MODEL)]
    model: String,
    /// Threads for both Temper and PyTorch.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Texts per forward pass, on both sides.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Timed corpus encodings per side, alternating Temper and sentence-transformers.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Skip sentence-transformers (no Python needed).
    #[arg(long)]
    no_peer: bool,
    /// Keep the corpus vectors in FILE: read them from it when it holds this model's vectors of
    /// this corpus (then the encoding speed is not measured), write them to it otherwise.
    #[arg(long, value_name = "FILE")]
    vectors: Option<PathBuf>,
    /// Also measure the int8 encoder (quality and speed), next to the f32 one.
    #[arg(long)]
    int8: bool,
    /// Also store the corpus in the PostgreSQL database at URL (pgvector) and measure every mode
    /// through it, next to SQLite's, with the nDCG@10 difference. The bench's collection in that
    /// database (`corpus`) is replaced.
    #[arg(long, value_name = "URL")]
    db: Option<String>,
}

/// The store a row was measured through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A row of the report: a mode's rankings of the judged queries.
struct Row {
    mode: String,
    rankings: Vec<Vec<String>>,
    /// The SQLite row this PostgreSQL row repeats, whose nDCG@10 it is compared with.
    same_as: Option<usize>,
}

/// One of Temper's encoders under test, with its timings and corpus vectors.
struct Side {
    precision: Precision,
    embedder: Embedder,
    speeds: Vec<f64>,
    vectors: Vec<Vec<f32>>,
}

impl Side {
    /// The precision as the report names it.
    fn label(&self) -> &'static str {
        match self.precision {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

#[derive(Deserialize)]
struct Document {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    title: String,
    text: String,
}

#[derive(Deserialize)]
struct Query {
    #[serde(rename = "_id")]
    id: String,
    text: String,
}

struct Dataset {
    name: String,
    ids: Vec<String>,
    /// `title + " " + text`, as BEIR feeds documents to sentence-transformers.
    documents: Vec<String>,
    /// The judged queries only, with their judgements.
    queries: Vec<(Query, Judgements)>,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text = fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(i, line)| serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), i + 1)))
        .collect()
}

impl Dataset {
    fn read(dir: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            dir.join("corpus.jsonl").is_file(),
            "{} holds no BEIR dataset (corpus.jsonl, queries.jsonl, qrels/test.tsv). SciFact, the one \
             docs/benchmarks.md measures, is BEIR's scifact.zip (from the BEIR project's dataset list, \
             github.com/beir-cellar/beir); unzip it and pass its folder, e.g. --beir scifact",
            dir.display()
        );
        let corpus: Vec<Document> = read_jsonl(&dir.join("corpus.jsonl"))?;
        let qrels_path = dir.join("qrels/test.tsv");
        let qrels = fs::read_to_string(&qrels_path)
            .with_context(|| format!("cannot read {}", qrels_path.display()))?;
        let mut judgements: HashMap<String, Judgements> = HashMap::new();
        for (i, line) in qrels.lines().enumerate().skip(1).filter(|(_, l)| !l.trim().is_empty()) {
            let fields: Vec<&str> = line.split('\t').collect();
            let [query, doc, grade] = fields[..] else {
                anyhow::bail!("{}:{}: expected query-id, corpus-id, score", qrels_path.display(), i + 1);
            };
            let grade =
                grade.trim().parse().with_context(|| format!("{}:{}", qrels_path.display(), i + 1))?;
            judgements.entry(query.to_owned()).or_default().insert(doc.to_owned(), grade);
        }
        let queries = read_jsonl::<Query>(&dir.join("queries.jsonl"))?
            .into_iter()
            .filter_map(|q| judgements.remove(&q.id).map(|j| (q, j)))
            .collect();
        let name =
            dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        let documents = corpus.iter().map(|d| format!("{} {}", d.title, d.text)).collect();
        Ok(Dataset { name, ids: corpus.into_iter().map(|d| d.id).collect(), documents, queries })
    }

    /// The ids of the best `DEPTH` documents by score.
    fn ranking(&self, scores: &[f64]) -> Vec<&str> {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        order.into_iter().take(DEPTH).map(|i| self.ids[i].as_str()).collect()
    }
}

struct Quality {
    ndcg10: f64,
    recall100: f64,
    mrr10: f64,
}

fn quality(rankings: &[Vec<String>], queries: &[(Query, Judgements)]) -> Quality {
    let n = queries.len().max(1) as f64;
    let rankings: Vec<Vec<&str>> = rankings.iter().map(|r| r.iter().map(String::as_str).collect()).collect();
    let mean = |metric: &dyn Fn(&[&str], &Judgements) -> f64| {
        rankings.iter().zip(queries).map(|(r, (_, j))| metric(r, j)).sum::<f64>() / n
    };
    Quality {
        ndcg10: mean(&|r, j| metrics::ndcg(r, j, 10)),
        recall100: mean(&|r, j| metrics::recall(r, j, 100)),
        mrr10: mean(&|r, j| metrics::reciprocal_rank(r, j, 10)),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let data = Dataset::read(&args.beir)?;
    let model_dir = ModelStore::from_env()?.resolve(&args.model, &ConsoleProgress::default())?;
    let mut precisions = vec![Precision::F32];
    if args.int8 {
        precisions.push(Precision::Int8);
    }
    let mut sides = Vec::new();
    for precision in precisions {
        let options = EmbedOptions { threads: Some(args.threads), batch_size: args.batch_size, precision };
        let embedder = Embedder::load(&model_dir, &args.model, options)?;
        sides.push(Side { precision, embedder, speeds: Vec::new(), vectors: Vec::new() });
    }
    let max_len = sides[0].embedder.max_seq_length();
    let documents: Vec<&str> = data.documents.iter().map(String::as_str).collect();
    eprintln!(
        "{}: {} documents, {} judged queries; {} (max {max_len} tokens), {} threads, batches of {}",
        data.name,
        documents.len(),
        data.queries.len(),
        args.model,
        args.threads,
        args.batch_size
    );

    // The f32 vectors may come from the cache; the int8 ones are always encoded (and timed).
    let cached = match &args.vectors {
        Some(path) if !args.int8 => cache::read(path, &args.model, documents.len())?,
        _ => None,
    };
    let peer = match cached {
        Some(vectors) => {
            sides[0].vectors = vectors;
            None
        }
        None => {
            let peer = encoding_speed(args, &mut sides, &model_dir, &documents)?;
            if let Some(path) = &args.vectors {
                cache::write(path, &args.model, &sides[0].vectors)?;
            }
            Some(peer)
        }
    };

    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let store_dir = tempfile::tempdir().context("creating a scratch directory for the stores")?;
    let mut rows: Vec<Row> = Vec::new();
    for side in &sides {
        let mut sqlite = SqliteStore::create(&store_dir.path().join(format!("{}.db", side.label())))?;
        store_corpus(&mut sqlite, &data, &side.embedder, &side.vectors)?;
        let sqlite_rows = mode_rows(&sqlite, Backend::Sqlite, side, &data, args, &runtime)?;
        let postgres_rows = match &args.db {
            Some(url) => {
                let mut postgres = PostgresStore::open(url, Access::Create)?;
                let start = Instant::now();
                store_corpus(&mut postgres, &data, &side.embedder, &side.vectors)?;
                eprintln!(
                    "stored {} documents in PostgreSQL in {:.1} s",
                    data.ids.len(),
                    start.elapsed().as_secs_f64()
                );
                mode_rows(&postgres, Backend::Postgres, side, &data, args, &runtime)?
            }
            None => Vec::new(),
        };
        let mut postgres_rows = postgres_rows.into_iter();
        for (mode, rankings) in sqlite_rows {
            let sqlite_row = rows.len();
            rows.push(Row { mode, rankings, same_as: None });
            if let Some((mode, rankings)) = postgres_rows.next() {
                rows.push(Row { mode, rankings, same_as: Some(sqlite_row) });
            }
        }
    }
    let reference_index = Bm25::new(&documents);
    let reference: Vec<Vec<String>> = data
        .queries
        .iter()
        .map(|(q, _)| data.ranking(&reference_index.scores(&q.text)).into_iter().map(str::to_owned).collect())
        .collect();
    rows.push(Row {
        mode: "reference: bm25 as rank_bm25 scores it".to_owned(),
        rankings: reference,
        same_as: None,
    });

    println!("retrieval on {} ({} queries, {} documents)\n", data.name, data.queries.len(), documents.len());
    let width = rows.iter().map(|r| r.mode.chars().count()).max().unwrap_or(0).max(48);
    let compared = args.db.is_some();
    let delta_header = if compared { format!(" {:>18}", "ΔnDCG@10 vs SQLite") } else { String::new() };
    println!("{:<width$} {:>8} {:>11} {:>8}{delta_header}", "mode", "nDCG@10", "recall@100", "MRR@10");
    let qualities: Vec<Quality> = rows.iter().map(|r| quality(&r.rankings, &data.queries)).collect();
    for (row, q) in rows.iter().zip(&qualities) {
        let delta = match row.same_as {
            Some(i) => format!(" {:>+18.4}", q.ndcg10 - qualities[i].ndcg10),
            None => String::new(),
        };
        println!("{:<width$} {:>8.4} {:>11.4} {:>8.4}{delta}", row.mode, q.ndcg10, q.recall100, q.mrr10);
    }
    if let Some(peer) = peer {
        print_speeds(&mut sides, peer, max_len, args);
    }
    Ok(())
}

/// The collection the bench stores the corpus in.
const COLLECTION: &str = "corpus";

/// Every mode's rankings of the judged queries through `store`, labelled with what searched.
fn mode_rows(
    store: &dyn VectorStore,
    backend: Backend,
    side: &Side,
    data: &Dataset,
    args: &Args,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Vec<(String, Vec<Vec<String>>)>> {
    let retriever = Retriever { store, embedder: &side.embedder, collection: COLLECTION, reranker: None };
    let search = |mode: Mode, k: usize, candidates: usize| -> anyhow::Result<Vec<Vec<String>>> {
        let options = SearchOptions { k, mode, candidates, ..Default::default() };
        data.queries
            .iter()
            .map(|(q, _)| {
                let hits = runtime.block_on(retriever.search(&q.text, &options))?;
                Ok(hits.into_iter().map(|h| h.chunk.path).collect())
            })
            .collect()
    };
    let p = side.label();
    let (dense, keyword, on) = match backend {
        Backend::Sqlite => ("exact cosine", "SQLite FTS5, porter", ""),
        Backend::Postgres => {
            ("pgvector HNSW", "PostgreSQL tsvector BM25, english stemming", " on PostgreSQL")
        }
    };
    // What the CLI asks for by default: fewer candidates per list, so the fusion differs.
    let defaults = SearchOptions::default();
    let mut rows = vec![(format!("dense {p} ({}, {dense})", args.model), search(Mode::Dense, DEPTH, DEPTH)?)];
    if side.precision == Precision::F32 {
        rows.push((format!("bm25 ({keyword})"), search(Mode::Bm25, DEPTH, DEPTH)?));
    }
    rows.push((format!("hybrid {p} (RRF, k={RRF_K}){on}"), search(Mode::Hybrid, DEPTH, DEPTH)?));
    rows.push((
        format!("hybrid {p} as `rag search` runs it ({} hits){on}", defaults.k),
        search(Mode::Hybrid, defaults.k, defaults.candidates)?,
    ));
    Ok(rows)
}

/// The corpus in `store`, a chunk per document, with its vectors; the collection is replaced
/// if the store holds it from an earlier run.
fn store_corpus(
    store: &mut dyn VectorStore,
    data: &Dataset,
    embedder: &Embedder,
    vectors: &[Vec<f32>],
) -> anyhow::Result<()> {
    if store.collections()?.iter().any(|c| c.name == COLLECTION) {
        store.remove_collection(COLLECTION)?;
    }
    store.ensure_collection(COLLECTION, embedder.name(), embedder.dimensions())?;
    let metadata = serde_json::json!({});
    for ((id, text), vector) in data.ids.iter().zip(&data.documents).zip(vectors) {
        let chunk = Chunk { text: text.clone(), position: Position::Record(1), heading: Vec::new() };
        let document = NewDocument { path: id, hash: id, metadata: &metadata };
        store.put_document(COLLECTION, &document, &[(chunk, vector.clone())])?;
    }
    // As ingestion does when it finishes: PostgreSQL builds its HNSW index here.
    store.build_index(COLLECTION)?;
    Ok(())
}

/// sentence-transformers' docs/s per round and its versions (torch, sentence-transformers);
/// empty with `--no-peer`.
struct Peer {
    speeds: Vec<f64>,
    versions: Option<(String, String)>,
}

/// Encodes the corpus `--rounds` times with every side, alternating with sentence-transformers
/// so that all see the same machine load; keeps each side's vectors and speeds.
fn encoding_speed(
    args: &Args,
    sides: &mut [Side],
    model_dir: &Path,
    documents: &[&str],
) -> anyhow::Result<Peer> {
    let python = if args.no_peer { None } else { Some(peer::python()?) };
    let mut peer = Peer { speeds: Vec::new(), versions: None };
    for side in sides.iter() {
        side.embedder.embed_batch(&documents[..args.batch_size.min(documents.len())])?;
        // warm-up
    }
    let max_len = sides[0].embedder.max_seq_length();
    for round in 1..=args.rounds.max(1) {
        for side in sides.iter_mut() {
            let start = Instant::now();
            side.vectors = side.embedder.embed_batch(documents)?;
            side.speeds.push(documents.len() as f64 / start.elapsed().as_secs_f64());
            eprintln!("round {round}: temper {} {:.1} docs/s", side.label(), side.speeds[round - 1]);
        }
        if let Some(python) = &python {
            let run = peer::encode(python, model_dir, documents, args.threads, max_len, args.batch_size)?;
            peer.speeds.push(documents.len() as f64 / run.seconds);
            eprintln!("round {round}: sentence-transformers {:.1} docs/s", peer.speeds[round - 1]);
            peer.versions = Some((run.torch, run.sentence_transformers));
        }
    }
    Ok(peer)
}

fn print_speeds(sides: &mut [Side], mut peer: Peer, max_len: usize, args: &Args) {
    println!(
        "\ncorpus encoding, median of {} round(s), max {max_len} tokens, {} threads",
        args.rounds.max(1),
        args.threads
    );
    let theirs = peer.versions.map(|(torch, st)| (median(&mut peer.speeds), torch, st));
    for side in sides.iter_mut() {
        let ours = median(&mut side.speeds);
        println!("{:<50} {:>8.1} docs/s", format!("temper-embed {}", side.label()), ours);
        if let Some((theirs, ..)) = &theirs {
            println!(
                "{:<50} {:>8.2}x",
                format!("ratio {} / sentence-transformers", side.label()),
                ours / theirs
            );
        }
    }
    if let Some((theirs, torch, st)) = theirs {
        println!("{:<50} {:>8.1} docs/s", format!("sentence-transformers {st} (torch {torch})"), theirs);
    }
}
