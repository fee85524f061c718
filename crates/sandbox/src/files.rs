//! Which files of the scratch directory a run wrote: a snapshot before, compared after.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// At most this many files are listed (a loop writing thousands is reported by its first ones).
const MAX_LISTED: usize = 100;

/// A file a run created or changed, relative to the scratch directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileWritten {
    pub path: String,
    pub bytes: u64,
}

pub(crate) type Snapshot = HashMap<PathBuf, (u64, Option<SystemTime>)>;

pub(crate) fn snapshot(root: &Path) -> Snapshot {
    let mut files = Snapshot::new();
    walk(root, root, &mut files);
    files
}

pub(crate) fn written(root: &Path, before: &Snapshot) -> Vec<FileWritten> {
    let mut changed: Vec<FileWritten> = snapshot(root)
        .into_iter()
        .filter(|(path, stat)| before.get(path) != Some(stat))
        .map(|(path, (bytes, _))| FileWritten { path: path.to_string_lossy().into_owned(), bytes })
        .collect();
    changed.sort_by(|a, b| a.path.cmp(&b.path));
    changed.truncate(MAX_LISTED);
    changed
}

/// Regular files under `dir`; symbolic links are not followed (the guest may have made them).
fn walk(root: &Path, dir: &Path, files: &mut Snapshot) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else { continue };
        if meta.is_dir() {
            walk(root, &entry.path(), files);
        } else if meta.is_file() {
            let relative = entry.path().strip_prefix(root).map(Path::to_owned).unwrap_or_default();
            files.insert(relative, (meta.len(), meta.modified().ok()));
        }
    }
}
