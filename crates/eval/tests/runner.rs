//! The evaluator over a scripted model: scores, the cache (a warm re-run makes no model call),
//! errors before any call, and the reports.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use temper_core::{ChatModel, GenerationParams};
use temper_eval::{report, Assertion, AssertionSpec, Cache, Evaluator, Row, Settings, Variant};
use temper_prompt::PromptFile;

use common::{block_on, calls, last, row, Priced, Scripted};
use temper_testkit::Letters;

fn assertion(kind: &str, value: Option<Value>, weight: f64) -> Assertion {
    Assertion::new(AssertionSpec { kind: kind.into(), value, weight: Some(weight), ..Default::default() })
        .unwrap()
}

fn variant(template: &str) -> Variant {
    let text = format!("system = \"Label the review.\"\ntemplate = \"{template}\"\n");
    Variant {
        prompt: PromptFile::parse(Path::new("label.toml"), &text).unwrap(),
        model: "scripted".into(),
        params: GenerationParams { temperature: Some(0.0), seed: Some(1), ..Default::default() },
        grounding: None,
        tools: None,
    }
}

fn rows() -> Vec<Row> {
    vec![
        row(&[("review", "Great phone")], Some(json!("positive"))),
        row(&[("review", "Awful phone")], Some(json!("negative"))),
        row(&[("review", "Great but loud")], Some(json!("negative"))),
    ]
}

/// Says "positive" when the review says "Great".
fn labeller() -> Arc<Scripted> {
    Arc::new(Scripted::new(|r| if last(r).contains("Great") { "positive".into() } else { "negative".into() }))
}

/// The labeller at $0.001 an answer.
fn priced(model: &Arc<Scripted>) -> Arc<Priced> {
    Arc::new(Priced { inner: model.clone(), usd: 0.001 })
}

fn evaluator(model: Arc<dyn ChatModel>, settings: Settings, cache: Option<Arc<Cache>>) -> Evaluator {
    let resolve = move |name: &str| -> Result<Arc<dyn ChatModel>, String> {
        match name {
            "scripted" | "judge" => Ok(model.clone()),
            other => Err(format!("no model `{other}`")),
        }
    };
    Evaluator::new(settings, resolve, Some(Arc::new(Letters)), cache).unwrap()
}

fn settings(assertions: Vec<Assertion>) -> Settings {
    Settings { assertions, judge: None, concurrency: 2, constrain: true }
}

#[test]
fn rows_are_scored_by_the_weighted_mean_of_their_assertions() {
    let model = labeller();
    let checks = vec![assertion("equals", None, 3.0), assertion("contains", Some(json!("tive")), 1.0)];
    let report = block_on(
        evaluator(priced(&model), settings(checks), None).evaluate(&variant("Review: {{ review }}"), &rows()),
    )
    .unwrap();
    assert_eq!(calls(&model), 3);
    assert_eq!(report.calls, 3);
    assert_eq!((report.prompt.as_str(), report.model.as_str()), ("label.toml", "scripted"));
    let scores: Vec<f64> = report.rows.iter().map(|r| r.score).collect();
    assert_eq!(scores, vec![1.0, 1.0, 0.25], "the third row fails equals (weight 3) and passes contains");
    assert_eq!(report.rows.iter().map(|r| r.pass).collect::<Vec<_>>(), vec![true, true, false]);
    assert!((report.score - 2.25 / 3.0).abs() < 1e-12);
    assert!((report.pass_rate - 2.0 / 3.0).abs() < 1e-12);
    assert!((report.cost_usd - 0.003).abs() < 1e-12);
    let third = &report.rows[2];
    assert_eq!(third.output, "positive");
    assert_eq!(third.messages.last().unwrap().content, "Review: Great but loud");
    assert_eq!(third.messages[0].content, "Label the review.");
    assert_eq!(third.assertions[0].reason, "the output is not `negative`");
}

#[test]
fn rows_are_asked_concurrently_within_the_limit() {
    let model = Arc::new(Scripted::new(|_| "positive".into()).with_delay(Duration::from_millis(30)));
    let rows: Vec<Row> =
        (0..7).map(|i| row(&[("review", &format!("r{i}"))], Some(json!("positive")))).collect();
    let settings = Settings {
        assertions: vec![assertion("equals", None, 1.0)],
        judge: None,
        concurrency: 3,
        constrain: true,
    };
    let report =
        block_on(evaluator(model.clone(), settings, None).evaluate(&variant("{{ review }}"), &rows)).unwrap();
    assert_eq!(model.max_in_flight.load(Ordering::SeqCst), 3);
    let order: Vec<String> =
        report.rows.iter().map(|r| r.vars["review"].as_str().unwrap().to_owned()).collect();
    assert_eq!(order, (0..7).map(|i| format!("r{i}")).collect::<Vec<_>>(), "rows keep their order");
    assert_eq!(report.rows.iter().map(|r| r.index).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
}

#[test]
fn a_warm_cache_makes_no_model_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eval/cache.sqlite");
    let model = labeller();
    let checks = vec![assertion("equals", None, 1.0), assertion("latency", Some(json!(60000)), 1.0)];
    let run = |variant: &Variant| {
        let cache = Arc::new(Cache::open(&path).unwrap());
        block_on(evaluator(priced(&model), settings(checks.clone()), Some(cache)).evaluate(variant, &rows()))
            .unwrap()
    };
    let base = variant("Review: {{ review }}");
    let cold = run(&base);
    assert_eq!((cold.calls, calls(&model)), (3, 3));
    assert!(cold.rows.iter().all(|r| !r.cached));
    let warm = run(&base);
    assert_eq!((warm.calls, calls(&model)), (0, 3), "a warm re-run makes no model call");
    assert!(warm.rows.iter().all(|r| r.cached));
    assert_eq!(warm.score, cold.score);
    let latencies =
        |r: &temper_eval::VariantReport| r.rows.iter().map(|row| row.latency_ms).collect::<Vec<_>>();
    assert_eq!(latencies(&warm), latencies(&cold), "a hit keeps the original latency");
    assert_eq!(warm.cost_usd, cold.cost_usd);

    // Another seed is another request.
    let mut reseeded = base.clone();
    reseeded.params.seed = Some(2);
    assert_eq!(run(&reseeded).calls, 3);
    assert_eq!(calls(&model), 6);
}

#[test]
fn judge_calls_are_cached_and_counted_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.sqlite");
    // Labels reviews; grades anything that asks for a grade as a pass.
    let model = Arc::new(Scripted::new(|r| {
        if last(r).contains("<output>") {
            "{\"pass\": true, \"score\": 1, \"reason\": \"fine\"}".into()
        } else {
            "positive".into()
        }
    }));
    let checks = vec![assertion("llm-rubric", Some(json!("Is a sentiment label.")), 1.0)];
    let settings =
        Settings { assertions: checks, judge: Some("judge".into()), concurrency: 4, constrain: true };
    let run = || {
        let cache = Arc::new(Cache::open(&path).unwrap());
        block_on(
            evaluator(model.clone(), settings.clone(), Some(cache))
                .evaluate(&variant("{{ review }}"), &rows()),
        )
        .unwrap()
    };
    let cold = run();
    assert_eq!((cold.calls, cold.pass_rate), (6, 1.0), "three answers and three verdicts");
    let warm = run();
    assert_eq!((warm.calls, calls(&model)), (0, 6));
}

#[test]
fn bad_rows_fail_before_any_model_call() {
    let model = labeller();
    let evaluator = evaluator(model.clone(), settings(vec![assertion("equals", None, 1.0)]), None);
    let variants = [variant("Review: {{ review }}"), variant("Review: {{ text }}")];
    let err = block_on(evaluator.evaluate_all(&variants, &rows())).unwrap_err().to_string();
    assert!(err.starts_with("rows.jsonl:1: no `text` for the prompt label.toml"), "{err}");
    assert_eq!(calls(&model), 0, "nothing is asked when a row of any variant cannot be rendered");

    // The prompt file's sample value is not data: a row without the variable is an error, not
    // a grade of the sample's answer.
    let mut sampled = variant("Review: {{ review }}");
    let text = "template = \"Review: {{ review }}\"\n[vars]\nreview = \"Great sample\"\n";
    sampled.prompt = PromptFile::parse(Path::new("label.toml"), text).unwrap();
    let mut rows_without = rows();
    rows_without[2].vars.clear();
    rows_without[2].source = "rows.jsonl:3".into();
    let err = block_on(evaluator.evaluate(&sampled, &rows_without)).unwrap_err().to_string();
    assert!(err.starts_with("rows.jsonl:3: no `review` for the prompt label.toml"), "{err}");
    assert_eq!(calls(&model), 0);

    let mut no_expected = rows();
    no_expected[1].expected = None;
    let err = block_on(evaluator.evaluate(&variants[0], &no_expected)).unwrap_err().to_string();
    assert!(err.contains("this row has none"), "{err}");
    let err = block_on(evaluator.evaluate(&variants[0], &[])).unwrap_err().to_string();
    assert_eq!(err, "rows: there are no rows to evaluate");
    let mut elsewhere = variants[0].clone();
    elsewhere.model = "nowhere".into();
    let err = block_on(evaluator.evaluate(&elsewhere, &rows())).unwrap_err().to_string();
    assert_eq!(err, "model `nowhere`: no model `nowhere`");
    assert_eq!(calls(&model), 0);
}

#[test]
fn what_cannot_run_is_refused_when_the_evaluator_is_made() {
    let resolve = |_: &str| -> Result<Arc<dyn ChatModel>, String> { Err("unused".into()) };
    let similar = settings(vec![assertion("similar", None, 1.0)]);
    let err = Evaluator::new(similar, resolve, None, None).err().unwrap().to_string();
    assert_eq!(err, "similar: needs an embedder, and none was given");
    let zero = settings(vec![assertion("equals", None, 0.0)]);
    let err = Evaluator::new(zero, resolve, None, None).err().unwrap().to_string();
    assert_eq!(err, "assertions: their weights sum to 0");
}

#[test]
fn reports_escape_outputs_and_fetch_nothing() {
    let model = Arc::new(Scripted::new(|_| "<script>alert('x')</script> & \"quoted\"".into()));
    let checks = vec![assertion("equals", None, 1.0)];
    let report =
        block_on(evaluator(model, settings(checks), None).evaluate(&variant("{{ review }}"), &rows()))
            .unwrap();
    let reports = vec![report];
    let html = report::html("sentiment <eval>", &reports);
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;"),
        "{html}"
    );
    assert!(
        !html.contains("<script") && !html.contains("onchange"),
        "no script, so a CSP can forbid them: {html}"
    );
    assert!(html.contains("<title>sentiment &lt;eval&gt;</title>"));
    assert!(!html.contains("http://") && !html.contains("https://"), "the report must not reach the network");
    assert!(!html.contains(" src=") && !html.contains(" href="), "nothing is loaded from elsewhere");
    assert_eq!(html.matches("<svg").count(), 3, "a score chart and two scatter plots");
    assert!(html.contains("the output is not `positive`"), "failing assertions are shown");

    let value = report::json(&reports);
    let variant = &value["variants"][0];
    for key in ["prompt", "model", "params", "score", "pass_rate", "rows"] {
        assert!(variant.get(key).is_some(), "`{key}` missing from {variant}");
    }
    assert_eq!(variant["rows"].as_array().unwrap().len(), 3);
    assert_eq!(variant["params"], json!({"temperature": 0.0, "seed": 1}));

    let table = report::table(&reports);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("prompt      model     params"), "{table}");
    assert!(
        lines[1].contains("temperature=0.0 seed=1")
            && lines[1].contains("0.000")
            && lines[1].contains("0.0%"),
        "{table}"
    );
}
