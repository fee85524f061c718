//! `calculator`: exact arithmetic by fend, a calculator of big integers and rationals.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use fend_core::Interrupt;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::tool::{arguments, clip, schema_of, Tool, ToolError};

/// How long one expression may take.
const TIME_LIMIT: Duration = Duration::from_secs(2);
/// The longest expression taken, in characters.
const MAX_EXPRESSION_CHARS: usize = 1_000;
/// The longest result returned, in characters: a number longer than this is no use in a
/// prompt.
const MAX_RESULT_CHARS: usize = 10_000;

/// Evaluates arithmetic exactly: integers of any size, exact fractions and decimals
/// (`0.1 + 0.2` is `0.3`), with `sqrt`, `sin`, `ln`, `!`, `mod`, units and more.
///
/// fend gets no exchange-rate handler (so currencies do not convert: nothing reaches the
/// network), no clock and no random source: an expression reads nothing outside itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Calculator;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Arguments {
    /// The expression to compute, e.g. `347 * 892`, `2^100`, `7/2`, `sqrt(2)`, `15% of 80`.
    // No quotes, braces or brackets in the pattern: a model decoding under the schema must then
    // close the string when the expression ends, instead of running on inside it.
    #[schemars(regex(pattern = r"^[A-Za-z0-9 .,_+\-*/^%!()]*$"))]
    expression: String,
}

/// Stops fend at the deadline: fend asks at each step of a long computation.
struct Deadline(Instant);

impl Interrupt for Deadline {
    fn should_interrupt(&self) -> bool {
        Instant::now() >= self.0
    }
}

#[async_trait]
impl Tool for Calculator {
    fn name(&self) -> &str {
        "calculator"
    }

    fn description(&self) -> &str {
        "Computes an arithmetic expression exactly, e.g. `347 * 892`, `2^100`, `(3.5 + 1/4) * 12`, \
         `sqrt(2)`, `10!`. Use it for any arithmetic instead of computing in your head. \
         A result that is not exact starts with `approx.`."
    }

    fn parameters(&self) -> Value {
        schema_of::<Arguments>()
    }

    async fn call(&self, value: Value) -> Result<Value, ToolError> {
        let Arguments { expression } = arguments(value)?;
        let length = expression.chars().count();
        if length > MAX_EXPRESSION_CHARS {
            return Err(ToolError::Arguments(format!(
                "the expression has {length} characters; the limit is {MAX_EXPRESSION_CHARS}"
            )));
        }
        if expression.trim().is_empty() {
            return Err(ToolError::Arguments("the expression is empty".into()));
        }
        let input = expression.clone();
        let evaluation = tokio::task::spawn_blocking(move || {
            let deadline = Deadline(Instant::now() + TIME_LIMIT);
            let mut context = fend_core::Context::new();
            let result = fend_core::evaluate_with_interrupt(&input, &mut context, &deadline);
            (result, deadline.should_interrupt())
        });
        // fend checks the deadline often but not inside every primitive step; past a grace
        // period the caller gets its answer and the thread finishes on its own.
        let grace = TIME_LIMIT + Duration::from_secs(1);
        let (result, late) = match tokio::time::timeout(grace, evaluation).await {
            Err(_) => return Err(ToolError::TimedOut(TIME_LIMIT)),
            Ok(Err(e)) => return Err(ToolError::Failed(format!("the calculator stopped: {e}"))),
            Ok(Ok(outcome)) => outcome,
        };
        let text = match result {
            Err(_) if late => return Err(ToolError::TimedOut(TIME_LIMIT)),
            Err(message) => {
                return Err(ToolError::Failed(format!(
                    "cannot compute `{}`: {message}",
                    clip(&expression, 100)
                )))
            }
            Ok(result) => result.get_main_result().trim().to_owned(),
        };
        if text.is_empty() {
            return Err(ToolError::Failed(format!("`{}` has no value", clip(&expression, 100))));
        }
        let length = text.chars().count();
        if length > MAX_RESULT_CHARS {
            return Err(ToolError::Failed(format!(
                "the result has {length} characters, more than the {MAX_RESULT_CHARS} returned; \
                 ask for an approximation, e.g. `{} to float` or a logarithm",
                clip(&expression, 100)
            )));
        }
        Ok(json!({ "expression": expression, "result": text }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn compute(expression: &str) -> Result<String, ToolError> {
        let result = Calculator.call(json!({ "expression": expression })).await?;
        assert_eq!(result["expression"], expression);
        Ok(result["result"].as_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn arithmetic_is_exact() {
        assert_eq!(compute("347*892").await.unwrap(), "309524");
        assert_eq!(compute("7/2").await.unwrap(), "3.5");
        assert_eq!(compute("2^100").await.unwrap(), "1267650600228229401496703205376");
        assert_eq!(compute("0.1+0.2").await.unwrap(), "0.3");
        assert_eq!(compute("(3.5 + 1/4) * 12").await.unwrap(), "45");
    }

    #[tokio::test]
    async fn an_irrational_result_is_marked_approximate() {
        let root = compute("sqrt(2)").await.unwrap();
        let digits = root.strip_prefix("approx. ").unwrap_or_else(|| panic!("{root}"));
        assert!((digits.parse::<f64>().unwrap() - std::f64::consts::SQRT_2).abs() < 1e-9, "{root}");
    }

    #[tokio::test]
    async fn bad_expressions_fail_with_fends_reason() {
        let err = compute("1/0").await.unwrap_err();
        assert!(matches!(&err, ToolError::Failed(m) if m.contains("division by zero")), "{err}");
        let err = compute("3 +* banana(").await.unwrap_err();
        assert!(
            matches!(&err, ToolError::Failed(m) if m.starts_with("cannot compute `3 +* banana(`")),
            "{err}"
        );
        let err = compute(" ").await.unwrap_err();
        assert!(matches!(err, ToolError::Arguments(_)), "{err}");
        let err = compute(&"1+".repeat(600)).await.unwrap_err();
        assert!(matches!(&err, ToolError::Arguments(m) if m.contains("the limit is 1000")), "{err}");
    }

    #[tokio::test]
    async fn currencies_do_not_convert_without_a_rate_source() {
        let err = compute("10 USD to EUR").await.unwrap_err();
        assert!(
            matches!(&err, ToolError::Failed(m) if m.ends_with("exchange rates are not available")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_huge_computation_is_stopped_in_bounded_time() {
        let started = Instant::now();
        let err = compute("(10^7)!").await.unwrap_err();
        assert_eq!(err, ToolError::TimedOut(TIME_LIMIT));
        assert!(started.elapsed() < TIME_LIMIT + Duration::from_secs(2), "{:?}", started.elapsed());

        let started = Instant::now();
        assert_eq!(compute("10^10^10").await.unwrap_err(), ToolError::TimedOut(TIME_LIMIT));
        assert!(started.elapsed() < TIME_LIMIT + Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_result_too_long_for_a_prompt_is_refused() {
        let err = compute("10^20000").await.unwrap_err();
        assert!(matches!(&err, ToolError::Failed(m) if m.contains("20001 characters")), "{err}");
    }
}
