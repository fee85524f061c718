//! `temper`: the command line of the Temper workbench.

mod agent;
mod ask;
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
mod summarize;
mod tune;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::options::ConversationArgs;

/// Temper: a workbench for generative AI that runs offline on a CPU.
#[derive(Parser)]
#[command(name = "temper", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Every subcommand's arguments and run function live in its module; this file only dispatches.
#[derive(Subcommand)]
enum Command {
    /// Pull the default chat model (first time only), load it and stream a short answer.
    Quickstart,
    /// Write a commented example temper.toml (model profiles) in the working directory.
    Init(init::InitArgs),
    /// What calls cost: the log per model and day, or an estimate against a VM.
    Cost {
        #[command(subcommand)]
        command: cost::CostCommand,
    },
    /// List, pull, inspect and remove models.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
    /// Chat interactively; /help lists the commands.
    Chat(ConversationArgs),
    /// Answer one question and exit: directly, or by chain of thought, self-consistency or
    /// skeleton of thought (--method; docs/prompting.md).
    Ask(ask::AskArgs),
    /// `temper ask` with skeleton of thought as its default method.
    #[command(hide = true)]
    Answer(ask::AskArgs),
    /// Continue raw text with no chat template (what base models are for).
    Complete(oneshot::CompleteArgs),
    /// Print the token ids of TEXT as a JSON array (no BOS added).
    Tokenize(inspect::TokenizeArgs),
    /// Print embeddings of TEXT… as a JSON array with one array of floats per text.
    Embed(embed::EmbedArgs),
    /// Run PROMPT (special tokens parsed) and print the last position's top logits as
    /// a JSON array of [id, logit], largest first.
    Logits(inspect::LogitsArgs),
    /// Ingest documents, search them, and answer questions from them with citations.
    Rag(rag::RagArgs),
    /// Summarize a text file by chain of density (docs/prompting.md).
    Summarize(summarize::SummarizeArgs),
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
    /// Run tasks with tools: calculator, document search, files, SQL, HTTP, your own commands
    /// (docs/agents.md).
    Agent {
        #[command(subcommand)]
        command: agent::AgentCommand,
    },
    /// Serve the OpenAI-compatible API (docs/server.md).
    Serve(serve::ServeArgs),
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
        Command::Init(args) => init::run(&args),
        Command::Cost { command } => cost::run(command),
        Command::Models { command } => models::run(command),
        Command::Chat(args) => repl::run(&args),
        Command::Ask(args) => ask::run(&args, ask::AskMethod::Direct),
        Command::Answer(args) => ask::run(&args, ask::AskMethod::Sot),
        Command::Complete(args) => oneshot::complete(&args),
        Command::Tokenize(args) => inspect::tokenize(&args),
        Command::Logits(args) => inspect::logits(&args),
        Command::Rag(args) => rag::run(args),
        Command::Embed(args) => embed::run(&args),
        Command::Prompt { command } => prompt::run(command),
        Command::Eval { command } => eval::run(command),
        Command::Tune { command } => tune::run(command),
        Command::Summarize(args) => summarize::run(&args),
        Command::Agent { command } => agent::run(command),
        Command::Serve(args) => serve::run(args),
    }
}
