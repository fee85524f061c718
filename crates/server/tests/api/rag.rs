use serde_json::{json, Value};
use temper_rag::NOT_IN_DOCUMENTS;

use crate::common;

const LIGHTHOUSE: &str =
    "# Skarvholmen lighthouse\n\nSkarvholmen lighthouse was first lit on 14 October 1897. \
Its keeper, Ingrid Solberg, kept the lamp burning for 31 years.\n\n## Automation\n\n\
The lighthouse was automated in 1987, and its fog horn was removed in 1994.\n";

const FERRY: &str = "The ferry to the island leaves Brekkevik harbour every hour in summer and every two \
hours in winter. A return ticket costs 84 kroner, and bicycles travel free.\n";

/// A multipart/form-data body of `file` parts, written out byte by byte so that a test can send
/// any file name: its content type and bytes.
fn multipart(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "temper-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, bytes) in files {
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        );
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn upload(&self, collection: &str, files: &[(&str, &[u8])]) -> (u16, Value) {
        let (content_type, body) = multipart(files);
        let answer = self
            .http
            .post(format!("{}/api/rag/collections/{collection}/files", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.json().await.unwrap())
    }

    async fn post(&self, route: &str, body: Value) -> reqwest::Response {
        self.http.post(format!("{}{route}", self.base)).json(&body).send().await.unwrap()
    }

    async fn collections(&self) -> Value {
        let answer = self.http.get(format!("{}/api/rag/collections", self.base)).send().await.unwrap();
        answer.json::<Value>().await.unwrap()["collections"].clone()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn uploaded_files_are_searched_and_cited() {
    if temper_testkit::minilm().is_none() || temper_testkit::smollm2().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (base, server) = common::start(common::config(dir.path())).await;
    let client = Client { http: reqwest::Client::new(), base };

    let (status, uploaded) = client
        .upload(
            "islands",
            &[
                ("lighthouse.md", LIGHTHOUSE.as_bytes()),
                ("ferry.txt", FERRY.as_bytes()),
                ("image.png", b"\x89PNG\0\0"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{uploaded}");
    let ingested = uploaded["ingested"].as_array().unwrap();
    let files: Vec<(&str, &str)> =
        ingested.iter().map(|i| (i["file"].as_str().unwrap(), i["status"].as_str().unwrap())).collect();
    assert_eq!(files, [("lighthouse.md", "added"), ("ferry.txt", "added")], "{uploaded}");
    assert!(ingested.iter().all(|i| i["chunks"].as_u64() >= Some(1)), "{uploaded}");
    assert_eq!(
        uploaded["skipped"],
        json!([{ "file": "image.png", "reason": "binary (contains NUL bytes)" }])
    );
    let chunks: u64 = ingested.iter().map(|i| i["chunks"].as_u64().unwrap()).sum();
    assert_eq!(
        client.collections().await,
        json!([{ "name": "islands", "documents": 2, "chunks": chunks, "embedder": "all-minilm-l6-v2" }])
    );
    let (_, again) = client.upload("islands", &[("ferry.txt", FERRY.as_bytes())]).await;
    assert_eq!(again["ingested"], json!([{ "file": "ferry.txt", "chunks": 0, "status": "unchanged" }]));

    let search = json!({ "collection": "islands", "query": "How much is a return ticket?", "k": 2 });
    let hits: Value = client.post("/api/rag/search", search).await.json().await.unwrap();
    let hits = hits["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!((hits[0]["n"].as_u64(), hits[0]["title"].as_str()), (Some(1), Some("ferry.txt")), "{hits:?}");
    assert!(hits[0]["source"].as_str().unwrap().starts_with("ferry.txt, line 1"), "{hits:?}");
    assert_eq!(hits[0]["text"], FERRY.trim_end());
    assert!(hits[0]["score"].as_f64().unwrap() > hits[1]["score"].as_f64().unwrap());

    let question = json!({ "collection": "islands", "question": "When was Skarvholmen lighthouse first lit?", "params": {"temperature": 0, "max_tokens": 48} });
    let answer = client.post("/api/rag/ask", question).await;
    assert_eq!(answer.headers()["content-type"], "text/event-stream");
    let (events, ended) = common::events(&answer.text().await.unwrap());
    assert!(ended, "the stream ends with [DONE]");
    let sources = events[0]["sources"].as_array().unwrap_or_else(|| panic!("sources first: {events:?}"));
    assert_eq!(sources[0]["title"], "Skarvholmen lighthouse", "the best source first: {sources:?}");
    let deltas: Vec<&str> =
        events.iter().filter(|e| e["type"] == "delta").map(|e| e["text"].as_str().unwrap()).collect();
    let done = events.last().unwrap();
    assert_eq!(done["type"], "done", "{events:?}");
    // Checked (strict, the default), the answer comes whole, with each sentence's verdict.
    assert_eq!(deltas.len(), 1, "the checked answer comes in one piece: {events:?}");
    assert_eq!(done["text"], deltas.concat());
    let cited = done["citations"].as_array().unwrap();
    assert!(!cited.is_empty() || done["declined"] == true, "{done}");
    assert!(cited.iter().all(|n| (1..=sources.len() as u64).contains(&n.as_u64().unwrap())), "{done}");
    assert!(done["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{done}");
    let sentences = done["sentences"].as_array().unwrap_or_else(|| panic!("verdicts: {done}"));
    assert!(sentences.iter().all(|s| s["supported"].is_boolean() && s["method"].is_string()), "{done}");

    let unchecked = json!({ "collection": "islands", "question": "When was Skarvholmen lighthouse first lit?", "grounding": "off", "params": {"temperature": 0, "max_tokens": 48} });
    let (events, ended) = common::events(&client.post("/api/rag/ask", unchecked).await.text().await.unwrap());
    assert!(ended);
    let deltas: Vec<&str> =
        events.iter().filter(|e| e["type"] == "delta").map(|e| e["text"].as_str().unwrap()).collect();
    assert!(deltas.len() > 1, "unchecked, the answer streams: {events:?}");
    assert_eq!(events.last().unwrap()["text"], deltas.concat());
    let loose = json!({ "collection": "islands", "question": "When?", "grounding": "loose" });
    let refused = client.post("/api/rag/ask", loose).await;
    assert_eq!(refused.status(), 400);
    let body = refused.text().await.unwrap();
    assert!(body.contains("unknown variant `loose`, expected one of `strict`, `annotate`, `off`"), "{body}");

    let unrelated =
        json!({ "collection": "islands", "question": "Which chess opening starts with the queen's pawn?" });
    let (events, ended) = common::events(&client.post("/api/rag/ask", unrelated).await.text().await.unwrap());
    assert!(ended);
    assert_eq!(events[0], json!({ "type": "sources", "sources": [] }));
    assert_eq!(
        (events[2]["type"].as_str(), events[2]["text"].as_str()),
        (Some("done"), Some(NOT_IN_DOCUMENTS))
    );

    let answer = client.post("/api/rag/search", json!({ "collection": "nowhere", "query": "ferry" })).await;
    assert_eq!(answer.status(), 404);
    let answer =
        client.post("/api/rag/search", json!({ "collection": "islands", "query": "ferry", "k": 0 })).await;
    assert_eq!(answer.status(), 400);
    let answer = client
        .post("/api/rag/search", json!({ "collection": "islands", "query": "ferry", "mode": "fuzzy" }))
        .await;
    let error: Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["param"], "mode", "{error}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn path_like_names_and_oversized_files_are_refused_and_nothing_is_stored() {
    if temper_testkit::minilm().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = temper_server::ServerConfig { rag_max_file_bytes: 4096, ..common::config(dir.path()) };
    let (base, server) = common::start(config).await;
    let client = Client { http: reqwest::Client::new(), base };
    let (status, _) = client.upload("islands", &[("ferry.txt", FERRY.as_bytes())]).await;
    assert_eq!(status, 200);

    for name in ["../../x", "..\\..\\x.md", "notes/ferry.txt", ".."] {
        let (status, error) =
            client.upload("islands", &[("lighthouse.md", LIGHTHOUSE.as_bytes()), (name, b"text")]).await;
        assert_eq!((status, error["error"]["param"].as_str()), (400, Some("file")), "{name}: {error}");
        assert!(error["error"]["message"].as_str().unwrap().contains("is a path"), "{error}");
    }
    let big = "All work and no play. ".repeat(200);
    let (status, error) = client.upload("islands", &[("big.txt", big.as_bytes())]).await;
    assert_eq!(status, 413, "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("4096"), "{error}");
    let (status, error) = client.upload("islands", &[("a.txt", b"one"), ("a.txt", b"two")]).await;
    assert_eq!(status, 400, "{error}");
    let answer = client.post("/api/rag/collections/islands/files", json!({"file": "x"})).await;
    assert_eq!(answer.status(), 400);

    assert_eq!(client.collections().await[0]["documents"], 1, "nothing of a refused upload is stored");
    assert!(!dir.path().join("x").exists() && !dir.path().parent().unwrap().join("x").exists());
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_on_postgres_stores_and_searches_uploads() {
    if temper_testkit::minilm().is_none() {
        return;
    }
    let Some(url) = temper_testkit::postgres_database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = temper_server::ServerConfig {
        rag_db: temper_rag::StoreLocation::Postgres(url),
        ..common::config(dir.path())
    };
    let (base, server) = common::start(config).await;
    let client = Client { http: reqwest::Client::new(), base };
    let files: [(&str, &[u8]); 2] =
        [("lighthouse.md", LIGHTHOUSE.as_bytes()), ("ferry.txt", FERRY.as_bytes())];
    let (status, uploaded) = client.upload("islands", &files).await;
    assert_eq!(status, 200, "{uploaded}");
    let collections = client.collections().await;
    assert_eq!(
        (collections[0]["name"].as_str(), collections[0]["documents"].as_u64()),
        (Some("islands"), Some(2))
    );
    let search = json!({ "collection": "islands", "query": "How much is a return ticket?", "k": 2 });
    let hits: Value = client.post("/api/rag/search", search).await.json().await.unwrap();
    assert_eq!(hits["hits"][0]["title"], "ferry.txt", "{hits}");
    assert!(!dir.path().join("rag.db").exists(), "nothing went to the default file");
    server.abort();
}
