//! Constrained decoding: each step, the tokens a sequence's grammar does not allow next are
//! masked out before sampling, so a constrained answer is valid by construction.
//!
//! The grammar engine is `llguidance` (JSON Schema, Lark grammars, regexes). It sees the
//! model's vocabulary as the raw bytes each token spells, special tokens marked with a 0xFF
//! prefix, and every end-of-generation token counts as the end of the grammar's text.

use std::sync::{Arc, OnceLock};

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{self, SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};
use temper_core::{Error, ResponseFormat, Result};

use crate::tokenizer::Tokenizer;

/// How JSON is written under a schema: one space after `:` and `,`, no other whitespace. A
/// small model left free to add whitespace can emit newlines until `max_tokens` runs out.
fn json_style() -> Value {
    json!({ "whitespace_flexible": false, "key_separator": ": ", "item_separator": ", " })
}

/// A JSON schema with Temper's JSON style, for embedding in a grammar.
pub(crate) fn styled_schema(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Some(object) = schema.as_object_mut() {
        object.entry("x-guidance").or_insert_with(json_style);
    }
    schema
}

/// The grammar a response format asks for; `None` for free text.
pub(crate) fn format_grammar(format: &ResponseFormat) -> Option<TopLevelGrammar> {
    Some(match format {
        ResponseFormat::Text => return None,
        ResponseFormat::JsonObject => {
            TopLevelGrammar::from_json_schema(styled_schema(&json!({"type": "object"})))
        }
        ResponseFormat::JsonSchema { schema, .. } => TopLevelGrammar::from_json_schema(styled_schema(schema)),
        ResponseFormat::Grammar { grammar } => TopLevelGrammar::from_lark(grammar.clone()),
        ResponseFormat::Regex { pattern } => TopLevelGrammar::from_regex(pattern),
    })
}

/// The model's vocabulary as `llguidance` reads it, built on first use (a model that is never
/// asked for a constrained answer never pays for it).
pub(crate) struct Grammars {
    tokenizer: Arc<Tokenizer>,
    factory: OnceLock<std::result::Result<ParserFactory, String>>,
}

impl Grammars {
    pub fn new(tokenizer: Arc<Tokenizer>) -> Grammars {
        Grammars { tokenizer, factory: OnceLock::new() }
    }

    fn factory(&self) -> Result<&ParserFactory> {
        self.factory
            .get_or_init(|| {
                let env: TokEnv = Arc::new(Vocabulary::new(self.tokenizer.clone())?);
                let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
                // Errors reach the caller as values; nothing is printed.
                factory.quiet();
                Ok(factory)
            })
            .as_ref()
            .map_err(|e| Error::Backend(format!("cannot read the vocabulary for constrained decoding: {e}")))
    }

    /// Compiles `grammar` for one sequence. An invalid schema or grammar, or one that uses what
    /// the grammar engine does not support, is an error naming what is wrong.
    pub fn compile(&self, grammar: TopLevelGrammar, what: &str) -> Result<Guide> {
        let parser = self
            .factory()?
            .create_parser(grammar)
            .map_err(|e| Error::invalid_param(what, format!("cannot be enforced: {}", one_line(e))))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(error) = matcher.get_error() {
            return Err(Error::invalid_param(what, format!("cannot be enforced: {error}")));
        }
        Ok(Guide { matcher: Box::new(matcher) })
    }
}

/// An `llguidance` error on one line (a regex error draws its place over several), without the
/// listing of the grammar Temper built around a tool's schema, which the caller never wrote.
fn one_line(error: impl std::fmt::Display) -> String {
    let text = error.to_string();
    let is_listing =
        |line: &str| line.split_once(" | ").is_some_and(|(n, _)| n.trim().parse::<u32>().is_ok());
    let lines: Vec<&str> =
        text.lines().map(str::trim).take_while(|l| !is_listing(l)).filter(|l| !l.is_empty()).collect();
    let line = lines.join(" ");
    match line.split_once("failed to compile JSON schema: ") {
        Some((_, reason)) => reason.to_string(),
        None => line,
    }
}

/// The JSON pointer, within `schema`, of what an `llguidance` refusal is about, when the
/// refusal names it by a keyword (`Unimplemented keys: ["not"]`) or a type (`Invalid type: strin`).
pub(crate) fn locate(schema: &Value, reason: &str) -> Option<String> {
    let keys: Vec<String> = reason
        .split_once("Unimplemented keys: ")
        .and_then(|(_, rest)| rest.find(']').map(|end| &rest[..=end]))
        .and_then(|list| serde_json::from_str(list).ok())
        .unwrap_or_default();
    let bad_type =
        reason.split_once("Invalid type: ").map(|(_, t)| t.split_whitespace().next().unwrap_or_default());
    find(schema, "", &|object| {
        keys.iter().any(|k| object.contains_key(k))
            || bad_type.is_some_and(|t| {
                object
                    .get("type")
                    .is_some_and(|v| v == t || v.as_array().is_some_and(|a| a.iter().any(|v| v == t)))
            })
    })
}

/// The pointer of the first object in `value` (depth first) that `wanted` accepts.
fn find(value: &Value, at: &str, wanted: &dyn Fn(&serde_json::Map<String, Value>) -> bool) -> Option<String> {
    match value {
        Value::Object(object) if wanted(object) => Some(if at.is_empty() { "/".into() } else { at.into() }),
        Value::Object(object) => {
            object.iter().find_map(|(k, v)| find(v, &format!("{at}/{}", escape(k)), wanted))
        }
        Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, v)| find(v, &format!("{at}/{i}"), wanted))
        }
        _ => None,
    }
}

/// A key as a JSON pointer writes it.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// One sequence's grammar state (boxed: a matcher is large, and requests move through channels).
pub(crate) struct Guide {
    matcher: Box<Matcher>,
}

impl Guide {
    /// Masks out of `logits` every token the grammar does not allow next. Fails when the
    /// grammar engine fails or allows nothing (the grammar cannot go on).
    pub fn restrict(&mut self, logits: &mut [f32]) -> Result<()> {
        let mask = self.matcher.compute_mask().map_err(|e| guide_error(&e.to_string()))?;
        if mask.is_zero() {
            return Err(guide_error("the grammar allows no token here"));
        }
        mask_logits(&mask, logits);
        Ok(())
    }

    /// Advances the grammar past `token`, which [`Guide::restrict`] allowed.
    pub fn accept(&mut self, token: u32) -> Result<()> {
        self.matcher.consume_token(token).map_err(|e| guide_error(&e.to_string()))
    }

    /// Whether the grammar allows nothing more: the answer is complete.
    pub fn is_complete(&self) -> bool {
        self.matcher.is_stopped()
    }
}

fn guide_error(reason: &str) -> Error {
    Error::Backend(format!("constrained decoding: {reason}"))
}

/// Sets every logit whose token `mask` does not allow to -inf.
fn mask_logits(mask: &SimpleVob, logits: &mut [f32]) {
    for (word, chunk) in mask.as_slice().iter().zip(logits.chunks_mut(32)) {
        if *word == u32::MAX {
            continue;
        }
        for (bit, logit) in chunk.iter_mut().enumerate() {
            if word & (1 << bit) == 0 {
                *logit = f32::NEG_INFINITY;
            }
        }
    }
}

/// The vocabulary in `toktrie`'s terms: each token's bytes, special tokens marked.
struct Vocabulary {
    trie: TokTrie,
    tokenizer: Arc<Tokenizer>,
}

impl Vocabulary {
    fn new(tokenizer: Arc<Tokenizer>) -> std::result::Result<Vocabulary, String> {
        let n = tokenizer.vocab_size() as u32;
        let words: Vec<Vec<u8>> = (0..n)
            .map(|id| match tokenizer.is_special(id) {
                true => {
                    let mut word = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    word.extend_from_slice(tokenizer.token_text(id).unwrap_or_default().as_bytes());
                    word
                }
                false => tokenizer.token_bytes(id),
            })
            .collect();
        let ends = tokenizer.end_of_generation();
        let Some(&first_end) = ends.first() else {
            return Err(
                "the model has no end-of-generation token, so a constrained answer could not end".into()
            );
        };
        let mut info = TokRxInfo::new(n, first_end);
        info.tok_bos = tokenizer.bos_id();
        let trie = TokTrie::from(&info, &words).with_eos_tokens(ends);
        Ok(Vocabulary { trie, tokenizer })
    }
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// Text is tokenized as the model would; bytes that are not UTF-8 greedily by the trie.
    fn tokenize_bytes(&self, bytes: &[u8]) -> Vec<toktrie::TokenId> {
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                self.tokenizer.encode(text, false).unwrap_or_else(|_| self.trie.greedy_tokenize(bytes))
            }
            Err(_) => self.trie.greedy_tokenize(bytes),
        }
    }
}

#[cfg(test)]
mod tests;
