//! What a request may ask beyond text: tools the model may call, the shape of its answer, and the
//! log-probabilities of the tokens it chose. Backends that cannot honour one refuse the request.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// A function the model may call: its name, what it is for, and its arguments as a JSON schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON schema of the arguments object.
    pub parameters: Value,
}

impl Tool {
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        Tool { name: name.into(), description: Some(description.into()), parameters }
    }
}

/// Which of the request's tools the model may call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides whether to call one.
    #[default]
    Auto,
    /// The model answers in text.
    None,
    /// The model must call at least one tool.
    Required,
    /// The model must call this tool.
    Function(String),
}

/// A call the model made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The id a tool result answers to (the vendor's, or one Temper made when it has none).
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them: JSON text, not guaranteed valid.
    pub arguments: String,
}

impl ToolCall {
    /// The arguments as JSON, or an error that names the call and quotes what was written.
    pub fn parsed_arguments(&self) -> Result<Value> {
        serde_json::from_str(&self.arguments).map_err(|e| {
            Error::Backend(format!(
                "the model called `{}` with arguments that are not JSON ({e}): {}",
                self.name, self.arguments
            ))
        })
    }
}

/// The shape the answer must take.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid under `schema`; `strict` asks the backend to enforce it while decoding.
    JsonSchema {
        name: String,
        schema: Value,
        #[serde(default)]
        strict: bool,
    },
    /// Text matching a Lark grammar (a Temper extension: local models only).
    Grammar {
        grammar: String,
    },
    /// Text matching a regular expression (a Temper extension: local models only).
    Regex {
        pattern: String,
    },
}

impl ResponseFormat {
    /// The format's name as the API spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            ResponseFormat::Text => "text",
            ResponseFormat::JsonObject => "json_object",
            ResponseFormat::JsonSchema { .. } => "json_schema",
            ResponseFormat::Grammar { .. } => "grammar",
            ResponseFormat::Regex { .. } => "regex",
        }
    }
}

/// The log-probability of one generated token and of the likeliest tokens in its place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<TopLogprob>,
}

/// An alternative to a generated token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
}

/// The most alternatives per token a request may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: u32 = 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse_or_say_what_was_written() {
        let call =
            ToolCall { id: "c1".into(), name: "weather".into(), arguments: r#"{"city":"Oslo"}"#.into() };
        assert_eq!(call.parsed_arguments().unwrap()["city"], "Oslo");
        let broken = ToolCall { arguments: r#"{"city": Oslo}"#.into(), ..call };
        let err = broken.parsed_arguments().unwrap_err().to_string();
        assert!(err.contains("`weather`") && err.contains("{\"city\": Oslo}"), "{err}");
    }

    #[test]
    fn formats_serialize_tagged() {
        let format = ResponseFormat::JsonSchema {
            name: "person".into(),
            schema: serde_json::json!({"type": "object"}),
            strict: true,
        };
        let json = serde_json::to_value(&format).unwrap();
        assert_eq!(json["type"], "json_schema");
        assert_eq!(serde_json::from_value::<ResponseFormat>(json).unwrap(), format);
    }
}
