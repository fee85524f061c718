//! [`LocalModel`]: a GGUF model served by a scheduler thread that owns the weights, the KV
//! cache and the thread pool. Async callers only send requests and relay events, so no CPU
//! work runs on their runtime.

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
use crate::model::{KvCache, Model, Scratch};
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
}

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
        let summary = ModelSummary::new(&model, context_window, threads, quant::cpu_level().to_string());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("temper-engine-{i}"))
            .build()
            .map_err(|e| Error::Backend(format!("cannot start the engine's threads: {e}")))?;
        let worker = Worker {
            cache: KvCache::new(config.layers, config.kv_dim(), context_window),
            scratch: Scratch::new(config, context_window),
            logits: vec![0.0; config.vocab],
            tokenizer: Arc::new(tokenizer),
            name: name.to_string(),
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
            let window = self.window(&params)?;
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

    fn window(&self, params: &GenerationParams) -> Result<usize> {
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
        let text = self.render_chat(&request);
        self.generate(text, request.params, request.truncate)
    }

    fn complete_stream(&self, request: CompletionRequest) -> EventStream {
        self.generate(Ok(request.prompt), request.params, request.truncate)
    }
}

/// The scheduler thread's state: the model and everything sized for its context.
struct Worker {
    model: Model,
    cache: KvCache,
    scratch: Scratch,
    logits: Vec<f32>,
    tokenizer: Arc<Tokenizer>,
    name: String,
}

impl Worker {
    fn serve(mut self, inbox: mpsc::Receiver<Job>, pool: rayon::ThreadPool) {
        while let Ok(job) = inbox.recv() {
            pool.install(|| self.run(job));
        }
    }

    fn run(&mut self, job: Job) {
        match job {
            Job::Logits { prompt, reply } => {
                let result = self.guarded(|w| w.prefill(&prompt).map(|_| w.logits.clone()));
                let _ = reply.send(result);
            }
            Job::Generate { prompt, params, window, events, received } => {
                let result = self.guarded(|w| w.generate(&prompt, &params, window, &events, received));
                match result {
                    Ok(Some(response)) => drop(events.send(Ok(StreamEvent::Done(response)))),
                    Ok(None) => {} // the caller went away
                    Err(error) => drop(events.send(Err(error))),
                }
            }
        }
    }

    /// Runs a job, turning a panic (a bug) into an error so the scheduler keeps serving.
    fn guarded<T>(&mut self, job: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        std::panic::catch_unwind(AssertUnwindSafe(|| job(self))).unwrap_or_else(|panic| {
            self.cache.truncate(0);
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned());
            Err(Error::Backend(format!("internal engine error: {}", message.unwrap_or_default())))
        })
    }

    /// Evaluates the prompt, reusing the cached keys and values of a shared prefix, and leaves
    /// the last position's logits in `self.logits`. Returns how many tokens were evaluated.
    fn prefill(&mut self, prompt: &[u32]) -> Result<usize> {
        let shared = self.cache.tokens().iter().zip(prompt).take_while(|(a, b)| a == b).count();
        // The last prompt token always runs: its logits are what comes next.
        let reuse = shared.min(prompt.len() - 1);
        self.cache.truncate(reuse);
        let fresh = &prompt[reuse..];
        self.model
            .forward(&mut self.cache, fresh, &mut self.scratch, &mut self.logits)
            .map_err(|e| Error::Backend(format!("{}: {e}", self.name)))?;
        Ok(fresh.len())
    }

    fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenerationParams,
        window: usize,
        events: &Events,
        received: Instant,
    ) -> Result<Option<ChatResponse>> {
        let prefill_start = Instant::now();
        let evaluated = self.prefill(prompt)?;
        let prefill_secs = prefill_start.elapsed().as_secs_f64();

        let mut sampler = Sampler::new(params);
        let mut history = prompt.to_vec();
        let mut utf8 = Utf8Decoder::default();
        let mut stops = StopMatcher::new(&params.stop);
        let max_tokens = params.max_tokens.map_or(usize::MAX, |m| m as usize);
        let mut text = String::new();
        let mut generated = 0usize;
        let mut first_token_at = None;
        let mut hit_stop = false;
        let emit = |text: &mut String, piece: String| -> bool {
            if piece.is_empty() {
                return true;
            }
            text.push_str(&piece);
            events.send(Ok(StreamEvent::Delta(piece))).is_ok()
        };

        let finish_reason = loop {
            if events.is_closed() {
                return Ok(None);
            }
            let token = sampler.sample(&mut self.logits, &history);
            first_token_at.get_or_insert_with(Instant::now);
            if self.tokenizer.is_end_of_generation(token) {
                break FinishReason::Stop;
            }
            generated += 1;
            history.push(token);
            let outcome = stops.push(&utf8.push(&self.tokenizer.token_bytes(token)));
            if !emit(&mut text, outcome.text) {
                return Ok(None);
            }
            if outcome.stopped {
                hit_stop = true;
                break FinishReason::Stop;
            }
            if generated >= max_tokens || self.cache.len() >= window {
                break FinishReason::Length;
            }
            self.model
                .forward(&mut self.cache, &[token], &mut self.scratch, &mut self.logits)
                .map_err(|e| Error::Backend(format!("{}: {e}", self.name)))?;
        };
        if !hit_stop {
            let tail = stops.push(&utf8.finish());
            let mut rest = tail.text;
            if !tail.stopped {
                rest.push_str(&stops.finish());
            }
            if !emit(&mut text, rest) {
                return Ok(None);
            }
        }

        let first = first_token_at.unwrap_or_else(Instant::now);
        let decode_secs = first.elapsed().as_secs_f64();
        let per_second = |n: usize, secs: f64| if secs > 0.0 && n > 0 { n as f64 / secs } else { 0.0 };
        Ok(Some(ChatResponse {
            model: self.name.clone(),
            text,
            finish_reason,
            usage: Usage { prompt_tokens: prompt.len() as u32, completion_tokens: generated as u32 },
            timings: Timings {
                ttft_ms: first.duration_since(received).as_secs_f64() * 1000.0,
                prefill_tokens_per_second: per_second(evaluated, prefill_secs),
                decode_tokens_per_second: per_second(generated.saturating_sub(1), decode_secs),
            },
            cost: None,
        }))
    }
}
