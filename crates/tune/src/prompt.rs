//! Prompt optimisation against any objective: few-shot demos bootstrapped from the model's own
//! passing outputs, then rounds of instructions proposed by a model and scored; the best
//! candidate on the train rows is compared with the baseline on the held-out rows.
//!
//! The train rows are split in two (seeded): demos come from one half and candidates are scored
//! on the other, so that no candidate is scored on a row whose answer it carries as a demo.

use async_trait::async_trait;
use rand::SeedableRng;
use serde::Serialize;
use temper_core::{ChatModel, ChatRequest, GenerationParams, Message};
use temper_prompt::{Example, PromptFile};

use crate::propose::{self, Dropped, Failure, Tried};
use crate::spec::{shuffle_split, PromptSpec, TuneSpec};
use crate::{Result, TuneError};

/// A prompt to try: its system message and its few-shot examples. The rest of the prompt file
/// (template, variables, parameters, output schema) stays as it is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    /// The system message (a template, like the file's); empty is none.
    pub instruction: String,
    pub demos: Vec<Example>,
}

impl Candidate {
    /// The prompt file's own system message and examples.
    pub fn baseline(file: &PromptFile) -> Candidate {
        Candidate {
            instruction: file.system.as_ref().map(|t| t.source().to_owned()).unwrap_or_default(),
            demos: file.examples.clone(),
        }
    }
}

/// How a candidate did on one row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RowOutcome {
    /// The row's index in the dataset.
    pub index: usize,
    /// The rendered user message.
    pub input: String,
    pub output: String,
    pub score: f64,
    pub pass: bool,
}

/// What prompt optimisation optimises: typically the evaluator running the prompt file with the
/// candidate's system message and examples (`Candidate::apply`) on the dataset's rows `rows`.
#[async_trait]
pub trait PromptObjective: Send + Sync {
    async fn evaluate(&self, candidate: &Candidate, rows: &[usize]) -> Result<Vec<RowOutcome>>;
}

/// Where a candidate came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Origin {
    Baseline,
    /// The baseline's instruction with the `set`-th subset of bootstrapped demos.
    Demos {
        set: usize,
    },
    /// An instruction proposed in `round` (from 1), with the best demos.
    Proposed {
        round: usize,
    },
}

/// A candidate and its mean score and pass rate on the scoring rows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scored {
    pub origin: Origin,
    pub candidate: Candidate,
    pub score: f64,
    pub pass_rate: f64,
}

/// One round of proposals.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Round {
    pub round: usize,
    /// The proposer's reply as it came.
    pub reply: String,
    pub accepted: Vec<String>,
    pub dropped: Vec<Dropped>,
    /// Set when the reply gave no usable instruction; the next round goes on.
    pub note: Option<String>,
    /// The best score on the scoring rows after this round.
    pub best_score: f64,
}

/// The baseline and the best candidate on the held-out rows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PromptHeldOut {
    pub rows: usize,
    pub baseline_score: f64,
    pub baseline_pass_rate: f64,
    pub best_score: f64,
    pub best_pass_rate: f64,
}

/// Everything prompt optimisation did and found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PromptReport {
    /// Train rows the demos were bootstrapped from, and those the candidates were scored on.
    pub demo_rows: usize,
    pub scoring_rows: usize,
    /// Distinct passing outputs of the baseline on the demo rows: the demos to choose from.
    pub demo_pool: usize,
    /// Every candidate scored, in order: the baseline first.
    pub candidates: Vec<Scored>,
    pub rounds: Vec<Round>,
    /// The best candidate on the scoring rows (an index into `candidates`); ties go to the earlier.
    pub best: usize,
    pub held_out: Option<PromptHeldOut>,
    /// Calls of the objective (the held-out ones included) and the rows they ran on.
    pub evaluations: usize,
    pub row_evaluations: usize,
    pub proposer_calls: usize,
    /// Set when the budget of evaluations stopped the search early.
    pub stopped: Option<String>,
}

impl PromptReport {
    pub fn baseline(&self) -> &Scored {
        &self.candidates[0]
    }

    pub fn best(&self) -> &Scored {
        &self.candidates[self.best]
    }
}

/// What the proposer is asked for: the task, in words, for the meta-prompt. The file's
/// description and its user template say what the prompt is for and what its inputs look like.
pub fn describe_task(file: &PromptFile) -> String {
    let description = file.description.as_deref().unwrap_or("(no description)");
    format!("{description}\nEach input is this template filled in: {}", file.template.source())
}

/// Optimises `baseline` against `objective`: bootstraps demos and proposes instructions on the
/// `train` rows (with `proposer`), then runs the baseline and the best candidate on `held_out`.
/// `task` says what the prompt does (`describe_task`); `spec.prompt` sets the search, and
/// `spec.seed` makes every choice repeatable.
pub async fn optimise_prompt(
    objective: &dyn PromptObjective,
    proposer: &dyn ChatModel,
    task: &str,
    baseline: Candidate,
    train: &[usize],
    held_out: &[usize],
    spec: &TuneSpec,
) -> Result<PromptReport> {
    let seed = spec.seed;
    let spec = &spec.prompt;
    if train.is_empty() {
        return Err(TuneError::spec("tune", "there are no train rows to tune on"));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (demo_rows, scoring_rows) = shuffle_split(train, train.len() / 2, &mut rng);

    let mut run = Run {
        objective,
        spec,
        candidates: Vec::new(),
        outcomes: Vec::new(),
        evaluations: 0,
        rows: 0,
        budget_spent: false,
    };

    // 1. The baseline, on all the train rows at once: its passing outputs on the demo rows are
    //    the demo pool, and its outcomes on the scoring rows are its score.
    let all = run.call(&baseline, train).await?;
    let (on_demo_rows, on_scoring_rows): (Vec<RowOutcome>, Vec<RowOutcome>) =
        all.into_iter().partition(|o| demo_rows.binary_search(&o.index).is_ok());
    run.record(Origin::Baseline, baseline.clone(), on_scoring_rows);
    let mut pool: Vec<Example> = Vec::new();
    for outcome in on_demo_rows.into_iter().filter(|o| o.pass) {
        if !pool.iter().any(|d| d.prompt == outcome.input) {
            pool.push(Example { prompt: outcome.input, response: outcome.output, reasoning: None });
        }
    }

    // 2. Seeded subsets of the pool as few-shot demos, with the baseline's instruction.
    for (set, demos) in demo_sets(&pool, spec.demos, spec.demo_sets, &mut rng).into_iter().enumerate() {
        if !run.may_evaluate() {
            break;
        }
        let candidate = Candidate { instruction: baseline.instruction.clone(), demos };
        run.score(Origin::Demos { set }, candidate, &scoring_rows).await?;
    }
    let best_demos = run.candidates[run.best()].candidate.demos.clone();

    // 3. Rounds of proposed instructions, each scored with the best demos.
    let mut rounds = Vec::new();
    let mut proposer_calls = 0;
    for round in 1..=spec.rounds {
        if !run.may_evaluate() {
            break;
        }
        let request = run.meta_prompt(task);
        let params = GenerationParams {
            temperature: Some(0.7),
            max_tokens: Some(400),
            seed: Some(seed.wrapping_add(round as u64)),
            ..Default::default()
        };
        let reply = proposer.chat(ChatRequest::new(request).with_params(params)).await?.text;
        proposer_calls += 1;
        let seen: Vec<String> = run.candidates.iter().map(|c| c.candidate.instruction.clone()).collect();
        let proposals = propose::parse_proposals(&reply, spec.proposals, &seen);
        for instruction in &proposals.accepted {
            if !run.may_evaluate() {
                break;
            }
            let candidate = Candidate { instruction: instruction.clone(), demos: best_demos.clone() };
            run.score(Origin::Proposed { round }, candidate, &scoring_rows).await?;
        }
        let note = proposals.accepted.is_empty().then(|| {
            format!(
                "the proposer's reply gave no usable instruction ({} pieces dropped)",
                proposals.dropped.len()
            )
        });
        rounds.push(Round {
            round,
            reply,
            accepted: proposals.accepted,
            dropped: proposals.dropped,
            note,
            best_score: run.candidates[run.best()].score,
        });
    }

    // 4. The baseline and the best on the held-out rows.
    let best = run.best();
    let stopped = run
        .budget_spent
        .then(|| format!("the budget of {} evaluations on the train rows was spent", spec.max_evaluations));
    let held_out = if held_out.is_empty() {
        None
    } else {
        let baseline_outcomes = run.call(&baseline, held_out).await?;
        let best_outcomes = match best {
            0 => baseline_outcomes.clone(),
            _ => {
                let winner = run.candidates[best].candidate.clone();
                run.call(&winner, held_out).await?
            }
        };
        let (baseline_score, baseline_pass_rate) = means(&baseline_outcomes);
        let (best_score, best_pass_rate) = means(&best_outcomes);
        Some(PromptHeldOut {
            rows: held_out.len(),
            baseline_score,
            baseline_pass_rate,
            best_score,
            best_pass_rate,
        })
    };
    Ok(PromptReport {
        demo_rows: demo_rows.len(),
        scoring_rows: scoring_rows.len(),
        demo_pool: pool.len(),
        candidates: run.candidates,
        rounds,
        best,
        held_out,
        evaluations: run.evaluations,
        row_evaluations: run.rows,
        proposer_calls,
        stopped,
    })
}

/// The state of one optimisation: the candidates scored so far and the objective's bill.
struct Run<'a> {
    objective: &'a dyn PromptObjective,
    spec: &'a PromptSpec,
    candidates: Vec<Scored>,
    /// Each candidate's outcomes on the scoring rows.
    outcomes: Vec<Vec<RowOutcome>>,
    evaluations: usize,
    rows: usize,
    /// Whether a candidate went unscored for want of budget.
    budget_spent: bool,
}

impl Run<'_> {
    async fn call(&mut self, candidate: &Candidate, rows: &[usize]) -> Result<Vec<RowOutcome>> {
        self.evaluations += 1;
        self.rows += rows.len();
        self.objective.evaluate(candidate, rows).await
    }

    /// Whether the budget allows another candidate. The candidates scored on the train rows
    /// count against it; the two held-out evaluations come on top.
    fn may_evaluate(&mut self) -> bool {
        let may = self.candidates.len() < self.spec.max_evaluations;
        self.budget_spent |= !may;
        may
    }

    async fn score(&mut self, origin: Origin, candidate: Candidate, rows: &[usize]) -> Result<()> {
        let outcomes = self.call(&candidate, rows).await?;
        self.record(origin, candidate, outcomes);
        Ok(())
    }

    fn record(&mut self, origin: Origin, candidate: Candidate, outcomes: Vec<RowOutcome>) {
        let (score, pass_rate) = means(&outcomes);
        self.candidates.push(Scored { origin, candidate, score, pass_rate });
        self.outcomes.push(outcomes);
    }

    /// The best candidate so far; ties go to the earlier, so the baseline wins a tie.
    fn best(&self) -> usize {
        self.ranked()[0]
    }

    /// Candidates best first, ties in order.
    fn ranked(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.candidates.len()).collect();
        order.sort_by(|&a, &b| self.candidates[b].score.total_cmp(&self.candidates[a].score).then(a.cmp(&b)));
        order
    }

    /// The proposer's request: the best distinct instructions so far and the best one's failures.
    fn meta_prompt(&self, task: &str) -> Vec<Message> {
        let mut tried: Vec<Tried> = Vec::new();
        for i in self.ranked() {
            let c = &self.candidates[i];
            if tried.len() < self.spec.keep && !tried.iter().any(|t| t.instruction == c.candidate.instruction)
            {
                tried.push(Tried { instruction: &c.candidate.instruction, score: c.score });
            }
        }
        let failures: Vec<Failure> = self.outcomes[self.best()]
            .iter()
            .filter(|o| !o.pass)
            .take(self.spec.failures_shown)
            .map(|o| Failure { input: &o.input, output: &o.output })
            .collect();
        let text = propose::meta_prompt(task, &tried, &failures, self.spec.proposals);
        vec![Message::system(propose::PROPOSER_SYSTEM), Message::user(text)]
    }
}

/// Up to `sets` distinct seeded subsets of `k` demos from `pool`, each in pool order; the
/// whole pool once when it has `k` or fewer; none when it is empty.
fn demo_sets(pool: &[Example], k: usize, sets: usize, rng: &mut impl rand::Rng) -> Vec<Vec<Example>> {
    if pool.is_empty() || sets == 0 {
        return Vec::new();
    }
    if pool.len() <= k {
        return vec![pool.to_vec()];
    }
    let mut chosen: Vec<Vec<usize>> = Vec::new();
    // Few distinct subsets exist when the pool is barely larger than k: stop after many repeats.
    for _ in 0..sets * 20 {
        if chosen.len() == sets {
            break;
        }
        let mut subset = rand::seq::index::sample(rng, pool.len(), k).into_vec();
        subset.sort_unstable();
        if !chosen.contains(&subset) {
            chosen.push(subset);
        }
    }
    chosen.into_iter().map(|subset| subset.into_iter().map(|i| pool[i].clone()).collect()).collect()
}

/// Mean score and pass rate; 0 for no rows.
fn means(outcomes: &[RowOutcome]) -> (f64, f64) {
    if outcomes.is_empty() {
        return (0.0, 0.0);
    }
    let n = outcomes.len() as f64;
    let score = outcomes.iter().map(|o| o.score).sum::<f64>() / n;
    let passed = outcomes.iter().filter(|o| o.pass).count() as f64;
    (score, passed / n)
}
