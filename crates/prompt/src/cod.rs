//! Chain of density: a sparse summary of a fixed length, then rounds that each name 1–3
//! informative entities the summary misses and rewrite it at the same length to hold them too.
//!
//! Each round is one JSON reply, parsed robustly and checked: the summary's length within ±20%
//! of the target, and at least one named entity new and present in it. A reply that fails is
//! retried with the reason; a round that never passes is reported and the last good summary
//! kept. Entity density is the entities named so far that the summary contains, per word.

use serde::Serialize;
use serde_json::{json, Value};
use temper_core::{GenerationParams, Message};

use crate::json::extract_json;
use crate::retry::{ask_until, ATTEMPTS};
use crate::schema::validate;
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

const SYSTEM: &str = "You write summaries of articles. You reply with one JSON object with two fields: \
\"missing_entities\", a list of 1 to 3 short entities (names, places, numbers, things), and \"summary\".";

/// A round's reply, checked.
struct Draft {
    entities: Vec<String>,
    summary: String,
}

/// Runs the chain of density over `article`.
pub async fn summarize(model: &dyn temper_core::ChatModel, article: &str, options: &CodOptions) -> Result<CodReport> {
    if options.rounds == 0 || options.words < 10 {
        return Err(PromptError::invalid("chain of density", "needs at least 1 round and 10 words"));
    }
    let mut report = CodReport::default();
    let mut known: Vec<String> = Vec::new();
    let mut last_good: Option<String> = None;
    for _ in 0..options.rounds {
        let request = round_prompt(article, last_good.as_deref(), options.words);
        let messages = vec![Message::system(SYSTEM), Message::user(request)];
        let params = GenerationParams {
            max_tokens: Some(options.params.max_tokens.unwrap_or(options.words as u32 * 3)),
            ..options.params.clone()
        };
        let check = |text: &str| check_round(text, &known, options.words);
        let round = match ask_until(model, messages, &params, ATTEMPTS, "chain of density round", check).await {
            Ok(checked) => {
                let Draft { entities, summary } = checked.value;
                for entity in &entities {
                    if !known.iter().any(|k| k.eq_ignore_ascii_case(entity)) {
                        known.push(entity.clone());
                    }
                }
                last_good = Some(summary.clone());
                measured(entities, summary, &known, checked.requests, None)
            }
            Err(PromptError::Unusable { attempts, reason, .. }) => {
                let summary = last_good.clone().unwrap_or_default();
                measured(Vec::new(), summary, &known, attempts, Some(reason))
            }
            Err(other) => return Err(other),
        };
        report.rounds.push(round);
    }
    Ok(report)
}

fn round_prompt(article: &str, previous: Option<&str>, words: usize) -> String {
    let article = article.trim();
    match previous {
        None => format!(
            "Article:\n{article}\n\nWrite a first summary of this article in about {words} words. Keep it general: \
             name only 1 to 3 entities, and list them in \"missing_entities\".\n\
             Reply with JSON: {{\"missing_entities\": [...], \"summary\": \"...\"}}"
        ),
        Some(summary) => format!(
            "Article:\n{article}\n\nSummary:\n{summary}\n\nName 1 to 3 informative entities from the article that the summary \
             misses. Then rewrite the summary in about {words} words: keep everything it says, add the missing entities, \
             and make room by fusing and shortening phrases.\n\
             Reply with JSON: {{\"missing_entities\": [...], \"summary\": \"...\"}}"
        ),
    }
}

/// Accepts a reply whose summary is within ±20% of `words` and holds at least one entity it
/// names that is not in `known`; keeps only the named entities the summary holds.
fn check_round(text: &str, known: &[String], words: usize) -> std::result::Result<Draft, String> {
    let schema = json!({
        "type": "object",
        "properties": {
            "missing_entities": {"type": "array", "items": {"type": "string"}},
            "summary": {"type": "string", "minLength": 1}
        },
        "required": ["missing_entities", "summary"]
    });
    let value = extract_json(text)?;
    validate(&value, &schema)?;
    let summary = value["summary"].as_str().unwrap_or_default().trim().to_owned();
    let count = word_count(&summary);
    let (low, high) = (words * 4 / 5, words * 6 / 5);
    if !(low..=high).contains(&count) {
        return Err(format!("the summary has {count} words; it must have {low} to {high}"));
    }
    let entities: Vec<String> = value["missing_entities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty() && contains(&summary, e))
        .filter(|e| !known.iter().any(|k| k.eq_ignore_ascii_case(e)))
        .take(3)
        .collect();
    if entities.is_empty() {
        return Err("no entity in missing_entities is both new and in the summary".into());
    }
    Ok(Draft { entities, summary })
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

fn contains(summary: &str, entity: &str) -> bool {
    summary.to_lowercase().contains(&entity.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripted::Scripted;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(future)
    }

    /// A reply naming `missing`, whose summary of `words` words holds `kept` and `missing`.
    fn reply(missing: &[&str], kept: &[&str], words: usize) -> String {
        let mut summary: Vec<&str> = kept.iter().chain(missing).copied().collect();
        summary.resize(words.max(summary.len()), "filler");
        json!({"missing_entities": missing, "summary": summary.join(" ")}).to_string()
    }

    const ENTITIES: [&str; 4] = ["Apollo", "Moon", "1969", "Armstrong"];

    #[test]
    fn rounds_keep_their_length_add_entities_and_densify() {
        // Each round keeps the entities of the summary it is given and adds the next one.
        let model = Scripted::new(|r| {
            let summary = r.messages[1].content.split("Summary:\n").nth(1).unwrap_or("");
            let kept: Vec<&str> = ENTITIES.into_iter().filter(|e| summary.contains(e)).collect();
            reply(&[ENTITIES[kept.len()]], &kept, 20)
        });
        let options = CodOptions { rounds: 4, words: 20, ..CodOptions::default() };
        let report = block_on(summarize(&model, "An article.", &options)).unwrap();
        let densities: Vec<f64> = report.rounds.iter().map(|r| r.entity_density).collect();
        assert_eq!(densities, vec![1.0 / 20.0, 2.0 / 20.0, 3.0 / 20.0, 4.0 / 20.0]);
        assert_eq!(report.rounds[1].missing_entities, vec!["Moon"]);
        assert!(report.rounds.iter().all(|r| r.words == 20 && r.error.is_none()));
    }

    #[test]
    fn a_round_that_never_parses_is_reported_and_the_last_good_summary_kept() {
        // The first round is good; every later reply is cut-off prose.
        let model = Scripted::new(|r| {
            if r.messages[1].content.contains("Summary:\n") { "Sure, here is {\"summary\": ".into() } else { reply(&["Rome"], &[], 12) }
        });
        let options = CodOptions { rounds: 2, words: 12, ..CodOptions::default() };
        let report = block_on(summarize(&model, "An article.", &options)).unwrap();
        let failed = &report.rounds[1];
        assert_eq!(failed.summary, report.rounds[0].summary);
        assert_eq!(failed.attempts, ATTEMPTS);
        assert!(failed.error.as_deref().unwrap().starts_with("the reply's JSON is invalid"), "{failed:?}");
        assert_eq!(model.prompts().len(), 1 + ATTEMPTS);
    }

    #[test]
    fn replies_off_length_or_without_new_entities_are_refused() {
        let known = vec!["Rome".to_owned()];
        assert_eq!(check_round(&reply(&["Paris"], &[], 30), &known, 20).err().unwrap(), "the summary has 30 words; it must have 16 to 24");
        assert!(check_round(&reply(&["rome"], &[], 20), &known, 20).err().unwrap().starts_with("no entity"));
        let ok = check_round(&reply(&["Paris", "Rome"], &[], 20), &known, 20).unwrap();
        assert_eq!(ok.entities, vec!["Paris"]);
    }
}
