//! The embedder: tokenizer, encoder, pooling and normalisation, on a pool of worker threads.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{Device, Tensor, D};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::bert::Bert;
use crate::config::{read_json, BertConfig, Pipeline, Pooling};
use crate::error::{EmbedError, Result};

/// How to run an embedder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Worker threads (default: all cores).
    pub threads: Option<usize>,
    /// Texts per forward pass; texts are sorted by length first, so a batch pads little.
    pub batch_size: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions { threads: None, batch_size: 32 }
    }
}

struct Inner {
    name: String,
    tokenizer: Tokenizer,
    model: Bert,
    pipeline: Pipeline,
    pad_id: u32,
    batch_size: usize,
    pool: rayon::ThreadPool,
}

/// A sentence-transformers BERT-family model loaded from its directory: `config.json`,
/// `model.safetensors`, `tokenizer.json`, `modules.json` and the pooling module's config.
/// Cheap to clone (the weights are shared).
#[derive(Clone)]
pub struct Embedder {
    inner: Arc<Inner>,
}

impl Embedder {
    /// Loads the model in `dir`; `name` is what [`EmbeddingModel::name`] reports.
    pub fn load(dir: &Path, name: &str, options: EmbedOptions) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config: BertConfig = read_json(&config_path)?;
        let pipeline = Pipeline::read(dir)?;
        let model = Bert::load(&config_path, &config, &dir.join("model.safetensors"))?;
        let max_len = pipeline.max_seq_length.unwrap_or(model.max_positions).min(model.max_positions);
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"), max_len)?;
        let threads =
            options.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("temper-embed-{i}"))
            .build()
            .map_err(|e| EmbedError::Threads { threads, reason: e.to_string() })?;
        let inner = Inner {
            name: name.to_owned(),
            tokenizer,
            model,
            pipeline,
            pad_id: config.pad_token_id,
            batch_size: options.batch_size.max(1),
            pool,
        };
        Ok(Embedder { inner: Arc::new(inner) })
    }

    /// Length of every vector.
    pub fn dimensions(&self) -> usize {
        self.inner.model.hidden
    }

    /// The longest input in tokens, `[CLS]` and `[SEP]` included; longer texts are truncated.
    pub fn max_seq_length(&self) -> usize {
        self.inner.tokenizer.get_truncation().map_or(0, |t| t.max_length)
    }

    /// The model's input ids for `text`, after truncation, as the encoder sees them.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.inner.encode(0, text)
    }

    /// One vector per text, in order, computed on this embedder's threads (the caller blocks).
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let inner = &self.inner;
        inner.pool.install(|| inner.embed(texts))
    }
}

fn load_tokenizer(path: &Path, max_len: usize) -> Result<Tokenizer> {
    if !path.is_file() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        return Err(EmbedError::Read { path: path.into(), source });
    }
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| EmbedError::invalid(path, e))?;
    // tokenizer.json carries its own limit and fixed padding (128 for MiniLM); what counts is
    // sentence-transformers' max_seq_length, and each batch is padded to its own longest text.
    let truncation = TruncationParams {
        max_length: max_len,
        strategy: TruncationStrategy::LongestFirst,
        stride: 0,
        direction: TruncationDirection::Right,
    };
    tokenizer.with_truncation(Some(truncation)).map_err(|e| EmbedError::invalid(path, e))?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

impl Inner {
    fn encode(&self, index: usize, text: &str) -> Result<Vec<u32>> {
        // sentence-transformers strips every text (and lowercases when its config says so).
        let text = text.trim();
        let text = match self.pipeline.lowercase {
            true => text.to_lowercase(),
            false => text.to_owned(),
        };
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EmbedError::Tokenize { index, reason: e.to_string() })?;
        Ok(encoding.get_ids().to_vec())
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<Vec<u32>> =
            texts.iter().enumerate().map(|(i, t)| self.encode(i, t)).collect::<Result<_>>()?;
        // Longest first, so every batch holds texts of similar length and pads little.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut vectors = vec![Vec::new(); ids.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            for (&i, vector) in chunk.iter().zip(self.embed_ids(&batch)?) {
                vectors[i] = vector;
            }
        }
        Ok(vectors)
    }

    /// Vectors for one batch of token id sequences, padded to the longest.
    fn embed_ids(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let len = batch.iter().map(|ids| ids.len()).max().unwrap_or(0);
        let mut flat = Vec::with_capacity(batch.len() * len);
        let mut mask = Vec::with_capacity(batch.len() * len);
        for ids in batch {
            flat.extend_from_slice(ids);
            flat.resize(flat.len() + len - ids.len(), self.pad_id);
            mask.extend((0..len).map(|j| if j < ids.len() { 1f32 } else { 0.0 }));
        }
        let ids = Tensor::from_vec(flat, (batch.len(), len), &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, (batch.len(), len), &Device::Cpu)?;
        let tokens = self.model.forward(&ids, &mask)?;
        let mut pooled = pool(&tokens, &mask, self.pipeline.pooling)?;
        if self.pipeline.normalize {
            // As torch's F.normalize: divide by the norm, floored at 1e-12.
            let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12)?;
            pooled = pooled.broadcast_div(&norm)?;
        }
        Ok(pooled.to_vec2()?)
    }
}

/// Sentence vectors `[batch, hidden]` from token vectors `[batch, len, hidden]`, counting only the
/// tokens where `mask` `[batch, len]` is 1.
pub(crate) fn pool(tokens: &Tensor, mask: &Tensor, pooling: Pooling) -> candle_core::Result<Tensor> {
    let mask3 = mask.unsqueeze(D::Minus1)?;
    // sentence-transformers floors the token count at 1e-9.
    let count = || mask.sum_keepdim(1)?.maximum(1e-9);
    match pooling {
        Pooling::Cls => tokens.narrow(1, 0, 1)?.squeeze(1),
        Pooling::Mean => tokens.broadcast_mul(&mask3)?.sum(1)?.broadcast_div(&count()?),
        Pooling::MeanSqrtLen => tokens.broadcast_mul(&mask3)?.sum(1)?.broadcast_div(&count()?.sqrt()?),
        // Padding is pushed far below any real value before taking the maximum.
        Pooling::Max => tokens.broadcast_add(&((mask3 - 1.0)? * 1e9)?)?.max(1),
    }
}

#[async_trait]
impl temper_core::EmbeddingModel for Embedder {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn dimensions(&self) -> usize {
        Embedder::dimensions(self)
    }

    /// Runs on the embedder's own threads, off the async runtime.
    async fn embed(&self, texts: &[String]) -> temper_core::Result<Vec<Vec<f32>>> {
        let (embedder, texts) = (self.clone(), texts.to_vec());
        let (send, receive) = tokio::sync::oneshot::channel();
        self.inner.pool.spawn(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            // The receiver is gone only when the caller stopped waiting: nothing to report to.
            let _ = send.send(embedder.inner.embed(&refs));
        });
        let result =
            receive.await.map_err(|_| temper_core::Error::Backend("the embedding thread stopped".into()))?;
        Ok(result?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_counts_only_real_tokens() {
        // Two texts of two token slots, one dimension; the second text's second slot is padding.
        let tokens = Tensor::new(&[[[1f32], [3.0]], [[-2.0], [100.0]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1f32, 1.0], [1.0, 0.0]], &Device::Cpu).unwrap();
        let pooled = |mode| pool(&tokens, &mask, mode).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(pooled(Pooling::Mean), [[2.0], [-2.0]]);
        assert_eq!(pooled(Pooling::Max), [[3.0], [-2.0]]);
        assert_eq!(pooled(Pooling::Cls), [[1.0], [-2.0]]);
        assert_eq!(pooled(Pooling::MeanSqrtLen), [[4.0 / 2f32.sqrt()], [-2.0]]);
    }
}
