use reqwest::Method;
use temper_server::ApiKeys;

use crate::common;

#[tokio::test(flavor = "multi_thread")]
async fn every_route_refuses_a_request_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path());
    std::fs::write(config.reports.join("r.html"), "<p>report</p>").unwrap();
    let config = temper_server::ServerConfig { api_keys: ApiKeys::new(["sk-test".to_owned()]), ..config };
    let (base, server) = common::start(config).await;
    let client = reqwest::Client::new();
    let routes = [
        (Method::POST, "/api/render"),
        (Method::POST, "/api/prompt-file/export"),
        (Method::POST, "/api/prompt-file/import"),
        (Method::GET, "/api/rag/collections"),
        (Method::POST, "/api/rag/collections/notes/files"),
        (Method::POST, "/api/rag/search"),
        (Method::POST, "/api/rag/ask"),
        (Method::GET, "/api/eval/reports"),
        (Method::GET, "/api/eval/reports/r.html"),
        (Method::POST, "/api/models/smollm2-135m-instruct/pull"),
    ];
    for (method, route) in &routes {
        for key in [None, Some("sk-wrong")] {
            let mut request = client.request(method.clone(), format!("{base}{route}")).body("{}");
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 401, "{method} {route} with {key:?}");
            let error: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(error["error"]["type"], "authentication_error");
        }
    }
    // The key opens them: these two answer in full without a model.
    for route in ["/api/rag/collections", "/api/eval/reports/r.html"] {
        let answer = client.get(format!("{base}{route}")).bearer_auth("sk-test").send().await.unwrap();
        assert_eq!(answer.status(), 200, "{route}");
    }
    server.abort();
}
