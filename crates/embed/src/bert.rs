//! A BERT encoder on candle tensors: embeddings, then post-norm transformer layers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{LayerNorm, Linear, Module};

use crate::config::BertConfig;
use crate::error::{EmbedError, Result};
use crate::gelu::GeluErf;

/// The tensors of a safetensors file, looked up by name with the file named in every error.
struct Weights {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
    /// `bert.` when the file was saved from a task model (`BertForMaskedLM` …).
    prefix: &'static str,
}

impl Weights {
    fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| EmbedError::Read { path: path.into(), source })?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| EmbedError::invalid(path, format!("not a valid safetensors file: {e}")))?;
        let prefix = match tensors.contains_key("bert.embeddings.word_embeddings.weight") {
            true => "bert.",
            false => "",
        };
        Ok(Weights { path: path.into(), tensors, prefix })
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        let tensor = self
            .tensors
            .get(&full)
            .ok_or_else(|| EmbedError::invalid(&self.path, format!("tensor `{full}` is missing")))?;
        if tensor.dims() != shape {
            let reason = format!("tensor `{full}` has shape {:?}, expected {shape:?}", tensor.dims());
            return Err(EmbedError::invalid(&self.path, reason));
        }
        Ok(tensor.to_dtype(DType::F32)?)
    }

    fn linear(&self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear::new(
            self.get(&format!("{name}.weight"), &[out, inp])?,
            Some(self.get(&format!("{name}.bias"), &[out])?),
        ))
    }

    fn layer_norm(&self, name: &str, size: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm::new(
            self.get(&format!("{name}.weight"), &[size])?,
            self.get(&format!("{name}.bias"), &[size])?,
            eps,
        ))
    }
}

#[derive(Clone, Copy)]
enum Activation {
    /// The exact, erf-based GELU (`gelu` in transformers).
    Gelu,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
}

struct Layer {
    /// Query, key and value in one matrix (one matmul instead of three); the query rows are
    /// pre-scaled by 1/sqrt(head size).
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// A BERT encoder with absolute position embeddings.
pub struct Bert {
    word_embeddings: Tensor,
    /// Position embeddings plus the token-type-0 embedding: single sentences only use type 0.
    position_embeddings: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    activation: Activation,
    pub hidden: usize,
    pub max_positions: usize,
}

impl Bert {
    pub fn load(config_path: &Path, config: &BertConfig, weights_path: &Path) -> Result<Self> {
        let bad = |reason: String| EmbedError::invalid(config_path, reason);
        let activation = match config.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            other => return Err(bad(format!("unsupported hidden_act `{other}`"))),
        };
        if config.position_embedding_type != "absolute" {
            return Err(bad(format!(
                "unsupported position_embedding_type `{}`",
                config.position_embedding_type
            )));
        }
        let (h, heads) = (config.hidden_size, config.num_attention_heads);
        if heads == 0 || h % heads != 0 {
            return Err(bad(format!("hidden_size {h} is not a multiple of num_attention_heads {heads}")));
        }
        let w = Weights::read(weights_path)?;
        let positions =
            w.get("embeddings.position_embeddings.weight", &[config.max_position_embeddings, h])?;
        let types = w.get("embeddings.token_type_embeddings.weight", &[config.type_vocab_size, h])?;
        let eps = config.layer_norm_eps;
        let scale = 1.0 / ((h / heads) as f64).sqrt();
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                let part = |name: &str, shape: &[usize]| w.get(&format!("{p}.attention.self.{name}"), shape);
                let weight = Tensor::cat(
                    &[
                        (part("query.weight", &[h, h])? * scale)?,
                        part("key.weight", &[h, h])?,
                        part("value.weight", &[h, h])?,
                    ],
                    0,
                )?;
                let bias = Tensor::cat(
                    &[
                        (part("query.bias", &[h])? * scale)?,
                        part("key.bias", &[h])?,
                        part("value.bias", &[h])?,
                    ],
                    0,
                )?;
                Ok(Layer {
                    qkv: Linear::new(weight, Some(bias)),
                    attention_out: w.linear(&format!("{p}.attention.output.dense"), h, h)?,
                    attention_norm: w.layer_norm(&format!("{p}.attention.output.LayerNorm"), h, eps)?,
                    intermediate: w.linear(
                        &format!("{p}.intermediate.dense"),
                        config.intermediate_size,
                        h,
                    )?,
                    output: w.linear(&format!("{p}.output.dense"), h, config.intermediate_size)?,
                    output_norm: w.layer_norm(&format!("{p}.output.LayerNorm"), h, eps)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Bert {
            word_embeddings: w.get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
            position_embeddings: positions.broadcast_add(&types.narrow(0, 0, 1)?)?,
            embedding_norm: w.layer_norm("embeddings.LayerNorm", h, eps)?,
            layers,
            heads,
            activation,
            hidden: h,
            max_positions: config.max_position_embeddings,
        })
    }

    /// Token vectors `[batch, len, hidden]` for `ids` `[batch, len]` (u32), where `mask`
    /// `[batch, len]` (f32) is 1 on real tokens and 0 on padding.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (batch, len) = ids.dims2()?;
        let h = self.hidden;
        let words = self.word_embeddings.index_select(&ids.flatten_all()?, 0)?.reshape((batch, len, h))?;
        let x = words.broadcast_add(&self.position_embeddings.narrow(0, 0, len)?)?;
        // Rows are tokens from here on: every linear layer is one matrix product over the batch.
        let mut x = self.embedding_norm.forward(&x.reshape((batch * len, h))?)?;
        // Padding keys get a large negative score, so softmax gives them zero weight.
        let key_bias = ((mask - 1.0)? * 1e9)?.reshape((batch, 1, 1, len))?;
        for layer in &self.layers {
            x = self.layer(layer, &x, &key_bias, batch, len)?;
        }
        Ok(x.reshape((batch, len, h))?)
    }

    fn layer(
        &self,
        layer: &Layer,
        x: &Tensor,
        key_bias: &Tensor,
        batch: usize,
        len: usize,
    ) -> Result<Tensor> {
        let (h, heads) = (self.hidden, self.heads);
        let qkv = layer.qkv.forward(x)?.reshape((batch, len, 3, heads, h / heads))?;
        let qkv = qkv.permute((2, 0, 3, 1, 4))?.contiguous()?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let scores = q.matmul(&k.t()?)?.broadcast_add(key_bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((batch * len, h))?;
        let x = layer.attention_norm.forward(&(layer.attention_out.forward(&context)? + x)?)?;
        let inner = layer.intermediate.forward(&x)?;
        let inner = match self.activation {
            Activation::Gelu => inner.apply_op1_no_bwd(&GeluErf)?,
            Activation::GeluTanh => inner.gelu()?,
        };
        Ok(layer.output_norm.forward(&(layer.output.forward(&inner)? + x)?)?)
    }
}
