//! Embeddings over HTTP, behind the same `EmbeddingModel` as the local embedder: OpenAI's
//! `POST /embeddings` (OpenAI, vLLM, llama.cpp's server, LM Studio, Ollama's `/v1`) and Ollama's
//! native `POST /api/embed`. Anthropic has no embeddings API.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use temper_core::EmbeddingModel;

use crate::frames::preview;
use crate::{http, ProviderConfig, ProviderError, Shared, Vendor};

/// Texts per request: well under every server's limit (OpenAI takes 2,048).
const BATCH: usize = 128;

/// A vendor's embedding model.
pub struct HttpEmbedder {
    name: String,
    shared: Arc<Shared>,
    dimensions: usize,
}

impl HttpEmbedder {
    /// Connects to `config`'s embeddings endpoint. Unless `dimensions` gives the vectors' length,
    /// one short probe request learns it, so a wrong model or URL fails here, not mid-ingestion.
    pub async fn connect(
        name: impl Into<String>,
        config: ProviderConfig,
        dimensions: Option<usize>,
    ) -> Result<HttpEmbedder, ProviderError> {
        let path = match config.vendor {
            Vendor::OpenAi => "/embeddings",
            Vendor::Ollama => "/api/embed",
            Vendor::Anthropic => {
                return Err(ProviderError::UnsupportedMessage {
                    vendor: config.vendor.name(),
                    reason: "Anthropic has no embeddings API; use an OpenAI-compatible or Ollama profile, \
                             or the local embedder"
                        .into(),
                })
            }
        };
        let shared = Arc::new(Shared::new(config, path)?);
        let dimensions = match dimensions {
            Some(n) => n,
            None => embed_batch(&shared, &["dimension probe".to_owned()], None).await?[0].len(),
        };
        Ok(HttpEmbedder { name: name.into(), shared, dimensions })
    }
}

#[async_trait]
impl EmbeddingModel for HttpEmbedder {
    fn name(&self) -> &str {
        &self.name
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> temper_core::Result<Vec<Vec<f32>>> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            vectors.extend(embed_batch(&self.shared, batch, Some(self.dimensions)).await?);
        }
        Ok(vectors)
    }
}

/// One request: a vector per text, in order, each `dimensions` long when that is known.
async fn embed_batch(
    shared: &Shared,
    texts: &[String],
    dimensions: Option<usize>,
) -> Result<Vec<Vec<f32>>, ProviderError> {
    let body = match shared.vendor {
        Vendor::OpenAi => json!({ "model": shared.model, "input": texts, "encoding_format": "float" }),
        _ => json!({ "model": shared.model, "input": texts }),
    };
    let response = http::send(shared, &body).await?;
    let vendor = shared.vendor.name();
    let malformed = |reason: String| {
        shared.breaker.failure();
        ProviderError::Malformed { vendor, what: "embeddings response", reason }
    };
    let text = match tokio::time::timeout(shared.timeouts.response, response.text()).await {
        Ok(Ok(text)) => text,
        Ok(Err(err)) => return Err(malformed(shared.scrub(&http::error_chain(&err)))),
        Err(_) => return Err(malformed("the body did not arrive in time".into())),
    };
    let json: Value =
        serde_json::from_str(&text).map_err(|e| malformed(format!("{e} in `{}`", preview(&text))))?;
    let vectors = parse(shared.vendor, &json).map_err(malformed)?;
    if vectors.len() != texts.len() {
        return Err(malformed(format!("{} vectors for {} texts", vectors.len(), texts.len())));
    }
    let expected = dimensions.unwrap_or_else(|| vectors.first().map_or(0, Vec::len));
    if let Some((i, v)) = vectors.iter().enumerate().find(|(_, v)| v.len() != expected || v.is_empty()) {
        return Err(malformed(format!("vector {i} has {} dimensions, expected {expected}", v.len())));
    }
    shared.breaker.success();
    Ok(vectors)
}

/// The vectors in a response body: OpenAI's `{"data": [{"index", "embedding"}…]}` (put back in
/// input order by index) or Ollama's `{"embeddings": [[…]…]}`.
fn parse(vendor: Vendor, json: &Value) -> Result<Vec<Vec<f32>>, String> {
    let vector = |value: &Value| -> Result<Vec<f32>, String> {
        let numbers = value.as_array().ok_or("an embedding that is not a list of numbers")?;
        numbers
            .iter()
            .map(|n| {
                n.as_f64().map(|n| n as f32).ok_or_else(|| format!("`{n}` in an embedding is not a number"))
            })
            .collect()
    };
    match vendor {
        Vendor::OpenAi => {
            let data = json.get("data").and_then(Value::as_array).ok_or("no `data` list")?;
            let mut indexed = data
                .iter()
                .enumerate()
                .map(|(position, item)| {
                    let index = item.get("index").and_then(Value::as_u64).unwrap_or(position as u64);
                    Ok((index, vector(item.get("embedding").ok_or("an item without `embedding`")?)?))
                })
                .collect::<Result<Vec<_>, String>>()?;
            indexed.sort_by_key(|(index, _)| *index);
            Ok(indexed.into_iter().map(|(_, v)| v).collect())
        }
        _ => json
            .get("embeddings")
            .and_then(Value::as_array)
            .ok_or("no `embeddings` list")?
            .iter()
            .map(vector)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_vectors_come_back_in_input_order() {
        let body = json!({"object": "list", "data": [
            {"object": "embedding", "index": 1, "embedding": [0.5, 0.25]},
            {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]}]});
        assert_eq!(parse(Vendor::OpenAi, &body).unwrap(), vec![vec![1.0, 0.0], vec![0.5, 0.25]]);
        let broken = json!({"data": [{"index": 0, "embedding": [1.0, "x"]}]});
        assert!(parse(Vendor::OpenAi, &broken).unwrap_err().contains("not a number"));
    }

    #[test]
    fn ollama_vectors() {
        let body = json!({"model": "all-minilm", "embeddings": [[0.1, 0.2], [0.3, 0.4]]});
        assert_eq!(parse(Vendor::Ollama, &body).unwrap().len(), 2);
        assert!(parse(Vendor::Ollama, &json!({"embedding": [0.1]})).unwrap_err().contains("`embeddings`"));
    }
}
