#![doc = include_str!("../README.md")]

mod abstain;
mod check;
mod facts;
mod sentences;
mod verify;
mod words;

use serde::{Deserialize, Serialize};

pub use abstain::{decline, is_abstention, DECLINE_PREFIX};
pub use check::{check, Grounding, Method, Passage, SentenceCheck};
pub use facts::{facts, Fact, FactIndex, FactKind};
pub use sentences::{sentences, Sentence};
pub use verify::Verifier;
pub use words::content_words;

pub type Result<T> = std::result::Result<T, temper_core::Error>;

/// What happens to an answer's unsupported sentences.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// They are removed; an answer left answering nothing declines instead.
    #[default]
    Strict,
    /// They are kept, marked.
    Annotate,
    /// The answer is shown as the model gave it (callers make no check).
    Off,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Mode, String> {
        match text {
            "strict" => Ok(Mode::Strict),
            "annotate" => Ok(Mode::Annotate),
            "off" => Ok(Mode::Off),
            other => Err(format!("unknown grounding `{other}`: strict, annotate or off")),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Strict => "strict",
            Mode::Annotate => "annotate",
            Mode::Off => "off",
        })
    }
}

/// How annotate mode marks a sentence the passages do not support.
pub const UNSUPPORTED_MARK: &str = "[unsupported]";

/// The answer to show for `grounding` in `mode`. Strict keeps the supported sentences, each
/// citing the passage that supports it, when they answer the question, and declines otherwise
/// (see [`decline`]); annotate keeps every sentence and marks the unsupported ones.
pub fn render(question: &str, grounding: &Grounding, passages: &[Passage], mode: Mode) -> String {
    // A supported sentence cites the passage that supports it; another keeps its own citations.
    let sentence = |s: &SentenceCheck| match (s.source, &s.kept) {
        (Some(source), Some(kept)) if mode == Mode::Strict => abstain::cited(kept, &[source]),
        (Some(source), Some(kept)) => {
            let rest = s.text[kept.len() - 1..].trim_start_matches([',', ' ']);
            let head = abstain::cited(kept, &[source]);
            format!("{}, {rest} {UNSUPPORTED_MARK}", head.trim_end_matches('.'))
        }
        (Some(source), None) => abstain::cited(&s.text, &[source]),
        (None, _) => abstain::cited(&s.text, &s.citations),
    };
    match mode {
        Mode::Off | Mode::Annotate => {
            let shown: Vec<String> = grounding
                .sentences
                .iter()
                .map(|s| match (s.supported, s.method, mode) {
                    (false, method, Mode::Annotate) if method != Method::Abstention => {
                        format!("{} {UNSUPPORTED_MARK}", sentence(s))
                    }
                    _ => sentence(s),
                })
                .collect();
            shown.join(" ")
        }
        Mode::Strict if grounding.answers => {
            let kept = grounding.sentences.iter().filter(|s| s.supported || s.method == Method::Abstention);
            let kept: Vec<String> = kept.map(sentence).collect();
            kept.join(" ")
        }
        Mode::Strict => decline(question, passages),
    }
}
