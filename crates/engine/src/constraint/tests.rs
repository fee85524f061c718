use serde_json::json;

use super::*;
use crate::gguf::{Gguf, GgufWriter, MetaValue};

/// A byte-level vocabulary of single characters (`Ġ` is the space), one two-character token and
/// the end of turn: enough to spell small JSON.
const PIECES: &[&str] = &[
    "<|im_end|>",
    "{",
    "}",
    "\"",
    ":",
    "Ġ",
    ",",
    "a",
    "b",
    "0",
    "1",
    "2",
    "7",
    "x",
    "{\"",
    "t",
    "r",
    "u",
    "e",
];

fn tokenizer() -> Arc<Tokenizer> {
    let strings =
        |values: &[&str]| MetaValue::Array(values.iter().map(|v| MetaValue::String(v.to_string())).collect());
    let kinds = PIECES.iter().map(|p| MetaValue::I32(if p.starts_with("<|") { 3 } else { 1 })).collect();
    let writer = GgufWriter::new()
        .meta("tokenizer.ggml.model", MetaValue::String("gpt2".into()))
        .meta("tokenizer.ggml.pre", MetaValue::String("default".into()))
        .meta("tokenizer.ggml.tokens", strings(PIECES))
        .meta("tokenizer.ggml.token_type", MetaValue::Array(kinds))
        .meta("tokenizer.ggml.merges", strings(&["{ \""]))
        .meta("tokenizer.ggml.eos_token_id", MetaValue::U32(0));
    Arc::new(Tokenizer::from_gguf(&Gguf::from_bytes(writer.to_bytes()).unwrap()).unwrap())
}

/// Decodes under `guide` as a model that always prefers the highest token id would: the most
/// adversarial greedy choice there is, since the ids carry no meaning. Returns the text and
/// whether it ended on the end-of-turn token.
fn decode(tokenizer: &Tokenizer, guide: &mut Guide, steps: usize) -> (String, bool) {
    let mut ids = Vec::new();
    for _ in 0..steps {
        if guide.is_complete() {
            return (tokenizer.decode(&ids), false);
        }
        let mut logits: Vec<f32> = (0..PIECES.len()).map(|i| i as f32).collect();
        guide.restrict(&mut logits).unwrap();
        let token = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap() as u32;
        if tokenizer.is_end_of_generation(token) {
            return (tokenizer.decode(&ids), true);
        }
        guide.accept(token).unwrap();
        ids.push(token);
    }
    panic!("no end after {steps} steps: {}", tokenizer.decode(&ids));
}

#[test]
fn the_vocabulary_marks_special_tokens_and_spells_the_others_as_bytes() {
    let vocabulary = Vocabulary::new(tokenizer()).unwrap();
    let trie = vocabulary.tok_trie();
    assert!(trie.is_special_token(0));
    assert_eq!(trie.token(5), b" ");
    assert_eq!(trie.token(14), b"{\"");
    assert_eq!(trie.eos_tokens(), &[0]);
}

#[test]
fn a_schema_holds_even_a_model_that_prefers_every_wrong_token() {
    let tokenizer = tokenizer();
    let grammars = Grammars::new(tokenizer.clone());
    let schema = json!({
        "type": "object",
        "properties": {"a": {"type": "integer", "minimum": 10, "maximum": 99}, "b": {"type": "boolean"}},
        "required": ["a", "b"],
        "additionalProperties": false
    });
    let format = ResponseFormat::JsonSchema { name: "s".into(), schema: schema.clone(), strict: true };
    let mut guide = grammars.compile(format_grammar(&format).unwrap(), "response_format").unwrap();
    let (text, _) = decode(&tokenizer, &mut guide, 40);
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert!(value["a"].as_i64().is_some_and(|a| (10..=99).contains(&a)), "{text}");
    assert_eq!(value["b"], true, "{text}");
    // Temper's JSON style: a space after `:` and `,`, nothing else.
    assert!(text.starts_with("{\"a\": ") && text.contains(", \"b\": true"), "{text}");
}

#[test]
fn the_end_of_turn_is_allowed_only_where_the_grammar_may_end() {
    let tokenizer = tokenizer();
    let grammars = Grammars::new(tokenizer.clone());
    // "x" then any number of "x": the end is allowed after the first, and never complete.
    let mut guide = grammars.compile(TopLevelGrammar::from_regex("x+"), "response_format").unwrap();
    let mut logits = vec![0.0; PIECES.len()];
    guide.restrict(&mut logits).unwrap();
    assert_eq!(logits[0], f32::NEG_INFINITY, "the end before any text");
    assert_eq!(logits[13], 0.0);
    guide.accept(13).unwrap();
    let mut logits = vec![0.0; PIECES.len()];
    guide.restrict(&mut logits).unwrap();
    assert_eq!(logits[0], 0.0, "the end after one x");
    assert!(!guide.is_complete());
}

#[test]
fn what_cannot_be_enforced_is_refused_with_the_reason() {
    let grammars = Grammars::new(tokenizer());
    let refuse = |grammar: TopLevelGrammar| match grammars.compile(grammar, "response_format") {
        Err(Error::InvalidParam { name, reason }) => format!("{name}: {reason}"),
        Ok(_) => panic!("compiled"),
        Err(other) => panic!("{other}"),
    };
    let bad_type = refuse(TopLevelGrammar::from_json_schema(json!({"type": "text"})));
    assert!(
        bad_type.starts_with("response_format: cannot be enforced") && bad_type.contains("text"),
        "{bad_type}"
    );
    assert!(refuse(TopLevelGrammar::from_lark("start: nowhere".into())).contains("nowhere"));
}

#[test]
fn masking_leaves_allowed_logits_as_they_were() {
    let mut mask = SimpleVob::alloc(70);
    for id in [0, 31, 32, 69] {
        mask.allow_token(id);
    }
    let mut logits: Vec<f32> = (0..70).map(|i| i as f32).collect();
    mask_logits(&mask, &mut logits);
    for (i, logit) in logits.iter().enumerate() {
        let allowed = [0, 31, 32, 69].contains(&i);
        assert_eq!(*logit, if allowed { i as f32 } else { f32::NEG_INFINITY }, "token {i}");
    }
}
