//! Splitting a streamed body into the vendors' frames: server-sent events (OpenAI, Anthropic)
//! or newline-delimited JSON (Ollama).

/// How a vendor frames its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    Sse,
    Ndjson,
}

/// One event: SSE's `event:` name (if any) and its `data:`, or one NDJSON line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub event: Option<String>,
    pub data: String,
}

/// Buffers bytes until a whole frame has arrived.
#[derive(Debug)]
pub(crate) struct Decoder {
    framing: Framing,
    buffer: Vec<u8>,
}

impl Decoder {
    pub(crate) fn new(framing: Framing) -> Decoder {
        Decoder { framing, buffer: Vec::new() }
    }

    /// The frames completed by `bytes`; a frame that is not UTF-8 is an error.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, String> {
        self.buffer.extend_from_slice(bytes);
        let mut frames = Vec::new();
        while let Some((end, skip)) = self.boundary() {
            let raw: Vec<u8> = self.buffer.drain(..end + skip).take(end).collect();
            let text = String::from_utf8(raw).map_err(|e| format!("an event is not UTF-8: {e}"))?;
            frames.extend(self.frame(&text));
        }
        Ok(frames)
    }

    /// At the end of the body: an error if part of a frame is still waiting.
    pub(crate) fn finish(&self) -> Result<(), String> {
        let rest = String::from_utf8_lossy(&self.buffer);
        match rest.trim() {
            "" => Ok(()),
            partial => Err(format!("the stream ended in the middle of an event: `{}`", preview(partial))),
        }
    }

    /// Where the first complete frame ends and how long its terminator is.
    fn boundary(&self) -> Option<(usize, usize)> {
        match self.framing {
            Framing::Ndjson => self.buffer.iter().position(|&b| b == b'\n').map(|at| (at, 1)),
            Framing::Sse => {
                let lf = self.buffer.windows(2).position(|w| w == b"\n\n").map(|at| (at, 2));
                let crlf = self.buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|at| (at, 4));
                match (lf, crlf) {
                    (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    fn frame(&self, text: &str) -> Option<Frame> {
        match self.framing {
            Framing::Ndjson => {
                let line = text.trim();
                (!line.is_empty()).then(|| Frame { event: None, data: line.to_owned() })
            }
            Framing::Sse => {
                let (mut event, mut data): (Option<String>, Option<String>) = (None, None);
                for line in text.lines() {
                    // Lines starting with `:` are comments (keep-alives).
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "event" => event = Some(value.to_owned()),
                        "data" => match &mut data {
                            Some(joined) => {
                                joined.push('\n');
                                joined.push_str(value);
                            }
                            None => data = Some(value.to_owned()),
                        },
                        _ => {}
                    }
                }
                data.map(|data| Frame { event, data })
            }
        }
    }
}

/// The start of `text`, for error messages about what a server sent.
pub(crate) fn preview(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_frames_across_chunks() {
        let mut decoder = Decoder::new(Framing::Sse);
        assert_eq!(decoder.push(b": keep-alive\n\nevent: ping\nda").unwrap(), vec![]);
        let frames = decoder.push(b"ta: {}\n\ndata: a\ndata: b\r\n\r\n").unwrap();
        assert_eq!(
            frames,
            vec![
                Frame { event: Some("ping".into()), data: "{}".into() },
                Frame { event: None, data: "a\nb".into() },
            ]
        );
        assert!(decoder.finish().is_ok());
        decoder.push(b"data: {\"cho").unwrap();
        assert!(decoder.finish().unwrap_err().contains("middle of an event"));
    }

    #[test]
    fn ndjson_lines() {
        let mut decoder = Decoder::new(Framing::Ndjson);
        let frames = decoder.push(b"{\"a\":1}\n\n{\"b\"").unwrap();
        assert_eq!(frames, vec![Frame { event: None, data: "{\"a\":1}".into() }]);
        assert!(decoder.finish().is_err());
        assert_eq!(decoder.push(b":2}\n").unwrap().len(), 1);
        assert!(decoder.finish().is_ok());
    }

    #[test]
    fn preview_cuts_long_text_on_a_char_boundary() {
        let long = "é".repeat(300);
        assert_eq!(preview(&long).chars().count(), 201);
        assert_eq!(preview("short"), "short");
    }
}
