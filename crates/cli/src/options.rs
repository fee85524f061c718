//! The options `chat`, `ask`, `complete`, `tokenize` and `logits` share, and loading a model
//! from them: a profile of `temper.toml`, a catalog name or a GGUF path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use temper_core::{ChatRequest, GenerationParams, Message, ResponseFormat, ToolChoice};
use temper_engine::{LoadOptions, LocalModel};
pub use temper_models::Loaded;
use temper_models::{ConsoleProgress, Resolver, DEFAULT_CHAT_MODEL};
use temper_providers::WarningSink;

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
        load_model(&resolver()?, self.name(), self.load_options())
    }

    /// Loads `--model`, which must run on the local engine (for `tokenize` and `logits`).
    pub fn load_local(&self, command: &str) -> anyhow::Result<Arc<LocalModel>> {
        let what = format!("`{command}` looks inside the local engine");
        Ok(resolver()?.local(self.name(), self.load_options(), &ConsoleProgress::default(), &what)?)
    }
}

/// Names resolved as every command resolves them: the store of `$TEMPER_HOME`, the profiles of
/// `temper.toml` here (else in the store), warnings on stderr.
pub fn resolver() -> anyhow::Result<Resolver> {
    Ok(Resolver::from_env(warnings())?)
}

/// Loads `name` through `resolver`, pulling with progress bars if needed.
pub fn load_model(resolver: &Resolver, name: &str, options: LoadOptions) -> anyhow::Result<Loaded> {
    Ok(resolver.chat(name, options, &ConsoleProgress::default())?)
}

/// Warnings of the HTTP backends (a dropped parameter, a retry), on stderr.
fn warnings() -> WarningSink {
    Arc::new(|message| notice(&format!("warning: {message}")))
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
    #[arg(long, visible_alias = "tool", value_name = "FILE")]
    pub tools: Option<PathBuf>,
    /// Whether the model must call a tool: auto, none, required, or a tool's name.
    #[arg(long, value_name = "CHOICE", requires = "tools")]
    pub tool_choice: Option<String>,
    /// Let one answer call several tools (a local model makes one call otherwise).
    #[arg(long, requires = "tools")]
    pub parallel_tool_calls: bool,
    /// Answer with JSON valid under the JSON schema in FILE; the answer printed is the JSON.
    #[arg(long, value_name = "FILE", group = "format")]
    pub json_schema: Option<PathBuf>,
    /// Answer with a JSON object; the answer printed is the JSON.
    #[arg(long, group = "format")]
    pub json_object: bool,
    /// Answer with text matching the Lark grammar in FILE (local models).
    #[arg(long, value_name = "FILE", group = "format")]
    pub grammar: Option<PathBuf>,
    /// Answer with text matching this regular expression (local models).
    #[arg(long, value_name = "REGEX", group = "format")]
    pub regex: Option<String>,
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
        } else if let Some(path) = &self.grammar {
            let grammar =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            request.response_format = Some(ResponseFormat::Grammar { grammar });
        } else if let Some(pattern) = &self.regex {
            request.response_format = Some(ResponseFormat::Regex { pattern: pattern.clone() });
        }
        request.tool_choice = match self.tool_choice.as_deref() {
            None | Some("auto") => ToolChoice::Auto,
            Some("none") => ToolChoice::None,
            Some("required") => ToolChoice::Required,
            Some(name) => ToolChoice::Function(name.to_string()),
        };
        request.parallel_tool_calls = self.parallel_tool_calls.then_some(true);
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
