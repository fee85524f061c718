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
use temper_embed::{EmbedOptions, Embedder};
use temper_models::{ConsoleProgress, ModelStore, DEFAULT_EMBEDDING_MODEL};
use temper_rag::retrieve::RRF_K;
use temper_rag::store::NewDocument;
use temper_rag::{Chunk, Mode, Position, Retriever, SearchOptions, SqliteStore, VectorStore};

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
    let mean = |metric: &dyn Fn(&[&str], &Judgements) -> f64| {
        rankings
            .iter()
            .zip(queries)
            .map(|(r, (_, j))| metric(&r.iter().map(String::as_str).collect::<Vec<_>>(), j))
            .sum::<f64>()
            / n
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
    let options = EmbedOptions { threads: Some(args.threads), batch_size: args.batch_size };
    let embedder = Embedder::load(&model_dir, &args.model, options)?;
    let max_len = embedder.max_seq_length();
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

    let cached = match &args.vectors {
        Some(path) => cache::read(path, &args.model, documents.len())?,
        None => None,
    };
    let speed = match cached {
        Some(_) => None,
        None => Some(encoding_speed(args, &embedder, &model_dir, &documents)?),
    };
    let vectors = match cached {
        Some(vectors) => vectors,
        None => {
            let (vectors, _) = speed.as_ref().expect("measured when not cached");
            if let Some(path) = &args.vectors {
                cache::write(path, &args.model, vectors)?;
            }
            vectors.clone()
        }
    };

    let store_dir = tempfile::tempdir().context("creating a scratch directory for the store")?;
    let store = store_corpus(store_dir.path(), &data, &embedder, &vectors)?;
    let retriever = Retriever { store: &store, embedder: &embedder, collection: COLLECTION, reranker: None };
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
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
    // What the CLI asks for by default: fewer candidates per list, so the fusion differs.
    let defaults = SearchOptions::default();
    let reference_index = Bm25::new(&documents);
    let reference: Vec<Vec<String>> = data
        .queries
        .iter()
        .map(|(q, _)| data.ranking(&reference_index.scores(&q.text)).into_iter().map(str::to_owned).collect())
        .collect();

    println!("retrieval on {} ({} queries, {} documents)\n", data.name, data.queries.len(), documents.len());
    println!("{:<48} {:>8} {:>11} {:>8}", "mode", "nDCG@10", "recall@100", "MRR@10");
    let modes = [
        (format!("dense ({}, exact cosine)", args.model), search(Mode::Dense, DEPTH, DEPTH)?),
        ("bm25 (SQLite FTS5, porter)".to_owned(), search(Mode::Bm25, DEPTH, DEPTH)?),
        (format!("hybrid (RRF, k={RRF_K})"), search(Mode::Hybrid, DEPTH, DEPTH)?),
        (
            format!("hybrid as `rag search` runs it ({} hits)", defaults.k),
            search(Mode::Hybrid, defaults.k, defaults.candidates)?,
        ),
        ("reference: bm25 as rank_bm25 scores it".to_owned(), reference),
    ];
    for (mode, rankings) in &modes {
        let q = quality(rankings, &data.queries);
        println!("{mode:<48} {:>8.4} {:>11.4} {:>8.4}", q.ndcg10, q.recall100, q.mrr10);
    }
    if let Some((_, speed)) = speed {
        speed.print(max_len, args.threads);
    }
    Ok(())
}

/// The collection the bench stores the corpus in.
const COLLECTION: &str = "corpus";

/// The corpus in a fresh temper-rag store, a chunk per document, with its vectors.
fn store_corpus(
    dir: &Path,
    data: &Dataset,
    embedder: &Embedder,
    vectors: &[Vec<f32>],
) -> anyhow::Result<SqliteStore> {
    let mut store = SqliteStore::open(&dir.join("bench.db"))?;
    store.ensure_collection(COLLECTION, embedder.name(), embedder.dimensions())?;
    let metadata = serde_json::json!({});
    for ((id, text), vector) in data.ids.iter().zip(&data.documents).zip(vectors) {
        let chunk = Chunk { text: text.clone(), position: Position::Record(1), heading: Vec::new() };
        let document = NewDocument { path: id, hash: id, metadata: &metadata };
        store.put_document(COLLECTION, &document, &[(chunk, vector.clone())])?;
    }
    Ok(store)
}

/// Docs/s of Temper and (unless `--no-peer`) sentence-transformers encoding the corpus.
struct Speed {
    ours: Vec<f64>,
    theirs: Vec<f64>,
    /// torch and sentence-transformers versions.
    versions: Option<(String, String)>,
}

/// Encodes the corpus `--rounds` times, alternating with sentence-transformers so that both
/// see the same machine load; returns the vectors and the speeds.
fn encoding_speed(
    args: &Args,
    embedder: &Embedder,
    model_dir: &Path,
    documents: &[&str],
) -> anyhow::Result<(Vec<Vec<f32>>, Speed)> {
    let python = if args.no_peer { None } else { Some(peer::python()?) };
    let mut speed = Speed { ours: Vec::new(), theirs: Vec::new(), versions: None };
    let mut vectors = Vec::new();
    embedder.embed_batch(&documents[..args.batch_size.min(documents.len())])?; // warm-up
    for round in 1..=args.rounds.max(1) {
        let start = Instant::now();
        vectors = embedder.embed_batch(documents)?;
        speed.ours.push(documents.len() as f64 / start.elapsed().as_secs_f64());
        eprintln!("round {round}: temper {:.1} docs/s", speed.ours[round - 1]);
        if let Some(python) = &python {
            let max_len = embedder.max_seq_length();
            let run = peer::encode(python, model_dir, documents, args.threads, max_len, args.batch_size)?;
            speed.theirs.push(documents.len() as f64 / run.seconds);
            eprintln!("round {round}: sentence-transformers {:.1} docs/s", speed.theirs[round - 1]);
            speed.versions = Some((run.torch, run.sentence_transformers));
        }
    }
    Ok((vectors, speed))
}

impl Speed {
    fn print(mut self, max_len: usize, threads: usize) {
        println!(
            "\ncorpus encoding, median of {} round(s), max {max_len} tokens, {threads} threads",
            self.ours.len()
        );
        let ours = median(&mut self.ours);
        println!("{:<50} {:>8.1} docs/s", "temper-embed", ours);
        if let Some((torch, st)) = self.versions {
            let theirs = median(&mut self.theirs);
            println!("{:<50} {:>8.1} docs/s", format!("sentence-transformers {st} (torch {torch})"), theirs);
            println!("{:<50} {:>8.2}x", "ratio", ours / theirs);
        }
    }
}
