//! What an agent can call: the [`Tool`] trait, the errors a call ends in, and a [`Toolbox`]
//! that checks a model's call (name, JSON, schema) before the tool sees it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A function the model may call.
///
/// A tool that blocks (a process, a sandbox, a database) does so off the async threads
/// (`tokio::task::spawn_blocking`), so that the other calls of a turn run at the same time.
#[async_trait]
pub trait Tool: Send + Sync {
    /// The name the model calls it by: 1 to 64 letters, digits, `_` or `-`.
    fn name(&self) -> &str;

    /// What it does and when to use it, for the model.
    fn description(&self) -> &str;

    /// A JSON schema of the arguments object ([`schema_of`] derives one from a Rust type).
    fn parameters(&self) -> Value;

    /// Runs the tool on arguments that the toolbox has checked against [`Tool::parameters`].
    async fn call(&self, arguments: Value) -> Result<Value, ToolError>;
}

/// Why a call gave no result. The agent hands it to the model as the call's result, and the
/// run goes on.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ToolError {
    /// The model called a tool that is not offered.
    #[error("there is no tool `{name}`; the tools are: {available}")]
    Unknown { name: String, available: String },
    /// The arguments are not JSON, or not what the schema asks.
    #[error("invalid arguments: {0}")]
    Arguments(String),
    /// The call asks for what the tool does not allow (a path outside its root, a host not on
    /// the allow-list, a write to a read-only database).
    #[error("refused: {0}")]
    Refused(String),
    /// The tool ran past its time limit and was stopped.
    #[error("stopped after {:.1} s: the tool's time limit", .0.as_secs_f64())]
    TimedOut(Duration),
    /// The tool ran and failed.
    #[error("{0}")]
    Failed(String),
}

/// The JSON schema of `T`, for [`Tool::parameters`].
pub fn schema_of<T: JsonSchema>() -> Value {
    let mut schema = schemars::schema_for!(T).to_value();
    // The meta-schema's URL is noise in a prompt.
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    schema
}

/// `arguments` as a `T`, or an error that says which field is wrong.
pub fn arguments<T: DeserializeOwned>(arguments: Value) -> Result<T, ToolError> {
    serde_json::from_value(arguments).map_err(|e| ToolError::Arguments(e.to_string()))
}

/// The tools of one agent, by name, each with its compiled argument schema.
#[derive(Clone, Default)]
pub struct Toolbox {
    tools: Vec<Checked>,
}

#[derive(Clone)]
struct Checked {
    tool: Arc<dyn Tool>,
    schema: Arc<jsonschema::Validator>,
}

/// A tool the toolbox cannot take.
#[derive(Debug, thiserror::Error)]
pub enum ToolboxError {
    #[error("two tools are named `{0}`")]
    Duplicate(String),
    #[error("tool name `{0}`: must be 1 to 64 letters, digits, `_` or `-`")]
    Name(String),
    #[error("tool `{name}`: its parameters are not a valid JSON schema of an object: {reason}")]
    Schema { name: String, reason: String },
}

impl Toolbox {
    pub fn new() -> Self {
        Toolbox::default()
    }

    /// Adds `tool`, checking its name and compiling its schema.
    pub fn add(&mut self, tool: Arc<dyn Tool>) -> Result<(), ToolboxError> {
        let name = tool.name().to_owned();
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(ToolboxError::Name(name));
        }
        if self.get(&name).is_some() {
            return Err(ToolboxError::Duplicate(name));
        }
        let parameters = tool.parameters();
        if !parameters.is_object() {
            return Err(ToolboxError::Schema { name, reason: "it is not a JSON object".into() });
        }
        let schema = jsonschema::validator_for(&parameters)
            .map_err(|e| ToolboxError::Schema { name: name.clone(), reason: e.to_string() })?;
        self.tools.push(Checked { tool, schema: Arc::new(schema) });
        Ok(())
    }

    /// `self` with `tool` added.
    pub fn with(mut self, tool: Arc<dyn Tool>) -> Result<Self, ToolboxError> {
        self.add(tool)?;
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    pub fn names(&self) -> Vec<&str> {
        self.tools.iter().map(|c| c.tool.name()).collect()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.iter().find(|c| c.tool.name() == name).map(|c| &c.tool)
    }

    /// The tools as a request offers them to a model.
    pub fn specs(&self) -> Vec<temper_core::Tool> {
        let spec =
            |c: &Checked| temper_core::Tool::new(c.tool.name(), c.tool.description(), c.tool.parameters());
        self.tools.iter().map(spec).collect()
    }

    /// Calls `name` with `arguments` as the model wrote them (JSON text): an unknown name,
    /// text that is not JSON and arguments the schema refuses are errors the tool never sees.
    pub async fn call(&self, name: &str, arguments: &str) -> Result<Value, ToolError> {
        let Some(checked) = self.tools.iter().find(|c| c.tool.name() == name) else {
            return Err(ToolError::Unknown { name: name.to_owned(), available: self.names().join(", ") });
        };
        // A call with no arguments at all is an empty object (some models write nothing).
        let text = if arguments.trim().is_empty() { "{}" } else { arguments };
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ToolError::Arguments(format!("not JSON ({e}): {}", clip(arguments, 200))))?;
        let problems: Vec<String> = checked
            .schema
            .iter_errors(&value)
            .map(|e| {
                // The message quotes the value, which may be long; what is wrong with it comes last.
                let message = clip_middle(&e.to_string(), 120);
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    message
                } else {
                    format!("at {at}: {message}")
                }
            })
            .collect();
        if !problems.is_empty() {
            return Err(ToolError::Arguments(problems.join("; ")));
        }
        checked.tool.call(value).await
    }
}

/// `text` with all but its first and last `keep` characters cut, when it is longer.
fn clip_middle(text: &str, keep: usize) -> String {
    let count = text.chars().count();
    if count <= 2 * keep + 1 {
        return text.to_owned();
    }
    let head: String = text.chars().take(keep).collect();
    let tail: String = text.chars().skip(count - keep).collect();
    format!("{head}…{tail}")
}

/// At most `max` characters of `text`, with an ellipsis when cut.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, JsonSchema)]
    struct Add {
        /// The first term.
        a: i64,
        /// The second term.
        b: i64,
    }

    struct Adder;

    #[async_trait]
    impl Tool for Adder {
        fn name(&self) -> &str {
            "add"
        }
        fn description(&self) -> &str {
            "Adds two integers."
        }
        fn parameters(&self) -> Value {
            schema_of::<Add>()
        }
        async fn call(&self, value: Value) -> Result<Value, ToolError> {
            let Add { a, b } = arguments(value)?;
            a.checked_add(b).map(Value::from).ok_or_else(|| ToolError::Failed("the sum overflows".into()))
        }
    }

    fn toolbox() -> Toolbox {
        Toolbox::new().with(Arc::new(Adder)).unwrap()
    }

    #[tokio::test]
    async fn a_call_reaches_the_tool_only_with_arguments_its_schema_accepts() {
        let tools = toolbox();
        assert_eq!(tools.call("add", r#"{"a": 2, "b": 40}"#).await, Ok(json!(42)));

        let err = tools.call("add", r#"{"a": 2}"#).await.unwrap_err();
        assert!(
            matches!(&err, ToolError::Arguments(m) if m.contains("\"b\" is a required property")),
            "{err}"
        );
        let err = tools.call("add", r#"{"a": 2, "b": "forty"}"#).await.unwrap_err();
        assert!(matches!(&err, ToolError::Arguments(m) if m.contains("at /b")), "{err}");
        // A long value is quoted by its ends, which say what is wrong with it.
        let long = format!(r#"{{"a": 2, "b": "{}"}}"#, "x".repeat(5000));
        let err = tools.call("add", &long).await.unwrap_err().to_string();
        assert!(err.len() < 400 && err.ends_with(r#"is not of type "integer""#), "{err}");
        let err = tools.call("add", r#"{"a": 2, "b": 4"#).await.unwrap_err();
        assert!(matches!(&err, ToolError::Arguments(m) if m.starts_with("not JSON")), "{err}");
        let err = tools.call("multiply", "{}").await.unwrap_err();
        assert_eq!(err.to_string(), "there is no tool `multiply`; the tools are: add");
        let err = tools.call("add", &format!(r#"{{"a": {}, "b": 1}}"#, i64::MAX)).await.unwrap_err();
        assert_eq!(err, ToolError::Failed("the sum overflows".into()));
    }

    #[test]
    fn a_derived_schema_carries_the_fields_and_their_doc_comments() {
        let spec = &toolbox().specs()[0];
        assert_eq!(spec.name, "add");
        assert_eq!(spec.parameters["properties"]["a"]["description"], "The first term.");
        assert_eq!(spec.parameters["required"], json!(["a", "b"]));
        assert!(spec.parameters.get("$schema").is_none());
    }

    #[test]
    fn the_toolbox_refuses_duplicate_names_bad_names_and_schemas_that_are_not_objects() {
        let err = toolbox().with(Arc::new(Adder)).err().unwrap();
        assert_eq!(err.to_string(), "two tools are named `add`");

        struct Named(&'static str, Value);
        #[async_trait]
        impl Tool for Named {
            fn name(&self) -> &str {
                self.0
            }
            fn description(&self) -> &str {
                ""
            }
            fn parameters(&self) -> Value {
                self.1.clone()
            }
            async fn call(&self, _: Value) -> Result<Value, ToolError> {
                Ok(Value::Null)
            }
        }
        let err = Toolbox::new().with(Arc::new(Named("run code", json!({})))).err().unwrap();
        assert!(matches!(err, ToolboxError::Name(_)), "{err}");
        let err = Toolbox::new().with(Arc::new(Named("x", json!("string")))).err().unwrap();
        assert!(matches!(err, ToolboxError::Schema { .. }), "{err}");
        let err = Toolbox::new().with(Arc::new(Named("x", json!({"type": 12})))).err().unwrap();
        assert!(matches!(err, ToolboxError::Schema { .. }), "{err}");
    }

    #[test]
    fn clip_cuts_on_characters() {
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hé", 2), "hé");
    }
}
