//! RAG as a variant: each row's question (its rendered prompt) answered from a collection as
//! `temper rag ask` answers it, checked against the passages in a grounding mode, so that a
//! pipeline's accuracy, citations and refusals are measured like any prompt's.

use std::path::PathBuf;
use std::sync::Arc;

use futures::lock::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use temper_core::{ChatModel, ChatResponse, EmbeddingModel, GenerationParams};
use temper_ground::{Mode as Grounding, Passage, SentenceCheck};
use temper_rag::answer::citations;
use temper_rag::{embed_query, AskOptions, Mode, Retriever, SearchOptions, VectorStore, WordPieceEstimate};

/// The `[rag]` table of a spec.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RagSpec {
    /// Files or folders (relative to the spec) ingested for the run into a store of the
    /// evaluator's; or give `collection` (and `db`) of a store ingested already.
    #[serde(default, deserialize_with = "one_or_many")]
    pub documents: Vec<PathBuf>,
    pub collection: Option<String>,
    /// The store of `collection`: a file relative to the spec or a `postgres://` URL (default:
    /// the one `temper rag` uses).
    pub db: Option<String>,
    /// Each mode is a variant (default: strict).
    #[serde(default = "default_grounding", deserialize_with = "one_or_many")]
    pub grounding: Vec<Grounding>,
    #[serde(default = "default_k")]
    pub k: usize,
    #[serde(default)]
    /// `dense`, `bm25` or `hybrid` (default).
    pub mode: Mode,
    #[serde(default = "default_min_similarity")]
    pub min_similarity: f32,
    /// The answering model's window: the passages are fitted into it.
    #[serde(default = "default_context_window")]
    pub context_window: usize,
}

fn default_grounding() -> Vec<Grounding> {
    vec![Grounding::Strict]
}

fn default_k() -> usize {
    SearchOptions::default().k
}

fn default_min_similarity() -> f32 {
    temper_rag::MIN_SIMILARITY
}

fn default_context_window() -> usize {
    AskOptions::default().context_window
}

pub(crate) fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = Value::deserialize(deserializer)?;
    let items = match value {
        Value::Array(items) => items,
        one => vec![one],
    };
    items.into_iter().map(|item| serde_json::from_value(item).map_err(serde::de::Error::custom)).collect()
}

/// A collection to answer from, and how.
pub struct RagPipeline {
    store: Mutex<Box<dyn VectorStore>>,
    embedder: Arc<dyn EmbeddingModel>,
    collection: String,
    search: SearchOptions,
    min_similarity: f32,
    context_window: usize,
}

/// What a RAG row shows besides its answer.
#[derive(Clone, Debug, Serialize)]
pub struct RagRow {
    /// The sources the answer was given, `[1]` first.
    pub sources: Vec<String>,
    /// The sources it cites.
    pub cited: Vec<String>,
    pub declined: bool,
    /// How long the grounding check took, in milliseconds.
    pub check_ms: f64,
    pub sentences: Vec<SentenceCheck>,
    #[serde(skip)]
    pub passages: Vec<Passage>,
}

impl RagPipeline {
    /// Answers from `collection` of `store`, embedding questions with `embedder` (the one the
    /// collection was ingested with), retrieving as `spec` says.
    pub fn new(
        store: Box<dyn VectorStore>,
        embedder: Arc<dyn EmbeddingModel>,
        collection: String,
        spec: &RagSpec,
    ) -> Self {
        RagPipeline {
            store: Mutex::new(store),
            embedder,
            collection,
            search: SearchOptions { k: spec.k, mode: spec.mode, ..Default::default() },
            min_similarity: spec.min_similarity,
            context_window: spec.context_window,
        }
    }

    fn retriever<'a>(&'a self, store: &'a dyn VectorStore) -> Retriever<'a> {
        Retriever { store, embedder: &*self.embedder, collection: &self.collection, reranker: None }
    }

    /// `question` answered by `model` from the collection and checked in `grounding` mode (the
    /// answering model verifies the sentences that hold no number, date or name).
    pub async fn answer(
        &self,
        question: &str,
        model: &dyn ChatModel,
        params: &GenerationParams,
        grounding: Grounding,
    ) -> Result<(ChatResponse, RagRow), String> {
        // The store is not `Sync`: it is only touched between awaits.
        let dimensions = self.retriever(self.store.lock().await.as_ref()).check(question, &self.search);
        let dimensions = dimensions.map_err(|e| e.to_string())?;
        let vector = embed_query(&*self.embedder, question, dimensions).await.map_err(|e| e.to_string())?;
        let hits = {
            let store = self.store.lock().await;
            self.retriever(store.as_ref()).search_embedded(question, &vector, self.search.k, &self.search)
        };
        let hits = hits.map_err(|e| e.to_string())?;
        let options = AskOptions {
            min_similarity: self.min_similarity,
            context_window: self.context_window,
            params: params.clone(),
            ..Default::default()
        };
        // The evaluator has the model, not its tokenizer: the estimate errs on the high side.
        let grounded =
            temper_rag::prepare(question, hits, &options, &WordPieceEstimate).map_err(|e| e.to_string())?;
        let Some(grounded) = grounded else {
            let response =
                ChatResponse { text: temper_rag::NOT_IN_DOCUMENTS.to_owned(), ..Default::default() };
            let row = RagRow {
                sources: Vec::new(),
                cited: Vec::new(),
                declined: true,
                check_ms: 0.0,
                sentences: Vec::new(),
                passages: Vec::new(),
            };
            return Ok((response, row));
        };
        let stream = model.chat_stream(grounded.request);
        let checked = temper_rag::checked_answer(stream, question, &grounded.sources, grounding, Some(model))
            .await
            .map_err(|e| temper_core::error_chain(&e))?;
        let sources: Vec<String> = grounded.sources.iter().map(|h| h.chunk.path.clone()).collect();
        let cited = citations(&checked.text)
            .into_iter()
            .filter_map(|n| n.checked_sub(1).and_then(|i| sources.get(i)).cloned())
            .collect();
        let row = RagRow {
            cited,
            declined: checked.declined,
            check_ms: checked.check_ms,
            sentences: checked.grounding.sentences,
            passages: grounded.sources.iter().map(|h| Passage::new(&h.chunk.text, &h.chunk.path)).collect(),
            sources,
        };
        Ok((checked.response, row))
    }
}
