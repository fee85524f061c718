//! `temper embed`: vectors for texts, for users who only want embeddings.

use anyhow::Context;
use clap::Args;
use temper_core::EmbeddingModel;
use temper_embed::{EmbedOptions, Embedder, Precision};
use temper_models::{ConsoleProgress, ModelStore, DEFAULT_EMBEDDING_MODEL};
use temper_providers::HttpEmbedder;

use crate::options::{profiles, target, Target};
use crate::output::{block_on, print_json};

#[derive(Args, Clone, Debug)]
pub struct EmbedArgs {
    /// A catalog name (pulled on first use), a model directory, or a profile of temper.toml
    /// (an OpenAI-compatible or Ollama embeddings endpoint).
    #[arg(long, default_value = DEFAULT_EMBEDDING_MODEL)]
    pub model: String,
    /// Threads for the encoder (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Quantize the encoder's linear layers to int8: about twice as fast, vectors close to
    /// (not equal to) the f32 ones.
    #[arg(long)]
    pub int8: bool,
    /// The texts to embed.
    #[arg(required = true)]
    pub texts: Vec<String>,
}

/// Resolves an embedding model through the store (pulling it on first use) and loads it.
pub fn load_embedder(
    store: &ModelStore,
    name: &str,
    threads: Option<usize>,
    precision: Precision,
) -> anyhow::Result<Embedder> {
    let dir = store.resolve(name, &ConsoleProgress::default())?;
    let options = EmbedOptions { threads, precision, ..Default::default() };
    Embedder::load(&dir, name, options).with_context(|| format!("cannot load embedding model `{name}`"))
}

/// Prints one JSON array of arrays: a vector per text, in order.
pub fn run(args: &EmbedArgs) -> anyhow::Result<()> {
    let precision = if args.int8 { Precision::Int8 } else { Precision::F32 };
    let store = ModelStore::from_env()?;
    let profiles = profiles(&store)?;
    let vectors = match target(&profiles, &args.model, None)?.1 {
        Target::Remote(config) => block_on(async {
            let embedder = HttpEmbedder::connect(&args.model, *config, None)
                .await
                .with_context(|| format!("profile `{}`", args.model))?;
            anyhow::Ok(embedder.embed(&args.texts).await?)
        })?,
        Target::Local(name) => {
            let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
            load_embedder(&store, name, args.threads, precision)?.embed_batch(&texts)?
        }
    };
    print_json(&vectors)
}
