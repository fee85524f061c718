//! Prompt files: a TOML document holding a system message, few-shot examples, a user template
//! with variables, a default model and parameters, an optional JSON-schema output format and
//! test cases. Every error points at its line and column in the file.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use temper_core::GenerationParams;
use toml::Spanned;

use crate::template::Template;
use crate::{PromptError, Result};

/// A parsed prompt file.
#[derive(Clone, Debug)]
pub struct PromptFile {
    pub path: PathBuf,
    pub description: Option<String>,
    /// The model to run when the caller names none: a profile, catalog name or GGUF path.
    pub model: Option<String>,
    pub params: GenerationParams,
    pub system: Option<Template>,
    pub template: Template,
    /// Default values of the template's variables; the caller's values override them.
    pub vars: BTreeMap<String, Value>,
    pub examples: Vec<Example>,
    /// The JSON schema replies must follow.
    pub output_schema: Option<Value>,
    pub tests: Vec<TestCase>,
}

/// A few-shot example: a prompt and the response the model should learn from it.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub prompt: String,
    pub response: String,
    /// Worked steps that lead to the response, shown when chain of thought is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
}

/// A test case `temper eval` runs: variables in, the output expected.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, Value>,
    pub expected: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    description: Option<String>,
    model: Option<String>,
    #[serde(default)]
    params: GenerationParams,
    system: Option<Spanned<String>>,
    template: Spanned<String>,
    #[serde(default)]
    vars: BTreeMap<String, Value>,
    #[serde(default)]
    examples: Vec<Example>,
    output: Option<RawOutput>,
    #[serde(default)]
    tests: Vec<TestCase>,
}

/// What `to_toml` writes, in the order a person would: plain keys before tables.
#[derive(Serialize)]
struct FileOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    template: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    vars: &'a BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "toml::Table::is_empty")]
    params: toml::Table,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    examples: &'a [Example],
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<OutputOut>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tests: &'a [TestCase],
}

#[derive(Serialize)]
struct OutputOut {
    /// As a JSON string: a schema may hold `null`, which TOML cannot.
    schema: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    /// A TOML table, or a string holding the schema as JSON.
    schema: Spanned<Value>,
}

impl PromptFile {
    pub fn load(path: &Path) -> Result<PromptFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PromptError::Read { path: path.to_owned(), source })?;
        PromptFile::parse(path, &text)
    }

    /// Parses `text`, the contents of the file at `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<PromptFile> {
        let at = |span: Range<usize>, message: String| {
            let (line, column) = line_column(text, span.start);
            PromptError::File { path: path.to_owned(), line, column, message }
        };
        let raw: RawFile =
            toml::from_str(text).map_err(|e| at(e.span().unwrap_or(0..0), e.message().to_owned()))?;
        raw.params.validate().map_err(|e| at(find_table(text, "params"), e.to_string()))?;
        let template_at = |field: &str, source: &Spanned<String>| {
            Template::new(field, source.get_ref(), path, text, source.span())
        };
        let system = raw.system.as_ref().map(|s| template_at("system", s)).transpose()?;
        let template = template_at("template", &raw.template)?;
        let output_schema = raw
            .output
            .map(|output| {
                let span = output.schema.span();
                let schema = match output.schema.into_inner() {
                    Value::String(json) => serde_json::from_str(&json)
                        .map_err(|e| at(span.clone(), format!("output.schema is not valid JSON: {e}")))?,
                    schema => schema,
                };
                crate::schema::check_schema(&schema).map_err(|e| at(span, format!("output.schema: {e}")))?;
                Ok::<_, PromptError>(schema)
            })
            .transpose()?;
        Ok(PromptFile {
            path: path.to_owned(),
            description: raw.description,
            model: raw.model,
            params: raw.params,
            system,
            template,
            vars: raw.vars,
            examples: raw.examples,
            output_schema,
            tests: raw.tests,
        })
    }

    /// The file as TOML text that `parse` reads back to the same prompt: what tools that
    /// rewrite a prompt (a tuned system message, new examples) save.
    pub fn to_toml(&self) -> Result<String> {
        let unwritable = |e: toml::ser::Error| PromptError::invalid("prompt file", e.to_string());
        let file = FileOut {
            description: self.description.as_deref(),
            model: self.model.as_deref(),
            system: self.system.as_ref().map(Template::source),
            template: self.template.source(),
            vars: &self.vars,
            params: shortest_floats(toml::Table::try_from(&self.params).map_err(unwritable)?),
            examples: &self.examples,
            output: self.output_schema.as_ref().map(|schema| OutputOut { schema: schema.to_string() }),
            tests: &self.tests,
        };
        toml::to_string_pretty(&file).map_err(unwritable)
    }

    /// This prompt with `system` as its system message (none when `None`) and `examples` as its
    /// few-shot examples; everything else stays. The system message's syntax is checked as
    /// `parse` checks it. What tools that rewrite a prompt (a tuned system message, new
    /// examples) evaluate and save.
    pub fn with_prompt(&self, system: Option<&str>, examples: Vec<Example>) -> Result<PromptFile> {
        let system = match system {
            None => None,
            // Unchanged: the template as read, which knows where it is in the file.
            Some(source) if self.system.as_ref().is_some_and(|t| t.source() == source) => self.system.clone(),
            // Not in any file yet: its errors point at its own lines, from the file's first.
            Some(source) => Some(Template::new("system", source, &self.path, "", 0..0)?),
        };
        Ok(PromptFile { system, examples, ..self.clone() })
    }

    /// The variables the system message and the template read.
    pub fn variables_used(&self) -> BTreeSet<String> {
        let mut used = self.template.variables();
        used.extend(self.system.iter().flat_map(Template::variables));
        used
    }

    /// Refuses a variable given that the prompt does not read (a typo like `reveiw` would
    /// otherwise go unnoticed while the file's sample value fills `review`), naming the one it
    /// probably meant.
    pub fn check_given(&self, given: &BTreeMap<String, Value>) -> Result<()> {
        let used = self.variables_used();
        let Some(unused) = given.keys().find(|name| !used.contains(*name)) else { return Ok(()) };
        let reason = match closest(unused, &used) {
            Some(meant) => format!("the prompt does not use `{unused}`; did you mean `{meant}`?"),
            None if used.is_empty() => format!("the prompt does not use `{unused}`: it has no variables"),
            None => format!(
                "the prompt does not use `{unused}`; it uses {}",
                used.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
            ),
        };
        Err(PromptError::invalid(format!("variable `{unused}` of {}", self.path.display()), reason))
    }

    /// The variables of `vars` that the prompt reads but `vars` lacks: what a dataset row must
    /// not leave out, since the file's sample values are not data.
    pub fn missing_variables(&self, vars: &BTreeMap<String, Value>) -> Vec<String> {
        self.variables_used().into_iter().filter(|name| !vars.contains_key(name)).collect()
    }

    /// The file's default variables overridden by `overrides`.
    pub fn variables(&self, overrides: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
        let mut vars = self.vars.clone();
        vars.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        vars
    }
}

/// Parses `--var name=value` arguments into variables (values are strings).
pub fn parse_vars(args: &[String]) -> Result<BTreeMap<String, Value>> {
    args.iter()
        .map(|arg| match arg.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                Ok((name.trim().to_owned(), Value::String(value.to_owned())))
            }
            _ => Err(PromptError::invalid("variable", format!("`{arg}` is not NAME=VALUE"))),
        })
        .collect()
}

/// The name of `names` nearest to `typed`, if it is near enough to be a typo (an edit
/// distance of at most a third of its length, and at least 1).
fn closest<'a>(typed: &str, names: &'a BTreeSet<String>) -> Option<&'a str> {
    let limit = (typed.chars().count() / 3).max(1);
    names
        .iter()
        .map(|name| (edit_distance(typed, name), name))
        .filter(|&(distance, _)| distance <= limit)
        .min()
        .map(|(_, name)| name.as_str())
}

/// Levenshtein distance, with a swap of two neighbours counting once (`reveiw` → `review`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Rows i-2, i-1 and i of the table.
    let mut before: Vec<usize> = Vec::new();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let substitution = previous[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            row[j] = substitution.min(previous[j] + 1).min(row[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut previous, row);
    }
    previous[b.len()]
}

/// The 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The parameters are `f32`s: written as `f64`s they would read `0.20000000298023224`; the
/// shortest decimal of the `f32` reads back to the same value.
fn shortest_floats(mut params: toml::Table) -> toml::Table {
    for (_, value) in params.iter_mut() {
        if let toml::Value::Float(f) = value {
            *f = (*f as f32).to_string().parse().unwrap_or(*f);
        }
    }
    params
}

/// Where the `[name]` table starts, for errors about a table as a whole.
fn find_table(text: &str, name: &str) -> Range<usize> {
    let header = format!("[{name}]");
    let start = text.find(&header).unwrap_or(0);
    start..start + header.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PromptFile> {
        PromptFile::parse(Path::new("p.toml"), text)
    }

    #[test]
    fn a_variable_the_prompt_does_not_use_is_refused_with_the_one_meant() {
        let file = parse(
            "system = \"You review {{ product }}.\"\ntemplate = \"{% set n = 2 %}{{ review }} {{ n }} {% for i in range(n) %}{{ i }}{% endfor %}\"\n[vars]\nreview = \"x\"\n",
        )
        .unwrap();
        let used: Vec<String> = file.variables_used().into_iter().collect();
        assert_eq!(used, ["product", "review"], "not what it sets, nor its loop variables or functions");
        let given = |name: &str| BTreeMap::from([(name.to_owned(), Value::from("v"))]);
        assert!(file.check_given(&given("review")).is_ok());
        let err = file.check_given(&given("reveiw")).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid variable `reveiw` of p.toml: the prompt does not use `reveiw`; did you mean `review`?"
        );
        let err = file.check_given(&given("topic")).unwrap_err().to_string();
        assert!(err.ends_with("the prompt does not use `topic`; it uses `product`, `review`"), "{err}");
        let plain = parse("template = \"Hello\"").unwrap();
        let err = plain.check_given(&given("x")).unwrap_err().to_string();
        assert!(err.ends_with("it has no variables"), "{err}");
        assert_eq!(file.missing_variables(&given("review")), ["product"]);
    }

    #[test]
    fn edit_distance_counts_a_swap_once() {
        assert_eq!(edit_distance("reveiw", "review"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("café", "cafe"), 1);
    }

    #[test]
    fn reads_every_part() {
        let file = parse(
            r#"
model = "m"
system = "Be brief."
template = "Hi {{ name }}"
[params]
temperature = 0.2
[vars]
name = "Ann"
[[examples]]
prompt = "a"
response = "b"
[output]
schema = '{"type": "object"}'
[[tests]]
vars = { name = "Bob" }
expected = "Hi Bob"
"#,
        )
        .unwrap();
        assert_eq!(file.model.as_deref(), Some("m"));
        assert_eq!(file.params.temperature, Some(0.2));
        assert_eq!(file.examples[0].response, "b");
        assert_eq!(file.output_schema, Some(serde_json::json!({"type": "object"})));
        assert_eq!(file.tests[0].expected, Value::String("Hi Bob".into()));
        assert_eq!(file.vars["name"], Value::String("Ann".into()));
    }

    #[test]
    fn a_syntax_error_names_its_line_and_column() {
        let err = parse("template = \"x\"\nsystem = \n").unwrap_err().to_string();
        assert!(err.starts_with("p.toml:2:10: "), "{err}");
    }

    #[test]
    fn an_example_without_a_response_names_its_line() {
        let err = parse("template = \"x\"\n\n[[examples]]\nprompt = \"a\"\n").unwrap_err().to_string();
        assert!(err.starts_with("p.toml:3:1: "), "{err}");
        assert!(err.contains("missing field `response`"), "{err}");
    }

    #[test]
    fn unknown_fields_and_bad_params_are_refused_where_they_are() {
        let err = parse("template = \"x\"\ntemplte = 1\n").unwrap_err().to_string();
        assert!(err.starts_with("p.toml:2:1: ") && err.contains("templte"), "{err}");
        let err = parse("template = \"x\"\n[params]\ntop_p = 3.0\n").unwrap_err().to_string();
        assert!(err.starts_with("p.toml:2:1: ") && err.contains("top_p"), "{err}");
        let err =
            parse("template = \"x\"\n[output]\nschema = '{\"type\": \"thing\"}'\n").unwrap_err().to_string();
        assert!(err.starts_with("p.toml:3:10: ") && err.contains("thing"), "{err}");
    }

    #[test]
    fn to_toml_reads_back_to_the_same_prompt() {
        let original = parse(
            r#"
description = "d"
model = "m"
system = '''
Be brief.
Say "yes" or 'no'; \ is a backslash.'''
template = "Hi {{ name }}"
[params]
temperature = 0.2
top_p = 0.9
max_tokens = 8
stop = ["\n\n", "END"]
[vars]
name = "Ann"
list = [1, 2.5, "x"]
[[examples]]
prompt = "a"
response = "b"
reasoning = "because"
[[examples]]
prompt = "c"
response = "d"
[output]
schema = '{"type": "object", "properties": {"x": {"enum": ["a", null]}}}'
[[tests]]
vars = { name = "Bob" }
expected = { greeting = "Hi Bob" }
"#,
        )
        .unwrap();
        let text = original.to_toml().unwrap();
        assert!(text.contains("temperature = 0.2\n"), "floats are written as typed:\n{text}");
        let back = parse(&text).unwrap();
        assert_eq!(back.description, original.description);
        assert_eq!(back.model, original.model);
        assert_eq!(
            back.system.as_ref().map(Template::source),
            original.system.as_ref().map(Template::source)
        );
        assert_eq!(back.template.source(), original.template.source());
        assert_eq!(back.params, original.params);
        assert_eq!(back.vars, original.vars);
        assert_eq!(back.examples, original.examples);
        assert_eq!(back.output_schema, original.output_schema);
        assert_eq!(back.tests, original.tests);
        assert_eq!(back.to_toml().unwrap(), text, "writing is stable");
    }

    #[test]
    fn with_prompt_replaces_the_system_message_and_examples_only() {
        let original =
            parse("system = \"Old.\"\ntemplate = \"Hi {{ name }}\"\n[vars]\nname = \"Ann\"\n").unwrap();
        let example = Example { prompt: "a".into(), response: "b".into(), reasoning: None };
        let new = original.with_prompt(Some("New {{ name }}."), vec![example.clone()]).unwrap();
        assert_eq!(new.system.as_ref().map(Template::source), Some("New {{ name }}."));
        assert_eq!(new.examples, [example]);
        assert_eq!((new.template.source(), &new.vars), (original.template.source(), &original.vars));
        assert!(original.with_prompt(None, vec![]).unwrap().system.is_none());
        let err = original.with_prompt(Some("{% if x %}never closed"), vec![]).unwrap_err().to_string();
        assert!(err.contains("system: "), "{err}");
    }

    #[test]
    fn vars_are_name_equals_value() {
        let vars = parse_vars(&["a=1".into(), "b=x=y".into()]).unwrap();
        assert_eq!(vars["b"], Value::String("x=y".into()));
        let err = parse_vars(&["novalue".into()]).unwrap_err().to_string();
        assert!(err.contains("`novalue` is not NAME=VALUE"), "{err}");
    }
}
