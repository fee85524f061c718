//! `temper embed`: vectors for texts, for users who only want embeddings.

use anyhow::Context;
use clap::Args;
use temper_embed::{EmbedOptions, Embedder};
use temper_models::{ConsoleProgress, ModelStore, DEFAULT_EMBEDDING_MODEL};

use crate::output::print_json;

#[derive(Args, Clone, Debug)]
pub struct EmbedArgs {
    /// A catalog name (pulled on first use) or a model directory.
    #[arg(long, default_value = DEFAULT_EMBEDDING_MODEL)]
    pub model: String,
    /// Threads for the encoder (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The texts to embed.
    #[arg(required = true)]
    pub texts: Vec<String>,
}

/// Prints one JSON array of arrays: a vector per text, in order.
pub fn run(args: &EmbedArgs) -> anyhow::Result<()> {
    let dir = ModelStore::from_env()?.resolve(&args.model, &ConsoleProgress::default())?;
    let options = EmbedOptions { threads: args.threads, ..Default::default() };
    let embedder = Embedder::load(&dir, &args.model, options)
        .with_context(|| format!("cannot load embedding model `{}`", args.model))?;
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    print_json(&embedder.embed_batch(&texts)?)
}
