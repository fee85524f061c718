//! The options `chat`, `ask`, `complete`, `tokenize` and `logits` share, and loading a model
//! from them.

use anyhow::Context;
use clap::Args;
use temper_core::{GenerationParams, Message};
use temper_engine::{LoadOptions, LocalModel};
use temper_models::{ConsoleProgress, ModelStore, DEFAULT_CHAT_MODEL};

/// Which model to load and how.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// A catalog name (pulled on first use) or a path to a GGUF file.
    #[arg(long, default_value = DEFAULT_CHAT_MODEL)]
    pub model: String,
    /// Context window in tokens (default: the model's trained context, at most 4096).
    #[arg(long, value_name = "TOKENS")]
    pub ctx: Option<usize>,
    /// Threads for inference (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl ModelArgs {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions { threads: self.threads, context_window: self.ctx, sequences: None }
    }

    /// Resolves `--model` through the store (pulling it on first use) and loads it.
    pub fn load(&self) -> anyhow::Result<LocalModel> {
        load_model(&ModelStore::from_env()?, &self.model, self.load_options())
    }
}

/// Resolves a catalog name or a path, pulling with progress bars if needed, and loads it.
pub fn load_model(store: &ModelStore, name: &str, options: LoadOptions) -> anyhow::Result<LocalModel> {
    let path = store.resolve(name, &ConsoleProgress::default())?;
    LocalModel::load(&path, name, options).with_context(|| format!("cannot load model `{name}`"))
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
