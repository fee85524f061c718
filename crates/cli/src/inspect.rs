//! `tokenize` and `logits`: how users and tests look inside the engine (they mirror llama.cpp's
//! tokenize tool and its logits dump).

use crate::oneshot::text_argument;
use crate::options::ModelArgs;
use crate::output;

pub fn tokenize(args: &ModelArgs, special: bool, text: &str) -> anyhow::Result<()> {
    let text = text_argument(text, "text")?;
    let ids = args.load_local("tokenize")?.tokenize(&text, special)?;
    output::print_json(&ids)
}

pub fn logits(args: &ModelArgs, top: usize, prompt: &str) -> anyhow::Result<()> {
    let prompt = text_argument(prompt, "prompt")?;
    let logits = args.load_local("logits")?.last_logits(&prompt)?;
    output::print_json(&top_logits(&logits, top))
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
