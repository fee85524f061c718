//! Tool calls, response formats, log-probabilities and embeddings, against loopback servers
//! speaking each vendor's wire format.

mod common;

use common::{config, events, model, no_key};
use serde_json::{json, Value};
use temper_core::{
    ChatRequest, ChatResponse, EmbeddingModel, FinishReason, Message, ResponseFormat, StreamEvent, Tool,
    ToolCall, ToolChoice,
};
use temper_providers::{HttpEmbedder, Vendor};
use temper_testserver::{sse, Reply, Server};

fn weather() -> Tool {
    Tool::new(
        "weather",
        "Today's weather in a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    )
}

/// A conversation that already went through one call and its result.
fn after_a_call() -> ChatRequest {
    let call =
        ToolCall { id: "call_7".into(), name: "weather".into(), arguments: r#"{"city":"Oslo"}"#.into() };
    ChatRequest::new(vec![
        Message::system("Use the tools."),
        Message::user("Weather in Oslo and Bergen?"),
        Message::assistant_tool_calls("", vec![call]),
        Message::tool_result("call_7", "4 °C, rain"),
    ])
    .with_tools(vec![weather()], ToolChoice::Required)
}

/// The final response of a stream (tool calls may come with no text at all).
fn done(events: &[StreamEvent]) -> ChatResponse {
    match events.last() {
        Some(StreamEvent::Done(response)) => response.clone(),
        other => panic!("the stream did not end with Done: {other:?}"),
    }
}

fn body(server: &Server) -> Value {
    let requests = server.requests();
    serde_json::from_str(&requests.last().expect("a request").body).unwrap()
}

fn openai_chunk(delta: Value, finish: Option<&str>) -> String {
    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    .to_string()
}

#[tokio::test]
async fn openai_tool_calls_arrive_in_pieces_and_results_go_back_by_id() {
    let pieces = [
        openai_chunk(
            json!({"role": "assistant", "content": null,
            "tool_calls": [{"index": 0, "id": "call_8", "type": "function", "function": {"name": "weather", "arguments": ""}}]}),
            None,
        ),
        openai_chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": "}}]}), None),
        openai_chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_9", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Tromsø\"}"}}]}),
            None,
        ),
        openai_chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Bergen\"}"}}]}), None),
        openai_chunk(json!({}), Some("tool_calls")),
    ];
    let frames: Vec<(Option<&str>, &str)> =
        pieces.iter().map(|p| (None, p.as_str())).chain([(None, "[DONE]")]).collect();
    let server = Server::start(vec![Reply::stream("text/event-stream", sse(frames))]);
    let (config, _) = config(Vendor::OpenAi, server.url("/v1"));
    let response = done(&events(&model(config), after_a_call()).await.unwrap());

    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(response.text, "");
    let calls: Vec<(&str, &str, Value)> = response
        .tool_calls
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str(), c.parsed_arguments().unwrap()))
        .collect();
    assert_eq!(
        calls,
        [("call_8", "weather", json!({"city": "Bergen"})), ("call_9", "weather", json!({"city": "Tromsø"}))]
    );

    let sent = body(&server);
    assert_eq!(
        sent["tools"][0],
        json!({"type": "function", "function": {"name": "weather",
        "description": "Today's weather in a city", "parameters": weather().parameters}})
    );
    assert_eq!(sent["tool_choice"], "required");
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[2]["tool_calls"][0]["id"], "call_7");
    assert_eq!(messages[2]["tool_calls"][0]["function"]["arguments"], r#"{"city":"Oslo"}"#);
    assert_eq!(messages[2]["content"], Value::Null);
    assert_eq!(messages[3], json!({"role": "tool", "tool_call_id": "call_7", "content": "4 °C, rain"}));
}

#[tokio::test]
async fn openai_response_format_and_logprobs() {
    let with_logprobs = |token: &str, logprob: f64| {
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0,
            "delta": {"content": token}, "finish_reason": null,
            "logprobs": {"content": [{"token": token, "logprob": logprob, "bytes": [],
                "top_logprobs": [{"token": token, "logprob": logprob, "bytes": []}, {"token": "x", "logprob": -9.0, "bytes": []}]}]}}]})
        .to_string()
    };
    let (a, b, end) = (
        with_logprobs("{\"ok\"", -0.5),
        with_logprobs(":true}", -0.25),
        openai_chunk(json!({}), Some("stop")),
    );
    let frames = [(None, a.as_str()), (None, b.as_str()), (None, end.as_str()), (None, "[DONE]")];
    let server = Server::start(vec![Reply::stream("text/event-stream", sse(frames))]);
    let (config, _) = config(Vendor::OpenAi, server.url("/v1"));
    let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}}});
    let request = ChatRequest::new(vec![Message::user("ok?")])
        .with_response_format(ResponseFormat::JsonSchema {
            name: "verdict".into(),
            schema: schema.clone(),
            strict: true,
        })
        .with_logprobs(2);
    let response = done(&events(&model(config), request).await.unwrap());
    assert_eq!(response.text, "{\"ok\":true}");
    let logprobs = response.logprobs.expect("logprobs");
    assert_eq!(
        logprobs.iter().map(|t| (t.token.as_str(), t.logprob)).collect::<Vec<_>>(),
        [("{\"ok\"", -0.5), (":true}", -0.25)]
    );
    assert_eq!(logprobs[1].top[1].token, "x");

    let sent = body(&server);
    assert_eq!(
        sent["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema, "strict": true}})
    );
    assert_eq!((sent["logprobs"].clone(), sent["top_logprobs"].clone()), (json!(true), json!(2)));
}

#[tokio::test]
async fn asked_for_logprobs_that_never_come_is_said() {
    let (text, end) = (openai_chunk(json!({"content": "Hi"}), None), openai_chunk(json!({}), Some("stop")));
    let frames = [(None, text.as_str()), (None, end.as_str()), (None, "[DONE]")];
    let server = Server::start(vec![Reply::stream("text/event-stream", sse(frames))]);
    let (config, warnings) = config(Vendor::OpenAi, server.url("/v1"));
    let response = done(
        &events(&model(config), ChatRequest::new(vec![Message::user("hi")]).with_logprobs(0)).await.unwrap(),
    );
    assert_eq!(response.logprobs, None);
    assert!(warnings.lock().unwrap().iter().any(|w| w.contains("returned no logprobs")), "{warnings:?}");
}

#[tokio::test]
async fn a_request_that_is_wrong_for_every_vendor_is_not_sent() {
    // The reply is never asked for: a refused request is not sent.
    let server = Server::start(vec![Reply::json(500, "{}")]);
    let (config, _) = config(Vendor::OpenAi, server.url("/v1"));
    let request = ChatRequest::new(vec![Message::user("hi")])
        .with_tools(vec![weather()], ToolChoice::Function("news".into()));
    let err = events(&model(config.clone()), request).await.unwrap_err();
    assert!(err.contains("tool_choice") && err.contains("`news`"), "{err}");
    let unanswered = ChatRequest::new(vec![Message::new(temper_core::Role::Tool, "4 °C")]);
    let err = events(&model(config), unanswered).await.unwrap_err();
    assert!(err.contains("must name the call it answers"), "{err}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn anthropic_tool_use_blocks() {
    let events_sse = [
        (
            Some("message_start"),
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","usage":{"input_tokens":30,"output_tokens":1}}}"#,
        ),
        (
            Some("content_block_start"),
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        (
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}"#,
        ),
        (Some("content_block_stop"), r#"{"type":"content_block_stop","index":0}"#),
        (
            Some("content_block_start"),
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_2","name":"weather","input":{}}}"#,
        ),
        (
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
        ),
        (
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Ber"}}"#,
        ),
        (
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"gen\"}"}}"#,
        ),
        (Some("content_block_stop"), r#"{"type":"content_block_stop","index":1}"#),
        (
            Some("message_delta"),
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":12}}"#,
        ),
        (Some("message_stop"), r#"{"type":"message_stop"}"#),
    ];
    let server = Server::start(vec![Reply::stream("text/event-stream", sse(events_sse))]);
    let (config, _) = config(Vendor::Anthropic, server.url("/v1"));
    let mut request = after_a_call();
    request.messages.push(Message::tool_result("call_8", "9 °C, sun"));
    let response = done(&events(&model(config), request).await.unwrap());
    assert_eq!(response.text, "Checking.");
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        response.tool_calls,
        [ToolCall {
            id: "toolu_2".into(),
            name: "weather".into(),
            arguments: r#"{"city": "Bergen"}"#.into()
        }]
    );

    let sent = body(&server);
    assert_eq!(sent["tools"][0]["input_schema"], weather().parameters);
    assert_eq!(sent["tool_choice"], json!({"type": "any"}));
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "the two results share one user turn: {messages:?}");
    assert_eq!(
        messages[1]["content"][0],
        json!({"type": "tool_use", "id": "call_7", "name": "weather", "input": {"city": "Oslo"}})
    );
    assert_eq!(messages[2]["role"], "user");
    assert_eq!(
        messages[2]["content"][1],
        json!({"type": "tool_result", "tool_use_id": "call_8", "content": "9 °C, sun"})
    );
}

#[tokio::test]
async fn anthropic_gives_a_json_answer_as_a_forced_tools_input_and_refuses_what_it_cannot() {
    let tool_use = |json: &str| {
        let delta = json!({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "input_json_delta", "partial_json": json}})
        .to_string();
        Reply::stream(
            "text/event-stream",
            sse([
                (
                    Some("message_start"),
                    r#"{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}"#,
                ),
                (
                    Some("content_block_start"),
                    r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"answer","input":{}}}"#,
                ),
                (Some("content_block_delta"), delta.as_str()),
                (
                    Some("message_delta"),
                    r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
                ),
                (Some("message_stop"), r#"{"type":"message_stop"}"#),
            ]),
        )
    };
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let server = Server::start(vec![tool_use(r#"{"city": "Oslo"}"#)]);
    let (config, _) = config(Vendor::Anthropic, server.url("/v1"));
    let format = ResponseFormat::JsonSchema { name: "place".into(), schema: schema.clone(), strict: true };
    let request = ChatRequest::new(vec![Message::user("Where?")]).with_response_format(format);
    let response = done(&events(&model(config.clone()), request).await.unwrap()).clone();
    assert_eq!(response.text, r#"{"city": "Oslo"}"#, "the tool's input is the answer's text");
    assert!(response.tool_calls.is_empty());
    assert_eq!(response.finish_reason, FinishReason::Stop);
    let sent = body(&server);
    assert_eq!(
        sent["tools"],
        json!([{"name": "answer", "description": "Give the answer.", "input_schema": schema}])
    );
    assert_eq!(sent["tool_choice"], json!({"type": "tool", "name": "answer"}));

    // What a forced tool cannot carry is refused, and not sent: a grammar, or a format beside
    // the request's own tools.
    let server = Server::start(vec![Reply::json(500, "{}")]);
    let (config, _) = common::config(Vendor::Anthropic, server.url("/v1"));
    let grammar = ChatRequest::new(vec![Message::user("hi")])
        .with_response_format(ResponseFormat::Grammar { grammar: "start: \"a\"".into() });
    let err = events(&model(config.clone()), grammar).await.unwrap_err();
    assert!(err.contains("cannot honour `response_format`"), "{err}");
    let beside_tools = after_a_call().with_response_format(ResponseFormat::JsonObject);
    let err = events(&model(config.clone()), beside_tools).await.unwrap_err();
    assert!(err.contains("not beside the request's own tools"), "{err}");
    let err = events(&model(config), ChatRequest::new(vec![Message::user("hi")]).with_logprobs(1))
        .await
        .unwrap_err();
    assert!(err.contains("`logprobs`"), "{err}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn ollama_tool_calls_formats_and_logprobs() {
    let lines = [
        json!({"model": "m", "message": {"role": "assistant", "content": "",
            "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Bergen"}}}]}, "done": false,
            "logprobs": [{"token": "<tool>", "logprob": -0.1, "top_logprobs": []}]}),
        json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop",
            "prompt_eval_count": 40, "eval_count": 9}),
    ];
    let server =
        Server::start(vec![Reply::stream("application/x-ndjson", lines.iter().map(|l| format!("{l}\n")))]);
    let (mut config, _) = config(Vendor::Ollama, server.url(""));
    config.api_key = None;
    let mut request = after_a_call().with_logprobs(0);
    request.tool_choice = ToolChoice::Auto;
    request.response_format = Some(ResponseFormat::JsonSchema {
        name: "w".into(),
        schema: json!({"type": "object"}),
        strict: false,
    });
    let response = done(&events(&model(config.clone()), request.clone()).await.unwrap());
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        response.tool_calls,
        [ToolCall { id: "call_0".into(), name: "weather".into(), arguments: r#"{"city":"Bergen"}"#.into() }]
    );
    assert_eq!(response.logprobs.as_ref().map(Vec::len), Some(1));

    let sent = body(&server);
    assert_eq!(sent["format"], json!({"type": "object"}));
    assert_eq!(sent["tools"][0]["function"]["name"], "weather");
    assert_eq!(sent["messages"][2]["tool_calls"][0]["function"]["arguments"], json!({"city": "Oslo"}));
    assert_eq!(sent["messages"][3], json!({"role": "tool", "content": "4 °C, rain", "tool_name": "weather"}));
    assert_eq!((sent["logprobs"].clone(), sent["top_logprobs"].clone()), (json!(true), json!(0)));

    request.tool_choice = ToolChoice::Required;
    let err = events(&model(config), request).await.unwrap_err();
    assert!(err.contains("ollama cannot honour `tool_choice`"), "{err}");
}

#[tokio::test]
async fn openai_embeddings_probe_retry_and_order() {
    let vectors = |n: usize| {
        let data: Vec<Value> = (0..n)
            .rev()
            .map(|i| json!({"object": "embedding", "index": i, "embedding": [i as f32, 1.0, 0.5]}))
            .collect();
        Reply::json(200, json!({"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": 4, "total_tokens": 4}}).to_string())
    };
    let failure = Reply::json(500, r#"{"error": {"message": "overloaded", "type": "server_error"}}"#);
    let server = Server::start(vec![vectors(1), failure, vectors(2)]);
    let (config, warnings) = config(Vendor::OpenAi, server.url("/v1"));
    let embedder = HttpEmbedder::connect("remote-embedder", config, None).await.unwrap();
    assert_eq!((embedder.name(), embedder.dimensions()), ("remote-embedder", 3));
    let got = embedder.embed(&["a".to_string(), "b".to_string()]).await.unwrap();
    assert_eq!(got, vec![vec![0.0, 1.0, 0.5], vec![1.0, 1.0, 0.5]]);
    assert!(warnings.lock().unwrap().iter().any(|w| w.contains("HTTP 500") && w.contains("retrying")));
    let requests = server.requests();
    assert_eq!(requests[2].path, "/v1/embeddings");
    let sent: Value = serde_json::from_str(&requests[2].body).unwrap();
    assert_eq!(sent, json!({"model": "test-model", "input": ["a", "b"], "encoding_format": "float"}));
}

#[tokio::test]
async fn embeddings_that_do_not_fit_are_errors() {
    let server = Server::start(vec![
        Reply::json(200, json!({"embeddings": [[0.1, 0.2]]}).to_string()),
        Reply::json(200, json!({"embeddings": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]}).to_string()),
        Reply::json(200, json!({"embeddings": [[0.1, 0.2]]}).to_string()),
        Reply::json(200, "{\"embeddings\": [[0.1,"),
        Reply::json(401, r#"{"error": "unauthorized"}"#),
    ]);
    let (config, _) = config(Vendor::Ollama, server.url(""));
    let embedder = HttpEmbedder::connect("e", config, None).await.unwrap();
    let texts = vec!["a".to_string(), "b".to_string()];
    let wrong_length = embedder.embed(&texts).await.unwrap_err().to_string();
    assert!(wrong_length.contains("vector 0 has 3 dimensions, expected 2"), "{wrong_length}");
    let too_few = embedder.embed(&texts).await.unwrap_err().to_string();
    assert!(too_few.contains("1 vectors for 2 texts"), "{too_few}");
    let cut = embedder.embed(&texts).await.unwrap_err().to_string();
    assert!(cut.contains("malformed embeddings response"), "{cut}");
    let denied = embedder.embed(&texts).await.unwrap_err().to_string();
    assert!(denied.contains("HTTP 401") && denied.contains("unauthorized"), "{denied}");
    no_key(&denied);
    assert_eq!(server.requests()[1].path, "/api/embed");

    let (config, _) = common::config(Vendor::Anthropic, server.url("/v1"));
    let refused = HttpEmbedder::connect("e", config, Some(3)).await.err().unwrap().to_string();
    assert!(refused.contains("no embeddings API"), "{refused}");
}
