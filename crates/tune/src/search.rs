//! Searches over generation parameters against any objective: grid, random and successive
//! halving. The base settings (the defaults) are always a candidate and always reach the last
//! rung, so the setting chosen is never worse than the defaults on the rows it was chosen on.

use async_trait::async_trait;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use temper_core::GenerationParams;

use crate::pareto::pareto_front;
use crate::spec::{Method, TuneSpec};
use crate::{Result, TuneError};

/// What one evaluation of a setting measured: the mean score over the rows (higher is better),
/// and the mean latency and cost per row.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Measurement {
    pub score: f64,
    pub latency_ms: f64,
    pub cost_usd: f64,
}

/// What a parameter search optimises: typically the evaluator running one prompt and model with
/// `params` on the dataset's rows `rows` (indices into it).
#[async_trait]
pub trait ParamObjective: Send + Sync {
    async fn evaluate(&self, params: &GenerationParams, rows: &[usize]) -> Result<Measurement>;
}

/// One evaluation of one setting.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trial {
    /// Which setting: 0 is the defaults; a setting keeps its number across halving's rungs.
    pub setting: usize,
    /// Halving's rung (0 for grid and random).
    pub rung: usize,
    pub params: GenerationParams,
    /// How many rows it ran on.
    pub rows: usize,
    #[serde(flatten)]
    pub measurement: Measurement,
}

/// The defaults and the best setting on the held-out rows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeldOut {
    pub rows: usize,
    pub defaults: Measurement,
    pub best: Measurement,
}

/// Everything a search did and found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParamReport {
    pub method: Method,
    /// Every evaluation, in the order it ran.
    pub trials: Vec<Trial>,
    /// The distinct settings tried, the defaults included.
    pub settings: usize,
    /// Calls of the objective, and the rows they ran on in all: the search's cost.
    pub evaluations: usize,
    pub row_evaluations: usize,
    /// The trials of the last rung (all of them for grid and random): the settings compared on
    /// the most rows, among which the best and the Pareto fronts are chosen.
    pub finalists: Vec<usize>,
    /// The trial of the defaults among the finalists.
    pub defaults: usize,
    /// The best finalist within the limits (a trial index); `None` when none meets them.
    pub best: Option<usize>,
    /// Why there is no best: which limit no setting meets.
    pub unmet: Option<String>,
    /// Finalists no other beats on both score and cost, by increasing cost.
    pub pareto_cost: Vec<usize>,
    /// Finalists no other beats on both score and latency, by increasing latency.
    pub pareto_latency: Vec<usize>,
    pub held_out: Option<HeldOut>,
}

impl ParamReport {
    /// The best trial, or an error saying which limit no setting meets.
    pub fn best(&self) -> Result<&Trial> {
        match self.best {
            Some(i) => Ok(&self.trials[i]),
            None => Err(TuneError::Limits(self.unmet.clone().unwrap_or_default())),
        }
    }
}

/// The limits a chosen setting must meet.
#[derive(Clone, Copy, Debug, Default)]
struct Limits {
    latency_ms: Option<f64>,
    cost_usd: Option<f64>,
}

impl Limits {
    fn allow(&self, m: &Measurement) -> bool {
        self.latency_ms.is_none_or(|l| m.latency_ms <= l) && self.cost_usd.is_none_or(|c| m.cost_usd <= c)
    }

    /// Why no measurement of `ms` is allowed.
    fn unmet(&self, ms: &[Measurement]) -> String {
        let mut parts = Vec::new();
        if let Some(limit) = self.latency_ms {
            let fastest = ms.iter().map(|m| m.latency_ms).fold(f64::INFINITY, f64::min);
            parts.push(format!(
                "max_latency_ms = {limit} (the fastest setting takes {fastest:.1} ms per row)"
            ));
        }
        if let Some(limit) = self.cost_usd {
            let cheapest = ms.iter().map(|m| m.cost_usd).fold(f64::INFINITY, f64::min);
            parts.push(format!("max_cost_usd = {limit} (the cheapest setting costs ${cheapest:.6} per row)"));
        }
        format!("no setting meets {}; raise the limit or widen the space", parts.join(" and "))
    }
}

/// Searches `spec.space` over the `base` settings with `spec.method`, spending the `train`
/// rows; then runs the defaults and the best setting on the `held_out` rows, if any.
pub async fn search_params(
    objective: &dyn ParamObjective,
    spec: &TuneSpec,
    base: &GenerationParams,
    train: &[usize],
    held_out: &[usize],
) -> Result<ParamReport> {
    if train.is_empty() {
        return Err(TuneError::spec("tune", "there are no train rows to tune on"));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let settings = match spec.method {
        Method::Grid => distinct(std::iter::once(base.clone()).chain(spec.space.grid(base)?), usize::MAX),
        Method::Random | Method::Halving => {
            // Small spaces run out of new settings: stop drawing after many repeats.
            let draws = (0..spec.trials * 20).map(|_| spec.space.sample(base, &mut rng));
            distinct(std::iter::once(base.clone()).chain(draws), spec.trials + 1)
        }
    };
    let limits = Limits { latency_ms: spec.max_latency_ms, cost_usd: spec.max_cost_usd };
    let mut search = Search { objective, settings: &settings, trials: Vec::new() };
    let finalists = match spec.method {
        Method::Grid | Method::Random => {
            search.rung(0, &(0..settings.len()).collect::<Vec<_>>(), train).await?
        }
        Method::Halving => {
            let mut order = train.to_vec();
            order.shuffle(&mut rng);
            search.halving(&order, spec.eta, spec.min_rows, &limits).await?
        }
    };
    let trials = search.trials;
    let measurements: Vec<Measurement> = finalists.iter().map(|&i| trials[i].measurement).collect();
    let ranked = rank(&finalists, &trials, &limits);
    let best = ranked.first().copied().filter(|&i| limits.allow(&trials[i].measurement));
    let unmet = best.is_none().then(|| limits.unmet(&measurements));
    let front = |other: fn(&Measurement) -> f64| -> Vec<usize> {
        let points: Vec<(f64, f64)> = measurements.iter().map(|m| (m.score, other(m))).collect();
        pareto_front(&points).into_iter().map(|i| finalists[i]).collect()
    };
    let defaults =
        *finalists.iter().find(|&&i| trials[i].setting == 0).expect("the defaults reach the last rung");
    let held_out = match best {
        Some(best) if !held_out.is_empty() => {
            let defaults = objective.evaluate(base, held_out).await?;
            let best = match trials[best].setting {
                0 => defaults,
                _ => objective.evaluate(&trials[best].params, held_out).await?,
            };
            Some(HeldOut { rows: held_out.len(), defaults, best })
        }
        _ => None,
    };
    Ok(ParamReport {
        method: spec.method,
        settings: settings.len(),
        evaluations: trials.len(),
        row_evaluations: trials.iter().map(|t| t.rows).sum(),
        pareto_cost: front(|m| m.cost_usd),
        pareto_latency: front(|m| m.latency_ms),
        trials,
        finalists,
        defaults,
        best,
        unmet,
        held_out,
    })
}

struct Search<'a> {
    objective: &'a dyn ParamObjective,
    settings: &'a [GenerationParams],
    trials: Vec<Trial>,
}

impl Search<'_> {
    /// Evaluates each of `settings` (their numbers) on `rows`; returns the new trials' indices.
    async fn rung(&mut self, rung: usize, settings: &[usize], rows: &[usize]) -> Result<Vec<usize>> {
        let mut indices = Vec::new();
        for &setting in settings {
            let params = &self.settings[setting];
            let measurement = self.objective.evaluate(params, rows).await?;
            indices.push(self.trials.len());
            self.trials.push(Trial { setting, rung, params: params.clone(), rows: rows.len(), measurement });
        }
        Ok(indices)
    }

    /// Successive halving over the rows in `order`: every setting on the first few rows, then
    /// the best `1/eta` of them (and the defaults) on `eta` times the rows, until one setting is
    /// left or the rows run out. Returns the last rung's trials.
    async fn halving(
        &mut self,
        order: &[usize],
        eta: usize,
        min_rows: Option<usize>,
        limits: &Limits,
    ) -> Result<Vec<usize>> {
        let total = order.len();
        let mut rungs = 1;
        let mut left = self.settings.len();
        while left > 1 {
            left = left.div_ceil(eta);
            rungs += 1;
        }
        // By default the rungs are sized to end on all the rows.
        let first = min_rows.unwrap_or_else(|| total.div_ceil(eta.saturating_pow(rungs as u32 - 1)));
        let mut rows = first.clamp(1, total);
        let mut alive: Vec<usize> = (0..self.settings.len()).collect();
        let mut rung = 0;
        loop {
            let trials = self.rung(rung, &alive, &order[..rows]).await?;
            if rows == total || alive.len() == 1 {
                return Ok(trials);
            }
            let ranked = rank(&trials, &self.trials, limits);
            let mut next: Vec<usize> =
                ranked[..trials.len().div_ceil(eta)].iter().map(|&i| self.trials[i].setting).collect();
            if !next.contains(&0) {
                next.push(0);
            }
            next.sort_unstable();
            if next == [0] {
                // The defaults beat every other setting: more rows would not change the answer.
                return Ok(trials);
            }
            alive = next;
            rows = (rows * eta).min(total);
            rung += 1;
        }
    }
}

/// `trials` (indices) best first: those within the limits, by score, then by order of setting.
fn rank(trials: &[usize], all: &[Trial], limits: &Limits) -> Vec<usize> {
    let mut ranked = trials.to_vec();
    ranked.sort_by(|&a, &b| {
        let (a, b) = (&all[a], &all[b]);
        limits
            .allow(&b.measurement)
            .cmp(&limits.allow(&a.measurement))
            .then(b.measurement.score.total_cmp(&a.measurement.score))
            .then(a.setting.cmp(&b.setting))
    });
    ranked
}

/// The first `most` distinct settings of `settings`, in order.
fn distinct(settings: impl Iterator<Item = GenerationParams>, most: usize) -> Vec<GenerationParams> {
    let mut kept: Vec<GenerationParams> = Vec::new();
    for setting in settings {
        if kept.len() == most {
            break;
        }
        if !kept.contains(&setting) {
            kept.push(setting);
        }
    }
    kept
}

/// The parameters of `params` that differ from `base`, as `name=value` pairs: a short label for
/// a setting in tables and messages. Kept for callers of `temper_tune::describe`; it is
/// [`GenerationParams::describe`].
pub fn describe(params: &GenerationParams, base: &GenerationParams) -> String {
    params.describe(base)
}
