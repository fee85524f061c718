//! Spec files, TOML or YAML by extension: the prompts, models, parameter sets, dataset and
//! assertions of an evaluation, with its options. Unknown keys, unknown assertion types and bad
//! values are refused with their place in the file, before any model call. A prompt file given
//! in place of a spec runs its own `[[tests]]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};
use temper_core::GenerationParams;
use temper_ground::Mode as Grounding;
use temper_prompt::{line_column, PromptError, PromptFile};

use crate::agent::AgentSpec;
use crate::assertion::{Assertion, AssertionSpec};
use crate::dataset::{self, Partition, Row, DEFAULT_EXPECTED_FIELD};
use crate::rag::RagSpec;
use crate::{EvalError, Result, Settings, Variant};

/// Rows evaluated at once unless the spec says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// The share of rows held out when the dataset has no `split` column.
pub const DEFAULT_TEST_FRACTION: f64 = 0.25;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    description: Option<String>,
    prompts: Vec<PromptEntry>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    params: BTreeMap<String, ParamSet>,
    dataset: DatasetSpec,
    assertions: Vec<Assertion>,
    concurrency: Option<usize>,
    judge: Option<String>,
    seed: Option<u64>,
    cache: Option<CacheSetting>,
    constrain: Option<bool>,
    rag: Option<RagSpec>,
    agent: Option<AgentSpec>,
    tune: Option<Value>,
}

/// A prompt of a spec: a prompt file's path (relative to the spec), or an inline table with a
/// prompt file's keys (`system`, `template`, `examples`, …) and an optional `name`.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "Value")]
enum PromptEntry {
    File(PathBuf),
    Inline { name: Option<String>, table: Map<String, Value> },
}

impl TryFrom<Value> for PromptEntry {
    type Error = String;

    fn try_from(value: Value) -> Result<PromptEntry, String> {
        let mut table = match value {
            Value::String(path) => return Ok(PromptEntry::File(path.into())),
            Value::Object(table) => table,
            other => {
                return Err(format!(
                    "a prompt is a prompt file's path or an inline table with a `template`, not {other}"
                ))
            }
        };
        if let Some(file) = table.remove("file") {
            let path = file.as_str().ok_or("`file` must be a path")?;
            if let Some(key) = table.keys().next() {
                return Err(format!("a prompt given by `file` takes nothing else; found `{key}`"));
            }
            return Ok(PromptEntry::File(path.into()));
        }
        let name = match table.remove("name") {
            None => None,
            Some(Value::String(name)) => Some(name),
            Some(other) => return Err(format!("`name` must be a string, not {other}")),
        };
        if !table.contains_key("template") {
            return Err(
                "an inline prompt needs a `template` (or give `file`, the path of a prompt file)".into()
            );
        }
        Ok(PromptEntry::Inline { name, table })
    }
}

/// A named set of generation parameters, checked as it is read.
#[derive(Deserialize)]
#[serde(try_from = "GenerationParams")]
struct ParamSet(GenerationParams);

impl TryFrom<GenerationParams> for ParamSet {
    type Error = String;

    fn try_from(params: GenerationParams) -> Result<ParamSet, String> {
        params.validate().map_err(|e| e.to_string())?;
        Ok(ParamSet(params))
    }
}

/// Where the rows come from, and which of them to evaluate.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// A JSONL or CSV file, relative to the spec.
    pub path: PathBuf,
    /// The field of the expected value.
    #[serde(default = "default_expected")]
    pub expected: String,
    /// The rows `temper eval run` evaluates.
    #[serde(default)]
    pub rows: RowSelection,
    /// The share held out when the rows have no `split` field (chosen by the spec's `seed`).
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
}

fn default_expected() -> String {
    DEFAULT_EXPECTED_FIELD.to_owned()
}

fn default_test_fraction() -> f64 {
    DEFAULT_TEST_FRACTION
}

/// Which rows to evaluate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowSelection {
    #[default]
    All,
    Train,
    Test,
}

/// Where model calls are cached.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub enum CacheSetting {
    /// `$TEMPER_HOME/eval/cache.sqlite`.
    #[default]
    Default,
    Off,
    /// A file of the user's choice (relative to the spec).
    File(PathBuf),
}

impl TryFrom<Value> for CacheSetting {
    type Error = String;

    fn try_from(value: Value) -> Result<CacheSetting, String> {
        match value {
            Value::Bool(true) => Ok(CacheSetting::Default),
            Value::Bool(false) => Ok(CacheSetting::Off),
            Value::String(path) => Ok(CacheSetting::File(path.into())),
            other => Err(format!("`cache` is true, false or the path of a cache file, not {other}")),
        }
    }
}

/// A loaded, checked spec.
#[derive(Clone, Debug)]
pub struct Spec {
    pub path: PathBuf,
    pub description: Option<String>,
    pub prompts: Vec<PromptFile>,
    /// Profiles, catalog names or GGUF paths; empty means each prompt's own model, else the default.
    pub models: Vec<String>,
    /// The parameter sets, in the order of their names in the file, applied over each prompt's
    /// own; empty means the prompts' parameters. The names themselves are not used.
    pub params: Vec<GenerationParams>,
    /// Every row of the dataset.
    pub rows: Vec<Row>,
    pub selection: RowSelection,
    pub test_fraction: f64,
    pub assertions: Vec<Assertion>,
    pub concurrency: usize,
    /// The model that grades judged assertions.
    pub judge: Option<String>,
    /// The seed of every request that sets none, and of the train/test split.
    pub seed: Option<u64>,
    pub cache: CacheSetting,
    /// Whether a prompt's output schema is enforced while decoding (where the backend can).
    pub constrain: bool,
    /// The RAG pipeline that answers each row's rendered prompt as a question, with its paths
    /// made relative to the working directory; its grounding modes multiply the variants.
    pub rag: Option<RagSpec>,
    /// The agent that does each row's rendered prompt as a task, with its paths made relative
    /// to the working directory; its tool sets multiply the variants.
    pub agent: Option<AgentSpec>,
    /// Settings of `temper tune`, kept as written.
    pub tune: Option<Value>,
}

impl Spec {
    /// Reads the spec at `path` (`.toml`, `.yaml` or `.yml`), or a prompt file with `[[tests]]`.
    pub fn load(path: &Path) -> Result<Spec> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            EvalError::invalid(path.display().to_string(), format!("cannot read the spec: {e}"))
        })?;
        Spec::parse(path, &text)
    }

    /// Reads `text`, the contents of the file at `path` (named in errors; paths in the spec are
    /// relative to its directory).
    pub fn parse(path: &Path, text: &str) -> Result<Spec> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let raw: RawSpec = match extension.as_str() {
            "toml" => {
                if is_prompt_file(text) {
                    return Spec::from_prompt_file(PromptFile::parse(path, text)?);
                }
                toml::from_str(text).map_err(|e| {
                    let (line, column) = line_column(text, e.span().map_or(0, |s| s.start));
                    EvalError::invalid(format!("{}:{line}:{column}", path.display()), e.message().trim_end())
                })?
            }
            "yaml" | "yml" => yaml_serde::from_str(text).map_err(|e| {
                let message = e.to_string();
                let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
                let place = match e.location() {
                    Some(at) => format!("{}:{}:{}", path.display(), at.line(), at.column()),
                    None => path.display().to_string(),
                };
                EvalError::invalid(place, message)
            })?,
            _ => {
                return Err(EvalError::invalid(
                    path.display().to_string(),
                    format!("unknown spec format `.{extension}`: use .toml, .yaml or .yml"),
                ))
            }
        };
        Spec::from_raw(path, raw)
    }

    fn from_raw(path: &Path, raw: RawSpec) -> Result<Spec> {
        let file = path.display().to_string();
        let dir = path.parent().unwrap_or(Path::new(""));
        let invalid = |reason: String| EvalError::invalid(&file, reason);
        if raw.prompts.is_empty() {
            return Err(invalid("`prompts` is empty: give at least one prompt file or inline prompt".into()));
        }
        let prompts = raw
            .prompts
            .into_iter()
            .enumerate()
            .map(|(i, entry)| load_prompt(path, dir, i, entry))
            .collect::<Result<Vec<_>>>()?;
        if let Some(model) = raw.models.iter().find(|m| m.trim().is_empty()) {
            return Err(invalid(format!("`models` holds an empty name ({model:?})")));
        }
        // `concurrency` (at least 1) is checked with the rest of the settings, below.
        let dataset = raw.dataset;
        if !(dataset.test_fraction > 0.0 && dataset.test_fraction < 1.0) {
            return Err(invalid(format!(
                "dataset.test_fraction must be between 0 and 1, not {}",
                dataset.test_fraction
            )));
        }
        let rag = raw.rag.map(|rag| rag_paths(rag, dir)).transpose().map_err(invalid)?;
        let agent = raw.agent.map(|agent| agent_paths(agent, dir)).transpose().map_err(invalid)?;
        if rag.is_some() && agent.is_some() {
            return Err(invalid(
                "a spec has `rag` or `agent`, not both: give the agent rag_search instead".into(),
            ));
        }
        let rows = dataset::load(&dir.join(&dataset.path), &dataset.expected)?;
        let spec = Spec {
            path: path.to_owned(),
            description: raw.description,
            prompts,
            models: raw.models,
            params: raw.params.into_values().map(|set| set.0).collect(),
            rows,
            selection: dataset.rows,
            test_fraction: dataset.test_fraction,
            assertions: raw.assertions,
            concurrency: raw.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
            judge: raw.judge,
            seed: raw.seed,
            cache: match raw.cache.unwrap_or_default() {
                CacheSetting::File(file) => CacheSetting::File(dir.join(file)),
                other => other,
            },
            constrain: raw.constrain.unwrap_or(true),
            rag,
            agent,
            tune: raw.tune,
        };
        spec.settings().check().map_err(|e| match e {
            EvalError::Invalid { place, reason } => EvalError::invalid(format!("{file}: {place}"), reason),
            other => other,
        })?;
        Ok(spec)
    }

    /// The spec of a prompt file's own `[[tests]]`: each test a row, checked by `icontains` when
    /// the tests expect text and by `equals` (the output's JSON) when they expect structured
    /// values.
    pub fn from_prompt_file(file: PromptFile) -> Result<Spec> {
        let name = file.path.display().to_string();
        if file.tests.is_empty() {
            return Err(EvalError::invalid(&name, "the prompt file has no [[tests]] to run"));
        }
        let texts = file.tests.iter().filter(|t| t.expected.is_string()).count();
        let kind = match texts {
            n if n == file.tests.len() => "icontains",
            0 => "equals",
            _ => {
                return Err(EvalError::invalid(
                    &name,
                    "the [[tests]] mix text and structured `expected` values: write a spec to check them",
                ))
            }
        };
        let assertion = Assertion::new(AssertionSpec { kind: kind.into(), ..Default::default() })
            .map_err(|e| EvalError::invalid(&name, e))?;
        let rows = (0..)
            .zip(&file.tests)
            .map(|(i, test)| Row {
                vars: test.vars.clone(),
                expected: Some(test.expected.clone()),
                split: None,
                source: format!("{name}: tests[{i}]"),
            })
            .collect();
        Ok(Spec {
            path: file.path.clone(),
            description: file.description.clone(),
            prompts: vec![file],
            models: Vec::new(),
            params: Vec::new(),
            rows,
            selection: RowSelection::All,
            test_fraction: DEFAULT_TEST_FRACTION,
            assertions: vec![assertion],
            concurrency: DEFAULT_CONCURRENCY,
            judge: None,
            seed: None,
            cache: CacheSetting::Default,
            constrain: true,
            rag: None,
            agent: None,
            tune: None,
        })
    }

    /// What the evaluator needs of the spec.
    pub fn settings(&self) -> Settings {
        Settings {
            assertions: self.assertions.clone(),
            judge: self.judge.clone(),
            concurrency: self.concurrency,
            constrain: self.constrain,
        }
    }

    /// The rows split into train and held-out: by their `split` field, else by the spec's
    /// `test_fraction` and `seed`.
    pub fn partition(&self) -> Result<Partition> {
        dataset::split(&self.rows, self.test_fraction, self.seed.unwrap_or(0))
    }

    /// The rows to evaluate, as `dataset.rows` selects them.
    pub fn selected_rows(&self) -> Result<Vec<Row>> {
        Ok(match self.selection {
            RowSelection::All => self.rows.clone(),
            RowSelection::Train => self.partition()?.train,
            RowSelection::Test => self.partition()?.test,
        })
    }

    /// Every prompt × model × parameter set (× grounding mode, for a RAG spec). A variant's parameters are its prompt's overlaid
    /// with the set's, and the spec's seed when neither sets one; without `models` a prompt
    /// runs on its own model, else on `default_model`.
    pub fn variants(&self, default_model: &str) -> Vec<Variant> {
        let defaults = [GenerationParams::default()];
        let sets = if self.params.is_empty() { &defaults[..] } else { &self.params[..] };
        let mut variants = Vec::new();
        for prompt in &self.prompts {
            let own = [prompt.model.clone().unwrap_or_else(|| default_model.to_owned())];
            let models = if self.models.is_empty() { &own[..] } else { &self.models[..] };
            let groundings: Vec<Option<Grounding>> = match &self.rag {
                Some(rag) => rag.grounding.iter().copied().map(Some).collect(),
                None => vec![None],
            };
            let tool_sets: Vec<Option<Vec<String>>> = match &self.agent {
                Some(agent) => agent.tools.iter().cloned().map(Some).collect(),
                None => vec![None],
            };
            for model in models {
                for set in sets {
                    let mut params = prompt.params.overlay(set);
                    params.seed = params.seed.or(self.seed);
                    for &grounding in &groundings {
                        for tools in &tool_sets {
                            let (prompt, model, params) = (prompt.clone(), model.clone(), params.clone());
                            variants.push(Variant { prompt, model, params, grounding, tools: tools.clone() });
                        }
                    }
                }
            }
        }
        variants
    }
}

/// `rag` with its paths relative to the spec's directory `dir`, checked for what cannot run.
fn rag_paths(mut rag: RagSpec, dir: &Path) -> std::result::Result<RagSpec, String> {
    match (rag.documents.is_empty(), &rag.collection) {
        (true, None) => {
            return Err("`rag` needs `documents` to ingest, or the `collection` of a store".into())
        }
        (false, Some(_)) => {
            return Err("`rag` takes `documents` (ingested for the run) or `collection`, not both".into())
        }
        _ => {}
    }
    if rag.grounding.is_empty() {
        return Err("`rag.grounding` is empty: give strict, annotate or off, or a list of them".into());
    }
    if rag.k == 0 {
        return Err("`rag.k` must be at least 1".into());
    }
    rag.documents = rag.documents.iter().map(|d| dir.join(d)).collect();
    rag.db = rag.db.map(|db| match db.contains("://") {
        true => db,
        false => dir.join(db).display().to_string(),
    });
    Ok(rag)
}

/// `agent` with its paths relative to the spec's directory `dir`, checked for what cannot run.
fn agent_paths(mut agent: AgentSpec, dir: &Path) -> std::result::Result<AgentSpec, String> {
    if agent.tools.is_empty() {
        return Err("`agent.tools` is empty: give a list of tool sets, e.g. [[], [\"calculator\"]]".into());
    }
    if agent.max_steps == 0 {
        return Err("`agent.max_steps` must be at least 1".into());
    }
    agent.root = agent.root.map(|root| dir.join(root));
    agent.documents = agent.documents.iter().map(|d| dir.join(d)).collect();
    Ok(agent)
}

/// Whether a TOML text is a prompt file (it has a `template`) rather than a spec.
fn is_prompt_file(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|table| table.contains_key("template"))
}

fn load_prompt(spec: &Path, dir: &Path, index: usize, entry: PromptEntry) -> Result<PromptFile> {
    let place = |label: &str| format!("{}: prompts[{index}] ({label})", spec.display());
    match entry {
        PromptEntry::File(path) => Ok(PromptFile::load(&dir.join(path))?),
        PromptEntry::Inline { name, table } => {
            let label = name.unwrap_or_else(|| format!("inline-{}", index + 1));
            let text =
                toml::to_string(&table).map_err(|e| EvalError::invalid(place(&label), e.to_string()))?;
            PromptFile::parse(Path::new(&label), &text).map_err(|e| match e {
                PromptError::File { message, .. } => EvalError::invalid(place(&label), message),
                other => EvalError::invalid(place(&label), other.to_string()),
            })
        }
    }
}

#[cfg(test)]
mod tests;
