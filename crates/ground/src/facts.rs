//! The facts of a text that can be checked exactly: numbers, dates and proper names, each with
//! the normalised keys under which a passage that states it holds it ("1,200" and "1200" are
//! one number; "3 March 2025" and "March 3, 2025" one date).

use std::collections::HashSet;
use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

/// What kind of fact a [`Fact`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FactKind {
    Number,
    Date,
    Name,
}

/// A checkable fact of a text, as written there, and its normalised key.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fact {
    pub kind: FactKind,
    pub text: String,
    #[serde(skip)]
    pub key: String,
}

impl Fact {
    /// Whether the fact is a year (a four-digit number from 1000 to 2999), which answers "when".
    pub fn is_year(&self) -> bool {
        let digits = self.key.strip_prefix("number:").unwrap_or("");
        self.kind == FactKind::Number && digits.len() == 4 && matches!(digits.as_bytes()[0], b'1' | b'2')
    }
}

/// The keys of every fact a passage states, to look an answer's facts up in.
#[derive(Clone, Debug, Default)]
pub struct FactIndex {
    keys: HashSet<String>,
}

impl FactIndex {
    /// Indexes `text`: its dates (and each one's month, year and day alone), numbers, number
    /// words, and every word (a name in an answer is found in a passage case-insensitively).
    pub fn new(text: &str) -> FactIndex {
        let mut keys = HashSet::new();
        for date in dates(text) {
            keys.extend(date.keys());
        }
        for (_, value) in numbers(text, true) {
            keys.insert(number_key(value));
        }
        for word in words(text) {
            keys.insert(name_key(word));
        }
        FactIndex { keys }
    }

    /// Whether the passage states `fact`; a name of five letters or more also when it is one
    /// letter away from one of the passage's words (a small model's "Corin" for "Corrin").
    pub fn holds(&self, fact: &Fact) -> bool {
        if self.keys.contains(&fact.key) {
            return true;
        }
        let Some(name) = fact.key.strip_prefix("name:").filter(|n| n.chars().count() >= 5) else {
            return false;
        };
        self.keys.iter().filter_map(|k| k.strip_prefix("name:")).any(|word| one_edit_apart(name, word))
    }
}

/// The checkable facts of `text`, in order: dates, then the numbers not inside a date, then
/// proper names (capitalised words not opening a sentence and not common words).
pub fn facts(text: &str) -> Vec<Fact> {
    let mut found = Vec::new();
    let mut inside_dates = Vec::new();
    for date in dates(text) {
        inside_dates.push(date.span.clone());
        found.push(Fact { kind: FactKind::Date, text: text[date.span.clone()].to_owned(), key: date.key() });
    }
    for (span, value) in numbers(text, false) {
        if inside_dates.iter().any(|d| d.start <= span.start && span.end <= d.end) {
            continue;
        }
        found.push(Fact { kind: FactKind::Number, text: text[span].to_owned(), key: number_key(value) });
    }
    for word in names(text) {
        found.push(Fact { kind: FactKind::Name, text: word.to_owned(), key: name_key(word) });
    }
    found
}

/// A calendar date as far as the text gives it.
struct Date {
    span: std::ops::Range<usize>,
    year: Option<u32>,
    month: u32,
    day: Option<u32>,
}

impl Date {
    /// The key of exactly what the text states: a whole date, a month of a year, or a day of a month.
    fn key(&self) -> String {
        match (self.year, self.day) {
            (Some(y), Some(d)) => format!("date:{y:04}-{:02}-{d:02}", self.month),
            (Some(y), None) => format!("date:{y:04}-{:02}", self.month),
            (None, Some(d)) => format!("date:--{:02}-{d:02}", self.month),
            (None, None) => format!("date:--{:02}", self.month),
        }
    }

    /// Every key a passage stating this date supports: the date, and each less precise form of it.
    fn keys(&self) -> Vec<String> {
        let mut keys = vec![self.key(), format!("date:--{:02}", self.month)];
        if let Some(y) = self.year {
            keys.push(format!("date:{y:04}-{:02}", self.month));
            keys.push(number_key(y as f64));
        }
        if let Some(d) = self.day {
            keys.push(format!("date:--{:02}-{d:02}", self.month));
            keys.push(number_key(d as f64));
        }
        keys
    }
}

const MONTHS: [&str; 12] =
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

fn month(name: &str) -> u32 {
    let prefix = name.get(..3).unwrap_or(name).to_ascii_lowercase();
    MONTHS.iter().position(|m| *m == prefix).map_or(0, |i| i as u32 + 1)
}

fn date_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let month = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)";
        let day = r"(?:[12][0-9]|3[01]|0?[1-9])(?:st|nd|rd|th)?";
        Regex::new(&format!(
            r"\b(?:(?P<iy>\d{{4}})-(?P<im>0[1-9]|1[0-2])-(?P<id>[0-3][0-9])|(?P<d1>{day})\s+(?:of\s+)?(?P<m1>{month})\b\.?(?:,?\s+(?P<y1>\d{{4}}))?|(?P<m2>{month})\b\.?\s+(?:(?P<d2>{day})\b(?:,?\s+(?P<y2>\d{{4}}))?|(?:of\s+)?(?P<y3>\d{{4}})))\b"
        ))
        .expect("the date pattern is valid")
    })
}

fn dates(text: &str) -> Vec<Date> {
    let number = |m: Option<regex::Match>| {
        m.map(|m| m.as_str().trim_end_matches(char::is_alphabetic).parse::<u32>().unwrap_or(0))
    };
    date_pattern()
        .captures_iter(text)
        .filter_map(|c| {
            let span = c.get(0)?.range();
            let date = if let Some(y) = c.name("iy") {
                Date { span, year: number(Some(y)), month: number(c.name("im"))?, day: number(c.name("id")) }
            } else if let Some(m) = c.name("m1") {
                Date { span, year: number(c.name("y1")), month: month(m.as_str()), day: number(c.name("d1")) }
            } else {
                let m = c.name("m2")?;
                let year = number(c.name("y2")).or(number(c.name("y3")));
                Date { span, year, month: month(m.as_str()), day: number(c.name("d2")) }
            };
            Some(date)
        })
        .collect()
}

fn number_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(
            r"(?i)(?P<n>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?:st|nd|rd|th)?(?:\s*(?P<scale>thousand|million|billion)\b)?|\b(?P<w>zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|dozen)\b",
        )
        .expect("the number pattern is valid")
    })
}

/// The numbers of `text` with their values. Number words are read too, but "one" and "zero"
/// only in passages (`all`): in an answer they are rarely a claim ("one of the oldest").
fn numbers(text: &str, all: bool) -> Vec<(std::ops::Range<usize>, f64)> {
    const WORDS: [(&str, f64); 30] = [
        ("zero", 0.0),
        ("one", 1.0),
        ("two", 2.0),
        ("three", 3.0),
        ("four", 4.0),
        ("five", 5.0),
        ("six", 6.0),
        ("seven", 7.0),
        ("eight", 8.0),
        ("nine", 9.0),
        ("ten", 10.0),
        ("eleven", 11.0),
        ("twelve", 12.0),
        ("thirteen", 13.0),
        ("fourteen", 14.0),
        ("fifteen", 15.0),
        ("sixteen", 16.0),
        ("seventeen", 17.0),
        ("eighteen", 18.0),
        ("nineteen", 19.0),
        ("twenty", 20.0),
        ("thirty", 30.0),
        ("forty", 40.0),
        ("fifty", 50.0),
        ("sixty", 60.0),
        ("seventy", 70.0),
        ("eighty", 80.0),
        ("ninety", 90.0),
        ("hundred", 100.0),
        ("dozen", 12.0),
    ];
    let mut found = Vec::new();
    for c in number_pattern().captures_iter(text) {
        let Some(whole) = c.get(0) else { continue };
        if let Some(word) = c.name("w") {
            let word = word.as_str().to_ascii_lowercase();
            if !all && (word == "one" || word == "zero") {
                continue;
            }
            if let Some((_, value)) = WORDS.iter().find(|(w, _)| *w == word) {
                found.push((whole.range(), *value));
            }
            continue;
        }
        let Some(digits) = c.name("n") else { continue };
        // A digit glued to letters on its left (`A4`, `v2`) is part of a name, not a number; one
        // after `[` is a citation's.
        if text[..whole.start()].chars().next_back().is_some_and(|c| c.is_alphabetic() || c == '[') {
            continue;
        }
        let Ok(mut value) = digits.as_str().replace(',', "").parse::<f64>() else { continue };
        match c.name("scale").map(|s| s.as_str().to_ascii_lowercase()) {
            Some(scale) if scale == "thousand" => value *= 1e3,
            Some(scale) if scale == "million" => value *= 1e6,
            Some(_) => value *= 1e9,
            None => {}
        }
        found.push((whole.range(), value));
        if all && c.name("scale").is_some() {
            // A passage's "1.2 million" also states the "1.2" an answer may copy with its word.
            if let Ok(bare) = digits.as_str().replace(',', "").parse::<f64>() {
                found.push((digits.range(), bare));
            }
        }
    }
    found
}

/// Whether `a` becomes `b` by inserting, deleting or replacing one character.
fn one_edit_apart(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (short, long) = if a.len() <= b.len() { (&a, &b) } else { (&b, &a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long.iter()).take_while(|(x, y)| x == y).count();
    let skip = usize::from(short.len() == long.len());
    short[prefix + skip.min(short.len() - prefix)..] == long[prefix + 1..]
}

fn number_key(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("number:{text}")
}

fn name_key(word: &str) -> String {
    let word = word.strip_suffix("'s").or_else(|| word.strip_suffix("’s")).unwrap_or(word);
    format!("name:{}", word.to_lowercase())
}

/// The words of a text: letters, digits and inner apostrophes or hyphens.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’' || c == '-'))
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
}

/// Words that are capitalised for reasons other than naming something.
const NOT_NAMES: &[&str] = &[
    "i",
    "a",
    "an",
    "the",
    "this",
    "that",
    "these",
    "those",
    "it",
    "its",
    "he",
    "she",
    "they",
    "we",
    "you",
    "his",
    "her",
    "their",
    "our",
    "my",
    "your",
    "in",
    "on",
    "at",
    "of",
    "for",
    "to",
    "from",
    "by",
    "with",
    "and",
    "or",
    "but",
    "so",
    "yes",
    "no",
    "not",
    "however",
    "also",
    "according",
    "as",
    "after",
    "before",
    "during",
    "since",
    "until",
    "when",
    "where",
    "who",
    "what",
    "which",
    "why",
    "how",
    "there",
    "here",
    "source",
    "sources",
    "document",
    "documents",
    "answer",
    "question",
    "passage",
    "note",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "mr",
    "mrs",
    "ms",
    "dr",
    "st",
    "mt",
];

/// Capitalised words that do not open a sentence, nor are common words capitalised by habit.
fn names(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut sentence_start = true;
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_alphanumeric()) {
        let before = &rest[..start];
        if before.contains(['.', '!', '?', ':', '\n', '"', '“']) {
            sentence_start = true;
        }
        let after = &rest[start..];
        let end = after
            .find(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’' || c == '-'))
            .unwrap_or(after.len());
        let word = after[..end].trim_end_matches(['\'', '’', '-']);
        let capitalised = word.chars().next().is_some_and(char::is_uppercase);
        let lower = word.to_lowercase();
        let bare = lower.strip_suffix("'s").or_else(|| lower.strip_suffix("’s")).unwrap_or(&lower);
        if capitalised && !sentence_start && !NOT_NAMES.contains(&bare) {
            found.push(word);
        }
        sentence_start = false;
        rest = &after[end.max(1)..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<(FactKind, String)> {
        facts(text).into_iter().map(|f| (f.kind, f.text)).collect()
    }

    #[test]
    fn numbers_dates_and_names_are_found_as_written() {
        use FactKind::*;
        assert_eq!(
            keys("The Harrow Bridge opened on 3 March 2025 and carries 1,200 cars a day."),
            vec![
                (Date, "3 March 2025".into()),
                (Number, "1,200".into()),
                (Name, "Harrow".into()),
                (Name, "Bridge".into())
            ]
        );
        assert_eq!(
            keys("It cost $4.5 million in March 2019."),
            vec![(Date, "March 2019".into()), (Number, "4.5 million".into())]
        );
        assert_eq!(
            keys("One of the two arches fell."),
            vec![(Number, "two".into())],
            "\"one\" is rarely a claim"
        );
        assert_eq!(keys("Model A4 is new."), vec![(Name, "A4".into())]);
    }

    #[test]
    fn a_passage_holds_a_fact_in_any_of_its_forms() {
        let passage = FactIndex::new("The bridge opened on March 3, 2025. About 1200 cars cross it; it cost 4.5 million euros. Three arches.");
        let holds = |answer: &str| facts(answer).iter().all(|f| passage.holds(f));
        assert!(holds("It opened on 3 March 2025 [1]."));
        assert!(holds("It opened in March 2025, in 2025, on the 3rd of March."));
        assert!(holds("1,200 cars cross it; it cost 4,500,000 euros, or 4.5 million."));
        assert!(holds("It has 3 arches."));
        assert!(!holds("It opened on 4 March 2025."));
        assert!(!holds("The population is 1,300."));
        assert!(!holds("It was designed by Ada Lind."));
        assert!(holds("The Bridge opened."), "names are found in any case");
        let names = FactIndex::new("The Corrin Bell sails from Kelmarsh.");
        let holds = |answer: &str| facts(answer).iter().all(|f| names.holds(f));
        assert!(holds("It is the Corin Bell.") && holds("It left Kelmarch."));
        assert!(!holds("It is the Corn Bell.") && !holds("It left Kelmarshes."));
    }
}
