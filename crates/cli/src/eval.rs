//! `temper eval run`: a spec's prompt × model × parameter matrix over its dataset, checked by
//! its assertions, through temper-eval; a table, JSON, or a self-contained HTML report.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::{Args, Subcommand};
use temper_core::{ChatModel, EmbeddingModel};
use temper_embed::Embedder;
use temper_engine::LoadOptions;
use temper_eval::{
    report, AgentSpec, Cache, CacheSetting, Evaluator, RagPipeline, RagSpec, Spec, ToolboxMaker,
    VariantReport, CACHE_FILE,
};
use temper_models::{Resolver, DEFAULT_CHAT_MODEL};
use temper_rag::{Access, IngestOptions, NoProgress, SqliteStore, VectorStore};

use crate::agent::ToolOptions;
use crate::options::{load_model, resolver};
use crate::output::{block_on, notice, print_json};

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Run a spec (TOML or YAML), or a prompt file's own [[tests]], and report the scores.
    Run(RunArgs),
}

#[derive(Args)]
pub struct RunArgs {
    /// The spec, or a prompt file with [[tests]] (docs/evaluation.md).
    spec: PathBuf,
    /// Print {"variants": [{"prompt", "model", "params", "score", "pass_rate", "rows"}…]} instead
    /// of the table.
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report (charts and every row) to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Ask the models every time: neither read nor write the cache.
    #[arg(long)]
    no_cache: bool,
    /// Rows asked at once [default: the spec's, else 4].
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Do not enforce the prompts' output schemas while decoding (only state them in the prompt).
    #[arg(long)]
    no_constrain: bool,
}

pub fn run(command: EvalCommand) -> anyhow::Result<()> {
    match command {
        EvalCommand::Run(args) => run_spec(&args),
    }
}

fn run_spec(args: &RunArgs) -> anyhow::Result<()> {
    let mut spec = Spec::load(&args.spec)?;
    if let Some(concurrency) = args.concurrency {
        anyhow::ensure!(concurrency > 0, "--concurrency must be at least 1");
        spec.concurrency = concurrency;
    }
    spec.constrain &= !args.no_constrain;
    let rows = spec.selected_rows()?;
    let variants = spec.variants(DEFAULT_CHAT_MODEL);
    let (evaluator, cache_path) = open_evaluator(&spec, args.no_cache, &Models::for_rows(spec.concurrency)?)?;
    notice(&format!("{} variants × {} rows", variants.len(), rows.len()));
    let reports = block_on(evaluator.evaluate_all(&variants, &rows))?;
    report_errors(&reports);
    let calls: usize = reports.iter().map(|r| r.calls).sum();
    let cached: usize = reports.iter().map(|r| r.rows.iter().filter(|row| row.cached).count()).sum();
    match &cache_path {
        Some(path) => {
            notice(&format!("{calls} model calls; {cached} answers from the cache {}", path.display()))
        }
        None => notice(&format!("{calls} model calls; the cache is off")),
    }
    if let Some(path) = &args.html {
        let title =
            spec.description.clone().unwrap_or_else(|| format!("temper eval: {}", spec.path.display()));
        std::fs::write(path, report::html(&title, &reports))
            .with_context(|| format!("cannot write the report {}", path.display()))?;
        notice(&format!("wrote {}", path.display()));
    }
    if args.json {
        return print_json(&report::json(&reports));
    }
    io::stdout().lock().write_all(report::table(&reports).as_bytes())?;
    Ok(())
}

/// Loads each named model once (a profile, catalog name or GGUF path), for the evaluator and
/// for anyone else who asks for the same name (tuning's proposer).
#[derive(Clone)]
pub struct Models {
    resolver: Resolver,
    options: LoadOptions,
    loaded: Arc<Mutex<HashMap<String, Arc<dyn ChatModel>>>>,
}

impl Models {
    /// Local models loaded to decode `rows` requests together: as many as are asked at once.
    pub fn for_rows(rows: usize) -> anyhow::Result<Models> {
        let options = LoadOptions { threads: None, context_window: None, sequences: Some(rows) };
        Ok(Models { resolver: resolver()?, options, loaded: Arc::default() })
    }

    pub fn get(&self, name: &str) -> Result<Arc<dyn ChatModel>, String> {
        let mut loaded = self.loaded.lock().expect("no panic while loading");
        if let Some(model) = loaded.get(name) {
            return Ok(model.clone());
        }
        let model =
            load_model(&self.resolver, name, self.options.clone()).map_err(|e| format!("{e:#}"))?.model;
        loaded.insert(name.to_owned(), model.clone());
        Ok(model)
    }
}

/// The evaluator of `spec`, with its cache (unless `no_cache` or the spec turns it off) and the
/// embedder when an assertion needs it; and the cache's path.
pub fn open_evaluator(
    spec: &Spec,
    no_cache: bool,
    models: &Models,
) -> anyhow::Result<(Evaluator, Option<PathBuf>)> {
    let cache = match (&spec.cache, no_cache) {
        (_, true) | (CacheSetting::Off, _) => None,
        (CacheSetting::Default, false) => {
            Some(Cache::open(&models.resolver.store().root().join(CACHE_FILE))?)
        }
        (CacheSetting::File(path), false) => Some(Cache::open(path)?),
    };
    let settings = spec.settings();
    let embedder = if settings.needs_embedder() {
        Some(Arc::new(crate::rag::embedder()?) as Arc<dyn EmbeddingModel>)
    } else {
        None
    };
    let cache_path = cache.as_ref().map(|c| c.path().to_owned());
    let store = models.resolver.store().root().to_owned();
    let models = models.clone();
    let resolve = move |name: &str| models.get(name);
    let mut evaluator = Evaluator::new(settings, resolve, embedder, cache.map(Arc::new))?;
    if let Some(rag) = &spec.rag {
        evaluator = evaluator.with_rag(rag_pipeline(rag, &store)?);
    }
    if let Some(agent) = &spec.agent {
        evaluator = evaluator.with_agent(agent.clone(), agent_tools(agent, &store)?);
    }
    Ok((evaluator, cache_path))
}

/// What makes the toolboxes of a spec's `[agent]`: the tools of `temper agent`, with its
/// `documents` ingested for rag_search as a `[rag]` table's are.
fn agent_tools(agent: &AgentSpec, store_root: &Path) -> anyhow::Result<Arc<ToolboxMaker>> {
    let mut options = ToolOptions { root: agent.root.clone(), ..ToolOptions::default() };
    if !agent.documents.is_empty() {
        let embedder = crate::rag::embedder()?;
        let (_, db, collection) = ingest_for_eval(&agent.documents, store_root, &embedder)?;
        options.db = Some(db.display().to_string());
        options.collection = Some(collection);
    }
    Ok(Arc::new(move |names: &[String]| {
        crate::agent::toolbox(&options, Some(names)).map_err(|e| format!("{e:#}"))
    }))
}

/// The pipeline of a spec's `[rag]`: its `documents` ingested (again: only what changed) into a
/// collection of their own in `<store>/eval/rag.db`, or its `collection` of an existing store.
fn rag_pipeline(rag: &RagSpec, store_root: &Path) -> anyhow::Result<Arc<RagPipeline>> {
    let embedder = crate::rag::embedder()?;
    let (store, collection) = match &rag.collection {
        Some(collection) => {
            let location = crate::rag::store_location(rag.db.clone())?;
            (location.open(Access::Read)?, collection.clone())
        }
        None => {
            let (store, _, collection) = ingest_for_eval(&rag.documents, store_root, &embedder)?;
            (store, collection)
        }
    };
    Ok(Arc::new(RagPipeline::new(store, Arc::new(embedder), collection, rag)))
}

/// `documents` ingested (again: only what changed) into a collection of their own in
/// `<store>/eval/rag.db`: the store, its file and the collection.
fn ingest_for_eval(
    documents: &[PathBuf],
    store_root: &Path,
    embedder: &Embedder,
) -> anyhow::Result<(Box<dyn VectorStore>, PathBuf, String)> {
    let db = store_root.join("eval").join("rag.db");
    let dir = db.parent().unwrap_or(store_root);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut store: Box<dyn VectorStore> = Box::new(SqliteStore::create(&db)?);
    // The collection is named by what it holds, so that specs over the same documents share it.
    let paths: Vec<String> = documents
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()).display().to_string())
        .collect();
    let collection = format!("eval {}", paths.join(" "));
    let options = IngestOptions { collection: collection.clone(), ..Default::default() };
    let mut progress = NoProgress;
    let ingesting =
        temper_rag::ingest(store.as_mut(), embedder, embedder, documents, &options, &mut progress);
    let report = block_on(ingesting)?;
    notice(&format!(
        "rag: {} documents ({} added, {} updated), {} chunks embedded, in {}",
        report.added + report.updated + report.unchanged,
        report.added,
        report.updated,
        report.chunks,
        db.display()
    ));
    Ok((store, db, collection))
}

/// The rows that got no answer, on stderr: they score 0, and the user should know why.
pub fn report_errors(reports: &[VariantReport]) {
    for (i, report) in reports.iter().enumerate() {
        for row in &report.rows {
            if let Some(error) = &row.error {
                notice(&format!(
                    "variant {} ({} on {}), row {}: no answer: {error}",
                    i + 1,
                    report.prompt,
                    report.model,
                    row.index
                ));
            }
        }
    }
}
