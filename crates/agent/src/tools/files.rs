//! `read_file` and `list_files`: text files under one directory the user names, and nothing
//! outside it.
//!
//! A path is relative to the root. Absolute paths and `..` are refused outright; any other
//! path is resolved through its symbolic links and refused when it lands outside the root.
//! (A link swapped between that check and the read could still be followed: the tools guard
//! against a model's paths, not against other programs writing under the root.)

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::num::NonZeroUsize;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::tool::{arguments, schema_of, Tool, ToolError};

/// The most bytes of a file `read_file` returns in one call.
const MAX_READ_BYTES: usize = 64 * 1024;
/// The most entries `list_files` returns in one call.
const MAX_ENTRIES: usize = 1_000;

/// Reads a text file under its root, by lines.
#[derive(Clone, Debug)]
pub struct ReadFile {
    root: PathBuf,
}

/// Lists a directory under its root, or the whole tree below it.
#[derive(Clone, Debug)]
pub struct ListFiles {
    root: PathBuf,
}

impl ReadFile {
    /// Reads files under `root`, which must be an existing directory.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        Ok(ReadFile { root: canonical_root(root.into())? })
    }
}

impl ListFiles {
    /// Lists files under `root`, which must be an existing directory.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        Ok(ListFiles { root: canonical_root(root.into())? })
    }
}

fn canonical_root(root: PathBuf) -> io::Result<PathBuf> {
    let canonical =
        root.canonicalize().map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", root.display())))?;
    if !canonical.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a directory", root.display()),
        ));
    }
    Ok(canonical)
}

/// `path` (relative to `root`) as a canonical path inside `root`, or why not.
fn resolve(root: &Path, path: &str) -> Result<PathBuf, ToolError> {
    let relative = Path::new(path);
    if relative.is_absolute() {
        return Err(ToolError::Refused(format!(
            "`{path}` is an absolute path; give a path relative to the root, like `src/main.rs`"
        )));
    }
    if relative.components().any(|c| c == Component::ParentDir) {
        return Err(ToolError::Refused(format!(
            "`{path}` goes up with `..`; only the root and below can be read"
        )));
    }
    let canonical = root.join(relative).canonicalize().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ToolError::Failed(format!("`{path}` does not exist")),
        _ => ToolError::Failed(format!("`{path}`: {e}")),
    })?;
    if !canonical.starts_with(root) {
        return Err(ToolError::Refused(format!(
            "`{path}` is a symbolic link (or goes through one) to outside the root"
        )));
    }
    Ok(canonical)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadArguments {
    /// The file's path, relative to the root, e.g. `README.md` or `src/lib.rs`.
    path: String,
    /// The first line to return, counting from 1. Default: 1.
    start_line: Option<NonZeroUsize>,
    /// The most lines to return. Default: as many as fit in 64 KiB.
    max_lines: Option<NonZeroUsize>,
}

#[async_trait]
impl Tool for ReadFile {
    fn name(&self) -> &str {
        "read_file"
    }

    fn description(&self) -> &str {
        "Reads a text file, by lines, at most 64 KiB a call. When the result says `truncated`, call \
         again with `start_line` set to its `next_start_line` to read on."
    }

    fn parameters(&self) -> Value {
        schema_of::<ReadArguments>()
    }

    async fn call(&self, value: Value) -> Result<Value, ToolError> {
        let ReadArguments { path, start_line, max_lines } = arguments(value)?;
        let root = self.root.clone();
        let start_line = start_line.map_or(1, NonZeroUsize::get);
        let max_lines = max_lines.map_or(usize::MAX, NonZeroUsize::get);
        tokio::task::spawn_blocking(move || read(&root, &path, start_line, max_lines))
            .await
            .map_err(|e| ToolError::Failed(format!("read_file stopped: {e}")))?
    }
}

fn read(root: &Path, path: &str, start_line: usize, max_lines: usize) -> Result<Value, ToolError> {
    let file = resolve(root, path)?;
    let failed = |e: io::Error| ToolError::Failed(format!("`{path}`: {e}"));
    let metadata = fs::metadata(&file).map_err(failed)?;
    if metadata.is_dir() {
        return Err(ToolError::Failed(format!("`{path}` is a directory; list it with list_files")));
    }
    // A FIFO or a device would block the read or never end.
    if !metadata.is_file() {
        return Err(ToolError::Failed(format!("`{path}` is not a regular file")));
    }
    let excerpt = read_lines(File::open(&file).map_err(failed)?, start_line, max_lines).map_err(failed)?;
    if excerpt.skipped < start_line - 1 {
        return Err(ToolError::Failed(format!(
            "`{path}` has {} lines; start_line {start_line} is past its end",
            excerpt.skipped
        )));
    }
    let content = match String::from_utf8(excerpt.content) {
        Ok(text) => text,
        // The cut of an over-long line may split a character.
        Err(e) if excerpt.line_cut && e.utf8_error().error_len().is_none() => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).map_err(|e| ToolError::Failed(format!("`{path}`: {e}")))?
        }
        Err(_) => {
            return Err(ToolError::Failed(format!(
                "`{path}` is not UTF-8 text (a binary file?); it cannot be read"
            )))
        }
    };
    let mut result = Map::new();
    result.insert("path".into(), json!(path));
    result.insert("start_line".into(), json!(start_line));
    result.insert("lines".into(), json!(excerpt.lines));
    result.insert("size".into(), json!(metadata.len()));
    result.insert("truncated".into(), json!(excerpt.more));
    if excerpt.more {
        result.insert("next_start_line".into(), json!(start_line + excerpt.lines));
    }
    if excerpt.line_cut {
        result.insert(
            "note".into(),
            json!(format!(
                "line {start_line} is longer than {MAX_READ_BYTES} bytes; only its start is shown"
            )),
        );
    }
    result.insert("content".into(), json!(content));
    Ok(Value::Object(result))
}

/// Lines of a file from a start, as many as fit in [`MAX_READ_BYTES`].
struct Excerpt {
    /// The lines before the start that the file has (fewer than asked when it ends first).
    skipped: usize,
    content: Vec<u8>,
    lines: usize,
    /// Whether the file goes on after `content`.
    more: bool,
    /// Whether `content` is the start of one line too long to return whole.
    line_cut: bool,
}

fn read_lines(file: File, start_line: usize, max_lines: usize) -> io::Result<Excerpt> {
    let mut reader = BufReader::new(file);
    let mut skipped = 0;
    while skipped + 1 < start_line {
        // Skipping holds no line in memory, however long.
        if reader.skip_until(b'\n')? == 0 {
            break;
        }
        skipped += 1;
    }
    let mut excerpt = Excerpt { skipped, content: Vec::new(), lines: 0, more: false, line_cut: false };
    while excerpt.lines < max_lines {
        let room = MAX_READ_BYTES - excerpt.content.len();
        let mut line = Vec::new();
        // One byte past the room tells a line that fits from one that does not.
        if (&mut reader).take(room as u64 + 1).read_until(b'\n', &mut line)? == 0 {
            return Ok(excerpt);
        }
        if line.len() > room {
            excerpt.more = true;
            if excerpt.lines == 0 {
                excerpt.content.extend_from_slice(&line[..room]);
                excerpt.lines = 1;
                excerpt.line_cut = true;
            }
            return Ok(excerpt);
        }
        excerpt.content.extend_from_slice(&line);
        excerpt.lines += 1;
    }
    excerpt.more = !reader.fill_buf()?.is_empty();
    Ok(excerpt)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListArguments {
    /// The directory to list, relative to the root, e.g. `src`. Default: the root itself.
    path: Option<String>,
    /// Also list everything inside its subdirectories. Default: false.
    #[serde(default)]
    recursive: bool,
}

#[async_trait]
impl Tool for ListFiles {
    fn name(&self) -> &str {
        "list_files"
    }

    fn description(&self) -> &str {
        "Lists the files and directories in a directory (the root by default), with their sizes in \
         bytes. Each entry's `path` can be given to read_file. Symbolic links are shown, not followed."
    }

    fn parameters(&self) -> Value {
        schema_of::<ListArguments>()
    }

    async fn call(&self, value: Value) -> Result<Value, ToolError> {
        let ListArguments { path, recursive } = arguments(value)?;
        let root = self.root.clone();
        let path = path.filter(|p| !p.trim().is_empty()).unwrap_or_else(|| ".".into());
        tokio::task::spawn_blocking(move || list(&root, &path, recursive))
            .await
            .map_err(|e| ToolError::Failed(format!("list_files stopped: {e}")))?
    }
}

fn list(root: &Path, path: &str, recursive: bool) -> Result<Value, ToolError> {
    let directory = resolve(root, path)?;
    if !directory.is_dir() {
        return Err(ToolError::Failed(format!("`{path}` is not a directory; read it with read_file")));
    }
    let mut entries = Vec::new();
    let mut truncated = false;
    // Depth first, by name: a directory's contents follow its entry.
    let mut walk = vec![children(root, &directory)?.into_iter()];
    while let Some(siblings) = walk.last_mut() {
        let Some(child) = siblings.next() else {
            walk.pop();
            continue;
        };
        if entries.len() == MAX_ENTRIES {
            truncated = true;
            break;
        }
        // The link itself, never its target: a link leads nowhere the walk goes.
        let metadata = fs::symlink_metadata(&child)
            .map_err(|e| ToolError::Failed(format!("`{}`: {e}", relative(root, &child))))?;
        let kind = if metadata.is_symlink() {
            "symlink"
        } else if metadata.is_dir() {
            "dir"
        } else if metadata.is_file() {
            "file"
        } else {
            "other"
        };
        let mut entry = json!({ "path": relative(root, &child), "kind": kind });
        if metadata.is_file() {
            entry["size"] = json!(metadata.len());
        }
        entries.push(entry);
        if recursive && metadata.is_dir() {
            walk.push(children(root, &child)?.into_iter());
        }
    }
    Ok(json!({ "path": path, "entries": entries, "truncated": truncated }))
}

/// The paths in `directory`, sorted.
fn children(root: &Path, directory: &Path) -> Result<Vec<PathBuf>, ToolError> {
    let mut paths = fs::read_dir(directory)
        .and_then(|read| read.map(|entry| entry.map(|e| e.path())).collect::<io::Result<Vec<_>>>())
        .map_err(|e| ToolError::Failed(format!("`{}`: {e}", relative(root, directory))))?;
    paths.sort();
    Ok(paths)
}

/// `path` relative to `root`, with `/` between its parts, for the model.
fn relative(root: &Path, path: &Path) -> String {
    let parts: Vec<_> = path.strip_prefix(root).unwrap_or(path).iter().map(|p| p.to_string_lossy()).collect();
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Tree {
        _outside: tempfile::TempDir,
        root: tempfile::TempDir,
    }

    /// A root with a few files, and links from it to a file and a directory outside it.
    fn tree() -> Tree {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.txt"), "the secret\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("notes.txt"), "one\ntwo\nthree\n").unwrap();
        fs::create_dir_all(root.path().join("src/deep")).unwrap();
        fs::write(root.path().join("src/lib.rs"), "fn main() {}").unwrap();
        fs::write(root.path().join("src/deep/a.txt"), "a").unwrap();
        symlink(outside.path().join("secret.txt"), root.path().join("secret-link")).unwrap();
        symlink(outside.path(), root.path().join("outside-dir")).unwrap();
        symlink("/etc", root.path().join("etc")).unwrap();
        symlink("notes.txt", root.path().join("inside-link")).unwrap();
        Tree { _outside: outside, root }
    }

    async fn read(tree: &Tree, arguments: Value) -> Result<Value, ToolError> {
        ReadFile::new(tree.root.path()).unwrap().call(arguments).await
    }

    #[tokio::test]
    async fn reads_a_file_under_the_root_by_lines() {
        let tree = tree();
        let whole = read(&tree, json!({"path": "notes.txt"})).await.unwrap();
        assert_eq!(whole["content"], "one\ntwo\nthree\n");
        assert_eq!(whole["lines"], 3);
        assert_eq!(whole["size"], 14);
        assert_eq!(whole["truncated"], false);
        assert!(whole.get("next_start_line").is_none());

        let middle =
            read(&tree, json!({"path": "notes.txt", "start_line": 2, "max_lines": 1})).await.unwrap();
        assert_eq!(middle["content"], "two\n");
        assert_eq!(middle["truncated"], true);
        assert_eq!(middle["next_start_line"], 3);

        let nested = read(&tree, json!({"path": "./src/lib.rs"})).await.unwrap();
        assert_eq!(nested["content"], "fn main() {}");
        let linked = read(&tree, json!({"path": "inside-link"})).await.unwrap();
        assert_eq!(linked["content"], "one\ntwo\nthree\n");

        let err = read(&tree, json!({"path": "notes.txt", "start_line": 9})).await.unwrap_err();
        assert_eq!(err, ToolError::Failed("`notes.txt` has 3 lines; start_line 9 is past its end".into()));
    }

    #[tokio::test]
    async fn paths_that_leave_the_root_are_refused() {
        let tree = tree();
        for path in
            ["../x", "src/../../x", "/etc/passwd", "secret-link", "outside-dir/secret.txt", "etc/passwd"]
        {
            let err = read(&tree, json!({ "path": path })).await.unwrap_err();
            assert!(
                matches!(&err, ToolError::Refused(m) if m.contains(&format!("`{path}`"))),
                "{path}: {err}"
            );
        }
        let list = ListFiles::new(tree.root.path()).unwrap();
        for path in ["..", "/", "outside-dir", "etc"] {
            let err = list.call(json!({ "path": path })).await.unwrap_err();
            assert!(
                matches!(&err, ToolError::Refused(m) if m.contains(&format!("`{path}`"))),
                "{path}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn missing_files_directories_and_binary_files_fail_clearly() {
        let tree = tree();
        let err = read(&tree, json!({"path": "nope.txt"})).await.unwrap_err();
        assert_eq!(err, ToolError::Failed("`nope.txt` does not exist".into()));
        let err = read(&tree, json!({"path": "src"})).await.unwrap_err();
        assert!(matches!(&err, ToolError::Failed(m) if m.contains("is a directory")), "{err}");
        fs::write(tree.root.path().join("image.bin"), [0x89, b'P', b'N', b'G', 0xff, 0xfe, b'\n']).unwrap();
        let err = read(&tree, json!({"path": "image.bin"})).await.unwrap_err();
        assert!(matches!(&err, ToolError::Failed(m) if m.contains("not UTF-8")), "{err}");
    }

    #[tokio::test]
    async fn a_large_file_is_returned_in_pieces_of_whole_lines() {
        let tree = tree();
        let line = format!("{}\n", "x".repeat(99));
        fs::write(tree.root.path().join("big.txt"), line.repeat(2_000)).unwrap();
        let first = read(&tree, json!({"path": "big.txt"})).await.unwrap();
        let fitting = MAX_READ_BYTES / 100;
        assert_eq!(first["lines"], fitting);
        assert_eq!(first["content"].as_str().unwrap().len(), fitting * 100);
        assert_eq!(first["truncated"], true);
        assert_eq!(first["next_start_line"], fitting + 1);
        assert_eq!(first["size"], 200_000);
        let last = read(&tree, json!({"path": "big.txt", "start_line": 2_000})).await.unwrap();
        assert_eq!(last["content"], line);
        assert_eq!(last["truncated"], false);

        // One line longer than the limit: its start, cut on a character, and the next line after.
        let long = format!("{}\nnext\n", "é".repeat(MAX_READ_BYTES));
        fs::write(tree.root.path().join("long.txt"), long).unwrap();
        let cut = read(&tree, json!({"path": "long.txt"})).await.unwrap();
        assert_eq!(cut["content"].as_str().unwrap(), "é".repeat(MAX_READ_BYTES / 2));
        assert_eq!(cut["next_start_line"], 2);
        assert!(cut["note"].as_str().unwrap().contains("line 1 is longer"), "{cut}");
    }

    #[tokio::test]
    async fn lists_a_directory_or_the_tree_without_following_links() {
        let tree = tree();
        let list = ListFiles::new(tree.root.path()).unwrap();
        let top = list.call(json!({})).await.unwrap();
        let paths: Vec<&str> =
            top["entries"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
        assert_eq!(paths, ["etc", "inside-link", "notes.txt", "outside-dir", "secret-link", "src"]);
        assert_eq!(top["entries"][2], json!({"path": "notes.txt", "kind": "file", "size": 14}));
        assert_eq!(top["entries"][3], json!({"path": "outside-dir", "kind": "symlink"}));
        assert_eq!(top["entries"][5], json!({"path": "src", "kind": "dir"}));
        assert_eq!(top["truncated"], false);

        let all = list.call(json!({"recursive": true})).await.unwrap();
        let paths: Vec<&str> =
            all["entries"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "etc",
                "inside-link",
                "notes.txt",
                "outside-dir",
                "secret-link",
                "src",
                "src/deep",
                "src/deep/a.txt",
                "src/lib.rs"
            ]
        );
        let sub = list.call(json!({"path": "src/deep"})).await.unwrap();
        assert_eq!(sub["entries"], json!([{"path": "src/deep/a.txt", "kind": "file", "size": 1}]));

        let err = list.call(json!({"path": "notes.txt"})).await.unwrap_err();
        assert!(matches!(&err, ToolError::Failed(m) if m.contains("not a directory")), "{err}");
    }

    #[tokio::test]
    async fn a_long_listing_is_capped() {
        let root = tempfile::tempdir().unwrap();
        for i in 0..MAX_ENTRIES + 5 {
            fs::write(root.path().join(format!("{i:04}.txt")), "").unwrap();
        }
        let listed = ListFiles::new(root.path()).unwrap().call(json!({})).await.unwrap();
        assert_eq!(listed["entries"].as_array().unwrap().len(), MAX_ENTRIES);
        assert_eq!(listed["truncated"], true);
    }

    #[test]
    fn the_root_must_be_an_existing_directory() {
        let root = tempfile::tempdir().unwrap();
        let err = ReadFile::new(root.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("missing"), "{err}");
        fs::write(root.path().join("file"), "").unwrap();
        let err = ListFiles::new(root.path().join("file")).unwrap_err();
        assert!(err.to_string().ends_with("file: not a directory"), "{err}");
    }
}
