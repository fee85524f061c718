//! HTML in, sections of text out.

use std::cell::RefCell;

use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

use super::{Position, Section};

/// The text of HTML without its tags, script, style or comments, split at `<h1>`…`<h6>`.
/// Every newline of the source is kept (tags and skipped content are replaced by their
/// newlines alone), so a chunk's line number is its line in the HTML file.
///
/// html5ever's tokenizer, not its tree builder: text needs no tree, and the tokenizer reports
/// the line of each token, which a tree would lose. It decodes every entity, and knows where
/// comments, `<script>` and `<style>` end however odd the markup.
pub(super) fn sections(html: &str) -> Vec<Section> {
    let state = HtmlState { start_line: 1, ..Default::default() };
    let tokenizer = Tokenizer::new(HtmlText(state.into()), TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(html.into());
    // Only a sink that returns `Script` pauses the tokenizer, and this one never does.
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    let mut text = tokenizer.sink.0.into_inner();
    text.flush();
    text.sections
}

/// What [`sections`] gathers, token by token.
struct HtmlText(RefCell<HtmlState>);

#[derive(Default)]
struct HtmlState {
    sections: Vec<Section>,
    path: Vec<(usize, String)>,
    current: String,
    /// Lines of the source covered by `current` and the sections before it, less one.
    newlines: u32,
    start_line: u32,
    /// The heading being read: its level and text so far.
    heading: Option<(usize, String)>,
    /// The element whose content is not text (`script`, `template`…), and how deep in it.
    skipping: Option<(html5ever::LocalName, usize)>,
    /// Cells so far in the table row.
    cells: usize,
}

/// Whether an element breaks the text: a space between it and its neighbours, unless the
/// source has a newline there.
fn is_block(name: &str) -> bool {
    matches!(
        name,
        "address"
            | "article"
            | "aside"
            | "blockquote"
            | "br"
            | "caption"
            | "dd"
            | "div"
            | "dl"
            | "dt"
            | "figcaption"
            | "figure"
            | "footer"
            | "form"
            | "header"
            | "hr"
            | "li"
            | "main"
            | "nav"
            | "ol"
            | "p"
            | "pre"
            | "section"
            | "table"
            | "tbody"
            | "td"
            | "tfoot"
            | "th"
            | "thead"
            | "title"
            | "tr"
            | "ul"
    )
}

fn heading_level(name: &str) -> Option<usize> {
    match name.as_bytes() {
        [b'h', d @ b'1'..=b'6'] => Some((d - b'0') as usize),
        _ => None,
    }
}

impl HtmlState {
    fn line(&self) -> u32 {
        self.newlines + 1
    }

    /// Newlines up to `line`, so that text stays on its source line.
    fn reach(&mut self, line: u32) {
        while self.line() < line {
            self.current.push('\n');
            self.newlines += 1;
        }
    }

    fn push_text(&mut self, text: &str) {
        let text = text.replace('\u{a0}', " ");
        if let Some((_, title)) = &mut self.heading {
            title.push_str(&text);
        }
        self.current.push_str(&text);
        self.newlines += text.matches('\n').count() as u32;
    }

    fn separate(&mut self) {
        if !self.current.ends_with(char::is_whitespace) && !self.current.is_empty() {
            self.current.push(' ');
        }
        if let Some((_, title)) = &mut self.heading {
            title.push(' ');
        }
    }

    fn flush(&mut self) {
        self.end_heading();
        if !self.current.trim().is_empty() {
            self.sections.push(Section {
                text: std::mem::take(&mut self.current),
                position: Position::Line(self.start_line),
                heading: self.path.iter().map(|(_, h)| h.clone()).collect(),
            });
        }
        self.current.clear();
        self.start_line = self.line();
    }

    fn end_heading(&mut self) {
        if let Some((level, title)) = self.heading.take() {
            self.path.retain(|(l, _)| *l < level);
            self.path.push((level, title.split_whitespace().collect::<Vec<_>>().join(" ")));
        }
    }

    fn tag(&mut self, tag: Tag) -> TokenSinkResult<()> {
        let start = tag.kind == TagKind::StartTag;
        if let Some((skipped, depth)) = &mut self.skipping {
            // HTML ignores `/>` on these elements: `<template/>` opens one too.
            match (*skipped == tag.name, start) {
                (true, true) => *depth += 1,
                (true, false) if *depth > 1 => *depth -= 1,
                (true, false) => self.skipping = None,
                (false, _) => {}
            }
            return TokenSinkResult::Continue;
        }
        let name = &*tag.name;
        if let Some(level) = heading_level(name) {
            if start {
                self.flush();
                self.heading = Some((level, String::new()));
            } else {
                self.end_heading();
                self.separate();
            }
            return TokenSinkResult::Continue;
        }
        if !start {
            if is_block(name) {
                self.separate();
            }
            return TokenSinkResult::Continue;
        }
        // Content that is not text is skipped; script and style are read raw, as browsers do,
        // so a `<p>` inside them is not a tag.
        let raw = match name {
            "script" => Some(RawKind::ScriptData),
            "style" | "noscript" | "iframe" | "noembed" | "noframes" | "xmp" => Some(RawKind::Rawtext),
            "template" => None,
            _ => return self.start_text(name),
        };
        self.skipping = Some((tag.name.clone(), 1));
        raw.map_or(TokenSinkResult::Continue, TokenSinkResult::RawData)
    }

    /// The start tag of an element whose content is text.
    fn start_text(&mut self, name: &str) -> TokenSinkResult<()> {
        match name {
            "tr" => self.cells = 0,
            "td" | "th" => {
                if self.cells > 0 {
                    self.current.truncate(self.current.trim_end_matches(' ').len());
                    self.current.push_str(" | ");
                }
                self.cells += 1;
            }
            _ => {}
        }
        if is_block(name) {
            // A heading left open ends where its block content starts.
            self.end_heading();
            self.separate();
        }
        match name {
            // Text, but `<` in it is not a tag.
            "title" | "textarea" => TokenSinkResult::RawData(RawKind::Rcdata),
            _ => TokenSinkResult::Continue,
        }
    }
}

impl TokenSink for HtmlText {
    type Handle = ();

    fn process_token(&self, token: Token, line: u64) -> TokenSinkResult<()> {
        let mut state = self.0.borrow_mut();
        let line = u32::try_from(line).unwrap_or(u32::MAX);
        match token {
            Token::CharacterTokens(text) => {
                // The tokenizer counts a token's newlines before it hands it over.
                state.reach(line.saturating_sub(text.matches('\n').count() as u32));
                if state.skipping.is_none() {
                    state.push_text(&text);
                }
                state.reach(line);
                TokenSinkResult::Continue
            }
            Token::TagToken(tag) => {
                // A heading's section starts on the heading's line, not after the newlines
                // inside its tag.
                let result = state.tag(tag);
                state.reach(line);
                result
            }
            _ => {
                state.reach(line);
                TokenSinkResult::Continue
            }
        }
    }
}
