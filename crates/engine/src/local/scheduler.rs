//! The scheduler thread: sequence slots, admission of waiting requests, and one forward pass
//! per step for every active sequence.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use temper_core::{error_chain, Error, GenerationParams, Result, StreamEvent};
use tokio::sync::mpsc::UnboundedSender;

use super::sequence::{Sequence, Step};
use crate::constraint::Guide;
use crate::memory;
use crate::model::{Batch, KvCache, Model, Scratch, MAX_BATCH};
use crate::sampler::all_finite;
use crate::tokenizer::Tokenizer;

pub(super) enum Job {
    Generate(Request),
    Logits { prompt: Vec<u32>, reply: mpsc::Sender<Result<Vec<f32>>> },
}

pub(super) type Events = UnboundedSender<Result<StreamEvent>>;

/// A generation as the caller asked for it, checked and tokenized: what a sequence starts from.
pub(super) struct Request {
    pub prompt: Vec<u32>,
    pub params: GenerationParams,
    /// The context window this request may fill.
    pub window: usize,
    pub decoding: Decoding,
    pub events: Events,
    pub received: Instant,
}

/// What a generation needs beyond its prompt and parameters.
#[derive(Default)]
pub(super) struct Decoding {
    /// Alternatives to record with each token's log-probability, if any.
    pub logprobs: Option<u32>,
    /// The grammar the answer must follow, if any.
    pub guide: Option<Guide>,
    /// Whether the request offered tools, so that the answer is read for calls.
    pub reads_calls: bool,
}

impl Job {
    fn prompt(&self) -> &[u32] {
        match self {
            Job::Generate(Request { prompt, .. }) | Job::Logits { prompt, .. } => prompt,
        }
    }

    /// Answers the job with `error` instead of running it.
    fn fail(self, error: Error) {
        match self {
            Job::Generate(request) => drop(request.events.send(Err(error))),
            Job::Logits { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

/// Shared prompt tokens worth waiting for another sequence to read: below this, reading them
/// again costs less than the wait.
const MIN_SHARED_PREFIX: usize = 32;

/// The scheduler thread's state: the model, the sequence slots and the buffers they share.
pub(super) struct Worker {
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
    /// The model file, named by errors that come from its contents.
    path: PathBuf,
    /// Counts slot uses, so that the least recently used free slot is the one overwritten.
    clock: u64,
    /// A step's active slots and its batch (see `step`), kept so that a step allocates nothing.
    active: Vec<(bool, u64, usize)>,
    batch: Vec<BatchEntry>,
}

/// A slot's part in a step: its history's tokens `start..start + take` are fed this pass.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct BatchEntry {
    slot: usize,
    start: usize,
    take: usize,
}

/// The slots of a step as the model's [`Batch`], without a list of references to them.
struct StepBatch<'a> {
    slots: &'a mut [Slot],
    batch: &'a [BatchEntry],
}

impl StepBatch<'_> {
    fn tokens<'s>(seq: &'s Option<Sequence>, entry: &BatchEntry) -> &'s [u32] {
        // Only slots with a sequence are in a batch; an empty slice would be refused, not read.
        seq.as_ref().map_or(&[], |seq| &seq.history()[entry.start..entry.start + entry.take])
    }
}

impl Batch for StepBatch<'_> {
    fn sequences(&self) -> usize {
        self.batch.len()
    }

    fn sequence(&self, i: usize) -> (&KvCache, &[u32]) {
        let entry = &self.batch[i];
        let slot = &self.slots[entry.slot];
        (&slot.cache, Self::tokens(&slot.seq, entry))
    }

    fn sequence_mut(&mut self, i: usize) -> (&mut KvCache, &[u32]) {
        let entry = &self.batch[i];
        let Slot { cache, seq, .. } = &mut self.slots[entry.slot];
        (cache, Self::tokens(seq, entry))
    }
}

/// A KV cache and the sequence generating into it, if any. A free slot keeps its cache, so a
/// later prompt can reuse its prefix.
struct Slot {
    cache: KvCache,
    seq: Option<Sequence>,
    last_used: u64,
}

impl Worker {
    pub fn new(
        model: Model,
        tokenizer: Arc<Tokenizer>,
        name: &str,
        path: &Path,
        sequences: usize,
        context_window: usize,
    ) -> Worker {
        Worker {
            slots: Vec::with_capacity(sequences),
            max_slots: sequences,
            context_window,
            waiting: VecDeque::new(),
            scratch: Scratch::new(&model.config),
            logits: vec![0.0; sequences * model.config.vocab],
            tokenizer,
            name: name.to_string(),
            path: path.to_path_buf(),
            clock: 0,
            active: Vec::with_capacity(sequences),
            batch: Vec::with_capacity(sequences),
            model,
        }
    }

    /// Serves jobs until every sender is gone. The loop runs on one of the pool's threads, as
    /// a benchmark's decoding loop does: handing each step to the pool from outside would cost
    /// thread wake-ups on every token (the pool has no other work, so blocking one of its
    /// threads while idle delays nothing).
    pub fn serve(mut self, inbox: mpsc::Receiver<Job>, pool: rayon::ThreadPool) {
        pool.install(move || loop {
            // Block only when there is nothing to do; otherwise take whatever has arrived and
            // let it join the running batch.
            if !self.busy() {
                match inbox.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => return,
                }
            }
            self.waiting.extend(inbox.try_iter());
            self.admit();
            self.step();
        });
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
            if self.reading_shares_prefix(job.prompt()) {
                deferred.push_back(job);
                continue;
            }
            match self.free_slot(job.prompt()) {
                Ok(Some(slot)) => self.start(slot, job),
                Ok(None) => {
                    self.waiting.push_front(job);
                    break;
                }
                Err(error) => job.fail(error),
            }
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
            Some(seq) if seq.is_reading() => {
                let shared = shared_prefix(seq.history(), prompt);
                shared >= MIN_SHARED_PREFIX && shared > best_cached
            }
            _ => false,
        })
    }

    /// The free slot to run `prompt` in (see [`place`]), made if need be and if memory allows,
    /// or `None` to wait for one. When another slot holds a longer prefix of it, that prefix is
    /// copied over.
    fn free_slot(&mut self, prompt: &[u32]) -> Result<Option<usize>> {
        let placed = self.place(prompt, self.slots.len() < self.max_slots);
        let placed = match placed {
            Place::New if !self.memory_for_another_cache()? => self.place(prompt, false),
            placed => placed,
        };
        let slot = match placed {
            Place::Slot(i) => i,
            Place::New => {
                let c = &self.model.config;
                let cache = KvCache::new(c.layers, c.kv_dim(), self.context_window);
                self.slots.push(Slot { cache, seq: None, last_used: 0 });
                self.slots.len() - 1
            }
            Place::Wait => return Ok(None),
        };
        let shared = |cache: &KvCache| shared_prefix(cache.tokens(), prompt);
        let have = shared(&self.slots[slot].cache);
        let donor = (0..self.slots.len()).max_by_key(|&i| shared(&self.slots[i].cache));
        if let Some(donor) = donor.filter(|&d| d != slot && shared(&self.slots[d].cache) > have) {
            let len = shared(&self.slots[donor].cache);
            let (to, from) = two_slots(&mut self.slots, slot, donor);
            // Without the memory to copy it, the prompt is read in full instead.
            if to.cache.copy_prefix(&from.cache, len).is_err() {
                to.cache.truncate(0);
            }
        }
        self.clock += 1;
        self.slots[slot].last_used = self.clock;
        Ok(Some(slot))
    }

    fn place(&self, prompt: &[u32], room: bool) -> Place {
        let slots = self.slots.iter().map(|s| (s.cache.tokens(), s.seq.is_none(), s.last_used));
        place(slots, prompt, room)
    }

    /// Whether the memory available now holds another full cache besides what the existing
    /// caches will take as they fill. With no cache at all, a request cannot wait for one to
    /// be freed, so the lack of memory is an error.
    fn memory_for_another_cache(&self) -> Result<bool> {
        let Some(available) = memory::available() else { return Ok(true) };
        let owed: u64 = self.slots.iter().map(|s| s.cache.full_bytes() - s.cache.allocated_bytes()).sum();
        let c = &self.model.config;
        let needed = KvCache::bytes_for(c.layers, c.kv_dim(), self.context_window);
        let fits = available.saturating_sub(owed) >= needed;
        if !fits && self.slots.is_empty() {
            return Err(Error::Backend(format!(
                "{}: not enough memory for a KV cache of {} tokens: it needs {}, {} is available",
                self.name,
                self.context_window,
                memory::human(needed),
                memory::human(available)
            )));
        }
        Ok(fits)
    }

    fn start(&mut self, slot: usize, job: Job) {
        match job {
            Job::Logits { prompt, reply } => {
                let result = self.guarded(slot, |w| w.prefill(slot, &prompt));
                let result = result.and_then(|()| {
                    let row = self.logits_row(slot);
                    self.check_finite(row, prompt.len())?;
                    Ok(row.to_vec())
                });
                let _ = reply.send(result);
            }
            Job::Generate(request) => {
                let reused = reuse_prefix(&mut self.slots[slot].cache, &request.prompt);
                let evaluated = request.prompt.len() - reused;
                self.slots[slot].seq = Some(Sequence::new(request, evaluated));
            }
        }
    }

    fn logits_row(&self, slot: usize) -> &[f32] {
        let vocab = self.model.config.vocab;
        &self.logits[slot * vocab..(slot + 1) * vocab]
    }

    /// Refuses logits that are not all finite: a NaN or infinity comes from weights that are
    /// corrupt or out of range, and sampling from it would give a meaningless token.
    fn check_finite(&self, logits: &[f32], position: usize) -> Result<()> {
        if all_finite(logits) {
            return Ok(());
        }
        Err(Error::invalid_model(
            &self.path,
            format!(
                "the model computed a logit that is not a finite number at position {position}: \
                 its weights are corrupt or out of range"
            ),
        ))
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
            .map_err(|e| Error::Backend(format!("{}: {}", self.name, error_chain(&e))))
    }

    /// One forward pass for every active sequence, then a token sampled for each that has read
    /// its whole prompt. Sequences that are generating come first (a token each), then prompts
    /// in arrival order, as much of them as fits in [`MAX_BATCH`] tokens.
    fn step(&mut self) {
        // (still reading its prompt, admitted at, slot): generating first, then oldest first.
        self.active.clear();
        self.active.extend(self.slots.iter().enumerate().filter_map(|(i, slot)| {
            let seq = slot.seq.as_ref()?;
            Some((seq.is_reading(), slot.last_used, i))
        }));
        if self.active.is_empty() {
            return;
        }
        self.active.sort_unstable();
        // In slot order, so that logits row `r` is the r-th entry.
        self.batch.clear();
        let mut budget = MAX_BATCH;
        for &(_, _, i) in &self.active {
            let slot = &self.slots[i];
            let start = slot.cache.len();
            let unread = slot.seq.as_ref().map_or(0, |seq| seq.history().len() - start);
            let take = unread.min(budget);
            if take > 0 {
                budget -= take;
                self.batch.push(BatchEntry { slot: i, start, take });
            }
        }
        self.batch.sort_unstable();
        let vocab = self.model.config.vocab;
        let logits = &mut self.logits[..self.batch.len() * vocab];
        let mut inputs = StepBatch { slots: &mut self.slots, batch: &self.batch };
        let (model, scratch) = (&self.model, &mut self.scratch);
        let ran =
            std::panic::catch_unwind(AssertUnwindSafe(|| model.forward_many(&mut inputs, scratch, logits)));
        let error = match ran {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{}: {}", self.name, error_chain(&e))),
            Err(panic) => Some(panic_message(panic)),
        };
        if let Some(error) = error {
            // Every sequence of the batch failed with it; their caches may be half written.
            for entry in &self.batch {
                self.slots[entry.slot].cache.truncate(0);
                if let Some(seq) = self.slots[entry.slot].seq.take() {
                    seq.fail(Error::Backend(error.clone()));
                }
            }
            return;
        }
        // Row `r` holds the logits of the r-th slot of the batch; move them to the slot's own row.
        for (r, entry) in self.batch.iter().enumerate().rev() {
            if r != entry.slot {
                self.logits.copy_within(r * vocab..(r + 1) * vocab, entry.slot * vocab);
            }
        }
        for b in 0..self.batch.len() {
            let slot = self.batch[b].slot;
            let read = self.slots[slot]
                .seq
                .as_ref()
                .is_some_and(|seq| seq.history().len() == self.slots[slot].cache.len());
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
        let cache_len = self.slots[slot].cache.len();
        if let Err(error) = self.check_finite(self.logits_row(slot), cache_len) {
            seq.fail(error);
            return;
        }
        let logits = &mut self.logits[slot * vocab..(slot + 1) * vocab];
        match seq.advance(logits, &self.tokenizer, cache_len, &self.name) {
            Step::Continue => self.slots[slot].seq = Some(seq),
            Step::Done(response) => seq.finish_with(response),
            Step::Failed(error) => seq.fail(error),
            Step::Abandoned => {}
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
