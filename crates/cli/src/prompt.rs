//! `temper prompt render` and `temper prompt run`: prompt files, documents in the prompt and
//! chain of thought, through temper-prompt.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use temper_core::{EmbeddingModel, Message, TokenCounter};
use temper_prompt::{parse_vars, Document, Layout, PassageRanker, Prompt, PromptFile, RunOptions, RunReport};

use crate::options::{GenArgs, ModelArgs};
use crate::output::{block_on, notice, print_json};

#[derive(Subcommand)]
pub enum PromptCommand {
    /// Print the exact messages a prompt file sends, after templating.
    Render {
        #[command(flatten)]
        prompt: PromptArgs,
        #[command(flatten)]
        model: ModelArgs,
        /// Also load the model and print the prompt's exact token count (on stderr).
        #[arg(long)]
        tokens: bool,
        /// Print the exact text the model reads, after its chat template, instead of the
        /// messages (loads the model; implies --tokens).
        #[arg(long = "final", conflicts_with = "json")]
        final_text: bool,
        /// Print the messages as a JSON array of {role, content}.
        #[arg(long)]
        json: bool,
    },
    /// Run a prompt file and print the answer.
    Run {
        #[command(flatten)]
        prompt: PromptArgs,
        #[command(flatten)]
        gen: GenArgs,
        /// What to do when the documents do not fit in the context window.
        #[arg(long, value_enum, default_value_t = Strategy::Error)]
        doc_strategy: Strategy,
        /// With --cot, print only the final answer, not the reasoning.
        #[arg(long)]
        answer_only: bool,
        /// Sample N reasoning paths and answer with the majority (implies --cot).
        #[arg(long, value_name = "N")]
        self_consistency: Option<usize>,
        /// Print everything the run did (messages, budget, answer, votes) as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// What selects and fills a prompt.
#[derive(Args, Clone, Debug)]
pub struct PromptArgs {
    /// The prompt file (TOML; see docs/prompting.md).
    file: PathBuf,
    /// A template variable, NAME=VALUE (repeatable); overrides the file's [vars].
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// A document to put into the prompt, between delimiters (repeatable).
    #[arg(long = "doc", value_name = "FILE")]
    docs: Vec<PathBuf>,
    /// Answer only from the documents, and say so when they do not hold the answer.
    #[arg(long)]
    only_docs: bool,
    /// Chain of thought: reason step by step (with the examples' reasoning when they have it).
    #[arg(long)]
    cot: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Strategy {
    /// Refuse, saying by how many tokens the prompt is too long.
    Error,
    /// Keep what fits and report what was dropped.
    Truncate,
    /// Answer on each part that fits, then combine the partial answers.
    MapReduce,
    /// Keep the passages closest to the task that fit (ranked by the default embedder).
    Retrieval,
}

impl From<Strategy> for temper_prompt::DocStrategy {
    fn from(strategy: Strategy) -> Self {
        match strategy {
            Strategy::Error => Self::Error,
            Strategy::Truncate => Self::Truncate,
            Strategy::MapReduce => Self::MapReduce,
            Strategy::Retrieval => Self::Retrieval,
        }
    }
}

/// A prompt file loaded and filled in, with its documents.
struct Filled {
    file: PromptFile,
    prompt: Prompt,
    documents: Vec<Document>,
    layout: Layout,
}

impl PromptArgs {
    fn load(&self, cot: bool) -> anyhow::Result<Filled> {
        let file = PromptFile::load(&self.file)?;
        let given = parse_vars(&self.vars)?;
        file.check_given(&given)?;
        let prompt = file.prompt(&given)?;
        let documents = self.docs.iter().map(|path| Document::load(path)).collect::<Result<_, _>>()?;
        let layout = Layout { grounded: self.only_docs, cot: self.cot || cot };
        if self.only_docs && self.docs.is_empty() {
            anyhow::bail!("--only-docs needs at least one --doc");
        }
        Ok(Filled { file, prompt, documents, layout })
    }
}

/// `--model`, else the prompt file's model, else the default.
fn model_for(args: &ModelArgs, file: &PromptFile) -> ModelArgs {
    ModelArgs { model: args.model.clone().or_else(|| file.model.clone()), ..args.clone() }
}

pub fn run(command: PromptCommand) -> anyhow::Result<()> {
    match command {
        PromptCommand::Render { prompt, model, tokens, final_text, json } => {
            render(&prompt, &model, Show { tokens: tokens || final_text, final_text, json })
        }
        PromptCommand::Run { prompt, gen, doc_strategy, answer_only, self_consistency, json } => {
            if let Some(n) = self_consistency.filter(|&n| n < 2) {
                anyhow::bail!(
                    "--self-consistency {n}: it samples N reasoning paths and answers with the majority, so N \
                     must be at least 2 (leave it out for one answer)"
                );
            }
            let loaded = prompt.load(self_consistency.is_some())?;
            let mut gen = gen;
            gen.model = model_for(&gen.model, &loaded.file);
            let mut params = loaded.file.params.overlay(&gen.params()?);
            if self_consistency.is_some() && gen.temperature.is_none() {
                // The file's temperature is for one answer; paths need sampling (the library's default).
                params.temperature = None;
            }
            let options = RunOptions {
                layout: loaded.layout.clone(),
                strategy: doc_strategy.into(),
                self_consistency: self_consistency.unwrap_or(0),
                params,
                ranker: match doc_strategy {
                    Strategy::Retrieval => Some(PassageRanker(Arc::new(|| {
                        crate::rag::embedder()
                            .map(|e| Arc::new(e) as Arc<dyn EmbeddingModel>)
                            .map_err(|e| format!("{e:#}"))
                    }))),
                    _ => None,
                },
            };
            let model = gen.model.load()?;
            let counter = model.local.as_deref().map(|local| local as &dyn TokenCounter);
            if counter.is_none() && !loaded.documents.is_empty() {
                notice(&format!("{} is remote: its tokens cannot be counted here, so the documents' budget is not checked", gen.model.name()));
            }
            let report = block_on(temper_prompt::run(
                model.model.as_ref(),
                counter,
                &loaded.prompt,
                &loaded.documents,
                &options,
            ))?;
            if json {
                return print_json(&report);
            }
            print_report(&report, answer_only)
        }
    }
}

/// What `prompt render` prints.
struct Show {
    tokens: bool,
    final_text: bool,
    json: bool,
}

fn render(args: &PromptArgs, model: &ModelArgs, show: Show) -> anyhow::Result<()> {
    let loaded = args.load(false)?;
    let messages = loaded.prompt.messages(&loaded.documents, &loaded.layout)?;
    if show.tokens {
        let model = model_for(model, &loaded.file);
        let local = model.load_local("prompt render --tokens")?;
        let final_prompt = local.final_prompt(&messages, &loaded.file.params)?;
        notice(&format!(
            "{} tokens for {} (context window {})",
            final_prompt.tokens,
            model.name(),
            final_prompt.context_window
        ));
        if show.final_text {
            write!(io::stdout().lock(), "{}", final_prompt.text)?;
            return Ok(());
        }
    }
    if show.json {
        return print_json(&messages);
    }
    write!(io::stdout().lock(), "{}", show_messages(&messages))?;
    Ok(())
}

/// Each message under its role, as `[system]` … `[user]` … blocks.
fn show_messages(messages: &[Message]) -> String {
    messages.iter().map(|m| format!("[{}]\n{}\n\n", m.role, m.content)).collect()
}

/// The answer on stdout; what the run did to get it on stderr.
pub fn print_report(report: &RunReport, answer_only: bool) -> anyhow::Result<()> {
    if let Some(budget) = &report.budget {
        notice(&format!(
            "prompt: {} tokens, {} kept for the answer, context window {}",
            budget.prompt_tokens, budget.answer_tokens, budget.context_window
        ));
    }
    for cut in &report.cuts {
        notice(&format!("truncated: {cut}"));
    }
    if let Some(retrieval) = &report.retrieval {
        let kept: Vec<String> =
            retrieval.kept.iter().map(|r| format!("{} ({:.2})", r.source, r.score)).collect();
        notice(&format!(
            "retrieval: kept {} of {} passages, best first: {}",
            kept.len(),
            retrieval.passages,
            kept.join(", ")
        ));
    }
    if !report.partial_answers.is_empty() {
        notice(&format!("map-reduce: the answer combines {} partial answers", report.partial_answers.len()));
    }
    let answer = &report.answer;
    if answer.requests > 1 && answer.json.is_some() {
        notice(&format!("structured output: valid after {} attempts", answer.requests));
    }
    let mut out = io::stdout().lock();
    if let Some(vote) = &answer.vote {
        notice(&format!("self-consistency: {} of {} paths answered this", vote.votes, vote.paths.len()));
    }
    match (&answer.reasoning, &answer.json) {
        (_, Some(json)) => writeln!(out, "{}", serde_json::to_string_pretty(json)?)?,
        (Some(reasoned), None) if !answer_only => {
            writeln!(out, "Reasoning:\n{}\n\nAnswer: {}", reasoned.reasoning, reasoned.answer)?
        }
        _ => writeln!(out, "{}", answer.text)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_show_under_their_roles() {
        let shown = show_messages(&[Message::system("Be brief."), Message::user("Hi")]);
        assert_eq!(shown, "[system]\nBe brief.\n\n[user]\nHi\n\n");
    }
}
