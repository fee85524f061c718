//! Parameter searches on a synthetic objective with a known optimum: temperature 0.6 and top_p
//! 0.8 score best, each row adds a little noise of its own, hotter settings are slower and higher
//! top_p costs more.

use std::sync::Mutex;

use async_trait::async_trait;
use temper_core::GenerationParams;
use temper_tune::{search_params, Measurement, Method, ParamObjective, ParamReport, TuneSpec};

const ROWS: usize = 81;

#[derive(Default)]
struct Bowl {
    calls: Mutex<Vec<(GenerationParams, Vec<usize>)>>,
}

fn knobs(p: &GenerationParams) -> (f64, f64) {
    // The defaults leave both unset: they stand for temperature 1 and top_p 0.3.
    (p.temperature.map_or(1.0, f64::from), p.top_p.map_or(0.3, f64::from))
}

fn row_score(p: &GenerationParams, row: usize) -> f64 {
    let (t, q) = knobs(p);
    let hash = row * 7919 + (t * 100.0).round() as usize * 31 + (q * 100.0).round() as usize * 17;
    let noise = (hash % 101) as f64 / 100.0 * 0.04 - 0.02;
    1.0 - (t - 0.6).powi(2) - (q - 0.8).powi(2) + noise
}

#[async_trait]
impl ParamObjective for Bowl {
    async fn evaluate(&self, params: &GenerationParams, rows: &[usize]) -> temper_tune::Result<Measurement> {
        self.calls.lock().unwrap().push((params.clone(), rows.to_vec()));
        let (t, q) = knobs(params);
        let score = rows.iter().map(|&r| row_score(params, r)).sum::<f64>() / rows.len() as f64;
        Ok(Measurement { score, latency_ms: 100.0 + 1000.0 * t, cost_usd: 0.001 * q })
    }
}

const SPACE: &str =
    "[space]\ntemperature = { min = 0.0, max = 1.0, step = 0.2 }\ntop_p = [0.2, 0.4, 0.6, 0.8, 1.0]\n";

fn spec(extra: &str) -> TuneSpec {
    TuneSpec::from_toml(&format!("{extra}\n{SPACE}")).unwrap()
}

async fn search(spec: &TuneSpec, held_out: &[usize]) -> (ParamReport, Bowl) {
    let bowl = Bowl::default();
    let train: Vec<usize> = (0..ROWS).collect();
    let report = search_params(&bowl, spec, &GenerationParams::default(), &train, held_out).await.unwrap();
    (report, bowl)
}

fn optimum(report: &ParamReport) -> (Option<f32>, Option<f32>) {
    let best = report.best().unwrap();
    (best.params.temperature, best.params.top_p)
}

#[tokio::test]
async fn the_grid_tries_every_setting_and_the_defaults_on_every_row() {
    let (report, bowl) = search(&spec("method = \"grid\""), &[]).await;
    assert_eq!(optimum(&report), (Some(0.6), Some(0.8)));
    assert_eq!((report.settings, report.evaluations), (31, 31));
    assert_eq!(report.row_evaluations, 31 * ROWS);
    let calls = bowl.calls.lock().unwrap();
    assert_eq!(calls[0].0, GenerationParams::default(), "the defaults come first");
    assert!(calls.iter().all(|(_, rows)| rows.len() == ROWS));
    assert_eq!(report.trials[report.defaults].setting, 0);
}

#[tokio::test]
async fn halving_finds_the_optimum_for_far_fewer_rows_than_the_grid() {
    let (grid, _) = search(&spec("method = \"grid\""), &[]).await;
    let (halving, bowl) = search(&spec("method = \"halving\"\ntrials = 30\nseed = 1"), &[]).await;
    assert_eq!(optimum(&halving), (Some(0.6), Some(0.8)));
    assert_eq!(halving.settings, 31, "every point of the space is drawn, plus the defaults");
    assert!(
        halving.row_evaluations * 4 < grid.row_evaluations,
        "halving {} rows, grid {}",
        halving.row_evaluations,
        grid.row_evaluations
    );
    // Rungs grow by eta = 3 and the defaults run in each of them, the last on every row.
    let rungs = halving.trials.last().unwrap().rung + 1;
    for rung in 0..rungs {
        let trials: Vec<_> = halving.trials.iter().filter(|t| t.rung == rung).collect();
        assert!(trials.iter().any(|t| t.setting == 0), "rung {rung} runs the defaults");
        assert!(trials.iter().all(|t| t.rows == trials[0].rows));
    }
    let rows: Vec<usize> =
        (0..rungs).map(|r| halving.trials.iter().find(|t| t.rung == r).unwrap().rows).collect();
    assert_eq!(rows, [1, 3, 9, 27, 81]);
    assert!(halving.finalists.iter().all(|&i| halving.trials[i].rows == ROWS));
    // The rows of a rung are a seeded sample, not the first rows of the dataset.
    let calls = bowl.calls.lock().unwrap();
    assert_ne!(calls[0].1, [0]);
}

#[tokio::test]
async fn random_search_repeats_for_a_seed() {
    let (a, _) = search(&spec("method = \"random\"\ntrials = 8\nseed = 5"), &[]).await;
    let (b, _) = search(&spec("method = \"random\"\ntrials = 8\nseed = 5"), &[]).await;
    let (c, _) = search(&spec("method = \"random\"\ntrials = 8\nseed = 6"), &[]).await;
    assert_eq!(a, b);
    assert_ne!(a.trials, c.trials);
    assert_eq!(a.settings, 9);
    assert_eq!(a.method, Method::Random);
    let (h1, _) = search(&spec("method = \"halving\"\ntrials = 12\nseed = 5"), &[]).await;
    let (h2, _) = search(&spec("method = \"halving\"\ntrials = 12\nseed = 5"), &[]).await;
    assert_eq!(h1, h2);
}

#[tokio::test]
async fn limits_pick_the_best_setting_within_them_or_say_why_none_is() {
    let (report, _) = search(&spec("max_latency_ms = 550"), &[]).await;
    assert_eq!(optimum(&report), (Some(0.4), Some(0.8)), "hotter settings take longer than 550 ms");
    let (report, _) = search(&spec("max_latency_ms = 550\nmax_cost_usd = 0.0005"), &[]).await;
    assert_eq!(optimum(&report), (Some(0.4), Some(0.4)));
    let (report, _) = search(&spec("max_latency_ms = 50"), &[]).await;
    assert_eq!(report.best, None);
    let err = report.best().unwrap_err().to_string();
    assert!(
        err.contains("no setting meets max_latency_ms = 50 (the fastest setting takes 100.0 ms per row)"),
        "{err}"
    );
}

#[tokio::test]
async fn the_pareto_fronts_run_from_cheap_to_best() {
    let (report, _) = search(&spec(""), &[]).await;
    for front in [&report.pareto_cost, &report.pareto_latency] {
        assert_eq!(front.last().copied(), report.best, "the best score ends each front");
        assert!(front.iter().all(|i| report.finalists.contains(i)));
    }
    let costs: Vec<f64> = report.pareto_cost.iter().map(|&i| report.trials[i].measurement.cost_usd).collect();
    assert!(costs.windows(2).all(|w| w[0] <= w[1]), "{costs:?}");
    let scores: Vec<f64> = report.pareto_cost.iter().map(|&i| report.trials[i].measurement.score).collect();
    assert!(scores.windows(2).all(|w| w[0] < w[1]), "dearer points on the front score higher: {scores:?}");
}

#[tokio::test]
async fn defaults_that_beat_the_space_win_and_halving_stops_early() {
    let base = GenerationParams { temperature: Some(0.6), top_p: Some(0.8), ..Default::default() };
    let spec =
        TuneSpec::from_toml("method = \"halving\"\ntrials = 8\n[space]\ntemperature = [0.0, 1.5]\n").unwrap();
    let bowl = Bowl::default();
    let train: Vec<usize> = (0..ROWS).collect();
    let report = search_params(&bowl, &spec, &base, &train, &[]).await.unwrap();
    assert_eq!(report.best().unwrap().setting, 0);
    assert_eq!(report.best().unwrap().params, base);
    assert_eq!(report.settings, 3, "a two-value space gives two settings besides the defaults");
    assert!(
        report.trials.iter().all(|t| t.rows < ROWS),
        "no rung on all the rows once the defaults lead alone"
    );
}

#[tokio::test]
async fn the_defaults_and_the_best_are_reported_on_the_held_out_rows() {
    let held_out: Vec<usize> = (ROWS..ROWS + 20).collect();
    let (report, bowl) = search(&spec("method = \"random\"\ntrials = 6\nseed = 2"), &held_out).await;
    let held = report.held_out.as_ref().unwrap();
    assert_eq!(held.rows, 20);
    assert!(held.best.score > held.defaults.score);
    let calls = bowl.calls.lock().unwrap();
    let on_held_out: Vec<&GenerationParams> =
        calls.iter().filter(|(_, r)| r == &held_out).map(|(p, _)| p).collect();
    assert_eq!(on_held_out, [&GenerationParams::default(), &report.best().unwrap().params]);
    assert_eq!(report.evaluations, calls.len() - 2, "the held-out runs are not trials");
}

#[tokio::test]
async fn no_train_rows_is_an_error() {
    let err =
        search_params(&Bowl::default(), &spec(""), &GenerationParams::default(), &[], &[]).await.unwrap_err();
    assert!(err.to_string().contains("no train rows"), "{err}");
}
