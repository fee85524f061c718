//! `tokenize` and `logits`: how users and tests look inside the engine (they mirror llama.cpp's
//! tokenize tool and its logits dump).

use clap::Args;

use crate::oneshot::text_argument;
use crate::options::ModelArgs;
use crate::output;

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Parse special tokens such as <|im_start|> instead of treating them as text.
    #[arg(long)]
    special: bool,
    /// The text to tokenize; `-` reads it from stdin.
    text: String,
}

pub fn tokenize(args: &TokenizeArgs) -> anyhow::Result<()> {
    let text = text_argument(&args.text, "text")?;
    let ids = args.model.load_local("tokenize")?.tokenize(&text, args.special)?;
    output::print_json(&ids)
}

#[derive(Args, Debug)]
pub struct LogitsArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// How many of the largest logits to print.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// The prompt; `-` reads it from stdin.
    prompt: String,
}

pub fn logits(args: &LogitsArgs) -> anyhow::Result<()> {
    let prompt = text_argument(&args.prompt, "prompt")?;
    let logits = args.model.load_local("logits")?.last_logits(&prompt)?;
    output::print_json(&top_logits(&logits, args.top))
}

/// The `n` largest logits as `(id, logit)`, largest first.
fn top_logits(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut ranked: Vec<(u32, f32)> = (0..).zip(logits.iter().copied()).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(n);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_logits_are_largest_first() {
        assert_eq!(top_logits(&[0.5, 2.0, -1.0, 1.0], 3), vec![(1, 2.0), (3, 1.0), (0, 0.5)]);
        assert_eq!(top_logits(&[0.5], 5), vec![(0, 0.5)]);
    }
}
