//! [`LocalModel`]: a GGUF model served by a scheduler thread that owns the weights, the KV
//! caches and the thread pool. Async callers only send requests and relay events, so no CPU
//! work runs on their runtime.
//!
//! The scheduler keeps several sequence slots, each with its own KV cache. A request joins the
//! running batch as soon as it arrives, in a free slot. Each forward pass takes every active
//! sequence's next tokens: one for a sequence that is generating, a chunk of the prompt for one
//! that is reading it (prompts that arrive together are read together, beside the others'
//! decoding), so the weights are read once per pass for all of them. A new prompt reuses the
//! keys and values of the longest matching prefix held by any slot (a shared system prompt,
//! few-shot examples).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use temper_core::{
    ChatModel, ChatRequest, ChatResponse, CompletionRequest, Error, EventStream, FinishReason,
    GenerationParams, Result, StreamEvent, Timings, Usage,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::gguf::Gguf;
use crate::model::{KvCache, Model, Scratch, MAX_BATCH};
use crate::sampler::Sampler;
use crate::stop::{StopMatcher, Utf8Decoder};
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use crate::{quant, summary::ModelSummary};

/// The context window used when neither the caller nor the request sets one.
pub const DEFAULT_CONTEXT_WINDOW: usize = 4096;

/// How to load a local model.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Worker threads for the forward pass; `None` uses every core.
    pub threads: Option<usize>,
    /// Tokens of context to allocate; `None` uses the trained context, at most 4096.
    pub context_window: Option<usize>,
    /// Sequences generated together (each gets a KV cache of the full context window, allocated
    /// when first needed); `None` means [`DEFAULT_SEQUENCES`].
    pub sequences: Option<usize>,
}

/// Sequences decoded together when the caller does not say.
pub const DEFAULT_SEQUENCES: usize = 4;

/// A GGUF model running on Temper's engine.
pub struct LocalModel {
    name: String,
    summary: ModelSummary,
    tokenizer: Arc<Tokenizer>,
    template: std::result::Result<ChatTemplate, String>,
    jobs: mpsc::Sender<Job>,
}

enum Job {
    Generate { prompt: Vec<u32>, params: GenerationParams, window: usize, events: Events, received: Instant },
    Logits { prompt: Vec<u32>, reply: mpsc::Sender<Result<Vec<f32>>> },
}

type Events = UnboundedSender<Result<StreamEvent>>;

impl LocalModel {
    /// Loads a GGUF file and starts its scheduler thread.
    pub fn load(path: &Path, name: &str, options: LoadOptions) -> Result<LocalModel> {
        let invalid = |reason: String| Error::invalid_model(path, reason);
        let gguf = Gguf::open(path).map_err(|e| invalid(e.to_string()))?;
        let tokenizer = Tokenizer::from_gguf(&gguf).map_err(|e| invalid(format!("tokenizer: {e}")))?;
        let template = ChatTemplate::from_gguf(&gguf, &tokenizer).map_err(|e| e.to_string());
        let model = Model::from_gguf(gguf).map_err(|e| invalid(e.to_string()))?;
        let config = &model.config;
        if tokenizer.vocab_size() != config.vocab {
            return Err(invalid(format!(
                "the tokenizer has {} tokens but the model's output has {}",
                tokenizer.vocab_size(),
                config.vocab
            )));
        }
        let threads =
            options.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if threads == 0 {
            return Err(Error::invalid_param("threads", "must be at least 1"));
        }
        let context_window =
            options.context_window.unwrap_or(config.trained_context.min(DEFAULT_CONTEXT_WINDOW));
        if context_window == 0 {
            return Err(Error::invalid_param("context_window", "must be at least 1"));
        }
        let sequences = options.sequences.unwrap_or(DEFAULT_SEQUENCES);
        if !(1..=MAX_BATCH).contains(&sequences) {
            return Err(Error::invalid_param("sequences", format!("must be between 1 and {MAX_BATCH}")));
        }
        let summary = ModelSummary::new(&model, context_window, threads, quant::cpu_level().to_string());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("temper-engine-{i}"))
            .build()
            .map_err(|e| Error::Backend(format!("cannot start the engine's threads: {e}")))?;
        let worker = Worker {
            slots: Vec::with_capacity(sequences),
            max_slots: sequences,
            context_window,
            waiting: VecDeque::new(),
            scratch: Scratch::new(config),
            logits: vec![0.0; sequences * config.vocab],
            tokenizer: Arc::new(tokenizer),
            name: name.to_string(),
            clock: 0,
            model,
        };
        let tokenizer = worker.tokenizer.clone();
        let (jobs, inbox) = mpsc::channel();
        std::thread::Builder::new()
            .name("temper-scheduler".into())
            .spawn(move || worker.serve(inbox, pool))
            .map_err(|e| Error::Backend(format!("cannot start the engine's scheduler: {e}")))?;
        Ok(LocalModel { name: name.to_string(), summary, tokenizer, template, jobs })
    }

    pub fn summary(&self) -> &ModelSummary {
        &self.summary
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Token ids of `text`, with no beginning-of-sequence token; `parse_special` turns text
    /// like `<|im_start|>` into the special token.
    pub fn tokenize(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        self.tokenizer.encode(text, parse_special).map_err(|e| Error::Backend(format!("tokenizer: {e}")))
    }

    /// The conversation as the model's chat template renders it, ready to continue.
    pub fn render_chat(&self, request: &ChatRequest) -> Result<String> {
        let template = self
            .template
            .as_ref()
            .map_err(|reason| Error::Unsupported(format!("{}: {reason}", self.name)))?;
        template.render(&request.messages, true).map_err(|e| Error::Backend(format!("chat template: {e}")))
    }

    /// The logits of the last position of a raw prompt (special tokens parsed, the
    /// beginning-of-sequence token added when the model wants one).
    pub fn last_logits(&self, prompt: &str) -> Result<Vec<f32>> {
        let ids = self.prompt_ids(prompt)?;
        if ids.len() > self.summary.context_window {
            return Err(Error::ContextOverflow {
                prompt_tokens: ids.len(),
                context_window: self.summary.context_window,
            });
        }
        let (reply, answer) = mpsc::channel();
        self.jobs.send(Job::Logits { prompt: ids, reply }).map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }

    fn prompt_ids(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if self.tokenizer.add_bos() {
            ids.extend(self.tokenizer.bos_id());
        }
        let body = self.tokenize(text, true)?;
        // A template that prints the BOS text itself must not double it.
        let skip = usize::from(!ids.is_empty() && body.first() == ids.first());
        ids.extend_from_slice(&body[skip..]);
        if ids.is_empty() {
            return Err(Error::invalid_param("prompt", "is empty"));
        }
        Ok(ids)
    }

    /// Tokenizes, checks the context, and hands the request to the scheduler.
    fn generate(
        &self,
        text: std::result::Result<String, Error>,
        params: GenerationParams,
        truncate: bool,
    ) -> EventStream {
        let (events, stream) = unbounded_channel();
        let job = text.and_then(|text| {
            params.validate()?;
            let window = self.context_window_for(&params)?;
            let mut prompt = self.prompt_ids(&text)?;
            fit_context(&mut prompt, window, &params, truncate, self.tokenizer.add_bos())?;
            Ok(Job::Generate { prompt, params, window, events: events.clone(), received: Instant::now() })
        });
        let sent = job.and_then(|job| self.jobs.send(job).map_err(|_| stopped()));
        if let Err(error) = sent {
            let _ = events.send(Err(error));
        }
        let mut stream = stream;
        Box::pin(futures::stream::poll_fn(move |cx| stream.poll_recv(cx)))
    }

    /// The context window a request with `params` gets: its own `context_window`, which may
    /// not exceed the one the model was loaded with, else that one.
    pub fn context_window_for(&self, params: &GenerationParams) -> Result<usize> {
        let loaded = self.summary.context_window;
        match params.context_window.map(|w| w as usize) {
            Some(w) if w > loaded => Err(Error::invalid_param(
                "context_window",
                format!("{w} is larger than the {loaded} tokens this model was loaded with; load it with a larger --ctx"),
            )),
            Some(w) => Ok(w),
            None => Ok(loaded),
        }
    }
}

/// Checks the prompt leaves room to generate, or, when the caller allows it, drops the oldest
/// tokens (keeping the beginning-of-sequence token) to leave room for `max_tokens`, at most
/// half the window.
fn fit_context(
    prompt: &mut Vec<u32>,
    window: usize,
    params: &GenerationParams,
    truncate: bool,
    keep_bos: bool,
) -> Result<()> {
    if prompt.len() < window {
        return Ok(());
    }
    if !truncate {
        return Err(Error::ContextOverflow { prompt_tokens: prompt.len(), context_window: window });
    }
    let room = params.max_tokens.map_or(window / 4, |m| m as usize).clamp(1, window / 2).max(1);
    let keep = window.saturating_sub(room).max(1);
    let head = usize::from(keep_bos && keep > 1);
    let tail_start = prompt.len() - (keep - head);
    prompt.drain(head..tail_start);
    Ok(())
}

fn stopped() -> Error {
    Error::Backend("the engine's scheduler thread has stopped".into())
}

impl ChatModel for LocalModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn chat_stream(&self, request: ChatRequest) -> EventStream {
        let features = request.requested_features();
        if !features.is_empty() {
            let message = format!(
                "the local engine does not support {} yet; use an OpenAI-compatible server for them",
                features.join(", ")
            );
            return Box::pin(futures::stream::once(async move { Err(Error::Unsupported(message)) }));
        }
        let text = self.render_chat(&request);
        self.generate(text, request.params, request.truncate)
    }

    fn complete_stream(&self, request: CompletionRequest) -> EventStream {
        self.generate(Ok(request.prompt), request.params, request.truncate)
    }
}

/// Shared prompt tokens worth waiting for another sequence to read: below this, reading them
/// again costs less than the wait.
const MIN_SHARED_PREFIX: usize = 32;

/// The scheduler thread's state: the model, the sequence slots and the buffers they share.
struct Worker {
    model: Model,
    slots: Vec<Slot>,
    max_slots: usize,
    context_window: usize,
    /// Requests that arrived while every slot was busy, in arrival order.
    waiting: VecDeque<Job>,
    scratch: Scratch,
    /// One vocab-sized row per slot.
    logits: Vec<f32>,
    tokenizer: Arc<Tokenizer>,
    name: String,
    /// Counts slot uses, so that the least recently used free slot is the one overwritten.
    clock: u64,
}

/// A KV cache and the sequence generating into it, if any. A free slot keeps its cache, so a
/// later prompt can reuse its prefix.
struct Slot {
    cache: KvCache,
    seq: Option<Sequence>,
    last_used: u64,
}

/// A request being answered: its sampling and streaming state.
struct Sequence {
    params: GenerationParams,
    window: usize,
    events: Events,
    received: Instant,
    /// When the sequence got its slot and started reading its prompt.
    started: Instant,
    prompt_tokens: usize,
    /// Prompt tokens run through the model (those after the reused prefix).
    evaluated: usize,
    sampler: Sampler,
    /// The prompt and the tokens generated so far. Those past the cache's length are the ones
    /// the next forward pass feeds: the rest of the prompt, or the token just sampled.
    history: Vec<u32>,
    utf8: Utf8Decoder,
    stops: StopMatcher,
    text: String,
    generated: usize,
    first_token_at: Option<Instant>,
}

/// What a sequence does after sampling.
enum Step {
    /// Feed the sampled token and go on.
    Continue,
    /// Finished: the response, or `None` when the caller went away.
    Done(Option<ChatResponse>),
}

impl Worker {
    fn serve(mut self, inbox: mpsc::Receiver<Job>, pool: rayon::ThreadPool) {
        loop {
            // Block only when there is nothing to do; otherwise take whatever has arrived and
            // let it join the running batch.
            if !self.busy() {
                match inbox.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => return,
                }
            }
            self.waiting.extend(inbox.try_iter());
            pool.install(|| {
                self.admit();
                self.step();
            });
        }
    }

    fn busy(&self) -> bool {
        !self.waiting.is_empty() || self.slots.iter().any(|s| s.seq.is_some())
    }

    /// Starts waiting requests while there are free slots. A request whose prompt opens like
    /// one still being read waits for that reading, then copies the shared prefix instead of
    /// reading it again: requests that arrive together with one preamble (skeleton-of-thought
    /// expansions, few-shot prompts) read it once.
    fn admit(&mut self) {
        let mut deferred = VecDeque::new();
        while let Some(job) = self.waiting.pop_front() {
            if self.reading_shares_prefix(job_prompt(&job)) {
                deferred.push_back(job);
                continue;
            }
            let Some(slot) = self.free_slot(job_prompt(&job)) else {
                self.waiting.push_front(job);
                break;
            };
            self.start(slot, job);
        }
        while let Some(job) = deferred.pop_back() {
            self.waiting.push_front(job);
        }
    }

    /// Whether a sequence still reading its prompt will cache at least `MIN_SHARED_PREFIX`
    /// tokens of `prompt` that no slot holds yet.
    fn reading_shares_prefix(&self, prompt: &[u32]) -> bool {
        let cached = |i: usize| shared_prefix(self.slots[i].cache.tokens(), prompt);
        let best_cached = (0..self.slots.len()).map(cached).max().unwrap_or(0);
        self.slots.iter().any(|slot| match &slot.seq {
            Some(seq) if seq.first_token_at.is_none() => {
                let shared = shared_prefix(&seq.history, prompt);
                shared >= MIN_SHARED_PREFIX && shared > best_cached
            }
            _ => false,
        })
    }

    /// The free slot to run `prompt` in (see [`place`]), made if need be. When another slot
    /// holds a longer prefix of it, that prefix is copied over.
    fn free_slot(&mut self, prompt: &[u32]) -> Option<usize> {
        let shared = |cache: &KvCache| shared_prefix(cache.tokens(), prompt);
        let slots = self.slots.iter().map(|s| (s.cache.tokens(), s.seq.is_none(), s.last_used));
        let slot = match place(slots, prompt, self.slots.len() < self.max_slots) {
            Place::Slot(i) => i,
            Place::New => {
                let c = &self.model.config;
                let cache = KvCache::new(c.layers, c.kv_dim(), self.context_window);
                self.slots.push(Slot { cache, seq: None, last_used: 0 });
                self.slots.len() - 1
            }
            Place::Wait => return None,
        };
        let have = shared(&self.slots[slot].cache);
        let donor = (0..self.slots.len()).max_by_key(|&i| shared(&self.slots[i].cache));
        if let Some(donor) = donor.filter(|&d| d != slot && shared(&self.slots[d].cache) > have) {
            let len = shared(&self.slots[donor].cache);
            let (to, from) = two_slots(&mut self.slots, slot, donor);
            to.cache.copy_prefix(&from.cache, len);
        }
        self.clock += 1;
        self.slots[slot].last_used = self.clock;
        Some(slot)
    }

    fn start(&mut self, slot: usize, job: Job) {
        match job {
            Job::Logits { prompt, reply } => {
                let result = self.guarded(slot, |w| w.prefill(slot, &prompt));
                let _ = reply.send(result.map(|_| self.logits_row(slot).to_vec()));
            }
            Job::Generate { prompt, params, window, events, received } => {
                let evaluated = prompt.len() - reuse_prefix(&mut self.slots[slot].cache, &prompt);
                self.slots[slot].seq = Some(Sequence {
                    sampler: Sampler::new(&params),
                    stops: StopMatcher::new(&params.stop),
                    params,
                    window,
                    events,
                    received,
                    started: Instant::now(),
                    prompt_tokens: prompt.len(),
                    evaluated,
                    history: prompt,
                    utf8: Utf8Decoder::default(),
                    text: String::new(),
                    generated: 0,
                    first_token_at: None,
                });
            }
        }
    }

    fn logits_row(&mut self, slot: usize) -> &mut [f32] {
        let vocab = self.model.config.vocab;
        &mut self.logits[slot * vocab..(slot + 1) * vocab]
    }

    /// Evaluates the prompt in `slot`, reusing the cached keys and values of a shared prefix,
    /// and leaves the last position's logits in the slot's row.
    fn prefill(&mut self, slot: usize, prompt: &[u32]) -> Result<()> {
        let vocab = self.model.config.vocab;
        let cache = &mut self.slots[slot].cache;
        let fresh = &prompt[reuse_prefix(cache, prompt)..];
        let logits = &mut self.logits[slot * vocab..(slot + 1) * vocab];
        self.model
            .forward(cache, fresh, &mut self.scratch, logits)
            .map_err(|e| Error::Backend(format!("{}: {e}", self.name)))
    }

    /// One forward pass for every active sequence, then a token sampled for each that has read
    /// its whole prompt. Sequences that are generating come first (a token each), then prompts
    /// in arrival order, as much of them as fits in [`MAX_BATCH`] tokens.
    fn step(&mut self) {
        // (still reading its prompt, admitted at, slot): generating first, then oldest first.
        let mut active: Vec<(bool, u64, usize)> = (0..self.slots.len())
            .filter_map(|i| {
                let slot = &self.slots[i];
                let seq = slot.seq.as_ref()?;
                Some((seq.first_token_at.is_none(), slot.last_used, i))
            })
            .collect();
        if active.is_empty() {
            return;
        }
        active.sort_unstable();
        // (slot, tokens fed), in slot order so that logits row `r` is the r-th entry.
        let mut batch = Vec::with_capacity(active.len());
        let mut budget = MAX_BATCH;
        for (_, _, i) in active {
            let slot = &self.slots[i];
            let unread = slot.seq.as_ref().map_or(0, |seq| seq.history.len() - slot.cache.len());
            let take = unread.min(budget);
            if take > 0 {
                budget -= take;
                batch.push((i, take));
            }
        }
        batch.sort_unstable();
        let vocab = self.model.config.vocab;
        let (model, scratch) = (&self.model, &mut self.scratch);
        let logits = &mut self.logits[..batch.len() * vocab];
        let mut inputs: Vec<(&mut KvCache, &[u32])> = Vec::with_capacity(batch.len());
        let mut wanted = batch.iter().peekable();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(&(_, take)) = wanted.next_if(|&&(s, _)| s == i) else { continue };
            if let Slot { cache, seq: Some(seq), .. } = slot {
                let start = cache.len();
                inputs.push((cache, &seq.history[start..start + take]));
            }
        }
        let ran =
            std::panic::catch_unwind(AssertUnwindSafe(|| model.forward_many(&mut inputs, scratch, logits)));
        let error = match ran {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{}: {e}", self.name)),
            Err(panic) => Some(panic_message(panic)),
        };
        if let Some(error) = error {
            // Every sequence of the batch failed with it; their caches may be half written.
            for &(i, _) in &batch {
                self.slots[i].cache.truncate(0);
                if let Some(seq) = self.slots[i].seq.take() {
                    let _ = seq.events.send(Err(Error::Backend(error.clone())));
                }
            }
            return;
        }
        // Row `r` holds the logits of the r-th slot of the batch; move them to the slot's own row.
        for (r, &(slot, _)) in batch.iter().enumerate().rev() {
            if r != slot {
                self.logits.copy_within(r * vocab..(r + 1) * vocab, slot * vocab);
            }
        }
        for (slot, _) in batch {
            let read = self.slots[slot]
                .seq
                .as_ref()
                .is_some_and(|seq| seq.history.len() == self.slots[slot].cache.len());
            if read {
                self.sample(slot);
            }
        }
    }

    /// Samples the next token of the sequence in `slot` from its logits row, streams it, and
    /// ends the sequence when it is done.
    fn sample(&mut self, slot: usize) {
        let vocab = self.model.config.vocab;
        let Some(mut seq) = self.slots[slot].seq.take() else { return };
        let logits = &mut self.logits[slot * vocab..(slot + 1) * vocab];
        let cache_len = self.slots[slot].cache.len();
        match seq.advance(logits, &self.tokenizer, cache_len, &self.name) {
            Step::Continue => self.slots[slot].seq = Some(seq),
            Step::Done(Some(response)) => drop(seq.events.send(Ok(StreamEvent::Done(response)))),
            Step::Done(None) => {}
        }
    }

    /// Runs a prefill in `slot`, turning a panic (a bug) into an error so the scheduler keeps
    /// serving; the slot's cache, perhaps half written, is then dropped.
    fn guarded<T>(&mut self, slot: usize, job: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        std::panic::catch_unwind(AssertUnwindSafe(|| job(self))).unwrap_or_else(|panic| {
            self.slots[slot].cache.truncate(0);
            Err(Error::Backend(panic_message(panic)))
        })
    }
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned());
    format!("internal engine error: {}", message.unwrap_or_default())
}

/// Where a prompt runs.
#[derive(Debug, PartialEq)]
enum Place {
    Slot(usize),
    /// In a slot made for it.
    New,
    /// Nowhere yet: every slot is busy.
    Wait,
}

/// Where `prompt` runs, given each slot's cached tokens, whether it is free and when it was last
/// used, and whether there is `room` for another slot. First choice is a free slot whose cache
/// is all a prefix of the prompt (it loses nothing), the one sharing most. Otherwise a new slot
/// is made while there is room, so that every cache is kept for its own prompt to come back to
/// (a repeated request, one more turn of a conversation, skeleton-of-thought's points asked
/// again). Without room, the free slot sharing the longest prefix is reused. Ties go to the
/// least recently used.
fn place<'a>(slots: impl Iterator<Item = (&'a [u32], bool, u64)>, prompt: &[u32], room: bool) -> Place {
    // (loses nothing, shared prefix, least recently used, index) of the best free slot.
    let best = slots
        .enumerate()
        .filter(|(_, (_, free, _))| *free)
        .map(|(i, (tokens, _, last_used))| {
            let shared = shared_prefix(tokens, prompt);
            (shared == tokens.len(), shared, u64::MAX - last_used, i)
        })
        .max();
    match best {
        Some((loses_nothing, _, _, i)) if loses_nothing || !room => Place::Slot(i),
        _ if room => Place::New,
        _ => Place::Wait,
    }
}

/// How many tokens `a` and `b` have in common from the start.
fn shared_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn job_prompt(job: &Job) -> &[u32] {
    match job {
        Job::Generate { prompt, .. } | Job::Logits { prompt, .. } => prompt,
    }
}

/// Truncates `cache` to the prefix it shares with `prompt`, keeping at least the last prompt
/// token to run (its logits are what comes next); returns the length kept.
fn reuse_prefix(cache: &mut KvCache, prompt: &[u32]) -> usize {
    let shared = shared_prefix(cache.tokens(), prompt);
    let reuse = shared.min(prompt.len() - 1);
    cache.truncate(reuse);
    reuse
}

/// Mutable access to slot `a` and shared access to slot `b` (`a != b`).
fn two_slots(slots: &mut [Slot], a: usize, b: usize) -> (&mut Slot, &Slot) {
    if a < b {
        let (low, high) = slots.split_at_mut(b);
        (&mut low[a], &high[0])
    } else {
        let (low, high) = slots.split_at_mut(a);
        (&mut high[0], &low[b])
    }
}

impl Sequence {
    /// Samples the next token from `logits`, streams its text, and says whether to go on.
    /// `cache_len` is how many positions the sequence's cache holds.
    fn advance(&mut self, logits: &mut [f32], tokenizer: &Tokenizer, cache_len: usize, name: &str) -> Step {
        if self.events.is_closed() {
            return Step::Done(None);
        }
        let token = self.sampler.sample(logits, &self.history);
        self.first_token_at.get_or_insert_with(Instant::now);
        if tokenizer.is_end_of_generation(token) {
            return self.finish(FinishReason::Stop, false, name);
        }
        self.generated += 1;
        self.history.push(token);
        let outcome = self.stops.push(&self.utf8.push(&tokenizer.token_bytes(token)));
        if !self.emit(outcome.text) {
            return Step::Done(None);
        }
        if outcome.stopped {
            return self.finish(FinishReason::Stop, true, name);
        }
        let max_tokens = self.params.max_tokens.map_or(usize::MAX, |m| m as usize);
        if self.generated >= max_tokens || cache_len >= self.window {
            return self.finish(FinishReason::Length, false, name);
        }
        Step::Continue
    }

    /// Sends `piece` to the caller; false when the caller went away.
    fn emit(&mut self, piece: String) -> bool {
        if piece.is_empty() {
            return true;
        }
        self.text.push_str(&piece);
        self.events.send(Ok(StreamEvent::Delta(piece))).is_ok()
    }

    fn finish(&mut self, finish_reason: FinishReason, hit_stop: bool, name: &str) -> Step {
        if !hit_stop {
            let tail = self.stops.push(&self.utf8.finish());
            let mut rest = tail.text;
            if !tail.stopped {
                rest.push_str(&self.stops.finish());
            }
            if !self.emit(rest) {
                return Step::Done(None);
            }
        }
        let first = self.first_token_at.unwrap_or_else(Instant::now);
        let decode_secs = first.elapsed().as_secs_f64();
        let per_second = |n: usize, secs: f64| if secs > 0.0 && n > 0 { n as f64 / secs } else { 0.0 };
        Step::Done(Some(ChatResponse {
            model: name.to_string(),
            text: std::mem::take(&mut self.text),
            finish_reason,
            usage: Usage {
                prompt_tokens: self.prompt_tokens as u32,
                completion_tokens: self.generated as u32,
            },
            timings: Timings {
                ttft_ms: first.duration_since(self.received).as_secs_f64() * 1000.0,
                prefill_tokens_per_second: per_second(
                    self.evaluated,
                    first.duration_since(self.started).as_secs_f64(),
                ),
                decode_tokens_per_second: per_second(self.generated.saturating_sub(1), decode_secs),
            },
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_goes_to_the_free_slot_sharing_most_and_keeps_other_caches_while_there_is_room() {
        let (a, b): (&[u32], &[u32]) = (&[1, 2, 3, 9], &[1, 2]);
        let prompt = [1, 2, 3, 4];
        // `a` shares more but holds a token the prompt would drop: kept while there is room.
        assert_eq!(place([(a, true, 1)].into_iter(), &prompt, true), Place::New);
        assert_eq!(place([(a, true, 1)].into_iter(), &prompt, false), Place::Slot(0));
        // A cache wholly a prefix of the prompt loses nothing.
        assert_eq!(place([(a, true, 1), (b, true, 2)].into_iter(), &prompt, true), Place::Slot(1));
        assert_eq!(place([(&[][..], true, 1)].into_iter(), &prompt, true), Place::Slot(0));
        // Busy slots are never taken.
        assert_eq!(place([(b, false, 1)].into_iter(), &prompt, true), Place::New);
        assert_eq!(place([(b, false, 1)].into_iter(), &prompt, false), Place::Wait);
        // Among equals, the least recently used.
        let others: [(&[u32], bool, u64); 3] = [(&[7], true, 5), (&[8], true, 2), (&[9], true, 3)];
        assert_eq!(place(others.into_iter(), &prompt, false), Place::Slot(1));
    }
}
