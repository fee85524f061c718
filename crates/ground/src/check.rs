//! The check of an answer against the passages it was given: each sentence's exact facts looked
//! up in its cited passage (then in the others), a model's constrained verdict where a
//! sentence has none, and whether what is supported answers what was asked.

use std::collections::{HashMap, HashSet};

use futures::future::join_all;
use serde::Serialize;
use temper_core::ChatModel;

use crate::facts::{facts, Fact, FactIndex, FactKind};
use crate::sentences::{sentences, Sentence};
use crate::verify::Verifier;
use crate::words::content_words;
use crate::{abstain, Result};

/// A passage an answer was given, and the document it comes from: the question's own names and
/// numbers may be in another passage of the same document than the fact that answers it.
#[derive(Clone, Debug)]
pub struct Passage {
    pub text: String,
    pub document: String,
}

impl Passage {
    pub fn new(text: impl Into<String>, document: impl Into<String>) -> Passage {
        Passage { text: text.into(), document: document.into() }
    }
}

/// How a sentence was found supported or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Its numbers, dates and names were looked up in the passages.
    Facts,
    /// A model said whether the passage states it.
    Model,
    /// Its content words were looked up (no facts, and no model to ask).
    Words,
    /// It says the documents do not answer: a refusal, not a claim.
    Abstention,
}

/// The verdict on one sentence of an answer.
#[derive(Clone, Debug, Serialize)]
pub struct SentenceCheck {
    pub text: String,
    /// The sources the answer cites for it, numbered from 1.
    pub citations: Vec<usize>,
    /// Whether it, or its leading part `kept`, is supported.
    pub supported: bool,
    /// When only a leading part of it is supported (it goes on, after a comma, to say what no
    /// passage does), that part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
    /// The passage that supports it, numbered from 1 (possibly another than it cites).
    pub source: Option<usize>,
    pub method: Method,
    /// Its facts that no passage states.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// What the check found of a whole answer.
#[derive(Clone, Debug, Serialize)]
pub struct Grounding {
    pub sentences: Vec<SentenceCheck>,
    /// Some supported sentence answers what was asked: it is drawn from a passage stating the
    /// question's own names and numbers, and gives the kind of fact the question asks for.
    pub answers: bool,
    /// The answer says the documents do not hold the answer.
    pub declined: bool,
}

impl Grounding {
    /// The share of the answer's claims (abstentions aside) that are supported; 1 with none.
    pub fn supported_share(&self) -> f64 {
        let claims: Vec<&SentenceCheck> =
            self.sentences.iter().filter(|s| s.method != Method::Abstention).collect();
        if claims.is_empty() {
            return 1.0;
        }
        claims.iter().filter(|s| s.supported).count() as f64 / claims.len() as f64
    }
}

/// Checks `answer`, given to `question` from `passages` (cited as `[1]`, `[2]`, …). With a
/// `verifier`, a sentence holding no number, date or name is put to it; without one, it is
/// supported when a passage holds at least half of its content words.
pub async fn check(
    question: &str,
    answer: &str,
    passages: &[Passage],
    verifier: Option<&dyn ChatModel>,
) -> Result<Grounding> {
    let indexes: Vec<FactIndex> = passages.iter().map(|p| FactIndex::new(&p.text)).collect();
    let verifier = verifier.map(Verifier::new);
    let checks = sentences(answer).into_iter().map(|sentence| {
        let (indexes, verifier) = (&indexes, verifier.as_ref());
        async move { check_sentence(sentence, passages, indexes, verifier).await }
    });
    let sentences = join_all(checks).await.into_iter().collect::<Result<Vec<_>>>()?;
    let declined = sentences.iter().any(|s| s.method == Method::Abstention);
    let answers = answers(question, &sentences, passages);
    Ok(Grounding { sentences, answers, declined })
}

async fn check_sentence(
    sentence: Sentence,
    passages: &[Passage],
    indexes: &[FactIndex],
    verifier: Option<&Verifier<'_>>,
) -> Result<SentenceCheck> {
    let mut check = SentenceCheck {
        text: sentence.text,
        citations: sentence.citations,
        supported: false,
        kept: None,
        source: None,
        method: Method::Facts,
        missing: Vec::new(),
    };
    if abstain::is_abstention(&check.text) {
        check.method = Method::Abstention;
        return Ok(check);
    }
    // The cited passages first, then the others: a right fact under a wrong number is still right.
    let cited = check.citations.iter().filter(|&&n| (1..=passages.len()).contains(&n)).map(|n| n - 1);
    let order: Vec<usize> = cited.chain(0..passages.len()).collect();
    let claimed = facts(&check.text);
    if !claimed.is_empty() {
        if let Some(source) = supporting(&claimed, &order, passages, indexes) {
            check.supported = true;
            check.source = Some(source + 1);
            return Ok(check);
        }
        check.missing = claimed
            .iter()
            .filter(|f| !indexes.iter().any(|index| index.holds(f)))
            .map(|f| f.text.clone())
            .collect();
        if check.missing.is_empty() {
            // Each fact is somewhere, but no one passage states them together.
            check.missing = claimed.iter().map(|f| f.text.clone()).collect();
        }
        // Small models run on past what they read ("…was Ilse Korvander, a 19-year-old from…"):
        // the longest leading part, up to a comma, that one passage supports is kept.
        let cuts = check.text.match_indices(", ").map(|(i, _)| i).collect::<Vec<_>>();
        for &cut in cuts.iter().rev() {
            let head = &check.text[..cut];
            let head_facts = facts(head);
            if head_facts.is_empty() || content_words(head).len() < 3 {
                continue;
            }
            if let Some(source) = supporting(&head_facts, &order, passages, indexes) {
                check.supported = true;
                check.source = Some(source + 1);
                check.kept = Some(format!("{head}."));
                break;
            }
        }
        return Ok(check);
    }
    let words = content_words(&check.text);
    let passage_words: Vec<HashSet<String>> = passages.iter().map(|p| content_words(&p.text)).collect();
    let overlap = |i: usize| words.intersection(&passage_words[i]).count();
    let Some(closest) =
        order.iter().copied().max_by_key(|&i| (overlap(i), std::cmp::Reverse(order_rank(&order, i))))
    else {
        return Ok(check);
    };
    match verifier {
        Some(verifier) => {
            check.method = Method::Model;
            check.supported = verifier.supports(&passages[closest].text, &check.text).await?;
        }
        None => {
            check.method = Method::Words;
            check.supported = overlap(closest) >= 1 && 2 * overlap(closest) >= words.len();
        }
    }
    check.source = check.supported.then_some(closest + 1);
    Ok(check)
}

/// The first passage of `order` that states every one of `claimed`; else, when the passages of
/// one document state them together (a chunk boundary may fall between a name and its fact),
/// the passage of that document holding most of them.
fn supporting(
    claimed: &[Fact],
    order: &[usize],
    passages: &[Passage],
    indexes: &[FactIndex],
) -> Option<usize> {
    let held = |i: usize| claimed.iter().filter(|f| indexes[i].holds(f)).count();
    if let Some(i) = order.iter().copied().find(|&i| held(i) == claimed.len()) {
        return Some(i);
    }
    order.iter().copied().find(|&i| {
        let same: Vec<usize> =
            (0..passages.len()).filter(|&j| passages[j].document == passages[i].document).collect();
        held(i) > 0 && claimed.iter().all(|f| same.iter().any(|&j| indexes[j].holds(f)))
    })
}

/// Where passage `i` first comes in the search order (cited passages before the others).
fn order_rank(order: &[usize], i: usize) -> usize {
    order.iter().position(|&j| j == i).unwrap_or(order.len())
}

/// The kind of fact a question asks for, when its words say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wanted {
    Number,
    /// A year or a date ("In what year…").
    Time,
    /// "When…": a date or year, a time of day, or words of time ("every morning", "in summer").
    When,
    Person,
}

fn wanted(question: &str) -> Option<Wanted> {
    const NUMBER: &[&str] = &[
        "how many",
        "how much",
        "how long",
        "how old",
        "how tall",
        "how high",
        "how far",
        "how big",
        "how large",
        "how deep",
        "how wide",
        "how heavy",
        "how hot",
        "how cold",
        "how fast",
        "what percentage",
        "what proportion",
        "what share",
        "what temperature",
        "what size",
        "what speed",
        "what age",
        "population",
        "number of",
    ];
    const TIME: &[&str] =
        &["what year", "which year", "what date", "which date", "what month", "which month", "what day"];
    const PERSON: &[&str] = &[
        "who",
        "whom",
        "whose",
        "which architect",
        "which engineer",
        "which designer",
        "which person",
        "which artist",
        "which author",
        "which scientist",
        "which company",
        "which firm",
        "what is the name",
        "what was the name",
        "what is it called",
        "what was it called",
    ];
    let q = format!(" {} ", question.to_lowercase().replace(|c: char| !c.is_alphanumeric(), " "));
    let has = |phrases: &[&str]| phrases.iter().any(|p| q.contains(&format!(" {p} ")));
    // The most specific first: "How many … when it was founded?" asks for a number.
    if has(NUMBER) {
        Some(Wanted::Number)
    } else if has(TIME) {
        Some(Wanted::Time)
    } else if has(&["when"]) {
        Some(Wanted::When)
    } else if has(PERSON) {
        Some(Wanted::Person)
    } else {
        None
    }
}

fn gives(fact: &Fact, wanted: Wanted) -> bool {
    match wanted {
        // A year is not an amount: "How much did it cost?" is not answered by "in 2016".
        Wanted::Number => fact.kind == FactKind::Number && !fact.is_year(),
        Wanted::Time => fact.kind == FactKind::Date || fact.is_year(),
        Wanted::When => matches!(fact.kind, FactKind::Date | FactKind::Number),
        Wanted::Person => fact.kind == FactKind::Name,
    }
}

/// Whether a supported sentence answers `question`: its document states the question's own
/// names and numbers (a question about 2021 is not answered from a passage about 2019), and it
/// gives a fact of the kind asked for that the question did not already hold, which its
/// document states in a sentence sharing a word with what is asked ("retire" for "In what
/// year did Haverty retire?", not only "Haverty").
fn answers(question: &str, sentences: &[SentenceCheck], passages: &[Passage]) -> bool {
    let asked = facts(question);
    let wanted = wanted(question);
    let predicate = predicate_stems(question, &asked);
    // Each document's passages together, indexed once.
    let mut documents: HashMap<&str, (String, FactIndex)> = HashMap::new();
    for passage in passages {
        documents.entry(passage.document.as_str()).or_default().0.push_str(&format!("{}\n\n", passage.text));
    }
    for (text, index) in documents.values_mut() {
        *index = FactIndex::new(text);
    }
    sentences.iter().filter(|s| s.supported).any(|s| {
        let Some((text, index)) = s.source.and_then(|n| documents.get(passages[n - 1].document.as_str()))
        else {
            return false;
        };
        let about = asked.iter().all(|f| index.holds(f));
        let claim = s.kept.as_deref().unwrap_or(&s.text);
        let gives = wanted.is_none_or(|wanted| {
            let fact = facts(claim).iter().any(|f| {
                gives(f, wanted) && !asked.iter().any(|a| a.key == f.key) && stated_about(f, &predicate, text)
            });
            fact || (wanted == Wanted::When && speaks_of_time(claim))
        });
        about && gives
    })
}

/// Whether `text` says when in words: "every morning", "in summer", "at noon".
fn speaks_of_time(text: &str) -> bool {
    const TIME_WORDS: &[&str] = &[
        "morning",
        "mornings",
        "afternoon",
        "evening",
        "evenings",
        "night",
        "nights",
        "noon",
        "midnight",
        "dawn",
        "dusk",
        "daily",
        "weekly",
        "monthly",
        "yearly",
        "annually",
        "hour",
        "hourly",
        "summer",
        "winter",
        "spring",
        "autumn",
        "weekend",
        "weekends",
        "o'clock",
        "century",
        "decade",
    ];
    text.to_lowercase().split(|c: char| !(c.is_alphabetic() || c == '\'')).any(|w| TIME_WORDS.contains(&w))
}

/// The stems of the question's content words that name neither its subject nor the kind of
/// fact asked: what is asked about it ("founded", "retire", "cost").
fn predicate_stems(question: &str, asked: &[Fact]) -> Vec<String> {
    const ASKING: &[&str] =
        &["year", "many", "much", "long", "date", "day", "month", "name", "called", "which", "whom", "whose"];
    let names: Vec<String> = asked.iter().map(|f| f.text.to_lowercase()).collect();
    let mut words: Vec<String> = content_words(question)
        .into_iter()
        .filter(|w| !names.contains(w) && !ASKING.contains(&w.as_str()))
        .map(|w| stem(&w))
        .collect();
    words.sort();
    words
}

/// A crude stem, enough to match "opened" with "open" and "founder" with "founded": the word
/// without a common ending, cut to five letters.
fn stem(word: &str) -> String {
    let root = ["ation", "ing", "ion", "ed", "er", "es", "s"]
        .iter()
        .find_map(|end| word.strip_suffix(end).filter(|root| root.chars().count() >= 3))
        .unwrap_or(word);
    // "leave" and "leaves" alike.
    let root = root.strip_suffix('e').filter(|r| r.chars().count() >= 3).unwrap_or(root);
    root.chars().take(5).collect()
}

/// Whether some sentence of `text` states `fact` next to a word of `predicate` (always, when
/// the question has no such word).
fn stated_about(fact: &Fact, predicate: &[String], text: &str) -> bool {
    /// How many words from the fact a word of what is asked may stand: "monitors 36 fixed
    /// plots", not "plots had regained most of their moss within five years".
    const NEAR: usize = 5;
    if predicate.is_empty() {
        return true;
    }
    sentences(text).iter().filter(|s| FactIndex::new(&s.text).holds(fact)).any(|s| {
        let words: Vec<&str> = s.text.split_whitespace().collect();
        let asked: Vec<usize> = (0..words.len())
            .filter(|&i| content_words(words[i]).iter().any(|w| predicate.binary_search(&stem(w)).is_ok()))
            .collect();
        // Where the fact is: the windows of up to four words that state it.
        (0..words.len()).any(|i| {
            let window = words[i..(i + 4).min(words.len())].join(" ");
            FactIndex::new(&window).holds(fact) && asked.iter().any(|&a| a.abs_diff(i) <= NEAR)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passages() -> Vec<Passage> {
        vec![
            Passage::new(
                "The Harrow Bridge at Dunmarrow was designed by Ilse Varga and opened on 3 March 1897. It has three arches.",
                "bridge.md",
            ),
            Passage::new("The Blue Kettle café won the Harbour Prize in 2019. It seats 40 guests.", "cafe.md"),
            Passage::new("Its owner is Tomas Reyes. It opens every morning.", "cafe.md"),
        ]
    }

    async fn grounding(question: &str, answer: &str) -> Grounding {
        check(question, answer, &passages(), None).await.unwrap()
    }

    #[tokio::test]
    async fn supported_answers_pass_and_invented_facts_do_not() {
        let g =
            grounding("When did the Harrow Bridge open?", "The Harrow Bridge opened on March 3, 1897 [1].")
                .await;
        assert!(g.answers && g.sentences[0].supported && g.sentences[0].source == Some(1));

        let g =
            grounding("What is the population of Dunmarrow?", "The population of Dunmarrow is 1,200 [1].")
                .await;
        assert!(!g.answers);
        assert_eq!(g.sentences[0].missing, vec!["1,200"]);

        let g = grounding(
            "Who won the Harbour Prize in 2021?",
            "The Blue Kettle café won the Harbour Prize in 2019 [2].",
        )
        .await;
        assert!(g.sentences[0].supported, "the sentence is true");
        assert!(!g.answers, "but says nothing of 2021");
    }

    #[tokio::test]
    async fn a_sentence_that_runs_on_past_its_passage_keeps_its_supported_part() {
        let g = grounding(
            "Who designed the Harrow Bridge?",
            "It was designed by Ilse Varga, a painter from Oslo [1].",
        )
        .await;
        assert!(g.answers);
        assert_eq!(g.sentences[0].kept.as_deref(), Some("It was designed by Ilse Varga."));
        assert_eq!(g.sentences[0].missing, vec!["Oslo"]);
    }

    #[tokio::test]
    async fn a_fact_cited_wrongly_is_found_in_its_own_passage() {
        let g = grounding("How many guests does the café seat?", "It seats 40 guests [1].").await;
        assert!(g.answers);
        assert_eq!(g.sentences[0].source, Some(2));
    }

    #[tokio::test]
    async fn questions_of_a_kind_need_an_answer_of_that_kind() {
        let g = grounding("When did the café win the Harbour Prize?", "It won it in 2019 [2].").await;
        assert!(g.answers);
        let g = grounding("When did the Blue Kettle open?", "It opened in 2019 [2].").await;
        assert!(!g.answers, "2019 is when it won the prize, not when it opened");
        let g = grounding("When does the café open?", "It opens every morning [3].").await;
        assert!(g.answers, "\"when\" is answered by words of time too");
        let g = grounding("How much did the bridge cost?", "It opened in 1897 [1].").await;
        assert!(!g.answers, "a year is not an amount");
        let g = grounding("Who designed the Harrow Bridge?", "The Harrow Bridge has three arches [1].").await;
        assert!(g.sentences[0].supported && !g.answers);
        let g = grounding("Who designed the Harrow Bridge?", "Ilse Varga designed it [1].").await;
        assert!(g.answers);
        let g = grounding("What is the Harrow Bridge?", "It is a bridge with arches [1].").await;
        assert!(g.answers && g.sentences[0].method == Method::Words);
        let g = grounding("Who owns the Blue Kettle café?", "Tomas Reyes owns it [3].").await;
        assert!(g.answers, "the café is named in another passage of the same document");
        let g = grounding("What is the population?", "The documents do not say.").await;
        assert!(g.declined && !g.answers && g.supported_share() == 1.0);
    }
}
