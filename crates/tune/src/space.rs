//! The search space over generation parameters: for each parameter a list of values or a range,
//! checked against the parameter's bounds when it is read, so that a bad range is refused before
//! any model runs.

use std::collections::BTreeMap;

use rand::Rng;
use serde_json::Value;
use temper_core::GenerationParams;

use crate::{Result, TuneError};

/// How many points a range without `step` gives a grid.
pub const GRID_POINTS: usize = 5;

/// The most settings a grid may have: past that, random search or halving is the tool.
pub const MAX_GRID: usize = 10_000;

/// A generation parameter the search may vary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Param {
    Temperature,
    TopP,
    TopK,
    MinP,
    RepeatPenalty,
    FrequencyPenalty,
    PresencePenalty,
    MaxTokens,
    Stop,
}

impl Param {
    pub const ALL: [Param; 9] = [
        Param::Temperature,
        Param::TopP,
        Param::TopK,
        Param::MinP,
        Param::RepeatPenalty,
        Param::FrequencyPenalty,
        Param::PresencePenalty,
        Param::MaxTokens,
        Param::Stop,
    ];

    /// The name, as in `GenerationParams` and the `[tune.space]` table.
    pub fn name(self) -> &'static str {
        match self {
            Param::Temperature => "temperature",
            Param::TopP => "top_p",
            Param::TopK => "top_k",
            Param::MinP => "min_p",
            Param::RepeatPenalty => "repeat_penalty",
            Param::FrequencyPenalty => "frequency_penalty",
            Param::PresencePenalty => "presence_penalty",
            Param::MaxTokens => "max_tokens",
            Param::Stop => "stop",
        }
    }

    fn from_name(name: &str) -> Option<Param> {
        Param::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Takes whole numbers only.
    fn integer(self) -> bool {
        matches!(self, Param::TopK | Param::MaxTokens)
    }

    /// Sets this parameter of `params` to `choice` (integers rounded). A `Space` pairs `stop`
    /// with stop lists and every other parameter with numbers, which is what makes the last arm
    /// unreachable.
    fn set(self, params: &mut GenerationParams, choice: &Choice) {
        match (choice, self) {
            (Choice::Stop(stop), Param::Stop) => params.stop = stop.clone(),
            (Choice::Number(n), Param::Temperature) => params.temperature = Some(*n as f32),
            (Choice::Number(n), Param::TopP) => params.top_p = Some(*n as f32),
            (Choice::Number(n), Param::TopK) => params.top_k = Some(n.round() as u32),
            (Choice::Number(n), Param::MinP) => params.min_p = Some(*n as f32),
            (Choice::Number(n), Param::RepeatPenalty) => params.repeat_penalty = Some(*n as f32),
            (Choice::Number(n), Param::FrequencyPenalty) => params.frequency_penalty = Some(*n as f32),
            (Choice::Number(n), Param::PresencePenalty) => params.presence_penalty = Some(*n as f32),
            (Choice::Number(n), Param::MaxTokens) => params.max_tokens = Some(n.round() as u32),
            (Choice::Stop(_), _) | (Choice::Number(_), Param::Stop) => {
                unreachable!("`stop` takes stop lists and the other parameters numbers")
            }
        }
    }

    /// Refuses a value outside the parameter's bounds, with `GenerationParams`' own reason.
    fn check(self, key: &str, choice: &Choice) -> Result<()> {
        if let Choice::Number(n) = choice {
            if self.integer() && (n.fract() != 0.0 || *n < 0.0 || *n > u32::MAX as f64) {
                return Err(TuneError::spec(key, format!("{n} is not a whole number of at least 0")));
            }
        }
        let mut params = GenerationParams::default();
        self.set(&mut params, choice);
        params.validate().map_err(|e| match e {
            temper_core::Error::InvalidParam { reason, .. } => {
                TuneError::spec(key, format!("{} is out of range: {reason}", choice.describe()))
            }
            other => TuneError::spec(key, other.to_string()),
        })
    }
}

/// One value a parameter can take.
#[derive(Clone, Debug, PartialEq)]
pub enum Choice {
    Number(f64),
    /// A whole list of stop strings; the empty list is "no stop strings".
    Stop(Vec<String>),
}

impl Choice {
    fn describe(&self) -> String {
        match self {
            Choice::Number(n) => n.to_string(),
            Choice::Stop(stop) => format!("{stop:?}"),
        }
    }
}

/// The values one parameter ranges over.
#[derive(Clone, Debug, PartialEq)]
pub enum Dimension {
    /// Exactly these values.
    Values(Vec<Choice>),
    /// Numbers from `min` to `max`: every `step` if given; otherwise `GRID_POINTS` evenly spaced
    /// points for a grid and any value for random draws. `log` spaces them (and draws them)
    /// evenly on a log scale.
    Range { min: f64, max: f64, step: Option<f64>, log: bool },
}

/// The parameters a search varies, each with its values; the rest keep the base settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Space {
    /// In `Param::ALL` order, so that grids and draws do not depend on how the spec was written.
    dimensions: Vec<(Param, Dimension)>,
}

impl Space {
    /// Reads the `[tune.space]` table (any serde format, seen as JSON values); `prefix` is the
    /// table's key, for errors (`tune.space`).
    pub fn from_table(prefix: &str, table: &BTreeMap<String, Value>) -> Result<Space> {
        let mut dimensions = Vec::new();
        for (name, value) in table {
            let key = format!("{prefix}.{name}");
            let param = Param::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = Param::ALL.iter().map(|p| p.name()).collect();
                TuneError::spec(&key, format!("unknown parameter; the space takes {}", known.join(", ")))
            })?;
            dimensions.push((param, dimension(&key, param, value)?));
        }
        dimensions.sort_by_key(|(param, _)| *param);
        Ok(Space { dimensions })
    }

    pub fn dimensions(&self) -> &[(Param, Dimension)] {
        &self.dimensions
    }

    /// Every combination of the dimensions' points, each applied over `base`, in a fixed order.
    pub fn grid(&self, base: &GenerationParams) -> Result<Vec<GenerationParams>> {
        let axes: Vec<(Param, Vec<Choice>)> =
            self.dimensions.iter().map(|(p, d)| (*p, points(*p, d))).collect();
        let size = axes.iter().try_fold(1usize, |n, (_, points)| n.checked_mul(points.len()));
        match size {
            Some(size) if size <= MAX_GRID => {}
            _ => {
                return Err(TuneError::spec(
                    "tune.space",
                    format!(
                        "the grid has more than {MAX_GRID} settings; give fewer values or use method = \"random\" or \"halving\""
                    ),
                ))
            }
        }
        let mut settings = vec![base.clone()];
        for (param, points) in &axes {
            settings = settings
                .iter()
                .flat_map(|s| {
                    points.iter().map(move |choice| {
                        let mut s = s.clone();
                        param.set(&mut s, choice);
                        s
                    })
                })
                .collect();
        }
        Ok(settings)
    }

    /// One random setting over `base`: a uniform pick of each dimension's values, or a draw
    /// from its range.
    pub fn sample(&self, base: &GenerationParams, rng: &mut impl Rng) -> GenerationParams {
        let mut setting = base.clone();
        for (param, dimension) in &self.dimensions {
            let choice = match dimension {
                Dimension::Values(values) => values[rng.gen_range(0..values.len())].clone(),
                Dimension::Range { step: Some(_), .. } => {
                    // The grid's points, repeats dropped (a whole-number parameter with a
                    // fractional step rounds steps together): drawing a step index instead would
                    // make repeated values likelier and change the draws of a seed.
                    let points = points(*param, dimension);
                    points[rng.gen_range(0..points.len())].clone()
                }
                Dimension::Range { min, max, step: None, log } => {
                    Choice::Number(at(*min, *max, *log, rng.gen()).clamp(*min, *max))
                }
            };
            param.set(&mut setting, &choice);
        }
        setting
    }
}

/// Reads one parameter's entry: a list of values, or a `{min, max, step?, log?}` table.
fn dimension(key: &str, param: Param, value: &Value) -> Result<Dimension> {
    let dimension = match value {
        Value::Array(items) if items.is_empty() => {
            return Err(TuneError::spec(key, "the list of values is empty"))
        }
        Value::Array(items) => Dimension::Values(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| choice(&format!("{key}[{i}]"), param, item))
                .collect::<Result<_>>()?,
        ),
        Value::Object(table) if param != Param::Stop => range(key, table)?,
        _ if param == Param::Stop => {
            return Err(TuneError::spec(key, "give a list of alternative stop lists, e.g. [[], [\"\\n\"]]"))
        }
        _ => return Err(TuneError::spec(key, "give a list of values or a table {min, max, step, log}")),
    };
    match &dimension {
        Dimension::Values(values) => {
            for (i, value) in values.iter().enumerate() {
                param.check(&format!("{key}[{i}]"), value)?;
            }
        }
        Dimension::Range { min, max, .. } => {
            // Every bound is an interval, so a range inside it is one whose ends are.
            param.check(&format!("{key}.min"), &Choice::Number(*min))?;
            param.check(&format!("{key}.max"), &Choice::Number(*max))?;
        }
    }
    Ok(dimension)
}

fn choice(key: &str, param: Param, value: &Value) -> Result<Choice> {
    match (param, value) {
        (Param::Stop, Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .map(Choice::Stop)
            .ok_or_else(|| TuneError::spec(key, "a stop list holds strings only")),
        (Param::Stop, _) => {
            Err(TuneError::spec(key, "each alternative is a list of stop strings, e.g. [\"\\n\"]"))
        }
        (_, Value::Number(n)) => Ok(Choice::Number(n.as_f64().unwrap_or(f64::NAN))),
        (_, other) => Err(TuneError::spec(key, format!("{other} is not a number"))),
    }
}

fn range(key: &str, table: &serde_json::Map<String, Value>) -> Result<Dimension> {
    if let Some(unknown) = table.keys().find(|k| !["min", "max", "step", "log"].contains(&k.as_str())) {
        return Err(TuneError::spec(
            format!("{key}.{unknown}"),
            "unknown key; a range has min, max, step, log",
        ));
    }
    let number = |name: &str| -> Result<Option<f64>> {
        match table.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(TuneError::spec(format!("{key}.{name}"), format!("{other} is not a number"))),
        }
    };
    let (min, max) = match (number("min")?, number("max")?) {
        (Some(min), Some(max)) => (min, max),
        _ => return Err(TuneError::spec(key, "a range needs both min and max")),
    };
    let step = number("step")?;
    let log = match table.get("log") {
        None => false,
        Some(Value::Bool(log)) => *log,
        Some(other) => {
            return Err(TuneError::spec(format!("{key}.log"), format!("{other} is not true or false")))
        }
    };
    if min > max {
        return Err(TuneError::spec(key, format!("min ({min}) is greater than max ({max})")));
    }
    if step.is_some_and(|s| !(s > 0.0 && s.is_finite())) {
        return Err(TuneError::spec(format!("{key}.step"), "must be greater than 0"));
    }
    if log && step.is_some() {
        return Err(TuneError::spec(key, "step and log do not go together: log spaces the points itself"));
    }
    if log && min <= 0.0 {
        return Err(TuneError::spec(format!("{key}.min"), "a log range needs min greater than 0"));
    }
    Ok(Dimension::Range { min, max, step, log })
}

/// The discrete points of a dimension, in increasing order for ranges, without repeats.
fn points(param: Param, dimension: &Dimension) -> Vec<Choice> {
    let numbers: Vec<f64> = match dimension {
        Dimension::Values(values) => return values.clone(),
        Dimension::Range { min, max, step: Some(step), .. } => {
            // The tolerance keeps `max` when the steps add up to it with rounding error.
            let count = ((max - min) / step + 1e-9).floor() as usize;
            (0..=count).map(|i| min + i as f64 * step).collect()
        }
        Dimension::Range { min, max, step: None, log } => {
            (0..GRID_POINTS).map(|i| at(*min, *max, *log, i as f64 / (GRID_POINTS - 1) as f64)).collect()
        }
    };
    let mut choices: Vec<Choice> = Vec::new();
    for n in numbers {
        let n = if param.integer() { n.round() } else { n };
        if choices.last() != Some(&Choice::Number(n)) {
            choices.push(Choice::Number(n));
        }
    }
    choices
}

/// The point a fraction `t` (0 to 1) of the way from `min` to `max`, evenly or on a log scale.
fn at(min: f64, max: f64, log: bool, t: f64) -> f64 {
    if log {
        (min.ln() + t * (max.ln() - min.ln())).exp()
    } else {
        min + t * (max - min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn space(toml_text: &str) -> Result<Space> {
        let table: BTreeMap<String, Value> = toml::from_str(toml_text).unwrap();
        Space::from_table("tune.space", &table)
    }

    fn error(toml_text: &str) -> String {
        space(toml_text).unwrap_err().to_string()
    }

    #[test]
    fn lists_and_ranges_make_a_grid_over_the_base() {
        let s = space(
            "temperature = [0, 0.5]\ntop_k = { min = 10, max = 40, step = 15 }\nstop = [[], [\"\\n\"]]",
        )
        .unwrap();
        let base = GenerationParams { max_tokens: Some(8), stop: vec!["END".into()], ..Default::default() };
        let grid = s.grid(&base).unwrap();
        assert_eq!(grid.len(), 2 * 3 * 2);
        assert!(grid.iter().all(|p| p.max_tokens == Some(8)), "the base settings stay");
        let top_ks: Vec<Option<u32>> = grid.iter().map(|p| p.top_k).take(6).step_by(2).collect();
        assert_eq!(top_ks, [Some(10), Some(25), Some(40)]);
        assert_eq!(grid[0].stop, Vec::<String>::new(), "an empty stop list clears the base's");
        assert_eq!(grid[1].stop, vec!["\n".to_string()]);
    }

    #[test]
    fn ranges_without_a_step_give_even_or_log_points() {
        let s = space("min_p = { min = 0.0, max = 0.2 }\nmax_tokens = { min = 1, max = 10000, log = true }")
            .unwrap();
        let grid = s.grid(&GenerationParams::default()).unwrap();
        assert_eq!(grid.len(), GRID_POINTS * GRID_POINTS);
        let max_tokens: Vec<u32> = grid.iter().take(GRID_POINTS).map(|p| p.max_tokens.unwrap()).collect();
        assert_eq!(max_tokens, [1, 10, 100, 1000, 10000]);
        let min_ps: Vec<f32> = grid.iter().step_by(GRID_POINTS).map(|p| p.min_p.unwrap()).collect();
        assert_eq!(min_ps, [0.0, 0.05, 0.1, 0.15, 0.2]);
    }

    #[test]
    fn draws_stay_in_range_and_repeat_for_a_seed() {
        let s = space("temperature = { min = 0.1, max = 2.0, log = true }\ntop_p = [0.5, 1.0]").unwrap();
        let draw = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..50).map(|_| s.sample(&GenerationParams::default(), &mut rng)).collect::<Vec<_>>()
        };
        let draws = draw(7);
        assert_eq!(draws, draw(7));
        assert_ne!(draws, draw(8));
        assert!(draws.iter().all(|p| (0.1..=2.0).contains(&p.temperature.unwrap())));
        assert!(draws.iter().any(|p| p.top_p == Some(0.5)) && draws.iter().any(|p| p.top_p == Some(1.0)));
    }

    #[test]
    fn bad_entries_are_named_by_their_key() {
        let cases = [
            (
                "temperature = { min = 1.0, max = 0.5 }",
                "tune.space.temperature: min (1) is greater than max (0.5)",
            ),
            (
                "temperature = [0.2, -1]",
                "tune.space.temperature[1]: -1 is out of range: must be between 0 and 100",
            ),
            ("temperature = { min = -0.5, max = 1 }", "tune.space.temperature.min: -0.5 is out of range"),
            (
                "top_p = { min = 0.5, max = 1.5 }",
                "tune.space.top_p.max: 1.5 is out of range: must be greater than 0",
            ),
            ("top_p = [0]", "tune.space.top_p[0]: 0 is out of range"),
            (
                "tempreature = [1]",
                "tune.space.tempreature: unknown parameter; the space takes temperature, top_p",
            ),
            ("seed = [1, 2]", "tune.space.seed: unknown parameter"),
            ("top_k = [2.5]", "tune.space.top_k[0]: 2.5 is not a whole number"),
            ("max_tokens = [0]", "tune.space.max_tokens[0]: 0 is out of range: must be at least 1"),
            ("temperature = []", "tune.space.temperature: the list of values is empty"),
            ("temperature = [\"hot\"]", "tune.space.temperature[0]: \"hot\" is not a number"),
            ("temperature = { min = 0 }", "tune.space.temperature: a range needs both min and max"),
            ("temperature = { min = 0, max = 1, stpe = 0.1 }", "tune.space.temperature.stpe: unknown key"),
            (
                "temperature = { min = 0, max = 1, step = 0 }",
                "tune.space.temperature.step: must be greater than 0",
            ),
            (
                "temperature = { min = 0, max = 1, log = true }",
                "tune.space.temperature.min: a log range needs min",
            ),
            ("stop = [\"\\n\"]", "tune.space.stop[0]: each alternative is a list of stop strings"),
            ("stop = { min = 1, max = 2 }", "tune.space.stop: give a list of alternative stop lists"),
            (
                "stop = [[\"\"]]",
                "tune.space.stop[0]: [\"\"] is out of range: a stop string must not be empty",
            ),
        ];
        for (text, expected) in cases {
            let err = error(text);
            assert!(err.starts_with(expected), "{text}: {err}");
        }
    }

    #[test]
    fn a_huge_grid_is_refused() {
        let s =
            space("top_k = { min = 0, max = 200, step = 1 }\nmax_tokens = { min = 1, max = 100, step = 1 }")
                .unwrap();
        let err = s.grid(&GenerationParams::default()).unwrap_err().to_string();
        assert!(err.contains("more than 10000 settings"), "{err}");
    }
}
