//! The OpenAI-compatible routes on a real server with the real default models (skipped locally
//! when a model is missing, failed under CI=true): answers, streams, errors, keys, queues,
//! cancellation and shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use temper_core::{ChatModel, ChatRequest, EmbeddingModel, GenerationParams, Message};
use temper_engine::{LoadOptions, LocalModel};
use temper_providers::{HttpModel, ProviderConfig, Vendor};
use temper_server::{ApiKeys, ServeError, Server};

const MODEL: &str = "smollm2-135m-instruct";

/// The test defaults, with the RAG store and reports in a temporary folder (kept alive by the
/// caller, though these tests never write there).
fn config() -> (tempfile::TempDir, temper_server::ServerConfig) {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path());
    (dir, config)
}

fn resolver() -> temper_models::Resolver {
    common::resolver(temper_models::Profiles::default())
}

/// A server on the default model with the test defaults changed by `adjust`, or `None` (the
/// test skips) when the model is not installed here.
async fn serve_local(
    adjust: impl FnOnce(&mut temper_server::ServerConfig),
) -> Option<(tempfile::TempDir, common::Running)> {
    temper_testkit::smollm2()?;
    let (dir, mut config) = config();
    adjust(&mut config);
    Some((dir, common::serve(config, resolver()).await))
}

fn chat(content: &str, extra: Value) -> Value {
    let mut body = json!({ "model": MODEL, "messages": [{ "role": "user", "content": content }] });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

async fn post(client: &Client, url: &str, body: &Value) -> Response {
    client.post(url).json(body).send().await.unwrap()
}

/// The `data:` payloads of a whole SSE body.
async fn sse(response: Response) -> Vec<String> {
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    text.split("\n\n").filter_map(|event| event.strip_prefix("data: ")).map(str::to_owned).collect()
}

/// The error object of an answer, checking its status.
async fn error(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    body["error"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_and_whole_answers_agree_and_carry_usage() {
    let Some((_dir, server)) = serve_local(|_| {}).await else { return };
    let client = Client::new();
    let body = chat("Name three colours.", json!({ "temperature": 0, "max_tokens": 24, "seed": 1 }));
    let whole: Value = post(&client, &server.url("/v1/chat/completions"), &body).await.json().await.unwrap();
    assert_eq!(whole["object"], "chat.completion");
    let text = whole["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.is_empty());
    let usage = &whole["usage"];
    assert_eq!(
        usage["total_tokens"],
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({ "include_usage": true });
    let events = sse(post(&client, &server.url("/v1/chat/completions"), &streamed).await).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"] && c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let joined: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(joined, text, "greedy: the stream spells the same answer");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], whole["choices"][0]["finish_reason"]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], whole["usage"]);

    // The same through raw completion, with a stop string honoured.
    let completion =
        json!({ "model": MODEL, "prompt": "1, 2, 3, 4,", "max_tokens": 16, "temperature": 0, "stop": ["7"] });
    let answer: Value =
        post(&client, &server.url("/v1/completions"), &completion).await.json().await.unwrap();
    let text = answer["choices"][0]["text"].as_str().unwrap();
    assert!(text.contains('5') && !text.contains('7'), "{text:?}");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors_that_name_the_field() {
    let Some((_dir, server)) = serve_local(|_| {}).await else { return };
    let client = Client::new();
    let url = server.url("/v1/chat/completions");

    let malformed = client.post(&url).body("{\"model\": ").send().await.unwrap();
    let err = error(malformed, StatusCode::BAD_REQUEST).await;
    assert_eq!(err["type"], "invalid_request_error");
    assert!(err["message"].as_str().unwrap().contains("not valid JSON"), "{err}");

    let err =
        error(post(&client, &url, &chat("hi", json!({ "temperature": 3.5 }))).await, StatusCode::BAD_REQUEST)
            .await;
    assert_eq!(err["param"], "temperature");
    let err =
        error(post(&client, &url, &chat("hi", json!({ "temprature": 1 }))).await, StatusCode::BAD_REQUEST)
            .await;
    assert_eq!(err["param"], "temprature");
    let err = error(post(&client, &url, &chat("hi", json!({ "n": 3 }))).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(err["param"], "n");
    let err = error(
        post(&client, &url, &chat("hi", json!({ "max_tokens": "lots" }))).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(err["param"], "max_tokens");

    let unknown = json!({ "model": "no-such-model", "messages": [{ "role": "user", "content": "hi" }] });
    let err = error(post(&client, &url, &unknown).await, StatusCode::NOT_FOUND).await;
    assert_eq!(err["code"], "model_not_found");
    assert!(err["message"].as_str().unwrap().contains(MODEL), "names what there is: {err}");

    // A prompt over the context window: 400 with both numbers, before any token is generated.
    let long = "word ".repeat(300);
    let err = error(
        post(&client, &url, &chat(&long, json!({ "context_window": 64 }))).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(err["code"], "context_length_exceeded");
    let message = err["message"].as_str().unwrap();
    let numbers: Vec<u64> =
        message.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    assert!(numbers.contains(&64) && numbers.iter().any(|&n| n > 300), "both numbers: {message}");
    assert!(!message.contains("--"), "no command-line flags in the API's errors: {message}");

    let embed = json!({ "model": MODEL, "input": "hi" });
    let err =
        error(post(&client, &server.url("/v1/embeddings"), &embed).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(err["param"], "model");

    let huge = vec![b'a'; temper_server::BODY_LIMIT + 1];
    let too_large = client.post(&url).body(huge).send().await.unwrap();
    assert_eq!(error(too_large, StatusCode::PAYLOAD_TOO_LARGE).await["type"], "invalid_request_error");

    let err = error(client.get(server.url("/v2/nothing")).send().await.unwrap(), StatusCode::NOT_FOUND).await;
    assert!(err["message"].as_str().unwrap().contains("/v1"), "{err}");
    let err = error(client.get(&url).send().await.unwrap(), StatusCode::METHOD_NOT_ALLOWED).await;
    assert!(err["message"].as_str().unwrap().contains("GET"), "{err}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_guard_everything_but_health_and_are_required_off_loopback() {
    let (_dir, mut config) = config();
    config.api_keys = ApiKeys::new(["sk-test-1".to_owned(), "sk-test-2".to_owned()]);
    let server = common::serve(config.clone(), resolver()).await;
    let client = Client::new();
    let models = server.url("/v1/models");
    let err = error(client.get(&models).send().await.unwrap(), StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("authentication_error"), Some("invalid_api_key"))
    );
    assert!(!err.to_string().contains("sk-test"), "keys never appear in errors");
    let wrong = client.get(&models).bearer_auth("sk-test-3").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = client.get(&models).bearer_auth("sk-test-2").send().await.unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    let list: Value = right.json().await.unwrap();
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&MODEL) && ids.contains(&"all-minilm-l6-v2"), "{ids:?}");
    assert_eq!(client.get(server.url("/health")).send().await.unwrap().status(), StatusCode::OK);
    let metrics = client
        .get(server.url("/metrics"))
        .bearer_auth("sk-test-1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("temper_requests_total{route=\"/v1/models\",status=\"401\"} 2"), "{metrics}");
    assert!(!metrics.contains("sk-test"));
    server.stop().await.unwrap();

    let open = temper_server::ServerConfig {
        host: "0.0.0.0".parse().unwrap(),
        api_keys: ApiKeys::default(),
        ..config
    };
    let refused = Server::bind(open, resolver()).await.err().expect("no key off loopback");
    assert!(matches!(refused, ServeError::KeyRequired(_)), "{refused}");
}

/// Reads a streamed answer until its first text chunk, and hands back the rest of the body.
async fn first_chunk(response: Response) -> impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> {
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "), "{first:?}");
    body
}

/// `temper_queue_depth` of the model, from /metrics.
async fn queue_depth(client: &Client, server: &common::Running) -> u64 {
    let metrics = client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = metrics.lines().find(|l| l.starts_with(&format!("temper_queue_depth{{model=\"{MODEL}\"}}")));
    line.map_or(0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_429_and_a_client_that_leaves_frees_its_place() {
    let Some((_dir, server)) = serve_local(|config| {
        config.pool.queue_limit = 1;
        config.pool.load.sequences = Some(1);
    })
    .await
    else {
        return;
    };
    let client = Client::new();
    let url = server.url("/v1/completions");
    let long = json!({ "model": MODEL, "prompt": "1, 2, 3, 4,", "max_tokens": 1500, "stream": true, "temperature": 0 });
    let running = first_chunk(post(&client, &url, &long).await).await;
    assert_eq!(queue_depth(&client, &server).await, 1);

    let refused = post(&client, &url, &long).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(error(refused, StatusCode::TOO_MANY_REQUESTS).await["code"], "queue_full");

    // The client goes away mid-answer: the generation stops and the place is free at once.
    drop(running);
    let mut depth = 1;
    for _ in 0..100 {
        depth = queue_depth(&client, &server).await;
        if depth == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(depth, 0, "the dropped stream gave back its place");
    let short = json!({ "model": MODEL, "prompt": "1, 2,", "max_tokens": 4 });
    assert_eq!(post(&client, &url, &short).await.status(), StatusCode::OK);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_connections_and_ends_running_answers_after_the_grace_period() {
    let Some((_dir, server)) = serve_local(|config| {
        config.grace = Duration::from_millis(500);
    })
    .await
    else {
        return;
    };
    let client = Client::new();
    let url = server.url("/v1/completions");
    let long = json!({ "model": MODEL, "prompt": "1, 2, 3, 4,", "max_tokens": 1800, "stream": true, "temperature": 0 });
    let mut running = first_chunk(post(&client, &url, &long).await).await;
    let base = server.base.clone();
    let stopping = tokio::spawn(server.stop());
    // Let the server close its listener.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = Client::new().get(format!("{base}/health")).send().await;
    assert!(fresh.is_err(), "no new connection is accepted while shutting down");

    let mut rest = Vec::new();
    while let Some(piece) = running.next().await {
        rest.extend_from_slice(&piece.unwrap());
    }
    let rest = String::from_utf8(rest).unwrap();
    let last = rest.trim_end().rsplit("\n\n").next().unwrap();
    assert!(
        last.contains("\"error\"") && last.contains("shutting down"),
        "the stream ends with an error event: {last}"
    );
    stopping.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_answers_equal_the_same_answers_one_at_a_time() {
    let Some((_dir, server)) = serve_local(|_| {}).await else { return };
    let client = Client::new();
    let url = server.url("/v1/chat/completions");
    let questions = ["What is rain?", "Name a fruit.", "Why is the sky blue?", "Say hello."];
    let body = |q: &str| chat(q, json!({ "temperature": 0, "max_tokens": 24 }));
    let text = |v: Value| v["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    let mut alone = Vec::new();
    for q in questions {
        alone.push(text(post(&client, &url, &body(q)).await.json().await.unwrap()));
    }
    let together = futures::future::join_all(questions.iter().map(|q| {
        let (client, url, body) = (client.clone(), url.clone(), body(q));
        async move { text(post(&client, &url, &body).await.json().await.unwrap()) }
    }))
    .await;
    assert_eq!(together, alone);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temper_as_an_openai_backend_of_itself_gives_the_local_answer() {
    let Some(path) = temper_testkit::smollm2() else { return };
    let (_dir, config) = config();
    let server = common::serve(config, resolver()).await;
    let mut config = ProviderConfig::new(Vendor::OpenAi, MODEL);
    config.base_url = Some(server.url("/v1"));
    let remote = HttpModel::new("through-http", config).unwrap();
    let options = LoadOptions { context_window: Some(2048), sequences: Some(1), ..Default::default() };
    let local = LocalModel::load(&path, MODEL, options).unwrap();
    let params = GenerationParams { temperature: Some(0.0), max_tokens: Some(32), ..Default::default() };
    let request =
        ChatRequest::new(vec![Message::system("Answer briefly."), Message::user("What is a cloud?")])
            .with_params(params);
    let over_http = remote.chat(request.clone()).await.unwrap();
    let direct = local.chat(request).await.unwrap();
    assert_eq!(over_http.text, direct.text);
    assert_eq!((over_http.usage, over_http.finish_reason), (direct.usage, direct.finish_reason));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_match_the_local_embedder_as_floats_and_base64() {
    let Some(dir) = temper_testkit::minilm() else { return };
    let (_dir, config) = config();
    let server = common::serve(config, resolver()).await;
    let client = Client::new();
    let url = server.url("/v1/embeddings");
    let texts = ["The cat sits on the mat.", "Paris is the capital of France."];
    let floats: Value = post(&client, &url, &json!({ "model": "all-minilm-l6-v2", "input": texts }))
        .await
        .json()
        .await
        .unwrap();
    let encoded: Value = post(
        &client,
        &url,
        &json!({ "model": "all-minilm-l6-v2", "input": texts, "encoding_format": "base64" }),
    )
    .await
    .json()
    .await
    .unwrap();
    let local = Arc::new(temper_embed::Embedder::load(&dir, "all-minilm-l6-v2", Default::default()).unwrap());
    let expected = local.embed(&texts.map(str::to_owned)).await.unwrap();
    for (i, vector) in expected.iter().enumerate() {
        let as_floats: Vec<f32> = floats["data"][i]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(&as_floats, vector);
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded["data"][i]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> =
            bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(&decoded, vector);
    }
    let tokens: usize = texts.iter().map(|t| local.tokenize(t).unwrap().len()).sum();
    assert_eq!(floats["usage"]["prompt_tokens"], tokens);
    let err = error(
        post(&client, &url, &json!({ "model": "all-minilm-l6-v2", "input": texts, "dimensions": 64 })).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(err["param"], "dimensions");
    let err = error(
        post(&client, &url, &json!({ "model": "all-minilm-l6-v2", "input": ["a", ""] })).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(err["param"], "input[1]");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_will_not_wait_gets_a_503_while_the_model_loads() {
    let Some((_dir, server)) = serve_local(|_| {}).await else { return };
    let client = Client::new();
    let url = server.url("/v1/chat/completions");
    let body = chat("Hi", json!({ "max_tokens": 4 }));
    let impatient = || client.post(&url).header("X-Temper-No-Wait", "true").json(&body).send();
    let first = impatient().await.unwrap();
    assert_eq!(first.headers()["retry-after"], "2");
    assert_eq!(error(first, StatusCode::SERVICE_UNAVAILABLE).await["code"], "model_loading");
    // The refusal started the load: the model is ready soon without anyone waiting for it.
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..300 {
        status = impatient().await.unwrap().status();
        if status != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::OK);
    server.stop().await.unwrap();
}
