//! Model profiles: named models in `temper.toml`, local or behind a vendor's API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use temper_core::GenerationParams;
use temper_providers::{ApiKey, ProviderConfig, UnsupportedParams, Vendor, WarningSink, MAX_RETRIES};

use crate::cost::Prices;

/// The file profiles live in, looked for in the working directory, then in `$TEMPER_HOME`.
pub const CONFIG_FILE: &str = "temper.toml";

/// What went wrong reading profiles, said so that a user can act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    #[error("cannot read {}", path.display())]
    Read { path: PathBuf, source: std::io::Error },

    /// Not valid TOML, or not the profile format (toml's message names the line).
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },

    /// A profile whose values are wrong.
    #[error("{}: profile `{profile}`: {reason}", path.display())]
    Invalid { path: PathBuf, profile: String, reason: String },

    /// A key written into the file. The value is never repeated.
    #[error(
        "{}: profile `{profile}` has an `api_key`; keys never go in temper.toml: put the key in an \
         environment variable and name it with api_key_env (and remove the key from the file)",
        path.display()
    )]
    KeyInConfig { path: PathBuf, profile: String },

    /// The profile's key variable is unset (or another backend setting is unusable).
    #[error("profile `{profile}`")]
    Backend {
        profile: String,
        #[source]
        error: Box<temper_providers::ProviderError>,
    },
}

/// Which engine runs a profile's model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Temper's own engine; `model` is a catalog name or a GGUF path.
    Local,
    #[serde(rename = "openai")]
    OpenAi,
    Ollama,
    Anthropic,
}

impl Backend {
    /// The HTTP vendor, or `None` for the local engine.
    pub fn vendor(self) -> Option<Vendor> {
        match self {
            Backend::Local => None,
            Backend::OpenAi => Some(Vendor::OpenAi),
            Backend::Ollama => Some(Vendor::Ollama),
            Backend::Anthropic => Some(Vendor::Anthropic),
        }
    }

    pub fn name(self) -> &'static str {
        self.vendor().map_or("local", Vendor::name)
    }
}

/// One `[models.NAME]` table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub backend: Backend,
    /// The vendor's model id, or a catalog name / GGUF path for `local`.
    pub model: String,
    /// Default: the vendor's.
    pub base_url: Option<String>,
    /// The environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// Tokens of context the model takes (informational for remote models).
    pub context_window: Option<u32>,
    /// USD per million prompt tokens.
    pub input_price_per_mtok: Option<f64>,
    /// USD per million completion tokens.
    pub output_price_per_mtok: Option<f64>,
    /// Profiles (or catalog names) to try, in order, when this one fails.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// What to do with a parameter the backend cannot honour: `error` (default) or `warn`.
    #[serde(default)]
    pub unsupported_params: UnsupportedParams,
    /// Seconds to wait for a response, and between two pieces of a stream.
    pub timeout_secs: Option<f64>,
    /// Retries of a request that failed for a transient reason.
    pub max_retries: Option<u32>,
    /// Default generation parameters; a request's own override them.
    #[serde(default)]
    pub params: GenerationParams,
}

impl Profile {
    /// The profile's prices, when it has both.
    pub fn prices(&self) -> Option<Prices> {
        Some(Prices {
            input_per_mtok: self.input_price_per_mtok?,
            output_per_mtok: self.output_price_per_mtok?,
        })
    }

    /// The backend config for a remote profile: the key read from `api_key_env`, the
    /// profile's URL, timeouts, retries and parameter policy.
    pub fn provider_config(
        &self,
        name: &str,
        counter: Option<std::sync::Arc<dyn temper_core::TokenCounter>>,
        warn: WarningSink,
    ) -> Result<Option<ProviderConfig>, ProfileError> {
        let Some(vendor) = self.backend.vendor() else { return Ok(None) };
        let backend_error =
            |source| ProfileError::Backend { profile: name.to_owned(), error: Box::new(source) };
        let mut config = ProviderConfig::new(vendor, &self.model);
        config.base_url = self.base_url.clone();
        config.api_key =
            self.api_key_env.as_deref().map(ApiKey::from_env).transpose().map_err(backend_error)?;
        if let Some(seconds) = self.timeout_secs {
            let timeout = Duration::from_secs_f64(seconds);
            config.timeouts.response = timeout;
            config.timeouts.idle = timeout;
            config.timeouts.total = config.timeouts.total.max(timeout);
        }
        if let Some(retries) = self.max_retries {
            config.retry.max_retries = retries;
        }
        config.unsupported = self.unsupported_params;
        config.counter = counter;
        config.warn = warn;
        Ok(Some(config))
    }

    fn check(&self) -> Result<(), String> {
        self.params.validate().map_err(|e| format!("params: {e}"))?;
        for (field, price) in [
            ("input_price_per_mtok", self.input_price_per_mtok),
            ("output_price_per_mtok", self.output_price_per_mtok),
        ] {
            if price.is_some_and(|p| !p.is_finite() || p < 0.0) {
                return Err(format!("{field} must be a price in USD, 0 or more"));
            }
        }
        if self.input_price_per_mtok.is_some() != self.output_price_per_mtok.is_some() {
            return Err("set both input_price_per_mtok and output_price_per_mtok, or neither".into());
        }
        if self.timeout_secs.is_some_and(|t| !t.is_finite() || t <= 0.0) {
            return Err("timeout_secs must be more than 0".into());
        }
        if self.max_retries.is_some_and(|r| r > MAX_RETRIES) {
            return Err(format!(
                "max_retries must be at most {MAX_RETRIES}: with backoff of up to 20 s a retry, more would keep \
                 a failing request going for many minutes"
            ));
        }
        if self.model.trim().is_empty() {
            return Err("model must not be empty".into());
        }
        if self.backend == Backend::Local && (self.base_url.is_some() || self.api_key_env.is_some()) {
            return Err("a local profile takes no base_url or api_key_env".into());
        }
        if matches!(self.backend, Backend::OpenAi | Backend::Anthropic) && self.api_key_env.is_none() {
            return Err(format!(
                "the {} backend needs api_key_env, the environment variable holding the key",
                self.backend.name()
            ));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    models: BTreeMap<String, Profile>,
    #[serde(default)]
    rag: RagSettings,
    /// The agents' command tools: read by `temper-agent` from the file, only noted here.
    #[serde(default)]
    tools: Vec<toml::Value>,
}

/// The `[rag]` table: which store `temper rag` uses.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RagSettings {
    /// A store file (relative to the config file) or a `postgres://` URL.
    db: Option<String>,
}

/// The profiles of one `temper.toml` (none if there is no file), and its `[rag]` settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profiles {
    path: Option<PathBuf>,
    profiles: BTreeMap<String, Profile>,
    rag_db: Option<String>,
    has_tools: bool,
}

impl Profiles {
    /// `temper.toml` in `dir`, else in `home`, else no profiles.
    pub fn discover(dir: &Path, home: &Path) -> Result<Profiles, ProfileError> {
        for candidate in [dir.join(CONFIG_FILE), home.join(CONFIG_FILE)] {
            if candidate.is_file() {
                return Profiles::load(&candidate);
            }
        }
        Ok(Profiles::default())
    }

    pub fn load(path: &Path) -> Result<Profiles, ProfileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ProfileError::Read { path: path.to_owned(), source })?;
        Profiles::parse(path, &text)
    }

    /// Profiles from `text`, read from `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Profiles, ProfileError> {
        let parse_error = |message: String| ProfileError::Parse { path: path.to_owned(), message };
        // Look for a key before the typed parse: toml's errors quote the offending line,
        // which would print the key.
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
        let models = table.get("models").and_then(toml::Value::as_table);
        for (name, profile) in models.into_iter().flatten() {
            if profile.as_table().is_some_and(|t| t.contains_key("api_key")) {
                return Err(ProfileError::KeyInConfig { path: path.to_owned(), profile: name.clone() });
            }
        }
        let file: File = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        for (name, profile) in &file.models {
            profile.check().map_err(|reason| ProfileError::Invalid {
                path: path.to_owned(),
                profile: name.clone(),
                reason,
            })?;
        }
        // A relative store path means the folder of the file that names it.
        let rag_db = file.rag.db.map(|db| match db.contains("://") || Path::new(&db).is_absolute() {
            true => db,
            false => path.parent().unwrap_or(Path::new("")).join(db).display().to_string(),
        });
        let has_tools = !file.tools.is_empty();
        Ok(Profiles { path: Some(path.to_owned()), profiles: file.models, rag_db, has_tools })
    }

    /// The RAG store `[rag] db` names: a file path or a `postgres://` URL.
    pub fn rag_db(&self) -> Option<&str> {
        self.rag_db.as_deref()
    }

    /// Whether the file has `[[tools]]` tables (command tools for agents).
    pub fn has_tools(&self) -> bool {
        self.has_tools
    }

    /// The file the profiles came from.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Profile)> {
        self.profiles.iter().map(|(name, profile)| (name.as_str(), profile))
    }

    /// `name` and its fallbacks, in the order to try them. Only the named profile's own
    /// `fallback` list counts, so a chain cannot loop.
    pub fn chain(&self, name: &str) -> Vec<String> {
        let fallbacks = self.get(name).map(|p| p.fallback.clone()).unwrap_or_default();
        std::iter::once(name.to_owned()).chain(fallbacks).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[models.gpt-mini]
backend = "openai"            # openai | ollama | anthropic | local
model = "gpt-4o-mini"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "OPENAI_API_KEY"
context_window = 128000
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
fallback = ["claude-haiku", "local"]
[models.gpt-mini.params]
temperature = 0.2

[models.local]
backend = "local"
model = "smollm2-135m-instruct"
"#;

    fn parse(text: &str) -> Result<Profiles, ProfileError> {
        Profiles::parse(Path::new("temper.toml"), text)
    }

    #[test]
    fn the_issues_format() {
        let profiles = parse(EXAMPLE).unwrap();
        let gpt = profiles.get("gpt-mini").unwrap();
        assert_eq!(gpt.backend, Backend::OpenAi);
        assert_eq!(gpt.model, "gpt-4o-mini");
        assert_eq!(gpt.context_window, Some(128_000));
        assert_eq!(gpt.params.temperature, Some(0.2));
        assert_eq!(gpt.prices(), Some(Prices { input_per_mtok: 0.15, output_per_mtok: 0.60 }));
        assert_eq!(profiles.chain("gpt-mini"), ["gpt-mini", "claude-haiku", "local"]);
        assert_eq!(profiles.chain("local"), ["local"]);
        assert_eq!(profiles.get("local").unwrap().backend.vendor(), None);
    }

    #[test]
    fn the_rag_store_is_a_url_or_a_path_beside_the_file() {
        let at = |text: &str| {
            Profiles::parse(Path::new("/work/app/temper.toml"), text).unwrap().rag_db().map(str::to_owned)
        };
        assert_eq!(at("[rag]\ndb = \"postgres://ann@db/rag\"\n").as_deref(), Some("postgres://ann@db/rag"));
        assert_eq!(at("[rag]\ndb = \"data/rag.db\"\n").as_deref(), Some("/work/app/data/rag.db"));
        assert_eq!(at("[rag]\ndb = \"/srv/rag.db\"\n").as_deref(), Some("/srv/rag.db"));
        assert_eq!(at(EXAMPLE), None);
        let err = parse("[rag]\nstore = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("store"), "{err}");
    }

    #[test]
    fn mistakes_are_named() {
        let err = parse("[models.a]\nbackend = \"openia\"\nmodel = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("openia") && err.contains("line 2"), "{err}");
        let err = parse("[models.a]\nbackend = \"local\"\nmodel = \"x\"\ntemprature = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("temprature"), "{err}");
        let err = parse("[models.a]\nbackend = \"local\"\nmodel = \"x\"\n[models.a.params]\ntop_p = 3.0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("profile `a`") && err.contains("top_p"), "{err}");
        let err = parse("[models.a]\nbackend = \"local\"\nmodel = \"x\"\ninput_price_per_mtok = -1\noutput_price_per_mtok = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("input_price_per_mtok"), "{err}");
        let err = parse("[models.a]\nbackend = \"openai\"\nmodel = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("api_key_env"), "{err}");
        let err = parse("[models.a]\nbackend = \"ollama\"\nmodel = \"x\"\nmax_retries = 1000000\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("profile `a`") && err.contains("max_retries must be at most 10"), "{err}");
        assert!(parse("[models.a]\nbackend = \"ollama\"\nmodel = \"x\"\nmax_retries = 10\n").is_ok());
    }

    #[test]
    fn a_key_in_the_file_is_refused_without_repeating_it() {
        let text = "[models.a]\nbackend = \"openai\"\nmodel = \"x\"\napi_key = \"sk-live-abc123\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("api_key_env") && err.contains("profile `a`"), "{err}");
        assert!(!err.contains("sk-live"), "{err}");
    }

    #[test]
    fn found_in_the_working_directory_then_in_home() {
        let (dir, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert_eq!(Profiles::discover(dir.path(), home.path()).unwrap(), Profiles::default());
        std::fs::write(home.path().join(CONFIG_FILE), "[models.h]\nbackend = \"local\"\nmodel = \"x\"\n")
            .unwrap();
        assert!(Profiles::discover(dir.path(), home.path()).unwrap().get("h").is_some());
        std::fs::write(dir.path().join(CONFIG_FILE), "[models.d]\nbackend = \"local\"\nmodel = \"x\"\n")
            .unwrap();
        let found = Profiles::discover(dir.path(), home.path()).unwrap();
        assert!(found.get("d").is_some() && found.get("h").is_none());
        assert_eq!(found.path(), Some(dir.path().join(CONFIG_FILE).as_path()));
    }

    #[test]
    fn a_missing_key_variable_is_named() {
        let profiles = parse(
            "[models.a]\nbackend = \"anthropic\"\nmodel = \"x\"\napi_key_env = \"TEMPER_TEST_UNSET_KEY_VAR\"\n",
        )
        .unwrap();
        let warn: WarningSink = std::sync::Arc::new(|_| {});
        let err = profiles.get("a").unwrap().provider_config("a", None, warn).unwrap_err();
        let err = temper_core::error_chain(&err);
        assert!(err.starts_with("profile `a`: environment variable TEMPER_TEST_UNSET_KEY_VAR"), "{err}");
    }
}
