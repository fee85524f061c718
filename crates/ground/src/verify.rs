//! The model check: a claim put to a model with its passage, answered "yes" or "no" under a
//! JSON schema the backend enforces where it can.

use serde_json::{json, Value};
use temper_core::{ChatModel, ChatRequest, Error, GenerationParams, Message, ResponseFormat};

use crate::Result;

const INSTRUCTIONS: &str = "You check claims against a passage. A claim is supported only when the passage \
states it: a claim that adds a number, date, name or detail the passage does not give is not supported.";

/// A model asked whether passages support claims.
pub struct Verifier<'a> {
    model: &'a dyn ChatModel,
}

impl<'a> Verifier<'a> {
    pub fn new(model: &'a dyn ChatModel) -> Self {
        Verifier { model }
    }

    /// Whether `passage` states `claim`, as the model judges it (greedy, constrained to
    /// `{"supported": "yes"|"no"}`; a backend that cannot enforce a schema is asked without it
    /// and its reply read for a yes).
    pub async fn supports(&self, passage: &str, claim: &str) -> Result<bool> {
        let user = format!(
            "Passage: {passage}\n\nClaim: {claim}\n\nDoes the passage state the claim? Answer yes or no."
        );
        let params = GenerationParams { temperature: Some(0.0), max_tokens: Some(16), ..Default::default() };
        let request =
            ChatRequest::new(vec![Message::system(INSTRUCTIONS), Message::user(user)]).with_params(params);
        let format =
            ResponseFormat::JsonSchema { name: "verdict".into(), schema: verdict_schema(), strict: true };
        let reply = match self.model.chat(request.clone().with_response_format(format)).await {
            Err(Error::Unsupported(_)) => self.model.chat(request).await?,
            other => other?,
        };
        Ok(is_yes(&reply.text))
    }
}

fn verdict_schema() -> Value {
    json!({
        "type": "object",
        "properties": { "supported": { "type": "string", "enum": ["yes", "no"] } },
        "required": ["supported"],
        "additionalProperties": false
    })
}

/// Whether a verdict says yes: `{"supported": "yes"}`, or a reply whose first word is "yes".
fn is_yes(reply: &str) -> bool {
    if let Ok(value) = serde_json::from_str::<Value>(reply.trim()) {
        return value.get("supported").and_then(Value::as_str) == Some("yes");
    }
    let first = reply.trim_start().split(|c: char| !c.is_alphabetic()).next().unwrap_or("");
    first.eq_ignore_ascii_case("yes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use temper_prompt::scripted::Scripted;

    #[test]
    fn verdicts_are_read_from_json_or_prose() {
        assert!(is_yes(r#"{"supported": "yes"}"#) && !is_yes(r#"{"supported":"no"}"#));
        assert!(is_yes("Yes, it does.") && !is_yes("No.") && !is_yes("yesterday"));
    }

    #[tokio::test]
    async fn the_model_is_asked_under_the_verdict_schema() {
        let model = Scripted::new(|request| {
            assert!(matches!(request.response_format, Some(ResponseFormat::JsonSchema { .. })));
            let claim_is_in_passage = request.messages[1].content.contains("Claim: It has arches.");
            format!(r#"{{"supported": "{}"}}"#, if claim_is_in_passage { "yes" } else { "no" })
        });
        let verifier = Verifier::new(&model);
        assert!(verifier.supports("It has three arches.", "It has arches.").await.unwrap());
        assert!(!verifier.supports("It has three arches.", "It is red.").await.unwrap());
    }
}
