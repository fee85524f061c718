//! Assertions: checks of one output, each giving a score in [0, 1] and a pass. Everything about
//! an assertion that can be wrong (its type, value, regex, schema, threshold) is refused when it
//! is read, before any model call; a `value`'s template is filled in per row.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use temper_core::{ChatModel, EmbeddingModel};
use temper_ground::{Method, Passage};
use temper_prompt::json::extract_json;
use temper_prompt::retry::excerpt;
use temper_prompt::schema::{check_schema, validate};

use crate::judge::{judge, Task};
use crate::metrics::{cosine, levenshtein_similarity, rouge_l};
use crate::Row;

/// What an assertion checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Equals,
    Contains,
    Icontains,
    ContainsAny,
    ContainsAll,
    Regex,
    StartsWith,
    IsJson,
    JsonFields,
    Similar,
    RougeL,
    Levenshtein,
    Latency,
    Cost,
    LlmRubric,
    Factuality,
    Faithfulness,
    Grounded,
    Declines,
    Cites,
}

const KINDS: &[(&str, Kind)] = &[
    ("equals", Kind::Equals),
    ("contains", Kind::Contains),
    ("icontains", Kind::Icontains),
    ("contains-any", Kind::ContainsAny),
    ("contains-all", Kind::ContainsAll),
    ("regex", Kind::Regex),
    ("starts-with", Kind::StartsWith),
    ("is-json", Kind::IsJson),
    ("json-fields", Kind::JsonFields),
    ("similar", Kind::Similar),
    ("rouge-l", Kind::RougeL),
    ("levenshtein", Kind::Levenshtein),
    ("latency", Kind::Latency),
    ("cost", Kind::Cost),
    ("llm-rubric", Kind::LlmRubric),
    ("factuality", Kind::Factuality),
    ("faithfulness", Kind::Faithfulness),
    ("grounded", Kind::Grounded),
    ("declines", Kind::Declines),
    ("cites", Kind::Cites),
];

/// The prefix that turns an assertion around: it passes when the check fails.
pub const NOT: &str = "not-";

impl Kind {
    pub fn name(self) -> &'static str {
        KINDS.iter().find(|(_, kind)| *kind == self).map_or("?", |(name, _)| name)
    }

    /// Scored on a scale and passed by a threshold; the other kinds pass or fail outright.
    pub fn scored(self) -> bool {
        matches!(
            self,
            Kind::Similar
                | Kind::JsonFields
                | Kind::RougeL
                | Kind::Levenshtein
                | Kind::LlmRubric
                | Kind::Factuality
                | Kind::Faithfulness
                | Kind::Grounded
        )
    }

    /// The threshold when none is given; a judged kind without one takes the judge's pass.
    pub fn default_threshold(self) -> Option<f64> {
        match self {
            Kind::Similar | Kind::Levenshtein => Some(0.8),
            // Every field right; every claim supported.
            Kind::JsonFields | Kind::Grounded => Some(1.0),
            Kind::RougeL => Some(0.5),
            _ => None,
        }
    }

    /// Graded by the judge model.
    pub fn judged(self) -> bool {
        matches!(self, Kind::LlmRubric | Kind::Factuality | Kind::Faithfulness)
    }

    /// Without a `value`, compared with the row's expected value.
    fn compares_with_expected(self) -> bool {
        matches!(
            self,
            Kind::Equals
                | Kind::JsonFields
                | Kind::Contains
                | Kind::Icontains
                | Kind::StartsWith
                | Kind::Similar
                | Kind::RougeL
                | Kind::Levenshtein
                | Kind::Factuality
        )
    }
}

/// An assertion as written in a spec.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionSpec {
    /// The kind's name, with `not-` in front to turn it around.
    #[serde(rename = "type")]
    pub kind: String,
    pub value: Option<Value>,
    pub weight: Option<f64>,
    pub threshold: Option<f64>,
    /// `faithfulness`, `grounded`: the variable that holds the context the output must keep to.
    pub context: Option<String>,
}

/// A checked assertion.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "AssertionSpec")]
pub struct Assertion {
    pub kind: Kind,
    pub negated: bool,
    /// What the output is compared with; strings are templates over `expected` and `vars`.
    pub value: Option<Value>,
    pub weight: f64,
    pub threshold: Option<f64>,
    pub context: Option<String>,
    /// A `regex` value that is no template, compiled once: it is the same on every row.
    regex: Option<Regex>,
}

impl TryFrom<AssertionSpec> for Assertion {
    type Error = String;

    fn try_from(spec: AssertionSpec) -> Result<Assertion, String> {
        let (negated, name) = match spec.kind.strip_prefix(NOT) {
            Some(name) => (true, name),
            None => (false, spec.kind.as_str()),
        };
        let kind = KINDS.iter().find(|(n, _)| *n == name).map(|(_, k)| *k).ok_or_else(|| {
            let names: Vec<&str> = KINDS.iter().map(|(n, _)| *n).collect();
            format!(
                "unknown assertion type `{}`; the types are {} (each may take a `{NOT}` prefix)",
                spec.kind,
                names.join(", ")
            )
        })?;
        let what = spec.kind.as_str();
        let weight = spec.weight.unwrap_or(1.0);
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(format!("{what}: `weight` must be a number of at least 0, not {weight}"));
        }
        if let Some(threshold) = spec.threshold {
            if !kind.scored() {
                return Err(format!(
                    "{what}: `threshold` is for scored assertions (similar, rouge-l, levenshtein, llm-rubric, \
                     factuality, faithfulness, grounded); {} passes or fails outright",
                    kind.name()
                ));
            }
            if !(0.0..=1.0).contains(&threshold) {
                return Err(format!("{what}: `threshold` must be between 0 and 1, not {threshold}"));
            }
        }
        match (kind, &spec.context) {
            (Kind::Faithfulness, None) => {
                return Err(format!("{what}: needs `context`, the variable that holds the supplied context"))
            }
            (Kind::Faithfulness | Kind::Grounded, Some(_)) => {}
            (_, Some(_)) => return Err(format!("{what}: `context` is only for faithfulness and grounded")),
            _ => {}
        }
        let value = check_value(kind, spec.value).map_err(|e| format!("{what}: {e}"))?;
        let regex = match (kind, value.as_ref().and_then(Value::as_str)) {
            (Kind::Regex, Some(pattern)) if !is_template(pattern) => {
                Some(Regex::new(pattern).map_err(|e| format!("{what}: invalid regex: {e}"))?)
            }
            _ => None,
        };
        Ok(Assertion {
            kind,
            negated,
            value,
            weight,
            threshold: spec.threshold,
            context: spec.context,
            regex,
        })
    }
}

/// Checks `value` has the shape `kind` needs, its templates parse and its schema is valid (a
/// regex that is no template is compiled, and so checked, by the caller); a JSON schema given as
/// a string comes back parsed.
fn check_value(kind: Kind, value: Option<Value>) -> Result<Option<Value>, String> {
    let text = |value: &Value| -> Result<(), String> {
        let text = value.as_str().ok_or_else(|| format!("`value` must be a string, not {value}"))?;
        check_template(text)
    };
    match (kind, &value) {
        (Kind::Faithfulness, Some(_)) => {
            Err("takes no `value`: it checks the output against its `context` variable".into())
        }
        (Kind::Grounded | Kind::Declines, Some(_)) => {
            Err("takes no `value`: it checks the output against the passages it was given".into())
        }
        (Kind::Faithfulness | Kind::Grounded | Kind::Declines | Kind::IsJson, None) => Ok(value),
        (_, None) if kind.compares_with_expected() => Ok(value),
        (_, None) => Err("needs a `value`".into()),
        (Kind::Equals, Some(Value::String(s))) => check_template(s).map(|()| value),
        (Kind::Equals, Some(_)) => Ok(value),
        (Kind::JsonFields, Some(Value::Object(_))) => Ok(value),
        (Kind::JsonFields, Some(v)) => {
            Err(format!("`value` must be a table of the expected fields, not {v}"))
        }
        (Kind::ContainsAny | Kind::ContainsAll, Some(v)) => {
            let items = v.as_array().filter(|a| !a.is_empty()).ok_or("`value` must be a list of strings")?;
            items.iter().try_for_each(text)?;
            Ok(value)
        }
        (Kind::IsJson, Some(v)) => {
            let schema = match v {
                Value::String(json) => {
                    serde_json::from_str(json).map_err(|e| format!("the schema is not valid JSON: {e}"))?
                }
                schema => schema.clone(),
            };
            check_schema(&schema).map_err(|e| format!("invalid schema: {e}"))?;
            Ok(Some(schema))
        }
        (Kind::Latency | Kind::Cost, Some(v)) => match v.as_f64() {
            Some(limit) if limit >= 0.0 => Ok(value),
            _ => Err(format!(
                "`value` must be a number of at least 0 (the most {}), not {v}",
                if kind == Kind::Latency { "milliseconds" } else { "USD" }
            )),
        },
        (_, Some(v)) => text(v).map(|()| value),
    }
}

fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

fn check_template(text: &str) -> Result<(), String> {
    environment().template_from_str(text).map(|_| ()).map_err(|e| format!("invalid template in `value`: {e}"))
}

/// An assertion's value filled in for one row.
#[derive(Clone, Debug)]
pub enum Target {
    Text(String),
    Texts(Vec<String>),
    Json(Value),
    Regex(Regex),
    /// The assertion's own value, the same on every row: `is-json`'s schema, `latency`'s and
    /// `cost`'s limits.
    Own,
}

/// What a check looks at besides the output.
pub struct Observation<'a> {
    pub output: &'a str,
    /// The user's last message, what the judge sees as the input.
    pub input: &'a str,
    pub latency_ms: f64,
    /// USD; `None` when the model has no prices.
    pub cost_usd: Option<f64>,
    /// The passages a RAG variant's answer was given, `[1]` first.
    pub passages: Option<&'a [Passage]>,
    /// The sources a RAG variant's answer cites.
    pub cited: Option<&'a [String]>,
}

/// The models some checks need.
#[derive(Clone, Copy, Default)]
pub struct Graders<'a> {
    pub embedder: Option<&'a dyn EmbeddingModel>,
    pub judge: Option<&'a dyn ChatModel>,
}

/// How one assertion went on one row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssertionOutcome {
    /// The type as written, `not-` included.
    pub kind: String,
    pub pass: bool,
    pub score: f64,
    pub weight: f64,
    pub reason: String,
}

impl Assertion {
    /// Reads an assertion from its spec (what a spec file's `[[assertions]]` hold).
    pub fn new(spec: AssertionSpec) -> Result<Assertion, String> {
        Assertion::try_from(spec)
    }

    /// The type as written: `not-contains`.
    pub fn type_name(&self) -> String {
        format!("{}{}", if self.negated { NOT } else { "" }, self.kind.name())
    }

    /// The value filled in for `row`: its template rendered with the row's `expected` and
    /// `vars`, or the row's expected value when there is no `value`.
    pub fn bind(&self, row: &Row) -> Result<Target, String> {
        if matches!(self.kind, Kind::IsJson | Kind::Latency | Kind::Cost | Kind::Declines)
            || (self.kind == Kind::Grounded && self.context.is_none())
        {
            return Ok(Target::Own);
        }
        let what = self.type_name();
        let render = |text: &str| -> Result<String, String> {
            if !is_template(text) {
                return Ok(text.to_owned());
            }
            let mut context: BTreeMap<&str, Value> = BTreeMap::new();
            context.insert("vars", Value::Object(row.vars.clone().into_iter().collect()));
            if let Some(expected) = &row.expected {
                context.insert("expected", expected.clone());
            }
            environment().render_str(text, context).map_err(|e| format!("{what}: `value`: {e}"))
        };
        let value = match (&self.value, &row.expected) {
            (Some(value), _) => value.clone(),
            (None, Some(expected)) if self.kind.compares_with_expected() => expected.clone(),
            (None, None) if self.kind.compares_with_expected() => {
                return Err(format!(
                    "{what} compares with the row's expected value, and this row has none; \
                     give the row one or the assertion a `value`"
                ))
            }
            (None, _) => Value::Null,
        };
        let as_text = |value: &Value| match value {
            Value::String(s) => render(s),
            other => Ok(other.to_string()),
        };
        Ok(match self.kind {
            Kind::Faithfulness | Kind::Grounded => {
                let name = self.context.as_deref().unwrap_or_default();
                let context = row.vars.get(name).ok_or_else(|| {
                    format!("{what}: the row has no variable `{name}` to take the context from")
                })?;
                Target::Text(as_text(context)?)
            }
            Kind::ContainsAny | Kind::ContainsAll => {
                Target::Texts(value.as_array().into_iter().flatten().map(as_text).collect::<Result<_, _>>()?)
            }
            Kind::Regex => match &self.regex {
                Some(re) => Target::Regex(re.clone()),
                None => {
                    let pattern = as_text(&value)?;
                    Target::Regex(Regex::new(&pattern).map_err(|e| format!("{what}: invalid regex: {e}"))?)
                }
            },
            Kind::Equals if !value.is_string() => Target::Json(value),
            Kind::JsonFields if value.is_object() => Target::Json(value),
            Kind::JsonFields => return Err(format!("{what} needs an expected table of fields, not {value}")),
            _ => Target::Text(as_text(&value)?),
        })
    }

    /// Checks `observation` against `target` (from [`Assertion::bind`]).
    pub async fn check(
        &self,
        target: &Target,
        observation: &Observation<'_>,
        graders: Graders<'_>,
    ) -> AssertionOutcome {
        let outcome = |pass: bool, score: f64, reason: String| AssertionOutcome {
            kind: self.type_name(),
            pass,
            score,
            weight: self.weight,
            reason,
        };
        match self.grade(target, observation, graders).await {
            Ok((pass, score, reason)) if self.negated => outcome(!pass, 1.0 - score, reason),
            Ok((pass, score, reason)) => outcome(pass, score, reason),
            // A check that could not be made fails, turned around or not.
            Err(reason) => outcome(false, 0.0, reason),
        }
    }

    /// `latency`'s or `cost`'s limit (its value, checked to be a number when it was read).
    fn limit(&self) -> f64 {
        self.value.as_ref().and_then(Value::as_f64).unwrap_or_default()
    }

    /// Whether the check holds, its score, and a sentence that says what was found.
    async fn grade(
        &self,
        target: &Target,
        observation: &Observation<'_>,
        graders: Graders<'_>,
    ) -> Result<(bool, f64, String), String> {
        let output = observation.output;
        type Graded = Result<(bool, f64, String), String>;
        let binary =
            |pass: bool, reason: String| -> Graded { Ok((pass, if pass { 1.0 } else { 0.0 }, reason)) };
        let scored = |score: f64, reason: String| -> Graded {
            let threshold = self.threshold.or(self.kind.default_threshold()).unwrap_or(0.5);
            Ok((score >= threshold, score, format!("{reason} (threshold {threshold})")))
        };
        match (self.kind, target) {
            (Kind::Equals, Target::Text(t)) => {
                let equal = output.trim() == t.trim();
                binary(equal, format!("the output {} {}", if equal { "is" } else { "is not" }, quote(t)))
            }
            (Kind::Equals, Target::Json(expected)) => match output_json(output) {
                Ok(json) if json == *expected => binary(true, format!("the output's JSON is {expected}")),
                Ok(json) => binary(false, format!("the output's JSON {json} is not {expected}")),
                Err(e) => binary(false, format!("the output holds no JSON to compare with {expected}: {e}")),
            },
            (Kind::JsonFields, Target::Json(Value::Object(expected))) => {
                let json = output_json(output).map_err(|e| format!("the output holds no JSON: {e}"))?;
                let wrong: Vec<&String> = expected
                    .iter()
                    .filter(|(k, v)| !same_json(json.get(k.as_str()), v))
                    .map(|(k, _)| k)
                    .collect();
                let score = 1.0 - wrong.len() as f64 / expected.len().max(1) as f64;
                let found = if wrong.is_empty() {
                    "every field is right".to_string()
                } else {
                    let wrong: Vec<String> = wrong.iter().map(|k| format!("`{k}`")).collect();
                    format!("wrong or missing: {}", wrong.join(", "))
                };
                scored(
                    score,
                    format!("{} of {} fields right; {found}", expected.len() - wrong.len(), expected.len()),
                )
            }
            (Kind::Contains | Kind::Icontains, Target::Text(t)) => {
                let found = if self.kind == Kind::Icontains {
                    output.to_lowercase().contains(&t.to_lowercase())
                } else {
                    output.contains(t.as_str())
                };
                binary(
                    found,
                    format!(
                        "the output {} {}",
                        if found { "contains" } else { "does not contain" },
                        quote(t)
                    ),
                )
            }
            (Kind::ContainsAny, Target::Texts(texts)) => {
                match texts.iter().find(|t| output.contains(t.as_str())) {
                    Some(t) => binary(true, format!("the output contains {}", quote(t))),
                    None => binary(false, format!("the output contains none of {}", quote_all(texts))),
                }
            }
            (Kind::ContainsAll, Target::Texts(texts)) => {
                let missing: Vec<String> =
                    texts.iter().filter(|t| !output.contains(t.as_str())).cloned().collect();
                if missing.is_empty() {
                    binary(true, format!("the output contains all of {}", quote_all(texts)))
                } else {
                    binary(false, format!("the output lacks {}", quote_all(&missing)))
                }
            }
            (Kind::Regex, Target::Regex(re)) => match re.find(output) {
                Some(m) => binary(true, format!("/{re}/ matches {}", quote(m.as_str()))),
                None => binary(false, format!("/{re}/ does not match the output")),
            },
            (Kind::StartsWith, Target::Text(t)) => {
                let starts = output.trim_start().starts_with(t.as_str());
                binary(
                    starts,
                    format!(
                        "the output {} with {}",
                        if starts { "starts" } else { "does not start" },
                        quote(t)
                    ),
                )
            }
            (Kind::IsJson, Target::Own) => {
                let json = match serde_json::from_str::<Value>(strip_fence(output)) {
                    Ok(json) => json,
                    Err(e) => return binary(false, format!("the output is not JSON: {e}")),
                };
                match self.value.as_ref().map(|schema| validate(&json, schema)) {
                    Some(Err(e)) => {
                        binary(false, format!("the output's JSON does not follow the schema: {e}"))
                    }
                    Some(Ok(())) => binary(true, "the output is JSON that follows the schema".into()),
                    None => binary(true, "the output is JSON".into()),
                }
            }
            (Kind::Grounded, target) => {
                let passages: Vec<Passage> = match (target, observation.passages) {
                    (Target::Text(context), _) => vec![Passage::new(context, "context")],
                    (_, Some(passages)) => passages.to_vec(),
                    (_, None) => {
                        return Err(
                            "`grounded` needs the passages: run it on a [rag] spec, or give `context`".into(),
                        )
                    }
                };
                // Exact facts and word overlap only: the same on every run, and no judge to load.
                let grounding = temper_ground::check(observation.input, output, &passages, None)
                    .await
                    .map_err(|e| temper_core::error_chain(&e))?;
                let claims = grounding.sentences.iter().filter(|s| s.method != Method::Abstention);
                let unsupported: Vec<String> =
                    claims.filter(|s| !s.supported).map(|s| quote(&s.text)).collect();
                let reason = match unsupported.as_slice() {
                    [] => "every claim is supported by the passages".to_owned(),
                    some => format!("not supported by the passages: {}", some.join(", ")),
                };
                scored(grounding.supported_share(), reason)
            }
            (Kind::Declines, Target::Own) => {
                let declines = temper_ground::is_abstention(output);
                binary(
                    declines,
                    format!("the output {}", if declines { "declines" } else { "does not decline" }),
                )
            }
            (Kind::Cites, Target::Text(source)) => {
                let cited =
                    observation.cited.ok_or("`cites` needs the cited sources: run it on a [rag] spec")?;
                let found = cited.iter().any(|path| path.contains(source.as_str()));
                let list = if cited.is_empty() { "nothing".to_owned() } else { quote_all(cited) };
                binary(
                    found,
                    format!(
                        "the output cites {list}, {} {}",
                        if found { "including" } else { "not" },
                        quote(source)
                    ),
                )
            }
            (Kind::Similar, Target::Text(t)) => {
                let embedder = graders.embedder.ok_or("`similar` needs an embedder, and none was given")?;
                let vectors = embedder
                    .embed(&[output.to_owned(), t.clone()])
                    .await
                    .map_err(|e| format!("the embedder failed: {}", temper_core::error_chain(&e)))?;
                let similarity = match vectors.as_slice() {
                    [a, b] => cosine(a, b),
                    _ => return Err(format!("the embedder returned {} vectors for 2 texts", vectors.len())),
                };
                scored(
                    similarity.clamp(0.0, 1.0),
                    format!("cosine similarity {similarity:.3} to {}", quote(t)),
                )
            }
            (Kind::RougeL, Target::Text(t)) => {
                let score = rouge_l(output, t);
                scored(score, format!("ROUGE-L F1 {score:.3} against {}", quote(t)))
            }
            (Kind::Levenshtein, Target::Text(t)) => {
                let score = levenshtein_similarity(output.trim(), t.trim());
                scored(score, format!("edit similarity {score:.3} to {}", quote(t)))
            }
            (Kind::Latency, Target::Own) => {
                let (took, limit) = (observation.latency_ms, self.limit());
                binary(took <= limit, format!("took {took:.0} ms (limit {limit} ms)"))
            }
            (Kind::Cost, Target::Own) => {
                let limit = self.limit();
                match observation.cost_usd {
                    Some(cost) => binary(cost <= limit, format!("cost ${cost:.6} (limit ${limit})")),
                    None => binary(
                        true,
                        format!("no price is known for the model: counted as $0 (limit ${limit})"),
                    ),
                }
            }
            (Kind::LlmRubric | Kind::Factuality | Kind::Faithfulness, Target::Text(t)) => {
                let model =
                    graders.judge.ok_or("judged assertions need a judge model, and none was given")?;
                let task = match self.kind {
                    Kind::LlmRubric => Task::Rubric { rubric: t, input: observation.input, output },
                    Kind::Factuality => Task::Factuality { input: observation.input, reference: t, output },
                    _ => Task::Faithfulness { context: t, output },
                };
                let verdict = judge(model, &task)
                    .await
                    .map_err(|e| format!("the judge gave no usable verdict: {e}"))?;
                let reason = format!(
                    "the judge: {}",
                    if verdict.reason.is_empty() { "(no reason)" } else { verdict.reason.as_str() }
                );
                match self.threshold {
                    Some(_) => scored(verdict.score, reason),
                    None => Ok((verdict.pass, verdict.score, reason)),
                }
            }
            (kind, target) => Err(format!("{} cannot check against {target:?}", kind.name())),
        }
    }
}

/// The output's JSON: the whole output (a code fence allowed), else the first JSON value in it,
/// repaired as the prompt crate repairs small models' JSON.
fn output_json(output: &str) -> Result<Value, String> {
    serde_json::from_str(strip_fence(output)).or_else(|_| extract_json(output))
}

/// The text inside a Markdown code fence (```json … ```), or the trimmed text.
fn strip_fence(text: &str) -> &str {
    let text = text.trim();
    let Some(inner) = text.strip_prefix("```").and_then(|t| t.strip_suffix("```")) else { return text };
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    inner.trim()
}

/// A text on one line in backquotes, cut short when long, for reasons.
fn quote(text: &str) -> String {
    format!("`{}`", excerpt(text))
}

fn quote_all(texts: &[String]) -> String {
    texts.iter().map(|t| quote(t)).collect::<Vec<_>>().join(", ")
}

/// Whether an output's field equals the expected value, numbers by value (`1250` = `1250.0`).
fn same_json(found: Option<&Value>, expected: &Value) -> bool {
    match (found, expected) {
        (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Some(found), expected) => found == expected,
        (None, _) => false,
    }
}
