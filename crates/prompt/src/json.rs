//! Reading JSON out of a model's reply. Small models wrap it in prose or code fences, leave
//! trailing commas, use typographic quotes, or stop before the last bracket; each of those is
//! repaired here, and anything else is an error the caller retries on.

use serde_json::Value;

/// The first JSON object or array in `reply`, repaired if need be.
pub fn extract_json(reply: &str) -> Result<Value, String> {
    let reply = reply.replace(['\u{201C}', '\u{201D}'], "\"");
    let mut last_error = "the reply holds no JSON object".to_owned();
    for (start, _) in reply.match_indices(['{', '[']) {
        let candidate = balanced(&reply[start..]);
        match serde_json::from_str(&candidate)
            .or_else(|_| serde_json::from_str(&drop_trailing_commas(&candidate)))
        {
            Ok(value) => return Ok(value),
            Err(e) => last_error = format!("the reply's JSON is invalid: {e}"),
        }
    }
    Err(last_error)
}

/// The text from its first bracket to the matching close, closing whatever is still open
/// where the text ends (a reply cut off by `max_tokens`).
fn balanced(text: &str) -> String {
    let mut open = Vec::new();
    let mut strings = Strings::default();
    for (i, c) in text.char_indices() {
        if !strings.outside(c) {
            continue;
        }
        match c {
            '{' => open.push('}'),
            '[' => open.push(']'),
            '}' | ']' => {
                open.pop();
                if open.is_empty() {
                    return text[..=i].to_owned();
                }
            }
            _ => {}
        }
    }
    let mut closed = text.trim_end().trim_end_matches(',').to_owned();
    if strings.inside {
        closed.push('"');
    }
    closed.extend(open.iter().rev());
    closed
}

/// `[1, 2,]` → `[1, 2]`, outside strings.
fn drop_trailing_commas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut strings = Strings::default();
    for c in text.chars() {
        if strings.outside(c) && matches!(c, '}' | ']') {
            if let Some(len) = out.trim_end().strip_suffix(',').map(str::len) {
                out.truncate(len);
            }
        }
        out.push(c);
    }
    out
}

/// Follows JSON strings character by character, escapes included.
#[derive(Default)]
struct Strings {
    inside: bool,
    escaped: bool,
}

impl Strings {
    /// Whether `c` is outside every string (a quote opening or closing one is not).
    fn outside(&mut self, c: char) -> bool {
        if self.inside {
            match c {
                _ if self.escaped => self.escaped = false,
                '\\' => self.escaped = true,
                '"' => self.inside = false,
                _ => {}
            }
            return false;
        }
        if c == '"' {
            self.inside = true;
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_json_in_prose_and_fences() {
        let reply = "Sure! Here it is:\n```json\n{\"a\": [1, 2], \"b\": \"x}\"}\n```\nHope it helps.";
        assert_eq!(extract_json(reply).unwrap(), json!({"a": [1, 2], "b": "x}"}));
    }

    #[test]
    fn repairs_trailing_commas_quotes_and_cut_off_endings() {
        assert_eq!(extract_json("{\"a\": [1, 2,], }").unwrap(), json!({"a": [1, 2]}));
        assert_eq!(extract_json("{\u{201C}a\u{201D}: 1}").unwrap(), json!({"a": 1}));
        assert_eq!(extract_json("{\"a\": [\"x\", \"y").unwrap(), json!({"a": ["x", "y"]}));
        assert_eq!(extract_json("{\"a\": \"q\\\"\",").unwrap(), json!({"a": "q\""}));
    }

    #[test]
    fn skips_a_broken_object_for_a_later_good_one() {
        assert_eq!(extract_json("{not json} then {\"ok\": true}").unwrap(), json!({"ok": true}));
    }

    #[test]
    fn says_why_when_nothing_can_be_read() {
        assert_eq!(extract_json("no json here").unwrap_err(), "the reply holds no JSON object");
        assert!(extract_json("{a: 1}").unwrap_err().starts_with("the reply's JSON is invalid"));
    }
}
