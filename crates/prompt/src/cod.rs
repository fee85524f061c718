//! Chain of density: a sparse summary of a fixed length, then rounds that each name 1–3
//! informative entities the summary misses and rewrite it at the same length to hold them too.
//!
//! A round is two small requests, because a small model manages each alone far better than
//! both in one reply: the missing entities as a JSON array (parsed robustly, and kept only if
//! they are in the article as whole words and new), then the rewritten summary (kept only if
//! its length is within ±20% of the target and it holds at least one of them).
//!
//! Length is held by the reply, not by the check: a summary over the window is cut back to its
//! last whole sentence that ends inside it (a small model that overshoots has usually written
//! the summary and kept going); one with no sentence end inside the window, or too short, is
//! refused. A refused reply is asked again afresh, sampled, without showing it: shown its reply
//! and the reason, the default 135M model copies the reply or answers in prose. When no reply
//! names a usable entity, those an earlier round named but its summary left out stand in.
//! A round that never passes is reported and the last good summary kept.
//! Entity density is the entities added so far that the summary holds, per word.

use serde::Serialize;
use serde_json::Value;
use temper_core::{ChatModel, GenerationParams, Message};

use crate::json::extract_json;
use crate::retry::{ask_until, Retry, ATTEMPTS};
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
    if options.rounds == 0 || options.words < 10 {
        return Err(PromptError::invalid("chain of density", "needs at least 1 round and 10 words"));
    }
    let mut report = CodReport::default();
    let mut known: Vec<String> = Vec::new();
    let mut last_good: Option<String> = None;
    let mut named: Vec<String> = Vec::new();
    for _ in 0..options.rounds {
        let round = match round(model, article, last_good.as_deref(), &known, &named, options).await {
            Ok(Round { held, named: listed, summary, requests }) => {
                known.extend(held.iter().cloned());
                named.extend(listed);
                last_good = Some(summary.clone());
                measured(held, summary, &known, requests, None)
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

/// A round that passed.
struct Round {
    /// The entities named this round that the summary holds.
    held: Vec<String>,
    /// Every entity named this round (those the summary left out are candidates later).
    named: Vec<String>,
    summary: String,
    /// Requests made.
    requests: usize,
}

/// One round: the entities to add, then the summary that holds them. `named` are the entities
/// earlier rounds named; those still missing stand in when no reply names a usable entity.
async fn round(
    model: &dyn ChatModel,
    article: &str,
    previous: Option<&str>,
    known: &[String],
    named: &[String],
    options: &CodOptions,
) -> Result<Round> {
    let article = article.trim();
    let example_previous = previous.map(|_| EXAMPLE_SUMMARY);
    // One worked exchange before each request: small models copy a shown format far better
    // than a described one.
    let ask = |example: String, reply: &str, request: String| {
        vec![
            Message::system(SYSTEM),
            Message::user(example),
            Message::assistant(reply),
            Message::user(request),
        ]
    };
    let messages = ask(
        entities_request(EXAMPLE_ARTICLE, example_previous),
        if previous.is_none() { EXAMPLE_FIRST_ENTITIES } else { EXAMPLE_MISSING_ENTITIES },
        entities_request(article, previous),
    );
    let params = GenerationParams { max_tokens: Some(48), ..options.params.clone() };
    let check = |text: &str| check_entities(text, article, previous.unwrap_or(""), known);
    // The default model often names only entities the summary holds already, while an earlier
    // summary left out some it named: those are still its own choice, checked as a reply's are.
    let still_missing =
        || usable_entities(named.iter().map(String::as_str), article, previous.unwrap_or(""), known);
    let (entities, entity_requests) =
        match ask_until(model, messages, &params, ATTEMPTS, "missing entities", check, Retry::Afresh).await {
            Ok(checked) => (checked.value, checked.requests),
            Err(PromptError::Unusable { attempts, .. }) if !still_missing().is_empty() => {
                (still_missing(), attempts)
            }
            Err(other) => return Err(other),
        };

    let words = options.words;
    let request = summary_request(article, previous, words, &entities.join(", "));
    // The first summary follows a worked example; a rewrite does not, because the model copies
    // the example's length rather than the one asked for.
    let messages = match previous {
        None => ask(
            summary_request(EXAMPLE_ARTICLE, None, EXAMPLE_WORDS, "the Eiffel Tower, Paris"),
            EXAMPLE_SUMMARY,
            request,
        ),
        Some(_) => vec![Message::system(SYSTEM), Message::user(request)],
    };
    let params = GenerationParams { max_tokens: Some(words as u32 * 3), ..options.params.clone() };
    let check = |text: &str| check_summary(text, &entities, words);
    let checked = ask_until(model, messages, &params, ATTEMPTS, "summary", check, Retry::Afresh).await?;
    let (held, summary) = checked.value;
    Ok(Round { held, named: entities, summary, requests: entity_requests + checked.requests })
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
/// Accepts a JSON array (or an object holding one) of entities, keeping the usable ones.
fn check_entities(
    text: &str,
    article: &str,
    summary: &str,
    known: &[String],
) -> std::result::Result<Vec<String>, String> {
    let value = extract_json(text)?;
    let list = match &value {
        Value::Array(items) => items.clone(),
        Value::Object(fields) => fields.values().find_map(|v| v.as_array().cloned()).unwrap_or_default(),
        _ => Vec::new(),
    };
    let entities = usable_entities(list.iter().filter_map(Value::as_str), article, summary, known);
    if entities.is_empty() {
        return Err("none of those is both in the article and missing from the summary".into());
    }
    Ok(entities)
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
        if !entity.is_empty() && new && missing && entities.len() < 3 {
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
    words: usize,
) -> std::result::Result<(Vec<String>, String), String> {
    let summary = text.trim().trim_matches('"').trim();
    let count = word_count(summary);
    let (low, high) = (words * 4 / 5, words * 6 / 5);
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
    Ok((held, summary.to_owned()))
}

/// `text` up to the end of its last sentence that ends after word `low` and by word `high`.
fn cut_to_sentence(text: &str, low: usize, high: usize) -> Option<&str> {
    let mut words = text.split_whitespace().peekable();
    let mut cut = None;
    let mut count = 0;
    while let Some(word) = words.next() {
        count += 1;
        if count > high {
            break;
        }
        if count >= low && ends_sentence(word, words.peek().copied()) {
            // `word` is a slice of `text`, so its end is an offset into `text`.
            cut = Some(word.as_ptr() as usize - text.as_ptr() as usize + word.len());
        }
    }
    cut.map(|end| &text[..end])
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
    CodRound { missing_entities, summary, words, entity_density, attempts, error }
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

    /// The round's request in a conversation: its last message about an article (retries
    /// append the model's reply and the reason after it).
    fn request_of(r: &temper_core::ChatRequest) -> &str {
        let mut requests = r.messages.iter().filter(|m| m.content.starts_with("Article:"));
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
        // Good first round; later, entity lists in prose that cannot be parsed.
        let model = Scripted::new(|r| {
            let user = request_of(r);
            match (user.contains("Summary:"), user.contains("JSON array")) {
                (false, true) => "[\"Rome\"]".into(),
                (false, false) => format!("Rome {}", "word ".repeat(11)),
                (true, _) => "The entities are Rome and Italy.".into(),
            }
        });
        let options = CodOptions { rounds: 2, words: 12, ..CodOptions::default() };
        let report = block_on(summarize(&model, "Rome is in Italy.", &options)).unwrap();
        let failed = &report.rounds[1];
        assert_eq!(failed.summary, report.rounds[0].summary);
        assert_eq!(failed.attempts, ATTEMPTS);
        let error = failed.error.as_deref().unwrap();
        assert!(error.starts_with("missing entities: the reply holds no JSON object"), "{error}");
        assert_eq!(model.prompts().len(), 2 + ATTEMPTS);
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
        assert_eq!(report.rounds[1].attempts, ATTEMPTS + 1);
        assert!(report.rounds[2].error.as_deref().unwrap().starts_with("missing entities: none of those"));
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
            check_summary(&text(30, "Paris"), &entities, 20).unwrap_err(),
            "the summary has 30 words; it must have 16 to 24"
        );
        assert_eq!(
            check_summary(&text(10, "Paris"), &entities, 20).unwrap_err(),
            "the summary has 10 words; it must have 16 to 24"
        );
        assert_eq!(
            check_summary(&text(20, "Rome"), &entities, 20).unwrap_err(),
            "the summary must mention Paris, Oslo"
        );
        assert_eq!(check_summary(&text(20, "Oslo"), &entities, 20).unwrap().0, vec!["Oslo"]);
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
        let (held, summary) = check_summary(&long, &entities, 20).unwrap();
        assert_eq!((held, word_count(&summary)), (entities.clone(), 21));
        assert!(long.starts_with(&summary) && summary.ends_with("end."), "{summary}");
        // Sentences end at words 13 and 26: none inside the window.
        assert_eq!(
            check_summary(&sentences(2, 13, "Paris"), &entities, 20).unwrap_err(),
            "the summary has 26 words; it must have 16 to 24"
        );
        // The cut keeps only whole sentences, so an entity after it no longer counts.
        let late = format!("{} Paris w w w w end.", sentences(3, 7, "Rome"));
        assert_eq!(check_summary(&late, &entities, 20).unwrap_err(), "the summary must mention Paris");
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
