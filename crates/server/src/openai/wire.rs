//! OpenAI's request bodies as clients send them, turned into Temper's requests. Every field
//! OpenAI defines is either honoured, refused by name, or (for bookkeeping fields such as `user`)
//! accepted and said to be ignored in docs/server.md; an unknown field is a 400 naming it.

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_json::{Map, Value};
use temper_core::{
    ChatRequest, CompletionRequest, GenerationParams, Message, ResponseFormat, Role, Tool, ToolCall,
    ToolChoice,
};

use crate::error::{from_value, ApiError};

/// One string or several, as `stop` and `input` take them.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// The sampling fields both generation routes share, OpenAI's and Temper's extensions. They are
/// parsed apart from the rest of the body ([`parse_body`]): through serde's `flatten`, unknown
/// fields could not be refused and errors would lose the field's name.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_tokens: Option<u32>,
    pub stop: Option<OneOrMany>,
    pub seed: Option<u64>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    /// Extensions, as llama.cpp's server and vLLM name them.
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    /// Extension: the context window for this request, at most the one the model was loaded with.
    pub context_window: Option<u32>,
    /// Extension: drop the oldest prompt tokens when the prompt does not fit, instead of a 400.
    pub truncate: Option<bool>,
}

impl Sampling {
    fn params(self, max_completion_tokens: Option<u32>) -> Result<(GenerationParams, bool), ApiError> {
        if let (Some(a), Some(b)) = (self.max_tokens, max_completion_tokens) {
            if a != b {
                return Err(ApiError::bad_request(
                    format!("max_tokens ({a}) and max_completion_tokens ({b}) disagree; send one"),
                    Some("max_completion_tokens"),
                ));
            }
        }
        let stop = self.stop.map(OneOrMany::into_vec).unwrap_or_default();
        if stop.len() > 16 {
            return Err(ApiError::bad_request("at most 16 stop sequences", Some("stop")));
        }
        let params = GenerationParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            max_tokens: max_completion_tokens.or(self.max_tokens),
            stop,
            seed: self.seed,
            context_window: self.context_window,
        };
        if params.temperature.is_some_and(|t| t > 2.0) {
            return Err(ApiError::bad_request("temperature must be between 0 and 2", Some("temperature")));
        }
        params.validate()?;
        Ok((params, self.truncate.unwrap_or(false)))
    }
}

#[derive(Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

const SAMPLING_FIELDS: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "top_k",
    "min_p",
    "repeat_penalty",
    "context_window",
    "truncate",
];

/// A generation route's body: its own fields as `T`, its sampling fields as [`Sampling`].
pub fn parse_body<T: DeserializeOwned>(body: Value) -> Result<(T, Sampling), ApiError> {
    let Value::Object(mut rest) = body else {
        return Err(ApiError::bad_request("the request body must be a JSON object", None));
    };
    let sampling: Map<String, Value> =
        SAMPLING_FIELDS.iter().filter_map(|key| rest.remove_entry(*key)).collect();
    Ok((from_value(Value::Object(rest))?, from_value(Value::Object(sampling))?))
}

/// `POST /v1/chat/completions`, but for its sampling fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatCompletionBody {
    pub model: String,
    pub messages: Vec<WireMessage>,
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<u32>,
    pub tools: Option<Vec<WireTool>>,
    pub tool_choice: Option<WireToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<WireResponseFormat>,
    pub n: Option<u32>,
    pub logit_bias: Option<BTreeMap<String, f32>>,
    /// OpenAI's bookkeeping: accepted, not read.
    #[serde(rename = "user")]
    _user: Option<IgnoredAny>,
    #[serde(rename = "metadata")]
    _metadata: Option<IgnoredAny>,
    #[serde(rename = "store")]
    _store: Option<IgnoredAny>,
    #[serde(rename = "service_tier")]
    _service_tier: Option<IgnoredAny>,
}

/// A message as OpenAI sends it: content as a string, or as parts of which only text is served.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    pub name: Option<String>,
    pub tool_calls: Option<Vec<WireToolCall>>,
    pub tool_call_id: Option<String>,
    /// Sent back by some clients with the assistant's earlier turns.
    pub refusal: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Deserialize)]
pub struct WireToolCall {
    pub id: String,
    pub function: WireFunctionCall,
}

#[derive(Deserialize)]
pub struct WireFunctionCall {
    pub name: String,
    pub arguments: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireTool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: WireFunction,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireFunction {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Option<Value>,
    pub strict: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum WireToolChoice {
    Mode(String),
    Named { function: NamedFunction },
}

#[derive(Deserialize)]
pub struct NamedFunction {
    pub name: String,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        json_schema: JsonSchemaFormat,
    },
    /// Temper's extensions, enforced by local models: a Lark grammar, a regular expression.
    Grammar {
        grammar: String,
    },
    Regex {
        pattern: String,
    },
}

#[derive(Deserialize)]
pub struct JsonSchemaFormat {
    pub name: String,
    #[serde(default)]
    pub schema: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

/// What a chat completion body asks for, in Temper's terms.
pub struct ChatCall {
    pub model: String,
    pub request: ChatRequest,
    pub stream: bool,
    pub include_usage: bool,
}

impl ChatCompletionBody {
    pub fn into_call(self, sampling: Sampling) -> Result<ChatCall, ApiError> {
        refuse_n(self.n)?;
        refuse_logit_bias(self.logit_bias.as_ref())?;
        if self.messages.is_empty() {
            return Err(ApiError::bad_request("messages must hold at least one message", Some("messages")));
        }
        let messages = self
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| m.into_message(i))
            .collect::<Result<_, _>>()?;
        let (params, truncate) = sampling.params(self.max_completion_tokens)?;
        let tools = self
            .tools
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, tool)| tool.into_tool(i))
            .collect::<Result<Vec<_>, _>>()?;
        let tool_choice = match self.tool_choice {
            None => ToolChoice::Auto,
            Some(WireToolChoice::Mode(mode)) => match mode.as_str() {
                "auto" => ToolChoice::Auto,
                "none" => ToolChoice::None,
                "required" => ToolChoice::Required,
                other => {
                    let message =
                        format!("`{other}` is not a tool choice; use auto, none, required or a function");
                    return Err(ApiError::bad_request(message, Some("tool_choice")));
                }
            },
            Some(WireToolChoice::Named { function }) => ToolChoice::Function(function.name),
        };
        let response_format = self.response_format.map(|format| match format {
            WireResponseFormat::Text => Ok(ResponseFormat::Text),
            WireResponseFormat::JsonObject => Ok(ResponseFormat::JsonObject),
            WireResponseFormat::JsonSchema { json_schema } => match json_schema.schema {
                Some(schema) => Ok(ResponseFormat::JsonSchema {
                    name: json_schema.name,
                    schema,
                    strict: json_schema.strict.unwrap_or(false),
                }),
                None => Err(ApiError::bad_request(
                    "json_schema needs a schema",
                    Some("response_format.json_schema.schema"),
                )),
            },
            WireResponseFormat::Grammar { grammar } => Ok(ResponseFormat::Grammar { grammar }),
            WireResponseFormat::Regex { pattern } => Ok(ResponseFormat::Regex { pattern }),
        });
        let logprobs = match (self.logprobs, self.top_logprobs) {
            (true, top) => Some(top.unwrap_or(0)),
            (false, None) => None,
            (false, Some(_)) => {
                return Err(ApiError::bad_request("top_logprobs needs logprobs: true", Some("top_logprobs")))
            }
        };
        let request = ChatRequest {
            messages,
            params,
            truncate,
            tools,
            tool_choice,
            parallel_tool_calls: self.parallel_tool_calls,
            response_format: response_format.transpose()?,
            logprobs,
        };
        request.validate()?;
        let include_usage = self.stream_options.is_some_and(|o| o.include_usage);
        Ok(ChatCall { model: self.model, request, stream: self.stream, include_usage })
    }
}

impl WireMessage {
    pub fn into_message(self, index: usize) -> Result<Message, ApiError> {
        let at = |field: &str| format!("messages[{index}].{field}");
        let role = match self.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => {
                let message =
                    format!("`{other}` is not a role; use system, developer, user, assistant or tool");
                return Err(ApiError::bad_request(message, Some(&at("role"))));
            }
        };
        let content = match self.content {
            None => String::new(),
            Some(Content::Text(text)) => text,
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for (j, part) in parts.into_iter().enumerate() {
                    match (part.kind.as_str(), part.text) {
                        ("text", Some(piece)) => text.push_str(&piece),
                        (kind, _) => {
                            let message =
                                format!("content parts of type `{kind}` are not supported; send text parts");
                            return Err(ApiError::bad_request(message, Some(&at(&format!("content[{j}]")))));
                        }
                    }
                }
                text
            }
        };
        let tool_calls: Vec<ToolCall> = self
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .map(|c| ToolCall { id: c.id, name: c.function.name, arguments: c.function.arguments })
            .collect();
        if role != Role::Assistant && !tool_calls.is_empty() {
            return Err(ApiError::bad_request(
                "only assistant messages carry tool_calls",
                Some(&at("tool_calls")),
            ));
        }
        if role == Role::Tool && self.tool_call_id.is_none() {
            return Err(ApiError::bad_request(
                "a tool message needs the tool_call_id it answers",
                Some(&at("tool_call_id")),
            ));
        }
        let _ = (self.name, self.refusal);
        Ok(Message { role, content, tool_calls, tool_call_id: self.tool_call_id })
    }
}

impl WireTool {
    fn into_tool(self, index: usize) -> Result<Tool, ApiError> {
        if self.kind != "function" {
            let message = format!("tools of type `{}` are not supported; use function tools", self.kind);
            return Err(ApiError::bad_request(message, Some(&format!("tools[{index}].type"))));
        }
        let _ = self.function.strict;
        let parameters = self
            .function
            .parameters
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
        Ok(Tool { name: self.function.name, description: self.function.description, parameters })
    }
}

/// `POST /v1/completions` (raw text, no chat template), but for its sampling fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionBody {
    pub model: String,
    pub prompt: OneOrMany,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u32>,
    pub best_of: Option<u32>,
    pub echo: Option<bool>,
    pub suffix: Option<String>,
    pub logprobs: Option<u32>,
    pub logit_bias: Option<BTreeMap<String, f32>>,
    /// OpenAI's bookkeeping: accepted, not read.
    #[serde(rename = "user")]
    _user: Option<IgnoredAny>,
}

/// What a completion body asks for.
pub struct CompletionCall {
    pub model: String,
    pub request: CompletionRequest,
    pub stream: bool,
    pub include_usage: bool,
}

impl CompletionBody {
    pub fn into_call(self, sampling: Sampling) -> Result<CompletionCall, ApiError> {
        refuse_n(self.n)?;
        refuse_n(self.best_of).map_err(|e| ApiError { param: Some("best_of".into()), ..e })?;
        refuse_logit_bias(self.logit_bias.as_ref())?;
        if self.echo == Some(true) {
            return Err(ApiError::bad_request(
                "echo is not supported; the prompt is yours already",
                Some("echo"),
            ));
        }
        if self.suffix.is_some() {
            return Err(ApiError::bad_request(
                "suffix (fill-in-the-middle) is not supported",
                Some("suffix"),
            ));
        }
        if self.logprobs.is_some() {
            return Err(ApiError::bad_request(
                "logprobs on /v1/completions is not supported; use /v1/chat/completions",
                Some("logprobs"),
            ));
        }
        let prompt = match self.prompt.into_vec() {
            mut one if one.len() == 1 => one.remove(0),
            many => {
                let message = format!("send one prompt per request ({} were sent)", many.len());
                return Err(ApiError::bad_request(message, Some("prompt")));
            }
        };
        let (params, truncate) = sampling.params(None)?;
        let include_usage = self.stream_options.is_some_and(|o| o.include_usage);
        let request = CompletionRequest { prompt, params, truncate };
        Ok(CompletionCall { model: self.model, request, stream: self.stream, include_usage })
    }
}

/// `POST /v1/embeddings`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsBody {
    pub model: String,
    pub input: EmbeddingInput,
    pub encoding_format: Option<String>,
    pub dimensions: Option<usize>,
    /// OpenAI's bookkeeping: accepted, not read.
    #[serde(rename = "user")]
    _user: Option<IgnoredAny>,
}

/// Texts, or token ids (which only the model that made them could read back).
#[derive(Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Texts(OneOrMany),
    Tokens(IgnoredAny),
}

fn refuse_n(n: Option<u32>) -> Result<(), ApiError> {
    match n {
        None | Some(1) => Ok(()),
        Some(n) => Err(ApiError::bad_request(
            format!("n = {n}: one choice per request is served; send {n} requests (they decode together)"),
            Some("n"),
        )),
    }
}

fn refuse_logit_bias(bias: Option<&BTreeMap<String, f32>>) -> Result<(), ApiError> {
    match bias {
        Some(bias) if !bias.is_empty() => {
            Err(ApiError::bad_request("logit_bias is not supported", Some("logit_bias")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::parse_json;

    fn call(body: &str) -> Result<ChatCall, ApiError> {
        let (body, sampling) = parse_body::<ChatCompletionBody>(parse_json(body.as_bytes())?)?;
        body.into_call(sampling)
    }

    #[test]
    fn a_full_request_becomes_a_chat_request() {
        let call = call(
            r#"{"model": "m", "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ], "temperature": 0.5, "top_k": 40, "stop": "\n", "max_completion_tokens": 7, "seed": 3,
               "stream": true, "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 2,
               "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
               "tool_choice": {"type": "function", "function": {"name": "f"}},
               "response_format": {"type": "json_object"}, "user": "u1", "n": 1}"#,
        )
        .unwrap();
        let request = &call.request;
        assert_eq!(request.messages[0].role, Role::System);
        assert_eq!(request.messages[1].content, "Hi there");
        assert_eq!(request.messages[2].tool_calls[0].name, "f");
        assert_eq!(request.params.stop, ["\n"]);
        assert_eq!(
            (request.params.max_tokens, request.params.top_k, request.params.seed),
            (Some(7), Some(40), Some(3))
        );
        assert_eq!(request.logprobs, Some(2));
        assert_eq!(request.tool_choice, ToolChoice::Function("f".into()));
        assert_eq!(request.response_format, Some(ResponseFormat::JsonObject));
        assert!(call.stream && call.include_usage);
    }

    #[test]
    fn bad_fields_are_named() {
        let param = |body: &str| call(body).err().and_then(|e| e.param);
        let user = r#"[{"role": "user", "content": "hi"}]"#;
        assert_eq!(
            param(&format!(r#"{{"model": "m", "messages": {user}, "temperature": 3}}"#)).as_deref(),
            Some("temperature")
        );
        assert_eq!(param(&format!(r#"{{"model": "m", "messages": {user}, "n": 2}}"#)).as_deref(), Some("n"));
        assert_eq!(
            param(&format!(r#"{{"model": "m", "messages": {user}, "top_p": 0}}"#)).as_deref(),
            Some("top_p")
        );
        assert_eq!(
            param(r#"{"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}"#).as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(param(r#"{"model": "m", "messages": []}"#).as_deref(), Some("messages"));
        assert_eq!(
            param(&format!(r#"{{"model": "m", "messages": {user}, "top_logprobs": 2}}"#)).as_deref(),
            Some("top_logprobs")
        );
        let image = r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}"#;
        assert_eq!(param(image).as_deref(), Some("messages[0].content[0]"));
        assert_eq!(
            param(&format!(r#"{{"model": "m", "messages": {user}, "temprature": 1}}"#)).as_deref(),
            Some("temprature")
        );
        assert_eq!(
            param(&format!(r#"{{"model": "m", "messages": {user}, "max_tokens": 0}}"#)).as_deref(),
            Some("max_tokens")
        );
    }
}
