//! Grounded answers: the retrieved chunks, numbered, fitted into the chat model's context
//! window with room left for the answer, and an answer whose `[n]` citations can only name
//! those chunks.

use std::collections::HashSet;

use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use temper_core::{
    collect_response, ChatModel, ChatRequest, ChatResponse, EventStream, GenerationParams, Message,
    StreamEvent, TokenCounter,
};
use temper_ground::{content_words, Grounding, Mode, Passage};

use crate::chunk::tokens_or_bytes;
use crate::retrieve::{Hit, Retriever, SearchOptions};
use crate::{RagError, Result};

/// What `ask` says when no retrieved chunk is relevant, instead of letting the model guess.
pub const NOT_IN_DOCUMENTS: &str = "The documents do not contain the answer to this question.";

/// The least cosine similarity between question and chunk for the chunk to count as relevant,
/// for all-MiniLM-L6-v2. In the sentence-transformers reference vectors
/// (`crates/embed/tests/fixtures/all-minilm-l6-v2`), every pair of unrelated texts is below 0.23 and the
/// related pairs (a paraphrase, a question and its answer) are above 0.57; 0.3 sits above
/// all the unrelated ones with a margin, and well below related ones.
pub const MIN_SIMILARITY: f32 = 0.3;

const INSTRUCTIONS: &str = "You answer questions using only the numbered sources the user gives. \
After each fact, cite the source it comes from by its number in square brackets, like [1]. \
If the sources do not contain the answer, say that the documents do not contain it.";

/// How an answer is prepared.
#[derive(Clone, Debug)]
pub struct AskOptions {
    /// Hits below this cosine similarity to the question are dropped as irrelevant.
    pub min_similarity: f32,
    /// The chat model's context window, in its tokens.
    pub context_window: usize,
    /// Tokens kept free for the answer; also its `max_tokens` unless `params` sets one.
    pub answer_tokens: usize,
    pub params: GenerationParams,
}

impl Default for AskOptions {
    fn default() -> Self {
        AskOptions {
            min_similarity: MIN_SIMILARITY,
            context_window: 4096,
            answer_tokens: 256,
            params: GenerationParams::default(),
        }
    }
}

/// A request ready for the chat model, and the sources `[1]`, `[2]`, … it refers to.
#[derive(Clone, Debug)]
pub struct GroundedRequest {
    pub request: ChatRequest,
    pub sources: Vec<Hit>,
}

/// One source as the list under an answer shows it:
/// `docs/cli.md, line 12 (The temper command > Models)`.
pub fn source_label(hit: &Hit) -> String {
    let heading = if hit.chunk.heading.is_empty() {
        String::new()
    } else {
        format!(" ({})", hit.chunk.heading.join(" > "))
    };
    format!("{}, {}{heading}", hit.chunk.path, hit.chunk.position)
}

/// A source's title, as the prompt names it: its heading path, or its file's name. Paths and
/// line numbers are noise to a small model, which tends to copy them into the answer.
pub fn source_title(hit: &Hit) -> String {
    if hit.chunk.heading.is_empty() {
        let path = std::path::Path::new(&hit.chunk.path);
        path.file_name().map_or_else(|| hit.chunk.path.clone(), |n| n.to_string_lossy().into_owned())
    } else {
        hit.chunk.heading.join(" > ")
    }
}

/// A source's text as the prompt holds it: without Markdown heading lines (the label has the
/// headings) and with hard-wrapped lines joined, paragraphs kept apart. Small models answer
/// from plain paragraphs; given Markdown, they imitate it.
fn prompt_text(hit: &Hit) -> String {
    let paragraphs: Vec<String> = hit
        .chunk
        .text
        .split("\n\n")
        .map(|p| p.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(" "))
        .filter(|p| !p.trim().is_empty())
        .collect();
    paragraphs.join("\n\n")
}

/// Builds the request from the relevant hits, best first, as many as fit; `None` when none is
/// relevant (the caller answers [`NOT_IN_DOCUMENTS`]). `count` counts the chat model's tokens.
pub fn prepare(
    question: &str,
    hits: Vec<Hit>,
    options: &AskOptions,
    count: &dyn TokenCounter,
) -> Result<Option<GroundedRequest>> {
    let relevant: Vec<Hit> = hits.into_iter().filter(|h| h.similarity >= options.min_similarity).collect();
    if relevant.is_empty() {
        return Ok(None);
    }
    let answer_tokens = options.params.max_tokens.map_or(options.answer_tokens, |m| m as usize);
    // The chat template adds a few tokens per message; 16 each is generous for ChatML.
    let fixed =
        tokens_or_bytes(count, INSTRUCTIONS) + tokens_or_bytes(count, question) + 3 * 16 + answer_tokens;
    let mut budget = options.context_window.checked_sub(fixed).ok_or_else(|| {
        RagError::invalid(
            "context window",
            format!(
                "{} tokens leave no room for sources after the instructions, the question and {answer_tokens} tokens of answer; \
                 a larger context window or a smaller max_tokens leaves room",
                options.context_window
            ),
        )
    })?;
    let mut sources = Vec::new();
    let mut context = String::new();
    for hit in relevant {
        let block = format!("[{}] {}\n{}\n\n", sources.len() + 1, source_title(&hit), prompt_text(&hit));
        let tokens = tokens_or_bytes(count, &block);
        if tokens > budget {
            break;
        }
        budget -= tokens;
        context.push_str(&block);
        sources.push(hit);
    }
    if sources.is_empty() {
        return Err(RagError::invalid(
            "context window",
            format!(
                "{} tokens cannot hold even the best source; a larger context window can",
                options.context_window
            ),
        ));
    }
    // Small models follow what comes last best, so the citation format is repeated there.
    let user = format!("Sources:\n\n{context}Question: {question}\nAnswer briefly, citing sources like [1].");
    let params = GenerationParams { max_tokens: Some(answer_tokens as u32), ..options.params.clone() };
    let request =
        ChatRequest::new(vec![Message::system(INSTRUCTIONS), Message::user(user)]).with_params(params);
    Ok(Some(GroundedRequest { request, sources }))
}

/// Retrieves the chunks for `question` and builds the grounded request from the relevant ones,
/// as [`prepare`] does; `None` when none is relevant.
pub async fn ground(
    retriever: &Retriever<'_>,
    question: &str,
    search: &SearchOptions,
    options: &AskOptions,
    count: &dyn TokenCounter,
) -> Result<Option<GroundedRequest>> {
    let hits = retriever.search(question, search).await?;
    prepare(question, hits, options, count)
}

/// The numbers in a citation like `[2]` or `[1, 3]`; `None` if `text` is not one.
fn parse_citation(text: &str) -> Option<Vec<usize>> {
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner.split(',').map(|n| n.trim().parse::<usize>().ok()).collect()
}

/// Every source number cited in `text`, in order of appearance.
pub fn citations(text: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        rest = &rest[open..];
        let close = rest.find(']').unwrap_or(rest.len());
        if let Some(numbers) = rest.get(..close + 1).and_then(parse_citation) {
            found.extend(numbers);
        }
        rest = &rest[1..];
    }
    found
}

/// Passes text through, holding back anything that may be a citation until it is complete;
/// a citation's numbers that name no source are dropped (the whole citation if none is left).
#[derive(Debug)]
pub struct CitationFilter {
    sources: usize,
    pending: String,
}

impl CitationFilter {
    pub fn new(sources: usize) -> Self {
        CitationFilter { sources, pending: String::new() }
    }

    /// The text that can be shown after `delta` arrives.
    pub fn push(&mut self, delta: &str) -> String {
        let mut out = String::new();
        for c in delta.chars() {
            if self.pending.is_empty() {
                if c == '[' {
                    self.pending.push(c);
                } else {
                    out.push(c);
                }
                continue;
            }
            self.pending.push(c);
            if c == ']' {
                out.push_str(&self.resolve());
            } else if !(c.is_ascii_digit() || c == ',' || c == ' ') || self.pending.len() > 24 {
                // Not a citation after all: let it through, re-examining a `[` that ends it.
                let text = std::mem::take(&mut self.pending);
                let (body, last) = text.split_at(text.len() - c.len_utf8());
                out.push_str(body);
                out.push_str(&self.push(last));
            }
        }
        out
    }

    /// Whatever is held back when the text ends.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    fn resolve(&mut self) -> String {
        let text = std::mem::take(&mut self.pending);
        match parse_citation(&text) {
            Some(numbers) => {
                let valid: Vec<String> = numbers
                    .into_iter()
                    .filter(|n| (1..=self.sources).contains(n))
                    .map(|n| n.to_string())
                    .collect();
                if valid.is_empty() {
                    String::new()
                } else {
                    format!("[{}]", valid.join(", "))
                }
            }
            None => text,
        }
    }
}

/// Adds a citation after each sentence the model left without one, naming the source that
/// supports it: small models often leave citations out. A source supports a sentence when it
/// holds at least half of the sentence's content words, and two or more of them; a sentence no
/// source supports gets no citation, which is itself a sign that it was not drawn from them.
#[derive(Debug)]
pub struct Attribution {
    sources: Vec<HashSet<String>>,
    sentence: String,
}

impl Attribution {
    pub fn new(sources: &[Hit]) -> Self {
        Attribution {
            sources: sources.iter().map(|h| content_words(&h.chunk.text)).collect(),
            sentence: String::new(),
        }
    }

    /// `text` (already past the [`CitationFilter`]) with citations added where sentences end.
    pub fn push(&mut self, text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            let ends = self.sentence.trim_end().ends_with(['.', '!', '?']) || c == '\n';
            if c.is_whitespace() && ends && !self.sentence.trim().is_empty() {
                out.push_str(&self.close());
            }
            out.push(c);
            self.sentence.push(c);
        }
        out
    }

    /// The citation of the last sentence, when the text ends.
    pub fn finish(&mut self) -> String {
        self.close()
    }

    fn close(&mut self) -> String {
        let sentence = std::mem::take(&mut self.sentence);
        if !citations(&sentence).is_empty() {
            return String::new();
        }
        let words = content_words(&sentence);
        let support = |source: &HashSet<String>| words.intersection(source).count();
        let best = (0..self.sources.len()).max_by_key(|&i| (support(&self.sources[i]), std::cmp::Reverse(i)));
        match best {
            Some(i) if support(&self.sources[i]) >= 2 && 2 * support(&self.sources[i]) >= words.len() => {
                format!(" [{}]", i + 1)
            }
            _ => String::new(),
        }
    }
}

/// The model's answer stream with every citation checked against `sources` and sentences the
/// model left uncited attributed to the source that supports them; the final response's text
/// is the text that was streamed.
pub fn grounded_stream(stream: EventStream, sources: &[Hit]) -> EventStream {
    let count = sources.len();
    let (mut filter, mut attribution) = (CitationFilter::new(count), Attribution::new(sources));
    let mut shown = String::new();
    let mut streamed = false;
    Box::pin(stream.flat_map(move |event| {
        let events = match event {
            Ok(StreamEvent::Delta(text)) => {
                streamed = true;
                let text = attribution.push(&filter.push(&text));
                shown.push_str(&text);
                vec![Ok(StreamEvent::Delta(text))]
            }
            Ok(StreamEvent::ToolCall(delta)) => vec![Ok(StreamEvent::ToolCall(delta))],
            Ok(StreamEvent::Restart { reason }) => {
                filter = CitationFilter::new(count);
                attribution.sentence.clear();
                shown.clear();
                streamed = false;
                vec![Ok(StreamEvent::Restart { reason })]
            }
            Ok(StreamEvent::Done(mut response)) => {
                // A backend may answer in one piece (a cache does): its text is the whole delta.
                let unstreamed = if streamed { String::new() } else { std::mem::take(&mut response.text) };
                let mut rest = attribution.push(&filter.push(&unstreamed));
                rest.push_str(&attribution.push(&filter.finish()));
                rest.push_str(&attribution.finish());
                shown.push_str(&rest);
                response.text = std::mem::take(&mut shown);
                vec![Ok(StreamEvent::Delta(rest)), Ok(StreamEvent::Done(response))]
            }
            Err(error) => vec![Err(error)],
        };
        futures::stream::iter(events)
    }))
}

/// An answer checked against its sources before it is shown.
#[derive(Clone, Debug, Serialize)]
pub struct CheckedAnswer {
    /// What is shown: the model's answer as `mode` leaves it.
    pub text: String,
    /// The model's answer, citations checked and added, before the grounding check.
    pub model_text: String,
    /// Whether what is shown declines to answer.
    pub declined: bool,
    pub grounding: Grounding,
    /// How long the check took, in milliseconds.
    pub check_ms: f64,
    #[serde(skip)]
    pub response: ChatResponse,
}

/// Collects the answer of `stream` (the model's reply to a [`GroundedRequest`] for `question`)
/// through [`grounded_stream`], checks each sentence against `sources` (asking `verifier` of
/// sentences with no number, date or name; see [`temper_ground::check`]) and renders it as
/// `mode` says. With [`Mode::Off`] the answer is checked but shown as it came.
pub async fn checked_answer(
    stream: EventStream,
    question: &str,
    sources: &[Hit],
    mode: Mode,
    verifier: Option<&dyn ChatModel>,
) -> Result<CheckedAnswer> {
    let mut response = collect_response(grounded_stream(stream, sources)).await?;
    let started = Instant::now();
    let passages: Vec<Passage> = sources.iter().map(|h| Passage::new(&h.chunk.text, &h.chunk.path)).collect();
    let grounding = temper_ground::check(question, &response.text, &passages, verifier).await?;
    let model_text = std::mem::take(&mut response.text);
    let text = match mode {
        Mode::Off => model_text.clone(),
        mode => temper_ground::render(question, &grounding, &passages, mode),
    };
    let declined = temper_ground::is_abstention(&text);
    let check_ms = started.elapsed().as_secs_f64() * 1e3;
    response.text = text.clone();
    Ok(CheckedAnswer { text, model_text, declined, grounding, check_ms, response })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filtered(sources: usize, deltas: &[&str]) -> String {
        let mut f = CitationFilter::new(sources);
        let mut out: String = deltas.iter().map(|d| f.push(d)).collect();
        out.push_str(&f.finish());
        out
    }

    #[test]
    fn citations_are_found_in_any_form() {
        assert_eq!(citations("A [1]. B [2, 3][4] and [x] [] [5"), vec![1, 2, 3, 4]);
        assert!(citations("no citations").is_empty());
    }

    #[test]
    fn the_filter_drops_citations_of_missing_sources_even_split_across_deltas() {
        assert_eq!(filtered(2, &["Paris [", "1] is big [", "7]."]), "Paris [1] is big .");
        assert_eq!(filtered(2, &["see [2, 9]"]), "see [2]");
        assert_eq!(filtered(3, &["a [b] c", " [[1]", " [0]"]), "a [b] c [[1] ");
        assert_eq!(filtered(1, &["tail ["]), "tail [");
        assert_eq!(filtered(1, &["é [1] ü"]), "é [1] ü");
    }

    fn hit(text: &str) -> Hit {
        Hit {
            chunk: crate::store::StoredChunk {
                id: 0,
                path: "a.md".into(),
                text: text.into(),
                position: crate::Position::Line(1),
                heading: Vec::new(),
                metadata: serde_json::Value::Null,
            },
            score: 0.0,
            similarity: 0.0,
            vector: Vec::new(),
        }
    }

    #[test]
    fn uncited_sentences_are_attributed_to_the_source_that_supports_them() {
        let sources = [
            hit("The ferry leaves every hour in summer and every two hours in winter."),
            hit("Skarvholmen lighthouse was first lit on 14 October 1897. It was automated in 1987."),
        ];
        let attributed = |deltas: &[&str]| {
            let mut a = Attribution::new(&sources);
            let mut out: String = deltas.iter().map(|d| a.push(d)).collect();
            out.push_str(&a.finish());
            out
        };
        assert_eq!(
            attributed(&[
                "The lighthouse was first lit in Oct",
                "ober 1897. The ferry leaves every",
                " hour."
            ]),
            "The lighthouse was first lit in October 1897. [2] The ferry leaves every hour. [1]"
        );
        assert_eq!(attributed(&["It was lit in 1897 [2]. "]), "It was lit in 1897 [2]. ", "cited already");
        // One shared word of three is not support: no citation rather than a wrong one.
        assert_eq!(attributed(&["The bridge was built in 1987."]), "The bridge was built in 1987.");
        assert_eq!(attributed(&["Summer ferry:\n- every hour\n"]), "Summer ferry: [1]\n- every hour [1]\n");
    }

    #[test]
    fn an_answer_given_in_one_piece_is_checked_as_a_streamed_one() {
        let sources = [hit("Skarvholmen lighthouse was first lit on 14 October 1897.")];
        let whole = temper_core::ChatResponse {
            text: "It was first lit in 1897 [1]. See [4].".into(),
            ..Default::default()
        };
        let stream: EventStream = Box::pin(futures::stream::iter([Ok(StreamEvent::Done(whole))]));
        let response =
            futures::executor::block_on(temper_core::collect_response(grounded_stream(stream, &sources)));
        assert_eq!(response.unwrap().text, "It was first lit in 1897 [1]. See .");
    }
}
