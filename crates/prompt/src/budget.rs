//! The token budget: counting a conversation exactly as the model will read it (chat template
//! and all, with its own tokenizer), and fitting documents into the context window.

use serde::Serialize;
use temper_core::{Message, TokenCounter};
use temper_rag::chunk::{ChunkOptions, Chunker};
use temper_rag::load::{Position, Section};

use crate::render::{Document, Layout, Prompt};
use crate::{PromptError, Result};

/// Tokens kept free for the answer when the request sets no `max_tokens`.
pub const DEFAULT_ANSWER_TOKENS: usize = 256;

/// How a prompt's tokens compare with the context window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub prompt_tokens: usize,
    /// Kept free for the answer.
    pub answer_tokens: usize,
    pub context_window: usize,
}

impl Budget {
    /// `counter` must know the model's chat template and context window (a local model does).
    pub fn of(messages: &[Message], answer_tokens: usize, counter: &dyn TokenCounter) -> Result<Budget> {
        let prompt_tokens = counter.count_messages(messages)?;
        let context_window = counter.context_window().ok_or_else(|| {
            PromptError::invalid("token counter", "knows no context window to fit the prompt in")
        })?;
        Ok(Budget { prompt_tokens, answer_tokens, context_window })
    }

    pub fn fits(&self) -> bool {
        self.prompt_tokens + self.answer_tokens <= self.context_window
    }

    /// The error of a prompt that does not fit.
    pub fn overflow(&self) -> PromptError {
        PromptError::Overflow {
            prompt_tokens: self.prompt_tokens,
            answer_tokens: self.answer_tokens,
            context_window: self.context_window,
        }
    }
}

/// What truncation removed from one document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cut {
    pub source: String,
    pub kept_words: usize,
    pub total_words: usize,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kept_words {
            0 => write!(f, "dropped {} whole ({} words)", self.source, self.total_words),
            kept => write!(
                f,
                "kept the first {kept} of {} words of {}, dropped the last {}",
                self.total_words,
                self.source,
                self.total_words - kept
            ),
        }
    }
}

/// A prompt with its documents and layout, and the tokens left for the answer.
pub struct Fitting<'a> {
    pub prompt: &'a Prompt,
    pub layout: &'a Layout,
    pub answer_tokens: usize,
    pub counter: &'a dyn TokenCounter,
}

impl Fitting<'_> {
    pub fn budget(&self, documents: &[Document]) -> Result<Budget> {
        Budget::of(&self.prompt.messages(documents, self.layout)?, self.answer_tokens, self.counter)
    }

    /// Keeps the documents in order while they fit, cuts the first that does not at the last
    /// word that fits, and drops the rest; says what it removed.
    pub fn truncate(&self, documents: &[Document]) -> Result<(Vec<Document>, Vec<Cut>)> {
        let empty = self.budget(&[])?;
        if !empty.fits() {
            return Err(empty.overflow());
        }
        let mut kept: Vec<Document> = Vec::new();
        let mut cuts = Vec::new();
        for (i, document) in documents.iter().enumerate() {
            let words: Vec<usize> = word_ends(&document.text);
            // The most words of this document that fit after the ones kept: a binary search
            // over exact counts.
            let (mut fitting, mut too_many) = (0, words.len() + 1);
            while too_many - fitting > 1 {
                let mid = (fitting + too_many) / 2;
                let end = if mid == words.len() { document.text.len() } else { words[mid - 1] };
                let trial =
                    Document { source: document.source.clone(), text: document.text[..end].to_owned() };
                let mut with = kept.clone();
                with.push(trial);
                if self.budget(&with)?.fits() {
                    fitting = mid;
                } else {
                    too_many = mid;
                }
            }
            if fitting == words.len() {
                kept.push(document.clone());
                continue;
            }
            if fitting > 0 {
                let text = document.text[..words[fitting - 1]].to_owned();
                kept.push(Document { source: document.source.clone(), text });
            }
            cuts.push(Cut { source: document.source.clone(), kept_words: fitting, total_words: words.len() });
            cuts.extend(documents[i + 1..].iter().map(|d| Cut {
                source: d.source.clone(),
                kept_words: 0,
                total_words: word_ends(&d.text).len(),
            }));
            break;
        }
        Ok((kept, cuts))
    }

    /// The documents cut into parts that each fit in the prompt alone, for map-reduce. Each
    /// part is named after its document and numbered.
    pub fn parts(&self, documents: &[Document]) -> Result<Vec<Document>> {
        self.split(documents, usize::MAX, "part")
    }

    /// The documents in pieces of at most `max_tokens` tokens, and never more than fits next
    /// to the prompt, each named after its document as "SOURCE (LABEL i of n)", in order.
    pub fn split(&self, documents: &[Document], max_tokens: usize, label: &str) -> Result<Vec<Document>> {
        let probe = Document { source: label.into(), text: String::new() };
        let fixed = self.budget(std::slice::from_ref(&probe))?;
        let room = fixed.context_window.saturating_sub(fixed.prompt_tokens + fixed.answer_tokens + 32);
        if room < 16 {
            return Err(fixed.overflow());
        }
        let size = room.min(max_tokens);
        let options = ChunkOptions { max_tokens: size, overlap: size / 10 };
        let chunker =
            Chunker::new(options, self.counter).map_err(|e| PromptError::invalid(label, e.to_string()))?;
        let mut pieces = Vec::new();
        for document in documents {
            let section =
                Section { text: document.text.clone(), position: Position::Line(1), heading: Vec::new() };
            let chunks = chunker.chunk(&section);
            let total = chunks.len();
            pieces.extend(chunks.into_iter().enumerate().map(|(i, chunk)| Document {
                source: format!("{} ({label} {} of {total})", document.source, i + 1),
                text: chunk.text,
            }));
        }
        Ok(pieces)
    }
}

fn word_ends(text: &str) -> Vec<usize> {
    text.split_whitespace().map(|w| w.as_ptr() as usize - text.as_ptr() as usize + w.len()).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Counts one token per word and four per message, in a window of `window` tokens.
    pub struct WordCounter(pub usize);

    impl TokenCounter for WordCounter {
        fn count_messages(&self, messages: &[Message]) -> temper_core::Result<usize> {
            Ok(messages.iter().map(|m| 4 + m.content.split_whitespace().count()).sum())
        }
        fn count_text(&self, text: &str) -> temper_core::Result<usize> {
            Ok(text.split_whitespace().count())
        }
        fn context_window(&self) -> Option<usize> {
            Some(self.0)
        }
    }

    fn doc(source: &str, words: usize) -> Document {
        Document {
            source: source.into(),
            text: (0..words).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" "),
        }
    }

    #[test]
    fn truncation_keeps_what_fits_exactly_and_reports_the_rest() {
        let prompt = Prompt::task("Summarize.");
        let layout = Layout::default();
        // System rule (4 + 26 words) + user (4 + 1 task word + 6 tags/labels per document).
        let fitting =
            Fitting { prompt: &prompt, layout: &layout, answer_tokens: 10, counter: &WordCounter(100) };
        let docs = [doc("a", 20), doc("b", 40), doc("c", 5)];
        let full = fitting.budget(&docs).unwrap();
        assert!(!full.fits());
        let (kept, cuts) = fitting.truncate(&docs).unwrap();
        let after = fitting.budget(&kept).unwrap();
        assert!(after.fits(), "{after:?}");
        let mut one_more = kept.clone();
        one_more[1].text.push_str(" extra");
        assert!(!fitting.budget(&one_more).unwrap().fits(), "truncation must keep every word that fits");
        assert_eq!(kept[0], docs[0]);
        assert_eq!(cuts[0].source, "b");
        assert_eq!(cuts[1], Cut { source: "c".into(), kept_words: 0, total_words: 5 });
        assert_eq!(
            cuts[0].to_string(),
            format!(
                "kept the first {} of 40 words of b, dropped the last {}",
                cuts[0].kept_words,
                40 - cuts[0].kept_words
            )
        );
    }

    #[test]
    fn parts_each_fit_alone() {
        let prompt = Prompt::task("Summarize.");
        let layout = Layout::default();
        let fitting =
            Fitting { prompt: &prompt, layout: &layout, answer_tokens: 10, counter: &WordCounter(120) };
        let docs = [doc("long.txt", 300)];
        let parts = fitting.parts(&docs).unwrap();
        assert!(parts.len() >= 4, "{}", parts.len());
        assert_eq!(parts[0].source, format!("long.txt (part 1 of {})", parts.len()));
        for part in &parts {
            assert!(fitting.budget(std::slice::from_ref(part)).unwrap().fits());
        }
        assert!(parts.last().unwrap().text.ends_with("w299"));
    }

    #[test]
    fn a_prompt_too_long_without_documents_is_an_overflow() {
        let prompt = Prompt::task("many words ".repeat(50));
        let layout = Layout::default();
        let fitting =
            Fitting { prompt: &prompt, layout: &layout, answer_tokens: 10, counter: &WordCounter(60) };
        let err = fitting.truncate(&[doc("a", 3)]).unwrap_err().to_string();
        assert!(err.contains("the context window is 60 tokens: 54 tokens too many"), "{err}");
    }
}
