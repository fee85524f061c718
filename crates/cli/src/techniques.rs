//! `temper summarize --method cod` (chain of density) and `temper answer --method sot`
//! (skeleton of thought), through temper-prompt.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use temper_engine::LoadOptions;
use temper_prompt::cod::{self, CodOptions, CodReport};
use temper_prompt::sot::{self, SotAnswer, SotOptions};

use crate::options::{load_model, resolver, GenArgs};
use crate::output::{block_on, notice, print_json};

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

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AnswerMethod {
    /// Skeleton of thought: a skeleton of short points, then every point expanded at once.
    Sot,
}

#[derive(Args, Debug)]
pub struct AnswerArgs {
    #[command(flatten)]
    gen: GenArgs,
    question: String,
    #[arg(long, value_enum, default_value_t = AnswerMethod::Sot)]
    method: AnswerMethod,
    /// The most tokens of one point's expansion.
    #[arg(long, default_value_t = 64)]
    point_tokens: u32,
    /// Also expand the points one after another, and report what expanding them at once saved.
    #[arg(long)]
    sequential: bool,
    /// Print {"points", "answer", "timings", …} as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn summarize(args: &SummarizeArgs) -> anyhow::Result<()> {
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

pub fn answer(args: &AnswerArgs) -> anyhow::Result<()> {
    let AnswerMethod::Sot = args.method;
    let options = SotOptions {
        point_tokens: args.point_tokens,
        sequential: args.sequential,
        params: args.gen.params()?,
        ..SotOptions::default()
    };
    options.check(&args.question)?;
    // One sequence per point, so that a local model expands every point in one batch.
    let load = LoadOptions { sequences: Some(options.max_points), ..args.gen.model.load_options() };
    let loaded = load_model(&resolver()?, args.gen.model.name(), load)?;
    let local = loaded.local.is_some();
    let skeleton_repeat_penalty = local.then_some(sot::SKELETON_REPEAT_PENALTY);
    let options = SotOptions { warm_up: local, skeleton_repeat_penalty, ..options };
    let sot = block_on(sot::answer(loaded.model.as_ref(), &args.question, &options))?;
    if args.json {
        return print_json(&sot);
    }
    writeln!(io::stdout().lock(), "{}", sot.answer)?;
    notice(&timing_line(&sot));
    Ok(())
}

/// `skeleton 310 ms · 5 points at once 1200 ms (240 tokens) · SoT 1510 ms · normal answer 2900 ms (320 tokens), 1.92× · one after another 2600 ms, 2.17×`
fn timing_line(sot: &SotAnswer) -> String {
    let t = &sot.timings;
    let mut line = format!(
        "skeleton {:.0} ms · {} points at once {:.0} ms ({} tokens) · SoT {:.0} ms",
        t.skeleton_ms,
        sot.points.len(),
        t.expand_ms,
        t.expand_tokens,
        t.sot_ms
    );
    if let (Some(ms), Some(tokens), Some(speedup)) = (t.normal_ms, t.normal_tokens, t.speedup_vs_normal) {
        line.push_str(&format!(" · normal answer {ms:.0} ms ({tokens} tokens), {speedup:.2}×"));
    }
    if let (Some(ms), Some(speedup)) = (t.sequential_expand_ms, t.batch_speedup) {
        line.push_str(&format!(" · one after another {ms:.0} ms, {speedup:.2}×"));
    }
    line
}
