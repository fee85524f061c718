//! Assertions judged by a model: a short grading prompt that asks for
//! `{"pass", "score", "reason"}`, read robustly (the prompt crate's JSON repair), asked once
//! more when the reply cannot be read, and a failed assertion, never an error, when it still
//! cannot.

use serde_json::{json, Value};
use temper_core::{ChatModel, GenerationParams, Message};
use temper_prompt::json::extract_json;
use temper_prompt::retry::{ask_until, Retry};
use temper_prompt::run::structured_format;

/// The judge is asked at most twice: once, and once more with the reason its reply was refused.
pub const JUDGE_ATTEMPTS: usize = 2;

const SYSTEM: &str = "You are a strict, fair grader. Read the task and grade the output. Reply with \
only a JSON object: {\"pass\": true or false, \"score\": a number from 0 to 1, \"reason\": \"one short sentence\"}.";

/// What the judge is asked to grade.
pub enum Task<'a> {
    /// The output against a rubric.
    Rubric { rubric: &'a str, input: &'a str, output: &'a str },
    /// The output's facts against a reference answer.
    Factuality { input: &'a str, reference: &'a str, output: &'a str },
    /// The output's claims against the context it was given.
    Faithfulness { context: &'a str, output: &'a str },
}

impl Task<'_> {
    fn prompt(&self) -> String {
        match self {
            Task::Rubric { rubric, input, output } => format!(
                "Rubric: {rubric}\n\n<input>\n{input}\n</input>\n\n<output>\n{output}\n</output>\n\n\
                 Does the output meet the rubric?"
            ),
            Task::Factuality { input, reference, output } => format!(
                "<question>\n{input}\n</question>\n\n<reference>\n{reference}\n</reference>\n\n\
                 <output>\n{output}\n</output>\n\nIs the output factually consistent with the reference \
                 answer? It passes when it states the same facts and contradicts none."
            ),
            Task::Faithfulness { context, output } => format!(
                "<context>\n{context}\n</context>\n\n<output>\n{output}\n</output>\n\n\
                 Is every claim of the output supported by the context? It fails when it states \
                 anything the context does not support."
            ),
        }
    }
}

/// The judge's grade.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub pass: bool,
    pub score: f64,
    pub reason: String,
}

/// Asks `judge` to grade `task`; an error is the reason no usable verdict came back.
pub async fn judge(judge: &dyn ChatModel, task: &Task<'_>) -> Result<Verdict, String> {
    let messages = vec![Message::system(SYSTEM), Message::user(task.prompt())];
    // Greedy and short: the same request gives the same verdict, and the cache can serve it.
    let params = GenerationParams { temperature: Some(0.0), max_tokens: Some(200), ..Default::default() };
    // A local judge is held to the verdict's shape while decoding; a vendor's reply is read robustly.
    let verdict = json!({
        "type": "object",
        "properties": {
            "pass": {"type": "boolean"},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "reason": {"type": "string", "maxLength": 300},
        },
        "required": ["pass", "score", "reason"],
        "additionalProperties": false,
    });
    let format = structured_format(&verdict);
    let attempts = JUDGE_ATTEMPTS;
    ask_until(
        judge,
        messages,
        &params,
        attempts,
        "the judge",
        parse_verdict,
        Retry::WithReason,
        Some(&format),
    )
    .await
    .map(|checked| checked.value)
    .map_err(|e| temper_core::error_chain(&e))
}

/// Reads a verdict from a reply. `pass` and `score` may be strings ("true", "0.8"); a missing
/// `score` follows `pass`, a missing `pass` is a score of at least 0.5; a score given out of 10
/// or 100 is scaled.
pub fn parse_verdict(reply: &str) -> Result<Verdict, String> {
    let json = extract_json(reply)?;
    let object = json.as_object().ok_or("the verdict must be a JSON object")?;
    let pass = object.get("pass").map(|v| match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if ["true", "yes", "pass"].contains(&s.trim().to_lowercase().as_str()) => Ok(true),
        Value::String(s) if ["false", "no", "fail"].contains(&s.trim().to_lowercase().as_str()) => Ok(false),
        other => Err(format!("`pass` must be true or false, not {other}")),
    });
    let score = object.get("score").map(|v| {
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        match n {
            Some(n) if (0.0..=1.0).contains(&n) => Ok(n),
            Some(n) if (0.0..=10.0).contains(&n) => Ok(n / 10.0),
            Some(n) if (0.0..=100.0).contains(&n) => Ok(n / 100.0),
            _ => Err(format!("`score` must be a number from 0 to 1, not {v}")),
        }
    });
    let (pass, score) = match (pass.transpose()?, score.transpose()?) {
        (Some(pass), Some(score)) => (pass, score),
        (Some(pass), None) => (pass, if pass { 1.0 } else { 0.0 }),
        (None, Some(score)) => (score >= 0.5, score),
        (None, None) => return Err("the verdict has neither `pass` nor `score`".into()),
    };
    let reason = object.get("reason").and_then(Value::as_str).unwrap_or("").trim().to_owned();
    Ok(Verdict { pass, score, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_read_from_untidy_replies() {
        let v =
            parse_verdict("Sure!\n```json\n{\"pass\": true, \"score\": 0.9, \"reason\": \"Good.\",}\n```")
                .unwrap();
        assert_eq!(v, Verdict { pass: true, score: 0.9, reason: "Good.".into() });
        let v = parse_verdict("{\"pass\": \"no\", \"score\": \"3\"}").unwrap();
        assert_eq!((v.pass, v.score), (false, 0.3));
        assert!(parse_verdict("{\"score\": 0.7}").unwrap().pass);
        assert_eq!(parse_verdict("{\"pass\": false}").unwrap().score, 0.0);
    }

    #[test]
    fn unreadable_verdicts_say_why() {
        assert_eq!(parse_verdict("I think it is fine.").unwrap_err(), "the reply holds no JSON object");
        assert_eq!(
            parse_verdict("{\"reason\": \"ok\"}").unwrap_err(),
            "the verdict has neither `pass` nor `score`"
        );
        assert!(parse_verdict("{\"pass\": 2}").unwrap_err().starts_with("`pass` must be true or false"));
        assert!(parse_verdict("{\"score\": -1}").unwrap_err().starts_with("`score` must be a number"));
    }
}
