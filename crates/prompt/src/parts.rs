//! A prompt file as plain values, for programs that build one or show one (the playground
//! saves and opens prompt files as these, as JSON): every part of the file, nothing else.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use temper_core::GenerationParams;

use crate::template::Template;
use crate::{Example, PromptError, PromptFile, Result, TestCase};

/// The template of a chat's prompt file: the user's message, passed as the variable `input`.
pub const DEFAULT_TEMPLATE: &str = "{{ input }}";

/// The parts of a prompt file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptParts {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default = "default_template")]
    pub template: String,
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
    #[serde(default)]
    pub examples: Vec<Example>,
    #[serde(default)]
    pub params: GenerationParams,
    /// The JSON schema replies must follow.
    #[serde(default)]
    pub output_schema: Option<Value>,
    #[serde(default)]
    pub tests: Vec<TestCase>,
}

fn default_template() -> String {
    DEFAULT_TEMPLATE.to_owned()
}

impl PromptFile {
    /// The prompt file of these parts, checked as [`PromptFile::parse`] checks a file (template
    /// errors point at lines of the template itself). It has no path until it is saved.
    pub fn from_parts(parts: PromptParts) -> Result<PromptFile> {
        parts.params.validate().map_err(|e| PromptError::invalid("params", e.to_string()))?;
        let template = |field: &str, source: &str| Template::new(field, source, &PathBuf::new(), "", 0..0);
        let system = parts.system.as_deref().map(|s| template("system", s)).transpose()?;
        if let Some(schema) = &parts.output_schema {
            crate::schema::check_schema(schema).map_err(|e| PromptError::invalid("output_schema", e))?;
        }
        Ok(PromptFile {
            path: PathBuf::new(),
            description: parts.description,
            model: parts.model,
            params: parts.params,
            system,
            template: template("template", &parts.template)?,
            vars: parts.vars,
            examples: parts.examples,
            output_schema: parts.output_schema,
            tests: parts.tests,
        })
    }

    /// Every part of the file.
    pub fn parts(&self) -> PromptParts {
        PromptParts {
            description: self.description.clone(),
            model: self.model.clone(),
            system: self.system.as_ref().map(|t| t.source().to_owned()),
            template: self.template.source().to_owned(),
            vars: self.vars.clone(),
            examples: self.examples.clone(),
            params: self.params.clone(),
            output_schema: self.output_schema.clone(),
            tests: self.tests.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;

    fn parts(value: Value) -> PromptParts {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn parts_make_a_file_that_reads_back_to_the_same_parts() {
        let original = parts(json!({
            "description": "Shakespearean writing assistant",
            "model": "smollm2-135m-instruct",
            "system": "You write as Shakespeare would.\nKeep it \"short\".",
            "template": "Rewrite: {{ input }}",
            "vars": {"input": "hello"},
            "examples": [{"prompt": "Hi", "response": "Good morrow!"}, {"prompt": "2+2?", "response": "4", "reasoning": "Two and two."}],
            "params": {"temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "stop": ["\n\n"], "seed": 7},
            "output_schema": {"type": "object", "properties": {"x": {"enum": ["a", null]}}},
            "tests": [{"name": "t", "vars": {"input": "bye"}, "expected": "Farewell"}]
        }));
        let text = PromptFile::from_parts(original.clone()).unwrap().to_toml().unwrap();
        let back = PromptFile::parse(Path::new("p.toml"), &text).unwrap();
        assert_eq!(back.parts(), original, "{text}");
    }

    #[test]
    fn no_parts_make_a_chat_of_the_users_message() {
        let chat = parts(json!({}));
        assert_eq!(
            (chat.template.as_str(), chat.system.as_deref(), &chat.params),
            (DEFAULT_TEMPLATE, None, &GenerationParams::default())
        );
        let file = PromptFile::from_parts(chat).unwrap();
        let vars = BTreeMap::from([("input".to_owned(), json!("Hello"))]);
        assert_eq!(file.prompt(&vars).unwrap().task, "Hello");
    }

    #[test]
    fn bad_parts_are_refused_by_name() {
        let err = |value: Value| PromptFile::from_parts(parts(value)).unwrap_err().to_string();
        assert!(err(json!({"params": {"top_p": 3.0}})).contains("top_p"));
        let system = err(json!({"system": "Hi {% if x %}never closed"}));
        assert!(system.contains("system: ") && system.contains(":1:"), "{system}");
        assert!(err(json!({"output_schema": {"type": "thing"}})).contains("output_schema"));
        let unknown = serde_json::from_value::<PromptParts>(json!({"sytem": "x"})).unwrap_err().to_string();
        assert!(unknown.contains("sytem"), "{unknown}");
    }
}
