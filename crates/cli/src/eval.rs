//! `temper eval run`: a spec's prompt × model × parameter matrix over its dataset, checked by
//! its assertions, through temper-eval; a table, JSON, or a self-contained HTML report.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use temper_core::{ChatModel, EmbeddingModel};
use temper_engine::LoadOptions;
use temper_eval::{report, Cache, CacheSetting, Evaluator, Spec, VariantReport, CACHE_FILE};
use temper_models::{ModelStore, DEFAULT_CHAT_MODEL};

use crate::options::load_model;
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
    let rows = spec.selected_rows()?;
    let variants = spec.variants(DEFAULT_CHAT_MODEL);
    let store = ModelStore::from_env()?;
    let cache = match (&spec.cache, args.no_cache) {
        (_, true) | (CacheSetting::Off, _) => None,
        (CacheSetting::Default, false) => Some(Cache::open(&store.root().join(CACHE_FILE))?),
        (CacheSetting::File(path), false) => Some(Cache::open(path)?),
    };
    let embedder = if spec.needs_embedder() {
        Some(Arc::new(crate::rag::embedder()?) as Arc<dyn EmbeddingModel>)
    } else {
        None
    };
    // A local model decodes as many rows together as are asked at once.
    let options = LoadOptions { threads: None, context_window: None, sequences: Some(spec.concurrency) };
    let resolve = move |name: &str| -> Result<Arc<dyn ChatModel>, String> {
        load_model(&store, name, options.clone()).map(|loaded| loaded.model).map_err(|e| format!("{e:#}"))
    };
    let cache_path = cache.as_ref().map(|c| c.path().to_owned());
    let evaluator = Evaluator::new(spec.settings(), resolve, embedder, cache.map(Arc::new))?;
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

/// The rows that got no answer, on stderr: they score 0, and the user should know why.
fn report_errors(reports: &[VariantReport]) {
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
