//! Temper's own routes under `/api`: what the playground needs beyond the OpenAI API (prompt
//! rendering and prompt files, RAG, eval reports, pulling models).

mod prompt_file;
mod pull;
mod rag;
mod render;
mod reports;

use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt;
use serde_json::Value;
use temper_core::GenerationParams;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub use rag::RagStore;

use crate::error::ApiError;
use crate::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/render", post(render::render))
        .route("/api/prompt-file/export", post(prompt_file::export))
        .route("/api/prompt-file/import", post(prompt_file::import))
        .route("/api/rag/collections", get(rag::collections))
        .route("/api/rag/collections/{name}/files", post(rag::upload))
        .route("/api/rag/search", post(rag::search))
        .route("/api/rag/ask", post(rag::ask))
        .route("/api/eval/reports", get(reports::list))
        .route("/api/eval/reports/{name}", get(reports::fetch))
        .route("/api/models/{name}/pull", post(pull::pull))
}

/// Runs CPU work (embedding, tokenizing, reading the store) on the blocking threads, so that
/// the async ones keep serving.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("the work failed: {e}")))?
}

/// Why `name` cannot be a file name a client gives (an upload's, a report's), if it cannot:
/// such names are keys, never paths, and must not even look like paths.
fn plain_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 255 {
        Err("must have 1 to 255 bytes")
    } else if name.contains(['/', '\\']) || name == "." || name == ".." {
        Err("is a path; send a file name alone")
    } else if name.chars().any(char::is_control) {
        Err("has control characters")
    } else {
        Ok(())
    }
}

/// `params` of a request body checked, a bad one named by its path (`params.top_p`).
fn check_params(params: &GenerationParams) -> Result<(), ApiError> {
    params.validate().map_err(|error| {
        let error = ApiError::from(error);
        ApiError { param: error.param.map(|p| format!("params.{p}")), ..error }
    })
}

/// A stream of server-sent events that a task writes into: each JSON object one `data:` line.
/// When the client goes away, the task's next send fails and it stops.
fn event_stream() -> (Events, Response) {
    let (sender, receiver) = mpsc::channel::<Event>(64);
    let body = ReceiverStream::new(receiver).map(Ok::<_, std::convert::Infallible>);
    (Events(sender), Sse::new(body).keep_alive(KeepAlive::default()).into_response())
}

/// The writing end of [`event_stream`].
struct Events(mpsc::Sender<Event>);

impl Events {
    /// Sends one event; false once the client has gone away.
    async fn send(&self, value: &Value) -> bool {
        self.0.send(Event::default().data(value.to_string())).await.is_ok()
    }

    /// Ends a stream the way OpenAI's do.
    async fn done(&self) {
        let _ = self.0.send(Event::default().data("[DONE]")).await;
    }
}
