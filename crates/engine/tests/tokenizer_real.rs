//! The tokenizers of the real default models against llama.cpp's token ids.

use std::path::Path;
use std::time::{Duration, Instant};

use temper_engine::gguf::Gguf;
use temper_engine::tokenizer::Tokenizer;

/// One line of a llama.cpp reference file: `tokenize` cases are encoded without special-token
/// parsing; `logits` cases are prompts, encoded with it (and with BOS when the model adds one).
struct Case {
    kind: String,
    text: String,
    ids: Vec<u32>,
}

fn cases(path: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            Case {
                kind: v["kind"].as_str().unwrap().to_string(),
                text: v["text"].as_str().unwrap().to_string(),
                ids: v["ids"].as_array().unwrap().iter().map(|id| id.as_u64().unwrap() as u32).collect(),
            }
        })
        .collect()
}

fn load(path: &Path) -> (Tokenizer, Duration) {
    let gguf = Gguf::open(path).unwrap();
    let start = Instant::now();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    (tokenizer, start.elapsed())
}

/// Compares every case with llama.cpp; returns how many tokenize cases matched.
fn check_reference(tokenizer: &Tokenizer, cases: &[Case]) -> usize {
    let mut mismatches = Vec::new();
    let mut tokenize = 0;
    for case in cases {
        let (expected, got) = match case.kind.as_str() {
            "tokenize" => {
                tokenize += 1;
                (case.ids.clone(), tokenizer.encode(&case.text, false).unwrap())
            }
            "logits" => {
                let mut ids: Vec<u32> =
                    tokenizer.add_bos().then(|| tokenizer.bos_id().unwrap()).into_iter().collect();
                ids.extend(tokenizer.encode(&case.text, true).unwrap());
                (case.ids.clone(), ids)
            }
            _ => continue,
        };
        if expected != got {
            mismatches.push(format!("{:?}\n  llama.cpp {expected:?}\n  temper    {got:?}", case.text));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} cases differ from llama.cpp:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    tokenize
}

fn check_round_trips(tokenizer: &Tokenizer, cases: &[Case]) {
    for case in cases {
        let ids = tokenizer.encode(&case.text, false).unwrap();
        assert_eq!(tokenizer.decode(&ids), case.text, "ids {ids:?}");
        let streamed: Vec<u8> = ids.iter().flat_map(|&id| tokenizer.token_bytes(id)).collect();
        assert_eq!(String::from_utf8(streamed).unwrap(), case.text);
    }
}

#[test]
fn smollm2_matches_llama_cpp() {
    let Some(path) = temper_testkit::smollm2() else { return };
    let (tokenizer, elapsed) = load(&path);
    eprintln!("smollm2 tokenizer built in {elapsed:?}");
    let cases = cases(&temper_testkit::smollm2_llamacpp_reference());
    let matched = check_reference(&tokenizer, &cases);
    eprintln!("smollm2: {matched} tokenize cases match llama.cpp");
    assert!(matched >= 14);
    check_round_trips(&tokenizer, &cases);

    assert_eq!(tokenizer.vocab_size(), 49152);
    assert_eq!((tokenizer.bos_id(), tokenizer.eos_id(), tokenizer.add_bos()), (Some(1), Some(2), false));
    let im_start = tokenizer.encode("<|im_start|>", true).unwrap();
    assert_eq!(im_start, vec![1]);
    assert_eq!(tokenizer.token_to_id("<|im_end|>"), Some(2));
    assert!(tokenizer.is_end_of_generation(2), "<|im_end|>");
    assert!(tokenizer.is_end_of_generation(0), "<|endoftext|>");
    assert!(!tokenizer.is_end_of_generation(1));
    assert_eq!(tokenizer.decode(&[1, 4093, 198]), "user\n", "control tokens are not printed");
}

#[test]
fn gemma3_tokenizer() {
    let Some(path) = temper_testkit::gemma3() else { return };
    let (tokenizer, elapsed) = load(&path);
    eprintln!("gemma3 tokenizer (262k pieces) built in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "building took {elapsed:?}");

    assert_eq!(tokenizer.vocab_size(), 262_144);
    assert_eq!((tokenizer.bos_id(), tokenizer.eos_id(), tokenizer.add_bos()), (Some(2), Some(1), true));
    assert_eq!(tokenizer.encode("<start_of_turn>", true).unwrap(), vec![105]);
    assert_ne!(tokenizer.encode("<start_of_turn>", false).unwrap(), vec![105]);
    assert!(tokenizer.is_end_of_generation(1), "<eos>");
    assert!(tokenizer.is_end_of_generation(106), "<end_of_turn>");

    // No space prefix: a leading word has no `▁`; later words do.
    assert_eq!(tokenizer.encode("Hello", false).unwrap(), vec![9259]);
    assert_eq!(tokenizer.encode(" world", false).unwrap(), vec![1902]);
    // Newlines are user-defined tokens, split out before SentencePiece.
    assert_eq!(tokenizer.encode("\n", false).unwrap(), vec![107]);
    assert_eq!(tokenizer.encode("\n\n", false).unwrap(), vec![108]);
    // A character outside the vocabulary falls back to its UTF-8 bytes (`<0x00>` is id 238).
    assert_eq!(tokenizer.encode("\u{0}", false).unwrap(), vec![238]);
    assert_eq!(tokenizer.decode(&[2, 105, 9259, 106]), "Hello");

    // The same texts as SmolLM2's reference round-trip.
    let shared = cases(&temper_testkit::smollm2_llamacpp_reference());
    check_round_trips(&tokenizer, &shared);

    // llama.cpp's ids for Gemma.
    let cases = cases(&temper_testkit::gemma3_llamacpp_reference());
    let matched = check_reference(&tokenizer, &cases);
    eprintln!("gemma3: {matched} tokenize cases match llama.cpp");
    check_round_trips(&tokenizer, &cases);
}
