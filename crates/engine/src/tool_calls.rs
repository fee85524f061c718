//! Tool calling on local models: the tools written into the prompt, the grammar that lets the
//! model answer only in text or with valid calls, and the calls read back from its answer.
//!
//! Calls are written the way Hermes-style models (Qwen 2.5, SmolLM3, Hermes) are trained to,
//! one block per call:
//!
//! ```text
//! <tool_call>
//! {"name": "get_weather", "arguments": {"city": "Paris"}}
//! </tool_call>
//! ```
//!
//! A chat template that renders `tools` itself gets them; for one that does not, the tools and
//! this format are described in the system message, and earlier calls and their results are
//! written into the conversation as text.

use llguidance::api::TopLevelGrammar;
use serde_json::{json, Value};
use temper_core::{Message, ResponseFormat, Role, Tool, ToolCall, ToolCallDelta, ToolChoice};

use crate::constraint::styled_schema;

const OPEN: &str = "<tool_call>\n";
const CLOSE: &str = "\n</tool_call>";

/// The grammar of an answer to a request offering `tools`: text (or the JSON `format` asks
/// for), or calls, as `choice` allows. `None` without tools, or when none may be called.
pub(crate) fn tool_grammar(
    tools: &[Tool],
    choice: &ToolChoice,
    parallel: bool,
    format: Option<&ResponseFormat>,
) -> Option<TopLevelGrammar> {
    let callable: Vec<&Tool> = match choice {
        _ if tools.is_empty() => return None,
        ToolChoice::None => return None,
        ToolChoice::Function(name) => tools.iter().filter(|t| &t.name == name).collect(),
        ToolChoice::Auto | ToolChoice::Required => tools.iter().collect(),
    };
    let calls: Vec<Value> = callable
        .iter()
        .map(|tool| {
            json!({
                "type": "object",
                "properties": { "name": { "const": tool.name }, "arguments": tool.parameters },
                "required": ["name", "arguments"],
                "additionalProperties": false,
            })
        })
        .collect();
    let call_schema = styled_schema(&json!({ "anyOf": calls }));
    let open = serde_json::to_string(OPEN).expect("a string");
    let close = serde_json::to_string(CLOSE).expect("a string");
    let mut lark = format!("call: {open} %json {call_schema} {close}\n");
    lark += match choice {
        // One call of the named function, as the OpenAI API does.
        ToolChoice::Function(_) => "start: call\n",
        ToolChoice::Required => "start: calls\n",
        _ => "start: answer | calls\n",
    };
    lark += if parallel { "calls: call (\"\\n\" call)*\n" } else { "calls: call\n" };
    match format.and_then(|f| match f {
        ResponseFormat::JsonObject => Some(json!({"type": "object"})),
        ResponseFormat::JsonSchema { schema, .. } => Some(schema.clone()),
        _ => None,
    }) {
        Some(schema) => lark += &format!("answer: %json {}\n", styled_schema(&schema)),
        // Any text that does not open a call.
        None => lark += "answer: TEXT\nTEXT: /(?s:.+)/ & ~/(?s:<tool_call>.*)/\n",
    }
    Some(TopLevelGrammar::from_lark(lark))
}

/// Whether `text` is, or may become, a call: text that opens with the call tag or could.
pub(crate) fn may_be_call(text: &str) -> bool {
    text.starts_with(OPEN) || OPEN.starts_with(text)
}

/// A fresh id for a call the model made, unique enough to link a result to its call.
pub(crate) fn call_id() -> String {
    format!("call_{:016x}", rand::random::<u64>())
}

/// The calls in an answer written under [`tool_grammar`], or `None` when it is text.
/// `next_id` numbers the calls.
pub(crate) fn parse_calls(text: &str, mut next_id: impl FnMut() -> String) -> Option<Vec<ToolCall>> {
    let mut calls = Vec::new();
    let mut rest = text.strip_prefix(OPEN)?;
    loop {
        let end = rest.find(CLOSE)?;
        let call: Value = serde_json::from_str(&rest[..end]).ok()?;
        let name = call.get("name")?.as_str()?.to_string();
        let arguments = call.get("arguments")?.to_string();
        calls.push(ToolCall { id: next_id(), name, arguments });
        rest = &rest[end + CLOSE.len()..];
        match rest.strip_prefix('\n').and_then(|r| r.strip_prefix(OPEN)) {
            Some(next) => rest = next,
            None => return rest.trim().is_empty().then_some(calls),
        }
    }
}

/// What opens a call's arguments once its name is written: calls are written name first, as
/// `{"name": "NAME", "arguments": ARGUMENTS}`, and a tool's name holds no quote.
const NAME_OPEN: &str = "{\"name\": \"";
const ARGUMENTS_OPEN: &str = "\", \"arguments\": ";
/// What follows a call's arguments: the end of the call object and of its block.
const ARGUMENTS_CLOSE: &str = "}\n</tool_call>";

/// Turns the text of calls, as it grows, into [`ToolCallDelta`]s: a call's id and name once its
/// name is written, then its arguments as they come. The arguments' last bytes are held back
/// while they may be the start of the call's end.
#[derive(Default)]
pub(crate) struct CallStreamer {
    /// The ids given to the calls streamed so far, in order.
    ids: Vec<String>,
    /// Where the current call's arguments start in the text, once its name is known.
    arguments_at: Option<usize>,
    /// Where the current call's block starts.
    call_at: usize,
    /// How much of the current call's arguments has been sent.
    sent: usize,
}

impl CallStreamer {
    /// The deltas that `text` (all of the answer so far, which opens with a call) adds.
    pub fn advance(&mut self, text: &str) -> Vec<ToolCallDelta> {
        let mut deltas = Vec::new();
        loop {
            let index = self.ids.len().saturating_sub(usize::from(self.arguments_at.is_some()));
            let Some(arguments_at) = self.arguments_at else {
                let body = self.call_at + OPEN.len() + NAME_OPEN.len();
                let Some(end) = text.get(body..).and_then(|rest| rest.find(ARGUMENTS_OPEN)) else {
                    return deltas;
                };
                let id = call_id();
                self.ids.push(id.clone());
                let name = text[body..body + end].to_string();
                deltas.push(ToolCallDelta {
                    index,
                    id: Some(id),
                    name: Some(name),
                    arguments: String::new(),
                });
                self.arguments_at = Some(body + end + ARGUMENTS_OPEN.len());
                self.sent = 0;
                continue;
            };
            let arguments = &text[arguments_at..];
            // The end cannot lie before what was sent less the end's own length.
            let mut from = self.sent.saturating_sub(ARGUMENTS_CLOSE.len());
            while !arguments.is_char_boundary(from) {
                from -= 1;
            }
            let (ready, done) = match arguments[from..].find(ARGUMENTS_CLOSE) {
                Some(end) => (from + end, true),
                None => (arguments.len() - held_back(arguments, ARGUMENTS_CLOSE), false),
            };
            if ready > self.sent {
                let piece = arguments[self.sent..ready].to_string();
                deltas.push(ToolCallDelta { index, arguments: piece, ..Default::default() });
                self.sent = ready;
            }
            if !done {
                return deltas;
            }
            // The next call, if any, opens after a newline.
            self.call_at = arguments_at + ready + ARGUMENTS_CLOSE.len() + 1;
            self.arguments_at = None;
            if !text.get(self.call_at..).is_some_and(|rest| rest.starts_with(OPEN)) {
                return deltas;
            }
        }
    }

    /// The id given to call `index` while streaming, if it was streamed.
    pub fn id(&self, index: usize) -> Option<&str> {
        self.ids.get(index).map(String::as_str)
    }
}

/// How many of `text`'s last bytes may be the start of `marker`.
fn held_back(text: &str, marker: &str) -> usize {
    (1..marker.len().min(text.len() + 1)).rev().find(|&n| text.ends_with(&marker[..n])).unwrap_or(0)
}

/// The tools as chat templates take them (OpenAI's shape).
pub(crate) fn template_tools(tools: &[Tool]) -> Value {
    tools
        .iter()
        .map(|t| {
            json!({ "type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.parameters } })
        })
        .collect()
}

/// The messages as chat templates take them: tool calls in OpenAI's shape, their arguments as
/// objects (what Hugging Face templates iterate over).
pub(crate) fn template_messages(messages: &[Message]) -> Value {
    messages
        .iter()
        .map(|m| {
            let mut message = json!({ "role": m.role.as_str(), "content": m.content });
            if !m.tool_calls.is_empty() {
                let calls: Vec<Value> = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({ "id": c.id, "type": "function",
                                "function": { "name": c.name, "arguments": arguments_value(&c.arguments) } })
                    })
                    .collect();
                message["tool_calls"] = calls.into();
            }
            if let Some(id) = &m.tool_call_id {
                message["tool_call_id"] = id.clone().into();
            }
            message
        })
        .collect()
}

/// A call's arguments as JSON: an object as written, or the text as a string when it is not JSON.
fn arguments_value(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()))
}

/// The conversation for a template that knows nothing of tools: the tools and the call format
/// described in the system message, earlier calls written as the model writes them, and tool
/// results given as user turns (merged with the next user turn, for templates that insist on
/// alternating turns).
pub(crate) fn describe_tools(messages: &[Message], tools: &[Tool], choice: &ToolChoice) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 1);
    if !tools.is_empty() && *choice != ToolChoice::None {
        let manual = tool_manual(tools, choice);
        match messages.first() {
            Some(first) if first.role == Role::System => {
                out.push(Message::system(format!("{}\n\n{manual}", first.content)));
            }
            _ => out.push(Message::system(manual)),
        }
    } else if let Some(first) = messages.first().filter(|m| m.role == Role::System) {
        out.push(first.clone());
    }
    let rest =
        if messages.first().is_some_and(|m| m.role == Role::System) { &messages[1..] } else { messages };
    for m in rest {
        let (role, content) = match m.role {
            Role::Assistant if !m.tool_calls.is_empty() => {
                let calls = m.tool_calls.iter().map(|c| {
                    let arguments = arguments_value(&c.arguments);
                    // Name first, as the grammar writes it.
                    format!(
                        "{OPEN}{{\"name\": {}, \"arguments\": {arguments}}}{CLOSE}",
                        Value::from(c.name.as_str())
                    )
                });
                let calls = calls.collect::<Vec<_>>().join("\n");
                let text = if m.content.is_empty() { calls } else { format!("{}\n{calls}", m.content) };
                (Role::Assistant, text)
            }
            Role::Tool => (Role::User, format!("<tool_response>\n{}\n</tool_response>", m.content)),
            role => (role, m.content.clone()),
        };
        match out.last_mut() {
            Some(last) if last.role == Role::User && role == Role::User => {
                last.content.push_str("\n\n");
                last.content.push_str(&content);
            }
            _ => out.push(Message::new(role, content)),
        }
    }
    out
}

/// The system message's description of the tools and of how to call them.
fn tool_manual(tools: &[Tool], choice: &ToolChoice) -> String {
    let listed: Vec<String> = tools
        .iter()
        .map(|t| {
            json!({ "name": t.name, "description": t.description, "parameters": t.parameters }).to_string()
        })
        .collect();
    let when = match choice {
        ToolChoice::Required => "You must call at least one tool.".to_string(),
        ToolChoice::Function(name) => format!("You must call the tool `{name}`."),
        _ => "If no tool helps, answer in plain text.".to_string(),
    };
    format!(
        "You can call these tools:\n{}\n\nTo call a tool, answer with one block per call, each holding a JSON object with \
         the tool's name and its arguments:\n{OPEN}{{\"name\": \"tool_name\", \"arguments\": {{\"argument\": \"value\"}}}}{CLOSE}\n{when}",
        listed.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_parse_back_from_the_answer_and_text_is_not_a_call() {
        let mut n = 0;
        let mut ids = || {
            n += 1;
            format!("call_{n}")
        };
        let text = "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>";
        let calls = parse_calls(text, &mut ids).unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].name.as_str(), calls[0].arguments.as_str()),
            ("call_1", "a", "{\"x\":1}")
        );
        assert_eq!(calls[1].name, "b");
        assert!(parse_calls("The weather is fine.", &mut ids).is_none());
        // Cut off inside a call: not a call.
        assert!(parse_calls("<tool_call>\n{\"name\": \"a\", \"argum", &mut ids).is_none());
    }

    #[test]
    fn calls_stream_as_a_header_then_their_arguments_piece_by_piece() {
        let text = "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>";
        // Fed a byte at a time, as tokens may split it anywhere.
        let mut streamer = CallStreamer::default();
        let mut deltas = Vec::new();
        for end in 1..=text.len() {
            deltas.extend(streamer.advance(&text[..end]));
        }
        let headers: Vec<(usize, &str)> =
            deltas.iter().filter_map(|d| Some((d.index, d.name.as_deref()?))).collect();
        assert_eq!(headers, [(0, "a"), (1, "b")]);
        let arguments = |index| {
            deltas.iter().filter(|d| d.index == index).map(|d| d.arguments.as_str()).collect::<String>()
        };
        assert_eq!(arguments(0), "{\"x\": 1}");
        assert_eq!(arguments(1), "{}");
        assert!(deltas.iter().filter(|d| d.index == 0).count() > 3, "the arguments come in pieces");
        assert_eq!(streamer.id(1), deltas.iter().find(|d| d.index == 1).unwrap().id.as_deref());
    }

    #[test]
    fn arguments_beyond_ascii_stream_whole() {
        let text =
            "<tool_call>\n{\"name\": \"w\", \"arguments\": {\"city\": \"Zürich ☀ München\"}}\n</tool_call>";
        let mut streamer = CallStreamer::default();
        let ends = text.char_indices().map(|(i, c)| i + c.len_utf8());
        let pieces: String =
            ends.flat_map(|end| streamer.advance(&text[..end])).map(|d| d.arguments).collect();
        assert_eq!(pieces, "{\"city\": \"Zürich ☀ München\"}");
    }

    #[test]
    fn a_template_without_tools_reads_them_from_the_system_message_and_results_as_user_turns() {
        let tools = [Tool::new("weather", "Weather in a city", json!({"type": "object"}))];
        let call =
            ToolCall { id: "c1".into(), name: "weather".into(), arguments: "{\"city\":\"Oslo\"}".into() };
        let messages = [
            Message::system("Be brief."),
            Message::user("Weather in Oslo?"),
            Message::assistant_tool_calls("", vec![call]),
            Message::tool_result("c1", "12 C"),
            Message::user("And tomorrow?"),
        ];
        let out = describe_tools(&messages, &tools, &ToolChoice::Auto);
        assert_eq!(out.len(), 4, "{out:#?}");
        assert!(out[0].content.starts_with("Be brief.\n\nYou can call these tools:"));
        assert!(out[0].content.contains("\"name\":\"weather\""));
        assert_eq!(
            out[2].content,
            "<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\":\"Oslo\"}}\n</tool_call>"
        );
        assert_eq!(out[3].role, Role::User);
        assert_eq!(out[3].content, "<tool_response>\n12 C\n</tool_response>\n\nAnd tomorrow?");
    }
}
