//! `/api/rag/...`: the collections of the RAG store the CLI uses, uploads into them, search,
//! and answers with citations, through temper-rag exactly as `temper rag` drives it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use temper_core::{EventStream, GenerationParams, StreamEvent, TokenCounter};
use temper_engine::LocalModel;
use temper_ground::Mode as Grounding;
use temper_models::{DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL};
use temper_rag::answer::{citations, source_label, source_title};
use temper_rag::{
    Access, AskOptions, FileContents, GroundedRequest, Hit, IngestOptions, LoadOptions, Mode, NoProgress,
    RagError, Retriever, SearchOptions, StoreLocation, VectorStore, WordPieceEstimate, NOT_IN_DOCUMENTS,
};

use super::{blocking, check_params, event_stream, plain_name, Events};
use crate::error::{ApiError, ApiJson};
use crate::openai::{usage, waits};
use crate::pool::{Chat, Embeddings, Lease};
use crate::AppState;

/// The most chunks a search returns.
const MAX_K: usize = 100;

/// The store the CLI uses too, opened on first use: one handle for reading and one for
/// ingesting, so that a long upload does not hold searches up (SQLite in WAL mode lets them
/// read while it writes; PostgreSQL gives each its own connections).
pub struct RagStore {
    location: StoreLocation,
    reader: Mutex<Option<Box<dyn VectorStore>>>,
    writer: Mutex<Option<Box<dyn VectorStore>>>,
    /// Uploaded files larger than this are refused.
    max_file_bytes: u64,
}

impl RagStore {
    pub fn new(location: StoreLocation, max_file_bytes: u64) -> RagStore {
        RagStore { location, reader: Mutex::default(), writer: Mutex::default(), max_file_bytes }
    }

    /// Runs `work` on the reading connection (blocking: call it off the async threads).
    fn read<T>(&self, work: impl FnOnce(&dyn VectorStore) -> Result<T, RagError>) -> Result<T, ApiError> {
        self.with(&self.reader, |store| work(store))
    }

    /// Runs `work` on the writing connection (blocking).
    fn write<T>(
        &self,
        work: impl FnOnce(&mut dyn VectorStore) -> Result<T, RagError>,
    ) -> Result<T, ApiError> {
        self.with(&self.writer, work)
    }

    fn with<T>(
        &self,
        slot: &Mutex<Option<Box<dyn VectorStore>>>,
        work: impl FnOnce(&mut dyn VectorStore) -> Result<T, RagError>,
    ) -> Result<T, ApiError> {
        // A panic while the lock was held leaves nothing half done: every write is a transaction.
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let store = match &mut *slot {
            Some(store) => store,
            None => slot.insert(self.location.open(Access::Create).inspect_err(|error| {
                tracing::warn!("the RAG store cannot be opened: {}", crate::error::chain(error));
            })?),
        };
        Ok(work(store.as_mut())?)
    }
}

pub async fn collections(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let collections = blocking(move || state.rag.read(|store| store.collections())).await?;
    let collections: Vec<Value> = collections
        .iter()
        .map(|c| json!({ "name": c.name, "documents": c.documents, "chunks": c.chunks, "embedder": c.embedder }))
        .collect();
    Ok(Json(json!({ "collections": collections })))
}

/// Reads every `file` part into the collection, by its file name.
pub async fn upload(
    State(state): State<Arc<AppState>>,
    UrlPath(collection): UrlPath<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Value>, ApiError> {
    check_collection(&collection)?;
    let multipart = multipart.map_err(|rejection| {
        let message = format!("send the files as multipart/form-data: {}", rejection.body_text());
        ApiError::bad_request(message, None)
    })?;
    let files = read_files(multipart, state.rag.max_file_bytes).await?;
    let embedder = state.pool.embeddings(DEFAULT_EMBEDDING_MODEL, waits(&headers)).await?;
    let report = blocking(move || {
        let options = IngestOptions {
            collection,
            load: LoadOptions { max_file_bytes: state.rag.max_file_bytes, ..LoadOptions::default() },
            ..IngestOptions::default()
        };
        let count = embedder_tokens(&embedder.model);
        let model = embedder.model.model.as_ref();
        state.rag.write(|store| {
            let mut quiet = NoProgress;
            let ingesting = temper_rag::ingest_contents(store, model, count, &files, &options, &mut quiet);
            tokio::runtime::Handle::current().block_on(ingesting)
        })
    })
    .await?;
    let ingested: Vec<Value> = report
        .documents
        .iter()
        .map(|d| json!({ "file": d.path, "chunks": d.chunks, "status": d.status }))
        .collect();
    let skipped: Vec<Value> = report
        .skipped
        .iter()
        .map(|s| json!({ "file": s.path.to_string_lossy(), "reason": s.reason }))
        .collect();
    Ok(Json(json!({ "ingested": ingested, "skipped": skipped })))
}

/// The `file` parts, each at most `limit` bytes (never more is held). A name that could be a
/// path, a name sent twice or a file too large refuses the whole request, before anything is
/// stored.
async fn read_files(mut multipart: Multipart, limit: u64) -> Result<Vec<FileContents>, ApiError> {
    let mut files: Vec<FileContents> = Vec::new();
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        if field.name() != Some("file") {
            let message = format!(
                "unexpected part `{}`; send each file as a part named `file`",
                field.name().unwrap_or_default()
            );
            return Err(ApiError::bad_request(message, None));
        }
        let name = field.file_name().unwrap_or_default().to_owned();
        plain_name(&name).map_err(|reason| {
            ApiError::bad_request(format!("the file name `{name}` {reason}"), Some("file"))
        })?;
        if files.iter().any(|f| f.name == name) {
            return Err(ApiError::bad_request(format!("`{name}` is sent twice"), Some("file")));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if (bytes.len() + chunk.len()) as u64 > limit {
                let message = format!("`{name}` is larger than the server's limit of {limit} bytes");
                let error = ApiError::bad_request(message, Some("file"));
                return Err(ApiError { status: StatusCode::PAYLOAD_TOO_LARGE, ..error });
            }
            bytes.extend_from_slice(&chunk);
        }
        files.push(FileContents { name, bytes });
    }
    if files.is_empty() {
        return Err(ApiError::bad_request("no files: send each file as a part named `file`", Some("file")));
    }
    Ok(files)
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    let status = error.status();
    let message = format!("cannot read the uploaded files: {}", error.body_text());
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(crate::BODY_LIMIT)
    } else {
        ApiError { status, ..ApiError::bad_request(message, None) }
    }
}

fn check_collection(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        let message = "a collection name has 1 to 255 bytes and no control characters";
        return Err(ApiError::bad_request(message, Some("collection")));
    }
    Ok(())
}

/// Counts tokens as the embedder does, so that no chunk is cut short when embedded (as
/// `temper rag ingest` sizes them).
fn embedder_tokens(embeddings: &Embeddings) -> &dyn TokenCounter {
    match &embeddings.local {
        Some(local) => local.as_ref(),
        None => &WordPieceEstimate,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    collection: String,
    query: String,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default)]
    mode: Option<String>,
}

/// `temper rag search`'s default.
fn default_k() -> usize {
    10
}

impl SearchBody {
    fn options(&self) -> Result<SearchOptions, ApiError> {
        if !(1..=MAX_K).contains(&self.k) {
            return Err(ApiError::bad_request(format!("k must be between 1 and {MAX_K}"), Some("k")));
        }
        let mode = match &self.mode {
            Some(mode) => {
                mode.parse::<Mode>().map_err(|e| ApiError::bad_request(e.to_string(), Some("mode")))?
            }
            None => Mode::default(),
        };
        Ok(SearchOptions { k: self.k, mode, ..SearchOptions::default() })
    }
}

pub async fn search(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SearchBody>,
) -> Result<Json<Value>, ApiError> {
    let options = body.options()?;
    let embedder = state.pool.embeddings(DEFAULT_EMBEDDING_MODEL, waits(&headers)).await?;
    let hits = blocking(move || {
        state.rag.read(|store| {
            let retriever = retriever(store, &embedder, &body.collection);
            tokio::runtime::Handle::current().block_on(retriever.search(&body.query, &options))
        })
    })
    .await?;
    Ok(Json(json!({ "hits": numbered(&hits) })))
}

fn retriever<'a>(
    store: &'a dyn VectorStore,
    embedder: &'a Lease<Embeddings>,
    collection: &'a str,
) -> Retriever<'a> {
    Retriever { store, embedder: embedder.model.model.as_ref(), collection, reranker: None }
}

/// Hits as the answers list them: numbered from 1, with the source `temper rag ask` shows
/// and the title the prompt gives them.
fn numbered(hits: &[Hit]) -> Vec<Value> {
    (1..)
        .zip(hits)
        .map(|(n, hit)| {
            json!({
                "n": n,
                "source": source_label(hit),
                "title": source_title(hit),
                "text": hit.chunk.text,
                "score": hit.score,
            })
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskBody {
    collection: String,
    question: String,
    model: Option<String>,
    #[serde(default)]
    params: GenerationParams,
    /// strict (default), annotate or off, as `temper rag ask --grounding` takes it.
    #[serde(default)]
    grounding: Grounding,
}

/// Retrieves for the question, then streams the model's grounded answer: the sources first,
/// then the text (citations checked against the sources), then the whole text with the
/// sources it cites. Checked (strict or annotate), the text comes in one piece once every
/// sentence is checked, and `done` carries each sentence's verdict; unchecked, it streams as it
/// comes.
pub async fn ask(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AskBody>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    check_params(&body.params)?;
    let model = body.model.clone().unwrap_or_else(|| DEFAULT_CHAT_MODEL.to_owned());
    let chat = state.pool.chat(&model, waits(&headers)).await?;
    // Fitting the sources needs the model's own tokenizer and window, which only a local model has.
    let Some(local) = chat.model.local.clone() else {
        let message = format!(
            "`{model}` is a remote model; answering from documents fits them with the model's own tokenizer, so it needs a local model"
        );
        return Err(ApiError::bad_request(message, Some("model")));
    };
    let embedder = state.pool.embeddings(DEFAULT_EMBEDDING_MODEL, waits(&headers)).await?;
    let (question, mode) = (body.question.clone(), body.grounding);
    let grounding = ground(state.clone(), embedder, local, body).await?;
    let (sink, response) = event_stream();
    let Some(grounded) = grounding else {
        tokio::spawn(async move { not_in_documents(&sink).await });
        return Ok(response);
    };
    let sources = json!({ "type": "sources", "sources": numbered(&grounded.sources) });
    if mode != Grounding::Off {
        let answer = CheckedAsk { question, sources: grounded.sources, mode };
        let stream = chat.model.model.chat_stream(grounded.request);
        tokio::spawn(relay_checked(state, chat, sources, answer, stream, sink, started));
        return Ok(response);
    }
    let mut events =
        temper_rag::grounded_stream(chat.model.model.chat_stream(grounded.request), &grounded.sources);
    let first = state.first_event(&mut events).await?;
    tokio::spawn(relay(state, chat, sources, first, events, sink, started));
    Ok(response)
}

/// A question whose answer is checked before it is sent.
struct CheckedAsk {
    question: String,
    sources: Vec<Hit>,
    mode: Grounding,
}

/// Sends the sources, then the answer of `stream` once it is checked against them (the model
/// itself verifies the sentences without numbers, dates or names), then `done` with the
/// verdicts.
async fn relay_checked(
    state: Arc<AppState>,
    chat: Lease<Chat>,
    sources: Value,
    ask: CheckedAsk,
    stream: EventStream,
    sink: Events,
    started: Instant,
) {
    if !sink.send(&sources).await {
        return;
    }
    let model = chat.model.model.clone();
    let checking =
        temper_rag::checked_answer(stream, &ask.question, &ask.sources, ask.mode, Some(model.as_ref()));
    let checked = tokio::select! {
        checked = checking => checked.map_err(|e| ApiError::from(temper_core::Error::Backend(temper_core::error_chain(&e)))),
        _ = state.terminating() => Err(ApiError::from(temper_core::Error::Backend("the server is shutting down".into()))),
    };
    let checked = match checked {
        Ok(checked) => checked,
        Err(error) => {
            let _ = sink.send(&json!({ "type": "error", "error": error.body()["error"] })).await;
            return;
        }
    };
    let response = &checked.response;
    state.metrics.tokens(response.usage.prompt_tokens, response.usage.completion_tokens);
    state.metrics.generation(started.elapsed());
    let mut seen = HashSet::new();
    let cited: Vec<usize> = citations(&checked.text).into_iter().filter(|n| seen.insert(*n)).collect();
    let done = json!({
        "type": "done",
        "text": checked.text,
        "citations": cited,
        "usage": usage(response),
        "declined": checked.declined,
        "sentences": checked.grounding.sentences,
    });
    if sink.send(&json!({ "type": "delta", "text": checked.text })).await && sink.send(&done).await {
        sink.done().await;
    }
    drop(chat);
}

/// Retrieves for the question and fits the relevant chunks into the model's window, with the
/// model's own tokenizer, as `temper rag ask` does.
async fn ground(
    state: Arc<AppState>,
    embedder: Lease<Embeddings>,
    local: Arc<LocalModel>,
    body: AskBody,
) -> Result<Option<GroundedRequest>, ApiError> {
    blocking(move || {
        let options = AskOptions {
            context_window: local.summary().context_window,
            params: body.params,
            ..AskOptions::default()
        };
        let search = SearchOptions { k: default_k(), ..SearchOptions::default() };
        state.rag.read(|store| {
            let retriever = retriever(store, &embedder, &body.collection);
            let grounding = temper_rag::ground(&retriever, &body.question, &search, &options, &*local);
            tokio::runtime::Handle::current().block_on(grounding)
        })
    })
    .await
}

/// The answer when no chunk is relevant enough: said, not guessed by the model.
async fn not_in_documents(sink: &Events) {
    let zero = json!({ "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0 });
    for event in [
        json!({ "type": "sources", "sources": [] }),
        json!({ "type": "delta", "text": NOT_IN_DOCUMENTS }),
        json!({ "type": "done", "text": NOT_IN_DOCUMENTS, "citations": [], "usage": zero }),
    ] {
        if !sink.send(&event).await {
            return;
        }
    }
    sink.done().await;
}

/// Sends the sources, then the model's events until the answer ends, the client goes away
/// (dropping `events` then cancels the generation and frees its slot), or the server's grace
/// period for shutting down runs out.
async fn relay(
    state: Arc<AppState>,
    chat: Lease<Chat>,
    sources: Value,
    first: StreamEvent,
    mut events: EventStream,
    sink: Events,
    started: Instant,
) {
    if !sink.send(&sources).await {
        return;
    }
    let mut next = Some(Ok(first));
    loop {
        let event = match next.take() {
            Some(event) => event,
            None => tokio::select! {
                event = events.next() => event.unwrap_or_else(|| Err(temper_core::Error::Backend(
                    "the model's stream ended before the answer was complete".into(),
                ))),
                _ = state.terminating() => Err(temper_core::Error::Backend("the server is shutting down".into())),
            },
        };
        let message = match event {
            Ok(StreamEvent::Delta(text)) => json!({ "type": "delta", "text": text }),
            // A RAG answer offers no tools.
            Ok(StreamEvent::ToolCall(_)) => continue,
            Ok(StreamEvent::Restart { reason }) => json!({ "type": "restart", "reason": reason }),
            Ok(StreamEvent::Done(response)) => {
                state.metrics.tokens(response.usage.prompt_tokens, response.usage.completion_tokens);
                state.metrics.generation(started.elapsed());
                let mut seen = HashSet::new();
                let cited: Vec<usize> =
                    citations(&response.text).into_iter().filter(|n| seen.insert(*n)).collect();
                let done = json!({ "type": "done", "text": response.text, "citations": cited, "usage": usage(&response) });
                if sink.send(&done).await {
                    sink.done().await;
                }
                break;
            }
            Err(error) => {
                let _ = sink
                    .send(&json!({ "type": "error", "error": ApiError::from(error).body()["error"] }))
                    .await;
                break;
            }
        };
        if !sink.send(&message).await {
            tracing::debug!("the client went away; generation cancelled");
            return;
        }
    }
    drop(chat);
}
