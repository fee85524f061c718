use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How to sample a generation. Every field is optional: `None` means the backend's default.
/// A backend honours every field it is given or refuses the request; it never ignores one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationParams {
    /// 0 is greedy decoding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Keep only the `top_k` most likely tokens; 0 keeps all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Drop tokens less likely than `min_p` times the most likely one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    /// Divide the logits of recently seen tokens by this (llama.cpp's repeat penalty); 1 is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    /// Subtract `frequency_penalty × count` from the logit of each token already generated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// Subtract `presence_penalty` from the logit of each token already generated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// The most tokens to generate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Generation ends just before the first of these strings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Seed of the sampler's random numbers, for repeatable output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Tokens of context (prompt and answer) the model may use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
}

/// The parameter names `set` understands, in the order `/params` shows them.
pub const PARAM_NAMES: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "frequency_penalty",
    "presence_penalty",
    "max_tokens",
    "stop",
    "seed",
    "context_window",
];

impl GenerationParams {
    /// These parameters with every field that `overrides` sets replaced by its value.
    pub fn overlay(&self, overrides: &GenerationParams) -> GenerationParams {
        GenerationParams {
            temperature: overrides.temperature.or(self.temperature),
            top_p: overrides.top_p.or(self.top_p),
            top_k: overrides.top_k.or(self.top_k),
            min_p: overrides.min_p.or(self.min_p),
            repeat_penalty: overrides.repeat_penalty.or(self.repeat_penalty),
            frequency_penalty: overrides.frequency_penalty.or(self.frequency_penalty),
            presence_penalty: overrides.presence_penalty.or(self.presence_penalty),
            max_tokens: overrides.max_tokens.or(self.max_tokens),
            stop: if overrides.stop.is_empty() { self.stop.clone() } else { overrides.stop.clone() },
            seed: overrides.seed.or(self.seed),
            context_window: overrides.context_window.or(self.context_window),
        }
    }

    /// Sets one parameter from text, as a user types it (`/set temperature 0.2`).
    /// `stop` adds a stop string; `none` clears a parameter. An invalid value changes nothing.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let mut changed = self.clone();
        changed.set_unchecked(name, value)?;
        changed.validate()?;
        *self = changed;
        Ok(())
    }

    fn set_unchecked(&mut self, name: &str, value: &str) -> Result<()> {
        let value = value.trim();
        let clear = value.eq_ignore_ascii_case("none");
        match name.replace('-', "_").as_str() {
            "temperature" => self.temperature = parse_opt(name, value, clear)?,
            "top_p" => self.top_p = parse_opt(name, value, clear)?,
            "top_k" => self.top_k = parse_opt(name, value, clear)?,
            "min_p" => self.min_p = parse_opt(name, value, clear)?,
            "repeat_penalty" => self.repeat_penalty = parse_opt(name, value, clear)?,
            "frequency_penalty" => self.frequency_penalty = parse_opt(name, value, clear)?,
            "presence_penalty" => self.presence_penalty = parse_opt(name, value, clear)?,
            "max_tokens" => self.max_tokens = parse_opt(name, value, clear)?,
            "seed" => self.seed = parse_opt(name, value, clear)?,
            "context_window" | "ctx" => self.context_window = parse_opt(name, value, clear)?,
            "stop" if clear => self.stop.clear(),
            "stop" => self.stop.push(unescape(value)),
            _ => {
                return Err(Error::invalid_param(
                    name,
                    format!("unknown parameter; known: {}", PARAM_NAMES.join(", ")),
                ))
            }
        }
        Ok(())
    }

    /// The parameters that differ from `base`, as `name=value` pairs (`name=none` for one `base`
    /// sets and these do not): a short label for a setting in tables and messages; `defaults`
    /// when none differs.
    pub fn describe(&self, base: &GenerationParams) -> String {
        // Through JSON text, where an `f32` is written as typed (0.2, not 0.20000000298023224).
        let as_map = |p: &GenerationParams| {
            serde_json::to_string(p)
                .ok()
                .and_then(|text| {
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text).ok()
                })
                .unwrap_or_default()
        };
        let (params, base) = (as_map(self), as_map(base));
        let mut changed: Vec<String> = params
            .iter()
            .filter(|(name, value)| base.get(*name) != Some(value))
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        changed.extend(
            base.keys().filter(|name| !params.contains_key(*name)).map(|name| format!("{name}=none")),
        );
        if changed.is_empty() {
            "defaults".to_owned()
        } else {
            changed.join(" ")
        }
    }

    /// Checks every value is in range, naming the first that is not.
    pub fn validate(&self) -> Result<()> {
        fn check(ok: bool, name: &str, reason: &str) -> Result<()> {
            if ok {
                Ok(())
            } else {
                Err(Error::invalid_param(name, reason))
            }
        }
        let within = |v: Option<f32>, lo: f32, hi: f32| v.is_none_or(|v| v.is_finite() && v >= lo && v <= hi);
        check(within(self.temperature, 0.0, 100.0), "temperature", "must be between 0 and 100")?;
        check(
            self.top_p.is_none_or(|p| p.is_finite() && p > 0.0 && p <= 1.0),
            "top_p",
            "must be greater than 0 and at most 1",
        )?;
        check(within(self.min_p, 0.0, 1.0), "min_p", "must be between 0 and 1")?;
        check(
            self.repeat_penalty.is_none_or(|p| p.is_finite() && p > 0.0),
            "repeat_penalty",
            "must be greater than 0 (1 is off)",
        )?;
        check(within(self.frequency_penalty, -2.0, 2.0), "frequency_penalty", "must be between -2 and 2")?;
        check(within(self.presence_penalty, -2.0, 2.0), "presence_penalty", "must be between -2 and 2")?;
        check(self.max_tokens != Some(0), "max_tokens", "must be at least 1")?;
        check(self.context_window != Some(0), "context_window", "must be at least 1")?;
        check(self.stop.iter().all(|s| !s.is_empty()), "stop", "a stop string must not be empty")?;
        Ok(())
    }
}

fn parse_opt<T: std::str::FromStr>(name: &str, value: &str, clear: bool) -> Result<Option<T>> {
    if clear {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        Error::invalid_param(name, format!("`{value}` is not a valid {}", std::any::type_name::<T>()))
    })
}

/// Lets a user type a newline stop string as `\n`.
fn unescape(value: &str) -> String {
    value.replace("\\n", "\n").replace("\\t", "\t")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_parses_and_validates() {
        let mut p = GenerationParams::default();
        p.set("temperature", "0.2").unwrap();
        p.set("top-k", "40").unwrap();
        p.set("stop", "\\n\\n").unwrap();
        assert_eq!(p.temperature, Some(0.2));
        assert_eq!(p.top_k, Some(40));
        assert_eq!(p.stop, vec!["\n\n".to_string()]);
        p.set("temperature", "none").unwrap();
        assert_eq!(p.temperature, None);
    }

    #[test]
    fn set_rejects_bad_values_by_name() {
        let mut p = GenerationParams::default();
        let err = p.set("top_p", "1.5").unwrap_err().to_string();
        assert!(err.contains("top_p"), "{err}");
        let err = p.set("temperature", "warm").unwrap_err().to_string();
        assert!(err.contains("`warm`"), "{err}");
        let err = p.set("creativity", "1").unwrap_err().to_string();
        assert!(err.contains("unknown parameter"), "{err}");
        assert!(p.set("max_tokens", "0").is_err());
        p.set("top_p", "0.5").unwrap();
        assert!(p.set("top_p", "7").is_err());
        assert_eq!(p.top_p, Some(0.5), "a refused value must leave the old one");
    }

    #[test]
    fn overlay_prefers_overrides() {
        let base = GenerationParams { temperature: Some(0.7), max_tokens: Some(100), ..Default::default() };
        let over = GenerationParams { temperature: Some(0.0), ..Default::default() };
        let merged = base.overlay(&over);
        assert_eq!(merged.temperature, Some(0.0));
        assert_eq!(merged.max_tokens, Some(100));
    }

    #[test]
    fn describe_names_what_differs_from_the_base() {
        let base = GenerationParams { max_tokens: Some(8), top_k: Some(40), ..Default::default() };
        let setting = GenerationParams { temperature: Some(0.2), max_tokens: Some(8), ..Default::default() };
        assert_eq!(setting.describe(&base), "temperature=0.2 top_k=none");
        assert_eq!(base.describe(&base), "defaults");
        let stop = GenerationParams { stop: vec!["\n".into()], ..base.clone() };
        assert_eq!(stop.describe(&base), "stop=[\"\\n\"]");
        let warm = GenerationParams { temperature: Some(0.8), ..Default::default() };
        assert_eq!(warm.describe(&GenerationParams::default()), "temperature=0.8");
    }

    #[test]
    fn unknown_json_fields_are_refused() {
        let err = serde_json::from_str::<GenerationParams>(r#"{"temprature": 0.1}"#).unwrap_err();
        assert!(err.to_string().contains("temprature"));
    }
}
