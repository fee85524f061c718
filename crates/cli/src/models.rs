//! `temper models …`: the catalog, the local store, the profiles, and comparing models.

use std::io::{self, Write};
use std::time::Instant;

use clap::Subcommand;
use temper_core::{error_chain, ChatModel, ChatRequest, ChatResponse, GenerationParams, Message};
use temper_engine::LoadOptions;
use temper_models::{
    catalog, ConsoleProgress, Located, ModelStore, DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL,
};

use crate::options::{load_model, resolver};
use crate::output::{block_on, human_bytes, notice, print_json, usd};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// List the catalog (kind, whether installed, size on disk) and the profiles of temper.toml.
    List,
    /// Run one prompt on several models at once; show the answers with latency, speed, tokens, cost.
    Compare {
        /// Profiles, catalog names, GGUF paths, hf:, ollama: names or URLs, separated by commas.
        #[arg(long, value_delimiter = ',', required = true)]
        models: Vec<String>,
        /// Read the prompt from this file.
        #[arg(long, conflicts_with = "prompt")]
        prompt_file: Option<std::path::PathBuf>,
        /// The system message.
        #[arg(long)]
        system: Option<String>,
        /// Sampling temperature for every model; 0 is greedy.
        #[arg(long)]
        temperature: Option<f32>,
        /// The most tokens each model may generate.
        #[arg(long)]
        max_tokens: Option<u32>,
        /// Print a JSON array, one object per model, instead of the table.
        #[arg(long)]
        json: bool,
        /// The prompt (or --prompt-file).
        #[arg(required_unless_present = "prompt_file")]
        prompt: Option<String>,
    },
    /// Download, verify and install models (default: the default chat model and embedder).
    Pull {
        /// Catalog names, hf:OWNER/REPO[:QUANT_OR_FILE], ollama:NAME[:TAG] or https:// URLs of GGUF files.
        #[arg(conflicts_with = "all")]
        names: Vec<String>,
        /// The SHA-256 (hex) the downloaded file must have (one hf: name or URL).
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// Pull every model in the catalog.
        #[arg(long)]
        all: bool,
        /// Pull again even if already installed.
        #[arg(long)]
        force: bool,
    },
    /// Check the SHA-256 of every file of installed models (default: all installed).
    Verify { names: Vec<String> },
    /// Show what the catalog and the store know about a model.
    Info { name: String },
    /// Remove an installed model.
    Rm { name: String },
}

pub fn run(command: ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::List => list(),
        ModelsCommand::Compare { models, prompt_file, system, temperature, max_tokens, json, prompt } => {
            let prompt = match (prompt, prompt_file) {
                (_, Some(file)) => std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("cannot read the prompt file {}: {e}", file.display()))?,
                (Some(prompt), None) => prompt,
                (None, None) => anyhow::bail!("give a prompt or --prompt-file"),
            };
            // Before any model is loaded: each would refuse it on its own.
            anyhow::ensure!(!prompt.trim().is_empty(), "the prompt is empty: there is nothing to compare");
            let params = GenerationParams { temperature, max_tokens, ..Default::default() };
            params.validate()?;
            compare(Comparison { models, prompt, system, params, json })
        }
        ModelsCommand::Pull { names, sha256, all, force } => pull(names, sha256.as_deref(), all, force),
        ModelsCommand::Verify { names } => verify(names),
        ModelsCommand::Info { name } => info(&name),
        ModelsCommand::Rm { name } => remove(&name),
    }
}

fn list() -> anyhow::Result<()> {
    let store = ModelStore::from_env()?;
    let models = store.list();
    let width = models.iter().map(|m| m.entry.name.len()).max().unwrap_or(0);
    let mut out = io::stdout();
    writeln!(out, "{:width$}  {:10}  {:>10}  DESCRIPTION", "NAME", "KIND", "INSTALLED")?;
    for model in &models {
        let installed = match (model.size_on_disk, &model.damage) {
            (Some(_), Some(_)) => "damaged".to_owned(),
            (Some(size), None) => human_bytes(size),
            (None, _) => "no".to_owned(),
        };
        let (name, kind, description) =
            (model.entry.name, model.entry.kind.to_string(), model.entry.description);
        writeln!(out, "{name:width$}  {kind:10}  {installed:>10}  {description}")?;
    }
    for model in models.iter().filter(|m| m.damage.is_some()) {
        let (name, damage) = (model.entry.name, model.damage.as_deref().unwrap_or_default());
        writeln!(out, "\n{name} is damaged: {damage}; `temper models pull {name}` repairs it")?;
    }
    let downloaded = store.downloaded();
    if !downloaded.is_empty() {
        let width = downloaded.iter().map(|d| d.origin.name.len()).max().unwrap_or(0);
        writeln!(out, "\ndownloaded from the hub or URLs:")?;
        writeln!(out, "{:width$}  {:>10}  FROM", "NAME", "SIZE")?;
        for model in &downloaded {
            let from = match (&model.origin.repo, &model.origin.commit) {
                (Some(repo), Some(commit)) => format!("{repo} at {}", &commit[..commit.len().min(12)]),
                (Some(repo), None) => repo.clone(),
                _ => model.origin.url.clone(),
            };
            writeln!(out, "{:width$}  {:>10}  {from}", model.origin.name, human_bytes(model.size_on_disk))?;
        }
    }
    writeln!(out, "\nstore: {}", store.root().display())?;
    let resolver = resolver()?;
    let profiles = resolver.profiles();
    match profiles.path() {
        None => {
            writeln!(out, "\nno profiles (no temper.toml here or in the store; `temper init` writes one)")?
        }
        Some(path) => {
            writeln!(out, "\nprofiles ({}):", path.display())?;
            let width = profiles.iter().map(|(name, _)| name.len()).max().unwrap_or(0).max(4);
            writeln!(
                out,
                "{:width$}  {:9}  {:28}  {:>15}  FALLBACK",
                "NAME", "BACKEND", "MODEL", "USD/MTOK IN/OUT"
            )?;
            for (name, profile) in profiles.iter() {
                let prices = profile
                    .prices()
                    .map_or("-".to_owned(), |p| format!("{}/{}", p.input_per_mtok, p.output_per_mtok));
                writeln!(
                    out,
                    "{name:width$}  {:9}  {:28}  {prices:>15}  {}",
                    profile.backend.name(),
                    profile.model,
                    profile.fallback.join(", ")
                )?;
            }
        }
    }
    Ok(())
}

/// What `temper models compare` asks every model.
struct Comparison {
    models: Vec<String>,
    prompt: String,
    system: Option<String>,
    params: GenerationParams,
    json: bool,
}

/// Runs one prompt on several models at once and shows the answers side by side with
/// latency, speed, tokens and cost. Fails (after showing everything) if any model failed.
fn compare(comparison: Comparison) -> anyhow::Result<()> {
    anyhow::ensure!(
        !comparison.models.is_empty(),
        "--models needs at least one model, e.g. --models local,gpt-mini"
    );
    let resolver = resolver()?;
    let mut loaded = Vec::new();
    for name in &comparison.models {
        loaded.push(load_model(&resolver, name, LoadOptions::default())?.model);
    }
    let messages: Vec<Message> =
        comparison.system.iter().map(Message::system).chain([Message::user(&comparison.prompt)]).collect();
    let request = ChatRequest::new(messages).with_params(comparison.params);
    let runs = loaded.iter().map(|model| {
        let request = request.clone();
        async move {
            let started = Instant::now();
            let result = model.chat(request).await;
            (model.name().to_owned(), started.elapsed().as_secs_f64() * 1e3, result)
        }
    });
    let results = block_on(futures::future::join_all(runs));
    if comparison.json {
        let rows: Vec<serde_json::Value> = results
            .iter()
            .map(|(name, latency_ms, result)| match result {
                Ok(response) => {
                    serde_json::json!({ "model": name, "latency_ms": latency_ms, "response": response })
                }
                Err(err) => {
                    serde_json::json!({ "model": name, "latency_ms": latency_ms, "error": error_chain(err) })
                }
            })
            .collect();
        print_json(&rows)?;
    } else {
        print_comparison(&results)?;
    }
    let failed: Vec<&str> =
        results.iter().filter(|(_, _, r)| r.is_err()).map(|(name, _, _)| name.as_str()).collect();
    anyhow::ensure!(
        failed.is_empty(),
        "{} of {} models failed: {}",
        failed.len(),
        results.len(),
        failed.join(", ")
    );
    Ok(())
}

type Run = (String, f64, temper_core::Result<ChatResponse>);

fn print_comparison(results: &[Run]) -> anyhow::Result<()> {
    let mut out = io::stdout();
    let width = results.iter().map(|(name, ..)| name.len()).max().unwrap_or(0).max(5);
    writeln!(
        out,
        "{:width$}  {:>10}  {:>10}  {:>8}  {:>14}  {:>10}",
        "MODEL", "LATENCY", "1ST TOKEN", "TOK/S", "TOKENS IN+OUT", "COST"
    )?;
    for (name, latency, result) in results {
        match result {
            Ok(r) => writeln!(
                out,
                "{name:width$}  {:>8.0}ms  {:>8.0}ms  {:>8.1}  {:>14}  {:>10}",
                latency,
                r.timings.ttft_ms,
                r.timings.decode_tokens_per_second,
                format!("{}+{}", r.usage.prompt_tokens, r.usage.completion_tokens),
                r.cost.map_or("-".to_owned(), usd)
            )?,
            Err(_) => writeln!(out, "{name:width$}  {:>8.0}ms  failed", latency)?,
        }
    }
    for (name, _, result) in results {
        writeln!(out, "\n── {name} ──")?;
        match result {
            Ok(r) => writeln!(out, "{}", r.text.trim_end())?,
            Err(err) => writeln!(out, "error: {}", error_chain(&err))?,
        }
    }
    Ok(())
}

/// Pulls `names`, every catalog model with `all`, or else the default chat model and embedder.
/// Installed models are skipped unless `force`: installs are atomic and verified, so one that is
/// present with the catalog's sizes is complete; a damaged one is pulled again.
fn pull(names: Vec<String>, sha256: Option<&str>, all: bool, force: bool) -> anyhow::Result<()> {
    let store = ModelStore::from_env()?;
    anyhow::ensure!(
        sha256.is_none() || names.len() == 1,
        "--sha256 checks one download: give it with exactly one hf: name or URL"
    );
    for name in &chosen(names, all) {
        if ModelStore::is_source_name(name) {
            pull_source(&store, name, sha256, force)?;
            continue;
        }
        anyhow::ensure!(
            sha256.is_none(),
            "--sha256 is for hf: names and URLs; {name} is checked by the catalog"
        );
        let status = store.status_of(name)?;
        match (&status.path, &status.damage) {
            (Some(path), _) if !force => {
                notice(&format!("{name} is already installed at {} (--force pulls it again)", path.display()))
            }
            (_, Some(damage)) => {
                notice(&format!("{name} is damaged ({damage}); pulling it again"));
                store.pull(name, &ConsoleProgress::default())?;
            }
            _ => {
                store.pull(name, &ConsoleProgress::default())?;
            }
        }
    }
    Ok(())
}

/// Pulls a model named by its source, unless it is on this machine already (and not `force`).
fn pull_source(store: &ModelStore, name: &str, sha256: Option<&str>, force: bool) -> anyhow::Result<()> {
    match store.locate_source(name)? {
        Some(Located::Stored(downloaded)) if !force => notice(&format!(
            "{name} is already installed at {} (--force pulls it again)",
            downloaded.path.display()
        )),
        Some(Located::InPlace { path, place, .. }) if !force || name.starts_with("ollama:") => notice(
            &format!("{name} is in {place} at {}; it is used there, nothing is downloaded", path.display()),
        ),
        _ => {
            store.pull_source(name, sha256, &ConsoleProgress::default())?;
        }
    }
    Ok(())
}

/// `names`, every catalog model with `all`, or else the default chat model and embedder.
fn chosen(names: Vec<String>, all: bool) -> Vec<String> {
    if all {
        catalog().iter().map(|entry| entry.name.to_owned()).collect()
    } else if names.is_empty() {
        vec![DEFAULT_CHAT_MODEL.to_owned(), DEFAULT_EMBEDDING_MODEL.to_owned()]
    } else {
        names
    }
}

/// Checks the SHA-256 of every file of `names` (default: every installed model); fails if any
/// is damaged or not installed.
fn verify(names: Vec<String>) -> anyhow::Result<()> {
    let store = ModelStore::from_env()?;
    let names = match names.is_empty() {
        true => store
            .list()
            .into_iter()
            .filter(|m| m.size_on_disk.is_some())
            .map(|m| m.entry.name.to_owned())
            .chain(store.downloaded().into_iter().map(|d| d.origin.name))
            .collect(),
        false => names,
    };
    anyhow::ensure!(!names.is_empty(), "no model is installed; `temper models pull` installs the defaults");
    let mut out = io::stdout();
    let mut bad = Vec::new();
    for name in &names {
        match store.verify(name) {
            Ok(_) => writeln!(out, "{name}: ok")?,
            Err(err) => {
                writeln!(out, "{name}: {}", error_chain(&err))?;
                bad.push(name.as_str());
            }
        }
    }
    anyhow::ensure!(
        bad.is_empty(),
        "{} of {} models failed verification: {}",
        bad.len(),
        names.len(),
        bad.join(", ")
    );
    Ok(())
}

fn info(name: &str) -> anyhow::Result<()> {
    let store = ModelStore::from_env()?;
    if ModelStore::is_source_name(name) {
        match store.locate_source(name)? {
            Some(located) => writeln!(io::stdout(), "{located}")?,
            None => writeln!(
                io::stdout(),
                "{name}: not on this machine (`temper models pull {name}` downloads it; using it does too)"
            )?,
        }
        return Ok(());
    }
    writeln!(io::stdout(), "{}", store.info(name)?)?;
    Ok(())
}

fn remove(name: &str) -> anyhow::Result<()> {
    ModelStore::from_env()?.remove(name)?;
    writeln!(io::stdout(), "removed {name}")?;
    Ok(())
}
