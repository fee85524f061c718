//! `temper`: the command line of the Temper workbench.

mod embed;
mod inspect;
mod models;
mod oneshot;
mod options;
mod output;
mod repl;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::options::{ConversationArgs, GenArgs, ModelArgs};

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
        /// Print one JSON object (text, finish reason, usage, timings) instead of streaming.
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
        prompt: String,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// List the catalog: kind, whether installed, size on disk.
    List,
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
    /// Show what the catalog and the store know about a model.
    Info { name: String },
    /// Remove an installed model.
    Rm { name: String },
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
        Command::Models { command } => match command {
            ModelsCommand::List => models::list(),
            ModelsCommand::Pull { names, all, force } => models::pull(names, all, force),
            ModelsCommand::Info { name } => models::info(&name),
            ModelsCommand::Rm { name } => models::remove(&name),
        },
        Command::Chat(args) => repl::run(&args),
        Command::Ask { conversation, json, question } => oneshot::ask(&conversation, json, &question),
        Command::Complete { gen, json, text } => oneshot::complete(&gen, json, &text),
        Command::Tokenize { model, special, text } => inspect::tokenize(&model, special, &text),
        Command::Logits { model, top, prompt } => inspect::logits(&model, top, &prompt),
        Command::Embed(args) => embed::run(&args),
    }
}
