//! Loaders: files and folders in, sections of plain text out, each with where it came from.
//! A file that cannot be used is not an error of the whole run: it comes back as a
//! [`Skipped`] with the reason, and the caller lists them at the end.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{RagError, Result};

mod html;

/// Where a piece of text is in its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "unit", content = "n")]
pub enum Position {
    /// 1-based line of a text file (for CSV and JSONL, of the row or record).
    Line(u32),
    /// 1-based page of a PDF.
    Page(u32),
    /// 1-based element of a JSON array.
    Record(u32),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Page(n) => write!(f, "page {n}"),
            Position::Record(n) => write!(f, "record {n}"),
        }
    }
}

/// A stretch of a document that is chunked on its own: a Markdown or HTML section under one
/// heading, a PDF page, a record, a row, or a whole text file.
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    pub text: String,
    /// Where `text` starts. For `Line`, the chunker adds the lines before each chunk.
    pub position: Position,
    /// The headings above this section, outermost first.
    pub heading: Vec<String>,
}

/// The kinds of file Temper reads, chosen by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Text,
    Markdown,
    Html,
    Json,
    Jsonl,
    Csv,
    Code,
    Pdf,
}

impl Kind {
    pub fn of(path: &Path) -> Kind {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "md" | "markdown" | "mdx" => Kind::Markdown,
            "html" | "htm" | "xhtml" => Kind::Html,
            "json" => Kind::Json,
            "jsonl" | "ndjson" => Kind::Jsonl,
            "csv" => Kind::Csv,
            "pdf" => Kind::Pdf,
            "rs" | "py" | "js" | "ts" | "tsx" | "jsx" | "go" | "c" | "h" | "cc" | "cpp" | "hpp" | "java"
            | "kt" | "rb" | "php" | "cs" | "swift" | "scala" | "sh" | "bash" | "sql" | "lua" | "r" | "jl"
            | "hs" | "ml" | "ex" | "exs" | "toml" | "yaml" | "yml" | "css" => Kind::Code,
            _ => Kind::Text,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Markdown => "markdown",
            Kind::Html => "html",
            Kind::Json => "json",
            Kind::Jsonl => "jsonl",
            Kind::Csv => "csv",
            Kind::Code => "code",
            Kind::Pdf => "pdf",
        }
    }
}

/// How files are read.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Larger files are skipped.
    pub max_file_bytes: u64,
    /// For JSON and JSONL: the top-level fields whose values make the text of a record.
    /// Empty means every field.
    pub json_fields: Vec<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { max_file_bytes: 20 << 20, json_fields: Vec::new() }
    }
}

/// A file that was not used, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// A file read and split into sections.
#[derive(Clone, Debug)]
pub struct LoadedFile {
    pub kind: Kind,
    /// SHA-256 of the file's bytes, in hex: what incremental ingestion compares.
    pub hash: String,
    pub sections: Vec<Section>,
}

/// The files under `roots` that ingestion reads: folders are walked honouring `.gitignore`
/// (inside a git repository or not), `.ignore` and hidden files; `globs` (`*.md`, `!target/**`)
/// narrow the walk, and a file a glob names is taken even if ignored or hidden. A file named
/// directly is taken as it is. Symbolic links met inside a folder are not followed (no loops,
/// nothing from outside the folder) but listed as skipped. Returns the files, sorted, and the
/// paths that were skipped or could not be walked.
pub fn discover(roots: &[PathBuf], globs: &[String]) -> Result<(Vec<PathBuf>, Vec<Skipped>)> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for root in roots {
        let meta = std::fs::metadata(root)
            .map_err(|source| RagError::Io { context: format!("cannot read {}", root.display()), source })?;
        if meta.is_file() {
            files.push(root.clone());
            continue;
        }
        let mut overrides = ignore::overrides::OverrideBuilder::new(root);
        for glob in globs {
            overrides.add(glob).map_err(|e| RagError::invalid(format!("glob `{glob}`"), e.to_string()))?;
        }
        let overrides = overrides.build().map_err(|e| RagError::invalid("glob", e.to_string()))?;
        let walker = ignore::WalkBuilder::new(root).require_git(false).overrides(overrides).build();
        for entry in walker {
            match entry {
                Ok(entry) if entry.path_is_symlink() => skipped.push(Skipped {
                    path: entry.into_path(),
                    reason: "a symbolic link (links inside a folder are not followed; name the target to ingest it)"
                        .into(),
                }),
                Ok(entry) if entry.file_type().is_some_and(|t| t.is_file()) => files.push(entry.into_path()),
                Ok(_) => {}
                Err(err) => skipped.push(Skipped { path: root.clone(), reason: err.to_string() }),
            }
        }
    }
    files.sort();
    files.dedup();
    Ok((files, skipped))
}

/// Reads one file. `Err` is the reason to skip it.
pub fn load_file(path: &Path, options: &LoadOptions) -> std::result::Result<LoadedFile, String> {
    let size = std::fs::metadata(path).map_err(|e| format!("unreadable: {e}"))?.len();
    if size > options.max_file_bytes {
        return Err(too_large(size, options.max_file_bytes));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
    parse(Kind::of(path), &bytes, options)
}

/// Why a file of `size` bytes is skipped.
pub(crate) fn too_large(size: u64, limit: u64) -> String {
    format!("too large: {size} bytes (the limit is {limit})")
}

/// Splits the bytes of a file of `kind` into sections.
pub fn parse(kind: Kind, bytes: &[u8], options: &LoadOptions) -> std::result::Result<LoadedFile, String> {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    let sections = if kind == Kind::Pdf {
        pdf_pages(bytes)?
    } else {
        let text = utf8_text(bytes)?;
        match kind {
            Kind::Markdown => markdown_sections(text),
            Kind::Html => html::sections(text),
            Kind::Json => json_records(text, &options.json_fields)?,
            Kind::Jsonl => jsonl_records(text, &options.json_fields)?,
            Kind::Csv => csv_rows(text)?,
            Kind::Text | Kind::Code | Kind::Pdf => whole(text),
        }
    };
    Ok(LoadedFile { kind, hash, sections })
}

/// The text of a file that should be text, or why it is not.
fn utf8_text(bytes: &[u8]) -> std::result::Result<&str, String> {
    // Text files do not contain NUL; binary formats almost always do, early on.
    if bytes.iter().take(8192).any(|&b| b == 0) {
        return Err("binary (contains NUL bytes)".into());
    }
    let text =
        std::str::from_utf8(bytes).map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

fn whole(text: &str) -> Vec<Section> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    vec![Section { text: text.to_owned(), position: Position::Line(1), heading: Vec::new() }]
}

/// Splits at ATX headings (`#` … `######`) outside fenced code; each section starts with its
/// heading line and carries the path of headings above it.
fn markdown_sections(text: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut start_line = 1;
    let mut fence: Option<&str> = None;
    let flush = |sections: &mut Vec<Section>, current: &mut String, line: usize, path: &[(usize, String)]| {
        if !current.trim().is_empty() {
            sections.push(Section {
                text: std::mem::take(current),
                position: Position::Line(line as u32),
                heading: path.iter().map(|(_, h)| h.clone()).collect(),
            });
        }
        current.clear();
    };
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_start();
        if let Some(open) = fence {
            if trimmed.starts_with(open) {
                fence = None;
            }
        } else if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
        } else if let Some((level, title)) = atx_heading(line) {
            flush(&mut sections, &mut current, start_line, &path);
            path.retain(|(l, _)| *l < level);
            path.push((level, title));
            start_line = i + 1;
        }
        current.push_str(line);
    }
    flush(&mut sections, &mut current, start_line, &path);
    sections
}

/// `## Title ##` → (2, "Title"); at most three spaces of indent, as CommonMark says.
fn atx_heading(line: &str) -> Option<(usize, String)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let rest = &line[indent..];
    let level = rest.bytes().take_while(|&b| b == b'#').count();
    if indent > 3 || level == 0 || level > 6 {
        return None;
    }
    let after = &rest[level..];
    if !(after.is_empty() || after.starts_with([' ', '\t', '\n', '\r'])) {
        return None;
    }
    let title = after.trim().trim_end_matches('#').trim().to_owned();
    Some((level, title))
}

/// A record's text: `field: value` lines of the chosen fields (or of all of them).
fn record_text(value: &Value, fields: &[String]) -> String {
    let render = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match value {
        Value::Object(map) if fields.is_empty() => {
            map.iter().map(|(k, v)| format!("{k}: {}", render(v))).collect::<Vec<_>>().join("\n")
        }
        Value::Object(map) => fields
            .iter()
            .filter_map(|f| map.get(f).map(|v| format!("{f}: {}", render(v))))
            .collect::<Vec<_>>()
            .join("\n"),
        other if fields.is_empty() => render(other),
        _ => String::new(),
    }
}

fn records(
    values: impl Iterator<Item = (Position, Value)>,
    fields: &[String],
) -> std::result::Result<Vec<Section>, String> {
    let mut any = false;
    let sections: Vec<Section> = values
        .filter_map(|(position, value)| {
            any = true;
            let text = record_text(&value, fields);
            (!text.trim().is_empty()).then(|| Section { text, position, heading: Vec::new() })
        })
        .collect();
    if any && sections.is_empty() && !fields.is_empty() {
        return Err(format!("no record has any of the fields {}", fields.join(", ")));
    }
    Ok(sections)
}

fn json_records(text: &str, fields: &[String]) -> std::result::Result<Vec<Section>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    match value {
        Value::Array(items) => {
            records(items.into_iter().enumerate().map(|(i, v)| (Position::Record(i as u32 + 1), v)), fields)
        }
        other => records(std::iter::once((Position::Line(1), other)), fields),
    }
}

fn jsonl_records(text: &str, fields: &[String]) -> std::result::Result<Vec<Section>, String> {
    let mut values = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(line).map_err(|e| format!("line {}: invalid JSON: {e}", i + 1))?;
        values.push((Position::Line(i as u32 + 1), value));
    }
    records(values.into_iter(), fields)
}

/// One section per row: `column: value` lines, so a row reads on its own.
fn csv_rows(text: &str) -> std::result::Result<Vec<Section>, String> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| format!("invalid CSV: {e}"))?.clone();
    let mut sections = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| format!("invalid CSV: {e}"))?;
        let line = row.position().map_or(1, |p| p.line() as u32);
        let text = row
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(i, v)| match headers.get(i) {
                Some(h) if !h.is_empty() => format!("{h}: {v}"),
                _ => v.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        if !text.is_empty() {
            sections.push(Section { text, position: Position::Line(line), heading: Vec::new() });
        }
    }
    Ok(sections)
}

/// The text layer of each page. A PDF without one (scanned images) is skipped, not stored empty.
fn pdf_pages(bytes: &[u8]) -> std::result::Result<Vec<Section>, String> {
    let doc = lopdf::Document::load_mem(bytes).map_err(|e| format!("unreadable PDF: {e}"))?;
    let mut sections = Vec::new();
    for page in doc.get_pages().into_keys() {
        let text = doc.extract_text(&[page]).map_err(|e| format!("PDF page {page}: {e}"))?;
        if !text.trim().is_empty() {
            sections.push(Section { text, position: Position::Page(page), heading: Vec::new() });
        }
    }
    if sections.is_empty() {
        return Err("the PDF has no text layer (a scan?)".into());
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections(kind: Kind, text: &str) -> Vec<Section> {
        parse(kind, text.as_bytes(), &LoadOptions::default()).unwrap().sections
    }

    #[test]
    fn markdown_sections_keep_their_heading_path_and_line() {
        let md = "intro\n# Guide\ntext a\n## Install\n```\n# not a heading\n```\n### Linux ###\napt\n## Use\nrun\n";
        let s = sections(Kind::Markdown, md);
        let got: Vec<(Vec<String>, Position)> = s.iter().map(|s| (s.heading.clone(), s.position)).collect();
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                (h(&[]), Position::Line(1)),
                (h(&["Guide"]), Position::Line(2)),
                (h(&["Guide", "Install"]), Position::Line(4)),
                (h(&["Guide", "Install", "Linux"]), Position::Line(8)),
                (h(&["Guide", "Use"]), Position::Line(10)),
            ]
        );
        assert!(s[2].text.contains("# not a heading"), "a fenced line is not a heading");
        assert_eq!(atx_heading("#hashtag"), None);
        assert_eq!(atx_heading("    # code"), None);
    }

    /// Asserts the sections of `page`, each as (heading path, first line, text).
    fn assert_html(page: &str, expected: &[(&[&str], u32, &str)]) {
        let got: Vec<_> =
            sections(Kind::Html, page).into_iter().map(|s| (s.heading, s.position, s.text)).collect();
        let expected: Vec<_> = expected
            .iter()
            .map(|(path, line, text)| {
                (
                    path.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                    Position::Line(*line),
                    text.to_string(),
                )
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn html_gives_the_text_not_the_tags() {
        let page = "<html><head><title>T</title><style>p { color: red }</style>\n\
                    <script>var x = '<p>';</script></head>\n<body><!-- note -->\n\
                    <h1>Fish &amp; Chips</h1>\n<p>Cod&nbsp;is <b>white</b> &#8212; &#x41;.</p>\n\
                    <h2>Price</h2>\n<p>Two &lt;pounds&gt;</p></body></html>";
        assert_html(
            page,
            &[
                (&[], 1, "T \n\n\n"),
                (&["Fish & Chips"], 4, "Fish & Chips \nCod is white — A. \n"),
                (&["Fish & Chips", "Price"], 6, "Price \nTwo <pounds> "),
            ],
        );
    }

    #[test]
    fn html_of_a_real_page_keeps_lists_tables_and_lines() {
        let page = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Caf&eacute; guide &ndash; Oslo</title>
  <style>h1 > a { content: "</style-not>"; }</style>
  <script type="module">if (a < b && c > d) { document.write("<h2>fake</h2>"); } // </p></script>
</head>
<body>
<nav><ul><li><a href="/">Home</a><li><a href="/menu">Menu</a></ul></nav>
<!-- <h2>Commented out</h2> -->
<h1 class="title"
    id="top">Caf&eacute;s &amp; bakeries</h1>
<p>Open 7&ndash;17, closed on Mondays&hellip; prices in NOK &copy; 2024.
<p>Tom&#39;s &quot;pick&quot;: the <em>kanelbolle</em>.<br>Ask for it warm.
<h2>Menu
<ul>
  <li>Drinks
    <ul><li>Coffee</li><li>Tea &amp co</li></ul>
  <li>Pastry
</ul>
<table>
  <thead><tr><th>Item<th>Price</tr></thead>
  <tbody>
    <tr><td>Coffee</td><td>35</td></tr>
    <tr><td>Bun<td>42
  </tbody>
</table>
<template><h2>Hidden</h2><p>template text</p></template>
<noscript><p>Enable JavaScript</p></noscript>
<h3>Notes</h3>
<div>Unclosed <b>bold <i>and italic
</body>
"#;
        assert_html(
            page,
            &[
                (&[], 1, "\n\n\n  \n  Café guide – Oslo \n  \n  \n\n\nHome Menu \n\n"),
                (
                    &["Cafés & bakeries"],
                    12,
                    "\nCafés & bakeries \nOpen 7–17, closed on Mondays… prices in NOK © 2024.\n\
                     Tom's \"pick\": the kanelbolle. Ask for it warm.\n",
                ),
                (
                    &["Cafés & bakeries", "Menu"],
                    16,
                    "Menu\n\n  Drinks\n    Coffee Tea & co \n  Pastry\n\n\n  Item | Price \n  \n    \
                     Coffee | 35 \n    Bun | 42\n  \n\n\n\n",
                ),
                (&["Cafés & bakeries", "Menu", "Notes"], 31, "Notes \nUnclosed bold and italic\n\n"),
            ],
        );
    }

    #[test]
    fn malformed_html_ends_where_a_browser_ends_it() {
        // A `>` inside a quoted attribute, a bare `<`, an unknown entity, a stray end tag, a
        // heading left open, and a comment that never closes.
        let page = "<p title=\"a > b\">x &lt; y, a < b &bogus; &amp</p></div><h2>Open heading<p>Body\
                    <h3>Next</h3>text <!-- never closed <p>lost";
        assert_html(
            page,
            &[
                (&[], 1, "x < y, a < b &bogus; & "),
                (&["Open heading"], 1, "Open heading Body"),
                (&["Open heading", "Next"], 1, "Next text "),
            ],
        );
        // A script ends at its first end tag; one left open takes the rest of the file.
        let scripts =
            "before<script>if (a</script>b) {}\n</script>after <SCRIPT>x</script >end<style>\n</style";
        assert_html(scripts, &[(&[], 1, "beforeb) {}\nafter end\n")]);
        // Windows line ends count as one line each.
        assert_html("a\r\nb<h1>\r\nT</h1>\r\nc", &[(&[], 1, "a\nb"), (&["T"], 2, "\nT \nc")]);
    }

    #[test]
    fn json_and_jsonl_use_the_chosen_fields() {
        let options = LoadOptions { json_fields: vec!["title".into(), "body".into()], ..Default::default() };
        let jsonl =
            "{\"id\": 1, \"title\": \"A\", \"body\": \"first\"}\n\n{\"id\": 2, \"body\": \"second\"}\n";
        let s = parse(Kind::Jsonl, jsonl.as_bytes(), &options).unwrap().sections;
        assert_eq!(s[0].text, "title: A\nbody: first");
        assert_eq!((s[1].text.as_str(), s[1].position), ("body: second", Position::Line(3)));
        let json = r#"[{"title": "x", "n": 5}, {"n": 6}, "plain"]"#;
        let s = sections(Kind::Json, json);
        assert_eq!(s[0].text, "title: x\nn: 5", "fields in the order the record gives them");
        assert_eq!((s[2].text.as_str(), s[2].position), ("plain", Position::Record(3)));
        let none = LoadOptions { json_fields: vec!["missing".into()], ..Default::default() };
        let err = parse(Kind::Json, json.as_bytes(), &none).unwrap_err();
        assert!(err.contains("missing"), "{err}");
        let err = parse(Kind::Jsonl, b"{\"a\":1}\n{oops\n", &options).unwrap_err();
        assert!(err.starts_with("line 2: invalid JSON"), "{err}");
    }

    #[test]
    fn csv_rows_read_on_their_own() {
        let s = sections(Kind::Csv, "name,city\nAda,London\n\"Grace, R.\",\"New\nYork\"\n");
        assert_eq!(s[0].text, "name: Ada\ncity: London");
        assert_eq!(s[0].position, Position::Line(2));
        assert_eq!(s[1].text, "name: Grace, R.\ncity: New\nYork");
        assert_eq!(s[1].position, Position::Line(3));
    }

    #[test]
    fn unusable_bytes_give_reasons() {
        let opts = LoadOptions::default();
        assert_eq!(parse(Kind::Text, b"ab\0cd", &opts).unwrap_err(), "binary (contains NUL bytes)");
        assert_eq!(parse(Kind::Text, b"ok \xff", &opts).unwrap_err(), "invalid UTF-8 at byte 3");
        assert!(parse(Kind::Pdf, b"%PDF-1.5 garbage", &opts).unwrap_err().starts_with("unreadable PDF"));
        assert!(sections(Kind::Code, "  \n\n").is_empty());
        let code = sections(Kind::Code, "\u{feff}fn main() {}\n");
        assert_eq!(code[0].text, "fn main() {}\n", "the byte-order mark is dropped");
    }

    #[test]
    fn kinds_follow_the_extension() {
        let kind = |p: &str| Kind::of(Path::new(p));
        assert_eq!(kind("a/README.MD"), Kind::Markdown);
        assert_eq!(kind("x.rs"), Kind::Code);
        assert_eq!(kind("x.ndjson"), Kind::Jsonl);
        assert_eq!(kind("notes"), Kind::Text);
    }
}
