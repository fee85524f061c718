//! `temper summarize --method cod`: chain of density, through temper-prompt. (It summarizes a
//! file rather than answering a question, so it is not a method of `temper ask`.)

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use temper_prompt::cod::{self, CodOptions, CodReport};

use crate::options::GenArgs;
use crate::output::{block_on, print_json};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SummaryMethod {
    /// Chain of density: rounds of same-length summaries, each holding more entities.
    Cod,
}

#[derive(Args, Debug)]
pub struct SummarizeArgs {
    #[command(flatten)]
    gen: GenArgs,
    /// The article to summarize (a text file).
    file: PathBuf,
    #[arg(long, value_enum, default_value_t = SummaryMethod::Cod)]
    method: SummaryMethod,
    /// Rounds, the first (sparse) summary included.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The length of every summary, in words.
    #[arg(long, default_value_t = 80)]
    words: usize,
    /// Print {"rounds": [{"missing_entities", "summary", "words", "entity_density"}, …]}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &SummarizeArgs) -> anyhow::Result<()> {
    let SummaryMethod::Cod = args.method;
    let article = std::fs::read_to_string(&args.file)
        .map_err(|e| anyhow::anyhow!("cannot read the article {}: {e}", args.file.display()))?;
    let options = CodOptions { rounds: args.rounds, words: args.words, params: args.gen.params()? };
    options.check(&article).map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let model = args.gen.model.load()?.model;
    let report = block_on(cod::summarize(model.as_ref(), &article, &options))?;
    if args.json {
        return print_json(&report);
    }
    write!(io::stdout().lock(), "{}", show_rounds(&report))?;
    Ok(())
}

fn show_rounds(report: &CodReport) -> String {
    let mut text = String::new();
    for (i, round) in (1..).zip(&report.rounds) {
        text.push_str(&format!(
            "Round {i}: {} words, entity density {:.3}, added: {}\n",
            round.words,
            round.entity_density,
            if round.missing_entities.is_empty() {
                "-".to_owned()
            } else {
                round.missing_entities.join(", ")
            }
        ));
        if round.spliced {
            text.push_str(
                "(the rewrites failed the checks: a sentence with the new entities was spliced in)\n",
            );
        }
        if let Some(error) = &round.error {
            text.push_str(&format!(
                "(failed after {} attempts, the last good summary is kept: {error})\n",
                round.attempts
            ));
        }
        text.push_str(&format!("{}\n\n", round.summary));
    }
    text
}
