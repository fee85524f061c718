//! A BERT encoder: embeddings, then post-norm transformer layers, over buffers kept between
//! batches. The sequences of a batch are laid end to end without padding: the linear layers see
//! one matrix of all their tokens, attention runs per sequence on its own length.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};
use temper_kernels::quant::dequantize_row;
use temper_kernels::GgmlType;

use crate::config::BertConfig;
use crate::error::{EmbedError, Result};
use crate::kernels::{self, CpuLevel, Epilogue, OutRows, PackedF32, PackedI8, Rows, Weights};

/// The tensors of a safetensors file as f32, looked up by name with the file named in every error.
struct Tensors {
    path: PathBuf,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// `bert.` when the file was saved from a task model (`BertForMaskedLM` …).
    prefix: &'static str,
}

impl Tensors {
    fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| EmbedError::Read { path: path.into(), source })?;
        let invalid = |reason: String| EmbedError::invalid(path, reason);
        let file = SafeTensors::deserialize(&bytes)
            .map_err(|e| invalid(format!("not a valid safetensors file: {e}")))?;
        let mut tensors = HashMap::new();
        for (name, view) in file.tensors() {
            let ty = match view.dtype() {
                Dtype::F32 => GgmlType::F32,
                Dtype::F16 => GgmlType::F16,
                Dtype::BF16 => GgmlType::BF16,
                // Integer tensors (`position_ids` buffers) are not weights.
                _ => continue,
            };
            // Safetensors has checked that the data is as long as the shape says.
            let data = view.data();
            let mut values = vec![0.0; data.len() / ty.block_bytes()];
            dequantize_row(ty, data, &mut values).map_err(|e| invalid(format!("tensor `{name}`: {e}")))?;
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        let prefix = match tensors.contains_key("bert.embeddings.word_embeddings.weight") {
            true => "bert.",
            false => "",
        };
        Ok(Tensors { path: path.into(), tensors, prefix })
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32]> {
        let full = format!("{}{name}", self.prefix);
        let (dims, values) = self
            .tensors
            .get(&full)
            .ok_or_else(|| EmbedError::invalid(&self.path, format!("tensor `{full}` is missing")))?;
        if dims != shape {
            let reason = format!("tensor `{full}` has shape {dims:?}, expected {shape:?}");
            return Err(EmbedError::invalid(&self.path, reason));
        }
        Ok(values)
    }

    fn norm(&self, name: &str, size: usize) -> Result<Norm> {
        let gamma = self.get(&format!("{name}.weight"), &[size])?.to_vec();
        Ok(Norm { gamma, beta: self.get(&format!("{name}.bias"), &[size])?.to_vec() })
    }
}

/// A linear layer `y = W x + b`.
struct Dense {
    weights: Weights,
    bias: Vec<f32>,
}

impl Dense {
    fn new(weight: &[f32], bias: Vec<f32>, inputs: usize, int8: bool) -> Self {
        let outputs = bias.len();
        let weights = match int8 {
            true => Weights::Int8(PackedI8::weights(weight, outputs, inputs)),
            false => Weights::F32(PackedF32::weights(weight, outputs, inputs)),
        };
        Dense { weights, bias }
    }

    /// `out = x Wᵀ + b` then the epilogue, for rows of `inputs` values.
    fn forward(&self, level: CpuLevel, x: &[f32], inputs: usize, out: &mut [f32], epilogue: Epilogue) {
        let rows = Rows { data: x, m: x.len() / inputs, k: inputs, stride: inputs };
        let stride = self.bias.len();
        kernels::linear(level, rows, &self.weights, &self.bias, OutRows { data: out, stride }, epilogue);
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    /// Query, key and value in one matrix (one product instead of three); the query rows are
    /// pre-scaled by 1/sqrt(head size).
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

/// A BERT encoder with absolute position embeddings.
pub struct Bert {
    word_embeddings: Vec<f32>,
    /// Position embeddings plus the token-type-0 embedding: single sentences only use type 0.
    position_embeddings: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    intermediate: usize,
    /// The activation, applied as the intermediate product's epilogue.
    activation: Epilogue,
    eps: f32,
    pub vocab: usize,
    pub hidden: usize,
    pub max_positions: usize,
}

/// The activations of one forward pass, kept from batch to batch.
#[derive(Default)]
pub struct Buffers {
    x: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    inner: Vec<f32>,
}

/// One attention task's packed keys and values and its scores.
#[derive(Default)]
struct AttentionScratch {
    keys: PackedF32,
    values: PackedF32,
    scores: Vec<f32>,
}

impl Bert {
    /// Loads the encoder; `int8` quantizes the linear layers' weights (per output row).
    pub fn load(config_path: &Path, config: &BertConfig, weights_path: &Path, int8: bool) -> Result<Self> {
        let bad = |reason: String| EmbedError::invalid(config_path, reason);
        let activation = match config.hidden_act.as_str() {
            "gelu" => Epilogue::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Epilogue::GeluTanh,
            other => return Err(bad(format!("unsupported hidden_act `{other}`"))),
        };
        if config.position_embedding_type != "absolute" {
            return Err(bad(format!(
                "unsupported position_embedding_type `{}`",
                config.position_embedding_type
            )));
        }
        let (h, heads, inter) = (config.hidden_size, config.num_attention_heads, config.intermediate_size);
        if heads == 0 || h % heads != 0 {
            return Err(bad(format!("hidden_size {h} is not a multiple of num_attention_heads {heads}")));
        }
        let w = Tensors::read(weights_path)?;
        let positions =
            w.get("embeddings.position_embeddings.weight", &[config.max_position_embeddings, h])?;
        let types = w.get("embeddings.token_type_embeddings.weight", &[config.type_vocab_size, h])?;
        let type0 = types.get(..h).ok_or_else(|| bad("type_vocab_size is 0".into()))?;
        let position_embeddings =
            positions.chunks_exact(h).flat_map(|row| row.iter().zip(type0).map(|(p, t)| p + t)).collect();
        let scale = 1.0 / ((h / heads) as f32).sqrt();
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                let part = |name: &str, shape: &[usize]| w.get(&format!("{p}.attention.self.{name}"), shape);
                let dense = |name: &str, outputs: usize, inputs: usize| -> Result<Dense> {
                    let weight = w.get(&format!("{p}.{name}.weight"), &[outputs, inputs])?;
                    let bias = w.get(&format!("{p}.{name}.bias"), &[outputs])?.to_vec();
                    Ok(Dense::new(weight, bias, inputs, int8))
                };
                let mut weight: Vec<f32> = part("query.weight", &[h, h])?.iter().map(|v| v * scale).collect();
                weight.extend_from_slice(part("key.weight", &[h, h])?);
                weight.extend_from_slice(part("value.weight", &[h, h])?);
                let mut bias: Vec<f32> = part("query.bias", &[h])?.iter().map(|v| v * scale).collect();
                bias.extend_from_slice(part("key.bias", &[h])?);
                bias.extend_from_slice(part("value.bias", &[h])?);
                Ok(Layer {
                    qkv: Dense::new(&weight, bias, h, int8),
                    attention_out: dense("attention.output.dense", h, h)?,
                    attention_norm: w.norm(&format!("{p}.attention.output.LayerNorm"), h)?,
                    intermediate: dense("intermediate.dense", inter, h)?,
                    output: dense("output.dense", h, inter)?,
                    output_norm: w.norm(&format!("{p}.output.LayerNorm"), h)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Bert {
            word_embeddings: w.get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?.to_vec(),
            position_embeddings,
            embedding_norm: w.norm("embeddings.LayerNorm", h)?,
            layers,
            heads,
            intermediate: inter,
            activation,
            eps: config.layer_norm_eps as f32,
            vocab: config.vocab_size,
            hidden: h,
            max_positions: config.max_position_embeddings,
        })
    }

    /// Token vectors for `batch`, the sequences laid end to end (`hidden` values per token).
    /// Ids must be below `vocab` and sequences at most `max_positions` long.
    pub fn forward<'b>(&self, level: CpuLevel, batch: &[&[u32]], buf: &'b mut Buffers) -> &'b [f32] {
        let (h, inter) = (self.hidden, self.intermediate);
        let tokens: usize = batch.iter().map(|ids| ids.len()).sum();
        buf.x.resize(tokens * h, 0.0);
        buf.qkv.resize(tokens * 3 * h, 0.0);
        buf.context.resize(tokens * h, 0.0);
        buf.inner.resize(tokens * inter, 0.0);
        let positions: Vec<(u32, usize)> =
            batch.iter().flat_map(|ids| ids.iter().enumerate().map(|(p, &id)| (id, p))).collect();
        buf.x.par_chunks_mut(h).zip(&positions).for_each(|(row, &(id, p))| {
            let word = &self.word_embeddings[id as usize * h..][..h];
            let position = &self.position_embeddings[p * h..][..h];
            row.iter_mut().zip(word.iter().zip(position)).for_each(|(x, (w, p))| *x = w + p);
            self.norm(level, &self.embedding_norm, row);
        });
        for layer in &self.layers {
            layer.qkv.forward(level, &buf.x, h, &mut buf.qkv, Epilogue::Store);
            self.attention(level, batch, &buf.qkv, &mut buf.context);
            layer.attention_out.forward(level, &buf.context, h, &mut buf.x, Epilogue::Add);
            buf.x.par_chunks_mut(h).for_each(|row| self.norm(level, &layer.attention_norm, row));
            layer.intermediate.forward(level, &buf.x, h, &mut buf.inner, self.activation);
            layer.output.forward(level, &buf.inner, inter, &mut buf.x, Epilogue::Add);
            buf.x.par_chunks_mut(h).for_each(|row| self.norm(level, &layer.output_norm, row));
        }
        &buf.x
    }

    fn norm(&self, level: CpuLevel, norm: &Norm, row: &mut [f32]) {
        kernels::layer_norm(level, row, &norm.gamma, &norm.beta, self.eps);
    }

    /// `context = softmax(q kᵀ) v` per sequence and head (q is pre-scaled), in parallel over
    /// sequences.
    fn attention(&self, level: CpuLevel, batch: &[&[u32]], qkv: &[f32], context: &mut [f32]) {
        let (h, d) = (self.hidden, self.hidden / self.heads);
        let mut tasks = Vec::with_capacity(batch.len());
        let (mut rest, mut start) = (context, 0);
        for ids in batch {
            let (now, later) = rest.split_at_mut(ids.len() * h);
            tasks.push((start, ids.len(), now));
            (rest, start) = (later, start + ids.len());
        }
        tasks.into_par_iter().for_each_init(AttentionScratch::default, |s, (start, len, context)| {
            let seq = &qkv[start * 3 * h..][..len * 3 * h];
            s.scores.resize(len * len, 0.0);
            for head in 0..self.heads {
                let (q, k, v) = (head * d, h + head * d, 2 * h + head * d);
                s.keys.pack(len, d, &seq[k..], 3 * h, 1);
                s.values.pack(d, len, &seq[v..], 1, 3 * h);
                let queries = Rows { data: &seq[q..], m: len, k: d, stride: 3 * h };
                let scores = OutRows { data: &mut s.scores, stride: len };
                kernels::matmul(level, queries, &s.keys, scores, Epilogue::Store);
                s.scores.chunks_exact_mut(len).for_each(|row| kernels::softmax(level, row));
                let probs = Rows { data: &s.scores, m: len, k: len, stride: len };
                let out = OutRows { data: &mut context[head * d..], stride: h };
                kernels::matmul(level, probs, &s.values, out, Epilogue::Store);
            }
        });
    }
}
