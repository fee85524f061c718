//! The `[tune]` table of an evaluation spec: the search space, how to search it, the limits on
//! latency and cost, and the settings of prompt optimisation. Every value is checked when the
//! table is read, and a bad one is named by its key.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Deserialize;
use serde_json::Value;

use crate::space::Space;
use crate::{Result, TuneError};

/// How to search the parameter space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Every combination of the space's points, on every row.
    #[default]
    Grid,
    /// `trials` random settings, on every row.
    Random,
    /// `trials` random settings on a few rows; the best `1/eta` go on to `eta` times the rows.
    Halving,
}

/// The `[tune]` table, read and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct TuneSpec {
    pub method: Method,
    /// Settings drawn by `random` and `halving` (the defaults come on top).
    pub trials: usize,
    /// Halving keeps the best `1/eta` of the settings at each rung and gives them `eta` times the rows.
    pub eta: usize,
    /// Rows of halving's first rung; `None` lets the rungs end on all the rows.
    pub min_rows: Option<usize>,
    /// Seeds the random draws, the halving rows, the train/held-out split and the demo subsets.
    pub seed: u64,
    /// The best setting must answer within this many milliseconds (mean per row).
    pub max_latency_ms: Option<f64>,
    /// The best setting must cost at most this many dollars (mean per row).
    pub max_cost_usd: Option<f64>,
    /// The share of the rows held out from tuning, to report on.
    pub holdout: f64,
    pub space: Space,
    pub prompt: PromptSpec,
}

/// `[tune.prompt]`: the settings of prompt optimisation.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptSpec {
    /// Demos in each bootstrapped few-shot set (`k`).
    pub demos: usize,
    /// Seeded subsets of the bootstrapped demos to try.
    pub demo_sets: usize,
    /// Rounds of instruction proposals.
    pub rounds: usize,
    /// New instructions asked of the proposer each round.
    pub proposals: usize,
    /// The best instructions shown to the proposer and kept for the next round.
    pub keep: usize,
    /// Failing rows shown to the proposer.
    pub failures_shown: usize,
    /// The most candidate evaluations on the train rows (the baseline included).
    pub max_evaluations: usize,
    /// The proposer model (a profile, catalog name or GGUF path); `None` is the tuned model.
    pub proposer: Option<String>,
}

impl Default for PromptSpec {
    fn default() -> Self {
        PromptSpec {
            demos: 3,
            demo_sets: 4,
            rounds: 2,
            proposals: 4,
            keep: 2,
            failures_shown: 3,
            max_evaluations: 30,
            proposer: None,
        }
    }
}

impl Default for TuneSpec {
    fn default() -> Self {
        TuneSpec {
            method: Method::Grid,
            trials: 20,
            eta: 3,
            min_rows: None,
            seed: 0,
            max_latency_ms: None,
            max_cost_usd: None,
            holdout: 0.3,
            space: Space::default(),
            prompt: PromptSpec::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    method: Option<Method>,
    trials: Option<usize>,
    eta: Option<usize>,
    min_rows: Option<usize>,
    seed: Option<u64>,
    max_latency_ms: Option<f64>,
    max_cost_usd: Option<f64>,
    holdout: Option<f64>,
    #[serde(default)]
    space: BTreeMap<String, Value>,
    #[serde(default)]
    prompt: RawPrompt,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrompt {
    demos: Option<usize>,
    demo_sets: Option<usize>,
    rounds: Option<usize>,
    proposals: Option<usize>,
    keep: Option<usize>,
    failures_shown: Option<usize>,
    max_evaluations: Option<usize>,
    proposer: Option<String>,
}

impl TuneSpec {
    /// Reads the `[tune]` table from any serde value: a `toml::Value`, a `serde_json::Value`, …
    pub fn from_value<'de, D: serde::Deserializer<'de>>(value: D) -> Result<TuneSpec> {
        let raw = RawSpec::deserialize(value).map_err(|e| TuneError::spec("tune", e.to_string()))?;
        TuneSpec::check(raw)
    }

    /// Reads a `[tune]` table written as TOML (its contents, without the header).
    pub fn from_toml(text: &str) -> Result<TuneSpec> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| TuneError::spec("tune", e.message()))?;
        TuneSpec::check(raw)
    }

    fn check(raw: RawSpec) -> Result<TuneSpec> {
        let defaults = TuneSpec::default();
        let p = PromptSpec::default();
        let prompt = PromptSpec {
            demos: nonzero("tune.prompt.demos", raw.prompt.demos)?.unwrap_or(p.demos),
            demo_sets: raw.prompt.demo_sets.unwrap_or(p.demo_sets),
            rounds: raw.prompt.rounds.unwrap_or(p.rounds),
            proposals: nonzero("tune.prompt.proposals", raw.prompt.proposals)?.unwrap_or(p.proposals),
            keep: nonzero("tune.prompt.keep", raw.prompt.keep)?.unwrap_or(p.keep),
            failures_shown: raw.prompt.failures_shown.unwrap_or(p.failures_shown),
            max_evaluations: nonzero("tune.prompt.max_evaluations", raw.prompt.max_evaluations)?
                .unwrap_or(p.max_evaluations),
            proposer: raw.prompt.proposer,
        };
        let eta = raw.eta.unwrap_or(defaults.eta);
        if eta < 2 {
            return Err(TuneError::spec("tune.eta", "must be at least 2"));
        }
        let holdout = raw.holdout.unwrap_or(defaults.holdout);
        if !(0.0..1.0).contains(&holdout) {
            return Err(TuneError::spec(
                "tune.holdout",
                format!("{holdout} is not a share from 0 up to (not including) 1"),
            ));
        }
        for (key, limit) in
            [("tune.max_latency_ms", raw.max_latency_ms), ("tune.max_cost_usd", raw.max_cost_usd)]
        {
            if limit.is_some_and(|l| !(l >= 0.0 && l.is_finite())) {
                return Err(TuneError::spec(key, "must be a number of at least 0"));
            }
        }
        Ok(TuneSpec {
            method: raw.method.unwrap_or_default(),
            trials: nonzero("tune.trials", raw.trials)?.unwrap_or(defaults.trials),
            eta,
            min_rows: nonzero("tune.min_rows", raw.min_rows)?,
            seed: raw.seed.unwrap_or_default(),
            max_latency_ms: raw.max_latency_ms,
            max_cost_usd: raw.max_cost_usd,
            holdout,
            space: Space::from_table("tune.space", &raw.space)?,
            prompt,
        })
    }

    /// Splits rows `0..rows` into train and held-out rows, shuffled with the seed; each part
    /// keeps increasing order. At least one row stays in train.
    pub fn split(&self, rows: usize) -> (Vec<usize>, Vec<usize>) {
        let all: Vec<usize> = (0..rows).collect();
        let held = ((rows as f64 * self.holdout).round() as usize).min(rows.saturating_sub(1));
        let (heldout, train) = shuffle_split(&all, held, &mut StdRng::seed_from_u64(self.seed));
        (train, heldout)
    }
}

/// `rows` shuffled with `rng` and cut after the first `first`; each part in increasing order.
/// How the held-out rows and the prompt optimiser's demo rows are chosen.
pub(crate) fn shuffle_split(rows: &[usize], first: usize, rng: &mut StdRng) -> (Vec<usize>, Vec<usize>) {
    let mut order = rows.to_vec();
    order.shuffle(rng);
    let (mut head, mut tail) = (order[..first].to_vec(), order[first..].to_vec());
    head.sort_unstable();
    tail.sort_unstable();
    (head, tail)
}

fn nonzero(key: &str, value: Option<usize>) -> Result<Option<usize>> {
    match value {
        Some(0) => Err(TuneError::spec(key, "must be at least 1")),
        value => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_table() {
        let spec = TuneSpec::from_toml(
            r#"
method = "halving"
trials = 27
eta = 3
seed = 7
max_latency_ms = 900
holdout = 0.25
[space]
temperature = [0, 0.7]
[prompt]
demos = 2
rounds = 1
proposer = "local"
"#,
        )
        .unwrap();
        assert_eq!(spec.method, Method::Halving);
        assert_eq!((spec.trials, spec.eta, spec.seed), (27, 3, 7));
        assert_eq!(spec.max_latency_ms, Some(900.0));
        assert_eq!(spec.space.dimensions().len(), 1);
        assert_eq!((spec.prompt.demos, spec.prompt.rounds, spec.prompt.proposals), (2, 1, 4));
        assert_eq!(spec.prompt.proposer.as_deref(), Some("local"));
    }

    #[test]
    fn reads_the_same_table_from_json() {
        let json = serde_json::json!({"method": "random", "space": {"top_p": {"min": 0.5, "max": 1.0}}});
        let spec = TuneSpec::from_value(json).unwrap();
        assert_eq!(spec.method, Method::Random);
        assert_eq!(
            spec.space,
            TuneSpec::from_toml("[space]\ntop_p = { min = 0.5, max = 1.0 }").unwrap().space
        );
    }

    #[test]
    fn bad_values_are_named_by_their_key() {
        let cases = [
            ("eta = 1", "tune.eta: must be at least 2"),
            ("holdout = 1.0", "tune.holdout: 1 is not a share"),
            ("trials = 0", "tune.trials: must be at least 1"),
            ("max_cost_usd = -1", "tune.max_cost_usd: must be a number of at least 0"),
            ("method = \"anneal\"", "tune: unknown variant `anneal`"),
            ("trails = 3", "tune: unknown field `trails`"),
            ("[prompt]\nkeep = 0", "tune.prompt.keep: must be at least 1"),
            ("[prompt]\nround = 3", "tune: unknown field `round`"),
            ("[space]\ntop_p = [2]", "tune.space.top_p[0]: 2 is out of range"),
        ];
        for (text, expected) in cases {
            let err = TuneSpec::from_toml(text).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{text}: {err}");
        }
    }

    #[test]
    fn the_split_is_seeded_and_complete() {
        let spec = TuneSpec { seed: 3, ..TuneSpec::default() };
        let (train, heldout) = spec.split(20);
        assert_eq!((train.len(), heldout.len()), (14, 6));
        let mut all = [train.clone(), heldout.clone()].concat();
        all.sort_unstable();
        assert_eq!(all, (0..20).collect::<Vec<_>>());
        assert_eq!(spec.split(20), (train.clone(), heldout));
        assert_ne!(TuneSpec { seed: 4, ..TuneSpec::default() }.split(20).0, train);
        assert_eq!(spec.split(1), (vec![0], vec![]));
    }
}
