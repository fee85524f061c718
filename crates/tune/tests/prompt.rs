//! Prompt optimisation on a synthetic objective: a row passes when the candidate's quality
//! beats the row's difficulty. Instructions that ask for "one word" and name the "label" are
//! better, and so are demos from even-numbered items; the proposer is scripted, garbage included.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use temper_prompt::scripted::Scripted;
use temper_tune::{optimise_prompt, Candidate, Origin, PromptObjective, PromptReport, RowOutcome, TuneSpec};

const ROWS: usize = 60;
const GOOD: &str = "Answer with one word: the label.";

#[derive(Default)]
struct Synthetic {
    calls: Mutex<Vec<(Candidate, Vec<usize>)>>,
}

fn item(input: &str) -> usize {
    input.rsplit(' ').next().and_then(|n| n.parse().ok()).expect("an item number")
}

fn label(item: usize) -> &'static str {
    if item.is_multiple_of(3) {
        "negative"
    } else {
        "positive"
    }
}

fn quality(candidate: &Candidate) -> f64 {
    let mut quality = 0.3;
    if candidate.instruction.contains("one word") {
        quality += 0.25;
    }
    if candidate.instruction.contains("label") {
        quality += 0.1;
    }
    quality + 0.1 * candidate.demos.iter().filter(|d| item(&d.prompt).is_multiple_of(2)).count() as f64
}

#[async_trait]
impl PromptObjective for Synthetic {
    async fn evaluate(&self, candidate: &Candidate, rows: &[usize]) -> temper_tune::Result<Vec<RowOutcome>> {
        self.calls.lock().unwrap().push((candidate.clone(), rows.to_vec()));
        let quality = quality(candidate);
        Ok(rows
            .iter()
            .map(|&i| {
                let pass = quality > ((i * 37) % 100) as f64 / 100.0;
                RowOutcome {
                    index: i,
                    input: format!("Review: item {i}"),
                    output: if pass { label(i) } else { "maybe" }.to_owned(),
                    score: if pass { 1.0 } else { 0.0 },
                    pass,
                }
            })
            .collect())
    }
}

/// A proposer that replies garbage first, then a list holding one good and one poor instruction.
fn proposer() -> Scripted {
    let replies = [
        "Sure:\n\n**\n}}{{".to_owned(),
        format!("Here you go:\n1. {GOOD}\n2. Be kind to the reviewer today.\n3. ok"),
    ];
    let calls = Arc::new(AtomicUsize::new(0));
    Scripted::new(move |_| replies[calls.fetch_add(1, Ordering::SeqCst).min(1)].clone())
}

async fn optimise(spec: &TuneSpec) -> (PromptReport, Synthetic, Scripted) {
    optimise_with(spec, proposer()).await
}

async fn optimise_with(spec: &TuneSpec, proposer: Scripted) -> (PromptReport, Synthetic, Scripted) {
    let objective = Synthetic::default();
    let (train, held_out) = spec.split(ROWS);
    let baseline = Candidate { instruction: "Classify the review.".into(), demos: vec![] };
    let report = optimise_prompt(&objective, &proposer, "Label reviews.", baseline, &train, &held_out, spec)
        .await
        .unwrap();
    (report, objective, proposer)
}

fn spec(text: &str) -> TuneSpec {
    TuneSpec::from_toml(&format!("seed = 11\n[prompt]\n{text}")).unwrap()
}

#[tokio::test]
async fn demos_and_instructions_beat_the_baseline_on_held_out_rows() {
    let (report, _, _) = optimise(&spec("")).await;
    assert_eq!(report.baseline().origin, Origin::Baseline);
    assert_eq!((report.demo_rows, report.scoring_rows), (21, 21));
    assert!(report.demo_pool >= 4, "the baseline passes some demo rows: {}", report.demo_pool);

    let demo_sets: Vec<_> =
        report.candidates.iter().filter(|c| matches!(c.origin, Origin::Demos { .. })).collect();
    assert_eq!(demo_sets.len(), 4);
    assert!(demo_sets
        .iter()
        .all(|c| c.candidate.demos.len() == 3 && c.candidate.instruction == "Classify the review."));
    // The best demo set is the one with the most even-numbered items, and it goes on with the proposals.
    let evens = |c: &Candidate| c.demos.iter().filter(|d| item(&d.prompt).is_multiple_of(2)).count();
    let most = demo_sets.iter().map(|c| evens(&c.candidate)).max().unwrap();
    let proposed: Vec<_> =
        report.candidates.iter().filter(|c| matches!(c.origin, Origin::Proposed { .. })).collect();
    assert!(proposed.iter().all(|c| evens(&c.candidate) == most));

    assert_eq!(report.rounds.len(), 2);
    assert!(report.rounds[0].accepted.is_empty());
    assert!(report.rounds[0].note.as_deref().unwrap().contains("no usable instruction"));
    assert_eq!(report.rounds[1].accepted, [GOOD, "Be kind to the reviewer today."]);
    assert_eq!(report.rounds[1].dropped[0].text, "ok");
    assert!(report.rounds[1].best_score > report.rounds[0].best_score);

    assert_eq!(report.best().candidate.instruction, GOOD);
    assert_eq!(report.best().origin, Origin::Proposed { round: 2 });
    let held = report.held_out.as_ref().unwrap();
    assert_eq!(held.rows, 18);
    assert!(held.best_score > held.baseline_score, "{held:?}");
    assert_eq!(report.evaluations, 1 + 4 + 2 + 2);
    assert_eq!(report.proposer_calls, 2);
    assert_eq!(report.stopped, None);
}

#[tokio::test]
async fn no_candidate_is_scored_on_the_rows_its_demos_come_from() {
    let (report, objective, _) = optimise(&spec("")).await;
    let calls = objective.calls.lock().unwrap();
    for (candidate, rows) in calls.iter() {
        for demo in &candidate.demos {
            assert!(!rows.contains(&item(&demo.prompt)), "{} scored with its own answer", demo.prompt);
        }
    }
    // Demos are the model's own passing outputs on train rows.
    for demo in &report.best().candidate.demos {
        let i = item(&demo.prompt);
        assert_eq!(demo.response, label(i));
    }
}

#[tokio::test]
async fn the_proposer_sees_the_task_the_best_instructions_and_failing_rows() {
    let always = Scripted::new(|_| format!("1. Be kind to the reviewer today.\n2. {GOOD}"));
    let (report, _, proposer) = optimise_with(&spec("keep = 1\nfailures_shown = 2"), always).await;
    let prompts = proposer.prompts();
    assert_eq!(prompts.len(), 2);
    assert!(prompts[0].contains("Label reviews."), "{}", prompts[0]);
    assert!(prompts[0].contains("Write 4 new instructions"), "{}", prompts[0]);
    // Round 2 shows only the best instruction (keep = 1) and two of its failures.
    let second = &prompts[1];
    assert!(second.contains(&format!(") {GOOD}\n")) && !second.contains("2. (score "), "{second}");
    assert_eq!(second.matches("Wrong output: maybe").count(), 2, "{second}");
    // The same reply again holds nothing new.
    assert!(report.rounds[1].dropped.iter().all(|d| d.reason == "already tried"));
    assert!(report.rounds[1].note.is_some());
}

#[tokio::test]
async fn the_budget_caps_the_evaluations() {
    let (report, _, proposer) = optimise(&spec("max_evaluations = 3")).await;
    assert_eq!(report.candidates.len(), 3);
    assert_eq!(report.evaluations, 3 + 2, "the held-out runs come on top");
    assert!(report.stopped.as_deref().unwrap().contains("budget of 3 evaluations"));
    assert!(proposer.prompts().is_empty());
}

#[tokio::test]
async fn a_seed_repeats_the_whole_run() {
    let (a, _, _) = optimise(&spec("")).await;
    let (b, _, _) = optimise(&spec("")).await;
    assert_eq!(a, b);
    let (c, _, _) = optimise(&TuneSpec { seed: 12, ..spec("") }).await;
    assert_ne!(a.candidates[1].candidate.demos, c.candidates[1].candidate.demos);
}

#[tokio::test]
async fn a_tie_goes_to_the_baseline() {
    let objective = Synthetic::default();
    let spec = spec("demo_sets = 0\nrounds = 1");
    let (train, held_out) = spec.split(ROWS);
    let baseline = Candidate { instruction: "Classify the review.".into(), demos: vec![] };
    // As good as the baseline, no better.
    let same = Scripted::new(|_| "1. Reply however you like.".to_owned());
    let report = optimise_prompt(&objective, &same, "Label reviews.", baseline, &train, &held_out, &spec)
        .await
        .unwrap();
    assert_eq!(report.candidates.len(), 2);
    assert_eq!(report.candidates[1].score, report.candidates[0].score);
    assert_eq!(report.best, 0);
    let held = report.held_out.unwrap();
    assert_eq!(held.best_score, held.baseline_score);
    assert_eq!(report.evaluations, 2 + 1, "the baseline runs once on the held-out rows");
}
