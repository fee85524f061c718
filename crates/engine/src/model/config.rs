//! The shape of a transformer, read from GGUF metadata.

use crate::gguf::{Gguf, GgufError};

/// The model families the engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// Llama and its metadata-compatible relatives (SmolLM2, Mistral).
    Llama,
    /// Qwen2: Llama with biases on the attention projections and NeoX rotary embeddings.
    Qwen2,
    /// Gemma 3: query/key norms, norms after attention and feed-forward, GELU, and
    /// sliding-window attention on five layers of every six.
    Gemma3,
}

impl Architecture {
    pub const SUPPORTED: &'static str = "llama, mistral, qwen2, gemma3";

    pub fn from_name(name: &str) -> Option<Architecture> {
        match name {
            "llama" | "mistral" => Some(Architecture::Llama),
            "qwen2" => Some(Architecture::Qwen2),
            "gemma3" => Some(Architecture::Gemma3),
            _ => None,
        }
    }
}

/// How rotary position embeddings pair up the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i+1): llama.cpp's "normal" rope, used by Llama GGUFs.
    Adjacent,
    /// Halves (i, i + d/2): GPT-NeoX style, used by Qwen2 and Gemma.
    Halves,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub arch_name: String,
    pub layers: usize,
    pub embedding: usize,
    pub feed_forward: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub trained_context: usize,
    pub rms_eps: f32,
    pub rope_style: RopeStyle,
    /// Rotary base of global-attention layers.
    pub rope_base: f32,
    /// Rotary base of sliding-window layers (Gemma 3 uses a smaller one).
    pub rope_base_local: f32,
    /// Keys a sliding-window layer sees, the current token included; `None` when no layer slides.
    pub sliding_window: Option<usize>,
    /// Scale of the attention scores.
    pub attention_scale: f32,
}

impl ModelConfig {
    pub fn from_gguf(g: &Gguf) -> Result<ModelConfig, GgufError> {
        let arch_name = g.architecture()?.to_string();
        let architecture = Architecture::from_name(&arch_name).ok_or_else(|| GgufError::Invalid {
            what: "general.architecture".into(),
            offset: 0,
            reason: format!("`{arch_name}` is not supported (supported: {})", Architecture::SUPPORTED),
        })?;
        let key = |suffix: &str| format!("{arch_name}.{suffix}");
        let usize_of = |suffix: &str| g.get_u64(&key(suffix)).map(|v| v as usize);
        let embedding = usize_of("embedding_length")?;
        let heads = usize_of("attention.head_count")?;
        let kv_heads = usize_of("attention.head_count_kv").or_else(|_| usize_of("attention.head_count"))?;
        let head_dim = match usize_of("attention.key_length") {
            Ok(d) => d,
            Err(_) if heads > 0 => embedding / heads,
            Err(e) => return Err(e),
        };
        let vocab = match g.get_array("tokenizer.ggml.tokens") {
            Ok(tokens) => tokens.len(),
            Err(_) => usize_of("vocab_size")?,
        };
        let rope_base = g.get_f64(&key("rope.freq_base")).unwrap_or(10_000.0) as f32;
        let (rope_style, rope_base_local, sliding_window) = match architecture {
            Architecture::Llama => (RopeStyle::Adjacent, rope_base, None),
            Architecture::Qwen2 => (RopeStyle::Halves, rope_base, None),
            Architecture::Gemma3 => {
                (RopeStyle::Halves, 10_000.0, Some(usize_of("attention.sliding_window").unwrap_or(512)))
            }
        };
        let config = ModelConfig {
            architecture,
            layers: usize_of("block_count")?,
            embedding,
            feed_forward: usize_of("feed_forward_length")?,
            heads,
            kv_heads,
            head_dim,
            vocab,
            trained_context: usize_of("context_length").unwrap_or(2048),
            rms_eps: g.get_f64(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5) as f32,
            rope_style,
            rope_base,
            rope_base_local,
            sliding_window,
            attention_scale: 1.0 / (head_dim as f32).sqrt(),
            arch_name,
        };
        config.check(g.tensors.len())?;
        Ok(config)
    }

    /// Checks the hyperparameters against each other and against the `tensors` in the file.
    fn check(&self, tensors: usize) -> Result<(), GgufError> {
        let bad = |reason: String| GgufError::Invalid {
            what: format!("{} hyperparameters", self.arch_name),
            offset: 0,
            reason,
        };
        if self.layers == 0
            || self.embedding == 0
            || self.heads == 0
            || self.kv_heads == 0
            || self.head_dim == 0
        {
            return Err(bad("a layer, embedding, head or head size count is zero".into()));
        }
        // Each layer has tensors of its own (at least the norms, attention and feed-forward
        // ones): more layers than that is damage, not a model, and room would be reserved for
        // all of them before the first missing tensor were found.
        const TENSORS_PER_LAYER: usize = 9;
        if self.layers > tensors / TENSORS_PER_LAYER {
            return Err(bad(format!(
                "{} layers need at least {} tensors, but the file has {tensors}",
                self.layers,
                self.layers.saturating_mul(TENSORS_PER_LAYER)
            )));
        }
        let heads = self.heads.max(self.kv_heads);
        if heads.checked_mul(self.head_dim).is_none() {
            return Err(bad(format!(
                "{heads} heads of size {} is more than memory can address",
                self.head_dim
            )));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(bad(format!(
                "{} heads do not divide into {} key/value heads",
                self.heads, self.kv_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(bad(format!(
                "head size {} is odd, so rotary embeddings cannot pair it",
                self.head_dim
            )));
        }
        if self.vocab == 0 {
            return Err(bad("the vocabulary is empty".into()));
        }
        if self.trained_context == 0 {
            return Err(bad("the trained context length is 0".into()));
        }
        // Values that would make every logit NaN.
        if self.sliding_window == Some(0) {
            return Err(bad("the sliding window is 0 tokens, so its layers would attend to nothing".into()));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps >= 0.0) {
            return Err(bad(format!("the RMS norm epsilon {} is not a number of 0 or more", self.rms_eps)));
        }
        for base in [self.rope_base, self.rope_base_local] {
            if !(base.is_finite() && base > 0.0) {
                return Err(bad(format!("the rotary base {base} is not a positive number")));
            }
        }
        Ok(())
    }

    /// Whether layer `layer` attends through the sliding window (Gemma 3: all but every sixth).
    pub fn is_sliding(&self, layer: usize) -> bool {
        self.sliding_window.is_some() && layer % 6 < 5
    }

    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}
