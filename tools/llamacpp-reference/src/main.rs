//! Writes llama.cpp reference fixtures for Temper's engine tests.
//!
//! Usage: `llamacpp-reference MODEL.gguf CASES.jsonl [OUT.jsonl]` (OUT defaults to stdout).
//! Each case is `{"kind":"tokenize"|"logits","text":…}`; see README.md for what each one records.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::num::NonZeroU32;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{send_logs_to_tracing, LogOptions};
use serde::{Deserialize, Serialize};

const THREADS: i32 = 2;
const TOP_K: usize = 20;
const MAX_GREEDY: usize = 32;

#[derive(Deserialize)]
struct Case {
    kind: String,
    text: String,
}

#[derive(Serialize)]
struct TokenizeRecord<'a> {
    kind: &'static str,
    text: &'a str,
    ids: Vec<i32>,
}

#[derive(Serialize)]
struct LogitsRecord<'a> {
    kind: &'static str,
    text: &'a str,
    add_bos: bool,
    ids: Vec<i32>,
    top20: Vec<(i32, f32)>,
    greedy: Vec<i32>,
    greedy_text: String,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model_path, cases_path, out_path) = match args.as_slice() {
        [m, c] => (m, c, None),
        [m, c, o] => (m, c, Some(o)),
        _ => bail!("usage: llamacpp-reference MODEL.gguf CASES.jsonl [OUT.jsonl]"),
    };
    let cases = read_cases(Path::new(cases_path))?;

    send_logs_to_tracing(LogOptions::default().with_logs_enabled(false));
    let backend = LlamaBackend::init().context("initialising llama.cpp")?;
    let model = LlamaModel::load_from_file(&backend, model_path, &LlamaModelParams::default())
        .with_context(|| format!("loading model {model_path}"))?;

    let mut out: Box<dyn Write> = match out_path {
        Some(p) => Box::new(BufWriter::new(File::create(p).with_context(|| format!("creating {p}"))?)),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    for (n, case) in cases.iter().enumerate() {
        let line = match case.kind.as_str() {
            "tokenize" => serde_json::to_string(&TokenizeRecord {
                kind: "tokenize",
                text: &case.text,
                ids: ids(&model.vocab().tokenize(case.text.as_bytes(), false, false)),
            })?,
            "logits" => {
                let record =
                    logits(&backend, &model, &case.text).with_context(|| format!("logits case {}", n + 1))?;
                eprintln!(
                    "[{} prompt tokens] {:?}\n  -> {:?}",
                    record.ids.len(),
                    short(&case.text),
                    record.greedy_text
                );
                serde_json::to_string(&record)?
            }
            other => bail!("case {}: unknown kind {other:?}", n + 1),
        };
        writeln!(out, "{line}")?;
    }
    out.flush().context("writing output")?;
    Ok(())
}

fn read_cases(path: &Path) -> Result<Vec<Case>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut cases = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let case =
            serde_json::from_str(&line).with_context(|| format!("{}:{}: bad case", path.display(), n + 1))?;
        cases.push(case);
    }
    Ok(cases)
}

/// Tokenizes with BOS (if the model asks for it) and special tokens parsed, decodes the prompt in
/// one batch, then continues greedily, one token at a time.
fn logits<'a>(backend: &LlamaBackend, model: &LlamaModel, text: &'a str) -> Result<LogitsRecord<'a>> {
    let vocab = model.vocab();
    let prompt = vocab.tokenize(text.as_bytes(), true, true);
    ensure!(!prompt.is_empty(), "empty prompt");
    let n_ctx = u32::try_from(prompt.len() + MAX_GREEDY)?.next_power_of_two();
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_ubatch(n_ctx)
        .with_n_threads(THREADS)
        .with_n_threads_batch(THREADS);
    let mut ctx = model.new_context(backend, params).context("creating context")?;

    let mut batch = LlamaBatch::new(prompt.len(), 1);
    let last = prompt.len() - 1;
    for (i, &token) in prompt.iter().enumerate() {
        batch.add(token, i32::try_from(i)?, &[0], i == last)?;
    }
    ctx.decode(&mut batch).context("decoding prompt")?;
    let top20 = top_k(last_logits(&ctx, &batch), TOP_K);

    let mut greedy = Vec::new();
    let mut pos = prompt.len();
    loop {
        let next = LlamaToken(argmax(last_logits(&ctx, &batch)));
        greedy.push(next);
        // Like the SmolLM2 fixture, the end-of-generation token itself is recorded.
        if vocab.is_eog(next) || greedy.len() == MAX_GREEDY {
            break;
        }
        batch.clear();
        batch.add(next, i32::try_from(pos)?, &[0], true)?;
        ctx.decode(&mut batch).context("decoding greedy token")?;
        pos += 1;
    }
    let greedy_text = String::from_utf8_lossy(&vocab.detokenize(&greedy, false, true)).into_owned();

    Ok(LogitsRecord {
        kind: "logits",
        text,
        add_bos: vocab.should_add_bos(),
        ids: ids(&prompt),
        top20,
        greedy: ids(&greedy),
        greedy_text,
    })
}

fn last_logits<'c>(ctx: &'c LlamaContext, batch: &LlamaBatch) -> &'c [f32] {
    ctx.get_logits_ith(batch.n_tokens() - 1)
}

/// The `k` largest logits as `(id, logit)`, largest first; ties go to the lower id.
fn top_k(logits: &[f32], k: usize) -> Vec<(i32, f32)> {
    let mut all: Vec<(i32, f32)> = (0..).zip(logits.iter().copied()).collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

fn argmax(logits: &[f32]) -> i32 {
    top_k(logits, 1)[0].0
}

fn ids(tokens: &[LlamaToken]) -> Vec<i32> {
    tokens.iter().map(|t| t.0).collect()
}

fn short(text: &str) -> String {
    let head: String = text.chars().take(60).collect();
    if head.len() < text.len() {
        format!("{head}…")
    } else {
        head
    }
}
