//! `LocalModel` on the real default model: sampling, stop strings, limits and errors, seen
//! through the `ChatModel` interface that every caller uses.

use std::sync::Arc;

use futures::StreamExt;
use temper_core::{
    ChatModel, ChatRequest, ChatResponse, CompletionRequest, Error, FinishReason, GenerationParams, Message,
    StreamEvent,
};
use temper_engine::{LoadOptions, LocalModel};

fn smollm2(context_window: Option<usize>) -> Option<LocalModel> {
    let path = temper_testkit::smollm2()?;
    Some(
        LocalModel::load(
            &path,
            "smollm2-135m-instruct",
            LoadOptions { threads: Some(2), context_window, sequences: None },
        )
        .unwrap(),
    )
}

fn params(temperature: f32, max_tokens: u32) -> GenerationParams {
    GenerationParams { temperature: Some(temperature), max_tokens: Some(max_tokens), ..Default::default() }
}

fn question(text: &str, params: GenerationParams) -> ChatRequest {
    ChatRequest::new(vec![Message::user(text)]).with_params(params)
}

/// Streams a completion, returning the deltas and the final response.
async fn stream(model: &LocalModel, request: CompletionRequest) -> (Vec<String>, ChatResponse) {
    let mut events = model.complete_stream(request);
    let mut deltas = Vec::new();
    while let Some(event) = events.next().await {
        match event.unwrap() {
            StreamEvent::Delta(text) => deltas.push(text),
            StreamEvent::Done(response) => return (deltas, response),
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("the stream ended without Done");
}

#[tokio::test]
async fn greedy_answers_are_repeatable_and_correct() {
    let Some(model) = smollm2(None) else { return };
    let ask = || model.chat(question("What is the capital of France? Answer in one word.", params(0.0, 24)));
    let (first, second) = (ask().await.unwrap(), ask().await.unwrap());
    assert_eq!(first.text, second.text);
    assert!(first.text.contains("Paris"), "{:?}", first.text);
    assert!(first.usage.completion_tokens <= 24);
    assert!(first.usage.prompt_tokens > 20);
    assert!(first.timings.ttft_ms > 0.0 && first.timings.decode_tokens_per_second > 0.0);
}

#[tokio::test]
async fn a_seed_makes_sampling_repeatable() {
    let Some(model) = smollm2(None) else { return };
    let sample = |seed| {
        let p = GenerationParams {
            seed: Some(seed),
            temperature: Some(1.0),
            max_tokens: Some(24),
            ..Default::default()
        };
        model.chat(question("Write a line about the sea.", p))
    };
    let (a, b, c) = (sample(7).await.unwrap(), sample(7).await.unwrap(), sample(8).await.unwrap());
    assert_eq!(a.text, b.text);
    assert_ne!(a.text, c.text, "two seeds gave the same 24 sampled tokens");
}

#[tokio::test]
async fn stop_strings_end_the_text_exactly_before_them_while_streaming() {
    let Some(model) = smollm2(None) else { return };
    let prompt = "<|im_start|>user\nList five fruits, one per line.<|im_end|>\n<|im_start|>assistant\n";
    let request = |stop: Vec<String>| CompletionRequest {
        prompt: prompt.into(),
        params: GenerationParams { stop, ..params(0.0, 40) },
        truncate: false,
    };
    let (_, full) = stream(&model, request(vec![])).await;
    // A stop string across token boundaries: a few characters either side of the middle.
    let chars: Vec<(usize, char)> = full.text.char_indices().collect();
    assert!(chars.len() > 20, "{:?}", full.text);
    let (from, to) = (chars[chars.len() / 2 - 2].0, chars[chars.len() / 2 + 3].0);
    let stop = full.text[from..to].to_string();
    let expected = &full.text[..full.text.find(&stop).unwrap()];

    let (deltas, cut) = stream(&model, request(vec!["never appears".into(), stop.clone()])).await;
    assert_eq!(cut.text, expected, "stop string {stop:?}");
    assert_eq!(deltas.concat(), cut.text);
    assert_eq!(cut.finish_reason, FinishReason::Stop);
}

#[tokio::test]
async fn max_tokens_is_a_length_finish() {
    let Some(model) = smollm2(None) else { return };
    let request =
        CompletionRequest { prompt: "Once upon a time".into(), params: params(0.0, 5), truncate: false };
    let response = model.complete(request).await.unwrap();
    assert_eq!(response.usage.completion_tokens, 5);
    assert_eq!(response.finish_reason, FinishReason::Length);
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_is_an_error_unless_truncation_is_asked() {
    let Some(model) = smollm2(Some(64)) else { return };
    let long = "word ".repeat(100);
    let err = model.chat(question(&long, params(0.0, 4))).await.unwrap_err();
    assert!(matches!(err, Error::ContextOverflow { context_window: 64, .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("64 tokens") && message.contains("context window"), "{message}");
    let prompt_tokens =
        model.tokenize(&model.render_chat(&question(&long, params(0.0, 4))).unwrap(), true).unwrap().len();
    assert!(message.contains(&format!("{prompt_tokens} tokens")), "{message}");

    let truncated = ChatRequest { truncate: true, ..question(&long, params(0.0, 4)) };
    let response = model.chat(truncated).await.unwrap();
    assert!(response.usage.prompt_tokens < 64);
}

#[tokio::test]
async fn bad_parameters_are_refused_before_generating() {
    let Some(model) = smollm2(None) else { return };
    let p = GenerationParams { top_p: Some(1.5), ..Default::default() };
    let err = model.chat(question("hi", p)).await.unwrap_err();
    assert!(err.to_string().contains("top_p"), "{err}");
    let p = GenerationParams { context_window: Some(100_000), ..Default::default() };
    let err = model.chat(question("hi", p)).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("100000") && text.contains("4096") && !text.contains("--"), "{err}");
    let bad_schema = temper_core::ResponseFormat::JsonSchema {
        name: "s".into(),
        schema: serde_json::json!({"type": "object", "required": 3}),
        strict: true,
    };
    let err = model.chat(question("hi", params(0.0, 8)).with_response_format(bad_schema)).await.unwrap_err();
    assert!(
        err.to_string().contains("`response_format`: cannot be enforced: Expected array for 'required'"),
        "{err}"
    );
    let err = model.chat(question("hi", params(0.0, 8)).with_logprobs(21)).await.unwrap_err();
    assert!(err.to_string().contains("`logprobs`: at most 20"), "{err}");
}

/// The probes of issue 22 on the default model: a context too small for anything, contexts
/// beyond the trained length, an empty prompt, far too many threads.
#[tokio::test]
async fn absurd_options_are_errors_or_warnings_never_panics_or_silence() {
    let Some(model) = smollm2(Some(1)) else { return };
    let truncated = ChatRequest { truncate: true, ..question("hi", params(0.0, 4)) };
    let err = model.chat(truncated).await.unwrap_err().to_string();
    assert!(err.contains("1 token cannot hold") && err.contains("at least 2"), "{err}");
    let path = temper_testkit::smollm2().unwrap();
    for ctx in [20_000, 10_000_000] {
        let options = LoadOptions { context_window: Some(ctx), ..LoadOptions::default() };
        let err = LocalModel::load(&path, "smollm2", options).err().unwrap().to_string();
        assert!(err.contains(&format!("{ctx} tokens is more than the 8192 smollm2 was trained on")), "{err}");
    }
    let Some(model) = smollm2(None) else { return };
    let err = model.chat(question("", params(0.0, 4))).await.unwrap_err().to_string();
    assert!(err.contains("messages[0].content") && err.contains("nothing to answer"), "{err}");
    let options = LoadOptions { threads: Some(1000), ..LoadOptions::default() };
    let model = LocalModel::load(&path, "smollm2", options).unwrap();
    assert!(model.summary().threads < 1000);
    assert!(model.warnings()[0].starts_with("1000 threads asked for"), "{:?}", model.warnings());
}

/// Every token's log-probability checked against the logits themselves, for greedy decoding,
/// sampling, a stop string, and requests with and without them decoding together.
#[tokio::test]
async fn logprobs_are_the_models_own_distribution() {
    let Some(model) = smollm2(None) else { return };
    let model = Arc::new(model);
    // log-softmax of the logits after the rendered conversation, computed here in f64.
    let log_softmax = |request: &ChatRequest| {
        let logits = model.last_logits(&model.render_chat(request).unwrap()).unwrap();
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let log_total = max + logits.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
        logits.iter().map(|&x| x as f64 - log_total).collect::<Vec<f64>>()
    };
    let colours = question("Name three colours.", params(0.0, 16));
    let response = model.chat(colours.clone().with_logprobs(5)).await.unwrap();
    let tokens = response.logprobs.clone().unwrap();
    assert_eq!(tokens.len(), response.usage.completion_tokens as usize);
    assert_eq!(tokens.iter().map(|t| t.token.as_str()).collect::<String>(), response.text);
    for t in &tokens {
        assert_eq!(t.top.len(), 5);
        assert_eq!((&t.top[0].token, t.top[0].logprob), (&t.token, t.logprob), "greedy takes the likeliest");
        assert!(t.top.windows(2).all(|w| w[0].logprob >= w[1].logprob && w[1].logprob <= 0.0), "{t:?}");
        let mass: f32 = t.top.iter().map(|alt| alt.logprob.exp()).sum();
        assert!(mass <= 1.0 + 1e-5, "{t:?}");
    }
    let expected = log_softmax(&colours);
    let best = (0..expected.len()).max_by(|&a, &b| expected[a].total_cmp(&expected[b])).unwrap();
    assert_eq!(model.tokenizer().token_display(best as u32), tokens[0].token);
    assert!(
        (tokens[0].logprob as f64 - expected[best]).abs() < 1e-3,
        "{:?} vs {}",
        tokens[0],
        expected[best]
    );

    // A request with logprobs decoding beside one without: each gets what it gets alone.
    let (with, without) = futures::join!(model.chat(colours.clone().with_logprobs(5)), model.chat(colours));
    let (with, without) = (with.unwrap(), without.unwrap());
    assert_eq!((with.text.as_str(), with.logprobs.as_ref()), (response.text.as_str(), Some(&tokens)));
    assert_eq!((without.text, without.logprobs), (response.text.clone(), None));

    // A token drawn at a high temperature is scored by the model, not by the flattened
    // distribution it was drawn from.
    let sea = question("Write a line about the sea.", GenerationParams { seed: Some(3), ..params(1.5, 16) });
    let response = model.chat(sea.clone().with_logprobs(0)).await.unwrap();
    let tokens = response.logprobs.unwrap();
    assert_eq!(tokens.iter().map(|t| t.token.as_str()).collect::<String>(), response.text);
    assert!(tokens.iter().all(|t| t.top.is_empty() && t.logprob <= 0.0), "{tokens:?}");
    let expected = log_softmax(&sea);
    let spelled_alike =
        (0..expected.len() as u32).filter(|&id| model.tokenizer().token_display(id) == tokens[0].token);
    let closest = spelled_alike
        .map(|id| (tokens[0].logprob as f64 - expected[id as usize]).abs())
        .fold(f64::MAX, f64::min);
    assert!(closest < 1e-3, "{:?} is {closest} from the model's log-probability", tokens[0]);

    // A stop string drops the tokens that spell it and those after.
    let sea = question("Write a line about the sea.", params(0.0, 16));
    let original = model.chat(sea.clone()).await.unwrap();
    let stop = original.text.split_whitespace().nth(2).unwrap().to_string();
    let at = original.text.find(&stop).unwrap();
    let stopped = ChatRequest { params: GenerationParams { stop: vec![stop], ..params(0.0, 16) }, ..sea };
    let cut = model.chat(stopped.with_logprobs(1)).await.unwrap();
    assert_eq!(cut.text, original.text[..at]);
    let pieces: Vec<&str> = cut.logprobs.as_ref().unwrap().iter().map(|t| t.token.as_str()).collect();
    let last_start = pieces[..pieces.len() - 1].concat().len();
    assert!(
        pieces.concat().starts_with(&cut.text) && last_start < cut.text.len(),
        "{pieces:?} {:?}",
        cut.text
    );
}

#[tokio::test]
async fn a_dropped_stream_cancels_and_the_model_serves_the_next_request() {
    let Some(model) = smollm2(None) else { return };
    let model = Arc::new(model);
    let mut events = model.complete_stream(CompletionRequest {
        prompt: "Count: one, two,".into(),
        params: params(0.0, 2000),
        truncate: false,
    });
    assert!(matches!(events.next().await, Some(Ok(StreamEvent::Delta(_)))));
    drop(events);
    let started = std::time::Instant::now();
    let answer = model.chat(question("Say hello.", params(0.0, 8))).await.unwrap();
    assert!(answer.usage.completion_tokens > 0);
    // Had the first request run on, 2000 tokens would take far longer than this.
    assert!(started.elapsed().as_secs() < 20);
}

/// Requests that overlap are decoded together (five of them: one more than the slots, so one
/// waits for a slot), and each still gets exactly the answer it gets alone.
#[tokio::test]
async fn concurrent_requests_get_the_answers_they_get_alone() {
    let Some(model) = smollm2(None) else { return };
    let model: Arc<dyn ChatModel> = Arc::new(model);
    let ask = |i: usize| {
        let model = model.clone();
        let topics = ["the sea", "a cat", "bread", "winter", "a train"];
        async move { model.chat(question(&format!("Write one line about {}.", topics[i]), params(0.0, 16))).await }
    };
    let mut alone = Vec::new();
    for i in 0..5 {
        alone.push(ask(i).await.unwrap().text);
    }
    let together = futures::future::join_all((0..5).map(ask)).await;
    for (i, (a, t)) in alone.iter().zip(together).enumerate() {
        assert!(!a.is_empty());
        assert_eq!(&t.unwrap().text, a, "request {i}");
    }
}

#[tokio::test]
async fn gemma3_chats_in_its_turn_format_and_continues_text() {
    let Some(path) = temper_testkit::gemma3() else { return };
    let model = LocalModel::load(
        &path,
        "gemma3-270m",
        LoadOptions { threads: Some(2), context_window: Some(1024), sequences: None },
    )
    .unwrap();
    let rendered = model.render_chat(&question("Hello", GenerationParams::default())).unwrap();
    assert_eq!(rendered, "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n");
    let request = CompletionRequest {
        prompt: "The capital of France is".into(),
        params: params(0.0, 12),
        truncate: false,
    };
    let text = model.complete(request).await.unwrap().text;
    assert!(text.starts_with(" the capital of the country of France"), "{text:?}");
}

#[test]
fn corrupt_and_missing_files_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.gguf");
    let err = LocalModel::load(&missing, "absent", LoadOptions::default()).err().unwrap().to_string();
    assert!(err.contains("absent.gguf"), "{err}");

    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"this is not a model").unwrap();
    let err = LocalModel::load(&junk, "junk", LoadOptions::default()).err().unwrap().to_string();
    assert!(err.contains("junk.gguf") && err.contains("not a GGUF file"), "{err}");

    let Some(real) = temper_testkit::smollm2() else { return };
    let bytes = std::fs::read(&real).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = LocalModel::load(&cut, "cut", LoadOptions::default()).err().unwrap().to_string();
    assert!(err.contains("cut.gguf") && err.contains("truncated"), "{err}");
}
