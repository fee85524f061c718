//! Templates of a prompt file (minijinja), with errors mapped back to the file's lines: a
//! template's line 3 is the file's line where the string starts plus 2.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

use crate::file::line_column;
use crate::{PromptError, Result};

/// A template and where its text starts in the file.
#[derive(Clone, Debug)]
pub struct Template {
    /// The field that holds it (`system`, `template`), for errors.
    field: String,
    source: String,
    path: PathBuf,
    /// The 1-based line and column of the template's first character in the file.
    line: usize,
    column: usize,
}

impl Template {
    /// The template `source` of `field`, found at byte `span` (its TOML string, quotes
    /// included) of the file `text`. Checks its syntax.
    pub(crate) fn new(
        field: &str,
        source: &str,
        path: &Path,
        text: &str,
        span: Range<usize>,
    ) -> Result<Template> {
        let (line, column) = line_column(text, content_start(text, span));
        let template = Template {
            field: field.to_owned(),
            source: source.to_owned(),
            path: path.to_owned(),
            line,
            column,
        };
        template.environment().template_from_str(source).map_err(|e| template.error(&e))?;
        Ok(template)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text with every variable filled in; an undefined variable is an error.
    pub fn render(&self, vars: &BTreeMap<String, Value>) -> Result<String> {
        let env = self.environment();
        let template = env.template_from_str(&self.source).map_err(|e| self.error(&e))?;
        template.render(vars).map_err(|e| self.error(&e))
    }

    /// The variables the template reads (not those it sets itself, nor functions such as
    /// `range`).
    pub fn variables(&self) -> BTreeSet<String> {
        let env = self.environment();
        let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
        // The syntax was checked when the template was made.
        env.template_from_str(&self.source)
            .map(|t| t.undeclared_variables(false))
            .unwrap_or_default()
            .into_iter()
            .filter(|name| !globals.contains(name.as_str()))
            .collect()
    }

    fn environment(&self) -> Environment<'static> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_debug(true);
        env
    }

    fn error(&self, error: &minijinja::Error) -> PromptError {
        let template_line = error.line().unwrap_or(1);
        let range = error.range();
        let column_in_line = range.as_ref().map_or(1, |r| {
            let before = &self.source[..r.start.min(self.source.len())];
            before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1
        });
        let column = if template_line == 1 { self.column + column_in_line - 1 } else { column_in_line };
        let mut message = format!("{}: {}", self.field, error.detail().unwrap_or(&error.kind().to_string()));
        if error.kind() == minijinja::ErrorKind::UndefinedError {
            let expression = range.and_then(|r| self.source.get(r)).unwrap_or("a variable");
            message = format!(
                "{}: `{expression}` is undefined; give it a value, or set one under [vars]",
                self.field
            );
        }
        PromptError::File { path: self.path.clone(), line: self.line + template_line - 1, column, message }
    }
}

/// The byte offset of a TOML string's first character: after its quotes, and after the newline
/// that TOML drops right after the opening quotes of a multi-line string.
fn content_start(text: &str, span: Range<usize>) -> usize {
    let quoted = &text[span.start.min(text.len())..];
    let quotes = ["\"\"\"", "'''", "\"", "'"].into_iter().find(|q| quoted.starts_with(q)).unwrap_or("");
    let after = &quoted[quotes.len()..];
    let newline = if quotes.len() == 3 {
        ["\r\n", "\n"].into_iter().find(|n| after.starts_with(n)).map_or(0, str::len)
    } else {
        0
    };
    span.start + quotes.len() + newline
}

#[cfg(test)]
mod tests {
    use crate::PromptFile;
    use std::path::Path;

    fn render(text: &str, vars: &[(&str, &str)]) -> crate::Result<String> {
        let file = PromptFile::parse(Path::new("p.toml"), text)?;
        let vars =
            vars.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string()))).collect();
        file.template.render(&file.variables(&vars))
    }

    #[test]
    fn fills_variables_and_defaults() {
        let text = "template = \"{{ a }} and {{ b }}\"\n[vars]\nb = \"two\"\n";
        assert_eq!(render(text, &[("a", "one")]).unwrap(), "one and two");
        assert_eq!(render(text, &[("a", "1"), ("b", "2")]).unwrap(), "1 and 2");
    }

    #[test]
    fn an_undefined_variable_names_its_line_and_column_in_the_file() {
        let text = "system = \"s\"\ntemplate = \"\"\"\nLine one.\nWrite about {{ topic }}.\n\"\"\"\n";
        let err = render(text, &[]).unwrap_err().to_string();
        assert!(err.starts_with("p.toml:4:16: template: `topic` is undefined"), "{err}");
        let err = render("template = \"Hi {{ who }}\"", &[]).unwrap_err().to_string();
        assert!(err.starts_with("p.toml:1:19: "), "{err}");
    }

    #[test]
    fn a_template_syntax_error_names_its_line_in_the_file() {
        let text = "template = '''\nok\n{% if x %}never closed\n'''\n";
        let err = render(text, &[("x", "1")]).unwrap_err().to_string();
        assert!(err.starts_with("p.toml:3:") || err.starts_with("p.toml:4:"), "{err}");
        assert!(err.contains("template: "), "{err}");
    }
}
