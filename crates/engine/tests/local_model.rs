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
            StreamEvent::Restart { reason } => panic!("unexpected restart: {reason}"),
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
    assert!(err.to_string().contains("--ctx"), "{err}");
    let json = question("hi", params(0.0, 8)).with_response_format(temper_core::ResponseFormat::JsonObject);
    let err = model.chat(json.with_logprobs(1)).await.unwrap_err();
    assert!(err.to_string().contains("does not support response_format, logprobs"), "{err}");
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
