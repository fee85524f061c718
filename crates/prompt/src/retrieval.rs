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

/// Loads the embedding model that ranks passages, when retrieval first needs it: a prompt
/// whose documents fit never loads it.
#[derive(Clone)]
pub struct PassageRanker(
    pub Arc<dyn Fn() -> std::result::Result<Arc<dyn EmbeddingModel>, String> + Send + Sync>,
);

impl PassageRanker {
    /// A ranker over a model already loaded.
    pub fn of(model: Arc<dyn EmbeddingModel>) -> PassageRanker {
        PassageRanker(Arc::new(move || Ok(model.clone())))
    }
}

impl std::fmt::Debug for PassageRanker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PassageRanker")
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
    let embedder = (ranker.0)().map_err(|e| PromptError::invalid("retrieval", e))?;
    let mut texts = vec![fitting.prompt.task.clone()];
    texts.extend(passages.iter().map(|p| p.text.clone()));
    let mut vectors = embedder.embed(&texts).await?;
    if vectors.len() != texts.len() {
        return Err(PromptError::invalid(
            "retrieval",
            format!("{} returned {} vectors for {} texts", embedder.name(), vectors.len(), texts.len()),
        ));
    }
    vectors.iter_mut().for_each(|v| {
        normalize(v);
    });
    let (task, passage_vectors) = vectors.split_first().expect("the task is embedded first");
    let mut ranked: Vec<(usize, f32)> = passage_vectors.iter().map(|v| dot(task, v)).enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));

    // The best `count` passages, in document order.
    let best = |count: usize| {
        let mut indices: Vec<usize> = ranked[..count].iter().map(|&(index, _)| index).collect();
        indices.sort_unstable();
        in_order(&passages, &indices)
    };
    // The most passages, taken best first, that fit: a passage that does not fit ends the
    // filling, so that a lower-ranked one never takes the place of a better one. Fitting only
    // shrinks as passages are added, so the count is found by binary search over exact counts.
    let (mut fitting_count, mut too_many) = (0, ranked.len() + 1);
    while too_many - fitting_count > 1 {
        let mid = (fitting_count + too_many) / 2;
        let budget = fitting.budget(&best(mid))?;
        if budget.fits() {
            fitting_count = mid;
        } else if mid == 1 {
            return Err(budget.overflow());
        } else {
            too_many = mid;
        }
    }
    let retrieval = Retrieval {
        kept: ranked[..fitting_count]
            .iter()
            .map(|&(index, score)| Retrieved { source: passages[index].source.clone(), score })
            .collect(),
        passages: passages.len(),
    };
    Ok((best(fitting_count), retrieval))
}

fn in_order(passages: &[Document], indices: &[usize]) -> Vec<Document> {
    indices.iter().map(|&i| passages[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;
    use crate::budget::tests::WordCounter;
    use crate::render::{Layout, Prompt};
    use temper_testkit::HashedWords;

    fn long_document() -> Document {
        // Stop words, which HashedWords skips: only the two real sentences point anywhere.
        let filler = |n: usize| vec!["and the"; n].join(" ");
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
        let ranker = PassageRanker::of(Arc::new(HashedWords));
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
        let ranker = PassageRanker::of(Arc::new(HashedWords));
        let err = block_on(retrieve(&fitting, &[long_document()], &ranker)).unwrap_err().to_string();
        assert!(err.contains("context window is 60 tokens"), "{err}");
    }
}
