//! Asking a model for new instructions, and reading its reply. Small models ramble: the reply
//! may be a numbered list, a JSON array or object, bullets or plain lines, with a preamble and
//! headings around them. Whatever cannot be an instruction is dropped with its reason.

use serde::Serialize;
use serde_json::Value;
use temper_prompt::sot::list_marker;

/// Instructions shorter than this (in characters) are fragments, not instructions.
pub const MIN_CHARS: usize = 10;
/// Nor are instructions of fewer words than this.
pub const MIN_WORDS: usize = 3;
/// Instructions longer than this are essays, not instructions.
pub const MAX_CHARS: usize = 600;

/// A scored instruction shown to the proposer.
pub struct Tried<'a> {
    pub instruction: &'a str,
    pub score: f64,
}

/// A row the best candidate got wrong, shown to the proposer.
pub struct Failure<'a> {
    pub input: &'a str,
    pub output: &'a str,
}

/// The system message of the proposer.
pub const PROPOSER_SYSTEM: &str =
    "You write instructions for language models. You answer with the instructions only.";

/// The request to the proposer: the task, the instructions tried with their scores, some rows the
/// best of them got wrong, and how many new ones to write.
pub fn meta_prompt(task: &str, tried: &[Tried], failures: &[Failure], wanted: usize) -> String {
    let mut text =
        format!("A language model is given instructions (its system message) for this task:\n{task}\n\n");
    text.push_str("Instructions tried so far, with their scores from 0 to 1 (higher is better):\n");
    for (i, t) in tried.iter().enumerate() {
        let instruction =
            if t.instruction.trim().is_empty() { "(no instructions)" } else { t.instruction.trim() };
        text.push_str(&format!("{}. (score {:.2}) {instruction}\n", i + 1, t.score));
    }
    if !failures.is_empty() {
        text.push_str("\nInputs the best instructions got wrong, with the wrong output:\n");
        for f in failures {
            text.push_str(&format!("Input: {}\nWrong output: {}\n\n", f.input.trim(), f.output.trim()));
        }
    }
    text.push_str(&format!(
        "\nWrite {wanted} new instructions that would score higher. Each one is complete on its own, one to \
         three sentences, says what to answer and in what form, and differs from those above. Reply with a \
         numbered list, one instruction per item, and nothing else."
    ));
    text
}

/// A piece of the reply that was not taken, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dropped {
    pub text: String,
    pub reason: String,
}

/// The instructions read from a reply, and what was dropped.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Proposals {
    pub accepted: Vec<String>,
    pub dropped: Vec<Dropped>,
}

/// Reads at most `wanted` new instructions from `reply`; those equal to one in `seen` (ignoring
/// case and surrounding space) are dropped as already tried. Never fails: an unusable reply gives
/// no instructions.
pub fn parse_proposals(reply: &str, wanted: usize, seen: &[String]) -> Proposals {
    // A list that quotes JSON (`2. Choose from ["a", "b"].`) is a list, not JSON.
    let json = if starts_as_json(reply) || !reply.lines().any(|l| list_marker(l).is_some()) {
        json_items(reply).filter(|items| !items.is_empty())
    } else {
        None
    };
    let items = json.unwrap_or_else(|| list_items(reply));
    let mut proposals = Proposals::default();
    let key = |s: &str| s.trim().to_lowercase();
    let too_long = format!("longer than {MAX_CHARS} characters");
    for item in items {
        let text = clean(&item);
        if text.is_empty() {
            continue;
        }
        let chars = text.chars().count();
        let words = text.split_whitespace().filter(|w| w.chars().any(char::is_alphabetic)).count();
        let reason = if text.ends_with(':') {
            Some("a heading, not an instruction")
        } else if chars < MIN_CHARS || words < MIN_WORDS {
            Some("too short to be an instruction")
        } else if chars > MAX_CHARS {
            Some(too_long.as_str())
        } else if ["{{", "{%", "{#"].iter().any(|t| text.contains(t)) {
            Some("holds template syntax, which the prompt file would read as a template")
        } else if seen.iter().chain(&proposals.accepted).any(|s| key(s.as_str()) == key(&text)) {
            Some("already tried")
        } else if proposals.accepted.len() == wanted {
            Some("more than were asked for")
        } else {
            None
        };
        match reason {
            Some(reason) => proposals.dropped.push(Dropped { text, reason: reason.to_owned() }),
            None => proposals.accepted.push(text),
        }
    }
    proposals
}

/// The strings of a JSON reply: an array of strings, of objects holding a string, or an object
/// holding such an array. `None` when the reply holds no JSON.
fn json_items(reply: &str) -> Option<Vec<String>> {
    fn strings(value: &Value) -> Vec<String> {
        match value {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items.iter().flat_map(strings).collect(),
            // An object per instruction (`{"instruction": "…"}`) or one holding the list.
            Value::Object(map) => map.values().flat_map(strings).collect(),
            _ => Vec::new(),
        }
    }
    if !reply.contains(['[', '{']) {
        return None;
    }
    temper_prompt::json::extract_json(reply).ok().map(|value| strings(&value))
}

/// Whether the reply, inside a code fence if it opens with one, starts with a JSON array or object.
fn starts_as_json(reply: &str) -> bool {
    let text = reply.trim_start();
    let text = match text.strip_prefix("```") {
        // Past the fence's language tag (`json`).
        Some(fenced) => fenced.trim_start_matches(|c: char| c.is_ascii_alphanumeric()).trim_start(),
        None => text,
    };
    text.starts_with(['[', '{'])
}

/// The items of a list: numbered or bulleted lines, each with the unmarked lines that follow it
/// (and nothing before the first); without markers, every line.
fn list_items(reply: &str) -> Vec<String> {
    let lines: Vec<&str> = reply.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if !lines.iter().any(|l| list_marker(l).is_some()) {
        return lines.into_iter().map(str::to_owned).collect();
    }
    let mut items: Vec<String> = Vec::new();
    for line in lines {
        match list_marker(line) {
            Some(rest) => items.push(rest.to_owned()),
            None => {
                if let Some(last) = items.last_mut() {
                    last.push(' ');
                    last.push_str(line);
                }
            }
        }
    }
    items
}

/// The item without the decoration small models add: bold marks and surrounding quotes.
fn clean(item: &str) -> String {
    let unbolded = item.replace("**", "");
    let mut text = unbolded.trim();
    for (open, close) in [('"', '"'), ('\'', '\''), ('“', '”'), ('`', '`')] {
        if text.len() >= 2 && text.starts_with(open) && text.ends_with(close) {
            text = text[open.len_utf8()..text.len() - close.len_utf8()].trim();
        }
    }
    text.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(reply: &str) -> Vec<String> {
        parse_proposals(reply, 5, &[]).accepted
    }

    #[test]
    fn reads_numbered_lists_with_preamble_and_continuations() {
        let reply = "Sure! Here are new instructions:\n\n1. Label the review as positive or negative.\n\
                     2) **Read the review carefully.** Answer with one word.\n   Use lower case.\n\
                     Instruction 3: \"Decide the sentiment and reply with it alone.\"";
        assert_eq!(
            accepted(reply),
            [
                "Label the review as positive or negative.",
                "Read the review carefully. Answer with one word. Use lower case.",
                "Decide the sentiment and reply with it alone.",
            ]
        );
    }

    #[test]
    fn reads_json_arrays_and_objects() {
        let reply = "```json\n[\"Answer with one word only.\", \"Say positive or negative.\"]\n```";
        assert_eq!(accepted(reply), ["Answer with one word only.", "Say positive or negative."]);
        let reply = "{\"instructions\": [{\"instruction\": \"Reply with the label only.\"}]}";
        assert_eq!(accepted(reply), ["Reply with the label only."]);
    }

    #[test]
    fn a_list_that_quotes_json_keeps_its_items() {
        assert_eq!(
            accepted("1. Answer in one word.\n2. Choose from [\"positive\", \"negative\"]."),
            ["Answer in one word.", "Choose from [\"positive\", \"negative\"]."]
        );
        // JSON that opens the reply is read as JSON, bullets after it or not.
        let reply = "```json\n[\"Answer with one word only.\", \"Say positive or negative.\"]\n```\n- Both are short.";
        assert_eq!(accepted(reply), ["Answer with one word only.", "Say positive or negative."]);
    }

    #[test]
    fn reads_plain_lines_and_bullets() {
        assert_eq!(
            accepted("Answer in one word.\nBe brief and exact."),
            ["Answer in one word.", "Be brief and exact."]
        );
        assert_eq!(
            accepted("- Answer in one word.\n• Be brief and exact."),
            ["Answer in one word.", "Be brief and exact."]
        );
    }

    #[test]
    fn drops_what_cannot_be_an_instruction_and_says_why() {
        let long = "word ".repeat(200);
        let reply = format!(
            "1. Ok then\n2. Steps:\n3. {long}\n4. Use {{{{ review }}}} to answer.\n5. Answer with one word.\n\
             6. answer with one word.\n7. Already there, tried before.\n8. A sixth good instruction.\n9. A seventh one here."
        );
        let p = parse_proposals(&reply, 2, &["Already there, tried before.".to_owned()]);
        assert_eq!(p.accepted, ["Answer with one word.", "A sixth good instruction."]);
        let reasons: Vec<&str> = p.dropped.iter().map(|d| d.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "too short to be an instruction",
                "a heading, not an instruction",
                "longer than 600 characters",
                "holds template syntax, which the prompt file would read as a template",
                "already tried",
                "already tried",
                "more than were asked for",
            ]
        );
    }

    #[test]
    fn garbage_gives_nothing_and_never_panics() {
        for reply in ["", "   \n\n", "{[{[", "1.\n2.\n3.", "}}}{{{", "**", "\"", "“", "12345678901234567890"]
        {
            let p = parse_proposals(reply, 3, &[]);
            assert!(p.accepted.is_empty(), "{reply:?}: {p:?}");
        }
    }

    #[test]
    fn the_meta_prompt_holds_the_scores_and_failures() {
        let tried = [Tried { instruction: "", score: 0.5 }, Tried { instruction: "Be brief.", score: 0.25 }];
        let failures = [Failure { input: "Review: bad", output: "positive" }];
        let text = meta_prompt("Label reviews.", &tried, &failures, 3);
        assert!(text.contains("1. (score 0.50) (no instructions)\n2. (score 0.25) Be brief.\n"), "{text}");
        assert!(text.contains("Input: Review: bad\nWrong output: positive"), "{text}");
        assert!(text.contains("Write 3 new instructions"), "{text}");
    }
}
