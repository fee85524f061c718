//! Retrieval: dense (cosine), BM25, and hybrid by reciprocal-rank fusion, with metadata
//! filters and an optional rerank stage (MMR for diversity is one).

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use temper_core::EmbeddingModel;

use crate::store::{ChunkId, Filter, StoredChunk, VectorStore};
use crate::vector::{dot, normalize};
use crate::{RagError, Result};

/// How chunks are ranked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Cosine similarity of embeddings: finds paraphrases.
    Dense,
    /// BM25 over the words: finds exact terms, names, codes.
    Bm25,
    /// Both, fused by reciprocal rank: the default, because it keeps what each finds.
    #[default]
    Hybrid,
}

impl std::str::FromStr for Mode {
    type Err = RagError;

    fn from_str(s: &str) -> Result<Mode> {
        match s.to_ascii_lowercase().as_str() {
            "dense" => Ok(Mode::Dense),
            "bm25" => Ok(Mode::Bm25),
            "hybrid" => Ok(Mode::Hybrid),
            _ => Err(RagError::invalid(format!("mode `{s}`"), "expected dense, bm25 or hybrid")),
        }
    }
}

/// The constant of reciprocal-rank fusion: a document at rank r scores 1/(K + r) per list.
/// 60 is the value of Cormack et al. (2009), which damps the weight of the very top ranks.
pub const RRF_K: f32 = 60.0;

/// What to retrieve.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchOptions {
    pub k: usize,
    pub mode: Mode,
    pub filter: Filter,
    /// Candidates each ranking contributes before fusion and reranking.
    pub candidates: usize,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions { k: 10, mode: Mode::Hybrid, filter: Filter::default(), candidates: 50 }
    }
}

/// A retrieved chunk.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    #[serde(flatten)]
    pub chunk: StoredChunk,
    /// The score of the mode: cosine, BM25, or fused reciprocal ranks (or the reranker's).
    pub score: f32,
    /// Cosine similarity of the chunk to the query, whatever the mode: what decides whether
    /// a hit is relevant at all.
    pub similarity: f32,
    #[serde(skip)]
    pub vector: Vec<f32>,
}

/// A second stage that reorders (and cuts to `k`) the first stage's candidates.
#[async_trait]
pub trait Reranker: Send + Sync {
    async fn rerank(&self, query: &str, hits: Vec<Hit>, k: usize) -> Result<Vec<Hit>>;
}

/// Maximal marginal relevance (Carbonell & Goldstein, 1998): picks, one at a time, the hit
/// that is most similar to the query and least similar to those already picked, so near
/// duplicates do not fill the results.
pub struct Mmr {
    /// 1 is pure relevance, 0 pure diversity.
    pub lambda: f32,
}

#[async_trait]
impl Reranker for Mmr {
    async fn rerank(&self, _query: &str, mut hits: Vec<Hit>, k: usize) -> Result<Vec<Hit>> {
        let mut picked: Vec<Hit> = Vec::with_capacity(k.min(hits.len()));
        while picked.len() < k && !hits.is_empty() {
            let value = |h: &Hit| {
                let redundancy =
                    picked.iter().map(|p| dot(&p.vector, &h.vector)).fold(f32::NEG_INFINITY, f32::max);
                let redundancy = if picked.is_empty() { 0.0 } else { redundancy };
                self.lambda * h.similarity - (1.0 - self.lambda) * redundancy
            };
            let best =
                (0..hits.len()).max_by(|&a, &b| value(&hits[a]).total_cmp(&value(&hits[b]))).unwrap_or(0);
            let mut hit = hits.swap_remove(best);
            hit.score = value(&hit);
            picked.push(hit);
        }
        Ok(picked)
    }
}

/// Fuses rankings: each id scores the sum of 1/(RRF_K + rank) over the lists it is in
/// (ranks from 1), best first.
pub fn reciprocal_rank_fusion(rankings: &[Vec<(ChunkId, f32)>]) -> Vec<(ChunkId, f32)> {
    let mut fused: HashMap<ChunkId, f32> = HashMap::new();
    for ranking in rankings {
        for (rank, (id, _)) in ranking.iter().enumerate() {
            *fused.entry(*id).or_default() += 1.0 / (RRF_K + rank as f32 + 1.0);
        }
    }
    let mut out: Vec<(ChunkId, f32)> = fused.into_iter().collect();
    // Ties (one list each, same rank) go to the smaller id, so results are repeatable.
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// The vector of `query`, normalised, checked to have the collection's `dimensions`.
pub async fn embed_query(embedder: &dyn EmbeddingModel, query: &str, dimensions: usize) -> Result<Vec<f32>> {
    let mut vectors = embedder.embed(&[query.to_owned()]).await?;
    let mut query_vector =
        vectors.pop().filter(|v| vectors.is_empty() && v.len() == dimensions).ok_or_else(|| {
            RagError::invalid("embedder output", format!("expected one vector of {dimensions} values"))
        })?;
    normalize(&mut query_vector);
    Ok(query_vector)
}

/// Searches one collection of a store with an embedder.
pub struct Retriever<'a> {
    pub store: &'a dyn VectorStore,
    pub embedder: &'a dyn EmbeddingModel,
    pub collection: &'a str,
    pub reranker: Option<&'a dyn Reranker>,
}

impl Retriever<'_> {
    pub async fn search(&self, query: &str, options: &SearchOptions) -> Result<Vec<Hit>> {
        let dimensions = self.check(query, options)?;
        let query_vector = embed_query(self.embedder, query, dimensions).await?;
        // With a reranker, it chooses the k among more candidates.
        let wanted = if self.reranker.is_some() { options.candidates.max(options.k) } else { options.k };
        let hits = self.search_embedded(query, &query_vector, wanted, options)?;
        match self.reranker {
            Some(reranker) => reranker.rerank(query, hits, options.k).await,
            None => Ok(hits),
        }
    }

    /// Checks the query, the options and that the collection was embedded by this embedder;
    /// the collection's dimensions.
    pub fn check(&self, query: &str, options: &SearchOptions) -> Result<usize> {
        if query.trim().is_empty() {
            return Err(RagError::invalid("query", "is empty"));
        }
        if options.k == 0 {
            return Err(RagError::invalid("k", "must be at least 1"));
        }
        let info = self.store.collection(self.collection)?;
        if info.embedder != self.embedder.name() {
            return Err(RagError::EmbedderMismatch {
                collection: info.name,
                stored: info.embedder,
                stored_dimensions: info.dimensions,
                given: self.embedder.name().to_owned(),
                given_dimensions: self.embedder.dimensions(),
            });
        }
        Ok(info.dimensions)
    }

    /// The `wanted` best chunks for `query` and its vector (from [`embed_query`]), not
    /// reranked: the part of a search that reads the store, with no await in it.
    pub fn search_embedded(
        &self,
        query: &str,
        query_vector: &[f32],
        wanted: usize,
        options: &SearchOptions,
    ) -> Result<Vec<Hit>> {
        let pool = options.candidates.max(options.k);
        let (c, f) = (self.collection, &options.filter);
        let ranked = match options.mode {
            Mode::Dense => self.store.dense_search(c, query_vector, wanted, f)?,
            Mode::Bm25 => self.store.text_search(c, query, wanted, f)?,
            Mode::Hybrid => {
                let dense = self.store.dense_search(c, query_vector, pool, f)?;
                let text = self.store.text_search(c, query, pool, f)?;
                let mut fused = reciprocal_rank_fusion(&[dense, text]);
                fused.truncate(wanted);
                fused
            }
        };
        let ids: Vec<ChunkId> = ranked.iter().map(|(id, _)| *id).collect();
        let chunks = self.store.chunks(&ids)?;
        let vectors = self.store.vectors(&ids)?;
        Ok(chunks
            .into_iter()
            .zip(vectors)
            .zip(&ranked)
            .map(|((chunk, vector), &(_, score))| Hit {
                similarity: dot(query_vector, &vector),
                chunk,
                score,
                vector,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_rewards_agreement_and_follows_the_formula() {
        let dense = vec![(1, 0.9), (2, 0.8), (3, 0.7)];
        let text = vec![(3, 12.0), (4, 9.0)];
        let fused = reciprocal_rank_fusion(&[dense, text]);
        assert_eq!(fused[0].0, 3, "in both lists beats first in one: {fused:?}");
        assert!((fused[0].1 - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-6);
        let order: Vec<ChunkId> = fused.iter().map(|f| f.0).collect();
        assert_eq!(order, vec![3, 1, 2, 4], "2 and 4 tie at rank 2; the smaller id first");
    }

    #[test]
    fn modes_parse() {
        assert_eq!("HYBRID".parse::<Mode>().unwrap(), Mode::Hybrid);
        assert_eq!("bm25".parse::<Mode>().unwrap(), Mode::Bm25);
        assert!("sparse".parse::<Mode>().unwrap_err().to_string().contains("dense, bm25 or hybrid"));
    }
}
