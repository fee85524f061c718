//! `temper cost …`: what the logged calls cost, and what traffic would cost.

use std::io::{self, Write};

use anyhow::Context;
use clap::{Args, Subcommand};
use temper_models::cost::{report as day_totals, CallLog, Estimate, Traffic};
use temper_models::ModelStore;

use crate::options::resolver;
use crate::output::{notice, print_json, usd};

#[derive(Subcommand)]
pub enum CostCommand {
    /// Sum the logged calls per model and day: calls, tokens, USD.
    Report {
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Compare each priced profile with a VM at a fixed price: monthly cost and break-even traffic.
    Estimate(EstimateArgs),
}

pub fn run(command: CostCommand) -> anyhow::Result<()> {
    match command {
        CostCommand::Report { json } => report(json),
        CostCommand::Estimate(args) => estimate(&args),
    }
}

/// `temper cost report`: the call log summed per day and model.
fn report(json: bool) -> anyhow::Result<()> {
    let store = ModelStore::from_env()?;
    let log = CallLog::in_home(store.root());
    let contents = log.read()?;
    if let Some(first) = contents.bad_lines.first() {
        let count = contents.bad_lines.len();
        notice(&format!(
            "warning: skipped {count} {} of {} that {} (line {}: {})",
            if count == 1 { "line" } else { "lines" },
            log.path().display(),
            if count == 1 { "is not a call record" } else { "are not call records" },
            first.line,
            first.reason
        ));
    }
    let totals = day_totals(&contents.records);
    if json {
        return print_json(&totals);
    }
    let mut out = io::stdout();
    if totals.is_empty() {
        // A log of nothing but bad lines is not a log of no calls.
        let what = if contents.bad_lines.is_empty() { "no calls logged yet" } else { "no call records" };
        writeln!(out, "{what} in {}", log.path().display())?;
        return Ok(());
    }
    let width = totals.iter().map(|t| t.model.len()).max().unwrap_or(0).max(5);
    writeln!(
        out,
        "{:10}  {:width$}  {:>6}  {:>6}  {:>10}  {:>10}  {:>12}",
        "DAY", "MODEL", "CALLS", "FAILED", "PROMPT", "COMPLETION", "COST"
    )?;
    for t in &totals {
        let cost = match t.unpriced_calls {
            _ if t.calls == 0 => "-".to_owned(),
            0 => usd(t.cost),
            n if n == t.calls => "no prices".to_owned(),
            n => format!("{} (+{n} unpriced)", usd(t.cost)),
        };
        writeln!(
            out,
            "{:10}  {:width$}  {:>6}  {:>6}  {:>10}  {:>10}  {:>12}",
            t.day, t.model, t.calls, t.failed_calls, t.prompt_tokens, t.completion_tokens, cost
        )?;
    }
    let total: f64 = totals.iter().map(|t| t.cost).sum();
    writeln!(out, "\ntotal {}   (log: {})", usd(total), log.path().display())?;
    Ok(())
}

/// The traffic and VM price `temper cost estimate` compares at.
#[derive(Args, Clone, Debug)]
pub struct EstimateArgs {
    /// Requests per day.
    #[arg(long, allow_negative_numbers = true)]
    pub requests_per_day: f64,
    /// Prompt tokens per request.
    #[arg(long, allow_negative_numbers = true)]
    pub input_tokens: f64,
    /// Completion tokens per request.
    #[arg(long, allow_negative_numbers = true)]
    pub output_tokens: f64,
    /// What a VM that serves the model yourself costs per hour, in USD.
    #[arg(long, allow_negative_numbers = true)]
    pub vm_hourly: f64,
}

/// `temper cost estimate`: each priced profile per month against the VM, and the break-even.
fn estimate(args: &EstimateArgs) -> anyhow::Result<()> {
    for (name, value) in [
        ("--requests-per-day", args.requests_per_day),
        ("--input-tokens", args.input_tokens),
        ("--output-tokens", args.output_tokens),
        ("--vm-hourly", args.vm_hourly),
    ] {
        anyhow::ensure!(
            value.is_finite() && value >= 0.0,
            "{name} must be a number, 0 or more (got {value})"
        );
    }
    let resolver = resolver()?;
    let profiles = resolver.profiles();
    let priced: Vec<_> = profiles.iter().filter_map(|(name, p)| Some((name, p, p.prices()?))).collect();
    let file = profiles
        .path()
        .map_or("temper.toml (none found; `temper init` writes one)".to_owned(), |p| p.display().to_string());
    anyhow::ensure!(
        !priced.is_empty(),
        "no profile in {file} has prices; add input_price_per_mtok and output_price_per_mtok to a profile"
    );
    let traffic = Traffic {
        requests_per_day: args.requests_per_day,
        input_tokens: args.input_tokens,
        output_tokens: args.output_tokens,
    };
    let mut out = io::stdout();
    let vm = Estimate::new(&priced[0].2, &traffic, args.vm_hourly).vm_monthly;
    writeln!(
        out,
        "{} requests/day of {} prompt + {} completion tokens; a VM at {}/h costs {}/month\n",
        args.requests_per_day,
        args.input_tokens,
        args.output_tokens,
        usd(args.vm_hourly),
        usd(vm)
    )
    .context("cannot write the estimate")?;
    let width = priced.iter().map(|(n, ..)| n.len()).max().unwrap_or(0).max(7);
    writeln!(
        out,
        "{:width$}  {:>14}  {:>12}  {:>12}  {:>7}  BREAK-EVEN",
        "PROFILE", "USD/MTOK IN/OUT", "API/MONTH", "VM/MONTH", "CHEAPER"
    )?;
    for (name, _, prices) in &priced {
        let estimate = Estimate::new(prices, &traffic, args.vm_hourly);
        let cheaper = if estimate.api_is_cheaper() { "api" } else { "vm" };
        let even = match estimate.break_even_requests_per_day {
            Some(n) => format!("{n:.0} requests/day"),
            None => "never (requests cost nothing)".to_owned(),
        };
        let rates = format!("{}/{}", prices.input_per_mtok, prices.output_per_mtok);
        writeln!(
            out,
            "{name:width$}  {rates:>14}  {:>12}  {:>12}  {cheaper:>7}  {even}",
            usd(estimate.api_monthly),
            usd(estimate.vm_monthly)
        )?;
    }
    writeln!(out, "\nBelow the break-even, paying per token costs less; above it, the VM does.")?;
    Ok(())
}
