//! Token-aware recursive chunking: a section that is too long is cut at paragraphs, then
//! lines, then sentences, then words (then characters, for a word longer than a chunk), and
//! the pieces are packed back into chunks of at most `max_tokens`, each starting with up to
//! `overlap` tokens of the one before. A chunk also holds at most [`MAX_CHARS_PER_TOKEN`]
//! characters a token, whatever the counter says: a tokenizer sees a run of letters longer
//! than its longest word as one unknown token, and a megabyte without a space must still be cut.

use std::ops::Range;

use serde::Serialize;
use temper_core::TokenCounter;

use crate::load::{Position, Section};
use crate::{RagError, Result};

/// The tokens of `text`, or its bytes when the counter fails: chunks and prompts then come out
/// smaller, never too long.
pub(crate) fn tokens_or_bytes(counter: &dyn TokenCounter, text: &str) -> usize {
    counter.count_text(text).unwrap_or(text.len())
}

/// An estimate of WordPiece tokens (BERT's tokenizer, which the default embedder uses) for when
/// the embedder's own tokenizer is not at hand: a punctuation mark or a CJK character is one
/// token, a run of letters or digits one token per five characters or part of five. Common
/// English words are one WordPiece, longer or rarer ones split into pieces of about that size,
/// so the estimate errs on the high side and chunks stay inside the model's limit.
pub struct WordPieceEstimate;

impl TokenCounter for WordPieceEstimate {
    fn count_text(&self, text: &str) -> temper_core::Result<usize> {
        let mut tokens = 0;
        let mut run: usize = 0;
        for c in text.chars() {
            if c.is_alphanumeric() && (c as u32) < 0x2E80 {
                run += 1;
                continue;
            }
            tokens += run.div_ceil(5);
            run = 0;
            if !c.is_whitespace() {
                tokens += 1;
            }
        }
        Ok(tokens + run.div_ceil(5))
    }
}

/// How long chunks are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChunkOptions {
    /// The most tokens in a chunk. all-MiniLM-L6-v2 reads 256 word pieces; the default leaves
    /// room for the estimate to be off.
    pub max_tokens: usize,
    /// Tokens of the previous chunk repeated at the start of the next, so that a sentence cut
    /// at a boundary is whole in one of them.
    pub overlap: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions { max_tokens: 200, overlap: 30 }
    }
}

impl ChunkOptions {
    pub fn validate(&self) -> Result<()> {
        if self.max_tokens == 0 {
            return Err(RagError::invalid("chunk size", "must be at least 1 token"));
        }
        if self.overlap >= self.max_tokens {
            return Err(RagError::invalid(
                "chunk overlap",
                format!("{} must be smaller than the chunk size {}", self.overlap, self.max_tokens),
            ));
        }
        Ok(())
    }
}

/// The most characters a chunk holds per token of `max_tokens`. Tokens of real text average
/// four to five characters; eight leaves room for long words and numbers while bounding what a
/// counter that sees one token in a long run of letters lets through.
pub const MAX_CHARS_PER_TOKEN: usize = 8;

/// A piece of a document, ready to embed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Chunk {
    pub text: String,
    pub position: Position,
    pub heading: Vec<String>,
}

/// Where a level cuts: after paragraph breaks, newlines, sentence ends, or spaces; then every
/// `n` characters, halving `n` until single characters.
#[derive(Clone, Copy)]
enum Level {
    Paragraph,
    Line,
    Sentence,
    Word,
    Chars(usize),
}

impl Level {
    /// The level below this one; `max_chars` is the longest piece that may fit.
    fn next(self, max_chars: usize) -> Level {
        match self {
            Level::Paragraph => Level::Line,
            Level::Line => Level::Sentence,
            Level::Sentence => Level::Word,
            Level::Word => Level::Chars(max_chars),
            Level::Chars(n) => Level::Chars((n / 2).max(1)),
        }
    }

    /// Byte offsets in `text` just after each cut.
    fn cuts(self, text: &str) -> Vec<usize> {
        if let Level::Chars(n) = self {
            return text.char_indices().skip(n).step_by(n).map(|(i, _)| i).collect();
        }
        let mut cuts = Vec::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let next = chars.peek().map(|&(_, n)| n);
            let end = i + c.len_utf8();
            let cut = match self {
                Level::Paragraph => c == '\n' && next.is_some_and(|n| n != '\n') && text[..i].ends_with('\n'),
                Level::Line => c == '\n',
                Level::Sentence => {
                    (matches!(c, '.' | '!' | '?') && next.is_some_and(char::is_whitespace))
                        || matches!(c, '。' | '！' | '？')
                }
                Level::Word => c.is_whitespace() && next.is_some_and(|n| !n.is_whitespace()),
                Level::Chars(_) => unreachable!("handled above"),
            };
            if cut && end < text.len() {
                cuts.push(end);
            }
        }
        cuts
    }
}

/// A piece that fits in a chunk: where it is, its tokens and its characters.
struct Atom {
    range: Range<usize>,
    tokens: usize,
    chars: usize,
}

/// Cuts sections into chunks.
pub struct Chunker<'a> {
    options: ChunkOptions,
    counter: &'a dyn TokenCounter,
}

impl<'a> Chunker<'a> {
    pub fn new(options: ChunkOptions, counter: &'a dyn TokenCounter) -> Result<Self> {
        options.validate()?;
        Ok(Chunker { options, counter })
    }

    /// The chunks of a section, in order, each with the line it starts on (for line
    /// positions) and the section's heading.
    pub fn chunk(&self, section: &Section) -> Vec<Chunk> {
        let text = section.text.as_str();
        let mut atoms = Vec::new();
        self.atoms(text, 0..text.len(), Level::Paragraph, &mut atoms);
        let mut chunks = Vec::new();
        let max_chars = self.options.max_tokens.saturating_mul(MAX_CHARS_PER_TOKEN);
        let mut start = 0;
        while start < atoms.len() {
            // Pack as many atoms as fit.
            let mut end = start;
            let (mut tokens, mut chars) = (0, 0);
            while end < atoms.len()
                && (end == start
                    || tokens + atoms[end].tokens <= self.options.max_tokens
                        && chars + atoms[end].chars <= max_chars)
            {
                tokens += atoms[end].tokens;
                chars += atoms[end].chars;
                end += 1;
            }
            let range = atoms[start].range.start..atoms[end - 1].range.end;
            if let Some(chunk) = self.make(section, range) {
                chunks.push(chunk);
            }
            if end == atoms.len() {
                break;
            }
            // Step back over up to `overlap` tokens, always moving forward.
            let mut next = end;
            let mut carried = 0;
            while next > start + 1 && carried + atoms[next - 1].tokens <= self.options.overlap {
                carried += atoms[next - 1].tokens;
                next -= 1;
            }
            start = next;
        }
        chunks
    }

    fn make(&self, section: &Section, range: Range<usize>) -> Option<Chunk> {
        let raw = &section.text[range.clone()];
        let text = raw.trim();
        if text.is_empty() {
            return None;
        }
        let position = match section.position {
            Position::Line(first) => {
                let leading = raw.len() - raw.trim_start().len();
                let before = &section.text[..range.start + leading];
                Position::Line(first + before.bytes().filter(|&b| b == b'\n').count() as u32)
            }
            other => other,
        };
        Some(Chunk { text: text.to_owned(), position, heading: section.heading.clone() })
    }

    /// Splits `range` of `text` into pieces that each fit, with their token counts.
    fn atoms(&self, text: &str, range: Range<usize>, level: Level, out: &mut Vec<Atom>) {
        let piece = &text[range.clone()];
        let max_chars = self.options.max_tokens.saturating_mul(MAX_CHARS_PER_TOKEN);
        // Counting characters stops early: a long piece is only compared with the limit.
        let short = piece.chars().nth(max_chars).is_none();
        let tokens = if short { tokens_or_bytes(self.counter, piece) } else { usize::MAX };
        let single = matches!(level, Level::Chars(1)) && piece.chars().nth(1).is_none();
        if tokens <= self.options.max_tokens || single {
            out.push(Atom { range, tokens, chars: piece.chars().count() });
            return;
        }
        let mut from = range.start;
        for cut in level.cuts(piece).into_iter().map(|c| range.start + c).chain([range.end]) {
            self.atoms(text, from..cut, level.next(max_chars), out);
            from = cut;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    fn section(text: &str) -> Section {
        Section { text: text.into(), position: Position::Line(10), heading: vec!["H".into()] }
    }

    fn chunk(text: &str, max_tokens: usize, overlap: usize) -> Vec<Chunk> {
        let counter = words;
        Chunker::new(ChunkOptions { max_tokens, overlap }, &counter).unwrap().chunk(&section(text))
    }

    #[test]
    fn a_short_section_is_one_chunk() {
        let c = chunk("  one two three  ", 5, 1);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].text, "one two three");
        assert_eq!((c[0].position, c[0].heading.clone()), (Position::Line(10), vec!["H".to_string()]));
        assert!(chunk("", 5, 1).is_empty());
        assert!(chunk(" \n\n ", 5, 1).is_empty());
    }

    #[test]
    fn paragraphs_come_before_sentences_and_sentences_before_words() {
        let text = "a b c.\n\nd e f. g h i.\n\nj k l m n o p q r s t u v w x y z";
        let c = chunk(text, 6, 0);
        let texts: Vec<&str> = c.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, vec!["a b c.", "d e f. g h i.", "j k l m n o", "p q r s t u", "v w x y z"]);
        assert!(c.iter().all(|c| words(&c.text) <= 6));
        let lines: Vec<Position> = c.iter().map(|c| c.position).collect();
        assert_eq!(lines[..3], [Position::Line(10), Position::Line(12), Position::Line(14)]);
    }

    #[test]
    fn overlap_repeats_the_end_of_the_previous_chunk() {
        let text = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10";
        let c = chunk(text, 4, 2);
        let texts: Vec<&str> = c.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, vec!["w1 w2 w3 w4", "w3 w4 w5 w6", "w5 w6 w7 w8", "w7 w8 w9 w10"]);
    }

    #[test]
    fn a_word_longer_than_a_chunk_is_cut_by_characters() {
        let counter = |t: &str| t.chars().count();
        let chunker = Chunker::new(ChunkOptions { max_tokens: 4, overlap: 0 }, &counter).unwrap();
        let c = chunker.chunk(&section("abcdefghij"));
        let texts: Vec<&str> = c.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, vec!["abcd", "efgh", "ij"]);
        let c = chunker.chunk(&section("ééééé"));
        assert_eq!(c.len(), 2, "cuts fall on character boundaries");
    }

    #[test]
    fn text_a_counter_sees_as_one_token_is_still_cut_to_size() {
        // Whitespace-separated words: a megabyte without a space counts as one "token", as a
        // WordPiece tokenizer sees it as one unknown token.
        let counter = words;
        let chunker = Chunker::new(ChunkOptions { max_tokens: 200, overlap: 30 }, &counter).unwrap();
        let max_chars = 200 * MAX_CHARS_PER_TOKEN;
        let text = "é".repeat(1 << 20);
        let started = std::time::Instant::now();
        let c = chunker.chunk(&section(&text));
        assert!(started.elapsed().as_secs_f64() < 5.0, "took {:?}", started.elapsed());
        assert!(
            c.iter().all(|c| c.text.chars().count() <= max_chars),
            "a chunk is over {max_chars} characters"
        );
        assert_eq!(
            c.iter().map(|c| c.text.chars().count()).sum::<usize>(),
            1 << 20,
            "nothing lost, no overlap"
        );
        // Long words among normal ones: every chunk within both limits.
        let mixed = format!("one two {} three four", "y".repeat(5000));
        let c = chunker.chunk(&section(&mixed));
        assert!(c.len() >= 4, "{}", c.len());
        assert!(c.iter().all(|c| c.text.chars().count() <= max_chars && words(&c.text) <= 200));
    }

    #[test]
    fn pages_stay_pages() {
        let counter = words;
        let chunker = Chunker::new(ChunkOptions { max_tokens: 2, overlap: 0 }, &counter).unwrap();
        let page = Section { text: "a b\nc d".into(), position: Position::Page(3), heading: vec![] };
        assert!(chunker.chunk(&page).iter().all(|c| c.position == Position::Page(3)));
    }

    #[test]
    fn bad_sizes_are_refused() {
        let counter = words;
        assert!(Chunker::new(ChunkOptions { max_tokens: 0, overlap: 0 }, &counter).is_err());
        let err = Chunker::new(ChunkOptions { max_tokens: 10, overlap: 10 }, &counter).err().unwrap();
        assert!(err.to_string().contains("smaller than the chunk size"), "{err}");
    }

    #[test]
    fn the_wordpiece_estimate_counts_words_and_marks() {
        let est = WordPieceEstimate;
        assert_eq!(est.count_text("The cat sits on the mat.").unwrap(), 7);
        assert_eq!(est.count_text("internationalization").unwrap(), 4);
        assert_eq!(est.count_text("生成式").unwrap(), 3);
        assert_eq!(est.count_text("").unwrap(), 0);
    }
}
