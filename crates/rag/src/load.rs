//! Loaders: files and folders in, sections of plain text out, each with where it came from.
//! A file that cannot be used is not an error of the whole run: it comes back as a
//! [`Skipped`] with the reason, and the caller lists them at the end.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{RagError, Result};

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
            Kind::Html => html_sections(text),
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

/// The text of HTML without its tags, script, style or comments, split at `<h1>`…`<h6>`.
/// Every newline of the source is kept (tags and skipped content are replaced by their
/// newlines alone), so a chunk's line number is its line in the HTML file.
fn html_sections(html: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut start_line = 1u32;
    let mut line = 1u32;
    let mut heading: Option<(usize, String)> = None;
    let mut rest = html;
    let newlines = |s: &str| s.bytes().filter(|&b| b == b'\n').count();
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            push_html_text(rest, &mut current, &mut heading);
            break;
        };
        push_html_text(&rest[..lt], &mut current, &mut heading);
        line += newlines(&rest[..lt]) as u32;
        rest = &rest[lt..];
        // The markup to skip: a comment, a script/style element with its content, or a tag.
        let lower: String = rest.chars().take(12).collect::<String>().to_ascii_lowercase();
        let end = if rest.starts_with("<!--") {
            rest.find("-->").map_or(rest.len(), |e| e + 3)
        } else if let Some(name) = ["script", "style", "noscript", "template"].into_iter().find(|n| {
            lower.starts_with(&format!("<{n}"))
                && !lower[n.len() + 1..].starts_with(|c: char| c.is_alphanumeric())
        }) {
            let close = format!("</{name}");
            rest.to_ascii_lowercase()
                .find(&close)
                .map_or(rest.len(), |e| e + rest[e..].find('>').map_or(rest.len() - e, |g| g + 1))
        } else {
            rest.find('>').map_or(rest.len(), |e| e + 1)
        };
        let markup = &rest[..end];
        let name: String = markup
            .trim_start_matches('<')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '/')
            .collect::<String>()
            .to_ascii_lowercase();
        let level = match name.as_bytes() {
            [b'h', d @ b'1'..=b'6'] => Some((d - b'0') as usize),
            _ => None,
        };
        match (level, name.strip_prefix('/')) {
            (Some(level), _) => {
                // A heading opens a new section.
                if !current.trim().is_empty() {
                    sections.push(Section {
                        text: std::mem::take(&mut current),
                        position: Position::Line(start_line),
                        heading: path.iter().map(|(_, h)| h.clone()).collect(),
                    });
                }
                current.clear();
                start_line = line;
                heading = Some((level, String::new()));
            }
            (None, Some(closed)) if closed.len() == 2 && closed.starts_with('h') && heading.is_some() => {
                if let Some((level, title)) = heading.take() {
                    path.retain(|(l, _)| *l < level);
                    path.push((level, title.split_whitespace().collect::<Vec<_>>().join(" ")));
                }
            }
            _ => {}
        }
        // Tags separate words; their newlines stay so lines keep their numbers.
        let breaks = newlines(markup);
        if breaks == 0 {
            current.push(' ');
        }
        current.extend(std::iter::repeat_n('\n', breaks));
        line += breaks as u32;
        rest = &rest[end..];
    }
    if !current.trim().is_empty() {
        sections.push(Section {
            text: current,
            position: Position::Line(start_line),
            heading: path.iter().map(|(_, h)| h.clone()).collect(),
        });
    }
    sections
}

fn push_html_text(raw: &str, current: &mut String, heading: &mut Option<(usize, String)>) {
    let text = decode_entities(raw);
    if let Some((_, title)) = heading {
        title.push_str(&text);
    }
    current.push_str(&text);
}

/// `&amp;`, `&lt;`, `&#39;`, `&#x263A;` and the other common named entities.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let entity = rest[1..].find(';').filter(|&e| e <= 10).map(|e| &rest[1..e + 1]);
        let decoded = entity.and_then(|name| match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            "mdash" => Some('—'),
            "ndash" => Some('–'),
            "hellip" => Some('…'),
            "copy" => Some('©'),
            _ => {
                let code = name.strip_prefix('#')?;
                let n = match code.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => code.parse().ok()?,
                };
                char::from_u32(n)
            }
        });
        match (entity, decoded) {
            (Some(name), Some(c)) => {
                out.push(c);
                rest = &rest[name.len() + 2..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
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

    #[test]
    fn html_gives_the_text_not_the_tags() {
        let html = "<html><head><title>T</title><style>p { color: red }</style>\n\
                    <script>var x = '<p>';</script></head>\n<body><!-- note -->\n\
                    <h1>Fish &amp; Chips</h1>\n<p>Cod&nbsp;is <b>white</b> &#8212; &#x41;.</p>\n\
                    <h2>Price</h2>\n<p>Two &lt;pounds&gt;</p></body></html>";
        let s = sections(Kind::Html, html);
        let all: String = s.iter().map(|s| s.text.as_str()).collect();
        for gone in ["<", "color", "var x", "note"] {
            assert!(!all.contains(gone) || gone == "<" && all.contains("<pounds>"), "`{gone}` in {all:?}");
        }
        assert!(all.contains("Cod is  white  — A."), "{all:?}");
        assert_eq!(s[1].heading, vec!["Fish & Chips"]);
        assert_eq!(s[1].position, Position::Line(4));
        assert_eq!(s[2].heading, vec!["Fish & Chips", "Price"]);
        assert_eq!(s[2].position, Position::Line(6));
        assert!(s[2].text.contains("Two <pounds>"));
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
        assert_eq!(s[0].text, "n: 5\ntitle: x");
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
