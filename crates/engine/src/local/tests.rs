//! `LocalModel`'s limits and refusals, on tiny models made in the test.

use temper_core::{ChatModel, ChatRequest, CompletionRequest, Error, GenerationParams, Message};

use super::*;
use crate::gguf::{GgufWriter, MetaValue};
use crate::model::tests::{tiny_model, TinyShape, EMBED, FFN};

/// A tiny random Llama with a 64-token SentencePiece vocabulary: control tokens, `▁`, letters
/// and digits, trained on 256 positions.
fn tiny() -> GgufWriter {
    let shape = TinyShape { arch: "llama", layers: 2, vocab: 64, window: 0 };
    let mut pieces: Vec<String> = ["<unk>", "<s>", "</s>", "▁"].map(String::from).to_vec();
    pieces.extend(('a'..='z').chain('A'..='Z').chain('0'..='7').map(String::from));
    let kind = |i: usize| MetaValue::I32([2, 3, 3].get(i).copied().unwrap_or(1));
    tiny_model(&shape, 3)
        .meta("tokenizer.ggml.model", MetaValue::String("llama".into()))
        .meta(
            "tokenizer.ggml.tokens",
            MetaValue::Array(pieces.iter().cloned().map(MetaValue::String).collect()),
        )
        .meta("tokenizer.ggml.scores", MetaValue::Array(vec![MetaValue::F32(0.0); pieces.len()]))
        .meta("tokenizer.ggml.token_type", MetaValue::Array((0..pieces.len()).map(kind).collect()))
}

fn load(writer: GgufWriter, options: LoadOptions) -> (tempfile::TempDir, Result<LocalModel>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    std::fs::write(&path, writer.to_bytes()).unwrap();
    let model = LocalModel::load(&path, "tiny", options);
    (dir, model)
}

fn greedy(max_tokens: u32) -> GenerationParams {
    GenerationParams { temperature: Some(0.0), max_tokens: Some(max_tokens), ..Default::default() }
}

fn complete(prompt: &str, params: GenerationParams) -> CompletionRequest {
    CompletionRequest { prompt: prompt.into(), params, truncate: false }
}

#[tokio::test]
async fn non_finite_logits_are_an_error_that_names_the_file_not_an_empty_answer() {
    let (_dir, sound) = load(tiny(), LoadOptions::default());
    let answer = sound.unwrap().complete(complete("abc", greedy(4))).await.unwrap();
    assert_eq!(answer.usage.completion_tokens, 4);

    let nan = vec![f32::NAN; FFN * EMBED];
    let corrupt = tiny().tensor_f32("blk.1.ffn_down.weight", &[FFN as u64, EMBED as u64], &nan);
    let (_dir, model) = load(corrupt, LoadOptions::default());
    let model = model.unwrap();
    for err in
        [model.complete(complete("abc", greedy(4))).await.unwrap_err(), model.last_logits("abc").unwrap_err()]
    {
        let message = err.to_string();
        assert!(matches!(err, Error::InvalidModel { .. }), "{message}");
        assert!(message.contains("tiny.gguf") && message.contains("not a finite number"), "{message}");
    }
}

#[tokio::test]
async fn a_context_beyond_the_trained_length_is_refused_with_both_numbers() {
    let (_dir, model) = load(tiny(), LoadOptions { context_window: Some(257), ..Default::default() });
    let err = model.err().unwrap().to_string();
    assert!(err.contains("257 tokens is more than the 256 tiny was trained on"), "{err}");
    // The engine is a library: the command line adds its flags in a hint.
    assert!(!err.contains("--"), "{err}");
    let (_dir, model) = load(tiny(), LoadOptions { context_window: Some(256), ..Default::default() });
    assert_eq!(model.unwrap().summary().context_window, 256);
}

#[test]
fn threads_beyond_the_cores_are_cut_down_with_a_warning() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (_dir, model) = load(tiny(), LoadOptions { threads: Some(cores + 1000), ..Default::default() });
    let model = model.unwrap();
    assert_eq!(model.summary().threads, cores);
    let warning = format!("{} threads asked for, but this machine has {cores} cores", cores + 1000);
    assert!(model.warnings().iter().any(|w| w.contains(&warning)), "{:?}", model.warnings());
    let (_dir, model) = load(tiny(), LoadOptions { threads: Some(1), ..Default::default() });
    assert!(model.unwrap().warnings().is_empty());
    let (_dir, model) = load(tiny(), LoadOptions { threads: Some(0), ..Default::default() });
    assert!(model.err().unwrap().to_string().contains("`threads`"));
}

#[test]
fn a_cache_larger_than_memory_is_refused_and_one_per_sequence_is_warned_about() {
    let gib = 1u64 << 30;
    let mut warnings = Vec::new();
    let err = check_cache_memory(3 * gib, 1, 10_000_000, 2 * gib, &mut warnings).unwrap_err().to_string();
    assert!(err.contains("10000000 tokens needs a 3.0 GiB KV cache, but only 2.0 GiB"), "{err}");
    assert!(!err.contains("--"), "{err}");
    check_cache_memory(gib, 8, 4096, 20 * gib, &mut warnings).unwrap();
    assert!(warnings.is_empty());
    check_cache_memory(gib, 8, 4096, 3 * gib, &mut warnings).unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("8 sequences") && warnings[0].contains("only 3 are sure to fit"),
        "{warnings:?}"
    );
}

#[test]
fn truncating_fits_any_prompt_in_any_window_of_two_tokens_or_more() {
    for window in 2..12 {
        for len in 1..30 {
            for max_tokens in [None, Some(0), Some(1), Some(5), Some(100)] {
                for keep_bos in [false, true] {
                    let original: Vec<u32> = (0..len).collect();
                    let mut prompt = original.clone();
                    let params = GenerationParams { max_tokens, ..Default::default() };
                    fit_context(&mut prompt, window, &params, true, keep_bos).unwrap();
                    let case = format!("window {window}, {len} tokens, max_tokens {max_tokens:?}");
                    assert!(!prompt.is_empty() && prompt.len() < window, "{case}: {prompt:?}");
                    assert!(
                        original.ends_with(&prompt[prompt.len() - 1..]),
                        "{case}: the last token is kept"
                    );
                    if keep_bos && prompt.len() > 1 {
                        assert_eq!(prompt[0], 0, "{case}: the BOS is kept");
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn a_window_of_one_token_is_an_error_naming_both_numbers_not_a_panic() {
    let (_dir, model) = load(tiny(), LoadOptions { context_window: Some(1), ..Default::default() });
    let model = model.unwrap();
    let request = CompletionRequest { truncate: true, ..complete("abc", greedy(4)) };
    let err = model.complete(request).await.unwrap_err().to_string();
    assert!(err.contains("1 token cannot hold") && err.contains("at least 2"), "{err}");
    let err = model.complete(complete("abc", greedy(4))).await.unwrap_err();
    assert!(matches!(err, Error::ContextOverflow { context_window: 1, .. }), "{err}");
}

#[tokio::test]
async fn an_empty_prompt_is_refused_before_generating() {
    let (_dir, model) = load(tiny(), LoadOptions::default());
    let model = model.unwrap();
    for prompt in ["", " \n\t"] {
        let err = model.complete(complete(prompt, greedy(4))).await.unwrap_err().to_string();
        assert!(err.contains("`prompt`") && err.contains("empty"), "{err}");
    }
    let chat = |messages: Vec<Message>| model.chat(ChatRequest::new(messages).with_params(greedy(4)));
    let err = chat(vec![]).await.unwrap_err().to_string();
    assert!(err.contains("`messages`") && err.contains("nothing to answer"), "{err}");
    let err = chat(vec![Message::system("Be brief."), Message::user("  ")]).await.unwrap_err().to_string();
    assert!(err.contains("`messages[1].content`") && err.contains("nothing to answer"), "{err}");
}

#[tokio::test]
async fn a_request_window_beyond_the_loaded_one_is_refused_without_naming_flags() {
    let (_dir, model) = load(tiny(), LoadOptions { context_window: Some(64), ..Default::default() });
    let params = GenerationParams { context_window: Some(128), ..greedy(4) };
    let err = model.unwrap().complete(complete("abc", params)).await.unwrap_err().to_string();
    assert!(err.contains("128 is larger than the 64 tokens this model was loaded with"), "{err}");
    assert!(!err.contains("--"), "{err}");
}

#[test]
fn a_chat_template_given_after_loading_replaces_the_missing_one() {
    let (_dir, model) = load(tiny(), LoadOptions { threads: Some(1), ..Default::default() });
    let model = model.unwrap();
    let request = ChatRequest::new(vec![Message::user("hi")]);
    let err = model.render_chat(&request).unwrap_err();
    assert!(err.to_string().contains("no chat template"), "{err}");

    let model =
        model.with_chat_template("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}").unwrap();
    assert_eq!(model.render_chat(&request).unwrap(), "<user>hi");
    let (_dir, model) = load(tiny(), LoadOptions { threads: Some(1), ..Default::default() });
    assert!(model.unwrap().with_chat_template("{% for %}").is_err());
}
