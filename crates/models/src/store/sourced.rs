//! Models named by their source in the store: found in place (the Hugging Face cache, Ollama's
//! store), or downloaded into `<root>/models/<hf--…|url--…>/` with a `source.json` that says
//! where they came from.

use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use temper_core::GenerationParams;

use super::{dir_size, install_staging, ModelStore};
use crate::error::StoreError;
use crate::progress::{PullProgress, Stage};
use crate::sources::download::{self, Fetch};
use crate::sources::hf::{self, HfSpec, RepoFile};
use crate::sources::ollama;
use crate::sources::url::ModelUrl;
use crate::sources::{check_gguf, Origin, Source};

/// The record of where a downloaded model came from, beside its file.
const ORIGIN_FILE: &str = "source.json";
/// Partial downloads, kept between pulls so that the next one continues them.
const DOWNLOADS_DIR: &str = "downloads";
const HF_CACHE: &str = "the Hugging Face cache";
const OLLAMA_STORE: &str = "Ollama's store";

/// What a name resolves to: the file to load and the defaults its source gives it.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub path: PathBuf,
    /// Parameters under the request's own (and a profile's): Ollama's params layer.
    pub defaults: GenerationParams,
    /// A chat template (Jinja) to use instead of the GGUF's: Ollama's, when the GGUF has none.
    pub chat_template: Option<String>,
}

/// A model downloaded into the store from the hub or a URL.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub origin: Origin,
    /// Its directory in the store.
    pub dir: PathBuf,
    /// The GGUF file.
    pub path: PathBuf,
    pub size_on_disk: u64,
}

/// Where a model named by its source is on this machine.
#[derive(Debug, Clone)]
pub enum Located {
    /// Downloaded into the store.
    Stored(Downloaded),
    /// Found where another program keeps it, used in place.
    InPlace { path: PathBuf, place: &'static str, defaults: GenerationParams, chat_template: Option<String> },
}

impl Located {
    pub fn path(&self) -> &Path {
        match self {
            Located::Stored(downloaded) => &downloaded.path,
            Located::InPlace { path, .. } => path,
        }
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Located::Stored(Downloaded { origin, dir, path, .. }) => {
                writeln!(f, "{}", origin.name)?;
                writeln!(f, "installed: {}", path.display())?;
                if let Some(repo) = &origin.repo {
                    writeln!(f, "repository: {repo}")?;
                }
                if let Some(file) = &origin.repo_file {
                    writeln!(f, "file: {file}")?;
                }
                if let Some(revision) = &origin.revision {
                    let commit = origin.commit.as_deref().unwrap_or("unknown");
                    writeln!(f, "revision: {revision} (commit {commit})")?;
                }
                writeln!(f, "url: {}", origin.url)?;
                writeln!(f, "size: {} bytes, sha256 {}", origin.size, origin.sha256)?;
                write!(f, "record: {}", dir.join(ORIGIN_FILE).display())
            }
            Located::InPlace { path, place, defaults, chat_template } => {
                writeln!(f, "in {place}: {} (used in place; Temper never removes it)", path.display())?;
                if let Ok(meta) = fs::metadata(path) {
                    writeln!(f, "size: {} bytes", meta.len())?;
                }
                if chat_template.is_some() {
                    writeln!(f, "chat template: Ollama's template layer (the GGUF has none)")?;
                }
                match serde_json::to_string(defaults) {
                    Ok(json) if json != "{}" => write!(f, "default parameters: {json}"),
                    _ => write!(f, "default parameters: none"),
                }
            }
        }
    }
}

impl ModelStore {
    /// Whether `name` names a model by its source (`hf:`, `ollama:`, a URL) rather than the
    /// catalog or a path.
    pub fn is_source_name(name: &str) -> bool {
        Source::parse(name).is_some()
    }

    /// What the engine loads for `name`, with the defaults its source gives it. A catalog name
    /// or a path resolves as [`ModelStore::resolve`] says, with no defaults; a source's name:
    ///
    /// - `hf:OWNER/REPO[:FILE_OR_QUANT]`: a copy downloaded earlier, else the file in the
    ///   Hugging Face cache (in place), else downloaded now from the hub;
    /// - `ollama:NAME[:TAG]`: the model's GGUF blob in Ollama's store (in place), with its
    ///   params layer as defaults;
    /// - `https://…`: a copy downloaded earlier, else downloaded now.
    pub fn resolve_model(
        &self,
        name: &str,
        progress: &dyn PullProgress,
    ) -> Result<ResolvedModel, StoreError> {
        match Source::parse(name) {
            Some(source) => self.resolve_source(name, source?, progress),
            None => Ok(ResolvedModel {
                path: self.resolve(name, progress)?,
                defaults: GenerationParams::default(),
                chat_template: None,
            }),
        }
    }

    pub(super) fn resolve_source(
        &self,
        name: &str,
        source: Source,
        progress: &dyn PullProgress,
    ) -> Result<ResolvedModel, StoreError> {
        let found = match &source {
            Source::Ollama(spec) => Some(self.find_in_ollama(name, spec)?),
            _ => self.locate(&source),
        };
        if let Some(located) = found {
            return Ok(match located {
                Located::Stored(downloaded) => ResolvedModel {
                    path: downloaded.path,
                    defaults: GenerationParams::default(),
                    chat_template: None,
                },
                Located::InPlace { path, place, defaults, chat_template } => {
                    progress.stage(Stage::InPlace { model: name, path: &path, place });
                    ResolvedModel { path, defaults, chat_template }
                }
            });
        }
        progress.stage(Stage::FirstUse { model: name });
        let path = self.download(name, &source, None, progress)?;
        Ok(ResolvedModel { path, defaults: GenerationParams::default(), chat_template: None })
    }

    /// Where `name` (a source's name) is on this machine, without using the network; `None`
    /// when it is not (or is not a source's name).
    pub fn locate_source(&self, name: &str) -> Result<Option<Located>, StoreError> {
        match Source::parse(name) {
            None => Ok(None),
            Some(source) => match source? {
                Source::Ollama(spec) => match self.find_in_ollama(name, &spec) {
                    Ok(found) => Ok(Some(found)),
                    Err(StoreError::NotInOllama { .. }) => Ok(None),
                    Err(other) => Err(other),
                },
                source => Ok(self.locate(&source)),
            },
        }
    }

    /// A downloaded copy of `source`, else (for the hub) its file in the Hugging Face cache.
    fn locate(&self, source: &Source) -> Option<Located> {
        match source {
            Source::Hf(spec) => self.stored_hf(spec).map(Located::Stored).or_else(|| {
                let path = hf::cached(self.sources.hf_cache.as_deref()?, spec)?;
                Some(Located::InPlace {
                    path,
                    place: HF_CACHE,
                    defaults: GenerationParams::default(),
                    chat_template: None,
                })
            }),
            Source::Url(url) => {
                let url = ModelUrl::parse(url, true).ok()?;
                self.downloaded().into_iter().find(|d| d.origin.name == url.url.as_str()).map(Located::Stored)
            }
            Source::Ollama(_) => None,
        }
    }

    /// The downloaded file of `spec`'s repository that `spec` picks among the downloaded ones.
    fn stored_hf(&self, spec: &HfSpec) -> Option<Downloaded> {
        let repo = spec.repo_id();
        let mine: Vec<Downloaded> = self
            .downloaded()
            .into_iter()
            .filter(|d| d.origin.repo.as_deref() == Some(repo.as_str()))
            .collect();
        let files: Vec<RepoFile> = mine
            .iter()
            .map(|d| RepoFile {
                path: d.origin.repo_file.clone().unwrap_or_else(|| d.origin.file.clone()),
                size: Some(d.origin.size),
                sha256: Some(d.origin.sha256.clone()),
            })
            .collect();
        let (file, _why) = hf::pick(&files, spec.want.as_deref()).ok()?;
        let at = files.iter().position(|f| f == file)?;
        mine.into_iter().nth(at)
    }

    fn find_in_ollama(&self, name: &str, spec: &ollama::OllamaSpec) -> Result<Located, StoreError> {
        let models = self
            .sources
            .ollama_models
            .as_deref()
            .ok_or_else(|| StoreError::NoOllamaStore { model: name.to_owned() })?;
        let found = ollama::find(models, spec)?;
        Ok(Located::InPlace {
            path: found.gguf,
            place: OLLAMA_STORE,
            defaults: found.defaults,
            chat_template: found.chat_template,
        })
    }

    /// Every model downloaded into the store from the hub or a URL, by name.
    pub fn downloaded(&self) -> Vec<Downloaded> {
        let Ok(listing) = fs::read_dir(self.models_dir()) else { return Vec::new() };
        let mut found: Vec<Downloaded> = listing
            .flatten()
            .filter_map(|item| {
                let dir = item.path();
                let text = fs::read_to_string(dir.join(ORIGIN_FILE)).ok()?;
                let origin: Origin = serde_json::from_str(&text).ok()?;
                let path = dir.join(&origin.file);
                // Installed atomically, so a file missing or cut short was damaged by hand: it is
                // not installed, and the next pull downloads it again.
                let intact = fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == origin.size);
                intact.then(|| Downloaded { size_on_disk: dir_size(&dir), origin, dir, path })
            })
            .collect();
        found.sort_by(|a, b| a.origin.name.cmp(&b.origin.name));
        found
    }

    /// Downloads `name` (a source's name) into the store, again if it is there already,
    /// checking it against `sha256` when given. An Ollama model is never copied: its path is
    /// returned as it is.
    pub fn pull_source(
        &self,
        name: &str,
        sha256: Option<&str>,
        progress: &dyn PullProgress,
    ) -> Result<PathBuf, StoreError> {
        let source = Source::parse(name).unwrap_or_else(|| {
            Err(StoreError::BadSourceName {
                name: name.to_owned(),
                reason: "it is not hf:OWNER/REPO[:FILE_OR_QUANT], ollama:NAME[:TAG] or a URL".to_owned(),
            })
        })?;
        if let Source::Ollama(spec) = &source {
            let found = self.find_in_ollama(name, spec)?;
            progress.stage(Stage::InPlace { model: name, path: found.path(), place: OLLAMA_STORE });
            return Ok(found.path().to_owned());
        }
        self.download(name, &source, sha256, progress)
    }

    fn download(
        &self,
        name: &str,
        source: &Source,
        sha256: Option<&str>,
        progress: &dyn PullProgress,
    ) -> Result<PathBuf, StoreError> {
        let client = download::client()?;
        let result = match source {
            Source::Hf(spec) => self.download_hf(&client, name, spec, sha256, progress),
            Source::Url(url) => self.download_url(&client, url, sha256, progress),
            Source::Ollama(_) => unreachable!("Ollama's models are used in place"),
        };
        match &result {
            Ok(path) => progress.stage(Stage::Installed { model: name, path }),
            Err(_) => progress.stage(Stage::Failed),
        }
        result
    }

    fn download_hf(
        &self,
        client: &reqwest::blocking::Client,
        name: &str,
        spec: &HfSpec,
        sha256: Option<&str>,
        progress: &dyn PullProgress,
    ) -> Result<PathBuf, StoreError> {
        let listing = hf::list(client, &self.sources, spec)?;
        let (file, why) =
            hf::pick(&listing.files, spec.want.as_deref()).map_err(|e| hf::no_pick_error(spec, e))?;
        progress.stage(Stage::Chose { model: name, file: &file.path, why: &why });
        // The commit listed, so that the bytes are those whose hash was listed.
        let revision = listing.commit.as_deref().unwrap_or(hf::REVISION);
        let url = hf::file_url(&self.sources, spec, revision, &file.path);
        let stem = file.path.strip_suffix(".gguf").unwrap_or(&file.path).replace('/', "--");
        let dir_name = format!("hf--{}--{}--{stem}", spec.owner, spec.repo);
        let file_name = file.path.rsplit('/').next().unwrap_or(&file.path).to_owned();
        let what = format!("hf:{}:{}", spec.repo_id(), file.path);
        // The hub lists a gated repository to anyone, and refuses its files without access.
        let terms = hf::repo_page(&self.sources, spec);
        let when_denied = match self.sources.hf_token {
            Some(_) => format!(
                "the repository is gated or private and HF_TOKEN has no access: accept its terms at {terms}"
            ),
            None => format!(
                "the repository is gated or private: set HF_TOKEN to a token of an account that has \
                 accepted its terms at {terms}"
            ),
        };
        let fetch = Fetch {
            what: &what,
            url: &url,
            token: self.sources.hf_token.as_ref(),
            size: file.size,
            sha256: sha256.or(file.sha256.as_deref()),
            when_denied: &when_denied,
        };
        let origin = Origin {
            name: what.clone(),
            file: file_name,
            size: 0,
            sha256: String::new(),
            url: url.clone(),
            repo: Some(spec.repo_id()),
            repo_file: Some(file.path.clone()),
            revision: Some(hf::REVISION.to_owned()),
            commit: listing.commit.clone(),
        };
        self.install_download(client, &dir_name, &fetch, origin, progress)
    }

    fn download_url(
        &self,
        client: &reqwest::blocking::Client,
        url: &str,
        sha256: Option<&str>,
        progress: &dyn PullProgress,
    ) -> Result<PathBuf, StoreError> {
        let url = ModelUrl::parse(url, sha256.is_some())?;
        let fetch = Fetch {
            what: url.url.as_str(),
            url: url.url.as_str(),
            token: None,
            size: None,
            sha256,
            when_denied: "the server refused access to the file",
        };
        let origin = Origin {
            name: url.url.to_string(),
            file: url.file_name(),
            size: 0,
            sha256: String::new(),
            url: url.url.to_string(),
            repo: None,
            repo_file: None,
            revision: None,
            commit: None,
        };
        self.install_download(client, &url.dir_name(), &fetch, origin, progress)
    }

    /// Downloads `fetch` (continuing a partial download) and installs it as model directory
    /// `dir_name` with its `origin` record, replacing a copy only once the new one is checked.
    fn install_download(
        &self,
        client: &reqwest::blocking::Client,
        dir_name: &str,
        fetch: &Fetch<'_>,
        mut origin: Origin,
        progress: &dyn PullProgress,
    ) -> Result<PathBuf, StoreError> {
        let lock = self.lock(dir_name, progress)?;
        // Whoever held the lock pulled this very file; once is enough.
        if lock.waited {
            if let Some(done) = self.downloaded().into_iter().find(|d| d.dir.ends_with(dir_name)) {
                return Ok(done.path);
            }
        }
        let partial = self.root.join(DOWNLOADS_DIR).join(format!("{dir_name}.part"));
        let fetched = download::fetch(client, fetch, &partial, self.sources.retry_delay, progress)?;
        origin.size = fetched.size;
        origin.sha256 = fetched.sha256;

        let work = self.temp_dir(dir_name)?;
        let staging = work.path().join("model");
        fs::create_dir(&staging).map_err(|e| StoreError::io("create", &staging, e))?;
        let file = staging.join(&origin.file);
        fs::rename(&partial, &file).map_err(|e| StoreError::io("move into place", &partial, e))?;
        let record = staging.join(ORIGIN_FILE);
        let json = serde_json::to_string_pretty(&origin).expect("an origin is plain data");
        let mut out = File::create(&record).map_err(|e| StoreError::io("create", &record, e))?;
        out.write_all(json.as_bytes())
            .and_then(|()| out.sync_all())
            .map_err(|e| StoreError::io("write", &record, e))?;

        let dest = self.models_dir().join(dir_name);
        install_staging(&work, &staging, &dest)?;
        Ok(dest.join(&origin.file))
    }

    /// Checks a downloaded model's file against the size and SHA-256 recorded when it was
    /// downloaded (reading all of it).
    pub(super) fn verify_source(&self, name: &str) -> Result<PathBuf, StoreError> {
        match self.locate_source(name)? {
            Some(Located::Stored(downloaded)) => {
                let found = download::hash_file(&downloaded.path)?;
                let origin = &downloaded.origin;
                if found.size != origin.size || !found.sha256.eq_ignore_ascii_case(&origin.sha256) {
                    return Err(StoreError::Damaged {
                        name: name.to_owned(),
                        reason: format!(
                            "{} is {} bytes with SHA-256 {}, where {} bytes with {} were downloaded",
                            downloaded.path.display(),
                            found.size,
                            found.sha256,
                            origin.size,
                            origin.sha256
                        ),
                    });
                }
                Ok(downloaded.path)
            }
            Some(Located::InPlace { path, .. }) => check_gguf(&path).map(|()| path),
            None => Err(StoreError::NotInstalled { name: name.to_owned() }),
        }
    }

    /// Removes a downloaded model; one used in place is refused, saying where it stays.
    pub(super) fn remove_source(&self, name: &str) -> Result<(), StoreError> {
        match self.locate_source(name)? {
            Some(Located::Stored(downloaded)) => {
                let dir_name =
                    downloaded.dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
                self.remove_dir(&dir_name)
            }
            Some(Located::InPlace { path, place, .. }) => {
                Err(StoreError::OnlyReferenced { name: name.to_owned(), path, place })
            }
            None => Err(StoreError::NotInstalled { name: name.to_owned() }),
        }
    }
}
