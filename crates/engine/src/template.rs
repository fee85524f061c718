//! Chat templates: the Jinja template a GGUF file carries in `tokenizer.chat_template`, rendered
//! with minijinja the way Hugging Face's `apply_chat_template` renders it (trimmed blocks,
//! Python string methods, `raise_exception`, `strftime_now`, `bos_token`, `eos_token`).
//!
//! The engine adds BOS by token id when the tokenizer asks for it, so [`ChatTemplate::render`]
//! never starts with the BOS text in that case: a template that prints `bos_token` first has it
//! removed, and BOS is never doubled.

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::{context, Environment, Error, ErrorKind, Value};
use temper_core::{error_chain, Message, Tool};

use crate::gguf::{Gguf, GgufError};
use crate::tokenizer::Tokenizer;
use crate::tool_calls;

/// The GGUF metadata key of a model's chat template.
pub const KEY_TEMPLATE: &str = "tokenizer.chat_template";
const NAME: &str = "chat_template";

/// Gemma's turn format, for Gemma files that carry no template (such as the base models): the
/// assistant is `model`, and a leading system message opens the first turn.
pub const GEMMA_TEMPLATE: &str = r#"
{%- if messages | length > 1 and messages[0].role == 'system' -%}
    {%- set preamble = (messages[0].content | trim) ~ '\n\n' -%}
    {%- set turns = messages[1:] -%}
{%- else -%}
    {%- set preamble = '' -%}
    {%- set turns = messages -%}
{%- endif -%}
{%- for message in turns -%}
    {{- '<start_of_turn>' ~ ('model' if message.role == 'assistant' else 'user') ~ '\n' -}}
    {{- (preamble if loop.first else '') ~ (message.content | trim) ~ '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<start_of_turn>model\n' -}}
{%- endif -%}
"#;

/// Why a chat template cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("chat template metadata")]
    Gguf(#[from] GgufError),
    #[error(
        "the model has no chat template ({KEY_TEMPLATE}) and Temper has none built in for architecture \
         `{0}`; send it raw text with `temper complete` instead"
    )]
    Missing(String),
    #[error("the chat template does not compile: {0}")]
    Syntax(String),
    #[error("the chat template failed to render: {0}")]
    Render(String),
}

/// A model's chat format, ready to render conversations.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    /// Whether the engine adds BOS by id, so the rendered text must not start with it.
    add_bos: bool,
    renders_tools: bool,
}

impl ChatTemplate {
    /// The template of a GGUF file, or the built-in one for its architecture when it has none.
    pub fn from_gguf(gguf: &Gguf, tokenizer: &Tokenizer) -> Result<ChatTemplate, TemplateError> {
        let source = match gguf.get(KEY_TEMPLATE) {
            Some(_) => gguf.get_str(KEY_TEMPLATE)?,
            None => match gguf.architecture() {
                Ok("gemma" | "gemma2" | "gemma3") => GEMMA_TEMPLATE,
                Ok(other) => return Err(TemplateError::Missing(other.to_string())),
                Err(_) => return Err(TemplateError::Missing("unknown".to_string())),
            },
        };
        ChatTemplate::for_tokenizer(source, tokenizer)
    }

    /// A template from its Jinja source, with the special tokens of `tokenizer`.
    pub fn for_tokenizer(source: &str, tokenizer: &Tokenizer) -> Result<ChatTemplate, TemplateError> {
        let text = |id: Option<u32>| id.and_then(|id| tokenizer.token_text(id)).unwrap_or("");
        ChatTemplate::from_source(
            source,
            text(tokenizer.bos_id()),
            text(tokenizer.eos_id()),
            tokenizer.add_bos(),
        )
    }

    /// A template from its Jinja source. `add_bos` says whether the engine adds BOS by token id
    /// ([`Tokenizer::add_bos`]); then a leading `bos_token` is removed from rendered text.
    pub fn from_source(
        source: &str,
        bos_token: &str,
        eos_token: &str,
        add_bos: bool,
    ) -> Result<ChatTemplate, TemplateError> {
        let mut env = Environment::new();
        // Hugging Face renders chat templates with these settings.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_function("strftime_now", |format: String| {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            strftime(&format, now)
        });
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| TemplateError::Syntax(error_chain(&e)))?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            add_bos,
            renders_tools: source.contains("tools"),
        })
    }

    /// The prompt text for `messages`; with `add_generation_prompt`, it ends where the assistant's
    /// reply begins. It never starts with BOS when the engine adds BOS itself.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, TemplateError> {
        self.render_with_tools(messages, &[], add_generation_prompt)
    }

    /// Whether the template writes the request's `tools` itself (else they are described in
    /// the system message, see [`crate::tool_calls`]).
    pub fn renders_tools(&self) -> bool {
        self.renders_tools
    }

    /// Renders the conversation with the tools it may call, which the template must render.
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        tools: &[Tool],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let template = self.env.get_template(NAME).map_err(|e| TemplateError::Render(error_chain(&e)))?;
        let text = template
            .render(context! {
                messages => Value::from_serialize(tool_calls::template_messages(messages)),
                tools => (!tools.is_empty()).then(|| Value::from_serialize(tool_calls::template_tools(tools))),
                add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| TemplateError::Render(error_chain(&e)))?;
        let bos = self.bos_token.as_str();
        match text.strip_prefix(bos) {
            Some(rest) if self.add_bos && !bos.is_empty() => Ok(rest.to_string()),
            _ => Ok(text),
        }
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// Python's `strftime` for the common directives, in UTC (templates use it to print today's
/// date). Unknown directives are kept as they are.
fn strftime(format: &str, unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let seconds = unix_seconds % 86_400;
    let (hour, minute, second) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let (year, month, day) = civil_date(days);
    let weekday = WEEKDAYS[((days + 4) % 7) as usize]; // 1970-01-01 was a Thursday
    let month_name = MONTHS[(month - 1) as usize];
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('j') => out.push_str(&format!("{day_of_year:03}")),
            Some('H') => out.push_str(&format!("{hour:02}")),
            Some('I') => out.push_str(&format!("{:02}", (hour + 11) % 12 + 1)),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('M') => out.push_str(&format!("{minute:02}")),
            Some('S') => out.push_str(&format!("{second:02}")),
            Some('B') => out.push_str(month_name),
            Some('b') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(weekday),
            Some('a') => out.push_str(&weekday[..3]),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Year, month (1-12) and day of the month of a day counted from 1970-01-01.
fn civil_date(days: u64) -> (u64, u64, u64) {
    // Counted in 400-year eras from 0000-03-01, so leap days fall at the end of each year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to a date on or after it (the inverse of [`civil_date`]).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year % 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests;
