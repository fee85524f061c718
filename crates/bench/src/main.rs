//! `temper-bench`: Temper side by side with its peers on this machine.

mod retrieval;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "temper-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Retrieval quality on a BEIR dataset (dense, BM25, hybrid) and corpus encoding speed
    /// against sentence-transformers.
    Retrieval(retrieval::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Retrieval(args) => retrieval::run(&args),
    }
}
