//! `temper embed`: vectors for texts, for users who only want embeddings.

use clap::Args;
use temper_core::EmbeddingModel;
use temper_embed::{EmbedOptions, Precision};
use temper_models::{ConsoleProgress, Silent, Target, DEFAULT_EMBEDDING_MODEL};

use crate::options::resolver;
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

/// Prints one JSON array of arrays: a vector per text, in order.
pub fn run(args: &EmbedArgs) -> anyhow::Result<()> {
    let precision = if args.int8 { Precision::Int8 } else { Precision::F32 };
    let resolver = resolver()?;
    let vectors = match resolver.target(&args.model, None)? {
        (_, Target::Remote(_)) => block_on(async {
            let embedder = resolver.embedder(&args.model, EmbedOptions::default(), &Silent).await?;
            anyhow::Ok(embedder.embed(&args.texts).await?)
        })?,
        (profile, Target::Local(name)) => {
            let options = EmbedOptions { threads: args.threads, precision, ..Default::default() };
            let embedder =
                resolver.local_embedder(name, profile.is_some(), options, &ConsoleProgress::default())?;
            let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
            embedder.embed_batch(&texts)?
        }
    };
    print_json(&vectors)
}
