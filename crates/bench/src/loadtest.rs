//! `temper-bench serve`: streaming clients against `temper serve` and, side by side in the same
//! run, llama.cpp's `llama-server` on the same GGUF, with the same prompts, concurrency and
//! limits. Prints time to first token, inter-token latency, aggregate tokens/s and errors per
//! concurrency, and the HTTP path's single-stream decode speed against the engine's own.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::serve::median;
use crate::{load_average, resolve_model, run_side, Peer, SideArgs};

#[derive(clap::Args)]
pub struct Args {
    /// A catalog name or a GGUF file.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    /// Concurrent streaming clients, comma-separated: one measurement per count.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    clients: Vec<usize>,
    /// Seconds each measurement sends requests for.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// Inference threads of both servers.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Context window per sequence on both sides.
    #[arg(long, default_value_t = 1024)]
    ctx: usize,
    /// Measured rounds (Temper then llama-server, alternately); the report gives medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The temper binary (built by `cargo build --release -p temper-cli`).
    #[arg(long, default_value = "target/release/temper")]
    temper: PathBuf,
    /// llama.cpp's llama-server (`scripts/llama-server` builds it); without it, Temper alone.
    #[arg(long)]
    llama_server: Option<PathBuf>,
}

/// Questions that ask for long answers, a different one per client so that no prompt cache
/// serves one client from another's work.
const PROMPTS: &[&str] = &[
    "Write a detailed story about a lighthouse keeper who finds a message in a bottle.",
    "Explain in detail how bread is made, from the field to the oven.",
    "Describe a journey across a desert on a camel, day by day.",
    "Write a long letter from a sailor to his family about life at sea.",
    "Explain how the heart pumps blood through the body, step by step.",
    "Tell the history of the bicycle in as much detail as you can.",
    "Describe a busy market in a large city in the morning, in detail.",
    "Write a detailed guide to growing tomatoes in a small garden.",
    "Explain how a computer adds two numbers, from the keyboard to the screen.",
    "Write a story about a dragon who wants to become a baker.",
    "Describe the life cycle of a butterfly in detail.",
    "Explain how rain forms and why it falls, with examples.",
    "Write a detailed travel diary of a week in the mountains.",
    "Describe how a violin is made by hand, step by step.",
    "Tell a long fairy tale about a clever fox and a proud crow.",
    "Explain the rules of chess to a beginner, in detail.",
];

/// One answer, as a client saw it.
struct Answer {
    ttft: Duration,
    /// Gaps between the pieces of text after the first.
    gaps: Vec<Duration>,
    tokens: u64,
    /// From the first piece of text to the last.
    decoding: Duration,
}

/// One measurement: `clients` clients for the run's duration.
#[derive(Default)]
struct Run {
    answers: Vec<Answer>,
    errors: usize,
    elapsed: Duration,
}

impl Run {
    fn tokens_per_second(&self) -> f64 {
        self.answers.iter().map(|a| a.tokens).sum::<u64>() as f64 / self.elapsed.as_secs_f64()
    }

    /// Decode speed of one stream: tokens after the first over the time they took, median.
    fn stream_decode(&self) -> f64 {
        let mut speeds: Vec<f64> = self
            .answers
            .iter()
            .filter(|a| a.tokens > 1 && !a.decoding.is_zero())
            .map(|a| (a.tokens - 1) as f64 / a.decoding.as_secs_f64())
            .collect();
        median(&mut speeds)
    }

    fn ttft_ms(&self, q: f64) -> f64 {
        percentile(self.answers.iter().map(|a| a.ttft).collect(), q)
    }

    fn itl_ms(&self, q: f64) -> f64 {
        percentile(self.answers.iter().flat_map(|a| a.gaps.iter().copied()).collect(), q)
    }
}

fn percentile(mut values: Vec<Duration>, q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort();
    let rank = ((values.len() - 1) as f64 * q).round() as usize;
    values[rank].as_secs_f64() * 1e3
}

/// A server process on a port of its own, ended when dropped.
struct Server {
    name: &'static str,
    base: String,
    process: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn start(name: &'static str, mut command: Command, port: u16) -> Result<Server> {
    let process = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let server = Server { name, base: format!("http://127.0.0.1:{port}"), process };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{}/health", server.base)).send().await {
            if response.status().is_success() {
                return Ok(server);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{name} did not report ready within 120 s")
}

/// One streamed chat answer, timed as the client sees it.
async fn ask(
    client: &reqwest::Client,
    base: &str,
    model: &str,
    prompt: &str,
    max_tokens: u32,
) -> Result<Answer> {
    let body = json!({
        "model": model,
        "messages": [{ "role": "user", "content": prompt }],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    let sent = Instant::now();
    let response = client.post(format!("{base}/v1/chat/completions")).json(&body).send().await?;
    if !response.status().is_success() {
        bail!("status {}: {}", response.status(), response.text().await.unwrap_or_default());
    }
    let mut body = response.bytes_stream();
    let mut pending = Vec::new();
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    let (mut gaps, mut pieces, mut usage) = (Vec::new(), 0u64, None);
    while let Some(bytes) = body.next().await {
        pending.extend_from_slice(&bytes?);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            let Some(data) = std::str::from_utf8(&event)?.trim().strip_prefix("data: ") else { continue };
            if data == "[DONE]" {
                continue;
            }
            let chunk: Value = serde_json::from_str(data)?;
            if let Some(error) = chunk.get("error") {
                bail!("error event: {error}");
            }
            usage = chunk["usage"]["completion_tokens"].as_u64().or(usage);
            let text = chunk["choices"][0]["delta"]["content"].as_str().unwrap_or("");
            if !text.is_empty() {
                let now = Instant::now();
                match last {
                    Some(previous) => gaps.push(now - previous),
                    None => first = Some(now),
                }
                last = Some(now);
                pieces += 1;
            }
        }
    }
    let (Some(first), Some(last)) = (first, last) else { bail!("an answer without text") };
    Ok(Answer { ttft: first - sent, gaps, tokens: usage.unwrap_or(pieces), decoding: last - first })
}

/// `clients` clients asking one after another until the time is up.
async fn measure(server: &Server, model: &str, clients: usize, args: &Args) -> Run {
    // A connection per request: llama-server closes a kept-alive connection after a stream,
    // and a request sent on it in that moment fails without reaching the server.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("an HTTP client");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let tasks = (0..clients).map(|i| {
        let (client, base, model) = (client.clone(), server.base.clone(), model.to_owned());
        let max_tokens = args.max_tokens;
        async move {
            let mut run = Run::default();
            let mut n = i;
            while Instant::now() < deadline {
                match ask(&client, &base, &model, PROMPTS[n % PROMPTS.len()], max_tokens).await {
                    Ok(answer) => run.answers.push(answer),
                    Err(error) => {
                        eprintln!("  request failed: {error:#}");
                        run.errors += 1;
                    }
                }
                n += clients;
            }
            run
        }
    });
    let runs = futures::future::join_all(tasks).await;
    let elapsed = started.elapsed();
    runs.into_iter().fold(Run { elapsed, ..Run::default() }, |mut all, run| {
        all.answers.extend(run.answers);
        all.errors += run.errors;
        all
    })
}

/// What the report shows per side and concurrency, over the rounds.
#[derive(Default)]
struct Rounds {
    tokens_per_second: Vec<f64>,
    ttft_p50: Vec<f64>,
    ttft_p99: Vec<f64>,
    itl_p50: Vec<f64>,
    itl_p99: Vec<f64>,
    stream_decode: Vec<f64>,
    requests: usize,
    errors: usize,
}

impl Rounds {
    fn add(&mut self, run: &Run) {
        self.tokens_per_second.push(run.tokens_per_second());
        self.ttft_p50.push(run.ttft_ms(0.5));
        self.ttft_p99.push(run.ttft_ms(0.99));
        self.itl_p50.push(run.itl_ms(0.5));
        self.itl_p99.push(run.itl_ms(0.99));
        self.stream_decode.push(run.stream_decode());
        self.requests += run.answers.len();
        self.errors += run.errors;
    }
}

pub fn run(args: &Args) -> Result<()> {
    if args.clients.is_empty() || args.clients.contains(&0) || args.rounds == 0 || args.seconds == 0 {
        bail!("--clients, --rounds and --seconds must be at least 1");
    }
    let path = resolve_model(&args.model)?;
    let parallel = *args.clients.iter().max().expect("not empty");
    let runtime = tokio::runtime::Runtime::new()?;
    let load_before = load_average();
    let mut servers = Vec::new();
    runtime.block_on(async {
        let port = free_port()?;
        let mut temper = Command::new(&args.temper);
        temper.args(["serve", "--port", &port.to_string(), "--model"]).arg(&path).args([
            "--parallel",
            &parallel.to_string(),
            "--queue",
            &(parallel * 4).to_string(),
            "--threads",
            &args.threads.to_string(),
            "--ctx",
            &args.ctx.to_string(),
        ]);
        servers.push(start("temper serve", temper, port).await?);
        if let Some(binary) = &args.llama_server {
            let port = free_port()?;
            let mut llama = Command::new(binary);
            // llama-server splits its context over the slots: give each the same window as Temper's.
            llama.arg("-m").arg(&path).args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--parallel",
                &parallel.to_string(),
                "--ctx-size",
                &(args.ctx * parallel).to_string(),
                "--threads",
                &args.threads.to_string(),
                "--threads-batch",
                &args.threads.to_string(),
                "--cont-batching",
            ]);
            servers.push(start("llama-server", llama, port).await?);
        }
        anyhow::Ok(())
    })?;
    let model = path.to_string_lossy().into_owned();
    let mut results: Vec<Vec<Rounds>> =
        args.clients.iter().map(|_| servers.iter().map(|_| Rounds::default()).collect()).collect();
    let mut engine_tg = Vec::new();
    for round in 0..=args.rounds {
        let warm_up = round == 0;
        for (c, &clients) in args.clients.iter().enumerate() {
            for (s, server) in servers.iter().enumerate() {
                let run = runtime.block_on(measure(server, &model, clients, args));
                eprintln!(
                    "round {round}{}: {} with {clients} clients: {:.1} tok/s, TTFT p50 {:.0} ms, ITL p50 {:.1} ms, {} answers, {} errors",
                    if warm_up { " (warm-up)" } else { "" },
                    server.name,
                    run.tokens_per_second(),
                    run.ttft_ms(0.5),
                    run.itl_ms(0.5),
                    run.answers.len(),
                    run.errors
                );
                if !warm_up {
                    results[c][s].add(&run);
                }
            }
        }
        // The engine alone, in a process of its own, between the HTTP runs: the baseline of the
        // HTTP path's single-stream speed.
        let side = SideArgs {
            peer: Peer::Temper,
            model: path.clone(),
            threads: args.threads,
            pp: 64,
            tg: args.max_tokens as usize,
            ctx: args.ctx,
            batch: 1,
            batch_prompt: 0,
        };
        let sample = run_side(&side)?;
        eprintln!("round {round}: engine tg{} {:.1} tok/s", args.max_tokens, sample.tg_tps);
        if !warm_up {
            engine_tg.push(sample.tg_tps);
        }
    }
    drop(servers);
    println!(
        "{}",
        report(args, &results, &mut engine_tg, &format!("{load_before} before, {} after", load_average()))
    );
    Ok(())
}

fn report(args: &Args, results: &[Vec<Rounds>], engine_tg: &mut [f64], load: &str) -> String {
    let names = ["temper serve", "llama-server"];
    let mut out = format!(
        "model {}, {} threads, {} tokens per answer at most, {} s per measurement, medians of {} rounds; load {load}\n\n",
        args.model, args.threads, args.max_tokens, args.seconds, args.rounds
    );
    out += "| clients | server | tok/s (all streams) | TTFT p50 / p99 ms | ITL p50 / p99 ms | answers | errors |\n";
    out += "| --- | --- | --- | --- | --- | --- | --- |\n";
    for (c, &clients) in args.clients.iter().enumerate() {
        for (s, rounds) in results[c].iter().enumerate() {
            let mut rounds_tps = rounds.tokens_per_second.clone();
            let tps = median(&mut rounds_tps);
            let ratio = match (s, results[c].get(1)) {
                (0, Some(peer)) => {
                    format!(" ({:.2}× llama-server)", tps / median(&mut peer.tokens_per_second.clone()))
                }
                _ => String::new(),
            };
            out += &format!(
                "| {clients} | {} | {tps:.1}{ratio} | {:.0} / {:.0} | {:.1} / {:.1} | {} | {} |\n",
                names[s],
                median(&mut rounds.ttft_p50.clone()),
                median(&mut rounds.ttft_p99.clone()),
                median(&mut rounds.itl_p50.clone()),
                median(&mut rounds.itl_p99.clone()),
                rounds.requests,
                rounds.errors,
            );
        }
    }
    if let Some(c) = args.clients.iter().position(|&n| n == 1) {
        let http = median(&mut results[c][0].stream_decode.clone());
        let engine = median(engine_tg);
        out += &format!(
            "\nOne stream through HTTP decodes {http:.1} tok/s; the engine alone (tg{}) {engine:.1} tok/s: {:.1}%.\n",
            args.max_tokens,
            100.0 * http / engine
        );
    }
    let aggregate = |c: usize| median(&mut results[c][0].tokens_per_second.clone());
    if let (Some(one), Some(most)) =
        (args.clients.iter().position(|&n| n == 1), args.clients.len().checked_sub(1))
    {
        out += &format!(
            "{} concurrent streams reach {:.2}× one stream's tokens/s on temper serve.\n",
            args.clients[most],
            aggregate(most) / aggregate(one)
        );
    }
    out
}
