//! Running prompt × model × parameter variants over rows: every row rendered and every
//! assertion bound (once per row, for all variants) before the first model call, then the rows
//! asked concurrently within the limit (the local engine batches concurrent requests), each call
//! through the cache, each output checked by every assertion.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::{stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use temper_agent::Toolbox;
use temper_core::{
    error_chain, ChatModel, ChatRequest, EmbeddingModel, EventStream, GenerationParams, Message, Role,
    StreamEvent,
};
use temper_ground::Mode as Grounding;
use temper_prompt::{Layout, PromptFile};

use crate::agent::{self, AgentRow, AgentSpec, ToolboxMaker};
use crate::assertion::{Assertion, AssertionOutcome, Graders, Kind, Observation, Target};
use crate::cache::{Cache, CachedCall};
use crate::rag::{RagPipeline, RagRow};
use crate::{EvalError, Result, Row};

/// One prompt on one model with one set of parameters.
#[derive(Clone, Debug)]
pub struct Variant {
    pub prompt: PromptFile,
    /// A profile, catalog name or GGUF path, resolved by the evaluator's resolver.
    pub model: String,
    /// The parameters of every request, as sent.
    pub params: GenerationParams,
    /// Whether the rendered prompt is a question answered from the evaluator's RAG pipeline,
    /// and in which grounding mode.
    pub grounding: Option<Grounding>,
    /// Whether the rendered prompt is a task done by the evaluator's agent, and with which
    /// tools.
    pub tools: Option<Vec<String>>,
}

impl Variant {
    /// The prompt's name in reports: its file's path, or an inline prompt's name; with the
    /// grounding mode of a RAG variant.
    pub fn prompt_name(&self) -> String {
        let path = self.prompt.path.display();
        match (self.grounding, &self.tools) {
            (Some(mode), _) => format!("{path} (rag, grounding {mode})"),
            (None, Some(tools)) if tools.is_empty() => format!("{path} (agent, no tools)"),
            (None, Some(tools)) => format!("{path} (agent, tools {})", tools.join(", ")),
            (None, None) => path.to_string(),
        }
    }
}

/// What an evaluation checks, and how many rows it asks at once.
#[derive(Clone, Debug)]
pub struct Settings {
    pub assertions: Vec<Assertion>,
    /// The model that grades judged assertions (`llm-rubric`, `factuality`, `faithfulness`).
    pub judge: Option<String>,
    pub concurrency: usize,
    /// Whether a prompt's output schema is asked of the backend as a response format, which
    /// the local engine enforces while decoding.
    pub constrain: bool,
}

impl Settings {
    /// Refuses settings that cannot run: no assertions, weights that sum to 0, judged
    /// assertions without a judge, no concurrency.
    pub fn check(&self) -> Result<()> {
        if self.assertions.is_empty() {
            return Err(EvalError::invalid("assertions", "there are none: give at least one"));
        }
        if self.assertions.iter().map(|a| a.weight).sum::<f64>() <= 0.0 {
            return Err(EvalError::invalid("assertions", "their weights sum to 0"));
        }
        if let Some(judged) = self.assertions.iter().find(|a| a.kind.judged()) {
            if self.judge.is_none() {
                return Err(EvalError::invalid(
                    judged.type_name(),
                    "needs a judge model: set `judge` to a profile, catalog name or GGUF path",
                ));
            }
        }
        if self.concurrency == 0 {
            return Err(EvalError::invalid("concurrency", "must be at least 1"));
        }
        Ok(())
    }

    /// Whether an assertion compares embeddings (`similar`).
    pub fn needs_embedder(&self) -> bool {
        self.assertions.iter().any(|a| a.kind == Kind::Similar)
    }

    fn needs_judge(&self) -> bool {
        self.assertions.iter().any(|a| a.kind.judged())
    }
}

/// Gives the model of a name: a profile, catalog name or GGUF path, as the CLI resolves them.
/// The evaluator asks it for a variant's model (and the judge) each time it runs a variant, so
/// it should memoize: load each model once and hand out the same `Arc` after.
pub type Resolver = dyn Fn(&str) -> std::result::Result<Arc<dyn ChatModel>, String> + Send + Sync;

/// Runs variants over rows.
pub struct Evaluator {
    settings: Settings,
    resolver: Box<Resolver>,
    embedder: Option<Arc<dyn EmbeddingModel>>,
    cache: Option<Arc<Cache>>,
    rag: Option<Arc<RagPipeline>>,
    agent: Option<(AgentSpec, Arc<ToolboxMaker>)>,
}

impl Evaluator {
    /// An evaluator of `settings`, with models from `resolver` (which should memoize, see
    /// [`Resolver`]), the embedder of `similar`, and the cache (`None` calls the models every
    /// time). Refuses what cannot run, `similar` without an embedder among it.
    pub fn new(
        settings: Settings,
        resolver: impl Fn(&str) -> std::result::Result<Arc<dyn ChatModel>, String> + Send + Sync + 'static,
        embedder: Option<Arc<dyn EmbeddingModel>>,
        cache: Option<Arc<Cache>>,
    ) -> Result<Evaluator> {
        settings.check()?;
        if settings.needs_embedder() && embedder.is_none() {
            return Err(EvalError::invalid("similar", "needs an embedder, and none was given"));
        }
        Ok(Evaluator { settings, resolver: Box::new(resolver), embedder, cache, rag: None, agent: None })
    }

    /// The agent of the variants with tools, and what makes their toolboxes.
    pub fn with_agent(mut self, spec: AgentSpec, tools: Arc<ToolboxMaker>) -> Evaluator {
        self.agent = Some((spec, tools));
        self
    }

    /// The pipeline that answers the variants with a grounding mode.
    pub fn with_rag(mut self, pipeline: Arc<RagPipeline>) -> Evaluator {
        self.rag = Some(pipeline);
        self
    }

    /// Evaluates one variant over `rows`.
    pub async fn evaluate(&self, variant: &Variant, rows: &[Row]) -> Result<VariantReport> {
        let targets = self.bind(rows)?;
        let prepared = self.prepare(variant, rows, &targets)?;
        self.run(variant, prepared).await
    }

    /// Evaluates every variant over `rows`, one variant after another; every row of every
    /// variant is rendered and checked before the first model call.
    pub async fn evaluate_all(&self, variants: &[Variant], rows: &[Row]) -> Result<Vec<VariantReport>> {
        let targets = self.bind(rows)?;
        let prepared: Vec<Vec<Prepared>> =
            variants.iter().map(|variant| self.prepare(variant, rows, &targets)).collect::<Result<_>>()?;
        let mut reports = Vec::with_capacity(variants.len());
        for (variant, prepared) in variants.iter().zip(prepared) {
            reports.push(self.run(variant, prepared).await?);
        }
        Ok(reports)
    }

    /// Each row's assertion targets, or the first row that cannot be checked. They depend on
    /// the row alone, so one binding serves every variant.
    fn bind(&self, rows: &[Row]) -> Result<Vec<Arc<[Target]>>> {
        if rows.is_empty() {
            return Err(EvalError::invalid("rows", "there are no rows to evaluate"));
        }
        rows.iter()
            .map(|row| {
                let targets: Vec<Target> = self
                    .settings
                    .assertions
                    .iter()
                    .map(|a| a.bind(row))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| row.error(e))?;
                Ok(targets.into())
            })
            .collect()
    }

    /// Each row's messages, with its targets (from `bind`), or the first row that cannot be run.
    fn prepare(&self, variant: &Variant, rows: &[Row], targets: &[Arc<[Target]>]) -> Result<Vec<Prepared>> {
        rows.iter()
            .zip(targets)
            .enumerate()
            .map(|(index, (row, targets))| {
                // The prompt file's [vars] are samples for `prompt run`: a row graded with them
                // would be graded on text it does not hold.
                let missing = variant.prompt.missing_variables(&row.vars);
                if !missing.is_empty() {
                    let names: Vec<String> = missing.iter().map(|name| format!("`{name}`")).collect();
                    return Err(row.error(format!(
                        "no {} for the prompt {} (a row must give every variable its template uses)",
                        names.join(", "),
                        variant.prompt.path.display()
                    )));
                }
                let prompt = variant.prompt.prompt(&row.vars).map_err(|e| row.error(error_chain(&e)))?;
                let messages =
                    prompt.messages(&[], &Layout::default()).map_err(|e| row.error(error_chain(&e)))?;
                Ok(Prepared { index, row: row.clone(), messages, targets: targets.clone() })
            })
            .collect()
    }

    async fn run(&self, variant: &Variant, prepared: Vec<Prepared>) -> Result<VariantReport> {
        let calls = Arc::new(AtomicUsize::new(0));
        let model = self.caller(&variant.model, &calls)?;
        let judge = match &self.settings.judge {
            Some(name) if self.settings.needs_judge() => Some(self.caller(name, &calls)?),
            _ => None,
        };
        let toolbox = match (&variant.tools, &self.agent) {
            (None, _) => None,
            (Some(names), Some((_, make))) => {
                Some(make(names).map_err(|reason| EvalError::invalid("agent.tools", reason))?)
            }
            (Some(_), None) => {
                return Err(EvalError::invalid("agent", "an agent variant needs the evaluator's agent"))
            }
        };
        let rows: Vec<RowReport> = stream::iter(prepared)
            .map(|row| self.run_row(row, &model, judge.as_ref(), variant, toolbox.as_ref()))
            .buffered(self.settings.concurrency)
            .collect()
            .await;
        Ok(VariantReport::new(variant, rows, calls.load(Ordering::SeqCst)))
    }

    fn caller(&self, name: &str, calls: &Arc<AtomicUsize>) -> Result<Caller> {
        let model =
            (self.resolver)(name).map_err(|reason| EvalError::Model { name: name.to_owned(), reason })?;
        Ok(Caller { model, name: name.to_owned(), cache: self.cache.clone(), calls: calls.clone() })
    }

    async fn run_row(
        &self,
        prepared: Prepared,
        model: &Caller,
        judge: Option<&Caller>,
        variant: &Variant,
        toolbox: Option<&Toolbox>,
    ) -> RowReport {
        let Prepared { index, row, messages, targets } = prepared;
        let mut report = RowReport {
            index,
            vars: row.vars,
            expected: row.expected,
            messages,
            output: String::new(),
            score: 0.0,
            pass: false,
            assertions: Vec::new(),
            latency_ms: 0.0,
            cost_usd: 0.0,
            cached: false,
            error: None,
            rag: None,
            agent: None,
        };
        let call = match (variant.grounding, toolbox) {
            (Some(grounding), _) => self.ask_rag(report.input(), model, &variant.params, grounding).await,
            (None, Some(toolbox)) => {
                let task = report.input().to_owned();
                match self.run_agent(&task, model, &variant.params, toolbox).await {
                    Ok((call, agent)) => {
                        report.agent = Some(agent);
                        Ok((call, None))
                    }
                    Err(e) => Err(e),
                }
            }
            (None, None) => {
                let mut request = temper_prompt::run::request(report.messages.clone(), &variant.params);
                if self.settings.constrain {
                    request.response_format =
                        variant.prompt.output_schema.as_ref().map(temper_prompt::run::structured_format);
                }
                model.call(request).await.map(|call| (call, None)).map_err(|e| error_chain(&e))
            }
        };
        let (call, rag) = match call {
            Ok(call) => call,
            Err(e) => {
                report.error = Some(e);
                return report;
            }
        };
        let observation = Observation {
            output: &call.response.text,
            input: report.input(),
            latency_ms: call.latency_ms,
            cost_usd: call.response.cost,
            passages: rag.as_ref().map(|r| r.passages.as_slice()),
            cited: rag.as_ref().map(|r| r.cited.as_slice()),
        };
        let graders =
            Graders { embedder: self.embedder.as_deref(), judge: judge.map(|j| j as &dyn ChatModel) };
        let mut outcomes = Vec::with_capacity(targets.len());
        for (assertion, target) in self.settings.assertions.iter().zip(targets.iter()) {
            outcomes.push(assertion.check(target, &observation, graders).await);
        }
        report.assertions = outcomes;
        let total: f64 = report.assertions.iter().map(|a| a.weight).sum();
        report.score = report.assertions.iter().map(|a| a.weight * a.score).sum::<f64>() / total;
        report.pass = report.assertions.iter().all(|a| a.pass);
        report.output = call.response.text;
        report.latency_ms = call.latency_ms;
        report.cost_usd = call.response.cost.unwrap_or(0.0);
        report.cached = call.cached;
        report.rag = rag;
        report
    }

    /// `task` done by an agent of `model` with `toolbox`, whose model calls go through the
    /// cache (the tools run every time).
    async fn run_agent(
        &self,
        task: &str,
        model: &Caller,
        params: &GenerationParams,
        toolbox: &Toolbox,
    ) -> std::result::Result<(Call, AgentRow), String> {
        let (spec, _) = self.agent.as_ref().ok_or("an agent variant needs the evaluator's agent")?;
        let row_calls = Arc::new(AtomicUsize::new(0));
        let caller = Caller { calls: row_calls.clone(), ..model.clone() };
        let start = Instant::now();
        let (response, row) = agent::run(task, Arc::new(caller), toolbox.clone(), params, spec).await?;
        let latency_ms = start.elapsed().as_secs_f64() * 1e3;
        let calls = row_calls.load(Ordering::SeqCst);
        model.calls.fetch_add(calls, Ordering::SeqCst);
        Ok((Call { response, latency_ms, cached: calls == 0 }, row))
    }

    /// `question` answered through the RAG pipeline by `model`, whose calls go through the
    /// cache: the answer is cached when no call reached the model.
    async fn ask_rag(
        &self,
        question: &str,
        model: &Caller,
        params: &GenerationParams,
        grounding: Grounding,
    ) -> std::result::Result<(Call, Option<RagRow>), String> {
        let pipeline = self
            .rag
            .as_ref()
            .ok_or("a RAG variant needs the evaluator's RAG pipeline, and none was given")?;
        let row_calls = Arc::new(AtomicUsize::new(0));
        let caller = Caller { calls: row_calls.clone(), ..model.clone() };
        let start = Instant::now();
        let (response, rag) = pipeline.answer(question, &caller, params, grounding).await?;
        let latency_ms = start.elapsed().as_secs_f64() * 1e3;
        let calls = row_calls.load(Ordering::SeqCst);
        model.calls.fetch_add(calls, Ordering::SeqCst);
        Ok((Call { response, latency_ms, cached: calls == 0 }, Some(rag)))
    }
}

/// A row ready to run.
struct Prepared {
    index: usize,
    row: Row,
    messages: Vec<Message>,
    targets: Arc<[Target]>,
}

/// A model behind the cache, counting the calls that reached it.
#[derive(Clone)]
struct Caller {
    model: Arc<dyn ChatModel>,
    name: String,
    cache: Option<Arc<Cache>>,
    calls: Arc<AtomicUsize>,
}

/// An answer and how it was had.
struct Call {
    response: temper_core::ChatResponse,
    latency_ms: f64,
    cached: bool,
}

impl Caller {
    async fn call(&self, request: ChatRequest) -> temper_core::Result<Call> {
        let cache_error = |e: EvalError| temper_core::Error::Backend(error_chain(&e));
        // The key (the request serialized and hashed) only when there is a cache to look in.
        let cached = self.cache.as_ref().map(|cache| (cache, Cache::key(&self.name, &request)));
        if let Some((cache, key)) = &cached {
            if let Some(hit) = cache.get(key).map_err(cache_error)? {
                return Ok(Call { response: hit.response, latency_ms: hit.latency_ms, cached: true });
            }
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        let start = Instant::now();
        let response = self.model.chat(request).await?;
        let latency_ms = start.elapsed().as_secs_f64() * 1e3;
        if let Some((cache, key)) = &cached {
            let entry = CachedCall { response, latency_ms };
            cache.put(key, &self.name, &entry).map_err(cache_error)?;
            return Ok(Call { response: entry.response, latency_ms, cached: false });
        }
        Ok(Call { response, latency_ms, cached: false })
    }
}

/// The judge asks through the cache too: as a `ChatModel`, for the prompt crate's retries.
impl ChatModel for Caller {
    fn name(&self) -> &str {
        &self.name
    }

    fn chat_stream(&self, request: ChatRequest) -> EventStream {
        let caller = self.clone();
        Box::pin(stream::once(async move {
            caller.call(request).await.map(|call| StreamEvent::Done(call.response))
        }))
    }
}

/// How a variant did.
#[derive(Clone, Debug, Serialize)]
pub struct VariantReport {
    pub prompt: String,
    pub model: String,
    pub params: GenerationParams,
    /// The mean of the rows' scores.
    pub score: f64,
    /// The share of rows where every assertion passed.
    pub pass_rate: f64,
    /// The median latency of the rows' calls (the original call's, for cached ones).
    pub latency_ms: f64,
    /// The total cost of the rows' calls in USD (0 where the model has no prices).
    pub cost_usd: f64,
    /// Model calls made, judge calls included; cached answers are not calls.
    pub calls: usize,
    pub rows: Vec<RowReport>,
}

impl VariantReport {
    fn new(variant: &Variant, rows: Vec<RowReport>, calls: usize) -> VariantReport {
        let n = rows.len().max(1) as f64;
        let mut latencies: Vec<f64> =
            rows.iter().filter(|r| r.error.is_none()).map(|r| r.latency_ms).collect();
        latencies.sort_by(f64::total_cmp);
        VariantReport {
            prompt: variant.prompt_name(),
            model: variant.model.clone(),
            params: variant.params.clone(),
            score: rows.iter().map(|r| r.score).sum::<f64>() / n,
            pass_rate: rows.iter().filter(|r| r.pass).count() as f64 / n,
            latency_ms: median(&latencies),
            cost_usd: rows.iter().map(|r| r.cost_usd).sum(),
            calls,
            rows,
        }
    }
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// How one row went.
#[derive(Clone, Debug, Serialize)]
pub struct RowReport {
    /// The row's place among the rows evaluated, from 0.
    pub index: usize,
    pub vars: BTreeMap<String, Value>,
    pub expected: Option<Value>,
    /// The messages sent, exactly.
    pub messages: Vec<Message>,
    pub output: String,
    /// The weighted mean of the assertions' scores.
    pub score: f64,
    /// Whether every assertion passed.
    pub pass: bool,
    pub assertions: Vec<AssertionOutcome>,
    pub latency_ms: f64,
    pub cost_usd: f64,
    /// Answered from the cache.
    pub cached: bool,
    /// Why the model gave no answer (the row then scores 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A RAG variant's sources, citations and grounding verdicts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rag: Option<RagRow>,
    /// The tools an agent row called.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentRow>,
}

impl RowReport {
    /// The row's input: the last user message sent (empty when there is none).
    pub fn input(&self) -> &str {
        self.messages.iter().rev().find(|m| m.role == Role::User).map_or("", |m| m.content.as_str())
    }
}
