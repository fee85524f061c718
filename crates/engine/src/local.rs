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

mod scheduler;
mod sequence;

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use temper_core::{
    error_chain, ChatModel, ChatRequest, CompletionRequest, Error, EventStream, GenerationParams, Message,
    ResponseFormat, Result, Role, TokenCounter, ToolChoice,
};
use tokio::sync::mpsc::unbounded_channel;

use crate::constraint::{self, Grammars};
use crate::gguf::Gguf;
use crate::model::{KvCache, Model, MAX_BATCH};
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use crate::tool_calls;
use crate::{memory, summary::ModelSummary};
use scheduler::{Decoding, Job, Request, Worker};

/// The context window used when neither the caller nor the request sets one.
pub const DEFAULT_CONTEXT_WINDOW: usize = 4096;

/// How to load a local model.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Worker threads for the forward pass; `None` uses every core, and more than the cores are
    /// cut down to them (with a warning, see [`LocalModel::warnings`]).
    pub threads: Option<usize>,
    /// Tokens of context to allocate; `None` uses the trained context, at most 4096. More than
    /// the trained context is refused.
    pub context_window: Option<usize>,
    /// Sequences generated together (each gets a KV cache of the full context window, allocated
    /// as it fills); `None` means [`DEFAULT_SEQUENCES`].
    pub sequences: Option<usize>,
}

/// Sequences decoded together when the caller does not say.
pub const DEFAULT_SEQUENCES: usize = 4;

/// A GGUF model running on Temper's engine.
pub struct LocalModel {
    name: String,
    summary: ModelSummary,
    warnings: Vec<String>,
    tokenizer: Arc<Tokenizer>,
    template: std::result::Result<ChatTemplate, String>,
    /// Compiles the grammars of constrained answers for this model's vocabulary.
    grammars: Grammars,
    jobs: mpsc::Sender<Job>,
}

impl LocalModel {
    /// Loads a GGUF file and starts its scheduler thread.
    pub fn load(path: &Path, name: &str, options: LoadOptions) -> Result<LocalModel> {
        let invalid = |reason: String| Error::invalid_model(path, reason);
        let gguf = Gguf::open(path).map_err(|e| invalid(error_chain(&e)))?;
        let tokenizer =
            Tokenizer::from_gguf(&gguf).map_err(|e| invalid(format!("tokenizer: {}", error_chain(&e))))?;
        let template = ChatTemplate::from_gguf(&gguf, &tokenizer).map_err(|e| error_chain(&e));
        let model = Model::from_gguf(gguf).map_err(|e| invalid(error_chain(&e)))?;
        let config = &model.config;
        if tokenizer.vocab_size() != config.vocab {
            return Err(invalid(format!(
                "the tokenizer has {} tokens but the model's output has {}",
                tokenizer.vocab_size(),
                config.vocab
            )));
        }
        let mut warnings = Vec::new();
        let threads = thread_count(options.threads, &mut warnings)?;
        let trained = config.trained_context;
        let context_window = options.context_window.unwrap_or(trained.min(DEFAULT_CONTEXT_WINDOW));
        if context_window == 0 {
            return Err(Error::invalid_param("context_window", "must be at least 1"));
        }
        if context_window > trained {
            return Err(Error::invalid_param(
                "context_window",
                format!(
                    "{context_window} tokens is more than the {trained} {name} was trained on, and positions \
                     past those give meaningless output; a context window of {trained} tokens or less works"
                ),
            ));
        }
        let sequences = options.sequences.unwrap_or(DEFAULT_SEQUENCES);
        if !(1..=MAX_BATCH).contains(&sequences) {
            return Err(Error::invalid_param("sequences", format!("must be between 1 and {MAX_BATCH}")));
        }
        let cache_bytes = KvCache::bytes_for(config.layers, config.kv_dim(), context_window);
        if let Some(available) = memory::available() {
            check_cache_memory(cache_bytes, sequences, context_window, available, &mut warnings)?;
        }
        let summary =
            ModelSummary::new(&model, context_window, threads, temper_kernels::cpu_level().to_string());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("temper-engine-{i}"))
            .build()
            .map_err(|e| Error::Backend(format!("cannot start the engine's threads: {e}")))?;
        let tokenizer = Arc::new(tokenizer);
        let worker = Worker::new(model, tokenizer.clone(), name, path, sequences, context_window);
        let (jobs, inbox) = mpsc::channel();
        std::thread::Builder::new()
            .name("temper-scheduler".into())
            .spawn(move || worker.serve(inbox, pool))
            .map_err(|e| Error::Backend(format!("cannot start the engine's scheduler: {e}")))?;
        let grammars = Grammars::new(tokenizer.clone());
        Ok(LocalModel { name: name.to_string(), summary, warnings, tokenizer, template, grammars, jobs })
    }

    /// The model with the Jinja `source` as its chat template instead of the GGUF's: for a
    /// model whose template comes from elsewhere (an Ollama model's template layer).
    pub fn with_chat_template(mut self, source: &str) -> Result<LocalModel> {
        let template = ChatTemplate::for_tokenizer(source, &self.tokenizer)
            .map_err(|e| Error::Backend(format!("chat template: {}", error_chain(&e))))?;
        self.template = Ok(template);
        Ok(self)
    }

    pub fn summary(&self) -> &ModelSummary {
        &self.summary
    }

    /// What loading adjusted or found doubtful, for the caller to show: threads cut down to the
    /// cores, sequences whose caches may not all fit in memory.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Token ids of `text`, with no beginning-of-sequence token; `parse_special` turns text
    /// like `<|im_start|>` into the special token.
    pub fn tokenize(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        self.tokenizer.encode(text, parse_special).map_err(|e| Error::Backend(format!("tokenizer: {e}")))
    }

    /// The conversation as the model's chat template renders it, ready to continue, with the
    /// tools it offers (see [`crate::tool_calls`]).
    pub fn render_chat(&self, request: &ChatRequest) -> Result<String> {
        let template = self
            .template
            .as_ref()
            .map_err(|reason| Error::Unsupported(format!("{}: {reason}", self.name)))?;
        let talks_tools = !request.tools.is_empty()
            || request.messages.iter().any(|m| !m.tool_calls.is_empty() || m.role == Role::Tool);
        let rendered = if !talks_tools || template.renders_tools() {
            let tools = if request.tool_choice == ToolChoice::None { &[][..] } else { &request.tools };
            template.render_with_tools(&request.messages, tools, true)
        } else {
            let messages =
                tool_calls::describe_tools(&request.messages, &request.tools, &request.tool_choice);
            template.render(&messages, true)
        };
        rendered.map_err(|e| Error::Backend(format!("chat template: {e}")))
    }

    /// How the answer to `request` is decoded: the grammar of its tools or response format,
    /// compiled now so that a schema or grammar that cannot be enforced fails before any token.
    fn decoding(&self, request: &ChatRequest) -> Result<Decoding> {
        let format = request.structured_format();
        let parallel = request.parallel_tool_calls == Some(true);
        let (grammar, reads_calls) =
            match tool_calls::tool_grammar(&request.tools, &request.tool_choice, parallel, format) {
                Some(grammar) => (Some(grammar), true),
                None => (format.and_then(constraint::format_grammar), false),
            };
        let what = if reads_calls { "tools" } else { "response_format" };
        let guide = grammar
            .map(|g| self.grammars.compile(g, what))
            .transpose()
            .map_err(|error| placed(error, request, reads_calls))?;
        Ok(Decoding { logprobs: request.logprobs, guide, reads_calls })
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
        text: Result<(String, Decoding)>,
        params: GenerationParams,
        truncate: bool,
    ) -> EventStream {
        let (events, stream) = unbounded_channel();
        let job = text.and_then(|(text, decoding)| {
            params.validate()?;
            let window = self.context_window_for(&params)?;
            let mut prompt = self.prompt_ids(&text)?;
            fit_context(&mut prompt, window, &params, truncate, self.tokenizer.add_bos())?;
            let received = Instant::now();
            let events = events.clone();
            Ok(Job::Generate(Request { prompt, params, window, decoding, events, received }))
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
                format!(
                    "{w} is larger than the {loaded} tokens this model was loaded with; load it with a larger \
                     context window"
                ),
            )),
            Some(w) => Ok(w),
            None => Ok(loaded),
        }
    }
}

/// What a local model reads for a conversation: the text after its chat template, that
/// text's tokens, and the context window it must fit in.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FinalPrompt {
    pub text: String,
    pub tokens: usize,
    pub context_window: usize,
}

impl LocalModel {
    /// `messages` as this model reads them, with the window a request with `params` gets.
    pub fn final_prompt(&self, messages: &[Message], params: &GenerationParams) -> Result<FinalPrompt> {
        let text = self.render_chat(&ChatRequest::new(messages.to_vec()))?;
        let tokens = self.rendered_tokens(&text)?;
        Ok(FinalPrompt { text, tokens, context_window: self.context_window_for(params)? })
    }

    /// Tokens of a conversation the chat template has rendered, counted as `prompt_ids` makes
    /// them: the beginning-of-sequence token when the model wants one and the template did not
    /// print it.
    fn rendered_tokens(&self, text: &str) -> Result<usize> {
        let ids = self.tokenize(text, true)?;
        let bos = self.tokenizer.bos_id().filter(|_| self.tokenizer.add_bos());
        Ok(ids.len() + usize::from(bos.is_some() && ids.first() != bos.as_ref()))
    }
}

/// A local model counts with its chat template and tokenizer, as it does before generating.
impl TokenCounter for LocalModel {
    fn count_text(&self, text: &str) -> Result<usize> {
        Ok(self.tokenize(text, false)?.len())
    }

    fn count_messages(&self, messages: &[Message]) -> Result<usize> {
        self.rendered_tokens(&self.render_chat(&ChatRequest::new(messages.to_vec()))?)
    }

    fn context_window(&self) -> Option<usize> {
        Some(self.summary.context_window)
    }
}

/// A refusal of the request's tools or schema, named by the JSON pointer of what it is about
/// when the grammar engine names a keyword or a type (`tools[1].parameters/properties/x`).
fn placed(error: Error, request: &ChatRequest, tools: bool) -> Error {
    let Error::InvalidParam { name, reason } = error else { return error };
    let schemas: Vec<(String, &serde_json::Value)> = match request.structured_format() {
        _ if tools => request
            .tools
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("tools[{i}].parameters"), &t.parameters))
            .collect(),
        Some(ResponseFormat::JsonSchema { schema, .. }) => vec![("response_format.schema".into(), schema)],
        _ => Vec::new(),
    };
    let place =
        schemas.iter().find_map(|(at, schema)| Some(format!("{at}{}", constraint::locate(schema, &reason)?)));
    Error::InvalidParam { name: place.unwrap_or(name), reason }
}

/// The threads to run on: every core by default, and no more than the cores, since more only
/// make the threads wait for each other (a warning says so).
fn thread_count(asked: Option<usize>, warnings: &mut Vec<String>) -> Result<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match asked {
        None => Ok(cores),
        Some(0) => Err(Error::invalid_param("threads", "must be at least 1")),
        Some(n) if n > cores => {
            warnings
                .push(format!("{n} threads asked for, but this machine has {cores} cores: using {cores}"));
            Ok(cores)
        }
        Some(n) => Ok(n),
    }
}

/// Refuses a context whose KV cache (`cache_bytes`) alone does not fit in the `available`
/// memory, and warns when the caches of every sequence may not: slots beyond what fits are
/// made only if memory allows when they are needed (see `Worker::free_slot`).
fn check_cache_memory(
    cache_bytes: u64,
    sequences: usize,
    context_window: usize,
    available: u64,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let human = memory::human;
    if cache_bytes > available {
        return Err(Error::invalid_param(
            "context_window",
            format!(
                "a context of {context_window} tokens needs a {} KV cache, but only {} of memory is available; \
                 a smaller context window needs less",
                human(cache_bytes),
                human(available)
            ),
        ));
    }
    let fit = (available / cache_bytes.max(1)).min(sequences as u64);
    if fit < sequences as u64 {
        warnings.push(format!(
            "{sequences} sequences of {context_window} tokens may need {} of KV cache, but {} of memory is \
             available: only {fit} are sure to fit, and requests beyond them wait for a free one",
            human(cache_bytes.saturating_mul(sequences as u64)),
            human(available)
        ));
    }
    Ok(())
}

/// Checks the prompt leaves room to generate, or, when the caller allows it, drops the oldest
/// tokens (keeping the beginning-of-sequence token) to leave room for `max_tokens`, at most
/// half the window. A window of one token cannot hold a prompt token and a generated one.
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
    const SMALLEST: usize = 2;
    if window < SMALLEST {
        return Err(Error::invalid_param(
            "context_window",
            format!(
                "{window} token cannot hold even one prompt token and one generated token; \
                 truncating needs at least {SMALLEST}"
            ),
        ));
    }
    let room = params.max_tokens.map_or(window / 4, |m| m as usize).clamp(1, window / 2);
    let keep = window - room;
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
        let prepared = request.validate().and_then(|()| {
            check_last_message(&request)?;
            Ok((self.render_chat(&request)?, self.decoding(&request)?))
        });
        self.generate(prepared, request.params, request.truncate)
    }

    /// Raw completions carry no log-probabilities: [`CompletionRequest`] has no field to ask.
    fn complete_stream(&self, request: CompletionRequest) -> EventStream {
        let text = if request.prompt.trim().is_empty() {
            Err(Error::invalid_param("prompt", "is empty, so there is no text to continue"))
        } else {
            Ok(request.prompt)
        };
        self.generate(text.map(|text| (text, Decoding::default())), request.params, request.truncate)
    }
}

/// Refuses a conversation that asks nothing: without messages, or whose last message is empty
/// (an empty prompt would otherwise generate until the context is full).
fn check_last_message(request: &ChatRequest) -> Result<()> {
    match request.messages.len().checked_sub(1) {
        None => Err(Error::invalid_param("messages", "is empty, so there is nothing to answer")),
        Some(last) if request.messages[last].content.trim().is_empty() => Err(Error::invalid_param(
            format!("messages[{last}].content"),
            "is empty, so there is nothing to answer",
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests;
