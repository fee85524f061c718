//! Every assertion type on hand-made cases: pass, fail, edges, `not-`, and bad configuration
//! refused with its reason.

mod common;

use serde_json::{json, Value};
use temper_eval::assertion::{Graders, Observation};
use temper_eval::{Assertion, AssertionOutcome, AssertionSpec};

use common::{block_on, calls, last, row, Scripted};
use temper_testkit::Letters;

fn assertion(kind: &str, value: Option<Value>) -> Assertion {
    Assertion::new(AssertionSpec { kind: kind.into(), value, ..Default::default() })
        .unwrap_or_else(|e| panic!("{e}"))
}

fn refused(spec: AssertionSpec) -> String {
    Assertion::new(spec).expect_err("the assertion is refused")
}

/// Checks `output` (100 ms, $0.002) on a row whose expected value is `expected`.
fn check_with(
    a: &Assertion,
    output: &str,
    expected: Option<Value>,
    graders: Graders<'_>,
) -> AssertionOutcome {
    let row = row(&[("name", "Ann"), ("context", "The sky is green on Mars.")], expected);
    let target = a.bind(&row).unwrap_or_else(|e| panic!("{e}"));
    let observation = Observation {
        output,
        input: "Question?",
        latency_ms: 100.0,
        cost_usd: Some(0.002),
        passages: None,
        cited: None,
    };
    block_on(a.check(&target, &observation, graders))
}

fn check(a: &Assertion, output: &str, expected: Option<Value>) -> AssertionOutcome {
    check_with(a, output, expected, Graders::default())
}

fn passes(kind: &str, value: Option<Value>, output: &str) -> bool {
    check(&assertion(kind, value), output, Some(json!("positive"))).pass
}

#[test]
fn text_assertions_pass_and_fail() {
    let s = |t: &str| Some(json!(t));
    assert!(passes("equals", None, " positive\n"), "equals trims and defaults to the expected value");
    assert!(!passes("equals", None, "Positive"));
    assert!(passes("equals", s("Hi {{ vars.name }}"), "Hi Ann"));
    assert!(passes("contains", s("sit"), "positive"));
    assert!(!passes("contains", s("POS"), "positive"));
    assert!(passes("icontains", s("POS"), "positive"));
    assert!(passes("icontains", None, "It is POSITIVE."), "icontains defaults to the expected value");
    assert!(passes("contains-any", Some(json!(["neg", "pos"])), "positive"));
    assert!(!passes("contains-any", Some(json!(["neg", "neu"])), "positive"));
    assert!(passes("contains-all", Some(json!(["pos", "tive"])), "positive"));
    assert!(!passes("contains-all", Some(json!(["pos", "neg"])), "positive"));
    assert!(passes("regex", s("^pos\\w+$"), "positive"));
    assert!(!passes("regex", s("^neg"), "positive"));
    assert!(passes("regex", s("^{{ expected }}$"), "positive"), "a regex may be a template");
    assert!(passes("starts-with", s("pos"), "  positive"));
    assert!(!passes("starts-with", s("tive"), "positive"));
}

#[test]
fn failing_assertions_say_what_was_found() {
    let outcome = check(&assertion("equals", None), "negative", Some(json!("positive")));
    assert_eq!((outcome.pass, outcome.score), (false, 0.0));
    assert_eq!(outcome.reason, "the output is not `positive`");
    let outcome = check(&assertion("contains-all", Some(json!(["a", "zz", "q"]))), "abc", None);
    assert_eq!(outcome.reason, "the output lacks `zz`, `q`");
}

#[test]
fn not_turns_an_assertion_around() {
    let outcome = check(&assertion("not-contains", Some(json!("sorry"))), "Sure thing.", None);
    assert_eq!((outcome.kind.as_str(), outcome.pass, outcome.score), ("not-contains", true, 1.0));
    let outcome = check(&assertion("not-icontains", Some(json!("SORRY"))), "I am sorry.", None);
    assert_eq!((outcome.pass, outcome.score), (false, 0.0));
    let outcome = check(&assertion("not-rouge-l", None), "totally different words", Some(json!("positive")));
    assert!(outcome.pass && outcome.score == 1.0, "{outcome:?}");
}

#[test]
fn equals_compares_structured_values_as_json() {
    let expected = Some(json!({"name": "Sam", "age": 3}));
    let a = assertion("equals", None);
    assert!(check(&a, "```json\n{\"age\": 3, \"name\": \"Sam\"}\n```", expected.clone()).pass);
    assert!(check(&a, "Here you go: {\"name\": \"Sam\", \"age\": 3,}", expected.clone()).pass, "repaired");
    let outcome = check(&a, "{\"name\": \"Sam\"}", expected.clone());
    assert!(!outcome.pass && outcome.reason.contains("is not"), "{outcome:?}");
    assert!(!check(&a, "no json", expected).pass);
    assert!(check(&assertion("equals", Some(json!(14))), "14", None).pass);
}

#[test]
fn is_json_checks_the_whole_output_and_an_optional_schema() {
    let plain = assertion("is-json", None);
    assert!(check(&plain, " {\"a\": 1} ", None).pass);
    assert!(check(&plain, "```json\n[1, 2]\n```", None).pass);
    let outcome = check(&plain, "Sure: {\"a\": 1}", None);
    assert!(!outcome.pass && outcome.reason.starts_with("the output is not JSON"), "{outcome:?}");
    let schema = json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}});
    let with_schema = assertion("is-json", Some(schema.clone()));
    assert!(check(&with_schema, "{\"name\": \"Ann\"}", None).pass);
    let outcome = check(&with_schema, "{\"name\": 3}", None);
    assert_eq!(
        outcome.reason,
        "the output's JSON does not follow the schema: /name: 3 is not of type \"string\""
    );
    let as_text = assertion("is-json", Some(json!(schema.to_string())));
    assert!(check(&as_text, "{\"name\": \"Ann\"}", None).pass, "a schema may be given as JSON text");
}

#[test]
fn metric_assertions_score_and_pass_by_threshold() {
    let outcome = check(&assertion("rouge-l", None), "the cat sat", Some(json!("the cat sat down")));
    assert!((outcome.score - 2.0 * 1.0 * 0.75 / 1.75).abs() < 1e-9 && outcome.pass, "{outcome:?}");
    let outcome = check(&assertion("levenshtein", None), "kitten", Some(json!("sitting")));
    assert!((outcome.score - 4.0 / 7.0).abs() < 1e-9 && !outcome.pass, "below the default 0.8: {outcome:?}");
    let lenient = Assertion::new(AssertionSpec {
        kind: "levenshtein".into(),
        threshold: Some(0.5),
        ..Default::default()
    })
    .unwrap();
    assert!(check(&lenient, "kitten", Some(json!("sitting"))).pass);
    assert!(check(&assertion("levenshtein", None), "positive", Some(json!("positive"))).score == 1.0);

    let letters = Letters;
    let graders = Graders { embedder: Some(&letters), judge: None };
    let similar = assertion("similar", None);
    let outcome = check_with(&similar, "tab", Some(json!("bat")), graders);
    assert!((outcome.score - 1.0).abs() < 1e-9 && outcome.pass, "{outcome:?}");
    let outcome = check_with(&similar, "xyz", Some(json!("bat")), graders);
    assert!(outcome.score == 0.0 && !outcome.pass, "{outcome:?}");
    let outcome = check(&similar, "tab", Some(json!("bat")));
    assert!(!outcome.pass && outcome.reason.contains("needs an embedder"), "{outcome:?}");
}

#[test]
fn latency_and_cost_have_limits() {
    assert!(check(&assertion("latency", Some(json!(150))), "x", None).pass);
    let outcome = check(&assertion("latency", Some(json!(50))), "x", None);
    assert_eq!((outcome.pass, outcome.reason.as_str()), (false, "took 100 ms (limit 50 ms)"));
    assert!(check(&assertion("cost", Some(json!(0.01))), "x", None).pass);
    assert!(!check(&assertion("cost", Some(json!(0.001))), "x", None).pass);
}

#[test]
fn judged_assertions_follow_the_judge_and_survive_bad_verdicts() {
    // Grades by whether the output, between its tags, says "Paris".
    let judge = Scripted::new(|r| {
        let task = last(r);
        let output = task.split("<output>").nth(1).unwrap_or("");
        if output.contains("Paris") {
            "{\"pass\": true, \"score\": 0.9, \"reason\": \"Correct.\"}".into()
        } else {
            "```json\n{\"pass\": false, \"score\": 0.2, \"reason\": \"Wrong city.\",}\n```".into()
        }
    });
    let graders = Graders { embedder: None, judge: Some(&judge) };
    let rubric = assertion("llm-rubric", Some(json!("Names the capital of France.")));
    let outcome = check_with(&rubric, "Paris.", None, graders);
    assert_eq!((outcome.pass, outcome.score, outcome.reason.as_str()), (true, 0.9, "the judge: Correct."));
    let factuality = assertion("factuality", None);
    let outcome = check_with(&factuality, "Lyon.", Some(json!("Paris")), graders);
    assert_eq!((outcome.pass, outcome.score), (false, 0.2));
    let strict = Assertion::new(AssertionSpec {
        kind: "llm-rubric".into(),
        value: Some(json!("Names the capital.")),
        threshold: Some(0.95),
        ..Default::default()
    })
    .unwrap();
    assert!(!check_with(&strict, "Paris", None, graders).pass, "a threshold overrides the judge's pass");

    let faithful = Assertion::new(AssertionSpec {
        kind: "faithfulness".into(),
        context: Some("context".into()),
        ..Default::default()
    })
    .unwrap();
    let seen = Scripted::new(|r| {
        assert!(last(r).contains("<context>\nThe sky is green on Mars.\n</context>"), "{}", last(r));
        "{\"pass\": true, \"score\": 1}".into()
    });
    assert!(check_with(&faithful, "Green.", None, Graders { embedder: None, judge: Some(&seen) }).pass);

    // A judge that never answers in JSON: asked twice, then the assertion fails with the reason.
    let rambling = Scripted::new(|_| "I think it is rather good.".into());
    let outcome = check_with(&rubric, "Paris", None, Graders { embedder: None, judge: Some(&rambling) });
    assert!(!outcome.pass && outcome.score == 0.0, "{outcome:?}");
    assert!(
        outcome
            .reason
            .starts_with("the judge gave no usable verdict: the judge: no usable reply after 2 attempts"),
        "{}",
        outcome.reason
    );
    assert_eq!(calls(&rambling), 2);
    let negated = assertion("not-llm-rubric", Some(json!("Rude.")));
    let outcome = check_with(&negated, "Paris", None, Graders { embedder: None, judge: Some(&rambling) });
    assert!(!outcome.pass, "no verdict is a failure, turned around or not");
}

#[test]
fn values_are_filled_from_the_row() {
    let a = assertion("contains", Some(json!("{{ vars.missing }}")));
    let err = a.bind(&row(&[], None)).unwrap_err();
    assert!(err.starts_with("contains: `value`: "), "{err}");
    let err = assertion("equals", None).bind(&row(&[], None)).unwrap_err();
    assert!(err.contains("this row has none"), "{err}");
    let err = Assertion::new(AssertionSpec {
        kind: "faithfulness".into(),
        context: Some("ctx".into()),
        ..Default::default()
    })
    .unwrap()
    .bind(&row(&[], None))
    .unwrap_err();
    assert_eq!(err, "faithfulness: the row has no variable `ctx` to take the context from");
}

#[test]
fn bad_configuration_is_refused_with_its_reason() {
    let spec =
        |kind: &str, value: Option<Value>| AssertionSpec { kind: kind.into(), value, ..Default::default() };
    assert!(refused(spec("equal", None))
        .starts_with("unknown assertion type `equal`; the types are equals, contains"));
    assert!(refused(spec("not-nothing", None)).contains("each may take a `not-` prefix"));
    assert!(refused(spec("regex", Some(json!("a(")))).starts_with("regex: invalid regex: "));
    assert_eq!(refused(spec("regex", None)), "regex: needs a `value`");
    let empty_one_of = refused(spec("is-json", Some(json!({"oneOf": []}))));
    assert!(empty_one_of.starts_with("is-json: invalid schema: /oneOf: []"), "{empty_one_of}");
    assert!(refused(spec("is-json", Some(json!("{not json"))))
        .starts_with("is-json: the schema is not valid JSON"));
    assert_eq!(
        refused(spec("contains-any", Some(json!([])))),
        "contains-any: `value` must be a list of strings"
    );
    assert_eq!(refused(spec("contains", Some(json!(3)))), "contains: `value` must be a string, not 3");
    assert!(refused(spec("latency", Some(json!("fast")))).starts_with("latency: `value` must be a number"));
    assert_eq!(refused(spec("llm-rubric", None)), "llm-rubric: needs a `value`");
    assert!(refused(spec("contains", Some(json!("{{ broken"))))
        .starts_with("contains: invalid template in `value`"));
    assert_eq!(
        refused(spec("faithfulness", None)),
        "faithfulness: needs `context`, the variable that holds the supplied context"
    );
    let with = |threshold: Option<f64>, weight: Option<f64>| AssertionSpec {
        kind: "similar".into(),
        threshold,
        weight,
        ..Default::default()
    };
    assert!(refused(with(Some(1.5), None)).contains("`threshold` must be between 0 and 1"));
    assert!(refused(with(None, Some(-1.0))).contains("`weight` must be a number of at least 0"));
    assert!(refused(AssertionSpec {
        kind: "contains".into(),
        value: Some(json!("x")),
        threshold: Some(0.5),
        ..Default::default()
    })
    .contains("contains passes or fails outright"));
}

/// Checks `output`, given to "When did the bridge open?" from `passages` and citing `cited`.
fn check_rag(a: &Assertion, output: &str, passages: &[&str], cited: &[&str]) -> AssertionOutcome {
    let row = row(&[("source", "bridge.md"), ("notes", "The Vellacott Bridge opened in 1897.")], None);
    let target = a.bind(&row).unwrap_or_else(|e| panic!("{e}"));
    let passages: Vec<temper_ground::Passage> =
        passages.iter().map(|p| temper_ground::Passage::new(*p, "bridge.md")).collect();
    let cited: Vec<String> = cited.iter().map(|c| c.to_string()).collect();
    let observation = Observation {
        output,
        input: "When did the Vellacott Bridge open?",
        latency_ms: 100.0,
        cost_usd: None,
        passages: Some(&passages),
        cited: Some(&cited),
    };
    block_on(a.check(&target, &observation, Graders::default()))
}

#[test]
fn grounded_declines_and_cites_check_a_rag_answer_against_its_passages() {
    let passages = ["The Vellacott Bridge opened to traffic in 1897. It has seven arches."];
    let grounded = assertion("grounded", None);
    let supported = check_rag(&grounded, "It opened in 1897 [1]. It has 7 arches [1].", &passages, &[]);
    assert!(supported.pass && supported.score == 1.0, "{supported:?}");
    let invented = check_rag(&grounded, "It opened in 1897 [1]. It cost £40,000 [1].", &passages, &[]);
    assert!(!invented.pass && invented.score == 0.5, "{invented:?}");
    assert!(invented.reason.contains("It cost £40,000."), "{}", invented.reason);

    let from_variable = Assertion::new(AssertionSpec {
        kind: "grounded".into(),
        context: Some("notes".into()),
        ..Default::default()
    })
    .unwrap();
    assert!(check_rag(&from_variable, "It opened in 1897.", &[], &[]).pass);
    assert!(!check_rag(&from_variable, "It opened in 1898.", &[], &[]).pass);
    let without = check_with(&grounded, "It opened in 1897.", None, Graders::default());
    assert!(!without.pass && without.reason.contains("run it on a [rag] spec"), "{without:?}");

    let declines = assertion("declines", None);
    assert!(check_rag(&declines, "The documents do not say: when did it open?", &passages, &[]).pass);
    assert!(!check_rag(&declines, "It opened in 1897 [1].", &passages, &[]).pass);

    let cites = assertion("cites", Some(json!("{{ vars.source }}")));
    let right = check_rag(&cites, "It opened in 1897 [1].", &passages, &["/docs/bridge.md"]);
    assert!(right.pass, "{right:?}");
    let wrong = check_rag(&cites, "It opened in 1897 [1].", &passages, &["/docs/cafe.md"]);
    assert!(!wrong.pass && wrong.reason.contains("`/docs/cafe.md`"), "{}", wrong.reason);
    let spec =
        |kind: &str, value: Option<Value>| AssertionSpec { kind: kind.into(), value, ..Default::default() };
    assert_eq!(
        refused(spec("declines", Some(json!("x")))),
        "declines: takes no `value`: it checks the output against the passages it was given"
    );
    assert_eq!(refused(spec("cites", None)), "cites: needs a `value`");
}
