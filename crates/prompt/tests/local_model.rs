//! temper-prompt on the real default model (skipped locally when it is absent, failed under
//! `CI=true`): exact token budgets, documents that do not fit, skeleton of thought decoded as
//! one batch, and chain of density rounds. The example prompt files are checked without a model.

use std::path::{Path, PathBuf};
use std::time::Instant;

use temper_core::{ChatModel, ChatRequest, GenerationParams, Message, TokenCounter};
use temper_engine::{LoadOptions, LocalModel};
use temper_prompt::cod::{self, CodOptions};
use temper_prompt::sot::{self, SotOptions};
use temper_prompt::{run, DocStrategy, Document, Layout, Prompt, PromptFile, RunOptions};

fn load(context_window: usize, sequences: usize) -> Option<LocalModel> {
    let path = temper_testkit::smollm2()?;
    let options =
        LoadOptions { threads: Some(2), context_window: Some(context_window), sequences: Some(sequences) };
    Some(LocalModel::load(&path, "smollm2-135m-instruct", options).expect("the default model loads"))
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(relative)
}

fn article(name: &str) -> String {
    std::fs::read_to_string(repo(&format!("examples/articles/{name}.txt"))).unwrap()
}

#[test]
fn every_example_prompt_file_parses_and_renders() {
    let dir = repo("examples/prompts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for path in files {
        let file = PromptFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let prompt = file.prompt(&Default::default()).unwrap_or_else(|e| panic!("{e}"));
        let messages = prompt.messages(&[], &Layout::default()).unwrap();
        assert_eq!(messages.len(), 2 * file.examples.len() + 1 + usize::from(prompt.system.is_some()));
        assert!(!file.tests.is_empty(), "{} has no test case", path.display());
    }
}

#[test]
fn the_budget_counts_exactly_what_the_engine_reads() {
    let Some(model) = load(2048, 1) else { return };
    let file = PromptFile::load(&repo("examples/prompts/classify-sentiment.toml")).unwrap();
    let prompt = file.prompt(&Default::default()).unwrap();
    let docs = [Document { source: "rosetta.txt".into(), text: article("rosetta") }];
    let layouts = [Layout::default(), Layout { grounded: true, cot: true }];
    for (documents, layout) in [(&docs[..0], &layouts[0]), (&docs[..], &layouts[1])] {
        let messages = prompt.messages(documents, layout).unwrap();
        let counted = model.count_messages(&messages).unwrap();
        let params = GenerationParams { max_tokens: Some(1), ..Default::default() };
        let response = block_on(model.chat(ChatRequest::new(messages).with_params(params))).unwrap();
        assert_eq!(counted, response.usage.prompt_tokens as usize);
    }
    // Without a system message the template adds its own, and the count includes it.
    let bare = model.count_messages(&[Message::user("Hi")]).unwrap();
    let with_system = model.count_messages(&[Message::system("Be brief."), Message::user("Hi")]).unwrap();
    assert!(bare > with_system, "{bare} {with_system}");
}

#[test]
fn documents_over_the_window_are_refused_or_truncated_to_the_last_word_that_fits() {
    let Some(model) = load(512, 1) else { return };
    let prompt = Prompt::task("Summarize the documents in one sentence.");
    let docs: Vec<Document> = ["rosetta", "penicillin"]
        .iter()
        .map(|name| Document { source: format!("{name}.txt"), text: article(name) })
        .collect();
    let params = GenerationParams { max_tokens: Some(32), temperature: Some(0.0), ..Default::default() };
    let options = |strategy| RunOptions { strategy, params: params.clone(), ..RunOptions::default() };
    let counter: &dyn TokenCounter = &model;

    let err = block_on(run(&model, Some(counter), &prompt, &docs, &options(DocStrategy::Error))).unwrap_err();
    let full = model.count_messages(&prompt.messages(&docs, &Layout::default()).unwrap()).unwrap();
    let expected = format!("the prompt is {full} tokens and 32 more are kept for the answer, but the context window is 512 tokens: {} tokens too many", full + 32 - 512);
    assert!(err.to_string().starts_with(&expected), "{err}");

    let report =
        block_on(run(&model, Some(counter), &prompt, &docs, &options(DocStrategy::Truncate))).unwrap();
    let budget = report.budget.unwrap();
    assert!(budget.fits() && budget.prompt_tokens + 32 > 512 - 8, "{budget:?}");
    assert_eq!(report.cuts.len(), 2, "{:?}", report.cuts);
    assert!(report.cuts[0].kept_words > 0 && report.cuts[1].kept_words == 0, "{:?}", report.cuts);
    assert_eq!(budget.prompt_tokens, report.answer.usage.prompt_tokens as usize);
}

/// Six points expanded by the local engine together and one after another, greedy, after a
/// warm-up that allocates every sequence's cache. Returns (together ms, one after another ms).
fn expansion_times(model: &LocalModel, rounds: usize) -> Vec<(f64, f64)> {
    let points: Vec<String> = [
        "Keep a regular schedule",
        "Avoid late caffeine",
        "Dim the lights",
        "Keep the room cool",
        "Put screens away",
        "Exercise by day",
    ]
    .map(String::from)
    .to_vec();
    let options = SotOptions {
        point_tokens: 48,
        params: GenerationParams { temperature: Some(0.0), ..Default::default() },
        ..SotOptions::default()
    };
    let question = "How can I sleep better?";
    let together = || {
        let started = Instant::now();
        let responses = block_on(sot::expand_all(model, question, &points, &options)).unwrap();
        (started.elapsed().as_secs_f64() * 1e3, responses)
    };
    let (_, warm) = together();
    assert_eq!(warm.len(), 6);
    assert!(warm.iter().all(|r| r.usage.completion_tokens > 0));
    (0..rounds)
        .map(|_| {
            let (batched, _) = together();
            let started = Instant::now();
            for i in 0..points.len() {
                block_on(sot::expand_all(model, question, &points[i..=i], &options)).unwrap();
            }
            (batched, started.elapsed().as_secs_f64() * 1e3)
        })
        .collect()
}

#[test]
fn skeleton_of_thought_expands_points_together_on_the_local_engine() {
    let Some(model) = load(1024, 8) else { return };
    let times = expansion_times(&model, 1);
    eprintln!("6 points, together vs one after another (ms): {times:?}");
    let question = "How can I sleep better?";
    let options = SotOptions {
        skeleton_repeat_penalty: Some(sot::SKELETON_REPEAT_PENALTY),
        params: GenerationParams { temperature: Some(0.0), ..Default::default() },
        ..SotOptions::default()
    };
    let answer = block_on(sot::answer(&model, question, &options)).unwrap();
    assert!((3..=10).contains(&answer.points.len()), "{:?}", answer.points);
    assert_eq!(
        answer.answer.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).count(),
        answer.points.len()
    );
    assert!(answer.timings.normal_ms.is_some());
}

#[test]
fn chain_of_density_rounds_keep_their_length_and_densify_or_say_why_not() {
    let Some(model) = load(2048, 1) else { return };
    let options = CodOptions {
        rounds: 3,
        words: 80,
        params: GenerationParams { temperature: Some(0.0), ..Default::default() },
    };
    let report = block_on(cod::summarize(&model, &article("penicillin"), &options)).unwrap();
    assert_eq!(report.rounds.len(), 3);
    // The first summary is greedy, and a run-on is cut back to whole sentences: it passes.
    assert_eq!(report.rounds[0].error, None, "{:?}", report.rounds[0]);
    let mut last_good: Option<&cod::CodRound> = None;
    for round in &report.rounds {
        match &round.error {
            None => {
                assert!((64..=96).contains(&round.words), "{round:?}");
                assert!(!round.missing_entities.is_empty(), "{round:?}");
                // Rewrites keep every entity so far and add at least one at about the same length.
                let before = last_good.map_or(0.0, |r| r.entity_density);
                assert!(round.entity_density > before, "{round:?} after {last_good:?}");
                last_good = Some(round);
            }
            Some(_) => assert_eq!(round.summary, last_good.unwrap().summary),
        }
    }
    let passed = report.rounds.iter().filter(|r| r.error.is_none()).count();
    assert!(passed >= 2, "at most one round may fail: {report:?}");
}
