//! Log-probabilities of generated tokens, for requests that ask for them (OpenAI's `logprobs`).
//!
//! They are the model's own: the log-softmax of the logits of the forward pass, before the
//! sampler's penalties, temperature and filters, which is what OpenAI and llama.cpp's server
//! report. So greedy decoding's token is always the likeliest, and a token drawn at a high
//! temperature is scored by how likely the model found it, not by the flattened distribution.

use temper_core::{TokenLogprob, TopLogprob};

use crate::sampler::{exp_nonpositive, gather, lane_sum, max_of, sort_descending, Candidate};
use crate::tokenizer::Tokenizer;

/// The log-probabilities of one sequence's tokens as they are generated.
pub(crate) struct LogprobRecorder {
    /// Alternatives to report per token.
    top: usize,
    candidates: Vec<Candidate>,
    tokens: Vec<TokenLogprob>,
    /// Where each token's bytes start in the generated text, to leave out the tokens that fall
    /// after a stop string.
    starts: Vec<usize>,
    bytes: usize,
}

impl LogprobRecorder {
    pub fn new(top: u32) -> LogprobRecorder {
        LogprobRecorder {
            top: top as usize,
            candidates: Vec::new(),
            tokens: Vec::new(),
            starts: Vec::new(),
            bytes: 0,
        }
    }

    /// Records token `id`, generated from `logits` (the row as the model produced it), which
    /// adds `len` bytes to the text.
    pub fn record(&mut self, logits: &[f32], id: u32, len: usize, tokenizer: &Tokenizer) {
        let log_total = log_sum_exp(logits);
        if self.top > 0 {
            gather(logits, f32::MIN, Some(self.top), &mut self.candidates);
            sort_descending(&mut self.candidates);
        }
        let top = self.candidates[..self.top.min(self.candidates.len())]
            .iter()
            .map(|c| TopLogprob { token: tokenizer.token_display(c.id), logprob: c.value - log_total })
            .collect();
        let logprob = logits.get(id as usize).map_or(f32::NEG_INFINITY, |&logit| logit - log_total);
        self.tokens.push(TokenLogprob { token: tokenizer.token_display(id), logprob, top });
        self.starts.push(self.bytes);
        self.bytes += len;
    }

    /// Every token's entry, or, when a stop string cut the text to `text_len` bytes, those of
    /// the tokens that begin inside it.
    pub fn finish(mut self, text_len: Option<usize>) -> Vec<TokenLogprob> {
        if let Some(len) = text_len {
            let kept = self.starts.partition_point(|&start| start < len);
            self.tokens.truncate(kept);
        }
        self.tokens
    }
}

/// ln Σ e^x over `logits`: what a logit less it is its log-probability.
fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = max_of(logits);
    if max == f32::NEG_INFINITY {
        return max;
    }
    // The largest term is e^0 = 1, so the sum is at least 1 and every log-probability ≤ 0.
    max + lane_sum(logits, |&x| exp_nonpositive(x - max)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_normalises_the_logits() {
        let logits = [2.0f32, -1.0, 0.5, 3.0, -40.0, 1.0, 0.0, 2.5, -3.0];
        let exact = logits.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
        assert!((log_sum_exp(&logits) as f64 - exact).abs() < 1e-5);
        let probabilities: f64 = logits.iter().map(|&x| ((x - log_sum_exp(&logits)) as f64).exp()).sum();
        assert!((probabilities - 1.0).abs() < 1e-5, "{probabilities}");
        // Masked tokens are impossible, not an error; with every token masked nothing is likely.
        assert_eq!(log_sum_exp(&[f32::NEG_INFINITY, 0.0]), 0.0);
        assert_eq!(log_sum_exp(&[f32::NEG_INFINITY; 3]), f32::NEG_INFINITY);
    }
}
