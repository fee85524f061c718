//! Splitting a streamed body into the vendors' frames: server-sent events (OpenAI, Anthropic)
//! or newline-delimited JSON (Ollama).
//!
//! Kept rather than taken from an SSE crate such as `eventsource-stream`, for three reasons:
//! such a crate buffers an unfinished line without bound (`eventsource-stream` 0.2 takes no
//! limit), so a hostile or broken server that never sends a newline grows memory until the
//! process dies, where [`MAX_FRAME_BYTES`] here ends it with an error; it frames SSE only, and
//! Ollama's NDJSON would still need this code beside it; and this decoder is small, linear in
//! the bytes however they are split, and fuzzed (`fuzz/fuzz_targets/sse.rs` and `ndjson.rs`,
//! through `temper_providers::fuzzing`).

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

/// The longest frame accepted: far beyond any real event, short of exhausting memory when a
/// server sends a line that never ends.
pub(crate) const MAX_FRAME_BYTES: usize = 16 << 20;

/// Buffers bytes until a whole frame has arrived. Every byte is examined once, however the
/// body is split, so a long frame costs linear time.
#[derive(Debug)]
pub(crate) struct Decoder {
    framing: Framing,
    buffer: Vec<u8>,
    /// How much of `buffer` has been searched for the end of a frame.
    scanned: usize,
}

impl Decoder {
    pub(crate) fn new(framing: Framing) -> Decoder {
        Decoder { framing, buffer: Vec::new(), scanned: 0 }
    }

    /// The frames completed by `bytes`; a frame that is not UTF-8, or longer than
    /// [`MAX_FRAME_BYTES`], is an error.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, String> {
        self.buffer.extend_from_slice(bytes);
        let mut frames = Vec::new();
        let mut start = 0;
        while let Some((end, next)) = self.boundary(start) {
            let text = std::str::from_utf8(&self.buffer[start..end])
                .map_err(|e| format!("an event is not UTF-8: {e}"))?;
            frames.extend(self.frame(text));
            start = next;
        }
        self.buffer.drain(..start);
        self.scanned -= start;
        if self.buffer.len() > MAX_FRAME_BYTES {
            return Err(format!(
                "an event is longer than {} MiB without ending; the server is not sending a stream Temper reads",
                MAX_FRAME_BYTES >> 20
            ));
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

    /// The end of the first complete frame at or after `start`, and where the next one starts.
    /// A frame ends at a newline (NDJSON) or a blank line (SSE: `\n\n` or `\r\n\r\n`), so only
    /// newlines not yet seen are looked at, each with the bytes just before it.
    fn boundary(&mut self, start: usize) -> Option<(usize, usize)> {
        let from = self.scanned.max(start);
        for (offset, _) in self.buffer[from..].iter().enumerate().filter(|(_, &b)| b == b'\n') {
            let at = from + offset;
            let ends = |terminator: &[u8]| {
                at + 1 >= start + terminator.len() && self.buffer[..=at].ends_with(terminator)
            };
            let found = match self.framing {
                Framing::Ndjson => Some(at),
                Framing::Sse if ends(b"\r\n\r\n") => Some(at - 3),
                Framing::Sse if ends(b"\n\n") => Some(at - 1),
                Framing::Sse => None,
            };
            if let Some(end) = found {
                self.scanned = at + 1;
                return Some((end, at + 1));
            }
        }
        self.scanned = self.buffer.len();
        None
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

    /// The frames of `body` pushed in pieces of `size` bytes.
    fn decode(framing: Framing, body: &[u8], size: usize) -> Result<Vec<Frame>, String> {
        let mut decoder = Decoder::new(framing);
        let mut frames = Vec::new();
        for piece in body.chunks(size.max(1)) {
            frames.extend(decoder.push(piece)?);
        }
        decoder.finish()?;
        Ok(frames)
    }

    #[test]
    fn frames_do_not_depend_on_how_the_body_is_split() {
        let sse = b"data: a\n\n\n\ndata: b\r\n\r\nevent: e\ndata: c\ndata: d\n\n: ping\n\n";
        let whole = decode(Framing::Sse, sse, sse.len()).unwrap();
        assert_eq!(whole.iter().map(|f| f.data.as_str()).collect::<Vec<_>>(), ["a", "b", "c\nd"]);
        let ndjson = b"{\"a\":1}\r\n\n{\"b\":2}\n";
        let lines = decode(Framing::Ndjson, ndjson, ndjson.len()).unwrap();
        for size in 1..8 {
            assert_eq!(decode(Framing::Sse, sse, size).unwrap(), whole, "pieces of {size}");
            assert_eq!(decode(Framing::Ndjson, ndjson, size).unwrap(), lines, "pieces of {size}");
        }
    }

    #[test]
    fn a_long_line_is_read_in_linear_time_and_an_endless_one_is_refused() {
        // 8 MiB arriving in 1 KiB pieces: quadratic scanning would take minutes.
        let started = std::time::Instant::now();
        let mut decoder = Decoder::new(Framing::Sse);
        let piece = [b'x'; 1024];
        decoder.push(b"data: ").unwrap();
        for _ in 0..8 << 10 {
            assert!(decoder.push(&piece).unwrap().is_empty());
        }
        let frames = decoder.push(b"\n\n").unwrap();
        assert_eq!(frames[0].data.len(), 8 << 20);
        assert!(started.elapsed().as_secs_f64() < 2.0, "took {:?}", started.elapsed());

        let mut decoder = Decoder::new(Framing::Ndjson);
        let big = vec![b'x'; 1 << 20];
        let err = (0..=MAX_FRAME_BYTES >> 20).find_map(|_| decoder.push(&big).err()).expect("refused");
        assert!(err.contains("longer than 16 MiB"), "{err}");
    }

    #[test]
    fn preview_cuts_long_text_on_a_char_boundary() {
        let long = "é".repeat(300);
        assert_eq!(preview(&long).chars().count(), 201);
        assert_eq!(preview("short"), "short");
    }
}
