//! Streaming text: stop strings that may span token boundaries, and UTF-8 characters that
//! may be split across token pieces.

/// What a [`StopMatcher`] lets through after one push.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopOutcome {
    /// Text safe to show now.
    pub text: String,
    /// A stop string was found: `text` ends just before it and generation should end.
    pub stopped: bool,
}

/// Watches streamed text for stop strings. It holds back only the longest tail that could
/// still grow into a stop string, so a stream never shows part of one.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are ignored: they would end every generation before it starts.
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Takes the next piece of generated text. Once a stop string is hit, the text after it
    /// and every later push are discarded.
    pub fn push(&mut self, text: &str) -> StopOutcome {
        if self.stopped {
            return StopOutcome { text: String::new(), stopped: true };
        }
        self.held.push_str(text);
        let earliest_stop = self.stops.iter().filter_map(|stop| self.held.find(stop.as_str())).min();
        if let Some(start) = earliest_stop {
            self.held.truncate(start);
            self.stopped = true;
            return StopOutcome { text: std::mem::take(&mut self.held), stopped: true };
        }
        let keep_from = self.start_of_possible_stop();
        let rest = self.held.split_off(keep_from);
        StopOutcome { text: std::mem::replace(&mut self.held, rest), stopped: false }
    }

    /// The text still held back, once generation has ended without a stop string.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Where the longest tail of `held` that begins some stop string starts (its length if none).
    fn start_of_possible_stop(&self) -> usize {
        let longest_stop = self.stops.iter().map(String::len).max().unwrap_or(0);
        let earliest = self.held.len().saturating_sub(longest_stop);
        self.held
            .char_indices()
            .map(|(start, _)| start)
            .skip_while(|&start| start < earliest)
            .find(|&start| {
                let tail = &self.held[start..];
                self.stops.iter().any(|stop| stop.starts_with(tail))
            })
            .unwrap_or(self.held.len())
    }
}

/// Turns a stream of bytes into text, keeping a multi-byte character that is split between
/// pushes until it is complete. Invalid bytes become U+FFFD.
#[derive(Clone, Debug, Default)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    pub fn new() -> Utf8Decoder {
        Utf8Decoder::default()
    }

    /// All complete text so far; an unfinished character at the end waits for the next push.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut text = String::with_capacity(self.pending.len());
        let mut unfinished = 0;
        let mut chunks = self.pending.utf8_chunks().peekable();
        while let Some(chunk) = chunks.next() {
            text.push_str(chunk.valid());
            let invalid = chunk.invalid();
            if invalid.is_empty() {
                continue;
            }
            if chunks.peek().is_none() && is_truncated_character(invalid) {
                unfinished = invalid.len();
            } else {
                text.push(char::REPLACEMENT_CHARACTER);
            }
        }
        self.pending.drain(..self.pending.len() - unfinished);
        text
    }

    /// What is left at the end of the stream, an unfinished character as U+FFFD.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// Whether `bytes` are the start of a valid character that the input cut short.
fn is_truncated_character(bytes: &[u8]) -> bool {
    matches!(std::str::from_utf8(bytes), Err(error) if error.error_len().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Streams `chunks` through a matcher: everything shown, and whether it stopped.
    fn stream(stops: &[&str], chunks: &[&str]) -> (Vec<String>, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut matcher = StopMatcher::new(&stops);
        let mut shown = Vec::new();
        for chunk in chunks {
            let outcome = matcher.push(chunk);
            shown.push(outcome.text);
            if outcome.stopped {
                return (shown, true);
            }
        }
        shown.push(matcher.finish());
        (shown, false)
    }

    #[test]
    fn stop_inside_one_chunk() {
        let (shown, stopped) = stream(&["</s>"], &["Hello", " world</s>ignored", "more"]);
        assert!(stopped);
        assert_eq!(shown, ["Hello", " world"]);
    }

    #[test]
    fn stop_spanning_two_and_three_chunks() {
        let (shown, stopped) = stream(&["<|end|>"], &["Hi<|e", "nd|>after"]);
        assert!(stopped);
        assert_eq!(shown, ["Hi", ""]);
        let (shown, stopped) = stream(&["<|end|>"], &["Hi <", "|en", "d|>"]);
        assert!(stopped);
        assert_eq!(shown, ["Hi ", "", ""]);
    }

    #[test]
    fn false_partial_match_is_released_in_order() {
        let (shown, stopped) = stream(&["<|end|>"], &["a <|e", "x", " b <", "|", "e"]);
        assert!(!stopped);
        assert_eq!(shown, ["a ", "<|ex", " b ", "", "", "<|e"]);
        assert_eq!(shown.concat(), "a <|ex b <|e");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let (shown, stopped) = stream(&["world", "lo w", "\n\n"], &["hel", "lo world\n\n"]);
        assert!(stopped);
        assert_eq!(shown.concat(), "hel");
    }

    #[test]
    fn stop_at_the_very_start() {
        let (shown, stopped) = stream(&["###"], &["###", "text"]);
        assert!(stopped);
        assert_eq!(shown, [""]);
    }

    #[test]
    fn later_pushes_after_a_stop_show_nothing() {
        let mut matcher = StopMatcher::new(&["x".to_string(), String::new()]);
        assert_eq!(matcher.push("abxcd"), StopOutcome { text: "ab".into(), stopped: true });
        assert_eq!(matcher.push("more"), StopOutcome { text: String::new(), stopped: true });
        assert_eq!(matcher.finish(), "");
    }

    #[test]
    fn held_tail_respects_character_boundaries() {
        let (shown, stopped) = stream(&["é!"], &["caf", "é", "?"]);
        assert!(!stopped);
        assert_eq!(shown, ["caf", "", "é?", ""]);
    }

    #[test]
    fn emoji_split_over_pushes() {
        let bytes = "a😀b".as_bytes();
        let mut decoder = Utf8Decoder::new();
        assert_eq!(decoder.push(&bytes[..2]), "a");
        assert_eq!(decoder.push(&bytes[2..3]), "");
        assert_eq!(decoder.push(&bytes[3..4]), "");
        assert_eq!(decoder.push(&bytes[4..]), "😀b");
        assert_eq!(decoder.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut decoder = Utf8Decoder::new();
        assert_eq!(decoder.push(b"a\xffb\xc3"), "a\u{FFFD}b");
        // The held 0xC3 cannot be continued by 'x'.
        assert_eq!(decoder.push(b"x\xe2\x82"), "\u{FFFD}x");
        assert_eq!(decoder.finish(), "\u{FFFD}");
        assert_eq!(decoder.push("é".as_bytes()), "é");
    }
}
