//! `ollama:NAME[:TAG]`: a model in Ollama's store on this machine, used in place. Its manifest
//! lists layers; the model layer is the GGUF file, and the params layer holds default sampling
//! parameters, which become the model's defaults here.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use temper_core::GenerationParams;
use temper_engine::gguf::Gguf;
use temper_engine::template::KEY_TEMPLATE;

use super::check_gguf;
use crate::error::StoreError;

/// The registry whose models `ollama pull` stores; other registries' are named with their host.
const REGISTRY: &str = "registry.ollama.ai";
const DEFAULT_NAMESPACE: &str = "library";
const DEFAULT_TAG: &str = "latest";
const MODEL_LAYER: &str = "application/vnd.ollama.image.model";
const PARAMS_LAYER: &str = "application/vnd.ollama.image.params";
const TEMPLATE_LAYER: &str = "application/vnd.ollama.image.template";

/// `[NAMESPACE/]NAME[:TAG]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OllamaSpec {
    pub namespace: String,
    pub name: String,
    pub tag: String,
}

impl OllamaSpec {
    /// Parses what follows `ollama:`.
    pub(crate) fn parse(text: &str) -> Result<OllamaSpec, StoreError> {
        let bad = |reason: String| StoreError::BadSourceName {
            name: format!("ollama:{text}"),
            reason: format!("{reason}; write ollama:NAME, ollama:NAME:TAG or ollama:NAMESPACE/NAME:TAG"),
        };
        let (path, tag) = text.split_once(':').unwrap_or((text, DEFAULT_TAG));
        let (namespace, name) = path.split_once('/').unwrap_or((DEFAULT_NAMESPACE, path));
        let word_ok = |w: &str| {
            !w.is_empty()
                && !w.starts_with('.')
                && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        for (what, word) in [("namespace", namespace), ("name", name), ("tag", tag)] {
            if !word_ok(word) {
                return Err(bad(format!(
                    "the {what} `{word}` is not a name (letters, digits, `-`, `_`, `.`)"
                )));
            }
        }
        Ok(OllamaSpec { namespace: namespace.to_owned(), name: name.to_owned(), tag: tag.to_owned() })
    }

    /// The name as Ollama shows it: `NAME:TAG`, with the namespace unless it is `library`.
    pub(crate) fn display(&self) -> String {
        match self.namespace.as_str() {
            DEFAULT_NAMESPACE => format!("{}:{}", self.name, self.tag),
            namespace => format!("{namespace}/{}:{}", self.name, self.tag),
        }
    }
}

/// A model of Ollama's store.
#[derive(Debug, Clone)]
pub(crate) struct OllamaModel {
    /// The GGUF file (a blob of Ollama's store).
    pub gguf: PathBuf,
    /// The model's default parameters (from its params layer).
    pub defaults: GenerationParams,
    /// A chat template (Jinja) from the template layer, only when the GGUF has none.
    pub chat_template: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
}

/// Finds `spec` in the store at `models` (`manifests/` and `blobs/`).
pub(crate) fn find(models: &Path, spec: &OllamaSpec) -> Result<OllamaModel, StoreError> {
    let manifests = models.join("manifests").join(REGISTRY);
    let manifest_path = manifests.join(&spec.namespace).join(&spec.name).join(&spec.tag);
    let text = match fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::NotInOllama {
                model: spec.display(),
                dir: models.to_owned(),
                available: available(&manifests).join(", "),
            })
        }
        Err(e) => return Err(StoreError::io("read", &manifest_path, e)),
    };
    let bad_manifest = |reason: String| StoreError::BadOllamaManifest { path: manifest_path.clone(), reason };
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| bad_manifest(format!("not a manifest: {e}")))?;
    let blob = |layer: &Layer| -> Result<PathBuf, StoreError> {
        let hex = layer
            .digest
            .strip_prefix("sha256:")
            .filter(|hex| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| {
                bad_manifest(format!("the digest `{}` is not sha256:<64 hex digits>", layer.digest))
            })?;
        let path = models.join("blobs").join(format!("sha256-{hex}"));
        match path.is_file() {
            true => Ok(path),
            false => Err(StoreError::MissingOllamaBlob { model: spec.display(), path }),
        }
    };
    let layer = |media_type: &str| manifest.layers.iter().find(|l| l.media_type == media_type);
    let model_layer = layer(MODEL_LAYER)
        .ok_or_else(|| bad_manifest(format!("no layer of type {MODEL_LAYER}, so no model file")))?;
    let gguf = blob(model_layer)?;
    check_gguf(&gguf)?;
    let defaults = match layer(PARAMS_LAYER) {
        None => GenerationParams::default(),
        Some(params) => {
            let path = blob(params)?;
            let text = fs::read_to_string(&path).map_err(|e| StoreError::io("read", &path, e))?;
            parse_params(&text).map_err(|reason| StoreError::BadOllamaManifest { path, reason })?
        }
    };
    let chat_template = match layer(TEMPLATE_LAYER) {
        Some(template) if !has_chat_template(&gguf) => {
            let path = blob(template)?;
            let go = fs::read_to_string(&path).map_err(|e| StoreError::io("read", &path, e))?;
            super::ollama_template::jinja_for(&go).map(str::to_owned)
        }
        _ => None,
    };
    Ok(OllamaModel { gguf, defaults, chat_template })
}

/// Whether the GGUF at `path` carries its own chat template (which then wins over Ollama's: it
/// is the model's, where Ollama's is only recognized by its shape). One that cannot be read is
/// left for the engine to report.
fn has_chat_template(path: &Path) -> bool {
    Gguf::open(path).map_or(true, |gguf| gguf.get(KEY_TEMPLATE).is_some())
}

/// Ollama's parameters as Temper's: those the engine has (stop strings, sampling, the length
/// and context limits, the seed); the others (mirostat, …) have no counterpart and are left out.
fn parse_params(text: &str) -> Result<GenerationParams, String> {
    #[derive(Deserialize)]
    struct Params {
        #[serde(default)]
        stop: Vec<String>,
        temperature: Option<f32>,
        top_p: Option<f32>,
        top_k: Option<u32>,
        min_p: Option<f32>,
        repeat_penalty: Option<f32>,
        frequency_penalty: Option<f32>,
        presence_penalty: Option<f32>,
        seed: Option<u64>,
        /// Ollama's -1 (and -2) mean "no limit".
        num_predict: Option<i64>,
        num_ctx: Option<u32>,
    }
    let p: Params = serde_json::from_str(text)
        .map_err(|e| format!("the params layer is not Ollama's params JSON: {e}"))?;
    Ok(GenerationParams {
        stop: p.stop,
        temperature: p.temperature,
        top_p: p.top_p,
        top_k: p.top_k,
        min_p: p.min_p,
        repeat_penalty: p.repeat_penalty,
        frequency_penalty: p.frequency_penalty,
        presence_penalty: p.presence_penalty,
        seed: p.seed,
        max_tokens: p.num_predict.and_then(|n| u32::try_from(n).ok()).filter(|&n| n > 0),
        context_window: p.num_ctx,
    })
}

/// The models of the store whose manifests are under `manifests`, as Ollama names them.
fn available(manifests: &Path) -> Vec<String> {
    let listing = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|item| item.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let mut found = Vec::new();
    for namespace in listing(manifests) {
        for name in listing(&manifests.join(&namespace)) {
            for tag in listing(&manifests.join(&namespace).join(&name)) {
                let spec = OllamaSpec { namespace: namespace.clone(), name: name.clone(), tag };
                found.push(spec.display());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let spec = OllamaSpec::parse("tiny").unwrap();
        assert_eq!(
            (spec.namespace.as_str(), spec.name.as_str(), spec.tag.as_str()),
            ("library", "tiny", "latest")
        );
        assert_eq!(OllamaSpec::parse("library/tiny:v2").unwrap().display(), "tiny:v2");
        assert_eq!(OllamaSpec::parse("me/tiny:v2").unwrap().display(), "me/tiny:v2");
        for bad in ["", "tiny:", "../x", "a/b/c", "tiny:../x"] {
            assert!(OllamaSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn params_become_defaults() {
        let p = parse_params(
            r#"{"stop":["<|im_end|>"],"temperature":0.6,"num_predict":-1,"num_ctx":2048,"mirostat":0}"#,
        )
        .unwrap();
        assert_eq!(p.stop, ["<|im_end|>"]);
        assert_eq!(p.temperature, Some(0.6));
        assert_eq!(p.max_tokens, None);
        assert_eq!(p.context_window, Some(2048));
        assert!(parse_params("[]").is_err());
    }
}
