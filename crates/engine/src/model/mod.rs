//! The transformer forward pass: weights borrowed from the memory-mapped GGUF, buffers
//! allocated once per context, matmuls on the quantized kernels, attention over a KV cache.

mod config;
mod kv;
mod ops;

pub use config::{Architecture, ModelConfig, RopeStyle};
pub use kv::KvCache;

use rayon::prelude::*;

use crate::gguf::{Gguf, GgufError, TensorInfo};
use temper_kernels::quant;
use temper_kernels::GgmlType;

/// The most prompt tokens one forward pass takes; longer prompts run in chunks of this size.
pub const MAX_BATCH: usize = 256;

/// A weight matrix in the file: `rows` rows of `cols` values.
struct Matrix {
    info: TensorInfo,
    rows: usize,
    cols: usize,
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Matrix,
    wk: Matrix,
    wv: Matrix,
    wo: Matrix,
    q_bias: Option<Vec<f32>>,
    k_bias: Option<Vec<f32>>,
    v_bias: Option<Vec<f32>>,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    w_gate: Matrix,
    w_up: Matrix,
    w_down: Matrix,
    post_ffn_norm: Option<Vec<f32>>,
}

/// A loaded model: its shape and its weights.
pub struct Model {
    pub config: ModelConfig,
    gguf: Gguf,
    embed: Matrix,
    output: Matrix,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
}

/// What a forward pass can fail on.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error("the context is full: {needed} positions needed, {capacity} available")]
    ContextFull { needed: usize, capacity: usize },
    #[error("a batch of {sequences} sequences needs a token or more for each, at most {MAX_BATCH} in all ({tokens} given), and a logits row for each ({logits} values given)")]
    BatchShape { sequences: usize, tokens: usize, logits: usize },
    #[error("cannot allocate the KV cache for {positions} positions ({bytes})")]
    OutOfMemory { positions: usize, bytes: String, source: std::collections::TryReserveError },
    #[error(transparent)]
    Kernel(#[from] quant::QuantError),
}

impl Model {
    /// Checks every tensor the architecture needs is present with the right shape and a type
    /// the kernels support.
    pub fn from_gguf(gguf: Gguf) -> Result<Model, GgufError> {
        let config = ModelConfig::from_gguf(&gguf)?;
        let c = &config;
        let matrix = |name: &str, rows: usize, cols: usize| load_matrix(&gguf, name, rows, cols);
        let vector = |name: &str, len: usize| load_vector(&gguf, name, len);
        let optional = |name: &str, len: usize| match gguf.tensor(name) {
            Some(_) => vector(name, len).map(Some),
            None => Ok(None),
        };
        let embed = matrix("token_embd.weight", c.vocab, c.embedding)?;
        let output = match gguf.tensor("output.weight") {
            Some(_) => matrix("output.weight", c.vocab, c.embedding)?,
            None => matrix("token_embd.weight", c.vocab, c.embedding)?,
        };
        let output_norm = vector("output_norm.weight", c.embedding)?;
        let mut layers = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let n = |suffix: &str| format!("blk.{i}.{suffix}");
            layers.push(Layer {
                attn_norm: vector(&n("attn_norm.weight"), c.embedding)?,
                wq: matrix(&n("attn_q.weight"), c.q_dim(), c.embedding)?,
                wk: matrix(&n("attn_k.weight"), c.kv_dim(), c.embedding)?,
                wv: matrix(&n("attn_v.weight"), c.kv_dim(), c.embedding)?,
                wo: matrix(&n("attn_output.weight"), c.embedding, c.q_dim())?,
                q_bias: optional(&n("attn_q.bias"), c.q_dim())?,
                k_bias: optional(&n("attn_k.bias"), c.kv_dim())?,
                v_bias: optional(&n("attn_v.bias"), c.kv_dim())?,
                q_norm: optional(&n("attn_q_norm.weight"), c.head_dim)?,
                k_norm: optional(&n("attn_k_norm.weight"), c.head_dim)?,
                post_attn_norm: optional(&n("post_attention_norm.weight"), c.embedding)?,
                ffn_norm: vector(&n("ffn_norm.weight"), c.embedding)?,
                w_gate: matrix(&n("ffn_gate.weight"), c.feed_forward, c.embedding)?,
                w_up: matrix(&n("ffn_up.weight"), c.feed_forward, c.embedding)?,
                w_down: matrix(&n("ffn_down.weight"), c.embedding, c.feed_forward)?,
                post_ffn_norm: optional(&n("post_ffw_norm.weight"), c.embedding)?,
            });
        }
        Ok(Model { config, gguf, embed, output, output_norm, layers })
    }

    /// Parameters stored in the file.
    pub fn parameter_count(&self) -> u64 {
        self.gguf.tensors.iter().map(TensorInfo::elements).sum()
    }

    pub fn gguf(&self) -> &Gguf {
        &self.gguf
    }

    /// Runs `tokens` at the positions after those already in `cache`, appends their keys and
    /// values to it, and writes the logits of the last token to `logits` (vocab-sized).
    pub fn forward(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        scratch: &mut Scratch,
        logits: &mut [f32],
    ) -> Result<(), ForwardError> {
        self.check(cache, tokens)?;
        self.reserve(cache, tokens)?;
        let last = tokens.len().div_ceil(MAX_BATCH).saturating_sub(1);
        // Only the last position's logits are needed: the output matmul is the largest.
        for (i, chunk) in tokens.chunks(MAX_BATCH).enumerate() {
            let logits = (i == last).then_some(&mut *logits);
            let one: &mut [(&mut KvCache, &[u32])] = &mut [(&mut *cache, chunk)];
            self.forward_batch(one, scratch, logits)?;
        }
        Ok(())
    }

    /// Several sequences' new tokens in one pass: sequence `i`'s tokens (a decode step's one
    /// token or a chunk of a prompt) are appended to its cache, and `logits[i * vocab..]` gets
    /// the logits of its last token. The weights are read once for all of them, which is what makes
    /// batching pay.
    pub fn forward_many<B: Batch + ?Sized>(
        &self,
        seqs: &mut B,
        scratch: &mut Scratch,
        logits: &mut [f32],
    ) -> Result<(), ForwardError> {
        let count = seqs.sequences();
        let tokens: usize = (0..count).map(|i| seqs.sequence(i).1.len()).sum();
        if tokens > MAX_BATCH
            || logits.len() != count * self.config.vocab
            || (0..count).any(|i| seqs.sequence(i).1.is_empty())
        {
            return Err(ForwardError::BatchShape { sequences: count, tokens, logits: logits.len() });
        }
        for i in 0..count {
            let (cache, tokens) = seqs.sequence(i);
            self.check(cache, tokens)?;
        }
        for i in 0..count {
            let (cache, tokens) = seqs.sequence_mut(i);
            self.reserve(cache, tokens)?;
        }
        self.forward_batch(seqs, scratch, Some(logits))
    }

    fn check(&self, cache: &KvCache, tokens: &[u32]) -> Result<(), ForwardError> {
        let vocab = self.config.vocab;
        if let Some(&id) = tokens.iter().find(|&&id| id as usize >= vocab) {
            return Err(ForwardError::TokenOutOfRange { id, vocab });
        }
        let needed = cache.len() + tokens.len();
        if needed > cache.capacity() {
            return Err(ForwardError::ContextFull { needed, capacity: cache.capacity() });
        }
        Ok(())
    }

    /// Grows `cache`, if need be, to hold `tokens` more positions (checked to fit its capacity).
    fn reserve(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<(), ForwardError> {
        let positions = cache.len() + tokens.len();
        cache.reserve(positions).map_err(|source| {
            let c = &self.config;
            let bytes = crate::memory::human(KvCache::bytes_for(c.layers, c.kv_dim(), positions));
            ForwardError::OutOfMemory { positions, bytes, source }
        })
    }

    fn matmul(
        &self,
        w: &Matrix,
        x: &[f32],
        n: usize,
        out: &mut [f32],
        act: &mut Vec<u8>,
    ) -> Result<(), ForwardError> {
        let data = self.gguf.tensor_data(&w.info);
        quant::matmul(w.info.ty, data, w.rows, w.cols, x, n, &mut out[..n * w.rows], act)?;
        Ok(())
    }

    /// Matrices with the same input, in one pass over the threads; `outs` are `n` rows each.
    fn matmul_many<const M: usize>(
        &self,
        mats: [(&Matrix, &mut [f32]); M],
        x: &[f32],
        n: usize,
        act: &mut Vec<u8>,
    ) -> Result<(), ForwardError> {
        let cols = mats[0].0.cols;
        let mut jobs = mats.map(|(w, out)| quant::MatmulJob {
            ty: w.info.ty,
            weight: self.gguf.tensor_data(&w.info),
            rows: w.rows,
            out,
        });
        quant::matmul_many(&mut jobs, cols, x, n, act)?;
        Ok(())
    }

    /// Runs every sequence's new tokens (at most [`MAX_BATCH`] in all) in one pass; with
    /// `logits`, writes each sequence's last-token logits there, one vocab-sized row each.
    fn forward_batch<B: Batch + ?Sized>(
        &self,
        seqs: &mut B,
        s: &mut Scratch,
        logits: Option<&mut [f32]>,
    ) -> Result<(), ForwardError> {
        let c = &self.config;
        let (d, qd, kvd, ff, hd) = (c.embedding, c.q_dim(), c.kv_dim(), c.feed_forward, c.head_dim);
        let count = seqs.sequences();
        if count == 0 {
            return Ok(());
        }
        // (first row in the batch, first position in the cache, tokens) of each sequence.
        s.spans.clear();
        let mut row = 0;
        for i in 0..count {
            let (cache, tokens) = seqs.sequence(i);
            s.spans.push(Span { row, start: cache.len(), len: tokens.len() });
            row += tokens.len();
        }
        let n = row;

        let embed_data = self.gguf.tensor_data(&self.embed.info);
        let row_bytes = embed_data.len() / self.embed.rows;
        let ids = (0..count).flat_map(|i| seqs.sequence(i).1);
        for (t, &id) in ids.enumerate() {
            let row = &embed_data[id as usize * row_bytes..(id as usize + 1) * row_bytes];
            quant::dequantize_row(self.embed.info.ty, row, &mut s.x[t * d..(t + 1) * d])?;
        }
        if c.architecture == Architecture::Gemma3 {
            let scale = (d as f32).sqrt();
            s.x[..n * d].iter_mut().for_each(|v| *v *= scale);
        }
        s.rope.prepare(c, s.spans.iter().flat_map(|span| span.start..span.start + span.len));

        for (li, layer) in self.layers.iter().enumerate() {
            for t in 0..n {
                ops::rms_norm(
                    &s.x[t * d..(t + 1) * d],
                    &layer.attn_norm,
                    c.rms_eps,
                    &mut s.h[t * d..(t + 1) * d],
                );
            }
            self.matmul_many(
                [
                    (&layer.wq, &mut s.q[..n * qd]),
                    (&layer.wk, &mut s.k[..n * kvd]),
                    (&layer.wv, &mut s.v[..n * kvd]),
                ],
                &s.h[..n * d],
                n,
                &mut s.act,
            )?;
            for (buf, bias, width) in [
                (&mut s.q, &layer.q_bias, qd),
                (&mut s.k, &layer.k_bias, kvd),
                (&mut s.v, &layer.v_bias, kvd),
            ] {
                if let Some(bias) = bias {
                    buf[..n * width].chunks_mut(width).for_each(|row| ops::add(row, bias));
                }
            }
            for (buf, norm, width) in [(&mut s.q, &layer.q_norm, qd), (&mut s.k, &layer.k_norm, kvd)] {
                if let Some(norm) = norm {
                    for head in buf[..n * width].chunks_mut(hd) {
                        ops::rms_norm_in_place(head, norm, c.rms_eps);
                    }
                }
            }
            let sliding = c.is_sliding(li);
            s.rope.apply(c, sliding, &mut s.q[..n * qd], qd);
            s.rope.apply(c, sliding, &mut s.k[..n * kvd], kvd);
            for (i, span) in s.spans.iter().enumerate() {
                let rows = span.row * kvd..(span.row + span.len) * kvd;
                seqs.sequence_mut(i).0.write(li, span.start, &s.k[rows.clone()], &s.v[rows]);
            }

            let window = if sliding { c.sliding_window } else { None };
            // On the stack, so that a pass allocates nothing: a sequence has at least one token,
            // so there are at most MAX_BATCH (the places past `count` repeat the first cache).
            let caches: [&KvCache; MAX_BATCH] = std::array::from_fn(|i| seqs.sequence(i % count).0);
            self.attention(&caches[..count], li, window, s);
            self.matmul(&layer.wo, &s.attn[..n * qd], n, &mut s.h, &mut s.act)?;
            if let Some(norm) = &layer.post_attn_norm {
                s.h[..n * d].chunks_mut(d).for_each(|row| ops::rms_norm_in_place(row, norm, c.rms_eps));
            }
            ops::add(&mut s.x[..n * d], &s.h[..n * d]);

            for t in 0..n {
                ops::rms_norm(
                    &s.x[t * d..(t + 1) * d],
                    &layer.ffn_norm,
                    c.rms_eps,
                    &mut s.h[t * d..(t + 1) * d],
                );
            }
            self.matmul_many(
                [(&layer.w_gate, &mut s.gate[..n * ff]), (&layer.w_up, &mut s.up[..n * ff])],
                &s.h[..n * d],
                n,
                &mut s.act,
            )?;
            let gated = |(g, u): (&mut [f32], &[f32])| match c.architecture {
                Architecture::Gemma3 => g.iter_mut().zip(u).for_each(|(g, u)| *g = ops::gelu_tanh(*g) * u),
                _ => ops::silu_gate(g, u),
            };
            // One token's worth is quicker done than handed to other threads.
            if n == 1 {
                gated((&mut s.gate[..ff], &s.up[..ff]));
            } else {
                s.gate[..n * ff].par_chunks_mut(4096).zip(s.up[..n * ff].par_chunks(4096)).for_each(gated);
            }
            self.matmul(&layer.w_down, &s.gate[..n * ff], n, &mut s.h, &mut s.act)?;
            if let Some(norm) = &layer.post_ffn_norm {
                s.h[..n * d].chunks_mut(d).for_each(|row| ops::rms_norm_in_place(row, norm, c.rms_eps));
            }
            ops::add(&mut s.x[..n * d], &s.h[..n * d]);
        }
        for i in 0..count {
            let (cache, tokens) = seqs.sequence_mut(i);
            cache.advance(tokens);
        }
        if let Some(logits) = logits {
            // Each sequence's last token, gathered into consecutive rows of `h`.
            let m = s.spans.len();
            for (i, span) in s.spans.iter().enumerate() {
                let last = span.row + span.len - 1;
                ops::rms_norm(
                    &s.x[last * d..(last + 1) * d],
                    &self.output_norm,
                    c.rms_eps,
                    &mut s.h[i * d..(i + 1) * d],
                );
            }
            self.matmul(&self.output, &s.h[..m * d], m, logits, &mut s.act)?;
        }
        Ok(())
    }

    /// Causal attention of each sequence's new queries over its cache; `window` limits how far
    /// back a sliding-window layer looks. A task is one token's query heads that share a key-value
    /// head (each key and value is then read once for them all), or a single head when there are
    /// too few such groups to keep every thread busy.
    fn attention(&self, caches: &[&KvCache], layer: usize, window: Option<usize>, s: &mut Scratch) {
        let c = &self.config;
        let (hd, qd, kvd, group) = (c.head_dim, c.q_dim(), c.kv_dim(), c.heads / c.kv_heads);
        let n = s.spans.iter().map(|span| span.len).sum::<usize>();
        let per_task = if n * c.kv_heads >= 2 * rayon::current_num_threads() { group } else { 1 };
        let (q, spans) = (&s.q, &s.spans);
        // A token's heads are consecutive in both `q` and `attn`, so a task's are too.
        let tasks = s.attn[..n * qd].par_chunks_mut(per_task * hd).zip(q[..n * qd].par_chunks(per_task * hd));
        tasks.enumerate().for_each(|(k, (out, queries))| {
            let (t, head) = (k * per_task / c.heads, k * per_task % c.heads);
            let Some((span, cache)) = spans.iter().zip(caches).find(|(span, _)| t < span.row + span.len)
            else {
                return;
            };
            let pos = span.start + t - span.row;
            let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let (keys, values) = cache.layer(layer);
            let offset = head / group * hd;
            let rows = ops::KvRows { keys, values, stride: kvd, offset, positions: first..pos + 1 };
            ops::attend_heads(queries, per_task, &rows, c.attention_scale, out);
        });
    }
}

fn load_matrix(g: &Gguf, name: &str, rows: usize, cols: usize) -> Result<Matrix, GgufError> {
    let info = g.tensor(name).ok_or_else(|| GgufError::Invalid {
        what: format!("tensor `{name}`"),
        offset: 0,
        reason: "is missing".into(),
    })?;
    if info.dims != [cols as u64, rows as u64] {
        return Err(GgufError::Invalid {
            what: format!("tensor `{name}`"),
            offset: 0,
            reason: format!("has dimensions {:?}, expected [{cols}, {rows}]", info.dims),
        });
    }
    if !quant::supports_matmul(info.ty) {
        return Err(GgufError::Invalid {
            what: format!("tensor `{name}`"),
            offset: 0,
            reason: format!("has type {}, which the engine's kernels do not support", info.ty),
        });
    }
    Ok(Matrix { info: info.clone(), rows, cols })
}

fn load_vector(g: &Gguf, name: &str, len: usize) -> Result<Vec<f32>, GgufError> {
    let info = g.tensor(name).ok_or_else(|| GgufError::Invalid {
        what: format!("tensor `{name}`"),
        offset: 0,
        reason: "is missing".into(),
    })?;
    if info.elements() != len as u64 || !matches!(info.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
        return Err(GgufError::Invalid {
            what: format!("tensor `{name}`"),
            offset: 0,
            reason: format!("is {} {:?}, expected {len} floats", info.ty, info.dims),
        });
    }
    let mut out = vec![0.0; len];
    let invalid = |reason: String| GgufError::Invalid { what: format!("tensor `{name}`"), offset: 0, reason };
    quant::dequantize_row(info.ty, g.tensor_data(info), &mut out).map_err(|e| invalid(e.to_string()))?;
    // Matrices are too large to scan at every load (non-finite logits are caught as they come);
    // a vector is not.
    if let Some(i) = out.iter().position(|x| !x.is_finite()) {
        return Err(invalid(format!("value {i} is {}, not a finite number", out[i])));
    }
    Ok(out)
}

/// The buffers of a forward pass, allocated once (attention keeps its own per thread: see
/// [`ops::attend_heads`]).
pub struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<u8>,
    rope: ops::RopeTables,
    spans: Vec<Span>,
}

/// The sequences of one forward pass: each a KV cache and the new tokens to append to it. A
/// slice of pairs is one; the scheduler views its slots as one, so that a decode step gathers
/// no list of references.
pub trait Batch {
    /// How many sequences.
    fn sequences(&self) -> usize;
    /// Sequence `i`'s cache and new tokens.
    fn sequence(&self, i: usize) -> (&KvCache, &[u32]);
    /// Sequence `i`'s cache, to append to, and its new tokens.
    fn sequence_mut(&mut self, i: usize) -> (&mut KvCache, &[u32]);
}

impl Batch for [(&mut KvCache, &[u32])] {
    fn sequences(&self) -> usize {
        self.len()
    }

    fn sequence(&self, i: usize) -> (&KvCache, &[u32]) {
        let (cache, tokens) = &self[i];
        (cache, tokens)
    }

    fn sequence_mut(&mut self, i: usize) -> (&mut KvCache, &[u32]) {
        let (cache, tokens) = &mut self[i];
        (cache, tokens)
    }
}

/// Where one sequence's tokens sit in a batch: from row `row`, at cache positions `start..`.
struct Span {
    row: usize,
    start: usize,
    len: usize,
}

impl Scratch {
    pub fn new(c: &ModelConfig) -> Scratch {
        let b = MAX_BATCH;
        Scratch {
            x: vec![0.0; b * c.embedding],
            h: vec![0.0; b * c.embedding.max(c.q_dim())],
            q: vec![0.0; b * c.q_dim()],
            k: vec![0.0; b * c.kv_dim()],
            v: vec![0.0; b * c.kv_dim()],
            attn: vec![0.0; b * c.q_dim()],
            gate: vec![0.0; b * c.feed_forward],
            up: vec![0.0; b * c.feed_forward],
            act: Vec::new(),
            rope: ops::RopeTables::new(c.head_dim),
            spans: Vec::with_capacity(b),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
