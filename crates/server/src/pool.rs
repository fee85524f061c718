//! The models the server keeps warm: loaded on first use (once, however many requests ask at
//! the same time), kept while used, unloaded when idle or when another model needs the room, and
//! each behind a bounded queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use temper_core::{ChatModel, EmbeddingModel};
use temper_embed::{EmbedOptions, Embedder};
use temper_engine::{LoadOptions, LocalModel};
use temper_models::{find, ModelKind, Resolver, Silent, Target};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// What a route needs a model for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Use {
    Chat,
    Embeddings,
}

/// A chat model as the routes use it.
#[derive(Clone)]
pub struct Chat {
    pub model: Arc<dyn ChatModel>,
    /// The local engine behind it, for its chat template and tokenizer.
    pub local: Option<Arc<LocalModel>>,
}

/// An embedding model as the routes use it.
#[derive(Clone)]
pub struct Embeddings {
    pub model: Arc<dyn EmbeddingModel>,
    /// The local embedder behind it, for token counts.
    pub local: Option<Arc<Embedder>>,
}

#[derive(Clone)]
enum Loaded {
    Chat(Chat),
    Embeddings(Embeddings),
}

/// One model's slot in the pool.
struct Entry {
    model: OnceCell<Loaded>,
    /// Requests running or waiting; a request that finds none left gets a 429.
    queue: Arc<Semaphore>,
    last_used: Mutex<Instant>,
}

/// How the pool loads and keeps models.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Threads, context window and parallel sequences of local models.
    pub load: LoadOptions,
    /// Requests per model running or waiting before new ones get a 429.
    pub queue_limit: usize,
    /// A model unused this long is unloaded.
    pub idle_unload: Duration,
    /// Models loaded at once; loading one more unloads the least recently used idle one.
    pub max_loaded: usize,
}

pub struct Pool {
    resolver: Resolver,
    options: PoolOptions,
    entries: Mutex<HashMap<(Use, String), Arc<Entry>>>,
}

/// A model held for one request: its queue place is given back when this is dropped.
pub struct Lease<M> {
    pub model: M,
    _place: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(resolver: Resolver, options: PoolOptions) -> Pool {
        Pool { resolver, options, entries: Mutex::default() }
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// Chat model `name`, loading it if needed (or a 503 when `wait` is false and it is loading).
    pub async fn chat(&self, name: &str, wait: bool) -> Result<Lease<Chat>, ApiError> {
        let (loaded, place) = self.get(Use::Chat, name, wait).await?;
        match loaded {
            Loaded::Chat(chat) => Ok(Lease { model: chat, _place: place }),
            Loaded::Embeddings(_) => unreachable!("entries are keyed by use"),
        }
    }

    /// Embedding model `name`, as [`Pool::chat`].
    pub async fn embeddings(&self, name: &str, wait: bool) -> Result<Lease<Embeddings>, ApiError> {
        let (loaded, place) = self.get(Use::Embeddings, name, wait).await?;
        match loaded {
            Loaded::Embeddings(embeddings) => Ok(Lease { model: embeddings, _place: place }),
            Loaded::Chat(_) => unreachable!("entries are keyed by use"),
        }
    }

    /// Requests running or waiting per loaded model, for the metrics.
    pub fn queues(&self) -> Vec<(String, usize)> {
        let entries = self.entries.lock().expect("the pool lock is never poisoned");
        let mut queues: Vec<(String, usize)> = entries
            .iter()
            .map(|((_, name), entry)| {
                (name.clone(), self.options.queue_limit - entry.queue.available_permits())
            })
            .collect();
        queues.sort();
        queues
    }

    /// Names of the models loaded now.
    pub fn loaded(&self) -> Vec<String> {
        let entries = self.entries.lock().expect("the pool lock is never poisoned");
        entries.iter().filter(|(_, e)| e.model.initialized()).map(|((_, name), _)| name.clone()).collect()
    }

    async fn get(
        &self,
        kind: Use,
        name: &str,
        wait: bool,
    ) -> Result<(Loaded, OwnedSemaphorePermit), ApiError> {
        check_use(kind, name)?;
        let entry = self.entry(kind, name);
        let place = entry
            .queue
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::queue_full(name, self.options.queue_limit))?;
        *entry.last_used.lock().expect("never poisoned") = Instant::now();
        if !wait && !entry.model.initialized() {
            // Load in the background (once, however many ask) and tell the client to come back.
            let (resolver, load, owned) = (self.resolver.clone(), self.options.load.clone(), name.to_owned());
            tokio::spawn(async move {
                let _ = entry.model.get_or_try_init(|| load_model(resolver, load, kind, &owned)).await;
            });
            return Err(ApiError::loading(name));
        }
        let load = || load_model(self.resolver.clone(), self.options.load.clone(), kind, name);
        match entry.model.get_or_try_init(load).await {
            Ok(loaded) => Ok((loaded.clone(), place)),
            Err(error) => {
                // No entry for what cannot load: names clients make up must not pile up here.
                let mut entries = self.entries.lock().expect("never poisoned");
                if entries.get(&(kind, name.to_owned())).is_some_and(|e| Arc::ptr_eq(e, &entry)) {
                    entries.remove(&(kind, name.to_owned()));
                }
                Err(error)
            }
        }
    }

    /// The entry of `name`, made (and room for it made) if it is new.
    fn entry(&self, kind: Use, name: &str) -> Arc<Entry> {
        let mut entries = self.entries.lock().expect("never poisoned");
        if let Some(entry) = entries.get(&(kind, name.to_owned())) {
            return entry.clone();
        }
        while entries.len() >= self.options.max_loaded {
            let Some(victim) = idle_entries(&entries, self.options.queue_limit)
                .min_by_key(|(_, used)| *used)
                .map(|(key, _)| key)
            else {
                break;
            };
            tracing::info!(model = victim.1, "unloading to make room for {name}");
            entries.remove(&victim);
        }
        let entry = Arc::new(Entry {
            model: OnceCell::new(),
            queue: Arc::new(Semaphore::new(self.options.queue_limit)),
            last_used: Mutex::new(Instant::now()),
        });
        entries.insert((kind, name.to_owned()), entry.clone());
        entry
    }

    /// Unloads the models unused for longer than the idle limit; the server calls this
    /// periodically.
    pub fn unload_idle(&self) {
        let mut entries = self.entries.lock().expect("never poisoned");
        let idle = self.options.idle_unload;
        let stale: Vec<(Use, String)> = idle_entries(&entries, self.options.queue_limit)
            .filter(|(_, used)| used.elapsed() >= idle)
            .map(|(key, _)| key)
            .collect();
        for key in stale {
            tracing::info!(model = key.1, "unloading after {}s unused", idle.as_secs());
            entries.remove(&key);
        }
    }
}

/// Entries no request holds a place in (every place of a queue of `limit` free), with when
/// they were last used.
fn idle_entries(
    entries: &HashMap<(Use, String), Arc<Entry>>,
    limit: usize,
) -> impl Iterator<Item = ((Use, String), Instant)> + '_ {
    entries.iter().filter(move |(_, entry)| entry.queue.available_permits() == limit).map(|(key, entry)| {
        let used = *entry.last_used.lock().expect("never poisoned");
        (key.clone(), used)
    })
}

/// Refuses a catalog model used for what it is not (a chat route naming the embedder).
fn check_use(kind: Use, name: &str) -> Result<(), ApiError> {
    let Some(entry) = find(name) else { return Ok(()) };
    match (kind, entry.kind) {
        (Use::Embeddings, ModelKind::Chat | ModelKind::Completion) => Err(ApiError::bad_request(
            format!("`{name}` is a text generation model; /v1/embeddings needs an embedding model such as all-minilm-l6-v2"),
            Some("model"),
        )),
        (Use::Chat, ModelKind::Embedding) => Err(ApiError::bad_request(
            format!("`{name}` is an embedding model; use it with /v1/embeddings"),
            Some("model"),
        )),
        (_, ModelKind::Runtime) => Err(ApiError::bad_request(
            format!("`{name}` is not a model but the runtime of the agents' python tool"),
            Some("model"),
        )),
        _ => Ok(()),
    }
}

/// Loads on a blocking thread: a pull or a load takes seconds and must not stall the server.
async fn load_model(
    resolver: Resolver,
    load: LoadOptions,
    kind: Use,
    name: &str,
) -> Result<Loaded, ApiError> {
    let started = Instant::now();
    let owned = name.to_owned();
    let loaded = tokio::task::spawn_blocking(move || load_blocking(&resolver, kind, &owned, load))
        .await
        .map_err(|e| ApiError::internal(format!("loading `{name}` failed: {e}")))?;
    match &loaded {
        Ok(_) => tracing::info!(model = name, seconds = started.elapsed().as_secs_f64(), "loaded"),
        Err(error) => tracing::warn!(model = name, error = error.message, "cannot load"),
    }
    loaded
}

fn load_blocking(resolver: &Resolver, kind: Use, name: &str, load: LoadOptions) -> Result<Loaded, ApiError> {
    match kind {
        Use::Chat => {
            let loaded = resolver.chat(name, load, &Silent)?;
            Ok(Loaded::Chat(Chat { model: loaded.model, local: loaded.local }))
        }
        Use::Embeddings => {
            let options = EmbedOptions { threads: load.threads, ..Default::default() };
            match resolver.target(name, None)? {
                (_, Target::Remote(_)) => {
                    let runtime = tokio::runtime::Handle::current();
                    let model = runtime.block_on(resolver.embedder(name, options, &Silent))?;
                    Ok(Loaded::Embeddings(Embeddings { model, local: None }))
                }
                (profile, Target::Local(target)) => {
                    let embedder =
                        Arc::new(resolver.local_embedder(target, profile.is_some(), options, &Silent)?);
                    Ok(Loaded::Embeddings(Embeddings { model: embedder.clone(), local: Some(embedder) }))
                }
            }
        }
    }
}
