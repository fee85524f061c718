//! Serving measurements through `LocalModel`, the scheduler every caller uses: aggregate
//! generation with concurrent requests, and time to first token with a shared prompt prefix.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use temper_core::{ChatModel, CompletionRequest, GenerationParams};
use temper_engine::{LoadOptions, LocalModel};

use crate::EngineArgs;

/// Rounds of each measurement; the report gives medians.
const ROUNDS: usize = 3;

#[derive(Clone, Debug, Default)]
pub struct Serving {
    pub threads: usize,
    /// Single-stream tok/s, when concurrent requests were measured against it.
    pub single: Option<f64>,
    /// (requests, aggregate tok/s) for each count of concurrent requests.
    pub concurrent: Vec<(usize, f64)>,
    /// (prefix tokens, first request's TTFT in ms, second request's TTFT in ms).
    pub prefix: Option<(usize, f64, f64)>,
    /// Decode tok/s of one request as `LocalModel` reports it, loaded with 1 and with
    /// [`SERVER_SEQUENCES`] sequences.
    pub local: Option<(f64, f64)>,
}

/// Sequences `temper serve` loads a model with.
pub const SERVER_SEQUENCES: usize = 8;

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

pub fn measure(path: &Path, name: &str, args: &EngineArgs) -> Result<Serving> {
    let threads = args.threads.iter().copied().max().unwrap_or(1);
    let mut serving = Serving { threads, ..Serving::default() };
    if args.concurrent.is_empty() && args.prefix.is_none() && !args.local {
        return Ok(serving);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let load = |sequences| {
        let options = LoadOptions { threads: Some(threads), context_window: Some(args.ctx), sequences };
        LocalModel::load(path, name, options).with_context(|| format!("loading {name}"))
    };
    if args.local {
        let (one, many) = (load(Some(1))?, load(Some(SERVER_SEQUENCES))?);
        let (mut alone, mut among) = (Vec::new(), Vec::new());
        let rounds = args.pairs.max(ROUNDS);
        for round in 0..rounds {
            alone.push(runtime.block_on(decode(&one, round, args.tg))?);
            among.push(runtime.block_on(decode(&many, round, args.tg))?);
            eprintln!(
                "{name} LocalModel round {round}: 1 sequence {:.1} tok/s, {SERVER_SEQUENCES} sequences {:.1} tok/s",
                alone[round], among[round]
            );
        }
        serving.local = Some((median(&mut alone), median(&mut among)));
    }
    if args.concurrent.is_empty() && args.prefix.is_none() {
        return Ok(serving);
    }
    let model = load(args.concurrent.iter().max().map(|&n| n.max(2)))?;
    if !args.concurrent.is_empty() {
        // Each round measures one request, then every count, side by side.
        let mut single = Vec::new();
        let mut many = vec![Vec::new(); args.concurrent.len()];
        // Every request of the run counts from its own number, so none reuses another's prompt.
        let mut next_id = 0;
        let mut ids = |n: usize| {
            next_id += n;
            next_id - n..next_id
        };
        for round in 0..ROUNDS {
            single.push(runtime.block_on(generate(&model, ids(1), args.tg))?);
            let mut line = format!("{name} concurrent round {round}: 1 → {:.1} tok/s", single[round]);
            for (&n, many) in args.concurrent.iter().zip(&mut many) {
                many.push(runtime.block_on(generate(&model, ids(n), args.tg))?);
                line += &format!(", {n} → {:.1} tok/s", many[round]);
            }
            eprintln!("{line}");
        }
        serving.single = Some(median(&mut single));
        serving.concurrent =
            args.concurrent.iter().zip(&mut many).map(|(&n, many)| (n, median(many))).collect();
    }
    if let Some(tokens) = args.prefix {
        let (mut first, mut second) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let prefix = prefix_text(&model, tokens, round)?;
            let (a, b) = runtime.block_on(async {
                let a = ttft(&model, format!("{prefix}\nQuestion: which item is largest?")).await?;
                let b = ttft(&model, format!("{prefix}\nQuestion: which item is smallest?")).await?;
                anyhow::Ok((a, b))
            })?;
            eprintln!("{name} prefix round {round}: first {a:.1} ms, second {b:.1} ms");
            first.push(a);
            second.push(b);
        }
        serving.prefix = Some((tokens, median(&mut first), median(&mut second)));
    }
    Ok(serving)
}

/// Aggregate generated tokens/s of concurrent greedy completions of `max_tokens` each, one per
/// id in `ids`, from sending the requests to the last answer.
async fn generate(model: &LocalModel, ids: std::ops::Range<usize>, max_tokens: usize) -> Result<f64> {
    let params = GenerationParams {
        temperature: Some(0.0),
        max_tokens: Some(u32::try_from(max_tokens)?),
        ..GenerationParams::default()
    };
    let start = Instant::now();
    let answers = futures::future::join_all(ids.map(|id| {
        // Counting goes on for longer than any end-of-text, and each stream counts elsewhere.
        let from = 1000 * (id + 1);
        let prompt = (from..from + 8).map(|k| k.to_string()).collect::<Vec<_>>().join(", ") + ",";
        model.complete(CompletionRequest { prompt, params: params.clone(), truncate: false })
    }))
    .await;
    let secs = start.elapsed().as_secs_f64();
    let mut tokens = 0u64;
    for answer in answers {
        tokens += u64::from(answer?.usage.completion_tokens);
    }
    Ok(tokens as f64 / secs)
}

/// The decode tok/s `model` reports for one greedy completion of `max_tokens`; a new prompt
/// each `round`.
async fn decode(model: &LocalModel, round: usize, max_tokens: usize) -> Result<f64> {
    let params = GenerationParams {
        temperature: Some(0.0),
        max_tokens: Some(u32::try_from(max_tokens)?),
        ..GenerationParams::default()
    };
    let prompt = format!("Count from {}: {}, {},", 100 * round + 1, 100 * round + 1, 100 * round + 2);
    let answer = model.complete(CompletionRequest { prompt, params, truncate: false }).await?;
    Ok(answer.timings.decode_tokens_per_second)
}

/// Text of at least `tokens` tokens, different for each `round` from its first token on, so that
/// no round reuses another's cache.
fn prefix_text(model: &LocalModel, tokens: usize, round: usize) -> Result<String> {
    let mut text = format!("Inventory list number {round}.");
    let mut item = 0;
    while model.tokenize(&text, true)?.len() < tokens {
        item += 1;
        text.push_str(&format!(" Item {item} weighs {} grams.", (item * 37 + round * 11) % 997));
    }
    Ok(text)
}

async fn ttft(model: &LocalModel, prompt: String) -> Result<f64> {
    let params =
        GenerationParams { temperature: Some(0.0), max_tokens: Some(1), ..GenerationParams::default() };
    let answer = model.complete(CompletionRequest { prompt, params, truncate: false }).await?;
    Ok(answer.timings.ttft_ms)
}
