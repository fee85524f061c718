//! `rag_search`: passages of one collection of the RAG store, with their sources.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use temper_core::EmbeddingModel;
use temper_rag::answer::source_label;
use temper_rag::{embed_query, Retriever, SearchOptions, VectorStore};

use crate::tool::{arguments, schema_of, Tool, ToolError};

/// The most passages one search may ask for: more would fill a small model's context.
const MAX_PASSAGES: usize = 10;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchArguments {
    /// What to look for, in words likely to appear in the documents.
    query: String,
    /// How many passages to return (1 to 10, default 4).
    #[schemars(range(min = 1, max = 10))]
    k: Option<usize>,
}

/// Searches one collection by hybrid retrieval, as `temper rag search` does.
pub struct RagSearch {
    store: Arc<Mutex<Box<dyn VectorStore>>>,
    embedder: Arc<dyn EmbeddingModel>,
    collection: String,
    description: String,
}

impl RagSearch {
    /// A search of `collection`, which must exist in `store` and have been embedded by `embedder`.
    pub fn new(
        store: Box<dyn VectorStore>,
        embedder: Arc<dyn EmbeddingModel>,
        collection: &str,
    ) -> temper_rag::Result<Self> {
        let info = store.collection(collection)?;
        let description = format!(
            "Searches the document collection `{}` ({} documents) and returns the passages that best \
             match the query, each with its source. Use it for questions about these documents.",
            info.name, info.documents
        );
        Ok(RagSearch {
            store: Arc::new(Mutex::new(store)),
            embedder,
            collection: collection.to_owned(),
            description,
        })
    }
}

#[async_trait]
impl Tool for RagSearch {
    fn name(&self) -> &str {
        "rag_search"
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn parameters(&self) -> Value {
        schema_of::<SearchArguments>()
    }

    async fn call(&self, value: Value) -> Result<Value, ToolError> {
        let SearchArguments { query, k } = arguments(value)?;
        let options = SearchOptions { k: k.unwrap_or(4).clamp(1, MAX_PASSAGES), ..SearchOptions::default() };
        let failed = |e: temper_rag::RagError| ToolError::Failed(e.to_string());
        let dimensions = {
            let store = self.store.lock().map_err(|_| ToolError::Failed("the store is unusable".into()))?;
            let retriever = self.retriever(store.as_ref());
            retriever.check(&query, &options).map_err(failed)?
        };
        let query_vector = embed_query(self.embedder.as_ref(), &query, dimensions).await.map_err(failed)?;
        // The store reads blocking (a file, or a database through its own runtime).
        let (store, embedder, collection) =
            (self.store.clone(), self.embedder.clone(), self.collection.clone());
        let hits = tokio::task::spawn_blocking(move || {
            let store = store.lock().map_err(|_| ToolError::Failed("the store is unusable".into()))?;
            let retriever = Retriever {
                store: store.as_ref(),
                embedder: embedder.as_ref(),
                collection: &collection,
                reranker: None,
            };
            retriever.search_embedded(&query, &query_vector, options.k, &options).map_err(failed)
        })
        .await
        .map_err(|e| ToolError::Failed(format!("the search stopped: {e}")))??;
        let passages: Vec<Value> = hits
            .iter()
            .enumerate()
            .map(|(i, hit)| json!({ "n": i + 1, "source": source_label(hit), "text": hit.chunk.text }))
            .collect();
        Ok(json!({ "passages": passages }))
    }
}

impl RagSearch {
    fn retriever<'a>(&'a self, store: &'a dyn VectorStore) -> Retriever<'a> {
        Retriever { store, embedder: self.embedder.as_ref(), collection: &self.collection, reranker: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use temper_rag::{
        ingest_contents, FileContents, IngestOptions, NoProgress, SqliteStore, WordPieceEstimate,
    };
    use temper_testkit::HashedWords;

    fn file(name: &str, text: &str) -> FileContents {
        FileContents { name: name.into(), bytes: text.as_bytes().to_vec() }
    }

    async fn search_tool(dir: &std::path::Path) -> RagSearch {
        let mut store = SqliteStore::create(&dir.join("rag.db")).unwrap();
        let files = [
            file("harbour.md", "# Harbour\n\nThe lighthouse of Varnholm was built in 1874 from granite."),
            file("bakery.md", "# Bakery\n\nThe bakery sells rye bread and cardamom buns every morning."),
        ];
        let options = IngestOptions { collection: "towns".into(), ..IngestOptions::default() };
        let report =
            ingest_contents(&mut store, &HashedWords, &WordPieceEstimate, &files, &options, &mut NoProgress)
                .await;
        report.unwrap();
        RagSearch::new(Box::new(store), Arc::new(HashedWords), "towns").unwrap()
    }

    #[tokio::test]
    async fn the_search_returns_the_matching_passage_with_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let tool = search_tool(dir.path()).await;
        assert!(tool.description().contains("`towns` (2 documents)"), "{}", tool.description());
        let found = tool.call(json!({"query": "When was the lighthouse built?", "k": 1})).await.unwrap();
        let passages = found["passages"].as_array().unwrap();
        assert_eq!(passages.len(), 1);
        assert!(passages[0]["source"].as_str().unwrap().starts_with("harbour.md"), "{found}");
        assert!(passages[0]["text"].as_str().unwrap().contains("1874"), "{found}");
    }

    #[tokio::test]
    async fn a_missing_collection_and_an_empty_query_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let tool = search_tool(dir.path()).await;
        let err = tool.call(json!({"query": "  "})).await.unwrap_err();
        assert!(err.to_string().contains("query"), "{err}");
        let store = SqliteStore::open(&dir.path().join("rag.db")).unwrap();
        let missing = RagSearch::new(Box::new(store), Arc::new(HashedWords), "villages").err().unwrap();
        assert!(missing.to_string().contains("villages"), "{missing}");
    }
}
