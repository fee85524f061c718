//! The options `chat`, `ask`, `complete`, `tokenize` and `logits` share, and loading a model
//! from them: a profile of `temper.toml`, a catalog name or a GGUF path.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use clap::Args;
use temper_core::{ChatModel, ChatRequest, GenerationParams, Message, ResponseFormat};
use temper_engine::gguf::Gguf;
use temper_engine::tokenizer::Tokenizer;
use temper_engine::{LoadOptions, LocalModel};
use temper_models::cost::CallLog;
use temper_models::{ConsoleProgress, Fallback, Metered, ModelStore, Profile, Profiles, DEFAULT_CHAT_MODEL};
use temper_providers::{HttpModel, ProviderConfig, TokenCounter, WarningSink};

use crate::output::notice;

/// Which model to load and how.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// A profile of temper.toml, a catalog name (pulled on first use) or a path to a GGUF file
    /// [default: smollm2-135m-instruct, or a prompt file's model].
    #[arg(long)]
    pub model: Option<String>,
    /// Context window in tokens (default: the model's trained context, at most 4096).
    #[arg(long, value_name = "TOKENS")]
    pub ctx: Option<usize>,
    /// Threads for inference (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl ModelArgs {
    /// The model to load: `--model`, else the default chat model.
    pub fn name(&self) -> &str {
        self.model.as_deref().unwrap_or(DEFAULT_CHAT_MODEL)
    }

    pub fn load_options(&self) -> LoadOptions {
        LoadOptions { threads: self.threads, context_window: self.ctx, sequences: None }
    }

    /// Resolves `--model` (pulling a catalog model on first use) and loads it.
    pub fn load(&self) -> anyhow::Result<Loaded> {
        load_model(&ModelStore::from_env()?, self.name(), self.load_options())
    }

    /// Loads `--model`, which must run on the local engine (for `tokenize` and `logits`).
    pub fn load_local(&self, command: &str) -> anyhow::Result<Arc<LocalModel>> {
        self.load()?.local.with_context(|| {
            format!(
                "`{command}` looks inside the local engine, and `{}` is a remote profile; pass a local model",
                self.name()
            )
        })
    }
}

/// A loaded model: what answers, and the local engine behind it when it runs locally (for
/// its summary, tokenizer and logits).
pub struct Loaded {
    pub model: Arc<dyn ChatModel>,
    pub local: Option<Arc<LocalModel>>,
}

/// Loads `name`: a profile of `temper.toml` (with its fallback chain), else a catalog name or
/// a path, pulling with progress bars if needed. Every answer is priced (when the profile has
/// prices) and logged for `temper cost report`.
pub fn load_model(store: &ModelStore, name: &str, options: LoadOptions) -> anyhow::Result<Loaded> {
    let profiles = profiles(store)?;
    let mut members = Vec::new();
    let mut local = None;
    for member in profiles.chain(name) {
        let loaded = load_member(store, &profiles, &member, options.clone())?;
        if members.is_empty() {
            local = loaded.local;
        }
        members.push(loaded.model);
    }
    let model = match members.len() {
        1 => members.remove(0),
        _ => Arc::new(Fallback::new(name, members)?),
    };
    Ok(Loaded { model, local })
}

/// The profiles of `temper.toml` in the working directory, else in the store's root.
pub fn profiles(store: &ModelStore) -> anyhow::Result<Profiles> {
    let here = std::env::current_dir().context("cannot find the working directory")?;
    Ok(Profiles::discover(&here, store.root())?)
}

/// Warnings of the HTTP backends (a dropped parameter, a retry), on stderr.
pub fn warnings() -> WarningSink {
    Arc::new(|message| notice(&format!("warning: {message}")))
}

/// Where `--model NAME` points: a profile's remote endpoint, or a local model to resolve in the
/// store (a catalog name or path: the profile's `model`, or NAME itself).
pub enum Target<'a> {
    Remote(Box<ProviderConfig>),
    Local(&'a str),
}

/// The profile named `name`, if any, and where it points.
pub fn target<'a>(
    profiles: &'a Profiles,
    name: &'a str,
    counter: Option<Arc<dyn TokenCounter>>,
) -> anyhow::Result<(Option<&'a Profile>, Target<'a>)> {
    let profile = profiles.get(name);
    let target = match profile.map(|p| p.provider_config(name, counter, warnings())).transpose()?.flatten() {
        Some(config) => Target::Remote(Box::new(config)),
        None => Target::Local(profile.map_or(name, |p| p.model.as_str())),
    };
    Ok((profile, target))
}

/// One model of a chain, metered under its name.
fn load_member(
    store: &ModelStore,
    profiles: &Profiles,
    name: &str,
    options: LoadOptions,
) -> anyhow::Result<Loaded> {
    let counter: Arc<dyn TokenCounter> = Arc::new(DefaultTokenizer::new(store));
    let (profile, target) = target(profiles, name, Some(counter))?;
    let (inner, engine): (Arc<dyn ChatModel>, _) = match target {
        Target::Remote(config) => {
            (Arc::new(HttpModel::new(name, *config).with_context(|| format!("profile `{name}`"))?), None)
        }
        Target::Local(target) => {
            let path = store.resolve(target, &ConsoleProgress::default()).map_err(|err| {
                let known: Vec<&str> = profiles.iter().map(|(n, _)| n).collect();
                match profiles.path() {
                    Some(file) if profile.is_none() => {
                        anyhow::anyhow!("{err}; or a profile of {}: {}", file.display(), known.join(", "))
                    }
                    _ => err.into(),
                }
            })?;
            let local = LocalModel::load(&path, name, options)
                .with_context(|| format!("cannot load model `{name}`"))?;
            let local = Arc::new(local);
            (local.clone() as Arc<dyn ChatModel>, Some(local))
        }
    };
    let metered = Metered::for_profile(name, profile, inner, CallLog::in_home(store.root()), warnings());
    Ok(Loaded { model: Arc::new(metered), local: engine })
}

/// Counts tokens with the default chat model's tokenizer, for servers that report no usage.
/// Loaded on first use, and only if the model is installed (counting never pulls a model).
struct DefaultTokenizer {
    path: Option<PathBuf>,
    tokenizer: OnceLock<Option<Tokenizer>>,
}

impl DefaultTokenizer {
    fn new(store: &ModelStore) -> DefaultTokenizer {
        DefaultTokenizer { path: store.installed_path(DEFAULT_CHAT_MODEL), tokenizer: OnceLock::new() }
    }
}

impl TokenCounter for DefaultTokenizer {
    fn count(&self, text: &str) -> Option<u32> {
        let tokenizer = self.tokenizer.get_or_init(|| {
            let gguf = Gguf::open(self.path.as_ref()?).ok()?;
            Tokenizer::from_gguf(&gguf).ok()
        });
        let ids = tokenizer.as_ref()?.encode(text, false).ok()?;
        u32::try_from(ids.len()).ok()
    }
}

/// A model and how to sample from it.
#[derive(Args, Clone, Debug)]
pub struct GenArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Nucleus sampling: keep the most likely tokens up to this total probability.
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    /// Keep only the K most likely tokens (0 keeps all).
    #[arg(long)]
    pub top_k: Option<u32>,
    /// Drop tokens less likely than this fraction of the most likely one.
    #[arg(long, allow_negative_numbers = true)]
    pub min_p: Option<f32>,
    /// Penalty on recently seen tokens (1 is off).
    #[arg(long, allow_negative_numbers = true)]
    pub repeat_penalty: Option<f32>,
    /// The most tokens to generate.
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// End the answer just before this string (repeatable; `\n` is a newline).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Seed of the sampler, for repeatable output.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Drop the oldest prompt tokens when the prompt does not fit, instead of failing.
    #[arg(long)]
    pub truncate: bool,
}

impl GenArgs {
    /// The generation parameters these options ask for, checked.
    pub fn params(&self) -> anyhow::Result<GenerationParams> {
        let mut params = GenerationParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            max_tokens: self.max_tokens,
            seed: self.seed,
            ..Default::default()
        };
        // Through `set`, as the REPL's `/set stop`, so `\n` means a newline in both.
        for stop in &self.stop {
            params.set("stop", stop)?;
        }
        params.validate()?;
        Ok(params)
    }
}

/// Options of the commands that hold a conversation.
#[derive(Args, Clone, Debug)]
pub struct ConversationArgs {
    #[command(flatten)]
    pub gen: GenArgs,
    /// The system message: who the assistant is and how it answers.
    #[arg(long)]
    pub system: Option<String>,
}

impl ConversationArgs {
    /// The conversation's opening messages: the system message, if any.
    pub fn opening(&self) -> Vec<Message> {
        self.system.iter().map(Message::system).collect()
    }
}

/// What `ask` may ask beyond text: tools, a JSON answer, log-probabilities.
#[derive(Args, Clone, Debug, Default)]
pub struct AnswerShapeArgs {
    /// Offer these tools: a JSON file holding a list of {"name", "description", "parameters"}.
    #[arg(long, value_name = "FILE")]
    pub tools: Option<PathBuf>,
    /// Answer with JSON valid under the JSON schema in FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "json_object")]
    pub json_schema: Option<PathBuf>,
    /// Answer with a JSON object.
    #[arg(long)]
    pub json_object: bool,
    /// Return each token's log-probability and N alternatives (0 to 20).
    #[arg(long, value_name = "N")]
    pub logprobs: Option<u32>,
}

impl AnswerShapeArgs {
    /// `request` with the tools, format and logprobs these options ask for.
    pub fn apply(&self, mut request: ChatRequest) -> anyhow::Result<ChatRequest> {
        if let Some(path) = &self.tools {
            request.tools = read_json(path, "a list of tools")?;
        }
        if let Some(path) = &self.json_schema {
            let name =
                path.file_stem().map_or("answer".into(), |s| s.to_string_lossy().replace(['.', ' '], "_"));
            let schema = read_json(path, "a JSON schema")?;
            request.response_format = Some(ResponseFormat::JsonSchema { name, schema, strict: true });
        } else if self.json_object {
            request.response_format = Some(ResponseFormat::JsonObject);
        }
        request.logprobs = self.logprobs;
        request.validate()?;
        Ok(request)
    }
}

/// A JSON file parsed as `T`, with errors that name the file, the line and what was expected.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} does not hold {what}", path.display()))
}
