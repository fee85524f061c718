//! The retrieval strategy for documents that do not fit: they are cut into passages, and the
//! passages closest to the task (by an embedding model) fill the room the context window
//! leaves, shown in their documents' order so that the text still reads in sequence.

use std::sync::Arc;

use serde::Serialize;
use temper_core::EmbeddingModel;
use temper_rag::vector::{dot, normalize};

use crate::budget::Fitting;
use crate::render::Document;
use crate::{PromptError, Result};

/// Tokens per passage: small enough that several fit, large enough to hold a point whole.
pub const PASSAGE_TOKENS: usize = 160;

/// Passages embedded per request.
const EMBED_BATCH: usize = 32;

/// The embedding model that ranks passages.
#[derive(Clone)]
pub struct PassageRanker(pub Arc<dyn EmbeddingModel>);

impl std::fmt::Debug for PassageRanker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PassageRanker({})", self.0.name())
    }
}

/// What retrieval put into the prompt.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Retrieval {
    /// The passages kept, best first, with their cosine similarity to the task.
    pub kept: Vec<Retrieved>,
    /// Passages the documents were cut into.
    pub passages: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Retrieved {
    pub source: String,
    pub score: f32,
}

/// The passages of `documents` most similar to the task that fit together, in document order.
pub async fn retrieve(
    fitting: &Fitting<'_>,
    documents: &[Document],
    ranker: &PassageRanker,
) -> Result<(Vec<Document>, Retrieval)> {
    let passages = fitting.split(documents, PASSAGE_TOKENS, "passage")?;
    let mut texts = vec![fitting.prompt.task.clone()];
    texts.extend(passages.iter().map(|p| p.text.clone()));
    let mut vectors = Vec::with_capacity(texts.len());
    for batch in texts.chunks(EMBED_BATCH) {
        vectors.extend(ranker.0.embed(batch).await?);
    }
    if vectors.len() != texts.len() {
        return Err(PromptError::invalid(
            "retrieval",
            format!("{} returned {} vectors for {} texts", ranker.0.name(), vectors.len(), texts.len()),
        ));
    }
    vectors.iter_mut().for_each(|v| {
        normalize(v);
    });
    let (task, passage_vectors) = vectors.split_first().expect("the task is embedded first");
    let mut ranked: Vec<(usize, f32)> = passage_vectors.iter().map(|v| dot(task, v)).enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));

    // Best first, while they fit: a passage that does not fit ends the filling, so that a
    // lower-ranked passage never takes the place of a better one.
    let mut kept: Vec<usize> = Vec::new();
    for &(index, _) in &ranked {
        let mut trial = kept.clone();
        trial.push(index);
        trial.sort_unstable();
        if !fitting.budget(&in_order(&passages, &trial))?.fits() {
            break;
        }
        kept = trial;
    }
    if kept.is_empty() {
        return Err(fitting.budget(&in_order(&passages, &[ranked[0].0]))?.overflow());
    }
    let retrieval = Retrieval {
        kept: ranked
            .iter()
            .filter(|(index, _)| kept.binary_search(index).is_ok())
            .map(|&(index, score)| Retrieved { source: passages[index].source.clone(), score })
            .collect(),
        passages: passages.len(),
    };
    Ok((in_order(&passages, &kept), retrieval))
}

fn in_order(passages: &[Document], indices: &[usize]) -> Vec<Document> {
    indices.iter().map(|&i| passages[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use futures::executor::block_on;

    use super::*;
    use crate::budget::tests::WordCounter;
    use crate::render::{Layout, Prompt};

    /// One dimension per distinct word (of a fixed vocabulary): texts that share words point the
    /// same way.
    struct Words;

    const VOCABULARY: [&str; 6] = ["salmon", "spawn", "river", "upstream", "tax", "invoice"];

    #[async_trait]
    impl EmbeddingModel for Words {
        fn name(&self) -> &str {
            "words"
        }
        fn dimensions(&self) -> usize {
            VOCABULARY.len()
        }
        async fn embed(&self, texts: &[String]) -> temper_core::Result<Vec<Vec<f32>>> {
            Ok(texts
                .iter()
                .map(|t| {
                    let t = t.to_lowercase();
                    VOCABULARY.iter().map(|w| t.matches(w).count() as f32).collect()
                })
                .collect())
        }
    }

    fn long_document() -> Document {
        let filler = |n: usize| vec!["filler text"; n].join(" ");
        let text = format!(
            "{}\n\nSalmon swim upstream to spawn in the river where they hatched.\n\n{}\n\nThe tax invoice is due in March.\n\n{}",
            filler(300),
            filler(300),
            filler(300)
        );
        Document { source: "notes.txt".into(), text }
    }

    #[test]
    fn the_passages_closest_to_the_task_fill_the_room_in_document_order() {
        let prompt = Prompt::task("Where do salmon spawn, upstream in a river?");
        let layout = Layout::default();
        let fitting =
            Fitting { prompt: &prompt, layout: &layout, answer_tokens: 50, counter: &WordCounter(600) };
        let ranker = PassageRanker(Arc::new(Words));
        let (documents, retrieval) = block_on(retrieve(&fitting, &[long_document()], &ranker)).unwrap();
        assert!(fitting.budget(&documents).unwrap().fits());
        assert!(documents.len() > 1 && retrieval.passages > documents.len(), "{retrieval:?}");
        assert!(retrieval.kept[0].score > 0.5, "{retrieval:?}");
        assert!(documents.iter().any(|d| d.text.contains("Salmon swim upstream")), "{documents:?}");
        // Shown in the document's order, named by passage.
        let numbers: Vec<usize> =
            documents.iter().map(|d| d.source.split_whitespace().nth(2).unwrap().parse().unwrap()).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        assert!(documents[0].source.starts_with("notes.txt (passage "), "{}", documents[0].source);
    }

    #[test]
    fn a_prompt_without_room_for_any_passage_is_an_overflow() {
        let prompt = Prompt::task("Where do salmon spawn?");
        let layout = Layout::default();
        let fitting =
            Fitting { prompt: &prompt, layout: &layout, answer_tokens: 50, counter: &WordCounter(60) };
        let ranker = PassageRanker(Arc::new(Words));
        let err = block_on(retrieve(&fitting, &[long_document()], &ranker)).unwrap_err().to_string();
        assert!(err.contains("context window is 60 tokens"), "{err}");
    }
}
