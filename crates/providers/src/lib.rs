#![doc = include_str!("../README.md")]

mod embeddings;
mod error;
mod frames;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod http;
mod params;
mod retry;
mod secret;
mod stream;
mod vendors;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use temper_core::{ChatModel, ChatRequest, EventStream, TokenCounter};

pub use embeddings::HttpEmbedder;
pub use error::ProviderError;
pub use http::Timeouts;
pub use params::UnsupportedParams;
pub use retry::{BreakerPolicy, RetryPolicy, MAX_RETRIES};
pub use secret::ApiKey;
pub use vendors::ANTHROPIC_DEFAULT_MAX_TOKENS;

/// The HTTP APIs Temper speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// OpenAI's chat completions API, as OpenAI, vLLM, llama.cpp's server, LM Studio and
    /// Ollama's `/v1` serve it.
    OpenAi,
    /// Ollama's native `/api/chat`.
    Ollama,
    /// Anthropic's Messages API.
    Anthropic,
}

impl Vendor {
    /// The name used in `temper.toml` (`backend = "openai"`) and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Vendor::OpenAi => "openai",
            Vendor::Ollama => "ollama",
            Vendor::Anthropic => "anthropic",
        }
    }

    /// The base URL used when a profile gives none.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Vendor::OpenAi => "https://api.openai.com/v1",
            Vendor::Ollama => "http://localhost:11434",
            Vendor::Anthropic => "https://api.anthropic.com/v1",
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Vendor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Vendor::OpenAi, Vendor::Ollama, Vendor::Anthropic]
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| format!("unknown backend `{s}`; known: openai, ollama, anthropic"))
    }
}

/// Where warnings go (a dropped parameter, a retry): the CLI prints them on stderr.
pub type WarningSink = Arc<dyn Fn(String) + Send + Sync>;

/// Everything a backend needs. `ProviderConfig::new` fills in the defaults.
#[derive(Clone)]
pub struct ProviderConfig {
    pub vendor: Vendor,
    /// The vendor's model id (`gpt-4o-mini`, `claude-3-5-haiku-latest`, `llama3.2`).
    pub model: String,
    /// `None` uses the vendor's default.
    pub base_url: Option<String>,
    pub api_key: Option<ApiKey>,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    pub breaker: BreakerPolicy,
    pub unsupported: UnsupportedParams,
    /// Counts tokens for a backend that does not report them (e.g. an older OpenAI-compatible
    /// server): the CLI passes the default local model's tokenizer.
    pub counter: Option<Arc<dyn TokenCounter>>,
    pub warn: WarningSink,
}

impl ProviderConfig {
    /// Defaults: the vendor's URL, no key, default timeouts, retries and breaker, refusing
    /// unsupported parameters, warnings on stderr.
    pub fn new(vendor: Vendor, model: impl Into<String>) -> ProviderConfig {
        ProviderConfig {
            vendor,
            model: model.into(),
            base_url: None,
            api_key: None,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
            unsupported: UnsupportedParams::Error,
            counter: None,
            warn: Arc::new(|message| eprintln!("warning: {message}")),
        }
    }
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("vendor", &self.vendor)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("unsupported", &self.unsupported)
            .finish_non_exhaustive()
    }
}

/// What every request of one backend shares: the client, the endpoint and its breaker.
pub(crate) struct Shared {
    pub vendor: Vendor,
    pub model: String,
    /// The endpoint's full URL (chat or embeddings).
    pub url: String,
    pub key: Option<ApiKey>,
    pub client: reqwest::Client,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    pub breaker: retry::Breaker,
    pub unsupported: UnsupportedParams,
    pub counter: Option<Arc<dyn TokenCounter>>,
    pub warn: WarningSink,
}

impl Shared {
    /// The client, endpoint (`path` under the base URL) and breaker for `config`.
    fn new(config: ProviderConfig, path: &str) -> Result<Shared, ProviderError> {
        let base = config.base_url.unwrap_or_else(|| config.vendor.default_base_url().to_owned());
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| ProviderError::BadUrl { url: base.clone(), reason: e.to_string() })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ProviderError::BadUrl {
                url: base,
                reason: "the scheme must be http or https".into(),
            });
        }
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let client =
            reqwest::Client::builder().connect_timeout(config.timeouts.connect).build().map_err(|e| {
                ProviderError::Connection {
                    vendor: config.vendor.name(),
                    url: url.clone(),
                    reason: http::error_chain(&e),
                    attempts: 1,
                }
            })?;
        Ok(Shared {
            vendor: config.vendor,
            model: config.model,
            url,
            key: config.api_key,
            client,
            timeouts: config.timeouts,
            retry: RetryPolicy { max_retries: config.retry.max_retries.min(MAX_RETRIES), ..config.retry },
            breaker: retry::Breaker::new(config.breaker),
            unsupported: config.unsupported,
            counter: config.counter,
            warn: config.warn,
        })
    }

    /// `text` without the key, for anything a server sent back.
    pub(crate) fn scrub(&self, text: &str) -> String {
        match &self.key {
            Some(key) => key.scrub(text),
            None => text.to_owned(),
        }
    }
}

/// A model behind a vendor's HTTP API, as a [`ChatModel`].
pub struct HttpModel {
    name: String,
    shared: Arc<Shared>,
}

impl HttpModel {
    /// A backend for `config`; `name` is what it answers to (a profile name).
    pub fn new(name: impl Into<String>, config: ProviderConfig) -> Result<HttpModel, ProviderError> {
        let path = vendors::chat_path(config.vendor);
        Ok(HttpModel { name: name.into(), shared: Arc::new(Shared::new(config, path)?) })
    }

    pub fn vendor(&self) -> Vendor {
        self.shared.vendor
    }

    /// The chat endpoint's URL.
    pub fn url(&self) -> &str {
        &self.shared.url
    }
}

impl fmt::Debug for HttpModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpModel")
            .field("name", &self.name)
            .field("vendor", &self.shared.vendor)
            .field("model", &self.shared.model)
            .field("url", &self.shared.url)
            .field("api_key", &self.shared.key)
            .finish()
    }
}

impl ChatModel for HttpModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn chat_stream(&self, request: ChatRequest) -> EventStream {
        stream::chat(self.name.clone(), self.shared.clone(), request)
    }
}
