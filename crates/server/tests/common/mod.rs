//! A real server on a free loopback port for the integration tests, with the real model store.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;
use std::time::Duration;

use temper_engine::LoadOptions;
use temper_models::{ModelStore, Profiles, Resolver};
use temper_server::{ApiKeys, PoolOptions, ServeError, Server, ServerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Defaults for tests: loopback, a free port, no keys, 4 parallel sequences, nothing preloaded.
pub fn config() -> ServerConfig {
    ServerConfig {
        host: "127.0.0.1".parse().unwrap(),
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
        header_timeout: Duration::from_secs(5),
    }
}

/// Names resolved against the real model store (where CI pulled every catalog model), with no
/// profiles.
pub fn resolver() -> Resolver {
    let store = ModelStore::new(temper_testkit::store().root());
    Resolver::new(store, Profiles::default(), Arc::new(|warning| eprintln!("warning: {warning}")))
}

/// A running server: its base URL, and how to stop it.
pub struct Running {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
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

/// Starts `config` with `resolver` on a free port.
pub async fn start(config: ServerConfig, resolver: Resolver) -> Running {
    let server = Server::bind(config, resolver).await.expect("the server binds");
    let base = format!("http://{}", server.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running { base, stop: Some(stop), task }
}
