use super::*;
use crate::gguf::{GgufWriter, MetaValue};

const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER: i32 = 4;
const BYTE: i32 = 6;

fn strings_value(values: &[&str]) -> MetaValue {
    MetaValue::Array(values.iter().map(|v| MetaValue::String(v.to_string())).collect())
}

fn build(meta: Vec<(&str, MetaValue)>) -> Result<Tokenizer, TokenizerError> {
    let writer = meta.into_iter().fold(GgufWriter::new(), |w, (key, value)| w.meta(key, value));
    Tokenizer::from_gguf(&Gguf::from_bytes(writer.to_bytes()).unwrap())
}

/// A byte-level BPE vocabulary: (text, type) pairs and "left right" merges.
fn byte_level(pre: &str) -> Vec<(&'static str, MetaValue)> {
    let tokens: &[(&str, i32)] = &[
        ("<|endoftext|>", CONTROL),
        ("<|im_start|>", CONTROL),
        ("<|im_end|>", CONTROL),
        ("h", NORMAL),
        ("e", NORMAL),
        ("l", NORMAL),
        ("o", NORMAL),
        ("w", NORMAL),
        ("r", NORMAL),
        ("d", NORMAL),
        ("Ġ", NORMAL),
        ("1", NORMAL),
        ("2", NORMAL),
        ("<", NORMAL),
        ("|", NORMAL),
        (">", NORMAL),
        ("_", NORMAL),
        ("i", NORMAL),
        ("m", NORMAL),
        ("s", NORMAL),
        ("t", NORMAL),
        ("a", NORMAL),
        ("he", NORMAL),
        ("ll", NORMAL),
        ("hell", NORMAL),
        ("hello", NORMAL),
        ("Ġw", NORMAL),
        ("or", NORMAL),
        ("Ġwor", NORMAL),
        ("Ġworl", NORMAL),
        ("Ġworld", NORMAL),
        ("12", NORMAL),
        ("Ã", NORMAL),
        ("©", NORMAL),
    ];
    let merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d", "1 2"];
    vec![
        ("tokenizer.ggml.model", MetaValue::String("gpt2".into())),
        ("tokenizer.ggml.pre", MetaValue::String(pre.into())),
        ("tokenizer.ggml.tokens", strings_value(&tokens.iter().map(|t| t.0).collect::<Vec<_>>())),
        ("tokenizer.ggml.token_type", MetaValue::Array(tokens.iter().map(|t| MetaValue::I32(t.1)).collect())),
        ("tokenizer.ggml.merges", strings_value(&merges)),
        ("tokenizer.ggml.bos_token_id", MetaValue::U32(1)),
        ("tokenizer.ggml.eos_token_id", MetaValue::U32(2)),
    ]
}

/// A SentencePiece vocabulary with byte fallback; scores decide the merge order.
fn sentencepiece(
    add_space_prefix: bool,
    extra: &[(&'static str, f32, i32)],
) -> Vec<(&'static str, MetaValue)> {
    let mut tokens: Vec<(String, f32, i32)> = vec![
        ("<pad>".into(), 0.0, CONTROL),
        ("<eos>".into(), 0.0, CONTROL),
        ("<bos>".into(), 0.0, CONTROL),
        ("<unk>".into(), 0.0, 2),
        ("<start_of_turn>".into(), 0.0, CONTROL),
        ("<end_of_turn>".into(), 0.0, CONTROL),
        ("\n".into(), 0.0, USER),
    ];
    tokens.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 0.0, BYTE)));
    // Scores fall with position, so the pieces on the way to "▁hello" and "▁world" merge first.
    let normal = ["▁", "h", "e", "l", "o", "w", "r", "d", "he", "ll", "hell", "hello", "▁hello", "or", "▁w"];
    let normal = normal.iter().chain(&["▁wor", "ld", "▁world", "▁h"]);
    tokens.extend(normal.enumerate().map(|(i, t)| (t.to_string(), -(i as f32), NORMAL)));
    tokens.extend(extra.iter().map(|(t, s, k)| (t.to_string(), *s, *k)));
    let texts: Vec<&str> = tokens.iter().map(|t| t.0.as_str()).collect();
    vec![
        ("tokenizer.ggml.model", MetaValue::String("llama".into())),
        ("tokenizer.ggml.tokens", strings_value(&texts)),
        ("tokenizer.ggml.scores", MetaValue::Array(tokens.iter().map(|t| MetaValue::F32(t.1)).collect())),
        ("tokenizer.ggml.token_type", MetaValue::Array(tokens.iter().map(|t| MetaValue::I32(t.2)).collect())),
        ("tokenizer.ggml.bos_token_id", MetaValue::U32(2)),
        ("tokenizer.ggml.eos_token_id", MetaValue::U32(1)),
        ("tokenizer.ggml.add_space_prefix", MetaValue::Bool(add_space_prefix)),
    ]
}

fn ids(t: &Tokenizer, texts: &[&str]) -> Vec<u32> {
    texts
        .iter()
        .map(|text| t.token_to_id(text).unwrap_or_else(|| panic!("{text:?} not in vocabulary")))
        .collect()
}

#[test]
fn byte_level_bpe_applies_merges_by_rank() {
    let t = build(byte_level("gpt-2")).unwrap();
    assert_eq!(t.encode("hello world", false).unwrap(), ids(&t, &["hello", "Ġworld"]));
    assert_eq!(t.decode(&t.encode("hello world", false).unwrap()), "hello world");
    assert_eq!(t.encode("12", false).unwrap(), ids(&t, &["12"]));
    // "é" is the bytes C3 A9, spelled "Ã©" at byte level.
    let e = t.encode("é", false).unwrap();
    assert_eq!(e, ids(&t, &["Ã", "©"]));
    assert_eq!(t.token_bytes(e[0]), vec![0xC3]);
    assert_eq!(t.decode(&e), "é");
}

#[test]
fn smollm_pre_tokenizer_splits_digits() {
    let t = build(byte_level("smollm")).unwrap();
    assert_eq!(t.encode("12", false).unwrap(), ids(&t, &["1", "2"]));
}

#[test]
fn special_tokens_are_parsed_only_when_asked() {
    let t = build(byte_level("smollm")).unwrap();
    let parsed = t.encode("<|im_start|>hello<|im_end|>", true).unwrap();
    assert_eq!(parsed, vec![1, t.token_to_id("hello").unwrap(), 2]);
    let plain = t.encode("<|im_start|>", false).unwrap();
    assert!(!plain.contains(&1), "{plain:?}");
    // Control tokens decode to nothing; their text as plain tokens decodes to itself.
    assert_eq!(t.decode(&parsed), "hello");
    assert_eq!(t.decode(&plain), "<|im_start|>");
    assert!(t.token_bytes(1).is_empty());
}

#[test]
fn byte_level_special_ids_and_end_of_generation() {
    let t = build(byte_level("smollm")).unwrap();
    assert_eq!(t.vocab_size(), 34);
    assert_eq!((t.bos_id(), t.eos_id(), t.add_bos()), (Some(1), Some(2), false));
    assert!(t.is_end_of_generation(2));
    assert!(t.is_end_of_generation(0), "<|endoftext|> ends a reply");
    assert!(!t.is_end_of_generation(1));
    assert!(t.token_bytes(999).is_empty());
}

#[test]
fn llama3_pre_tokenizer_adds_bos_by_default() {
    let t = build(byte_level("llama3")).unwrap();
    assert!(t.add_bos());
    assert_eq!(t.encode("hello world", false).unwrap(), ids(&t, &["hello", "Ġworld"]));
}

#[test]
fn unknown_pre_tokenizer_is_an_error() {
    let err = build(byte_level("mystery")).unwrap_err().to_string();
    assert!(err.contains("`mystery`") && err.contains("smollm"), "{err}");
}

#[test]
fn sentencepiece_merges_follow_scores() {
    let t = build(sentencepiece(true, &[])).unwrap();
    let e = t.encode("hello world", false).unwrap();
    assert_eq!(e, ids(&t, &["▁hello", "▁world"]));
    assert_eq!(t.decode(&e), "hello world");

    // Two ways to merge "abc": the pair whose result scores higher wins.
    for (ab, bc, expected) in [(-1.0, -2.0, ["ab", "c"]), (-2.0, -1.0, ["a", "bc"])] {
        let extra = [
            ("a", -3.0, NORMAL),
            ("b", -3.0, NORMAL),
            ("c", -3.0, NORMAL),
            ("ab", ab, NORMAL),
            ("bc", bc, NORMAL),
        ];
        let t = build(sentencepiece(false, &extra)).unwrap();
        assert_eq!(t.encode("abc", false).unwrap(), ids(&t, &expected), "ab {ab}, bc {bc}");
    }
}

#[test]
fn sentencepiece_space_prefix_is_optional() {
    let t = build(sentencepiece(false, &[])).unwrap();
    let e = t.encode("hello world", false).unwrap();
    assert_eq!(e, ids(&t, &["hello", "▁world"]));
    assert_eq!(t.decode(&e), "hello world");
    assert_eq!(t.decode(&ids(&t, &["▁hello"])), " hello");
}

#[test]
fn sentencepiece_falls_back_to_bytes() {
    let t = build(sentencepiece(false, &[])).unwrap();
    let e = t.encode("hé", false).unwrap();
    assert_eq!(e, ids(&t, &["h", "<0xC3>", "<0xA9>"]));
    assert_eq!(t.token_bytes(e[1]), vec![0xC3]);
    assert_eq!(t.decode(&e), "hé");
}

#[test]
fn tokens_shown_alone_are_their_text_or_their_spelling() {
    let t = build(sentencepiece(false, &[])).unwrap();
    let show = |piece: &str| t.token_display(t.token_to_id(piece).unwrap());
    assert_eq!(show("▁hello"), " hello");
    assert_eq!(show("<0x41>"), "A");
    // Half a character is shown as the replacement character, not dropped.
    assert_eq!(show("<0xC3>"), "\u{FFFD}");
    assert_eq!(show("<end_of_turn>"), "<end_of_turn>");
    assert_eq!(t.token_display(100_000), "");
}

#[test]
fn sentencepiece_user_defined_and_control_tokens() {
    let t = build(sentencepiece(false, &[])).unwrap();
    let newline = t.token_to_id("\n").unwrap();
    let h = t.token_to_id("h").unwrap();
    // User-defined tokens are split out even without parsing specials.
    assert_eq!(t.encode("h\nh", false).unwrap(), vec![h, newline, h]);
    assert_eq!(t.encode("<start_of_turn>h", true).unwrap(), vec![4, h]);
    assert!(!t.encode("<start_of_turn>h", false).unwrap().contains(&4));
    assert_eq!(t.decode(&[2, 4, h, newline, 5]), "h\n");
    assert_eq!((t.bos_id(), t.eos_id(), t.add_bos()), (Some(2), Some(1), true));
    assert!(t.is_end_of_generation(1) && t.is_end_of_generation(5));
}

#[test]
fn add_bos_key_overrides_the_default() {
    let mut meta = sentencepiece(false, &[]);
    meta.push(("tokenizer.ggml.add_bos_token", MetaValue::Bool(false)));
    assert!(!build(meta).unwrap().add_bos());
}

#[test]
fn unknown_model_is_named() {
    let mut meta = byte_level("smollm");
    meta[0].1 = MetaValue::String("rwkv".into());
    let err = build(meta).unwrap_err().to_string();
    assert!(err.contains("`rwkv`"), "{err}");
}

#[test]
fn missing_vocabulary_is_named() {
    let meta = byte_level("smollm").into_iter().filter(|(key, _)| *key != "tokenizer.ggml.tokens").collect();
    let err = temper_core::error_chain(&build(meta).unwrap_err());
    assert_eq!(err, "tokenizer metadata: metadata key `tokenizer.ggml.tokens` is missing");
}

#[test]
fn bad_metadata_is_an_error_not_a_panic() {
    let mut meta = sentencepiece(false, &[]);
    meta.retain(|(key, _)| *key != "tokenizer.ggml.scores");
    assert!(temper_core::error_chain(&build(meta).unwrap_err()).contains("tokenizer.ggml.scores"));

    let mut meta = byte_level("smollm");
    meta.retain(|(key, _)| *key != "tokenizer.ggml.eos_token_id");
    meta.push(("tokenizer.ggml.eos_token_id", MetaValue::U32(10_000)));
    let err = build(meta).unwrap_err().to_string();
    assert!(err.contains("eos_token_id") && err.contains("10000"), "{err}");

    let mut meta = byte_level("smollm");
    meta.retain(|(key, _)| *key != "tokenizer.ggml.merges");
    meta.push(("tokenizer.ggml.merges", strings_value(&["h e", "nospace"])));
    let err = build(meta).unwrap_err().to_string();
    assert!(err.contains("tokenizer.ggml.merges") && err.contains("nospace"), "{err}");

    let mut meta = byte_level("smollm");
    meta.retain(|(key, _)| !key.starts_with("tokenizer.ggml.token"));
    meta.push(("tokenizer.ggml.tokens", strings_value(&["a", "a"])));
    let err = build(meta).unwrap_err().to_string();
    assert!(err.contains("twice"), "{err}");
}

#[test]
fn tokenizers_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Tokenizer>();
}
