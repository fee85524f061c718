//! One measurement per side, run in a child process: load, warm up, then pp (one batch on an
//! empty context, logits of the last token) and tg (one token at a time from an empty context);
//! or, with `batch` sequences, only tg with every sequence's next token in one forward pass and
//! logits for each.

use std::time::Instant;

use anyhow::{Context, Result};
use temper_engine::gguf::Gguf;
use temper_engine::model::{KvCache, Model, Scratch};

use crate::{peak_rss_kib, synthetic_tokens, Sample, SideArgs};

/// Tokens of the warm-up prefill and decode steps, before anything is timed.
const WARM_UP: (usize, usize) = (32, 4);

pub fn temper(args: &SideArgs) -> Result<Sample> {
    let gguf = Gguf::open(&args.model).with_context(|| format!("opening {}", args.model.display()))?;
    let model = Model::from_gguf(gguf)?;
    let c = &model.config;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads).build()?;
    let tokens = synthetic_tokens(args.pp.max(args.tg), c.vocab);
    let mut scratch = Scratch::new(c);
    if args.batch > 1 || args.batch_prompt > 0 {
        return pool.install(|| temper_batched(&model, args, &tokens, &mut scratch));
    }
    let mut cache = KvCache::new(c.layers, c.kv_dim(), args.ctx);
    let mut logits = vec![0.0; c.vocab];
    pool.install(|| -> Result<Sample> {
        model.forward(&mut cache, &tokens[..WARM_UP.0], &mut scratch, &mut logits)?;
        for &t in &tokens[..WARM_UP.1] {
            model.forward(&mut cache, &[t], &mut scratch, &mut logits)?;
        }
        cache.truncate(0);

        let start = Instant::now();
        model.forward(&mut cache, &tokens[..args.pp], &mut scratch, &mut logits)?;
        let pp_tps = args.pp as f64 / start.elapsed().as_secs_f64();
        cache.truncate(0);

        let start = Instant::now();
        for &t in &tokens[..args.tg] {
            model.forward(&mut cache, &[t], &mut scratch, &mut logits)?;
        }
        let tg_tps = args.tg as f64 / start.elapsed().as_secs_f64();
        Ok(Sample { pp_tps, tg_tps, rss_kib: peak_rss_kib() })
    })
}

/// Aggregate tg of `args.batch` sequences, each reading its own token of `tokens` at every step
/// after a prompt of `args.batch_prompt` tokens.
fn temper_batched(model: &Model, args: &SideArgs, tokens: &[u32], scratch: &mut Scratch) -> Result<Sample> {
    let c = &model.config;
    let mut caches: Vec<KvCache> =
        (0..args.batch).map(|_| KvCache::new(c.layers, c.kv_dim(), args.ctx)).collect();
    let mut logits = vec![0.0; args.batch * c.vocab];
    let prompt = synthetic_tokens(args.batch_prompt, c.vocab);
    let mut step = |caches: &mut [KvCache], scratch: &mut Scratch, i: usize| {
        let ids: Vec<[u32; 1]> = (0..args.batch).map(|s| [tokens[(i + s) % tokens.len()]]).collect();
        let mut seqs: Vec<(&mut KvCache, &[u32])> =
            caches.iter_mut().zip(&ids).map(|(c, id)| (c, &id[..])).collect();
        model.forward_many(&mut seqs[..], scratch, &mut logits)
    };
    for i in 0..WARM_UP.1 {
        step(&mut caches, scratch, i)?;
    }
    let mut prompt_logits = vec![0.0; c.vocab];
    for cache in &mut caches {
        cache.truncate(0);
        if !prompt.is_empty() {
            model.forward(cache, &prompt, scratch, &mut prompt_logits)?;
        }
    }
    let start = Instant::now();
    for i in 0..args.tg {
        step(&mut caches, scratch, i)?;
    }
    let tg_tps = (args.batch * args.tg) as f64 / start.elapsed().as_secs_f64();
    Ok(Sample { pp_tps: f64::NAN, tg_tps, rss_kib: peak_rss_kib() })
}

#[cfg(not(feature = "llamacpp"))]
pub fn llamacpp(_: &SideArgs) -> Result<Sample> {
    anyhow::bail!("llama.cpp is not built in: rebuild with `--features llamacpp` (scripts/bench does)")
}

#[cfg(feature = "llamacpp")]
pub fn llamacpp(args: &SideArgs) -> Result<Sample> {
    use std::num::NonZeroU32;

    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_2::llama_backend::LlamaBackend;
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::LlamaModel;
    use llama_cpp_2::token::LlamaToken;
    use llama_cpp_2::{send_logs_to_tracing, LogOptions};

    send_logs_to_tracing(LogOptions::default().with_logs_enabled(false));
    let backend = LlamaBackend::init()?;
    let model = LlamaModel::load_from_file(&backend, &args.model, &LlamaModelParams::default())
        .with_context(|| format!("llama.cpp loading {}", args.model.display()))?;
    let threads = i32::try_from(args.threads)?;
    let batch_len = u32::try_from(args.pp)?;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(u32::try_from(args.ctx)?))
        .with_n_batch(batch_len)
        .with_n_ubatch(batch_len)
        .with_n_seq_max(u32::try_from(args.batch)?)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model.new_context(&backend, params).context("llama.cpp context")?;
    let vocab = usize::try_from(model.n_vocab())?;
    let tokens: Vec<LlamaToken> =
        synthetic_tokens(args.pp.max(args.tg), vocab).into_iter().map(|t| LlamaToken(t as i32)).collect();
    let mut batch = LlamaBatch::new(args.pp.max(args.batch), 1);
    // Decodes `tokens` of sequence `seq` at positions `start..` as one batch, with logits for
    // the last.
    let decode = |ctx: &mut llama_cpp_2::context::LlamaContext,
                  batch: &mut LlamaBatch,
                  tokens: &[LlamaToken],
                  start: usize,
                  seq: usize| {
        batch.clear();
        for (i, &t) in tokens.iter().enumerate() {
            batch.add(t, i32::try_from(start + i)?, &[i32::try_from(seq)?], i + 1 == tokens.len())?;
        }
        ctx.decode(batch)?;
        // Reading the logits waits for the computation to finish.
        anyhow::ensure!(!ctx.get_logits_ith(batch.n_tokens() - 1).is_empty());
        anyhow::Ok(())
    };

    if args.batch > 1 || args.batch_prompt > 0 {
        // Every sequence's next token in one batch, each with its logits, as a server decodes.
        // `pos` is each sequence's position: its prompt's length plus the steps so far.
        let step = |ctx: &mut llama_cpp_2::context::LlamaContext, batch: &mut LlamaBatch, pos: usize| {
            batch.clear();
            for s in 0..args.batch {
                batch.add(
                    tokens[(pos + s) % tokens.len()],
                    i32::try_from(pos)?,
                    &[i32::try_from(s)?],
                    true,
                )?;
            }
            ctx.decode(batch)?;
            anyhow::ensure!(!ctx.get_logits_ith(batch.n_tokens() - 1).is_empty());
            anyhow::Ok(())
        };
        for i in 0..WARM_UP.1 {
            step(&mut ctx, &mut batch, i)?;
        }
        ctx.clear_kv_cache();
        let prompt: Vec<LlamaToken> =
            synthetic_tokens(args.batch_prompt, vocab).into_iter().map(|t| LlamaToken(t as i32)).collect();
        for s in 0..args.batch {
            for (chunk, part) in prompt.chunks(args.pp).enumerate() {
                decode(&mut ctx, &mut batch, part, chunk * args.pp, s)?;
            }
        }
        let start = Instant::now();
        for i in 0..args.tg {
            step(&mut ctx, &mut batch, args.batch_prompt + i)?;
        }
        let tg_tps = (args.batch * args.tg) as f64 / start.elapsed().as_secs_f64();
        return Ok(Sample { pp_tps: f64::NAN, tg_tps, rss_kib: peak_rss_kib() });
    }

    decode(&mut ctx, &mut batch, &tokens[..WARM_UP.0], 0, 0)?;
    for (i, &t) in tokens[..WARM_UP.1].iter().enumerate() {
        decode(&mut ctx, &mut batch, &[t], WARM_UP.0 + i, 0)?;
    }
    ctx.clear_kv_cache();

    let start = Instant::now();
    decode(&mut ctx, &mut batch, &tokens[..args.pp], 0, 0)?;
    let pp_tps = args.pp as f64 / start.elapsed().as_secs_f64();
    ctx.clear_kv_cache();

    let start = Instant::now();
    for (i, &t) in tokens[..args.tg].iter().enumerate() {
        decode(&mut ctx, &mut batch, &[t], i, 0)?;
    }
    let tg_tps = args.tg as f64 / start.elapsed().as_secs_f64();
    Ok(Sample { pp_tps, tg_tps, rss_kib: peak_rss_kib() })
}
