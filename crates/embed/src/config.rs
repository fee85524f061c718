//! The JSON files a sentence-transformers model directory ships with.

use std::fs;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{EmbedError, Result};

/// `config.json`: the BERT encoder's shape.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-12
}
fn default_type_vocab() -> usize {
    2
}
fn default_position_type() -> String {
    "absolute".into()
}

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token's vector.
    Cls,
    /// The mean over the real (unpadded) tokens.
    Mean,
    /// The element-wise maximum over the real tokens.
    Max,
    /// The sum over the real tokens divided by the square root of their count.
    MeanSqrtLen,
}

#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct Module {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

/// What the sentence-transformers modules of a model directory ask for.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub pooling: Pooling,
    /// A `Normalize` module follows the pooling: vectors have unit length.
    pub normalize: bool,
    /// `sentence_bert_config.json`'s limit, in tokens including `[CLS]` and `[SEP]`.
    pub max_seq_length: Option<usize>,
    pub lowercase: bool,
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|source| EmbedError::Read { path: path.into(), source })?;
    serde_json::from_str(&text).map_err(|e| EmbedError::invalid(path, e))
}

impl Pipeline {
    /// Reads `modules.json`, the pooling module's `config.json` and `sentence_bert_config.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let modules_path = dir.join("modules.json");
        let modules: Vec<Module> = read_json(&modules_path)?;
        let module = |suffix: &str| modules.iter().find(|m| m.kind.ends_with(suffix));
        let pooling_module = module(".Pooling")
            .ok_or_else(|| EmbedError::invalid(&modules_path, "no sentence_transformers Pooling module"))?;
        let pooling_path = dir.join(&pooling_module.path).join("config.json");
        let pooling = Self::pooling(&pooling_path, read_json(&pooling_path)?)?;
        let sbert_path = dir.join("sentence_bert_config.json");
        // sentence-transformers falls back to the tokenizer's limit when this file is absent.
        let sbert = match sbert_path.exists() {
            true => read_json(&sbert_path)?,
            false => SentenceBertConfig { max_seq_length: None, do_lower_case: false },
        };
        Ok(Pipeline {
            pooling,
            normalize: module(".Normalize").is_some(),
            max_seq_length: sbert.max_seq_length,
            lowercase: sbert.do_lower_case,
        })
    }

    fn pooling(path: &Path, file: PoolingFile) -> Result<Pooling> {
        let modes = [
            (file.pooling_mode_cls_token, Pooling::Cls),
            (file.pooling_mode_mean_tokens, Pooling::Mean),
            (file.pooling_mode_max_tokens, Pooling::Max),
            (file.pooling_mode_mean_sqrt_len_tokens, Pooling::MeanSqrtLen),
        ];
        let mut chosen = modes.iter().filter(|(on, _)| *on).map(|(_, mode)| *mode);
        match (chosen.next(), chosen.next()) {
            (Some(mode), None) => Ok(mode),
            (None, _) => Err(EmbedError::invalid(path, "no pooling mode is enabled")),
            (Some(_), Some(_)) => Err(EmbedError::invalid(
                path,
                "several pooling modes at once (concatenated vectors) are not supported",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::create_dir_all(dir.join(name).parent().unwrap()).unwrap();
        fs::write(dir.join(name), text).unwrap();
    }

    const MODULES: &str = r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
        {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#;

    #[test]
    fn reads_pooling_and_normalize_from_the_modules() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "modules.json", MODULES);
        write(dir.path(), "1_Pooling/config.json", r#"{"pooling_mode_cls_token": true}"#);
        let pipeline = Pipeline::read(dir.path()).unwrap();
        assert_eq!(pipeline.pooling, Pooling::Cls);
        assert!(!pipeline.normalize);
        assert_eq!(pipeline.max_seq_length, None);
    }

    #[test]
    fn refuses_zero_or_several_pooling_modes_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "modules.json", MODULES);
        for (config, expected) in [
            (r#"{"pooling_mode_mean_tokens": false}"#, "no pooling mode"),
            (
                r#"{"pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true}"#,
                "several pooling modes",
            ),
        ] {
            write(dir.path(), "1_Pooling/config.json", config);
            let err = Pipeline::read(dir.path()).unwrap_err().to_string();
            assert!(err.contains("1_Pooling/config.json") && err.contains(expected), "{err}");
        }
    }
}
