//! Models named by where they come from rather than by the catalog: `hf:OWNER/REPO[:FILE_OR_QUANT]`
//! (the Hugging Face hub, or its cache on this machine), `ollama:NAME[:TAG]` (Ollama's store on
//! this machine) and `https://…` (any URL of a GGUF file).

pub(crate) mod download;
pub(crate) mod hf;
pub(crate) mod ollama;
mod ollama_template;
pub(crate) mod url;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// The hub used when `HF_ENDPOINT` is unset.
pub const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";
/// The first four bytes of every GGUF file.
pub(crate) const GGUF_MAGIC: &[u8; 4] = b"GGUF";

/// A model name that says where the model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Hf(hf::HfSpec),
    Ollama(ollama::OllamaSpec),
    Url(String),
}

impl Source {
    /// The source `name` names, `None` when it names none (a catalog name or a path), or why it
    /// is malformed.
    pub(crate) fn parse(name: &str) -> Option<Result<Source, StoreError>> {
        if let Some(rest) = name.strip_prefix("hf:") {
            return Some(hf::HfSpec::parse(rest).map(Source::Hf));
        }
        if let Some(rest) = name.strip_prefix("ollama:") {
            return Some(ollama::OllamaSpec::parse(rest).map(Source::Ollama));
        }
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("https://") || lower.starts_with("http://") {
            return Some(Ok(Source::Url(name.to_owned())));
        }
        None
    }
}

/// A secret that never shows in `Debug` output (or anywhere else but the request it is for).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Where models named by their source are looked for and fetched from. [`Sources::from_env`]
/// reads the environment; tests build one by hand, so they never share process-wide variables.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The hub's base URL (`HF_ENDPOINT`).
    pub hf_endpoint: String,
    /// Sent as `Authorization: Bearer` to the hub (`HF_TOKEN`); never printed nor stored.
    pub hf_token: Option<Secret>,
    /// The Hugging Face cache (`HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`).
    pub hf_cache: Option<PathBuf>,
    /// Ollama's store (`OLLAMA_MODELS`, `~/.ollama/models`).
    pub ollama_models: Option<PathBuf>,
    /// The wait before the first retry of a broken download; it doubles at each retry.
    pub retry_delay: Duration,
}

impl Default for Sources {
    /// The public hub, no token, no cache, no Ollama store.
    fn default() -> Sources {
        Sources {
            hf_endpoint: DEFAULT_HF_ENDPOINT.to_owned(),
            hf_token: None,
            hf_cache: None,
            ollama_models: None,
            retry_delay: Duration::from_millis(500),
        }
    }
}

impl Sources {
    /// The sources the environment variables name (see the fields).
    pub fn from_env() -> Sources {
        Sources::from_vars(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// The sources that the variables `var` returns name: the one place that knows them.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Sources {
        let home = var("HOME").map(PathBuf::from);
        let under_home =
            |parts: &[&str]| home.as_ref().map(|h| parts.iter().fold(h.clone(), |p, s| p.join(s)));
        let hf_cache = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| var("HF_HOME").map(|h| Path::new(&h).join("hub")))
            .or_else(|| under_home(&[".cache", "huggingface", "hub"]));
        Sources {
            hf_endpoint: var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_HF_ENDPOINT.to_owned()),
            hf_token: var("HF_TOKEN").map(Secret::new),
            hf_cache,
            ollama_models: var("OLLAMA_MODELS")
                .map(PathBuf::from)
                .or_else(|| under_home(&[".ollama", "models"])),
            ..Sources::default()
        }
    }
}

/// Where a downloaded model came from, kept beside it as `source.json` for `temper models info`
/// and `list` (and to find it again by the name it was pulled with).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The name that resolves to this model: `hf:OWNER/REPO:FILE`, or the URL.
    pub name: String,
    /// The GGUF's file name in the model's directory.
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// Where the bytes were downloaded from (before any redirect).
    pub url: String,
    /// `OWNER/REPO` on the hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The file's path in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_file: Option<String>,
    /// The revision asked for (`main`) and the commit it was at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// Whether the file at `path` starts like a GGUF file; the error says what it is instead.
pub(crate) fn check_gguf(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let mut head = [0u8; 4];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    match read {
        Ok(()) if &head == GGUF_MAGIC => Ok(()),
        Ok(()) => Err(StoreError::NotGguf {
            path: path.to_owned(),
            reason: format!(
                "it starts with {:?}, where a GGUF file starts with \"GGUF\"",
                String::from_utf8_lossy(&head)
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(StoreError::NotGguf {
            path: path.to_owned(),
            reason: "it is shorter than a GGUF header".to_owned(),
        }),
        Err(e) => Err(StoreError::io("read", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sorted_by_source() {
        assert!(Source::parse("smollm2-135m-instruct").is_none());
        assert!(Source::parse("./model.gguf").is_none());
        assert!(matches!(Source::parse("hf:o/r:Q4_K_M"), Some(Ok(Source::Hf(_)))));
        assert!(matches!(Source::parse("ollama:tiny"), Some(Ok(Source::Ollama(_)))));
        assert!(matches!(Source::parse("https://example.org/m.gguf"), Some(Ok(Source::Url(_)))));
        assert!(matches!(Source::parse("hf:no-slash"), Some(Err(_))));
    }

    #[test]
    fn the_environment_is_read_in_one_place() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        let sources = Sources::from_vars(vars(&[("HOME", "/h"), ("HF_TOKEN", "hf_secret")]));
        assert_eq!(sources.hf_cache, Some(PathBuf::from("/h/.cache/huggingface/hub")));
        assert_eq!(sources.ollama_models, Some(PathBuf::from("/h/.ollama/models")));
        assert_eq!(sources.hf_endpoint, DEFAULT_HF_ENDPOINT);
        assert!(!format!("{sources:?}").contains("hf_secret"));
        let sources =
            Sources::from_vars(vars(&[("HOME", "/h"), ("HF_HOME", "/hf"), ("OLLAMA_MODELS", "/o")]));
        assert_eq!(sources.hf_cache, Some(PathBuf::from("/hf/hub")));
        assert_eq!(sources.ollama_models, Some(PathBuf::from("/o")));
        let sources = Sources::from_vars(vars(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/c")]));
        assert_eq!(sources.hf_cache, Some(PathBuf::from("/c")));
    }
}
