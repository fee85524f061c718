//! What constrained decoding costs: decode tokens/s under a JSON-schema constraint against
//! unconstrained, on the same prompt and model, one stream and four together, rounds
//! alternating; and the time to the first token, which includes compiling the grammar.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use futures::future::join_all;
use serde_json::json;
use temper_core::{ChatModel, ChatRequest, ChatResponse, GenerationParams, Message, ResponseFormat};
use temper_engine::{LoadOptions, LocalModel};

use crate::resolve_model;
use crate::serve::median;

#[derive(ClapArgs)]
pub struct Args {
    /// A catalog name or a GGUF file.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Measured rounds; each runs both sides at each concurrency.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Tokens generated per answer.
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
}

/// A list long enough that the answer runs to `max_tokens` under the constraint as without.
fn schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "facts": {"type": "array", "minItems": 30, "maxItems": 60,
                      "items": {"type": "object",
                                "properties": {"topic": {"type": "string", "maxLength": 30},
                                               "fact": {"type": "string", "maxLength": 200}},
                                "required": ["topic", "fact"], "additionalProperties": false}}
        },
        "required": ["facts"],
        "additionalProperties": false
    })
}

pub fn run(args: &Args) -> Result<()> {
    let path = resolve_model(&args.model)?;
    let options = LoadOptions { threads: Some(args.threads), context_window: Some(1024), sequences: Some(4) };
    let model =
        LocalModel::load(&path, &args.model, options).with_context(|| format!("loading {}", args.model))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let request = |constrained: bool, seed: u64| {
        let params = GenerationParams {
            temperature: Some(0.8),
            seed: Some(seed),
            max_tokens: Some(args.max_tokens),
            ..Default::default()
        };
        let request = ChatRequest::new(vec![Message::user(
            "List as many facts about the Moon as you can, as JSON objects with a topic and a fact.",
        )])
        .with_params(params);
        match constrained {
            true => request.with_response_format(ResponseFormat::JsonSchema {
                name: "facts".into(),
                schema: schema(),
                strict: true,
            }),
            false => request,
        }
    };
    println!(
        "constrained decoding cost: {} on {} threads, {} tokens an answer, {} rounds (medians)",
        args.model, args.threads, args.max_tokens, args.rounds
    );
    println!(
        "{:<8} {:>12} {:>14} {:>12} {:>14} {:>7}",
        "streams", "free tok/s", "schema tok/s", "free ttft", "schema ttft", "ratio"
    );
    for streams in [1usize, 4] {
        let mut speeds = [Vec::new(), Vec::new()];
        let mut ttfts = [Vec::new(), Vec::new()];
        // A warm-up round, then the measured ones; the sides alternate within a round.
        for round in 0..=args.rounds {
            for (side, constrained) in [false, true].into_iter().enumerate() {
                let started = Instant::now();
                let answers: Vec<ChatResponse> = runtime
                    .block_on(join_all(
                        (0..streams).map(|i| model.chat(request(constrained, (round * 10 + i) as u64))),
                    ))
                    .into_iter()
                    .collect::<temper_core::Result<_>>()?;
                let tokens: u32 = answers.iter().map(|a| a.usage.completion_tokens).sum();
                let first = answers.iter().map(|a| a.timings.ttft_ms).fold(f64::INFINITY, f64::min);
                if round > 0 {
                    // Aggregate decode speed: every stream's tokens over the wall time after the first token.
                    let decode_secs = started.elapsed().as_secs_f64() - first / 1e3;
                    speeds[side].push(f64::from(tokens) / decode_secs);
                    ttfts[side].push(first);
                }
            }
        }
        let (free, constrained) = (median(&mut speeds[0]), median(&mut speeds[1]));
        println!(
            "{streams:<8} {free:>12.1} {constrained:>14.1} {:>10.1}ms {:>12.1}ms {:>7.3}",
            median(&mut ttfts[0]),
            median(&mut ttfts[1]),
            constrained / free
        );
    }
    compile_times(&model)
}

/// How long a schema takes to compile into a grammar, over the validity test's schemas: the
/// time `chat_stream` takes to return, which is the compile plus tokenizing a short prompt.
fn compile_times(model: &LocalModel) -> Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../engine/tests/fixtures/structured/schemas.jsonl");
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let mut millis = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line)?;
        let format =
            ResponseFormat::JsonSchema { name: "case".into(), schema: case["schema"].clone(), strict: true };
        let request = ChatRequest::new(vec![Message::user("Hi")])
            .with_params(GenerationParams { max_tokens: Some(1), ..Default::default() })
            .with_response_format(format);
        let started = Instant::now();
        drop(model.chat_stream(request));
        millis.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let count = millis.len();
    let max = millis.iter().copied().fold(0.0, f64::max);
    println!("grammar compile, {count} schemas: median {:.2} ms, max {max:.2} ms", median(&mut millis));
    Ok(())
}
