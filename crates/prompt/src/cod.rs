//! Chain of density: a sparse summary of a fixed length, then rounds that each name 1–3
//! informative entities the summary misses and rewrite it at the same length to hold them too.
//!
//! A round is small requests, because a small model manages each alone far better than all in
//! one reply:
//! - the missing entities as a list (JSON, repaired, or the quoted or bare items of the reply),
//!   kept only if they are in the article as whole words and new. The whole article is asked
//!   about first, then one passage at a time, the one the summary covers least first;
//! - the rewritten summary, kept only if its length is within ±20% of the target, it holds at
//!   least one new entity and it keeps every entity the previous summary held;
//! - when every rewrite fails those checks, one sentence that mentions the new entities, spliced
//!   into the previous summary in place of the fewest sentences whose loss keeps every entity
//!   (the uninformative phrases the method removes first) that bring it back within ±20%.
//!
//! Length is held by the reply, not by the check: a summary over the window is cut back to its
//! last whole sentence that ends inside it (a small model that overshoots has usually written
//! the summary and kept going); one with no sentence end inside the window, or too short, is
//! refused. A refused reply is asked again afresh, sampled, without showing it: shown its reply
//! and the reason, the default 135M model copies the reply or answers in prose. When no reply
//! names a usable entity, those an earlier round named but its summary left out stand in; the
//! entities of a round whose summary failed are not asked for again. A round that never passes
//! is reported and the last good summary kept.
//! Entity density is the entities added so far that the summary holds, per word.

use serde::Serialize;
use serde_json::Value;
use temper_core::{ChatModel, GenerationParams, Message};

use crate::json::extract_json;
use crate::retry::{ask_until, Checked, Retry, ATTEMPTS};
use crate::{PromptError, Result};

/// How a chain of density runs.
#[derive(Clone, Debug)]
pub struct CodOptions {
    /// Rounds, the first (sparse) summary included.
    pub rounds: usize,
    /// The length of every summary, in words.
    pub words: usize,
    pub params: GenerationParams,
}

impl CodOptions {
    /// Refuses what cannot be summarized, before any model call: too few rounds or words, or
    /// an article with no text.
    pub fn check(&self, article: &str) -> Result<()> {
        if self.rounds == 0 || self.words < 10 {
            return Err(PromptError::invalid("chain of density", "needs at least 1 round and 10 words"));
        }
        if article.trim().is_empty() {
            return Err(PromptError::invalid("article", "it is empty: there is nothing to summarize"));
        }
        Ok(())
    }
}

impl Default for CodOptions {
    fn default() -> Self {
        CodOptions { rounds: 5, words: 80, params: GenerationParams::default() }
    }
}

/// One round's summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CodRound {
    /// The entities this round added (those it named that the summary holds).
    pub missing_entities: Vec<String>,
    pub summary: String,
    pub words: usize,
    /// Entities named so far that the summary holds, per word.
    pub entity_density: f64,
    /// Requests this round made.
    pub attempts: usize,
    /// The model's rewrites all failed the checks, so it wrote only a sentence holding the new
    /// entities, and sentences of the previous summary that hold no entity made room for it.
    pub spliced: bool,
    /// Why the round failed, when it did (its summary is then the last good one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every round, in order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CodReport {
    pub rounds: Vec<CodRound>,
}

const SYSTEM: &str = "You help write dense summaries of articles.";

/// Runs the chain of density over `article`.
pub async fn summarize(model: &dyn ChatModel, article: &str, options: &CodOptions) -> Result<CodReport> {
    options.check(article)?;
    let article = article.trim();
    let mut report = CodReport::default();
    // Entities added so far; named by any round; named by a round whose summary failed.
    let (mut known, mut named, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_good: Option<String> = None;
    for _ in 0..options.rounds {
        let previous = last_good.as_deref();
        let avoid = [known.as_slice(), failed.as_slice()].concat();
        let round = match missing_entities(model, article, previous, &avoid, &named, options).await {
            Ok((entities, asked)) => {
                named.extend(entities.iter().cloned());
                let written = write_summary(model, article, previous, &known, &entities, options).await;
                if written.is_err() {
                    // The next round looks for others rather than fail on the same ones.
                    failed.extend(entities);
                }
                written.map(|w| Written { requests: w.requests + asked, ..w }).map_err(|e| e.after(asked))
            }
            Err(error) => Err(error),
        };
        let round = match round {
            Ok(Written { held, summary, requests, spliced }) => {
                known.extend(held.iter().cloned());
                last_good = Some(summary.clone());
                CodRound { spliced, ..measured(held, summary, &known, requests, None) }
            }
            Err(PromptError::Unusable { what, attempts, reason }) => {
                let summary = last_good.clone().unwrap_or_default();
                measured(Vec::new(), summary, &known, attempts, Some(format!("{what}: {reason}")))
            }
            Err(other) => return Err(other),
        };
        report.rounds.push(round);
    }
    Ok(report)
}

/// A round's summary that passed.
struct Written {
    /// The round's entities that the summary holds.
    held: Vec<String>,
    summary: String,
    /// Requests made.
    requests: usize,
    spliced: bool,
}

/// A system message, one worked exchange, then the request: small models copy a shown format
/// far better than a described one.
fn with_example(example: String, reply: &str, request: String) -> Vec<Message> {
    vec![Message::system(SYSTEM), Message::user(example), Message::assistant(reply), Message::user(request)]
}

/// The 1–3 entities a round adds, and the requests it took. The first round names the
/// article's main entities; a later one, entities of the article that `previous` misses and
/// that are not in `avoid`. Each asks about the whole article first (the first round up to
/// [`ATTEMPTS`] times, a rewrite round once); the default model then tends to repeat the
/// example or what the summary holds, so later requests ask about one passage at a time, the
/// one the summary covers least first: a short text it lists names from well. Entities `named`
/// by earlier rounds and still missing stand in when no reply names a usable one: they are the
/// model's own choice too.
async fn missing_entities(
    model: &dyn ChatModel,
    article: &str,
    previous: Option<&str>,
    avoid: &[String],
    named: &[String],
    options: &CodOptions,
) -> Result<(Vec<String>, usize)> {
    let summary = previous.unwrap_or("");
    let whole = match previous {
        None => (
            with_example(
                entities_request(EXAMPLE_ARTICLE, None),
                EXAMPLE_FIRST_ENTITIES,
                entities_request(article, None),
            ),
            ATTEMPTS,
        ),
        Some(_) => (
            with_example(
                entities_request(EXAMPLE_ARTICLE, Some(EXAMPLE_SUMMARY)),
                EXAMPLE_MISSING_ENTITIES,
                entities_request(article, previous),
            ),
            1,
        ),
    };
    let passages = least_covered_passages(article, summary);
    let by_passage = passages.iter().take(MAX_PASSAGES).map(|passage| {
        let request = passage_request(passage);
        (with_example(passage_request(EXAMPLE_PASSAGE), EXAMPLE_MISSING_ENTITIES, request), 1)
    });
    let params = GenerationParams { max_tokens: Some(48), ..options.params.clone() };
    let check = |text: &str| check_entities(text, article, summary, avoid);
    let mut requests = 0;
    let mut reason = String::new();
    for (messages, attempts) in std::iter::once(whole).chain(by_passage) {
        match ask_until(model, messages, &params, attempts, "missing entities", check, Retry::Afresh, None)
            .await
        {
            Ok(checked) => return Ok((checked.value, requests + checked.requests)),
            Err(PromptError::Unusable { attempts, reason: why, .. }) => {
                requests += attempts;
                reason = why;
            }
            Err(other) => return Err(other),
        }
    }
    let still_missing = usable_entities(named.iter().map(String::as_str), article, summary, avoid);
    if still_missing.is_empty() {
        return Err(PromptError::Unusable { what: "missing entities".into(), attempts: requests, reason });
    }
    Ok((still_missing, requests))
}

/// What a round's summary must be: within ±20% of `words` long, holding every entity of
/// `keep` (those of the summary before it) and denser in entities than that summary was.
struct Target<'a> {
    words: usize,
    keep: Vec<&'a String>,
    /// The entity density of the summary before: `keep` per word of it (0 for the first).
    floor: f64,
}

impl<'a> Target<'a> {
    fn new(words: usize, previous: Option<&str>, known: &'a [String]) -> Self {
        let previous = previous.unwrap_or("");
        let keep: Vec<&String> = known.iter().filter(|e| contains(previous, e)).collect();
        let floor = if keep.is_empty() { 0.0 } else { keep.len() as f64 / word_count(previous) as f64 };
        Target { words, keep, floor }
    }

    /// The shortest and longest length accepted.
    fn window(&self) -> (usize, usize) {
        (self.words * 4 / 5, self.words * 6 / 5)
    }

    /// Why a summary of `count` words that holds `new` new entities cannot be kept, if it can't.
    /// It must already be known to be in the window.
    fn refuse(&self, summary: &str, new: usize, count: usize) -> Option<String> {
        let lost: Vec<&str> =
            self.keep.iter().filter(|e| !contains(summary, e)).map(|e| e.as_str()).collect();
        if !lost.is_empty() {
            return Some(format!("the summary must keep {}", lost.join(", ")));
        }
        let density = (self.keep.len() + new) as f64 / count as f64;
        (density <= self.floor).then(|| {
            format!("its entity density {density:.3} is not above the summary's before it, {:.3}", self.floor)
        })
    }
}

/// The round's summary: the first, sparse one, or `previous` rewritten to hold `entities`
/// too while keeping the entities of `known` it holds. When every rewrite fails the checks,
/// the model writes only a sentence with the entities and it is spliced in.
async fn write_summary(
    model: &dyn ChatModel,
    article: &str,
    previous: Option<&str>,
    known: &[String],
    entities: &[String],
    options: &CodOptions,
) -> Result<Written> {
    let words = options.words;
    let request = summary_request(article, previous, words, &entities.join(", "));
    let instruction = last_paragraph(&request).to_owned();
    // The first summary follows a worked example; a rewrite does not, because the model copies
    // the example's length rather than the one asked for.
    let messages = match previous {
        None => with_example(
            summary_request(EXAMPLE_ARTICLE, None, EXAMPLE_WORDS, "the Eiffel Tower, Paris"),
            EXAMPLE_SUMMARY,
            request,
        ),
        Some(_) => vec![Message::system(SYSTEM), Message::user(request)],
    };
    let params = GenerationParams { max_tokens: Some(words as u32 * 3), ..options.params.clone() };
    let target = Target::new(words, previous, known);
    let check = |text: &str| match echoes(text, &instruction) {
        true => Err("the summary repeats the request".to_owned()),
        false => check_summary(text, entities, &target),
    };
    let rewritten =
        ask_until(model, messages, &params, ATTEMPTS, "summary", check, Retry::Afresh, None).await;
    let (checked, spliced) = match (rewritten, previous) {
        (Ok(checked), _) => (checked, false),
        (Err(PromptError::Unusable { attempts, .. }), Some(previous)) => {
            let checked = splice(model, article, previous, &target, entities, options)
                .await
                .map_err(|e| e.after(attempts))?;
            (Checked { requests: checked.requests + attempts, ..checked }, true)
        }
        (Err(error), _) => return Err(error),
    };
    let (held, summary) = checked.value;
    Ok(Written { held, summary, requests: checked.requests, spliced })
}

/// The rewrite of a model that cannot rewrite at length: it writes one sentence of the article
/// that holds the new entities, and sentences of the previous summary whose loss keeps every
/// entity of the target make room for it (the uninformative phrases chain of density removes
/// first).
async fn splice(
    model: &dyn ChatModel,
    article: &str,
    previous: &str,
    target: &Target<'_>,
    entities: &[String],
    options: &CodOptions,
) -> Result<Checked<(Vec<String>, String)>> {
    let request = sentence_request(article, &entities.join(", "));
    let instruction = last_paragraph(&request).to_owned();
    let messages =
        with_example(sentence_request(EXAMPLE_ARTICLE, "Gustave Eiffel, 1889"), EXAMPLE_SENTENCE, request);
    // Words of the sentence besides the entities: a bare list of them is no sentence.
    let own_words = |sentence: &str| {
        let rest =
            entities.iter().fold(sentence.to_lowercase(), |rest, e| rest.replace(&e.to_lowercase(), " "));
        rest.split_whitespace().filter(|w| w.chars().any(char::is_alphanumeric)).count()
    };
    let params = GenerationParams { max_tokens: Some(options.words as u32), ..options.params.clone() };
    let check = |text: &str| {
        // A whole sentence only: a reply that runs on without an end is a list, not a sentence.
        let sentence = split_sentences(text.trim())
            .into_iter()
            .filter(|s| is_whole_sentence(s) && own_words(s) >= MIN_OWN_WORDS && !echoes(s, &instruction))
            .find(|s| entities.iter().any(|e| contains(s, e)))
            .ok_or_else(|| format!("no whole sentence of its own words mentions {}", entities.join(", ")))?;
        let held: Vec<String> = entities.iter().filter(|e| contains(sentence, e)).cloned().collect();
        let summary = make_room(previous, sentence, held.len(), target)?;
        Ok((held, summary))
    };
    ask_until(model, messages, &params, ATTEMPTS, "spliced summary", check, Retry::Afresh, None).await
}

/// Words a spliced sentence needs besides its entities.
const MIN_OWN_WORDS: usize = 6;

/// The last paragraph of a request: its instruction.
fn last_paragraph(request: &str) -> &str {
    request.rsplit("\n\n").next().unwrap_or_default()
}

/// Whether `reply` repeats six words in a row of `instruction`: a small model echoing it.
fn echoes(reply: &str, instruction: &str) -> bool {
    let words = |text: &str| text.split_whitespace().map(bare_word).collect::<Vec<_>>();
    let reply = format!(" {} ", words(reply).join(" "));
    words(instruction).windows(6).any(|run| reply.contains(&format!(" {} ", run.join(" "))))
}

fn sentence_request(article: &str, entities: &str) -> String {
    format!(
        "Article:\n{article}\n\nWrite one short sentence, taken from the article, that mentions {entities}. \
         Reply with the sentence only."
    )
}

/// `previous` with `sentence` (holding `new` new entities) added at its end and sentences of it
/// dropped to meet `target`: the length closest to its words, then the fewest dropped.
fn make_room(
    previous: &str,
    sentence: &str,
    new: usize,
    target: &Target<'_>,
) -> std::result::Result<String, String> {
    let (low, high) = target.window();
    let old = split_sentences(previous);
    // Summaries are a handful of sentences; a longer run-on is left whole.
    let choices = if old.len() <= 12 { 1u32 << old.len() } else { 1 };
    let mut best: Option<(usize, u32, String)> = None;
    for dropped in 0..choices {
        let kept = (0..old.len()).filter(|i| dropped & (1 << i) == 0).map(|i| old[i]);
        let text = kept.chain([sentence]).collect::<Vec<_>>().join(" ");
        let count = word_count(&text);
        if count < low || count > high || target.refuse(&text, new, count).is_some() {
            continue;
        }
        let rank = (count.abs_diff(target.words), dropped.count_ones());
        if best.as_ref().is_none_or(|(off, n, _)| rank < (*off, *n)) {
            best = Some((rank.0, rank.1, text));
        }
    }
    let keep: Vec<&str> = target.keep.iter().map(|e| e.as_str()).collect();
    best.map(|(_, _, text)| text).ok_or_else(|| {
        format!(
            "the sentence ({} words) and the summary's sentences make no summary of {low} to {high} words that keeps {} \
             and is denser than {:.3}",
            word_count(sentence),
            if keep.is_empty() { "its entities".to_owned() } else { keep.join(", ") },
            target.floor
        )
    })
}

/// The sentences of `text`, each ending as [`ends_sentence`] says.
fn split_sentences(text: &str) -> Vec<&str> {
    let mut sentences = Vec::new();
    let mut start = 0;
    let mut words = text.split_whitespace().peekable();
    while let Some(word) = words.next() {
        if ends_sentence(word, words.peek().copied()) {
            // `word` is a slice of `text`, so its end is an offset into `text`.
            let end = word.as_ptr() as usize - text.as_ptr() as usize + word.len();
            sentences.push(text[start..end].trim());
            start = end;
        }
    }
    if !text[start..].trim().is_empty() {
        sentences.push(text[start..].trim());
    }
    sentences
}

fn entities_request(article: &str, previous: Option<&str>) -> String {
    match previous {
        None => format!(
            "Article:\n{article}\n\nList 1 to 3 key names, places or numbers from the article as a JSON array."
        ),
        Some(summary) => format!(
            "Article:\n{article}\n\nSummary:\n{summary}\n\nList 1 to 3 names, places or numbers from the article that \
             the summary does not mention, as a JSON array."
        ),
    }
}

fn passage_request(passage: &str) -> String {
    format!("Text:\n{passage}\n\nList 1 to 3 key names, places or numbers from the text as a JSON array.")
}

/// Passages of the article to ask about one at a time, the one whose words `summary` holds the
/// smallest share of first (in article order while there is no summary). A passage is a
/// paragraph of 8 words or more (not a title), a long one cut at sentence ends into parts of
/// about `PASSAGE_WORDS`.
fn least_covered_passages(article: &str, summary: &str) -> Vec<String> {
    let summary_words: Vec<String> = summary.split_whitespace().map(bare_word).collect();
    let mut passages: Vec<(usize, String)> = article
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| word_count(p) >= 8)
        .flat_map(|p| {
            let mut parts: Vec<String> = Vec::new();
            for sentence in split_sentences(&p) {
                match parts.last_mut() {
                    Some(part) if word_count(part) + word_count(sentence) <= PASSAGE_WORDS => {
                        part.push(' ');
                        part.push_str(sentence);
                    }
                    _ => parts.push(sentence.to_owned()),
                }
            }
            parts
        })
        .map(|p| {
            let words: Vec<String> = p.split_whitespace().map(bare_word).filter(|w| w.len() > 3).collect();
            let covered = words.iter().filter(|w| summary_words.contains(w)).count();
            // Per mille, so that passages compare as whole numbers.
            (covered * 1000 / words.len().max(1), p)
        })
        .collect();
    passages.sort_by_key(|(share, _)| *share);
    passages.into_iter().map(|(_, p)| p).collect()
}

/// About how many words a passage asked about alone has: a few sentences.
const PASSAGE_WORDS: usize = 70;

/// The most passages a round asks about: each request is short, and greedy requests about the
/// same text give the same reply, so a round that failed on some passages tries others.
const MAX_PASSAGES: usize = 6;

/// A word in lower case, without the punctuation around it.
fn bare_word(word: &str) -> String {
    word.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase()
}

fn summary_request(article: &str, previous: Option<&str>, words: usize, entities: &str) -> String {
    let sentences = (words / 16).max(1);
    match previous {
        None => format!(
            "Article:\n{article}\n\nWrite a general summary of the article in about {words} words ({sentences} sentences). \
             Mention {entities}, but few other specifics. Reply with the summary only."
        ),
        Some(summary) => format!(
            "Article:\n{article}\n\nSummary:\n{summary}\n\nRewrite the summary so that it also mentions {entities}, in a new \
             clause or sentence. Keep it about {words} words ({sentences} sentences): make room by fusing and shortening \
             phrases, not by dropping facts. Reply with the summary only."
        ),
    }
}

const EXAMPLE_WORDS: usize = 32;
const EXAMPLE_ARTICLE: &str = "The Eiffel Tower was built by Gustave Eiffel's company for the 1889 World's Fair in \
Paris. It is 330 metres tall and was the tallest structure in the world until 1930. Many artists first called it ugly, \
but it became the symbol of France and now has about six million visitors a year.";
const EXAMPLE_FIRST_ENTITIES: &str = "[\"Eiffel Tower\", \"Paris\"]";
const EXAMPLE_SUMMARY: &str =
    "This article is about the Eiffel Tower, a famous building in Paris. It tells how the tower \
was built, how tall it is, what people first thought of it, and how many people come to visit it.";
const EXAMPLE_MISSING_ENTITIES: &str = "[\"Gustave Eiffel\", \"1889\", \"330 metres\"]";
const EXAMPLE_PASSAGE: &str =
    "The Eiffel Tower was built by Gustave Eiffel's company for the 1889 World's Fair in \
Paris. It is 330 metres tall and was the tallest structure in the world until 1930.";
const EXAMPLE_SENTENCE: &str = "Gustave Eiffel's company built the tower for the 1889 World's Fair.";
/// Accepts a list of entities, keeping the usable ones.
fn check_entities(
    text: &str,
    article: &str,
    summary: &str,
    known: &[String],
) -> std::result::Result<Vec<String>, String> {
    let listed = listed_items(text)?;
    let entities = usable_entities(listed.iter().map(String::as_str), article, summary, known);
    if entities.is_empty() {
        return Err("none of those is both in the article and missing from the summary".into());
    }
    Ok(entities)
}

/// The strings a reply lists: a JSON array of them (or an object holding one); failing that,
/// the quoted strings of the reply (`[1]. "Fleming" [2]. "1928"`), or its items between commas
/// and line breaks, without brackets or list markers (`[Comets, Solar System]`, `[1] 1928,
/// St. Mary's`): lists small models write.
fn listed_items(text: &str) -> std::result::Result<Vec<String>, String> {
    let strings = |items: &[Value]| -> Vec<String> {
        items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
    };
    let parsed = extract_json(text).map(|value| match &value {
        Value::Array(items) => strings(items),
        Value::Object(fields) => fields.values().find_map(Value::as_array).map_or(Vec::new(), |a| strings(a)),
        _ => Vec::new(),
    });
    if parsed.as_ref().is_ok_and(|items| !items.is_empty()) {
        return parsed;
    }
    let text = text.replace(['\u{201C}', '\u{201D}'], "\"");
    let quoted: Vec<String> = text.split('"').skip(1).step_by(2).map(str::to_owned).collect();
    if !quoted.is_empty() {
        return Ok(quoted);
    }
    let items: Vec<String> = text.split([',', '\n']).map(without_marker).filter(|i| !i.is_empty()).collect();
    if items.is_empty() {
        return parsed;
    }
    Ok(items)
}

/// A list item without its brackets and its marker (`[1]`, `2.`, `3)`).
fn without_marker(item: &str) -> String {
    let item = item.trim().trim_start_matches('[');
    let digits = item.len() - item.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let item = match item[digits..].strip_prefix([']', '.', ')']) {
        Some(rest) if digits > 0 => rest,
        _ => item,
    };
    item.trim().trim_matches(['[', ']', '.']).trim().to_owned()
}

/// The first 3 of `candidates` that are in the article, neither in the summary so far nor in
/// `known`.
fn usable_entities<'a>(
    candidates: impl Iterator<Item = &'a str>,
    article: &str,
    summary: &str,
    known: &[String],
) -> Vec<String> {
    let mut entities: Vec<String> = Vec::new();
    for entity in candidates.map(str::trim) {
        let new = !known.iter().chain(&entities).any(|k| k.eq_ignore_ascii_case(entity));
        let missing = contains(article, entity) && !contains(summary, entity);
        // One character (`1`, `a`) names nothing.
        if entity.chars().count() > 1 && new && missing && entities.len() < 3 {
            entities.push(entity.to_owned());
        }
    }
    entities
}

/// Accepts a summary within ±20% of `words` that holds at least one of `entities`; returns the
/// entities it holds and the summary. A longer one is cut back to its last whole sentence that
/// ends inside that window: a small model that overshoots has usually written the summary asked
/// for and then kept going, and a cut there loses nothing but the overshoot.
fn check_summary(
    text: &str,
    entities: &[String],
    target: &Target<'_>,
) -> std::result::Result<(Vec<String>, String), String> {
    let summary = text.trim().trim_matches('"').trim();
    let count = word_count(summary);
    let (low, high) = target.window();
    let off_length = || format!("the summary has {count} words; it must have {low} to {high}");
    let summary = if count > high {
        cut_to_sentence(summary, low, high).ok_or_else(off_length)?
    } else if count < low {
        return Err(off_length());
    } else {
        summary
    };
    let held: Vec<String> = entities.iter().filter(|e| contains(summary, e)).cloned().collect();
    if held.is_empty() {
        return Err(format!("the summary must mention {}", entities.join(", ")));
    }
    if let Some(why) = target.refuse(summary, held.len(), word_count(summary)) {
        return Err(why);
    }
    Ok((held, summary.to_owned()))
}

/// `text` up to the end of its last sentence that ends after word `low` and by word `high`.
fn cut_to_sentence(text: &str, low: usize, high: usize) -> Option<&str> {
    let mut cut = None;
    let mut count = 0;
    for sentence in split_sentences(text) {
        count += word_count(sentence);
        if count > high {
            break;
        }
        if count >= low && is_whole_sentence(sentence) {
            // `sentence` is a slice of `text`, so its end is an offset into `text`.
            cut = Some(sentence.as_ptr() as usize - text.as_ptr() as usize + sentence.len());
        }
    }
    cut.map(|end| &text[..end])
}

/// Whether `text` ends as a sentence does (the last piece of [`split_sentences`] may not).
fn is_whole_sentence(text: &str) -> bool {
    text.split_whitespace().last().is_some_and(|word| ends_sentence(word, None))
}

/// Whether `word` ends a sentence, given the word after it: it ends in `.`, `!` or `?` (perhaps
/// followed by closing quotes or brackets), and the next word, if any, starts like a sentence.
/// An abbreviation or initial (`Dr.`, `U.S.`, `J.`) is not an end.
fn ends_sentence(word: &str, next: Option<&str>) -> bool {
    let bare = word.trim_end_matches(['"', '\'', '\u{201D}', '\u{2019}', ')', ']']);
    let starts_sentence = |next: &str| {
        next.chars()
            .next()
            .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit() || "\"'\u{201C}\u{2018}([".contains(c))
    };
    if !next.is_none_or(starts_sentence) {
        return false;
    }
    if bare.ends_with(['!', '?']) {
        return true;
    }
    let Some(stem) = bare.strip_suffix('.') else { return false };
    let letters = stem.trim_start_matches(['"', '\'', '\u{201C}', '\u{2018}', '(', '[']);
    let abbreviation = letters.contains('.')
        || letters.chars().count() == 1
        || ["Mr", "Mrs", "Ms", "Dr", "St", "Prof", "Jr", "Sr", "Mt", "No", "vs"].contains(&letters);
    !abbreviation
}

fn measured(
    missing_entities: Vec<String>,
    summary: String,
    known: &[String],
    attempts: usize,
    error: Option<String>,
) -> CodRound {
    let words = word_count(&summary);
    let present = known.iter().filter(|e| contains(&summary, e)).count();
    let entity_density = if words == 0 { 0.0 } else { present as f64 / words as f64 };
    CodRound { missing_entities, summary, words, entity_density, attempts, spliced: false, error }
}

fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Whether `text` holds `entity` as whole words, in any case: `19` is not in `1928`.
fn contains(text: &str, entity: &str) -> bool {
    let (text, entity) = (text.to_lowercase(), entity.to_lowercase());
    let alphanumeric = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    text.match_indices(&entity).any(|(start, _)| {
        !alphanumeric(text[..start].chars().next_back())
            && !alphanumeric(text[start + entity.len()..].chars().next())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripted::{block_on, Scripted};

    /// The round's request in a conversation: its last message about an article or a passage
    /// (retries append the model's reply and the reason after it).
    fn request_of(r: &temper_core::ChatRequest) -> &str {
        let about_text = |m: &&Message| m.content.starts_with("Article:") || m.content.starts_with("Text:");
        let mut requests = r.messages.iter().filter(about_text);
        requests.next_back().map(|m| m.content.as_str()).unwrap_or("")
    }

    const ARTICLE: &str = "Apollo 11 landed on the Moon in 1969 with Armstrong and Aldrin.";
    const ENTITIES: [&str; 4] = ["Apollo", "Moon", "1969", "Armstrong"];

    /// Names the first entity the summary it is given misses; writes a summary of 20 words with
    /// the entities of the summary it is given and of its instruction (the last paragraph).
    fn model() -> Scripted {
        Scripted::new(|r| {
            let user = request_of(r);
            let summary = user.split("Summary:\n").nth(1).unwrap_or("");
            if user.contains("JSON array") {
                let held = ENTITIES.iter().filter(|e| summary.contains(*e)).count();
                return format!("[\"{}\"]", ENTITIES[held]);
            }
            let instruction = user.rsplit("\n\n").next().unwrap();
            let mut words: Vec<&str> =
                ENTITIES.into_iter().filter(|e| summary.contains(e) || instruction.contains(e)).collect();
            words.resize(20, "filler");
            words.join(" ")
        })
    }

    #[test]
    fn rounds_keep_their_length_add_entities_and_densify() {
        let options = CodOptions { rounds: 4, words: 20, ..CodOptions::default() };
        let report = block_on(summarize(&model(), ARTICLE, &options)).unwrap();
        let densities: Vec<f64> = report.rounds.iter().map(|r| r.entity_density).collect();
        assert_eq!(densities, vec![1.0 / 20.0, 2.0 / 20.0, 3.0 / 20.0, 4.0 / 20.0], "{report:?}");
        assert_eq!(report.rounds[1].missing_entities, vec!["Moon"]);
        assert!(report.rounds.iter().all(|r| r.words == 20 && r.error.is_none() && r.attempts == 2));
    }

    #[test]
    fn a_round_that_never_passes_is_reported_and_the_last_good_summary_kept() {
        // Good first round; later, the whole article and each passage get only what the
        // summary holds.
        let model = Scripted::new(|r| {
            let user = request_of(r);
            match (user.contains("Summary:"), user.contains("JSON array")) {
                (false, true) if r.messages.len() == 4 && user.starts_with("Article:") => "[\"Rome\"]".into(),
                (_, true) => "The names are \"Rome\" and \"Paris\".".into(),
                (_, false) => format!("Rome {}", "word ".repeat(11)),
            }
        });
        let options = CodOptions { rounds: 2, words: 12, ..CodOptions::default() };
        let article = "Rome is the capital city of Italy and very old.\n\nOslo is the capital of Norway, and very cold.";
        let report = block_on(summarize(&model, article, &options)).unwrap();
        let failed = &report.rounds[1];
        assert_eq!(failed.summary, report.rounds[0].summary);
        // The whole article once, then each of its two passages.
        assert_eq!(failed.attempts, 3);
        let error = failed.error.as_deref().unwrap();
        assert!(error.starts_with("missing entities: none of those"), "{error}");
        let prompts = model.prompts();
        assert_eq!(prompts.len(), 2 + 3);
        assert!(
            prompts[3].starts_with("Text:\nOslo is the capital") && prompts[4].starts_with("Text:\nRome")
        );
    }

    #[test]
    fn entities_named_before_and_still_missing_stand_in_when_no_reply_names_one() {
        // The first list names Rome and Oslo, the summary takes only Rome; later lists name
        // only what the summary holds, so round 2 adds Oslo and round 3 has nothing left.
        let model = Scripted::new(|r| {
            let user = request_of(r);
            match (user.contains("Summary:"), user.contains("JSON array")) {
                (false, true) => "[\"Rome\", \"Oslo\"]".into(),
                (true, true) => "[\"Rome\"]".into(),
                (false, false) => format!("Rome {}", "word ".repeat(11)),
                (true, false) => format!("Rome and Oslo {}", "word ".repeat(9)),
            }
        });
        let options = CodOptions { rounds: 3, words: 12, ..CodOptions::default() };
        let report = block_on(summarize(&model, "Rome is in Italy, Oslo in Norway.", &options)).unwrap();
        let added: Vec<_> = report.rounds.iter().map(|r| r.missing_entities.join(",")).collect();
        assert_eq!(added, ["Rome", "Oslo", ""]);
        assert_eq!(report.rounds[1].attempts, 2, "one list, then its summary");
        assert!(report.rounds[2].error.as_deref().unwrap().starts_with("missing entities: none of those"));
    }

    #[test]
    fn when_rewrites_fail_a_sentence_with_the_new_entity_replaces_sentences_without_entities() {
        // First summary: Rome and two sentences without entities. Rewrites come out too short;
        // the sentence asked for names Oslo.
        let model = Scripted::new(|r| {
            let user = request_of(r);
            if user.contains("JSON array") {
                return if user.contains("Summary:") { "[\"Oslo\"]" } else { "[\"Rome\"]" }.into();
            }
            if user.contains("Write one short sentence") {
                return "Oslo is far to the north of it and cold.".into();
            }
            match user.contains("Summary:") {
                false => "Rome is old. It has many long and busy streets. People like it a lot there.".into(),
                true => "Rome and Oslo.".into(),
            }
        });
        let options = CodOptions { rounds: 2, words: 16, ..CodOptions::default() };
        let report = block_on(summarize(&model, "Rome is in Italy, Oslo in Norway.", &options)).unwrap();
        let round = &report.rounds[1];
        assert_eq!(round.error, None, "{round:?}");
        assert!(round.spliced);
        assert_eq!(
            round.summary,
            "Rome is old. People like it a lot there. Oslo is far to the north of it and cold."
        );
        assert_eq!((round.words, round.missing_entities.clone()), (19, vec!["Oslo".to_owned()]));
        assert!(round.entity_density > report.rounds[0].entity_density);
        // The entity list, three rewrites, then the sentence.
        assert_eq!(round.attempts, 1 + ATTEMPTS + 1);
    }

    /// A target of `words` with no entity to keep: the first round's.
    fn plain(words: usize) -> Target<'static> {
        Target { words, keep: Vec::new(), floor: 0.0 }
    }

    #[test]
    fn room_is_made_by_the_fewest_sentences_whose_loss_keeps_every_entity() {
        let previous = "Rome is old. It is a big city. Its streets are busy.";
        let known = ["Rome".to_owned()];
        let target = Target::new(12, Some(previous), &known);
        assert_eq!(target.floor, 1.0 / 12.0);
        let sentence = "Oslo is cold in the winter.";
        // 12 + 6 words for a target of 12 (9 to 14): dropping the 5-word sentence is closest.
        assert_eq!(
            make_room(previous, sentence, 1, &target).unwrap(),
            "Rome is old. Its streets are busy. Oslo is cold in the winter."
        );
        // Only dropping the sentence that holds Rome would fit 6 to 9 words.
        let previous = "Rome is old and it is big. Cold.";
        let error = make_room(previous, sentence, 1, &Target::new(8, Some(previous), &known)).unwrap_err();
        assert_eq!(
            error,
            "the sentence (6 words) and the summary's sentences make no summary of 6 to 9 words that keeps Rome and \
             is denser than 0.125"
        );
    }

    #[test]
    fn a_summary_must_be_denser_than_the_one_before() {
        let (entities, known) = (vec!["Oslo".to_owned()], ["Rome".to_owned()]);
        // 1 entity in 10 words before; 2 in 24 words is less dense, 2 in 16 more.
        let previous = format!("Rome {}", "w ".repeat(9));
        let target = Target::new(20, Some(&previous), &known);
        let text = |n: usize| format!("Rome Oslo {}", "w ".repeat(n - 2));
        assert_eq!(
            check_summary(&text(24), &entities, &target).unwrap_err(),
            "its entity density 0.083 is not above the summary's before it, 0.100"
        );
        assert!(check_summary(&text(16), &entities, &target).is_ok());
    }

    #[test]
    fn lists_are_read_from_json_quotes_or_bare_items() {
        let items = |reply: &str| listed_items(reply).unwrap();
        assert_eq!(items("[\"Rome\", \"Oslo\"]"), ["Rome", "Oslo"]);
        assert_eq!(items("{\"entities\": [\"Rome\"]}"), ["Rome"]);
        assert_eq!(items("[1]. \"Fleming\" [2]. \u{201C}1928\u{201D}"), ["Fleming", "1928"]);
        assert_eq!(items("[Comets, Solar System]"), ["Comets", "Solar System"]);
        assert_eq!(
            items("[1] 1928, St. Mary's Hospital,\n2. Scotland"),
            ["1928", "St. Mary's Hospital", "Scotland"]
        );
        assert!(listed_items("").is_err());
    }

    #[test]
    fn passages_are_paragraphs_cut_at_sentences_the_least_covered_first() {
        let long = ["Twelve words in this sentence about the Moon and the Apollo flights."; 8].join(" ");
        let article = format!("Title\n\nMars is red and far away from the Sun, people say.\n\n{long}");
        let passages = least_covered_passages(&article, "");
        // The title is no passage; 96 words cut into sentences of at most 70 words in all.
        let counts: Vec<usize> = passages.iter().map(|p| word_count(p)).collect();
        assert_eq!(counts, [11, 60, 36]);
        let passages = least_covered_passages(&article, "The Apollo flights went to the Moon.");
        assert!(passages[0].starts_with("Mars"), "{passages:?}");
    }

    #[test]
    fn a_reply_that_echoes_its_instruction_is_caught() {
        let instruction = "Rewrite the summary so that it also mentions 1986, Eurotunnel, in a new clause.";
        assert!(echoes("It opened. Rewrite the summary so that it also mentions 1986.", instruction));
        assert!(!echoes("The summary now mentions 1986 and Eurotunnel.", instruction));
    }

    #[test]
    fn a_rewrite_must_keep_the_entities_the_summary_held() {
        let (entities, rome) = (vec!["Oslo".to_owned()], "Rome".to_owned());
        let text = format!("Oslo {}", "w ".repeat(19));
        let target = Target { words: 20, keep: vec![&rome], floor: 0.0 };
        assert_eq!(check_summary(&text, &entities, &target).unwrap_err(), "the summary must keep Rome");
    }

    #[test]
    fn entities_must_be_new_and_in_the_article() {
        let known = vec!["Rome".to_owned()];
        let article = "Rome and Paris and Oslo";
        let check = |reply: &str| check_entities(reply, article, "About Oslo.", &known);
        assert_eq!(check("[\"Paris\", \"rome\", \"Mars\", \"paris\", \"oslo\"]").unwrap(), vec!["Paris"]);
        assert_eq!(
            check_entities("{\"missing_entities\": [\"Oslo\"]}", article, "", &known).unwrap(),
            vec!["Oslo"]
        );
        assert!(check("[\"Rome\", \"Oslo\"]").unwrap_err().starts_with("none of those"));
        // Whole words only: a list cut off at `"19` names no year of the article.
        assert!(check_entities("[\"19", "in 1928 and 1945", "", &[]).is_err());
    }

    #[test]
    fn summaries_off_length_or_without_the_entities_are_refused() {
        let entities = vec!["Paris".to_owned(), "Oslo".to_owned()];
        let text = |n: usize, lead: &str| format!("{lead} {}", "w ".repeat(n - 1));
        assert_eq!(
            check_summary(&text(30, "Paris"), &entities, &plain(20)).unwrap_err(),
            "the summary has 30 words; it must have 16 to 24"
        );
        assert_eq!(
            check_summary(&text(10, "Paris"), &entities, &plain(20)).unwrap_err(),
            "the summary has 10 words; it must have 16 to 24"
        );
        assert_eq!(
            check_summary(&text(20, "Rome"), &entities, &plain(20)).unwrap_err(),
            "the summary must mention Paris, Oslo"
        );
        assert_eq!(check_summary(&text(20, "Oslo"), &entities, &plain(20)).unwrap().0, vec!["Oslo"]);
    }

    /// `count` sentences of `length` words each, the first starting with `lead`.
    fn sentences(count: usize, length: usize, lead: &str) -> String {
        let sentence = format!("Then {}end.", "w ".repeat(length - 2));
        format!("{lead} {}", vec![sentence; count].join(" ")).replacen("Then ", "", 1)
    }

    #[test]
    fn a_long_summary_is_cut_back_to_its_last_whole_sentence_inside_the_window() {
        let entities = vec!["Paris".to_owned()];
        // Sentences end at words 7, 14, 21 and 28; the window is 16 to 24 words.
        let long = sentences(4, 7, "Paris");
        let (held, summary) = check_summary(&long, &entities, &plain(20)).unwrap();
        assert_eq!((held, word_count(&summary)), (entities.clone(), 21));
        assert!(long.starts_with(&summary) && summary.ends_with("end."), "{summary}");
        // Sentences end at words 13 and 26: none inside the window.
        assert_eq!(
            check_summary(&sentences(2, 13, "Paris"), &entities, &plain(20)).unwrap_err(),
            "the summary has 26 words; it must have 16 to 24"
        );
        // The cut keeps only whole sentences, so an entity after it no longer counts.
        let late = format!("{} Paris w w w w end.", sentences(3, 7, "Rome"));
        assert_eq!(
            check_summary(&late, &entities, &plain(20)).unwrap_err(),
            "the summary must mention Paris"
        );
    }

    #[test]
    fn a_sentence_ends_at_a_full_stop_before_a_new_sentence_not_at_an_abbreviation() {
        assert!(ends_sentence("end.", Some("The")));
        assert!(ends_sentence("end.\"", Some("Then")));
        assert!(ends_sentence("why?)", None));
        assert!(ends_sentence("1945.", Some("In")));
        assert!(!ends_sentence("end.", Some("and")));
        assert!(!ends_sentence("Dr.", Some("Fleming")));
        assert!(!ends_sentence("U.S.", Some("Army")));
        assert!(!ends_sentence("J.", Some("Smith")));
        assert!(!ends_sentence("end,", Some("The")));
    }

    #[test]
    fn a_first_summary_that_runs_on_is_cut_and_the_round_passes() {
        let model = Scripted::new(|r| {
            if request_of(r).contains("JSON array") {
                "[\"Paris\"]".into()
            } else {
                sentences(6, 7, "Paris")
            }
        });
        let options = CodOptions { rounds: 1, words: 20, ..CodOptions::default() };
        let report = block_on(summarize(&model, "Paris is in France.", &options)).unwrap();
        let round = &report.rounds[0];
        assert_eq!((round.words, round.attempts, round.error.as_deref()), (21, 2, None), "{round:?}");
    }
}
