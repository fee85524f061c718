//! `POST /api/models/{name}/pull`: installs a catalog model into the store, as `temper models
//! pull` does, streaming its progress as server-sent events.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::response::Response;
use serde_json::{json, Value};
use temper_models::{find, PullProgress, Stage};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use super::{event_stream, Events};
use crate::error::{chain, ApiError};
use crate::AppState;

pub async fn pull(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    if find(&name).is_none() {
        let message = format!("no catalog model `{name}`; GET /v1/models lists them");
        return Err(ApiError::not_found(message, "model_not_found"));
    }
    let (sink, response) = event_stream();
    tokio::spawn(async move {
        let event = match install(&state, &name, &sink).await {
            Ok(path) => json!({ "type": "done", "path": path }),
            Err(error) => json!({ "type": "error", "error": error.body()["error"] }),
        };
        sink.send(&event).await;
    });
    Ok(response)
}

/// Pulls `name` unless it is installed, one pull at a time: two pulls of one model would
/// share its temporary folder. A client that goes away stops hearing of the pull, which goes
/// on to the end (an interrupted pull would only be started again).
async fn install(state: &AppState, name: &str, sink: &Events) -> Result<PathBuf, ApiError> {
    let _one_at_a_time = state.pulls.lock().await;
    let store = state.pool.resolver().store().clone();
    if let Some(path) = store.installed_path(name) {
        return Ok(path);
    }
    let (sender, mut events) = unbounded_channel();
    let model = name.to_owned();
    let pulling = tokio::task::spawn_blocking(move || store.pull(&model, &Reporter::new(sender)));
    let mut listening = true;
    // Ends when the pull does: it drops the reporter.
    while let Some(event) = events.recv().await {
        listening = listening && sink.send(&event).await;
    }
    let pulled = pulling.await.map_err(|e| ApiError::internal(format!("the pull failed: {e}")))?;
    pulled.map_err(|error| ApiError::internal(chain(&error)))
}

/// Turns a pull's stages into progress events: `done` of `total` packages while
/// downloading, bytes while extracting.
struct Reporter {
    events: UnboundedSender<Value>,
    extracted: Cell<u64>,
    total: Cell<u64>,
}

impl Reporter {
    fn new(events: UnboundedSender<Value>) -> Reporter {
        Reporter { events, extracted: Cell::new(0), total: Cell::new(0) }
    }

    fn progress(&self, stage: &str, done: u64, total: u64) {
        let event = json!({ "type": "progress", "stage": stage, "done": done, "total": total });
        // The receiver outlives the pull; a failed send has no one to tell.
        let _ = self.events.send(event);
    }
}

impl PullProgress for Reporter {
    fn stage(&self, stage: Stage<'_>) {
        match stage {
            Stage::Downloading { index, count, .. } => {
                self.progress("downloading", index as u64 - 1, count as u64)
            }
            Stage::Extracting { total_bytes } => {
                self.total.set(total_bytes);
                self.progress("extracting", 0, total_bytes);
            }
            Stage::Fetching { total_bytes, resumed_from, .. } => {
                self.total.set(total_bytes.unwrap_or(0));
                self.extracted.set(resumed_from);
                self.progress("downloading", resumed_from, total_bytes.unwrap_or(0));
            }
            Stage::Verifying => self.progress("verifying", 0, 0),
            Stage::Waiting { .. } => self.progress("waiting", 0, 0),
            // The end is the pull's result; a first use does not happen in an explicit pull.
            Stage::FirstUse { .. } | Stage::Installed { .. } | Stage::Failed => {}
            // Said in the pull's result, or (a retry) not the client's concern.
            Stage::Chose { .. } | Stage::InPlace { .. } | Stage::Retrying { .. } => {}
        }
    }

    fn advance(&self, bytes: u64) {
        self.extracted.set(self.extracted.get() + bytes);
        self.progress("extracting", self.extracted.get(), self.total.get());
    }
}
