//! The agent loop: a model call, the tools it called (at once, each started as soon as the
//! model has written it), their results back as tool messages, and again, until the model
//! answers in text or a limit ends the run. Every step is an [`Event`] as it happens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use serde_json::Value;
use temper_core::{
    ChatModel, ChatRequest, ChatResponse, GenerationParams, Message, Role, StreamEvent, ToolCall, ToolChoice,
    Usage,
};
use tokio::task::JoinHandle;

use crate::threads::{Thread, ThreadError, Threads};
use crate::tool::{clip, ToolError, Toolbox};

/// What an agent may spend on one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Model calls that may call tools. When they are used up, one more call answers without
    /// tools, so that a run always ends with an answer.
    pub max_steps: usize,
    /// Prompt and completion tokens over every model call of the run.
    pub max_tokens: Option<u64>,
    /// USD over every model call of the run (models with prices only).
    pub max_cost: Option<f64>,
    /// Wall time of the whole run.
    pub max_time: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_steps: 8, max_tokens: None, max_cost: None, max_time: None }
    }
}

/// The limit that ended a run before the model answered on its own.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "limit", rename_all = "snake_case")]
pub enum Stop {
    Steps { max: usize },
    Tokens { max: u64, used: u64 },
    Cost { max: f64, used: f64 },
    Time { max_ms: u64 },
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Steps { max } => write!(f, "the step limit ({max} steps with tools) was reached"),
            Stop::Tokens { max, used } => {
                write!(f, "the token limit ({max}) was reached: {used} tokens used")
            }
            Stop::Cost { max, used } => write!(f, "the cost limit (${max}) was reached: ${used:.6} spent"),
            Stop::Time { max_ms } => {
                write!(f, "the time limit ({:.1} s) was reached", *max_ms as f64 / 1000.0)
            }
        }
    }
}

/// How an agent asks its model.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// The system message; `None` is [`DEFAULT_SYSTEM`].
    pub system: Option<String>,
    pub params: GenerationParams,
    pub limits: Limits,
    /// Whether one turn may call several tools (unset: the backend's default).
    pub parallel_tool_calls: Option<bool>,
    /// The first model call must call a tool (the later ones may answer): for tasks known to
    /// need one, and for small models that would rather guess.
    pub require_tool: bool,
    /// A tool result longer than this many characters reaches the model cut, with a note.
    pub max_result_chars: usize,
    /// In a thread: the most tokens of earlier turns to send as they are; beyond it, the older
    /// ones are folded into a summary. `None` sends them all.
    pub history_tokens: Option<usize>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            system: None,
            params: GenerationParams::default(),
            limits: Limits::default(),
            parallel_tool_calls: None,
            require_tool: false,
            max_result_chars: 8_000,
            history_tokens: None,
        }
    }
}

/// The system message of an agent that was given none.
pub const DEFAULT_SYSTEM: &str = "You are a helpful assistant that solves tasks with tools. Call a tool \
whenever it can give a more reliable answer than you can (arithmetic, searches, code, files). When the \
tool results are enough, answer the task directly and briefly.";

/// What the last call may be told when the step limit is reached.
const ANSWER_NOW: &str = "You have used all your tool calls. Answer the task now, as well as you can, \
from the tool results above.";

/// What the model is asked when a thread's older turns are folded into a summary.
const SUMMARISE: &str = "Summarise the conversation below for your own later use: the user's requests, \
the facts and tool results that matter, what was decided and what is still open. Be brief.";

/// The most tokens a summary may take.
const SUMMARY_TOKENS: u32 = 300;

/// A message's tokens, estimated at four characters a token (the common rule for English with
/// BPE tokenizers) plus a few for its role: enough to decide when to fold a thread.
fn estimated_tokens(message: &Message) -> usize {
    let calls: usize = message.tool_calls.iter().map(|c| c.name.len() + c.arguments.len()).sum();
    (message.content.len() + calls) / 4 + 4
}

/// Where a run in a thread writes its conversation as it grows.
struct Transcript<'a> {
    threads: &'a mut Threads,
    name: &'a str,
    /// How many of the run's messages the thread already holds.
    written: usize,
}

impl Transcript<'_> {
    fn write(&mut self, messages: &[Message]) -> Result<(), AgentError> {
        self.threads.append(self.name, &messages[self.written..])?;
        self.written = messages.len();
        Ok(())
    }
}

/// One step of a run, as it happens.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// More text from the model.
    Text { delta: String },
    /// The model's text so far is void: its backend starts again (a fallback).
    Restart { reason: String },
    /// A model call ended.
    ModelDone { step: usize, usage: Usage, duration_ms: f64 },
    /// The model called a tool; it runs from now on.
    ToolCall { id: String, tool: String, arguments: String },
    /// A tool call ended.
    ToolResult {
        id: String,
        tool: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        duration_ms: f64,
    },
    /// The run ended: the answer, and the limit that ended it if one did.
    Answer {
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        stopped: Option<Stop>,
    },
}

/// A step of a finished run: a model call or a tool call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// `model`, `tool`, or `summary` (a thread's older turns folded before the run).
    pub kind: &'static str,
    pub tool: Option<String>,
    /// The arguments as the model wrote them (JSON when they parse, else the text).
    pub arguments: Option<Value>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub duration_ms: f64,
    /// A model or summary step's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A model step's tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl Step {
    /// A call of the model: a turn (`model`) or a thread's summary (`summary`).
    fn model_call(kind: &'static str, response: &ChatResponse, duration_ms: f64) -> Step {
        Step {
            kind,
            tool: None,
            arguments: None,
            result: None,
            error: None,
            duration_ms,
            text: Some(response.text.clone()),
            usage: Some(response.usage),
        }
    }
}

/// Where a run's time went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TimeSplit {
    pub total_ms: f64,
    /// In model calls.
    pub model_ms: f64,
    /// Waiting for tools (calls of one turn overlap, so this is wall time, not their sum).
    pub tools_ms: f64,
    /// Everything else: the loop itself.
    pub loop_ms: f64,
}

/// A finished run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    pub answer: String,
    /// Set when a limit ended the run.
    pub stopped: Option<Stop>,
    pub steps: Vec<Step>,
    pub usage: Usage,
    /// USD, when the model has prices.
    pub cost: Option<f64>,
    pub time: TimeSplit,
    /// The conversation with every call and result, ready to continue: each assistant turn
    /// that called tools is followed by a result for every call.
    #[serde(skip)]
    pub messages: Vec<Message>,
}

/// A run that could not go on.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the task is empty: there is nothing to do")]
    EmptyTask,
    #[error("model call {step} failed: {source}")]
    Model { step: usize, source: temper_core::Error },
    #[error(transparent)]
    Thread(#[from] ThreadError),
}

/// A model with tools, and how to run them.
pub struct Agent {
    model: Arc<dyn ChatModel>,
    tools: Toolbox,
    options: AgentOptions,
}

impl Agent {
    pub fn new(model: Arc<dyn ChatModel>, tools: Toolbox, options: AgentOptions) -> Self {
        Agent { model, tools, options }
    }

    pub fn tools(&self) -> &Toolbox {
        &self.tools
    }

    /// Runs `task`, calling `on_event` for every step as it happens.
    pub async fn run(
        &self,
        task: &str,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Run, AgentError> {
        if task.trim().is_empty() {
            return Err(AgentError::EmptyTask);
        }
        let system = self.options.system.as_deref().unwrap_or(DEFAULT_SYSTEM);
        self.resume(vec![Message::system(system), Message::user(task)], on_event).await
    }

    /// Continues `messages` (a conversation ending with the user's turn, or with tool results).
    pub async fn resume(
        &self,
        messages: Vec<Message>,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Run, AgentError> {
        self.drive(Running::new(messages, &self.options.limits), None, on_event).await
    }

    /// Runs `task` as the next turn of the thread `name` of `threads` (a new thread if there is
    /// none). The task is stored first, then each step as it ends (a tool call with its
    /// results, the answer), so a run killed at any moment loses at most the step it was in.
    /// When the thread has outgrown [`AgentOptions::history_tokens`], its older turns are first
    /// folded into a summary the model writes.
    pub async fn run_in_thread(
        &self,
        threads: &mut Threads,
        name: &str,
        task: &str,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Run, AgentError> {
        if task.trim().is_empty() {
            return Err(AgentError::EmptyTask);
        }
        let mut thread = threads.load(name)?.unwrap_or_default();
        let mut run = Running::new(Vec::new(), &self.options.limits);
        if let Some(budget) = self.options.history_tokens {
            if let Some((summary, upto)) = self.fold(&thread, budget, &mut run).await? {
                threads.set_summary(name, &summary, upto)?;
                (thread.summary, thread.summarized_upto) = (Some(summary), upto);
            }
        }
        let task = Message::user(task);
        threads.append(name, std::slice::from_ref(&task))?;
        let mut system = self.options.system.as_deref().unwrap_or(DEFAULT_SYSTEM).to_owned();
        if let Some(summary) = &thread.summary {
            system.push_str(&format!("\n\nA summary of the earlier conversation:\n{summary}"));
        }
        run.messages = std::iter::once(Message::system(system))
            .chain(thread.messages.drain(thread.summarized_upto..))
            .chain([task])
            .collect();
        let written = run.messages.len();
        self.drive(run, Some(Transcript { threads, name, written }), on_event).await
    }

    /// The loop, from `run` as it stands.
    async fn drive(
        &self,
        mut run: Running,
        mut transcript: Option<Transcript<'_>>,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Run, AgentError> {
        let limits = &self.options.limits;
        let stopped = loop {
            if let Some(stop) = run.over_budget(limits) {
                break Some(stop);
            }
            let tool_turn = run.model_steps < limits.max_steps;
            let Some(response) = self.model_turn(&mut run, tool_turn, on_event).await? else {
                break run.over_budget(limits);
            };
            if !tool_turn {
                // The answer the step limit asked for; calls a backend made anyway are not run.
                run.abort_pending();
                run.answer = response.text;
                break Some(Stop::Steps { max: limits.max_steps });
            }
            if response.tool_calls.is_empty() {
                run.answer = response.text;
                break None;
            }
            run.messages
                .push(Message::assistant_tool_calls(response.text.clone(), response.tool_calls.clone()));
            if !response.text.trim().is_empty() {
                run.best = response.text;
            }
            let stop = self.tool_results(&mut run, on_event).await;
            if let Some(transcript) = &mut transcript {
                transcript.write(&run.messages)?;
            }
            if let Some(stop) = stop {
                break Some(stop);
            }
        };
        let answer = if run.answer.trim().is_empty() { run.best.clone() } else { run.answer.clone() };
        if !answer.is_empty() {
            run.messages.push(Message::assistant(answer.clone()));
        }
        if let Some(transcript) = &mut transcript {
            transcript.write(&run.messages)?;
        }
        on_event(&Event::Answer { text: answer.clone(), stopped: stopped.clone() });
        Ok(run.finish(answer, stopped))
    }

    /// A summary of the thread's older turns and how many messages it covers, when the turns
    /// not yet summarised hold more than `budget` tokens (estimated at four characters a token).
    /// The newest turns, up to half the budget, stay as they are; the cut falls before a user
    /// turn, so that no call is parted from its result.
    async fn fold(
        &self,
        thread: &Thread,
        budget: usize,
        run: &mut Running,
    ) -> Result<Option<(String, usize)>, AgentError> {
        let open = &thread.messages[thread.summarized_upto..];
        if open.iter().map(estimated_tokens).sum::<usize>() <= budget {
            return Ok(None);
        }
        let mut kept = 0;
        let mut cut = None;
        for (i, message) in open.iter().enumerate().rev() {
            kept += estimated_tokens(message);
            if kept > budget / 2 {
                break;
            }
            if message.role == Role::User && i > 0 {
                cut = Some(i);
            }
        }
        // With no user turn among the newest, fold all but the last turn's own messages.
        let Some(cut) = cut.or_else(|| open.iter().rposition(|m| m.role == Role::User).filter(|&i| i > 0))
        else {
            return Ok(None);
        };
        let mut transcript = String::new();
        if let Some(summary) = &thread.summary {
            transcript.push_str(&format!("Summary so far: {summary}\n\n"));
        }
        for message in &open[..cut] {
            transcript.push_str(&format!("{}: {}\n", message.role, clip(&message.content, 2_000)));
            for call in &message.tool_calls {
                transcript.push_str(&format!("(called {} with {})\n", call.name, clip(&call.arguments, 500)));
            }
        }
        let request =
            ChatRequest::new(vec![Message::system(SUMMARISE), Message::user(transcript)]).with_params(
                GenerationParams { max_tokens: Some(SUMMARY_TOKENS), ..self.options.params.clone() },
            );
        let started = Instant::now();
        let response =
            self.model.chat(request).await.map_err(|source| AgentError::Model { step: 0, source })?;
        let duration_ms = ms(started.elapsed());
        run.model_ms += duration_ms;
        run.add_usage(&response);
        run.steps.push(Step::model_call("summary", &response, duration_ms));
        Ok(Some((response.text.trim().to_owned(), thread.summarized_upto + cut)))
    }

    /// One model call. Tool calls it writes start as soon as each is whole; they are left in
    /// `run.pending`. `None` when the time limit cut the call.
    async fn model_turn(
        &self,
        run: &mut Running,
        tool_turn: bool,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Option<ChatResponse>, AgentError> {
        let mut request = ChatRequest::new(run.messages.clone()).with_params(self.options.params.clone());
        if !self.tools.is_empty() {
            // The tools stay declared on the last call, so that the history's calls make sense to
            // the model, but it may not call them.
            let choice = match tool_turn {
                false => ToolChoice::None,
                true if run.model_steps == 0 && self.options.require_tool => ToolChoice::Required,
                true => ToolChoice::Auto,
            };
            request = request.with_tools(self.tools.specs(), choice);
            request.parallel_tool_calls = self.options.parallel_tool_calls;
            if !tool_turn {
                request.messages.push(Message::user(ANSWER_NOW));
            }
        }
        run.model_steps += 1;
        let step = run.model_steps;
        let started = Instant::now();
        let mut stream = self.model.chat_stream(request);
        let mut streamed: Vec<PartialCall> = Vec::new();
        let response = loop {
            let event = match run.deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline.into(), stream.next()).await {
                    Ok(event) => event,
                    Err(_) => {
                        run.model_ms += ms(started.elapsed());
                        run.abort_pending();
                        return Ok(None);
                    }
                },
                None => stream.next().await,
            };
            let event = match event {
                Some(Ok(event)) => event,
                Some(Err(source)) => {
                    run.abort_pending();
                    return Err(AgentError::Model { step, source });
                }
                None => {
                    run.abort_pending();
                    let source =
                        temper_core::Error::Backend("the stream ended before the answer was complete".into());
                    return Err(AgentError::Model { step, source });
                }
            };
            match event {
                StreamEvent::Delta(delta) => on_event(&Event::Text { delta }),
                StreamEvent::Restart { reason } => {
                    // The calls streamed so far are void too; stop the ones already running.
                    run.abort_pending();
                    streamed.clear();
                    on_event(&Event::Restart { reason });
                }
                StreamEvent::ToolCall(delta) => {
                    if streamed.len() <= delta.index {
                        streamed.resize_with(delta.index + 1, PartialCall::default);
                    }
                    let call = &mut streamed[delta.index];
                    call.id = delta.id.or(call.id.take());
                    call.name = delta.name.or(call.name.take());
                    call.arguments.push_str(&delta.arguments);
                    // A call is whole once a later one begins.
                    let whole: Vec<ToolCall> = (run.pending.len()..delta.index)
                        .map(|index| streamed[index].to_call(step, index))
                        .collect();
                    for call in whole {
                        self.start(run, call, on_event);
                    }
                }
                StreamEvent::Done(response) => break response,
            }
        };
        let duration_ms = ms(started.elapsed());
        run.model_ms += duration_ms;
        run.add_usage(&response);
        // The final response holds the calls whole: they are what the history records. Start those
        // not yet started (and restart any that streamed differently, which a backend should not do).
        let mut calls = response.tool_calls.clone();
        for (index, call) in calls.iter_mut().enumerate() {
            if call.id.is_empty() {
                call.id = call_id(step, index);
            }
            let started = run.pending.get(index).is_some_and(|p| p.call == *call);
            if !started {
                if let Some(pending) = run.pending.get_mut(index) {
                    pending.handle.abort();
                }
                run.pending.truncate(index);
                self.start(run, call.clone(), on_event);
            }
        }
        run.pending.truncate(calls.len());
        run.steps.push(Step::model_call("model", &response, duration_ms));
        on_event(&Event::ModelDone { step, usage: response.usage, duration_ms });
        Ok(Some(ChatResponse { tool_calls: calls, ..response }))
    }

    /// Starts `call` on its own task.
    fn start(&self, run: &mut Running, call: ToolCall, on_event: &mut (dyn FnMut(&Event) + Send)) {
        on_event(&Event::ToolCall {
            id: call.id.clone(),
            tool: call.name.clone(),
            arguments: call.arguments.clone(),
        });
        let tools = self.tools.clone();
        let (name, arguments) = (call.name.clone(), call.arguments.clone());
        let handle = tokio::spawn(async move {
            let started = Instant::now();
            let outcome = tools.call(&name, &arguments).await;
            (outcome, ms(started.elapsed()))
        });
        run.pending.push(Pending { call, handle });
    }

    /// Waits for the started calls, reporting each as it ends, and appends their results to
    /// the conversation in call order. A time limit reached meanwhile stops the calls still
    /// running; they get a result saying so, so that the history has no call without one.
    async fn tool_results(
        &self,
        run: &mut Running,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Option<Stop> {
        let started = Instant::now();
        let calls: Vec<ToolCall> = run.pending.iter().map(|p| p.call.clone()).collect();
        let mut outcomes: Vec<Option<(Result<Value, ToolError>, f64)>> = vec![None; calls.len()];
        let (deadline, time_stop) = (run.deadline, run.time_stop());
        // The handles stay in the run, so that a run dropped here (its caller gave up) aborts them.
        let mut running: FuturesUnordered<_> = run
            .pending
            .iter_mut()
            .enumerate()
            .map(|(index, p)| async move { (index, (&mut p.handle).await) })
            .collect();
        let mut stopped = None;
        loop {
            let next = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline.into(), running.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        stopped = time_stop;
                        break;
                    }
                },
                None => running.next().await,
            };
            let Some((index, joined)) = next else { break };
            let outcome = joined.unwrap_or_else(|e| {
                let why = if e.is_panic() { "the tool panicked" } else { "the tool was stopped" };
                (Err(ToolError::Failed(why.into())), 0.0)
            });
            let (result, duration_ms) = &outcome;
            let call = &calls[index];
            on_event(&Event::ToolResult {
                id: call.id.clone(),
                tool: call.name.clone(),
                result: result.as_ref().ok().cloned(),
                error: result.as_ref().err().map(ToString::to_string),
                duration_ms: *duration_ms,
            });
            outcomes[index] = Some(outcome);
        }
        // Calls still running when the time limit came are stopped.
        drop(running);
        run.abort_pending();
        for (call, outcome) in calls.iter().zip(outcomes) {
            let (result, duration_ms) = outcome.unwrap_or_else(|| {
                (Err(ToolError::Failed("not finished: the run's time limit was reached".into())), 0.0)
            });
            let content = match &result {
                Ok(value) => value.to_string(),
                Err(error) => serde_json::json!({ "error": error.to_string() }).to_string(),
            };
            run.messages.push(Message::tool_result(&call.id, self.cut(content)));
            run.steps.push(Step {
                kind: "tool",
                tool: Some(call.name.clone()),
                arguments: Some(
                    serde_json::from_str(&call.arguments)
                        .unwrap_or_else(|_| Value::String(call.arguments.clone())),
                ),
                error: result.as_ref().err().map(ToString::to_string),
                result: result.ok(),
                duration_ms,
                text: None,
                usage: None,
            });
        }
        run.tools_ms += ms(started.elapsed());
        stopped
    }

    /// `content`, cut to the options' length with a note saying so.
    fn cut(&self, content: String) -> String {
        let max = self.options.max_result_chars;
        let total = content.chars().count();
        if total <= max {
            return content;
        }
        format!("{} [cut: {} of {total} characters shown]", clip(&content, max), max)
    }
}

/// A tool call as it streams in.
#[derive(Default)]
struct PartialCall {
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

impl PartialCall {
    fn to_call(&self, step: usize, index: usize) -> ToolCall {
        ToolCall {
            id: self.id.clone().filter(|id| !id.is_empty()).unwrap_or_else(|| call_id(step, index)),
            name: self.name.clone().unwrap_or_default(),
            arguments: self.arguments.clone(),
        }
    }
}

/// The id of a call whose backend gave it none.
fn call_id(step: usize, index: usize) -> String {
    format!("call_{step}_{index}")
}

/// A started call.
struct Pending {
    call: ToolCall,
    handle: JoinHandle<(Result<Value, ToolError>, f64)>,
}

/// The state of a run in progress.
struct Running {
    messages: Vec<Message>,
    steps: Vec<Step>,
    pending: Vec<Pending>,
    model_steps: usize,
    usage: Usage,
    cost: Option<f64>,
    answer: String,
    /// The last text the model wrote beside tool calls: the answer if a limit ends the run.
    best: String,
    started: Instant,
    deadline: Option<Instant>,
    model_ms: f64,
    tools_ms: f64,
}

impl Running {
    fn new(messages: Vec<Message>, limits: &Limits) -> Self {
        let started = Instant::now();
        Running {
            messages,
            steps: Vec::new(),
            pending: Vec::new(),
            model_steps: 0,
            usage: Usage::default(),
            cost: None,
            answer: String::new(),
            best: String::new(),
            started,
            deadline: limits.max_time.map(|t| started + t),
            model_ms: 0.0,
            tools_ms: 0.0,
        }
    }

    fn add_usage(&mut self, response: &ChatResponse) {
        self.usage.prompt_tokens += response.usage.prompt_tokens;
        self.usage.completion_tokens += response.usage.completion_tokens;
        if let Some(cost) = response.cost {
            self.cost = Some(self.cost.unwrap_or(0.0) + cost);
        }
    }

    fn tokens(&self) -> u64 {
        u64::from(self.usage.prompt_tokens) + u64::from(self.usage.completion_tokens)
    }

    fn time_stop(&self) -> Option<Stop> {
        let max = self.deadline? - self.started;
        Some(Stop::Time { max_ms: max.as_millis() as u64 })
    }

    /// The limit the run has reached, if any. The step limit never stops a run here: it makes
    /// the next call answer without tools.
    fn over_budget(&self, limits: &Limits) -> Option<Stop> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return self.time_stop();
        }
        if let Some(max) = limits.max_tokens.filter(|&max| self.tokens() >= max) {
            return Some(Stop::Tokens { max, used: self.tokens() });
        }
        if let (Some(max), Some(used)) = (limits.max_cost, self.cost) {
            if used >= max {
                return Some(Stop::Cost { max, used });
            }
        }
        None
    }

    fn abort_pending(&mut self) {
        for pending in self.pending.drain(..) {
            pending.handle.abort();
        }
    }

    fn finish(mut self, answer: String, stopped: Option<Stop>) -> Run {
        let total_ms = ms(self.started.elapsed());
        Run {
            answer,
            stopped,
            steps: std::mem::take(&mut self.steps),
            usage: self.usage,
            cost: self.cost,
            time: TimeSplit {
                total_ms,
                model_ms: self.model_ms,
                tools_ms: self.tools_ms,
                loop_ms: (total_ms - self.model_ms - self.tools_ms).max(0.0),
            },
            messages: std::mem::take(&mut self.messages),
        }
    }
}

/// A run dropped mid-call (its caller gave up on it) stops the tools it started.
impl Drop for Running {
    fn drop(&mut self) {
        self.abort_pending();
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
