//! One way to count tokens, whoever counts: the local engine's model (its tokenizer and chat
//! template), a bare tokenizer, an embedder's tokenizer, an estimate, a closure in a test.

use crate::{Error, Message, Result};

/// Counts tokens as a model reads them.
pub trait TokenCounter: Send + Sync {
    /// Tokens of a text on its own as the model reads it: a generator's tokenizer adds no
    /// special token, an encoder counts the markers it puts around every input.
    fn count_text(&self, text: &str) -> Result<usize>;

    /// Tokens of a conversation as the model reads it, chat template and special tokens and
    /// all, ready for the answer. Only a counter that knows the model's chat template can say.
    fn count_messages(&self, messages: &[Message]) -> Result<usize> {
        let _ = messages;
        Err(Error::Unsupported(
            "this token counter knows no chat template to count a conversation with".into(),
        ))
    }

    /// Tokens the model can hold, prompt and answer together; `None` from a counter that knows
    /// a tokenizer but not a model.
    fn context_window(&self) -> Option<usize> {
        None
    }
}

/// A function of the text is a counter that cannot fail (an estimate, a test's word count).
impl<F: Fn(&str) -> usize + Send + Sync> TokenCounter for F {
    fn count_text(&self, text: &str) -> Result<usize> {
        Ok(self(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_counts_text_and_refuses_conversations() {
        let words = |text: &str| text.split_whitespace().count();
        let counter: &dyn TokenCounter = &words;
        assert_eq!(counter.count_text("three small words").unwrap(), 3);
        let err = counter.count_messages(&[Message::user("hi")]).unwrap_err();
        assert!(err.to_string().contains("no chat template"), "{err}");
        assert_eq!(counter.context_window(), None);
    }
}
