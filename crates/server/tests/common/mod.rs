//! What the server's integration tests share: a real server on a free loopback port, models
//! from the real store, and nothing read from `TEMPER_HOME` or the working directory.
#![allow(dead_code)] // each test binary uses its own part

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use temper_engine::LoadOptions;
use temper_models::{ModelStore, Profiles, Resolver};
use temper_server::{ApiKeys, PoolOptions, ServeError, Server, ServerConfig};
use tokio::task::JoinHandle;

/// The real store's models, and only the profiles given.
pub fn resolver(profiles: Profiles) -> Resolver {
    Resolver::new(ModelStore::new(temper_testkit::store().root()), profiles, Arc::new(|_| ()))
}

/// Loopback, a free port, no keys, no preloading; the RAG store and the reports in `dir`.
pub fn config(dir: &Path) -> ServerConfig {
    let reports = dir.join("reports");
    std::fs::create_dir_all(&reports).expect("a temporary folder is writable");
    ServerConfig {
        host: "127.0.0.1".parse().expect("an address"),
        port: 0,
        api_keys: ApiKeys::default(),
        pool: PoolOptions {
            load: LoadOptions { threads: None, context_window: Some(2048), sequences: Some(4) },
            queue_limit: 16,
            idle_unload: Duration::from_secs(600),
            max_loaded: 3,
        },
        preload: Vec::new(),
        grace: Duration::from_secs(5),
        header_timeout: Duration::from_secs(30),
        rag_db: temper_rag::StoreLocation::File(dir.join("rag.db")),
        rag_max_file_bytes: temper_rag::LoadOptions::default().max_file_bytes,
        reports,
    }
}

/// Starts a server with `config` and no profiles.
pub async fn start(config: ServerConfig) -> (String, JoinHandle<Result<(), ServeError>>) {
    start_with(config, resolver(Profiles::default())).await
}

/// Starts a server in a task; returns its base URL (`http://127.0.0.1:PORT`) and the task,
/// which runs until aborted.
pub async fn start_with(
    config: ServerConfig,
    resolver: Resolver,
) -> (String, JoinHandle<Result<(), ServeError>>) {
    let server = Server::bind(config, resolver).await.expect("the server binds a free loopback port");
    let base = format!("http://{}", server.local_addr());
    (base, tokio::spawn(server.run(std::future::pending())))
}

/// The JSON objects of a server-sent event stream, and whether it ended with `data: [DONE]`.
pub fn events(body: &str) -> (Vec<serde_json::Value>, bool) {
    let data: Vec<&str> = body
        .split("\n\n")
        .flat_map(|event| event.lines())
        .filter_map(|line| line.strip_prefix("data: "))
        .collect();
    let done = data.last() == Some(&"[DONE]");
    let values = data
        .iter()
        .filter(|d| **d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("event `{d}` is not JSON: {e}")))
        .collect();
    (values, done)
}

/// A running server that can be stopped like a real one (the shutdown signal, then the wait).
pub struct Running {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends the shutdown signal and waits for the server to end.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        let _ = self.stop.take().expect("stopped once").send(());
        self.task.await.expect("the server task does not panic")
    }
}

/// Starts `config` with `resolver` on a free port, until [`Running::stop`].
pub async fn serve(config: ServerConfig, resolver: Resolver) -> Running {
    let server = Server::bind(config, resolver).await.expect("the server binds a free loopback port");
    let base = format!("http://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running { base, stop: Some(stop), task }
}

/// The JSON answer to a POST of `body` to `url`, whatever its status.
pub async fn post_json(client: &reqwest::Client, url: &str, body: &serde_json::Value) -> serde_json::Value {
    client.post(url).json(body).send().await.unwrap().json().await.unwrap()
}
