//! `temper tune params|prompt SPEC`: an evaluation spec's one prompt and model, tuned against
//! its assertions on the train rows (temper-tune), and reported on the held-out rows.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use clap::{Args, Subcommand};
use temper_core::GenerationParams;
use temper_eval::{Evaluator, Row, Spec, Variant, VariantReport};
use temper_models::DEFAULT_CHAT_MODEL;
use temper_tune::{
    describe, optimise_prompt, search_params, write_prompt, Candidate, Measurement, ParamObjective,
    ParamReport, PromptObjective, PromptReport, RowOutcome, TuneError, TuneSpec,
};

use crate::eval::{open_evaluator, report_errors, Models};
use crate::output::{block_on, notice, print_json};

#[derive(Subcommand)]
pub enum TuneCommand {
    /// Search generation parameters over the spec's `[tune.space]` (docs/evaluation.md).
    Params(TuneArgs),
    /// Optimise the prompt: bootstrapped few-shot demos and proposed instructions.
    Prompt {
        #[command(flatten)]
        args: TuneArgs,
        /// Where to write the winning prompt file [default: next to the tuned one, as NAME.tuned.toml].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct TuneArgs {
    /// The evaluation spec: one prompt, one model, a dataset with train and held-out rows,
    /// assertions, and a `[tune]` table.
    spec: PathBuf,
    /// Print everything the search did as JSON.
    #[arg(long)]
    json: bool,
    /// Ask the model every time: neither read nor write the evaluation cache.
    #[arg(long)]
    no_cache: bool,
}

pub fn run(command: TuneCommand) -> anyhow::Result<()> {
    match command {
        TuneCommand::Params(args) => {
            let setup = Setup::load(&args)?;
            let report = block_on(search_params(
                &setup,
                &setup.tune,
                &setup.base.params,
                &setup.train,
                &setup.held_out,
            ))?;
            if args.json {
                return print_json(&report);
            }
            print_params(&report, &setup.base.params)
        }
        TuneCommand::Prompt { args, out } => {
            let setup = Setup::load(&args)?;
            let proposer_name =
                setup.tune.prompt.proposer.clone().unwrap_or_else(|| setup.base.model.clone());
            let proposer = setup.models.get(&proposer_name).map_err(anyhow::Error::msg)?;
            let base = &setup.base.prompt;
            let report = block_on(optimise_prompt(
                &setup,
                proposer.as_ref(),
                &temper_tune::describe_task(base),
                Candidate::baseline(base),
                &setup.train,
                &setup.held_out,
                &setup.tune,
            ))?;
            let out = out.unwrap_or_else(|| tuned_path(&base.path));
            write_prompt(base, &report.best().candidate, &out)?;
            notice(&format!("wrote {}", out.display()));
            if args.json {
                return print_json(&report);
            }
            print_prompt(&report)
        }
    }
}

/// `examples/eval/baseline.toml` → `examples/eval/baseline.tuned.toml`.
fn tuned_path(prompt: &Path) -> PathBuf {
    let stem = prompt.file_stem().map_or("prompt".into(), |s| s.to_string_lossy().into_owned());
    prompt.with_file_name(format!("{stem}.tuned.toml"))
}

/// A spec's variant to tune, its rows in one list (train first), and the evaluator.
struct Setup {
    tune: TuneSpec,
    base: Variant,
    rows: Vec<Row>,
    train: Vec<usize>,
    held_out: Vec<usize>,
    evaluator: Evaluator,
    models: Models,
}

impl Setup {
    fn load(args: &TuneArgs) -> anyhow::Result<Setup> {
        let spec = Spec::load(&args.spec)?;
        let tune = match &spec.tune {
            Some(table) => TuneSpec::from_value(table.clone())?,
            None => TuneSpec::default(),
        };
        let mut variants = spec.variants(DEFAULT_CHAT_MODEL);
        anyhow::ensure!(
            variants.len() == 1,
            "{}: tuning takes one prompt on one model with one parameter set; the spec gives {} variants",
            spec.path.display(),
            variants.len()
        );
        let base = variants.remove(0);
        // The dataset's own split when its rows are marked, else `[tune] holdout` of them.
        let (rows, train, held_out) = if spec.rows.iter().any(|r| r.split.is_some()) {
            let partition = spec.partition()?;
            let train: Vec<usize> = (0..partition.train.len()).collect();
            let held_out = (train.len()..train.len() + partition.test.len()).collect();
            ([partition.train, partition.test].concat(), train, held_out)
        } else {
            let (train, held_out) = tune.split(spec.rows.len());
            (spec.rows.clone(), train, held_out)
        };
        notice(&format!(
            "tuning {} on {}: {} train rows, {} held out",
            base.prompt_name(),
            base.model,
            train.len(),
            held_out.len()
        ));
        let models = Models::for_rows(spec.concurrency)?;
        let (evaluator, _) = open_evaluator(&spec, args.no_cache, &models)?;
        Ok(Setup { tune, base, rows, train, held_out, evaluator, models })
    }

    async fn evaluate(&self, variant: &Variant, indices: &[usize]) -> temper_tune::Result<VariantReport> {
        let rows: Vec<Row> = indices.iter().map(|&i| self.rows[i].clone()).collect();
        let report = self.evaluator.evaluate(variant, &rows).await.map_err(TuneError::objective)?;
        report_errors(std::slice::from_ref(&report));
        Ok(report)
    }
}

#[async_trait]
impl ParamObjective for Setup {
    async fn evaluate(&self, params: &GenerationParams, rows: &[usize]) -> temper_tune::Result<Measurement> {
        let variant = Variant { params: params.clone(), ..self.base.clone() };
        let report = Setup::evaluate(self, &variant, rows).await?;
        let per_row = |total: f64| total / report.rows.len().max(1) as f64;
        Ok(Measurement {
            score: report.score,
            latency_ms: per_row(report.rows.iter().map(|r| r.latency_ms).sum()),
            cost_usd: per_row(report.cost_usd),
        })
    }
}

#[async_trait]
impl PromptObjective for Setup {
    async fn evaluate(&self, candidate: &Candidate, rows: &[usize]) -> temper_tune::Result<Vec<RowOutcome>> {
        let variant = Variant { prompt: candidate.apply(&self.base.prompt)?, ..self.base.clone() };
        let report = Setup::evaluate(self, &variant, rows).await?;
        Ok(rows
            .iter()
            .zip(report.rows)
            .map(|(&index, row)| RowOutcome {
                index,
                input: row.input().to_owned(),
                output: row.output,
                score: row.score,
                pass: row.pass,
            })
            .collect())
    }
}

fn print_params(report: &ParamReport, base: &GenerationParams) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{:?} search: {} settings, {} evaluations over {} rows in all\n",
        report.method, report.settings, report.evaluations, report.row_evaluations
    )?;
    writeln!(
        out,
        "{:>7}  {:>5}  {:>6}  {:>11}  {:>10}  setting",
        "setting", "rows", "score", "latency ms", "cost $"
    )?;
    for &i in &report.finalists {
        let t = &report.trials[i];
        let mark = if report.best == Some(i) { "  ← best" } else { "" };
        writeln!(
            out,
            "{:>7}  {:>5}  {:>6.3}  {:>11.1}  {:>10.6}  {}{mark}",
            t.setting,
            t.rows,
            t.measurement.score,
            t.measurement.latency_ms,
            t.measurement.cost_usd,
            describe(&t.params, base)
        )?;
    }
    let settings =
        |front: &[usize]| front.iter().map(|&i| report.trials[i].setting.to_string()).collect::<Vec<_>>();
    writeln!(
        out,
        "\nPareto front, score against cost: settings {}",
        settings(&report.pareto_cost).join(", ")
    )?;
    writeln!(
        out,
        "Pareto front, score against latency: settings {}",
        settings(&report.pareto_latency).join(", ")
    )?;
    writeln!(out, "best: {}", describe(&report.best()?.params, base))?;
    if let Some(held) = &report.held_out {
        writeln!(
            out,
            "held out ({} rows): defaults {:.3}, best {:.3}",
            held.rows, held.defaults.score, held.best.score
        )?;
    }
    Ok(())
}

fn print_prompt(report: &PromptReport) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{} candidates scored on {} train rows ({} demos bootstrapped from {} rows); {} evaluations, {} proposer calls\n",
        report.candidates.len(),
        report.scoring_rows,
        report.demo_pool,
        report.demo_rows,
        report.evaluations,
        report.proposer_calls
    )?;
    for (i, c) in report.candidates.iter().enumerate() {
        let mark = if i == report.best { "  ← best" } else { "" };
        let instruction: String = c.candidate.instruction.chars().take(70).collect();
        writeln!(
            out,
            "{:>3}  {:<14}  score {:.3}  pass {:>5.1}%  {} demos  {instruction:?}{mark}",
            i,
            origin(&c.origin),
            c.score,
            100.0 * c.pass_rate,
            c.candidate.demos.len()
        )?;
    }
    for round in &report.rounds {
        if let Some(note) = &round.note {
            writeln!(out, "round {}: {note}", round.round)?;
        }
    }
    if let Some(stopped) = &report.stopped {
        writeln!(out, "{stopped}")?;
    }
    if let Some(held) = &report.held_out {
        writeln!(
            out,
            "\nheld out ({} rows): baseline {:.3} ({:.1}% pass), optimised {:.3} ({:.1}% pass)",
            held.rows,
            held.baseline_score,
            100.0 * held.baseline_pass_rate,
            held.best_score,
            100.0 * held.best_pass_rate
        )?;
    }
    Ok(())
}

fn origin(origin: &temper_tune::Origin) -> String {
    match origin {
        temper_tune::Origin::Baseline => "baseline".into(),
        temper_tune::Origin::Demos { set } => format!("demo set {set}"),
        temper_tune::Origin::Proposed { round } => format!("round {round}"),
    }
}
