#![doc = include_str!("../README.md")]

mod api;
mod auth;
mod error;
mod metrics;
mod openai;
mod playground;
mod pool;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use temper_models::Resolver;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use auth::ApiKeys;
pub use error::ApiError;
use metrics::Metrics;
use pool::Pool;
pub use pool::PoolOptions;

/// The largest request body the server reads (an embeddings request of 2048 long texts fits).
pub const BODY_LIMIT: usize = 32 << 20;

/// How to run the server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
    /// Keys a client must send; required unless the server listens on loopback only.
    pub api_keys: ApiKeys,
    pub pool: PoolOptions,
    /// Models to load before `/health` reports ready.
    pub preload: Vec<String>,
    /// After a shutdown signal, how long running answers may take to finish before they are
    /// ended with an error event.
    pub grace: Duration,
    /// How long a client may take to send a request's headers, and an idle connection may stay
    /// open between requests.
    pub header_timeout: Duration,
    /// The RAG store of `/api/rag`, a file or a PostgreSQL database (the CLI's default is
    /// `$TEMPER_HOME/rag.db`); opened on first use.
    pub rag_db: temper_rag::StoreLocation,
    /// Uploaded files larger than this are refused (the CLI skips files larger than
    /// [`temper_rag::LoadOptions`]' default).
    pub rag_max_file_bytes: u64,
    /// The folder whose `.html` files `/api/eval/reports` lists and serves.
    pub reports: PathBuf,
}

/// Why the server did not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {0} without an API key: anyone who can reach it could use it; \
         pass --api-key (or set TEMPER_API_KEY), or listen on 127.0.0.1"
    )]
    KeyRequired(IpAddr),
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load `{model}`: {message}")]
    Preload { model: String, message: String },
}

/// What every route shares.
pub struct AppState {
    pool: Pool,
    metrics: Metrics,
    keys: ApiKeys,
    ready: AtomicBool,
    /// Turns true when the grace period after a shutdown signal is over.
    terminate: watch::Receiver<bool>,
    rag: api::RagStore,
    reports: PathBuf,
    /// Held by the model pull under way.
    pulls: tokio::sync::Mutex<()>,
}

impl AppState {
    /// Completes when running answers must end.
    async fn terminating(&self) {
        let mut terminate = self.terminate.clone();
        if terminate.wait_for(|t| *t).await.is_err() {
            // The server is gone without terminating: nothing will end the answer early.
            std::future::pending::<()>().await;
        }
    }

    /// The first event of an answer, awaited before anything is sent so that a request the
    /// model refuses gets its own status; a shutdown ends the wait.
    async fn first_event(
        &self,
        events: &mut temper_core::EventStream,
    ) -> Result<temper_core::StreamEvent, ApiError> {
        use futures::StreamExt;
        let first = tokio::select! {
            event = events.next() => event,
            _ = self.terminating() => return Err(ApiError::shutting_down()),
        };
        match first {
            Some(Ok(event)) => Ok(event),
            Some(Err(error)) => Err(error.into()),
            None => Err(ApiError::internal("the model ended its answer without a word")),
        }
    }
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    terminate: watch::Sender<bool>,
    config: ServerConfig,
}

impl Server {
    /// Checks the configuration and binds the address (port 0 picks a free one).
    pub async fn bind(config: ServerConfig, resolver: Resolver) -> Result<Server, ServeError> {
        if !config.host.is_loopback() && config.api_keys.is_empty() {
            return Err(ServeError::KeyRequired(config.host));
        }
        let address = SocketAddr::new(config.host, config.port);
        let listener =
            TcpListener::bind(address).await.map_err(|source| ServeError::Bind { address, source })?;
        let (terminate, terminated) = watch::channel(false);
        let state = Arc::new(AppState {
            pool: Pool::new(resolver, config.pool.clone()),
            metrics: Metrics::default(),
            keys: config.api_keys.clone(),
            ready: AtomicBool::new(config.preload.is_empty()),
            terminate: terminated,
            rag: api::RagStore::new(config.rag_db.clone(), config.rag_max_file_bytes),
            reports: config.reports.clone(),
            pulls: tokio::sync::Mutex::new(()),
        });
        Ok(Server { listener, state, terminate, config })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting, lets running answers finish
    /// within the grace period, and ends the rest with an error event.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ServeError> {
        let Server { listener, state, terminate, config } = self;
        let router = router(state.clone());
        let (preload_failed, preload_failure) = tokio::sync::oneshot::channel();
        let preloading = tokio::spawn(preload(state.clone(), config.preload.clone(), preload_failed));
        // A preload that succeeded drops its sender: nothing to wait for then.
        let preload_failure = async {
            match preload_failure.await {
                Ok(failure) => failure,
                Err(_) => std::future::pending().await,
            }
        };
        let unloading = tokio::spawn(unload_idle(state.clone()));
        let graceful = GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(config.header_timeout);
        tokio::pin!(shutdown, preload_failure);
        let outcome = loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let service = TowerToHyperService::new(router.clone());
                        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                        tokio::spawn(async move {
                            if let Err(error) = connection.await {
                                tracing::debug!("connection ended: {error}");
                            }
                        });
                    }
                    // Out of file descriptors, say: wait a little rather than spin.
                    Err(error) => {
                        tracing::warn!("cannot accept a connection: {error}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                failure = &mut preload_failure => break Err(failure),
                () = &mut shutdown => break Ok(()),
            }
        };
        drop(listener);
        preloading.abort();
        unloading.abort();
        tracing::info!("shutting down: waiting up to {}s for running answers", config.grace.as_secs_f64());
        let closed = graceful.shutdown();
        tokio::pin!(closed);
        tokio::select! {
            () = &mut closed => {}
            () = tokio::time::sleep(config.grace) => {
                let _ = terminate.send(true);
                let _ = tokio::time::timeout(Duration::from_secs(5), closed).await;
            }
        }
        outcome
    }
}

/// Loads the models named at start-up, then reports ready (or the failure).
async fn preload(
    state: Arc<AppState>,
    models: Vec<String>,
    failed: tokio::sync::oneshot::Sender<ServeError>,
) {
    for model in models {
        if let Err(error) = state.pool.chat(&model, true).await {
            let _ = failed.send(ServeError::Preload { model, message: error.message });
            return;
        }
    }
    state.ready.store(true, Ordering::Release);
}

async fn unload_idle(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        state.pool.unload_idle();
    }
}

/// Every route, behind the request counter; all but `/health` and the playground's page behind
/// the key check.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{*id}", get(openai::model))
        .route("/metrics", get(metrics))
        .merge(api::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_key));
    Router::new()
        .merge(api)
        .merge(playground::routes())
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        Json(json!({ "status": "ok" })).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "loading" }))).into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(&state.pool.queues());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn not_found(request: Request) -> ApiError {
    let message = format!(
        "no route {} {}; the API is under /v1 and /api (docs/server.md)",
        request.method(),
        request.uri().path()
    );
    ApiError::not_found(message, "unknown_route")
}

async fn method_not_allowed(request: Request) -> ApiError {
    let message = format!("{} is not allowed on {}", request.method(), request.uri().path());
    ApiError { status: StatusCode::METHOD_NOT_ALLOWED, ..ApiError::bad_request(message, None) }
}

/// Counts every answer by route (the route's pattern, so clients cannot grow the label set) and
/// status, and logs it.
async fn count_requests(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or("unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.request(&route, response.status().as_u16());
    tracing::info!(%method, route, status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64);
    response
}
