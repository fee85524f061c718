//! From a name to a model: a profile of `temper.toml` (with its fallback chain), a catalog name
//! (pulled on first use) or a path. The CLI, the server and every library above them resolve
//! models here, so a name means the same thing everywhere.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use temper_core::{error_chain, ChatModel, EmbeddingModel, GenerationParams, TokenCounter};
use temper_embed::{EmbedOptions, Embedder};
use temper_engine::gguf::Gguf;
use temper_engine::tokenizer::Tokenizer;
use temper_engine::{LoadOptions, LocalModel};
use temper_providers::{HttpEmbedder, HttpModel, ProviderConfig, ProviderError, WarningSink};

use crate::cost::CallLog;
use crate::{find, ModelKind, DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL};
use crate::{
    Fallback, Metered, ModelStore, Profile, ProfileError, Profiles, PullProgress, ResolvedModel, StoreError,
};

/// Why a name could not become a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// Neither a catalog model, a file, nor a profile.
    #[error("unknown model `{name}`; the catalog has: {catalog} (a path to a GGUF file, hf:OWNER/REPO[:QUANT], ollama:NAME[:TAG] or an https:// URL works too){}", profiles_hint(.profiles_file, .profiles))]
    UnknownModel { name: String, catalog: String, profiles_file: Option<PathBuf>, profiles: Vec<String> },

    /// The store could not find or obtain the model.
    #[error(transparent)]
    Store(StoreError),

    /// `temper.toml` is malformed, or a profile cannot be used.
    #[error(transparent)]
    Profile(#[from] ProfileError),

    /// A remote profile's backend could not be set up.
    #[error("profile `{name}`")]
    Backend {
        name: String,
        #[source]
        source: Box<ProviderError>,
    },

    /// A profile whose model could not be loaded (the source says why).
    #[error("profile `{name}`")]
    InProfile {
        name: String,
        #[source]
        source: Box<ResolveError>,
    },

    /// No model of a profile's fallback chain could be loaded.
    #[error("profile `{name}`: no model of its chain could be loaded: {}", .failures.join("; "))]
    ChainFailed { name: String, failures: Vec<String> },

    /// A catalog model used for what it is not: an embedder as a chat model, or the reverse.
    #[error("`{name}` is {is}; {wanted}")]
    WrongKind { name: String, is: String, wanted: String },

    /// A chat model given as a folder (a chat model is a GGUF file).
    #[error("{} is a folder; a chat model is a GGUF file (a folder holds an embedding model)", path.display())]
    FolderAsChatModel { path: PathBuf },

    /// An embedding model given as a file (an embedding model is a folder).
    #[error(
        "{} is a file; an embedding model is a folder holding config.json, tokenizer.json and model.safetensors",
        path.display()
    )]
    FileAsEmbedder { path: PathBuf },

    /// A folder given as an embedding model that is not one (a typo, or the folder above it).
    #[error(
        "{} holds no config.json; an embedding model is a folder holding config.json, tokenizer.json and \
         model.safetensors",
        path.display()
    )]
    FolderWithoutEmbedder { path: PathBuf },

    /// The model file was found but the engine cannot load it.
    #[error("cannot load model `{name}`")]
    Load {
        name: String,
        #[source]
        source: temper_core::Error,
    },

    /// The embedder's directory was found but cannot be loaded.
    #[error("cannot load embedding model `{name}`")]
    LoadEmbedder {
        name: String,
        #[source]
        source: temper_embed::EmbedError,
    },

    /// A caller that looks inside the local engine (`what` says who and why), given a remote
    /// profile.
    #[error("{what}, and `{name}` is a remote profile; pass a local model")]
    NotLocal { name: String, what: String },

    #[error("cannot find the working directory")]
    WorkingDirectory(#[source] std::io::Error),
}

fn profiles_hint(file: &Option<PathBuf>, names: &[String]) -> String {
    match file {
        Some(file) => format!("; or a profile of {}: {}", file.display(), names.join(", ")),
        None => String::new(),
    }
}

impl ResolveError {
    /// True when the name itself is wrong (an HTTP server answers 404), not the model behind it.
    pub fn is_unknown_model(&self) -> bool {
        matches!(
            self,
            ResolveError::UnknownModel { .. }
                | ResolveError::Store(
                    StoreError::UnknownModel { .. }
                        | StoreError::NoSuchFile { .. }
                        | StoreError::BadSourceName { .. }
                        | StoreError::RepoNotFound { .. }
                        | StoreError::NoSuchRepoFile { .. }
                        | StoreError::NotInOllama { .. }
                )
        )
    }
}

/// A loaded chat model: what answers (metered, behind its fallback chain), and the local engine
/// behind the chain's first model when that runs locally (for its tokenizer, template and
/// logits).
#[derive(Clone)]
pub struct Loaded {
    pub model: Arc<dyn ChatModel>,
    pub local: Option<Arc<LocalModel>>,
}

/// Where a name points: a profile's remote endpoint, or a local model to resolve in the store
/// (a catalog name or path: the profile's `model`, or the name itself).
pub enum Target<'a> {
    Remote(Box<ProviderConfig>),
    Local(&'a str),
}

/// Resolves names against one store and one set of profiles.
#[derive(Clone)]
pub struct Resolver {
    store: ModelStore,
    profiles: Profiles,
    warnings: WarningSink,
}

impl Resolver {
    pub fn new(store: ModelStore, profiles: Profiles, warnings: WarningSink) -> Resolver {
        Resolver { store, profiles, warnings }
    }

    /// The store of `$TEMPER_HOME` and the profiles of `temper.toml` in the working directory,
    /// else in the store's root: what the CLI uses.
    pub fn from_env(warnings: WarningSink) -> Result<Resolver, ResolveError> {
        let store = ModelStore::from_env().map_err(ResolveError::Store)?;
        let here = std::env::current_dir().map_err(ResolveError::WorkingDirectory)?;
        Self::discover(store, &here, warnings)
    }

    /// `store`, with the profiles of `temper.toml` in `dir`, else in the store's root.
    pub fn discover(store: ModelStore, dir: &Path, warnings: WarningSink) -> Result<Resolver, ResolveError> {
        let profiles = Profiles::discover(dir, store.root())?;
        Ok(Resolver::new(store, profiles, warnings))
    }

    pub fn store(&self) -> &ModelStore {
        &self.store
    }

    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// The profile named `name`, if any, and where it points. `counter` counts tokens for
    /// servers that report no usage.
    pub fn target<'a>(
        &'a self,
        name: &'a str,
        counter: Option<Arc<dyn TokenCounter>>,
    ) -> Result<(Option<&'a Profile>, Target<'a>), ResolveError> {
        let profile = self.profiles.get(name);
        let config = profile.map(|p| p.provider_config(name, counter, self.warnings.clone())).transpose()?;
        let target = match config.flatten() {
            Some(config) => Target::Remote(Box::new(config)),
            None => Target::Local(profile.map_or(name, |p| p.model.as_str())),
        };
        Ok((profile, target))
    }

    /// Loads chat model `name` with its fallback chain, pulling catalog models with `progress`
    /// if needed. Every answer is priced (when the profile has prices) and logged for
    /// `temper cost report`.
    ///
    /// A member of a profile's chain that cannot be loaded (a missing file, a model the engine
    /// refuses) is skipped with a warning, and the next one is tried; when none loads, the error
    /// names the profile and says why each failed.
    pub fn chat(
        &self,
        name: &str,
        options: LoadOptions,
        progress: &dyn PullProgress,
    ) -> Result<Loaded, ResolveError> {
        let chain = self.profiles.chain(name);
        let mut members = Vec::new();
        let mut local = None;
        let mut failures = Vec::new();
        for (index, member) in chain.iter().enumerate() {
            let loaded = match self.chat_member(member, options.clone(), progress) {
                Ok(loaded) => loaded,
                Err(err) if chain.len() == 1 => return Err(self.in_profile(name, err)),
                Err(err) => {
                    let reason = error_chain(&err);
                    if let Some(next) = chain.get(index + 1) {
                        let who = match index {
                            0 => format!("profile `{name}`"),
                            _ => format!("`{member}`, a fallback of profile `{name}`,"),
                        };
                        (self.warnings)(format!(
                            "{who} cannot be loaded ({reason}); trying its fallback `{next}`"
                        ));
                    }
                    failures.push(format!("{member}: {reason}"));
                    continue;
                }
            };
            if members.is_empty() {
                local = loaded.local;
            }
            members.push(loaded.model);
        }
        if members.is_empty() {
            return Err(ResolveError::ChainFailed { name: name.to_owned(), failures });
        }
        let model = match members.len() {
            1 => members.remove(0),
            _ => Arc::new(
                Fallback::new(name, members)
                    .map_err(|source| ResolveError::Load { name: name.to_owned(), source })?,
            ),
        };
        Ok(Loaded { model, local })
    }

    /// Loads `name`, which must run on the local engine; `what` says who needs that and why.
    pub fn local(
        &self,
        name: &str,
        options: LoadOptions,
        progress: &dyn PullProgress,
        what: &str,
    ) -> Result<Arc<LocalModel>, ResolveError> {
        let loaded = self.chat(name, options, progress)?;
        loaded.local.ok_or_else(|| ResolveError::NotLocal { name: name.to_owned(), what: what.to_owned() })
    }

    /// `err` as the failure of profile `name`, when `name` is a profile (its errors otherwise
    /// speak of its model's file, which the user did not type). Errors of the profile itself
    /// already name it or its file, and are not named twice.
    fn in_profile(&self, name: &str, err: ResolveError) -> ResolveError {
        match (&err, self.profiles.get(name)) {
            (_, None) | (ResolveError::Backend { .. } | ResolveError::Profile(_), _) => err,
            _ => ResolveError::InProfile { name: name.to_owned(), source: Box::new(err) },
        }
    }

    /// One model of a chain, metered under its name.
    fn chat_member(
        &self,
        name: &str,
        options: LoadOptions,
        progress: &dyn PullProgress,
    ) -> Result<Loaded, ResolveError> {
        let counter: Arc<dyn TokenCounter> = Arc::new(DefaultTokenizer::new(&self.store));
        let (profile, target) = self.target(name, Some(counter))?;
        let mut source_defaults = GenerationParams::default();
        let (inner, engine): (Arc<dyn ChatModel>, _) = match target {
            Target::Remote(config) => {
                let model = HttpModel::new(name, *config).map_err(|source| ResolveError::Backend {
                    name: name.to_owned(),
                    source: Box::new(source),
                })?;
                (Arc::new(model), None)
            }
            Target::Local(target) => {
                if let Some(entry) =
                    find(target).filter(|e| matches!(e.kind, ModelKind::Embedding | ModelKind::Runtime))
                {
                    return Err(ResolveError::WrongKind {
                        name: entry.name.to_owned(),
                        is: match entry.kind {
                            ModelKind::Runtime => "the python tool's runtime, not a model".into(),
                            _ => "an embedding model".into(),
                        },
                        wanted: format!("this needs a chat model such as {DEFAULT_CHAT_MODEL}"),
                    });
                }
                let ResolvedModel { path, defaults, chat_template } =
                    self.resolved(target, profile.is_some(), progress)?;
                if path.is_dir() {
                    return Err(ResolveError::FolderAsChatModel { path });
                }
                source_defaults = defaults;
                let loaded = LocalModel::load(&path, name, options).and_then(|local| match &chat_template {
                    Some(template) => local.with_chat_template(template),
                    None => Ok(local),
                });
                let local = loaded.map_err(|source| ResolveError::Load { name: name.to_owned(), source })?;
                for warning in local.warnings() {
                    (self.warnings)(format!("{name}: {warning}"));
                }
                let local = Arc::new(local);
                (local.clone() as Arc<dyn ChatModel>, Some(local))
            }
        };
        let log = CallLog::in_home(self.store.root());
        // The source's defaults (Ollama's parameters) under the profile's.
        let profile_params = profile.map(|p| p.params.clone()).unwrap_or_default();
        let metered = Metered::for_profile(name, profile, inner, log, self.warnings.clone())
            .with_defaults(source_defaults.overlay(&profile_params));
        Ok(Loaded { model: Arc::new(metered), local: engine })
    }

    /// Loads embedding model `name`: a remote profile's embeddings endpoint, else a catalog
    /// embedder (pulled with `progress` if needed) or a model directory.
    pub async fn embedder(
        &self,
        name: &str,
        options: EmbedOptions,
        progress: &dyn PullProgress,
    ) -> Result<Arc<dyn EmbeddingModel>, ResolveError> {
        match self.target(name, None)? {
            (_, Target::Remote(config)) => {
                let embedder = HttpEmbedder::connect(name, *config, None).await.map_err(|source| {
                    ResolveError::Backend { name: name.to_owned(), source: Box::new(source) }
                })?;
                Ok(Arc::new(embedder))
            }
            (profile, Target::Local(target)) => {
                Ok(Arc::new(self.local_embedder(target, profile.is_some(), options, progress)?))
            }
        }
    }

    /// The local embedder `name` (a catalog name or a model directory), for callers that need
    /// its own API (int8, batches).
    pub fn local_embedder(
        &self,
        name: &str,
        from_profile: bool,
        options: EmbedOptions,
        progress: &dyn PullProgress,
    ) -> Result<Embedder, ResolveError> {
        if let Some(entry) = find(name).filter(|e| e.kind != ModelKind::Embedding) {
            return Err(ResolveError::WrongKind {
                name: entry.name.to_owned(),
                is: format!("a {} model", entry.kind),
                wanted: format!("embeddings need an embedding model such as {DEFAULT_EMBEDDING_MODEL}"),
            });
        }
        // Before anything is downloaded (and before a blocking download from async code).
        if ModelStore::is_source_name(name) {
            return Err(ResolveError::WrongKind {
                name: name.to_owned(),
                is: "a GGUF file, as every hf:, ollama: and URL name is".into(),
                wanted: format!("embeddings need an embedding model such as {DEFAULT_EMBEDDING_MODEL}"),
            });
        }
        let dir = self.path(name, from_profile, progress)?;
        if !dir.is_dir() {
            return Err(ResolveError::FileAsEmbedder { path: dir });
        }
        if !dir.join("config.json").is_file() {
            return Err(ResolveError::FolderWithoutEmbedder { path: dir });
        }
        Embedder::load(&dir, name, options)
            .map_err(|source| ResolveError::LoadEmbedder { name: name.to_owned(), source })
    }

    /// The file or directory of a local model, pulled if needed; an unknown name also lists the
    /// profiles it could have meant (unless it came from a profile).
    fn path(
        &self,
        name: &str,
        from_profile: bool,
        progress: &dyn PullProgress,
    ) -> Result<PathBuf, ResolveError> {
        Ok(self.resolved(name, from_profile, progress)?.path)
    }

    /// [`Resolver::path`], with the defaults the model's source gives it (Ollama's parameters).
    fn resolved(
        &self,
        name: &str,
        from_profile: bool,
        progress: &dyn PullProgress,
    ) -> Result<ResolvedModel, ResolveError> {
        self.store.resolve_model(name, progress).map_err(|err| match err {
            StoreError::UnknownModel { name, known } if !from_profile => ResolveError::UnknownModel {
                name,
                catalog: known,
                profiles_file: self.profiles.path().map(Path::to_path_buf),
                profiles: self.profiles.iter().map(|(n, _)| n.to_owned()).collect(),
            },
            other => ResolveError::Store(other),
        })
    }
}

/// Counts tokens with the default chat model's tokenizer, for servers that report no usage.
/// Loaded on first use, and only if the model is installed (counting never pulls a model).
struct DefaultTokenizer {
    path: Option<PathBuf>,
    tokenizer: OnceLock<Option<Tokenizer>>,
}

impl DefaultTokenizer {
    fn new(store: &ModelStore) -> DefaultTokenizer {
        DefaultTokenizer { path: store.installed_path(DEFAULT_CHAT_MODEL), tokenizer: OnceLock::new() }
    }
}

impl TokenCounter for DefaultTokenizer {
    fn count_text(&self, text: &str) -> temper_core::Result<usize> {
        let tokenizer = self.tokenizer.get_or_init(|| {
            let gguf = Gguf::open(self.path.as_ref()?).ok()?;
            Tokenizer::from_gguf(&gguf).ok()
        });
        let tokenizer = tokenizer.as_ref().ok_or_else(|| {
            temper_core::Error::ModelNotFound(format!("{DEFAULT_CHAT_MODEL} is not installed, or its tokenizer cannot be read, to count tokens with"))
        })?;
        let ids = tokenizer
            .encode(text, false)
            .map_err(|e| temper_core::Error::Backend(format!("tokenizer: {e}")))?;
        Ok(ids.len())
    }
}
