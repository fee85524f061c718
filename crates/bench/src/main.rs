//! `temper-bench`: Temper's engine side by side with its peers.
//!
//! `temper-bench engine` measures prompt processing (pp) and generation (tg) like llama-bench,
//! Temper and llama.cpp alternately. Each measurement runs in a child process (this binary again,
//! with the hidden `side` subcommand), so that peak RSS is each side's own and neither inherits
//! the other's caches or threads.

mod ann;
mod loadtest;
mod peer;
mod python;
mod report;
mod retrieval;
mod serve;
mod stores;
mod structured;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Benchmarks Temper's engine against its peers")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// pp and tg tokens/s and peak RSS of Temper and llama.cpp on the same GGUF, alternately.
    Engine(EngineArgs),
    /// Retrieval quality on a BEIR dataset (dense, BM25, hybrid) and corpus encoding speed
    /// against sentence-transformers.
    Retrieval(retrieval::Args),
    /// Nearest-neighbour search over synthetic embeddings: exact, temper-rag's HNSW, and
    /// hnswlib at the same parameters.
    Vectors(ann::Args),
    /// temper-rag's SQLite and PostgreSQL + pgvector stores on the same synthetic embeddings:
    /// ingest chunks/s, dense-search p50/p99 latency and recall@k against exact search.
    Stores(stores::Args),
    /// Streaming clients against `temper serve` and llama.cpp's llama-server, side by side:
    /// time to first token, inter-token latency and aggregate tokens/s per concurrency.
    Serve(loadtest::Args),
    /// Decode tokens/s with a JSON-schema constraint against without, one stream and four.
    Structured(structured::Args),
    /// One measurement of one side, printed as a line of JSON (run by `engine`).
    #[command(hide = true)]
    Side(SideArgs),
}

#[derive(Args)]
struct EngineArgs {
    /// A catalog name or a GGUF file; repeat to bench several models.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: Vec<String>,
    /// Thread counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Measured pairs after the warm-up pair.
    #[arg(long, default_value_t = 5)]
    pairs: usize,
    /// Prompt tokens of the pp test.
    #[arg(long, default_value_t = 512)]
    pp: usize,
    /// Generated tokens of the tg test.
    #[arg(long, default_value_t = 128)]
    tg: usize,
    /// Context size both sides allocate.
    #[arg(long, default_value_t = 2048)]
    ctx: usize,
    /// Also measure aggregate generation with this many concurrent requests against one;
    /// comma-separated for several counts (`4,8`).
    #[arg(long, value_delimiter = ',')]
    concurrent: Vec<usize>,
    /// Also measure tg with this many sequences decoding together, one forward pass per step,
    /// on both sides (aggregate tokens/s, in processes of their own).
    #[arg(long)]
    batch: Option<usize>,
    /// Prompt tokens each sequence of `--batch` reads first (not timed), so that its decoding
    /// attends over a context of this size.
    #[arg(long, default_value_t = 0)]
    batch_prompt: usize,
    /// Also measure time to first token of a request sharing a prompt prefix of this many tokens
    /// with the one before it.
    #[arg(long)]
    prefix: Option<usize>,
    /// Also measure tg through `LocalModel`, the path `temper ask` and the server take: the decode
    /// tok/s its responses report for one greedy request at a time, loaded with 1 sequence and
    /// with 8 (as `temper serve` loads it), a round of each alternately.
    #[arg(long)]
    local: bool,
    /// Where to write the results (a section per model is replaced or added).
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Print only; leave the results file alone.
    #[arg(long)]
    no_write: bool,
}

#[derive(Args, Clone)]
struct SideArgs {
    #[arg(long)]
    peer: Peer,
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    threads: usize,
    #[arg(long)]
    pp: usize,
    #[arg(long)]
    tg: usize,
    #[arg(long)]
    ctx: usize,
    /// Sequences decoding together; above 1, or after a prompt, only that tg is measured (pp is
    /// NaN).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Prompt tokens each of the `batch` sequences reads before its timed decoding.
    #[arg(long, default_value_t = 0)]
    batch_prompt: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Peer {
    Temper,
    Llamacpp,
}

/// What one child process measured.
#[derive(Clone, Copy, Debug)]
struct Sample {
    pp_tps: f64,
    tg_tps: f64,
    /// Peak resident set, in KiB, when the OS reports it.
    rss_kib: Option<u64>,
}

impl Sample {
    fn to_line(self) -> String {
        format!("{} {} {}", self.pp_tps, self.tg_tps, self.rss_kib.map_or(-1, |r| r as i64))
    }

    fn parse(line: &str) -> Option<Sample> {
        let mut parts = line.split_whitespace();
        let pp_tps = parts.next()?.parse().ok()?;
        let tg_tps = parts.next()?.parse().ok()?;
        let rss: i64 = parts.next()?.parse().ok()?;
        Some(Sample { pp_tps, tg_tps, rss_kib: u64::try_from(rss).ok() })
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Commands::Engine(args) => engine(args),
        Commands::Retrieval(args) => retrieval::run(&args),
        Commands::Vectors(args) => ann::run(&args),
        Commands::Stores(args) => stores::run(&args),
        Commands::Serve(args) => loadtest::run(&args),
        Commands::Structured(args) => structured::run(&args),
        Commands::Side(args) => {
            let sample = match args.peer {
                Peer::Temper => peer::temper(&args)?,
                Peer::Llamacpp => peer::llamacpp(&args)?,
            };
            println!("{}", sample.to_line());
            Ok(())
        }
    }
}

/// The synthetic prompt both sides run: deterministic ids spread over the vocabulary.
fn synthetic_tokens(n: usize, vocab: usize) -> Vec<u32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab as u64) as u32
        })
        .collect()
}

/// Peak resident set of this process in KiB (Linux), for the report.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

fn resolve_model(name: &str) -> Result<PathBuf> {
    let store = temper_models::ModelStore::from_env()?;
    store.resolve(name, &temper_models::ConsoleProgress::new()).with_context(|| format!("model {name}"))
}

fn run_side(side: &SideArgs) -> Result<Sample> {
    let exe = std::env::current_exe().context("finding this program to run its measurements")?;
    let peer = match side.peer {
        Peer::Temper => "temper",
        Peer::Llamacpp => "llamacpp",
    };
    let output = Command::new(exe)
        .args(["side", "--peer", peer, "--model"])
        .arg(&side.model)
        .args(["--threads", &side.threads.to_string()])
        .args(["--pp", &side.pp.to_string(), "--tg", &side.tg.to_string(), "--ctx", &side.ctx.to_string()])
        .args(["--batch", &side.batch.to_string(), "--batch-prompt", &side.batch_prompt.to_string()])
        .output()
        .context("running a measurement")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("the {peer} measurement failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    stdout
        .lines()
        .rev()
        .find_map(Sample::parse)
        .with_context(|| format!("the {peer} measurement printed no result: {stdout:?}"))
}

fn engine(args: EngineArgs) -> Result<()> {
    if args.threads.contains(&0) || args.pp == 0 || args.tg == 0 || args.pairs == 0 || args.batch == Some(0) {
        bail!("--threads, --pp, --tg, --pairs and --batch must be at least 1");
    }
    if args.pp.max(args.batch_prompt) + args.tg > args.ctx {
        bail!("--ctx {} is smaller than --pp or --batch-prompt plus --tg {}", args.ctx, args.tg);
    }
    let peers = if cfg!(feature = "llamacpp") {
        vec![Peer::Temper, Peer::Llamacpp]
    } else {
        eprintln!(
            "llama.cpp is not built in (the `llamacpp` feature is off): measuring Temper alone; \
             run scripts/bench for the comparison"
        );
        vec![Peer::Temper]
    };
    let mut sections = Vec::new();
    for name in &args.model {
        let path = resolve_model(name)?;
        let load_before = load_average();
        let mut rows = Vec::new();
        for &threads in &args.threads {
            let side = |peer, batch, batch_prompt| SideArgs {
                peer,
                model: path.clone(),
                threads,
                pp: args.pp,
                tg: args.tg,
                ctx: args.ctx,
                batch,
                batch_prompt,
            };
            // The first pair warms the page cache and the CPU clocks; it is not counted.
            let mut samples = vec![Vec::new(); peers.len()];
            let (mut batched, mut alone) = (vec![Vec::new(); peers.len()], vec![Vec::new(); peers.len()]);
            for pair in 0..=args.pairs {
                let warm_up = if pair == 0 { " (warm-up)" } else { "" };
                for (i, &peer) in peers.iter().enumerate() {
                    let sample = run_side(&side(peer, 1, 0))?;
                    let mut line = format!(
                        "{name} t={threads} pair {pair}{warm_up}: {peer:?} pp {:.1} tg {:.1}",
                        sample.pp_tps, sample.tg_tps
                    );
                    // After a prompt, one sequence alone at the same context is the baseline.
                    let prompt = args.batch_prompt;
                    let one = (args.batch.is_some() && prompt > 0)
                        .then(|| run_side(&side(peer, 1, prompt)))
                        .transpose()?;
                    let together = args.batch.map(|b| run_side(&side(peer, b, prompt))).transpose()?;
                    if let Some(one) = one {
                        line += &format!(", 1 after the prompt {:.1}", one.tg_tps);
                    }
                    if let (Some(b), Some(together)) = (args.batch, together) {
                        line += &format!(", {b} together {:.1}", together.tg_tps);
                    }
                    eprintln!("{line}");
                    if pair > 0 {
                        samples[i].push(sample);
                        alone[i].extend(one.map(|t| t.tg_tps));
                        batched[i].extend(together.map(|t| t.tg_tps));
                    }
                }
            }
            rows.push(report::ThreadRow { threads, samples, batched, alone });
        }
        let serving = serve::measure(&path, name, &args)?;
        let section = report::Section {
            model: name.clone(),
            file: file_name(&path),
            pp: args.pp,
            tg: args.tg,
            ctx: args.ctx,
            pairs: args.pairs,
            batch: args.batch.map(|b| (b, args.batch_prompt)),
            peers: peers.clone(),
            rows,
            serving,
            load: format!("{load_before} before, {} after", load_average()),
        };
        let table = section.render();
        println!("{table}");
        sections.push(section);
    }
    if !args.no_write {
        let command = command_line();
        for section in &sections {
            report::write(&args.out, section, &command)?;
        }
        eprintln!("wrote {}", args.out.display());
    }
    Ok(())
}

/// How this run was started, for the results file.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runner = if cfg!(feature = "llamacpp") {
        "scripts/bench".to_string()
    } else {
        "cargo run --release -p temper-bench --".to_string()
    };
    // scripts/bench adds the `engine` subcommand itself.
    let args = if cfg!(feature = "llamacpp") { &args[1..] } else { &args[..] };
    std::iter::once(runner).chain(args.iter().cloned()).collect::<Vec<_>>().join(" ")
}

/// Appends `values` as little-endian f32s, the layout of every vector file the benches write.
fn extend_f32_le<'a>(bytes: &mut Vec<u8>, values: impl IntoIterator<Item = &'a f32>) {
    bytes.extend(values.into_iter().flat_map(|x| x.to_le_bytes()));
}

/// The file name of `path`, for labels.
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |f| f.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_tokens_are_repeatable_and_in_the_vocabulary() {
        let a = synthetic_tokens(512, 49152);
        assert_eq!(a, synthetic_tokens(512, 49152));
        assert!(a.iter().all(|&t| t < 49152));
        // Spread out, not a constant or a short cycle.
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() > 500, "{}", distinct.len());
    }

    #[test]
    fn samples_survive_the_trip_through_the_child_output() {
        let sample = Sample { pp_tps: 512.25, tg_tps: 157.5, rss_kib: Some(180_000) };
        let back = Sample::parse(&sample.to_line()).unwrap();
        assert_eq!((back.pp_tps, back.tg_tps, back.rss_kib), (512.25, 157.5, Some(180_000)));
        let unknown = Sample { rss_kib: None, ..sample };
        assert_eq!(Sample::parse(&unknown.to_line()).unwrap().rss_kib, None);
        assert!(Sample::parse("loading model…").is_none());
    }

    /// A Temper measurement on the real model; without the llama.cpp feature, the peer's side
    /// says how to get it. (Skipped when the model is absent, except under CI.)
    #[cfg(not(feature = "llamacpp"))]
    #[test]
    fn a_temper_measurement_runs_on_the_real_model() {
        let store = temper_models::ModelStore::from_env().unwrap();
        let Some(model) = store.installed_path("smollm2-135m-instruct") else {
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "smollm2-135m-instruct is not installed");
            eprintln!("skipping: smollm2-135m-instruct is not installed");
            return;
        };
        let args = SideArgs {
            peer: Peer::Temper,
            model,
            threads: 1,
            pp: 64,
            tg: 8,
            ctx: 128,
            batch: 1,
            batch_prompt: 0,
        };
        let sample = peer::temper(&args).unwrap();
        assert!(sample.pp_tps > 0.0 && sample.tg_tps > 0.0);
        let together = peer::temper(&SideArgs { batch: 3, batch_prompt: 16, ..args.clone() }).unwrap();
        assert!(together.pp_tps.is_nan() && together.tg_tps > 0.0);
        assert!(peer::llamacpp(&args).unwrap_err().to_string().contains("--features llamacpp"));
    }
}
