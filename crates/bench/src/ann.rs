//! `temper-bench vectors`: nearest-neighbour search over synthetic embeddings, exact and through
//! temper-rag's HNSW, side by side with hnswlib at the same M, ef_construction and ef. Both sides
//! build and query on one thread; recall@k is measured against the exact top k.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Deserialize;
use temper_rag::hnsw::{Hnsw, HnswParams};
use temper_rag::vector::{dot, normalize, top_k};

use crate::python;

#[derive(clap::Args)]
pub struct Args {
    /// Vectors in the index.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    #[arg(long, default_value_t = 384)]
    dimensions: usize,
    /// Queries, drawn like the vectors but not among them.
    #[arg(long, default_value_t = 1_000)]
    queries: usize,
    /// Clusters the vectors gather around, as embeddings of related texts do.
    #[arg(long, default_value_t = 1_000)]
    clusters: usize,
    /// Norm of each vector's noise against its unit-length centre: the larger, the more the
    /// clusters overlap and the harder the search (2 puts a vector's cosine to its centre near
    /// 0.45, and its nearest neighbours often in other clusters).
    #[arg(long, default_value_t = 2.0)]
    spread: f32,
    #[arg(long, default_value_t = 10)]
    k: usize,
    #[arg(long, default_value_t = 16)]
    m: usize,
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// Search-time ef values to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "32,64,128")]
    ef: Vec<usize>,
    /// Skip hnswlib (no Python needed).
    #[arg(long)]
    no_peer: bool,
}

#[derive(Deserialize)]
struct PeerRun {
    ef: usize,
    seconds: f64,
    ids: Vec<Vec<u32>>,
}

#[derive(Deserialize)]
struct Peer {
    hnswlib: String,
    build_seconds: f64,
    runs: Vec<PeerRun>,
}

/// `count` vectors and `queries` queries of `dimensions`, drawn alike around `clusters` random
/// unit centres (the same ones for both), flattened; repeatable.
pub fn clustered(
    count: usize,
    queries: usize,
    dimensions: usize,
    clusters: usize,
    spread: f32,
) -> (Vec<f32>, Vec<f32>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| {
            let mut c: Vec<f32> = (0..dimensions).map(|_| gaussian(&mut state)).collect();
            normalize(&mut c);
            c
        })
        .collect();
    let vectors = synthetic(count, dimensions, &centres, spread, &mut state);
    let queries = synthetic(queries, dimensions, &centres, spread, &mut state);
    (vectors, queries)
}

/// The indices of each query's `k` most similar vectors (dot product over unit vectors), best
/// first, by scanning them all: the truth recall is measured against.
pub fn exact_neighbours(vectors: &[f32], queries: &[f32], dimensions: usize, k: usize) -> Vec<Vec<u32>> {
    queries
        .chunks_exact(dimensions)
        .map(|q| {
            let scores = vectors.chunks_exact(dimensions).enumerate().map(|(i, v)| (i as u32, dot(q, v)));
            top_k(scores, k).into_iter().map(|(i, _)| i).collect()
        })
        .collect()
}

/// Unit vectors around random centres: each is its centre plus Gaussian noise of norm `spread`.
fn synthetic(
    count: usize,
    dimensions: usize,
    centres: &[Vec<f32>],
    spread: f32,
    state: &mut u64,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(count * dimensions);
    let scale = spread / (dimensions as f32).sqrt();
    for _ in 0..count {
        let centre = &centres[(next(state) % centres.len() as u64) as usize];
        let mut v: Vec<f32> = centre.iter().map(|c| c + gaussian(state) * scale).collect();
        normalize(&mut v);
        out.extend(v);
    }
    out
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A standard normal sample (Box–Muller).
fn gaussian(state: &mut u64) -> f32 {
    let u1 = ((next(state) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u2 = (next(state) >> 11) as f64 / (1u64 << 53) as f64;
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// The share of the true top `k` found in the top `k` of `found`.
pub fn recall(found: &[Vec<u32>], truth: &[Vec<u32>], k: usize) -> f64 {
    let hits: usize =
        found.iter().zip(truth).map(|(f, t)| f.iter().take(k).filter(|id| t.contains(id)).count()).sum();
    hits as f64 / (truth.len() * k) as f64
}

fn write_f32(path: &Path, values: &[f32]) -> anyhow::Result<()> {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    crate::extend_f32_le(&mut bytes, values);
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let dim = args.dimensions;
    if args.count == 0 || dim == 0 || args.queries == 0 || args.k == 0 || args.clusters == 0 {
        bail!("--count, --dimensions, --queries, --clusters and --k must be at least 1");
    }
    if !(args.spread.is_finite() && args.spread >= 0.0) {
        bail!("--spread must be 0 or more");
    }
    let (vectors, queries) = clustered(args.count, args.queries, dim, args.clusters, args.spread);
    eprintln!(
        "{} vectors of {dim} dimensions around {} centres, {} queries",
        args.count, args.clusters, args.queries
    );

    let start = Instant::now();
    let truth = exact_neighbours(&vectors, &queries, dim, args.k);
    let exact_qps = args.queries as f64 / start.elapsed().as_secs_f64();

    let params = HnswParams { m: args.m, ef_construction: args.ef_construction, ..Default::default() };
    let start = Instant::now();
    let mut index = Hnsw::build(dim, &vectors, params)?;
    let build = start.elapsed().as_secs_f64();
    eprintln!("temper HNSW built in {build:.1} s");

    let peer = if args.no_peer {
        None
    } else {
        let dir = tempfile::tempdir()?;
        let (vectors_path, queries_path) = (dir.path().join("vectors.f32"), dir.path().join("queries.f32"));
        write_f32(&vectors_path, &vectors)?;
        write_f32(&queries_path, &queries)?;
        let python = python::venv(&["hnswlib", "numpy"])?;
        let script = python::script("hnswlib_search.py");
        let efs: Vec<String> = args.ef.iter().map(usize::to_string).collect();
        let output = Command::new(&python)
            .arg(&script)
            .args([&vectors_path, &queries_path])
            .args([dim, args.m, args.ef_construction, args.k].map(|n| n.to_string()))
            .arg(efs.join(","))
            .output()
            .with_context(|| format!("cannot run {}", python.display()))?;
        if !output.status.success() {
            bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr));
        }
        Some(
            serde_json::from_slice::<Peer>(&output.stdout)
                .context("unexpected output from hnswlib_search.py")?,
        )
    };

    println!(
        "nearest neighbours: {} vectors × {dim} ({} clusters, spread {}), {} queries, top {}, M={}, ef_construction={}, 1 thread\n",
        args.count, args.clusters, args.spread, args.queries, args.k, args.m, args.ef_construction
    );
    println!("{:<28} {:>6} {:>12} {:>12} {:>14}", "search", "ef", "QPS", "recall@k", "QPS / hnswlib");
    println!("{:<28} {:>6} {:>12.0} {:>12.4} {:>14}", "temper exact (SIMD scan)", "-", exact_qps, 1.0, "");
    for &ef in &args.ef {
        index.set_ef_search(ef);
        let start = Instant::now();
        let found: Vec<Vec<u32>> = queries
            .chunks_exact(dim)
            .map(|q| Ok(index.search(q, args.k)?.into_iter().map(|(id, _)| id).collect()))
            .collect::<anyhow::Result<_>>()?;
        let qps = args.queries as f64 / start.elapsed().as_secs_f64();
        let theirs = peer.as_ref().and_then(|p| p.runs.iter().find(|r| r.ef == ef));
        let ratio =
            theirs.map_or(String::new(), |r| format!("{:.2}x", qps / (args.queries as f64 / r.seconds)));
        println!(
            "{:<28} {:>6} {:>12.0} {:>12.4} {:>14}",
            "temper HNSW",
            ef,
            qps,
            recall(&found, &truth, args.k),
            ratio
        );
        if let Some(r) = theirs {
            let label = format!("hnswlib {}", peer.as_ref().map_or("", |p| p.hnswlib.as_str()));
            let qps = args.queries as f64 / r.seconds;
            println!(
                "{:<28} {:>6} {:>12.0} {:>12.4} {:>14}",
                label,
                ef,
                qps,
                recall(&r.ids, &truth, args.k),
                ""
            );
        }
    }
    print!("\nbuild: temper {build:.1} s");
    match &peer {
        Some(p) => println!(", hnswlib {:.1} s ({:.2}x)", p.build_seconds, p.build_seconds / build),
        None => println!(),
    }
    Ok(())
}
