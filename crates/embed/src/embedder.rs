//! The embedder: tokenizer, encoder, pooling and normalisation, on a pool of worker threads.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::bert::{Bert, Buffers};
use crate::config::{read_json, BertConfig, Pipeline, Pooling};
use crate::error::{EmbedError, Result};
use crate::kernels::{cpu_level, CpuLevel};

/// The arithmetic of the encoder's linear layers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 throughout: the vectors match sentence-transformers'.
    #[default]
    F32,
    /// Weights quantized to int8 per output row at load, activations per token at each layer,
    /// integer dot products: about twice as fast on CPUs with VNNI, vectors close to the f32
    /// ones but not equal (attention stays f32).
    Int8,
}

/// How to run an embedder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Worker threads (default: all cores).
    pub threads: Option<usize>,
    /// Texts per forward pass; texts are sorted by length first.
    pub batch_size: usize,
    pub precision: Precision,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions { threads: None, batch_size: 32, precision: Precision::F32 }
    }
}

struct Inner {
    name: String,
    tokenizer: Tokenizer,
    model: Bert,
    pipeline: Pipeline,
    batch_size: usize,
    level: CpuLevel,
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
        let int8 = options.precision == Precision::Int8;
        let model = Bert::load(&config_path, &config, &dir.join("model.safetensors"), int8)?;
        let max_len = pipeline.max_seq_length.unwrap_or(model.max_positions).min(model.max_positions);
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = load_tokenizer(&tokenizer_path, max_len)?;
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > model.vocab {
            let reason = format!("{vocab} tokens, more than config.json's vocab_size {}", model.vocab);
            return Err(EmbedError::invalid(tokenizer_path, reason));
        }
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
            batch_size: options.batch_size.max(1),
            level: cpu_level(),
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
        // Longest first, so that each batch's attention tasks are of similar size.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut vectors = vec![Vec::new(); ids.len()];
        let mut buffers = Buffers::default();
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            let tokens = self.model.forward(self.level, &batch, &mut buffers);
            let mut start = 0;
            for (&i, ids) in chunk.iter().zip(&batch) {
                let rows = &tokens[start * self.model.hidden..(start + ids.len()) * self.model.hidden];
                vectors[i] = self.sentence_vector(rows);
                start += ids.len();
            }
        }
        Ok(vectors)
    }

    /// One text's vector from its token vectors, pooled and normalised as the pipeline says.
    fn sentence_vector(&self, tokens: &[f32]) -> Vec<f32> {
        let mut vector = pool(tokens, self.model.hidden, self.pipeline.pooling);
        if self.pipeline.normalize {
            // As torch's F.normalize: divide by the norm, floored at 1e-12.
            let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            vector.iter_mut().for_each(|v| *v /= norm);
        }
        vector
    }
}

/// A sentence vector from one text's token vectors (`hidden` values per token, no padding).
fn pool(tokens: &[f32], hidden: usize, pooling: Pooling) -> Vec<f32> {
    let mut rows = tokens.chunks_exact(hidden);
    let sum = |rows: std::slice::ChunksExact<f32>| {
        rows.fold(vec![0f32; hidden], |mut acc, row| {
            acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            acc
        })
    };
    // sentence-transformers floors the token count at 1e-9.
    let count = ((tokens.len() / hidden) as f32).max(1e-9);
    match pooling {
        Pooling::Cls => rows.next().map_or_else(|| vec![0.0; hidden], <[f32]>::to_vec),
        Pooling::Mean => sum(rows).into_iter().map(|v| v / count).collect(),
        Pooling::MeanSqrtLen => sum(rows).into_iter().map(|v| v / count.sqrt()).collect(),
        Pooling::Max => rows.fold(vec![f32::NEG_INFINITY; hidden], |mut acc, row| {
            acc.iter_mut().zip(row).for_each(|(a, v)| *a = a.max(*v));
            acc
        }),
    }
}

/// Counts as the encoder reads a text, `[CLS]` and `[SEP]` included, so that chunks sized with
/// it are never truncated when embedded.
impl temper_core::TokenCounter for Embedder {
    fn count_text(&self, text: &str) -> temper_core::Result<usize> {
        Ok(self.tokenize(text)?.len())
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
    fn pooling_modes() {
        // Two tokens of one dimension.
        let tokens = [1f32, 3.0];
        assert_eq!(pool(&tokens, 1, Pooling::Mean), [2.0]);
        assert_eq!(pool(&tokens, 1, Pooling::Max), [3.0]);
        assert_eq!(pool(&tokens, 1, Pooling::Cls), [1.0]);
        assert_eq!(pool(&tokens, 1, Pooling::MeanSqrtLen), [4.0 / 2f32.sqrt()]);
    }
}
