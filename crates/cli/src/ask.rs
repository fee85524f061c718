//! `temper ask`: one question, answered directly or by a reasoning technique (`--method`):
//! chain of thought, self-consistency or skeleton of thought, through temper-prompt. `temper
//! answer` is the same command with skeleton of thought as its default, as it was before.

use std::io::{self, Write};

use clap::{Args, ValueEnum};
use temper_core::{ChatRequest, Message, TokenCounter};
use temper_engine::LoadOptions;
use temper_prompt::sot::{self, SotAnswer, SotOptions};
use temper_prompt::{Layout, Prompt, RunOptions};

use crate::oneshot::{answer, text_argument};
use crate::options::{load_model, resolver, AnswerShapeArgs, ConversationArgs};
use crate::output::{block_on, notice, print_json};
use crate::prompt::print_report;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AskMethod {
    /// One answer, streamed as it comes.
    Direct,
    /// Chain of thought: the model reasons step by step, then answers.
    Cot,
    /// Self-consistency: several sampled chains of thought, and the answer most of them reach.
    SelfConsistency,
    /// Skeleton of thought: a skeleton of short points, then every point expanded at once.
    Sot,
}

#[derive(Args, Debug)]
pub struct AskArgs {
    #[command(flatten)]
    conversation: ConversationArgs,
    #[command(flatten)]
    shape: AnswerShapeArgs,
    /// How to answer (default: direct; `temper answer` defaults to sot).
    #[arg(long, value_enum)]
    method: Option<AskMethod>,
    /// self-consistency: the reasoning paths to sample and vote over.
    #[arg(long, value_name = "N", default_value_t = 5)]
    paths: usize,
    /// cot, self-consistency: print only the final answer, not the reasoning.
    #[arg(long)]
    answer_only: bool,
    /// sot: the most tokens of one point's expansion.
    #[arg(long, default_value_t = 64)]
    point_tokens: u32,
    /// sot: also expand the points one after another, and report what expanding them at once saved.
    #[arg(long)]
    sequential: bool,
    /// Print one JSON object instead of streaming: the answer (text, finish reason, usage,
    /// timings, cost, tool calls, logprobs), or what the method did (reasoning, votes, points).
    #[arg(long)]
    json: bool,
    /// The question; `-` reads it from stdin.
    question: String,
}

/// Answers by `args.method`, or by `default` when it names none.
pub fn run(args: &AskArgs, default: AskMethod) -> anyhow::Result<()> {
    let method = args.method.unwrap_or(default);
    let question = text_argument(&args.question, "question")?;
    // Said in the command's terms, and before a model is loaded (the engine refuses it too;
    // skeleton of thought checks its question itself, with the rest of its options).
    anyhow::ensure!(
        method == AskMethod::Sot || !question.trim().is_empty(),
        "the question is empty: there is nothing to answer"
    );
    let shape = &args.shape;
    let shaped =
        shape.tools.is_some() || shape.json_schema.is_some() || shape.json_object || shape.logprobs.is_some();
    anyhow::ensure!(
        method == AskMethod::Direct || !shaped,
        "--tools, --json-schema, --json-object and --logprobs shape one direct answer; leave them out \
         with --method {}",
        method.to_possible_value().map_or_else(String::new, |v| v.get_name().to_owned())
    );
    match method {
        AskMethod::Direct => direct(args, question),
        AskMethod::Cot => reasoned(args, question, 0),
        AskMethod::SelfConsistency => {
            anyhow::ensure!(
                args.paths >= 2,
                "--paths {}: self-consistency votes over several reasoning paths, so it needs at least 2 \
                 (--method cot reasons once)",
                args.paths
            );
            reasoned(args, question, args.paths)
        }
        AskMethod::Sot => skeleton(args, &question),
    }
}

fn direct(args: &AskArgs, question: String) -> anyhow::Result<()> {
    let conversation = &args.conversation;
    let params = conversation.gen.params()?;
    let model = conversation.gen.model.load()?.model;
    let mut messages = conversation.opening();
    messages.push(Message::user(question));
    let mut request = args.shape.apply(ChatRequest::new(messages).with_params(params))?;
    request.truncate = conversation.gen.truncate;
    answer(model.chat_stream(request), args.json)
}

/// Chain of thought, voted over `paths` sampled paths when there are at least two.
fn reasoned(args: &AskArgs, question: String, paths: usize) -> anyhow::Result<()> {
    let gen = &args.conversation.gen;
    let mut params = gen.params()?;
    if paths >= 2 && gen.temperature.is_none() {
        // Paths need sampling: the library's default temperature.
        params.temperature = None;
    }
    let prompt = Prompt { system: args.conversation.system.clone(), ..Prompt::task(question) };
    let options = RunOptions {
        layout: Layout { cot: true, ..Layout::default() },
        self_consistency: paths,
        params,
        ..RunOptions::default()
    };
    let model = gen.model.load()?;
    let counter = model.local.as_deref().map(|local| local as &dyn TokenCounter);
    let report = block_on(temper_prompt::run(model.model.as_ref(), counter, &prompt, &[], &options))?;
    if args.json {
        return print_json(&report);
    }
    print_report(&report, args.answer_only)
}

fn skeleton(args: &AskArgs, question: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.conversation.system.is_none(),
        "--system: skeleton of thought writes its own instructions for the skeleton and the points"
    );
    let gen = &args.conversation.gen;
    let options = SotOptions {
        point_tokens: args.point_tokens,
        sequential: args.sequential,
        params: gen.params()?,
        ..SotOptions::default()
    };
    options.check(question)?;
    // One sequence per point, so that a local model expands every point in one batch.
    let load = LoadOptions { sequences: Some(options.max_points), ..gen.model.load_options() };
    let loaded = load_model(&resolver()?, gen.model.name(), load)?;
    let local = loaded.local.is_some();
    let skeleton_repeat_penalty = local.then_some(sot::SKELETON_REPEAT_PENALTY);
    let options = SotOptions { warm_up: local, skeleton_repeat_penalty, ..options };
    let sot = block_on(sot::answer(loaded.model.as_ref(), question, &options))?;
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
