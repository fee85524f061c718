use serde_json::json;

use super::*;

/// A directory with `files` written into it.
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

const ROWS: &str = "{\"review\": \"Great\", \"label\": \"positive\", \"split\": \"train\"}\n\
                    {\"review\": \"Awful\", \"label\": \"negative\", \"split\": \"test\"}\n";

const PROMPT: &str = "model = \"tiny\"\ntemplate = \"Review: {{ review }}\"\n[params]\nmax_tokens = 4\n";

const SPEC: &str = r#"
description = "sentiment"
prompts = ["base.toml", { name = "terse", system = "One word.", template = "{{ review }}" }]
models = ["a", "b"]
concurrency = 2
judge = "a"
seed = 7
cache = "cache.sqlite"

[dataset]
path = "rows.jsonl"
expected = "label"
rows = "test"

[params.greedy]
temperature = 0

[params.warm]
temperature = 0.8
seed = 1

[[assertions]]
type = "icontains"

[[assertions]]
type = "not-regex"
value = "(?i)sorry"
weight = 0.5

[[assertions]]
type = "llm-rubric"
value = "Names the sentiment of {{ vars.review }}."
threshold = 0.7

[tune]
temperature = [0.0, 0.5]
"#;

fn load(dir: &tempfile::TempDir, name: &str) -> Result<Spec> {
    Spec::load(&dir.path().join(name))
}

/// The error of loading `spec` (as `spec.toml`), with the directory left out.
fn error(name: &str, spec: &str) -> String {
    let dir = project(&[("base.toml", PROMPT), ("rows.jsonl", ROWS), (name, spec)]);
    let err = load(&dir, name).unwrap_err().to_string();
    err.replace(&format!("{}/", dir.path().display()), "")
}

#[test]
fn a_toml_spec_gives_the_whole_matrix() {
    let dir = project(&[("base.toml", PROMPT), ("rows.jsonl", ROWS), ("spec.toml", SPEC)]);
    let spec = load(&dir, "spec.toml").unwrap();
    assert_eq!(spec.prompts.len(), 2);
    assert_eq!(spec.prompts[1].path, Path::new("terse"));
    assert_eq!(spec.prompts[1].system.as_ref().unwrap().source(), "One word.");
    assert_eq!((spec.concurrency, spec.judge.as_deref(), spec.seed), (2, Some("a"), Some(7)));
    assert_eq!(spec.cache, CacheSetting::File(dir.path().join("cache.sqlite")));
    assert_eq!(spec.tune, Some(json!({"temperature": [0.0, 0.5]})));
    assert_eq!(spec.rows.len(), 2);
    let selected = spec.selected_rows().unwrap();
    assert_eq!(selected.len(), 1);
    assert_eq!(selected[0].expected, Some(json!("negative")));
    assert_eq!(spec.assertions[1].weight, 0.5);
    assert!(spec.assertions[1].negated);

    let variants = spec.variants("default");
    assert_eq!(variants.len(), 2 * 2 * 2);
    let first = &variants[0];
    assert_eq!(
        (first.prompt_name(), first.model.as_str()),
        (dir.path().join("base.toml").display().to_string(), "a")
    );
    // The prompt's max_tokens, the set's temperature, the spec's seed.
    assert_eq!(
        first.params,
        GenerationParams { temperature: Some(0.0), max_tokens: Some(4), seed: Some(7), ..Default::default() }
    );
    assert_eq!(variants[1].params.seed, Some(1), "a set's own seed wins");
}

#[test]
fn a_yaml_spec_reads_the_same() {
    let yaml = "prompts:\n  - base.toml\ndataset:\n  path: rows.jsonl\n  expected: label\n\
                assertions:\n  - type: equals\n  - type: contains-any\n    value: [pos, neg]\nseed: 3\n";
    let dir = project(&[("base.toml", PROMPT), ("rows.jsonl", ROWS), ("spec.yaml", yaml)]);
    let spec = load(&dir, "spec.yaml").unwrap();
    assert_eq!(spec.assertions.len(), 2);
    assert_eq!(spec.concurrency, DEFAULT_CONCURRENCY);
    let variants = spec.variants("default");
    assert_eq!(variants.len(), 1);
    assert_eq!(variants[0].model, "tiny", "without `models` a prompt runs on its own model");
    assert_eq!(variants[0].params.seed, Some(3));
}

const BASE: &str = "prompts = [\"base.toml\"]\n[dataset]\npath = \"rows.jsonl\"\n";

#[test]
fn unknown_keys_and_types_are_refused_where_they_are() {
    let err = error("spec.toml", &format!("concurency = 3\n{BASE}[[assertions]]\ntype = \"equals\"\n"));
    assert!(err.starts_with("spec.toml:1:1: unknown field `concurency`"), "{err}");
    let err = error("spec.toml", &format!("{BASE}[[assertions]]\ntype = \"equal\"\n"));
    assert!(
        err.starts_with("spec.toml:4:1: unknown assertion type `equal`; the types are equals, "),
        "{err}"
    );
    let err = error("spec.toml", &format!("{BASE}[[assertions]]\ntype = \"equals\"\nvalu = 1\n"));
    assert!(err.starts_with("spec.toml:6:1: unknown field `valu`"), "{err}");
    let err =
        error("spec.toml", &format!("{BASE}[params.x]\ntemprature = 1\n[[assertions]]\ntype = \"equals\"\n"));
    assert!(err.starts_with("spec.toml:5:1: unknown field `temprature`"), "{err}");
    let err =
        error("spec.toml", &format!("{BASE}[params.x]\ntop_p = 2.0\n[[assertions]]\ntype = \"equals\"\n"));
    assert!(err.contains("top_p") && err.starts_with("spec.toml:4:"), "{err}");
    let err = error(
        "spec.yaml",
        "prompts: [base.toml]\ndataset: {path: rows.jsonl}\nassertions:\n  - type: equals\n    wieght: 2\n",
    );
    assert!(err.starts_with("spec.yaml:5:5: assertions[0]: unknown field `wieght`"), "{err}");
    let err = error("spec.json", "{}");
    assert!(err.starts_with("spec.json: unknown spec format `.json`"), "{err}");
}

#[test]
fn bad_assertions_fail_at_load_time_with_what_is_wrong() {
    let bad = |assertion: &str| error("spec.toml", &format!("{BASE}[[assertions]]\n{assertion}\n"));
    let err = bad("type = \"regex\"\nvalue = \"(unclosed\"");
    assert!(err.starts_with("spec.toml:4:1: regex: invalid regex: "), "{err}");
    let err = bad("type = \"is-json\"\nvalue = '{\"type\": \"thing\"}'");
    assert!(
        err.starts_with("spec.toml:4:1: is-json: invalid schema: /type: \"thing\" is not valid"),
        "{err}"
    );
    let err = bad("type = \"contains-all\"");
    assert!(err.starts_with("spec.toml:4:1: contains-all: needs a `value`"), "{err}");
    let err = bad("type = \"equals\"\nthreshold = 0.5");
    assert!(err.contains("equals: `threshold` is for scored assertions"), "{err}");
    let err = bad("type = \"llm-rubric\"\nvalue = \"Polite.\"");
    assert_eq!(
        err,
        "spec.toml: llm-rubric: needs a judge model: set `judge` to a profile, catalog name or GGUF path"
    );
    let err = error("spec.toml", BASE);
    assert!(err.starts_with("spec.toml:") && err.contains("missing field `assertions`"), "{err}");
    let err = error("spec.toml", &format!("assertions = []\n{BASE}"));
    assert_eq!(err, "spec.toml: assertions: there are none: give at least one");
}

#[test]
fn bad_prompts_and_datasets_are_named() {
    let spec = "prompts = [{ name = \"x\", template = \"{{ review \" }]\n[dataset]\npath = \"rows.jsonl\"\n[[assertions]]\ntype = \"equals\"\n";
    let err = error("spec.toml", spec);
    assert!(err.starts_with("spec.toml: prompts[0] (x): template: "), "{err}");
    let spec = "prompts = [{ system = \"s\" }]\n[dataset]\npath = \"rows.jsonl\"\n[[assertions]]\ntype = \"equals\"\n";
    let err = error("spec.toml", spec);
    assert!(err.starts_with("spec.toml:1:11: an inline prompt needs a `template`"), "{err}");
    let spec =
        "prompts = [\"base.toml\"]\n[dataset]\npath = \"none.jsonl\"\n[[assertions]]\ntype = \"equals\"\n";
    let err = error("spec.toml", spec);
    assert!(err.starts_with("none.jsonl: cannot read the dataset"), "{err}");
}

#[test]
fn a_prompt_file_runs_its_own_tests() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/prompts/classify-sentiment.toml");
    let spec = Spec::load(&path).unwrap();
    assert_eq!(spec.rows.len(), 2);
    assert_eq!(spec.rows[0].expected, Some(json!("positive")));
    assert_eq!(spec.assertions[0].type_name(), "icontains");
    let variants = spec.variants("default");
    assert_eq!(variants[0].model, "smollm2-135m-instruct");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/prompts/extract-contact.toml");
    assert_eq!(Spec::load(&path).unwrap().assertions[0].type_name(), "equals");
}
