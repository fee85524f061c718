//! `temper`: the command line of the Temper workbench.

mod cost;
mod embed;
mod eval;
mod init;
mod inspect;
mod models;
mod oneshot;
mod options;
mod output;
mod prompt;
mod rag;
mod repl;
mod serve;
mod techniques;
mod tune;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::options::{AnswerShapeArgs, ConversationArgs, GenArgs, ModelArgs};

/// Temper: a workbench for generative AI that runs offline on a CPU.
#[derive(Parser)]
#[command(name = "temper", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull the default chat model (first time only), load it and stream a short answer.
    Quickstart,
    /// Write a commented example temper.toml (model profiles) in the working directory.
    Init {
        /// Replace an existing temper.toml.
        #[arg(long)]
        force: bool,
    },
    /// What calls cost: the log per model and day, or an estimate against a VM.
    Cost {
        #[command(subcommand)]
        command: CostCommand,
    },
    /// List, pull, inspect and remove models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Chat interactively; /help lists the commands.
    Chat(ConversationArgs),
    /// Answer one question and exit.
    Ask {
        #[command(flatten)]
        conversation: ConversationArgs,
        #[command(flatten)]
        shape: AnswerShapeArgs,
        /// Print one JSON object (text, finish reason, usage, timings, cost, tool calls, logprobs)
        /// instead of streaming.
        #[arg(long)]
        json: bool,
        /// The question; `-` reads it from stdin.
        question: String,
    },
    /// Continue raw text with no chat template (what base models are for).
    Complete {
        #[command(flatten)]
        gen: GenArgs,
        /// Print one JSON object (text, finish reason, usage, timings) instead of streaming.
        #[arg(long)]
        json: bool,
        /// The text to continue; `-` reads it from stdin.
        text: String,
    },
    /// Print the token ids of TEXT as a JSON array (no BOS added).
    Tokenize {
        #[command(flatten)]
        model: ModelArgs,
        /// Parse special tokens such as <|im_start|> instead of treating them as text.
        #[arg(long)]
        special: bool,
        /// The text to tokenize; `-` reads it from stdin.
        text: String,
    },
    /// Print embeddings of TEXT… as a JSON array with one array of floats per text.
    Embed(embed::EmbedArgs),
    /// Run PROMPT (special tokens parsed) and print the last position's top logits as
    /// a JSON array of [id, logit], largest first.
    Logits {
        #[command(flatten)]
        model: ModelArgs,
        /// How many of the largest logits to print.
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// The prompt; `-` reads it from stdin.
        prompt: String,
    },
    /// Ingest documents, search them, and answer questions from them with citations.
    Rag(rag::RagArgs),
    /// Summarize a text file by chain of density (docs/prompting.md).
    Summarize(techniques::SummarizeArgs),
    /// Answer a question by skeleton of thought, timed next to a normal answer (docs/prompting.md).
    Answer(techniques::AnswerArgs),
    /// Render and run prompt files (docs/prompting.md).
    Prompt {
        #[command(subcommand)]
        command: prompt::PromptCommand,
    },
    /// Evaluate prompts, models and parameters on a dataset with assertions (docs/evaluation.md).
    Eval {
        #[command(subcommand)]
        command: eval::EvalCommand,
    },
    /// Tune generation parameters or the prompt against an evaluation spec (docs/evaluation.md).
    Tune {
        #[command(subcommand)]
        command: tune::TuneCommand,
    },
    /// Serve the OpenAI-compatible API (docs/server.md).
    Serve(serve::ServeArgs),
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// List the catalog (kind, whether installed, size on disk) and the profiles of temper.toml.
    List,
    /// Run one prompt on several models at once; show the answers with latency, speed, tokens, cost.
    Compare {
        /// Profiles, catalog names or GGUF paths, separated by commas.
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
        /// Catalog names to pull.
        #[arg(conflicts_with = "all")]
        names: Vec<String>,
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

#[derive(Subcommand)]
enum CostCommand {
    /// Sum the logged calls per model and day: calls, tokens, USD.
    Report {
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Compare each priced profile with a VM at a fixed price: monthly cost and break-even traffic.
    Estimate(cost::EstimateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`temper ask … | head`) means the reader has had enough: not an error.
        Err(err) if output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if let Some(hint) = output::hint(&err) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    // Backends stream through async channels; one runtime serves every command.
    let runtime = tokio::runtime::Runtime::new()?;
    let _entered = runtime.enter();
    match command {
        Command::Quickstart => oneshot::quickstart(),
        Command::Init { force } => init::run(force),
        Command::Cost { command } => match command {
            CostCommand::Report { json } => cost::report(json),
            CostCommand::Estimate(args) => cost::estimate(&args),
        },
        Command::Models { command } => match command {
            ModelsCommand::List => models::list(),
            ModelsCommand::Compare { models, prompt_file, system, temperature, max_tokens, json, prompt } => {
                let prompt = match (prompt, prompt_file) {
                    (_, Some(file)) => std::fs::read_to_string(&file).map_err(|e| {
                        anyhow::anyhow!("cannot read the prompt file {}: {e}", file.display())
                    })?,
                    (Some(prompt), None) => prompt,
                    (None, None) => anyhow::bail!("give a prompt or --prompt-file"),
                };
                // Before any model is loaded: each would refuse it on its own.
                anyhow::ensure!(
                    !prompt.trim().is_empty(),
                    "the prompt is empty: there is nothing to compare"
                );
                let params = temper_core::GenerationParams { temperature, max_tokens, ..Default::default() };
                params.validate()?;
                models::compare(models::Comparison { models, prompt, system, params, json })
            }
            ModelsCommand::Pull { names, all, force } => models::pull(names, all, force),
            ModelsCommand::Verify { names } => models::verify(names),
            ModelsCommand::Info { name } => models::info(&name),
            ModelsCommand::Rm { name } => models::remove(&name),
        },
        Command::Chat(args) => repl::run(&args),
        Command::Ask { conversation, shape, json, question } => {
            oneshot::ask(&conversation, &shape, json, &question)
        }
        Command::Complete { gen, json, text } => oneshot::complete(&gen, json, &text),
        Command::Tokenize { model, special, text } => inspect::tokenize(&model, special, &text),
        Command::Logits { model, top, prompt } => inspect::logits(&model, top, &prompt),
        Command::Rag(args) => rag::run(args),
        Command::Embed(args) => embed::run(&args),
        Command::Prompt { command } => prompt::run(command),
        Command::Eval { command } => eval::run(command),
        Command::Tune { command } => tune::run(command),
        Command::Summarize(args) => techniques::summarize(&args),
        Command::Answer(args) => techniques::answer(&args),
        Command::Serve(args) => serve::run(args),
    }
}
