//! Moving a collection between stores without embedding it again: `export` writes its documents,
//! chunks, vectors and metadata as JSON lines, `import` reads them into any store.
//!
//! The file is a header line (what the collection is), one line per document, and a closing line
//! with the counts, so that a file cut short is told apart from a whole one. Vectors are written as
//! the shortest decimals that read back to the same `f32`s, so an imported collection searches
//! exactly like the exported one.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chunk::Chunk;
use crate::load::Position;
use crate::store::{NewDocument, StoredDocument, VectorStore};
use crate::{RagError, Result};

/// What the first line names the file as.
const FORMAT: &str = "temper-rag-collection";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    collection: String,
    embedder: String,
    dimensions: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentLine {
    path: String,
    hash: String,
    metadata: Value,
    chunks: Vec<ChunkLine>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunkLine {
    text: String,
    position: Position,
    heading: Vec<String>,
    vector: Vec<f32>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Footer {
    end: bool,
    documents: usize,
    chunks: usize,
}

/// What an export or an import moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub documents: usize,
    pub chunks: usize,
}

/// Writes `collection` of `store` to `out`.
pub fn export(store: &dyn VectorStore, collection: &str, out: &mut dyn Write) -> Result<Moved> {
    let info = store.collection(collection)?;
    let io = |e: std::io::Error| RagError::Io { context: "writing the export".into(), source: e };
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        collection: info.name,
        embedder: info.embedder,
        dimensions: info.dimensions,
    };
    write_line(out, &header).map_err(io)?;
    let mut moved = Moved::default();
    store.documents(collection, &mut |doc: StoredDocument| {
        moved.documents += 1;
        moved.chunks += doc.chunks.len();
        let chunks = doc
            .chunks
            .into_iter()
            .map(|(chunk, vector)| ChunkLine {
                text: chunk.text,
                position: chunk.position,
                heading: chunk.heading,
                vector,
            })
            .collect();
        write_line(out, &DocumentLine { path: doc.path, hash: doc.hash, metadata: doc.metadata, chunks })
            .map_err(io)
    })?;
    write_line(out, &Footer { end: true, documents: moved.documents, chunks: moved.chunks }).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(moved)
}

fn write_line(out: &mut dyn Write, value: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// Reads an export from `input` (named `source` in errors) into `store`, as `collection` (default:
/// the exported collection's name). Each document is stored whole or not at all; one already in
/// the collection is replaced. A file cut short is an error after the whole documents before the
/// cut are stored, so importing the whole file again completes the collection.
pub fn import(
    store: &mut dyn VectorStore,
    input: &mut dyn BufRead,
    source: &str,
    collection: Option<&str>,
) -> Result<(String, Moved)> {
    let mut lines = input.lines().enumerate();
    let bad =
        |line: usize, reason: String| RagError::invalid(format!("export {source}, line {line}"), reason);
    let (_, first) = lines.next().ok_or_else(|| bad(1, "the file is empty".into()))?;
    let first = first.map_err(|e| bad(1, e.to_string()))?;
    let header: Header =
        serde_json::from_str(&first).map_err(|e| bad(1, format!("not a Temper collection export ({e})")))?;
    if header.format != FORMAT {
        return Err(bad(1, format!("not a Temper collection export (format `{}`)", header.format)));
    }
    if header.version > VERSION {
        return Err(bad(
            1,
            format!("written by a newer Temper (version {}; this one reads {VERSION})", header.version),
        ));
    }
    let name = collection.unwrap_or(&header.collection).to_owned();
    store.ensure_collection(&name, &header.embedder, header.dimensions)?;
    let mut moved = Moved::default();
    for (index, line) in lines {
        let number = index + 1;
        let line = line.map_err(|e| bad(number, e.to_string()))?;
        let value: Value = serde_json::from_str(&line).map_err(|e| bad(number, format!("not JSON ({e})")))?;
        if value.get("end").is_some() {
            let footer: Footer = serde_json::from_value(value).map_err(|e| bad(number, e.to_string()))?;
            if (footer.documents, footer.chunks) != (moved.documents, moved.chunks) {
                return Err(bad(
                    number,
                    format!(
                        "the file says it holds {} documents and {} chunks, but {} and {} came before it",
                        footer.documents, footer.chunks, moved.documents, moved.chunks
                    ),
                ));
            }
            store.build_index(&name)?;
            return Ok((name, moved));
        }
        let doc: DocumentLine = serde_json::from_value(value).map_err(|e| bad(number, e.to_string()))?;
        let chunks: Vec<(Chunk, Vec<f32>)> = doc
            .chunks
            .into_iter()
            .map(|c| (Chunk { text: c.text, position: c.position, heading: c.heading }, c.vector))
            .collect();
        let document = NewDocument { path: &doc.path, hash: &doc.hash, metadata: &doc.metadata };
        store
            .put_document(&name, &document, &chunks)
            .map_err(|e| bad(number, format!("document {}: {e}", doc.path)))?;
        moved.documents += 1;
        moved.chunks += chunks.len();
    }
    Err(RagError::invalid(
        format!("export {source}"),
        format!(
            "it ends without its closing line: it was cut short. The {} whole documents before the cut are \
             in collection `{name}`; import the whole file again to complete it",
            moved.documents
        ),
    ))
}
