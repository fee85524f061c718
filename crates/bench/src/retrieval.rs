//! `temper-bench retrieval`: nDCG@10, recall@100 and MRR@10 on a BEIR dataset for dense, BM25 and
//! hybrid retrieval, and the speed of encoding its corpus next to sentence-transformers.

mod bm25;
mod metrics;
mod peer;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::Deserialize;
use temper_embed::{EmbedOptions, Embedder, Precision};
use temper_models::{ConsoleProgress, ModelStore, DEFAULT_EMBEDDING_MODEL};

use self::bm25::Bm25;
use self::metrics::Judgements;

/// Documents kept per query and mode: enough for recall@100.
const DEPTH: usize = 100;
/// Reciprocal-rank fusion's constant, as in the RRF paper and the dataset's reference.
const RRF_K: f64 = 60.0;

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
    /// Also measure the int8 encoder (quality and speed), next to the f32 one.
    #[arg(long)]
    int8: bool,
}

/// One of Temper's encoders under test, with its timings and corpus vectors.
struct Side {
    precision: &'static str,
    embedder: Embedder,
    speeds: Vec<f64>,
    vectors: Vec<Vec<f32>>,
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

/// Reciprocal-rank fusion of rankings: each document scores the sum of 1 / (k + rank).
fn fuse<'a>(rankings: &[&[&'a str]]) -> Vec<&'a str> {
    let mut scores: HashMap<&str, f64> = HashMap::new();
    for ranking in rankings {
        for (rank, id) in ranking.iter().enumerate() {
            *scores.entry(id).or_default() += 1.0 / (RRF_K + rank as f64 + 1.0);
        }
    }
    let mut fused: Vec<(&str, f64)> = scores.into_iter().collect();
    // Ties broken by id, so that runs repeat exactly.
    fused.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    fused.into_iter().take(DEPTH).map(|(id, _)| id).collect()
}

struct Quality {
    ndcg10: f64,
    recall100: f64,
    mrr10: f64,
}

fn quality(rankings: &[Vec<&str>], queries: &[(Query, Judgements)]) -> Quality {
    let n = queries.len().max(1) as f64;
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
    let mut precisions = vec![("f32", Precision::F32)];
    if args.int8 {
        precisions.push(("int8", Precision::Int8));
    }
    let mut sides = Vec::new();
    for (name, precision) in precisions {
        let options = EmbedOptions { threads: Some(args.threads), batch_size: args.batch_size, precision };
        let embedder = Embedder::load(&model_dir, &args.model, options)?;
        sides.push(Side { precision: name, embedder, speeds: Vec::new(), vectors: Vec::new() });
    }
    let max_len = sides[0].embedder.max_seq_length();
    let documents: Vec<&str> = data.documents.iter().map(String::as_str).collect();
    let python = if args.no_peer { None } else { Some(peer::python()?) };
    eprintln!(
        "{}: {} documents, {} judged queries; {} (max {max_len} tokens), {} threads, batches of {}",
        data.name,
        documents.len(),
        data.queries.len(),
        args.model,
        args.threads,
        args.batch_size
    );

    // Alternate the sides so that all see the same machine load.
    let (mut theirs, mut versions) = (Vec::new(), None);
    for side in &sides {
        side.embedder.embed_batch(&documents[..args.batch_size.min(documents.len())])?;
        // warm-up
    }
    for round in 1..=args.rounds.max(1) {
        for side in &mut sides {
            let start = Instant::now();
            side.vectors = side.embedder.embed_batch(&documents)?;
            side.speeds.push(documents.len() as f64 / start.elapsed().as_secs_f64());
            eprintln!("round {round}: temper {} {:.1} docs/s", side.precision, side.speeds[round - 1]);
        }
        if let Some(python) = &python {
            let run = peer::encode(python, &model_dir, &documents, args.threads, max_len, args.batch_size)?;
            theirs.push(documents.len() as f64 / run.seconds);
            eprintln!("round {round}: sentence-transformers {:.1} docs/s", theirs[round - 1]);
            versions = Some((run.torch, run.sentence_transformers));
        }
    }

    let query_texts: Vec<&str> = data.queries.iter().map(|(q, _)| q.text.as_str()).collect();
    let index = Bm25::new(&documents);
    let lexical: Vec<Vec<&str>> = query_texts.iter().map(|q| data.ranking(&index.scores(q))).collect();
    let mut modes = Vec::new();
    for side in &sides {
        let query_vectors = side.embedder.embed_batch(&query_texts)?;
        let dense: Vec<Vec<&str>> = query_vectors
            .iter()
            .map(|q| {
                // Unit vectors: the dot product is the cosine.
                let scores: Vec<f64> = side
                    .vectors
                    .iter()
                    .map(|d| f64::from(d.iter().zip(q).map(|(a, b)| a * b).sum::<f32>()))
                    .collect();
                data.ranking(&scores)
            })
            .collect();
        let hybrid = dense.iter().zip(&lexical).map(|(d, l)| fuse(&[d, l])).collect();
        modes.push((format!("dense {} ({}, exact cosine)", side.precision, args.model), dense));
        modes.push((format!("hybrid {} (RRF, k={RRF_K})", side.precision), hybrid));
    }
    modes.insert(1, ("bm25 (in-bench Okapi)".to_owned(), lexical));

    println!("retrieval on {} ({} queries, {} documents)\n", data.name, data.queries.len(), documents.len());
    println!("{:<46} {:>8} {:>11} {:>8}", "mode", "nDCG@10", "recall@100", "MRR@10");
    for (mode, rankings) in &modes {
        let q = quality(rankings, &data.queries);
        println!("{mode:<46} {:>8.4} {:>11.4} {:>8.4}", q.ndcg10, q.recall100, q.mrr10);
    }
    println!(
        "\ncorpus encoding, median of {} round(s), max {max_len} tokens, {} threads",
        args.rounds.max(1),
        args.threads
    );
    let theirs = versions.map(|(torch, st)| (median(&mut theirs), torch, st));
    for side in &mut sides {
        let ours = median(&mut side.speeds);
        println!("{:<50} {:>8.1} docs/s", format!("temper-embed {}", side.precision), ours);
        if let Some((theirs, ..)) = &theirs {
            println!(
                "{:<50} {:>8.2}x",
                format!("ratio {} / sentence-transformers", side.precision),
                ours / theirs
            );
        }
    }
    if let Some((theirs, torch, st)) = theirs {
        println!("{:<50} {:>8.1} docs/s", format!("sentence-transformers {st} (torch {torch})"), theirs);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusion_rewards_documents_ranked_well_by_both() {
        let dense = ["a", "b", "c"];
        let lexical = ["c", "d", "b"];
        // b: 1/62 + 1/63, c: 1/63 + 1/61, a: 1/61, d: 1/62.
        assert_eq!(fuse(&[&dense, &lexical]), ["c", "b", "a", "d"]);
    }
}
