//! Printing answers: streamed text, notices, JSON, usage and model summaries.

use std::future::Future;
use std::io::{self, IsTerminal, Write};

use futures::StreamExt;
use temper_core::{ChatResponse, EventStream, FinishReason, GenerationParams, StreamEvent};
use temper_engine::sampler::SamplerSettings;
use temper_engine::ModelSummary;

/// Runs a future on the runtime `main` entered.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(future)
}

/// Prints a side remark on stderr, dimmed on a terminal, so that stdout holds only answers.
pub fn notice(message: &str) {
    if io::stderr().is_terminal() {
        eprintln!("\x1b[2m{message}\x1b[0m");
    } else {
        eprintln!("{message}");
    }
}

/// Prints the answer's text to `out` (stdout) as it arrives, ending the line; returns the final
/// response.
pub async fn stream_answer(mut stream: EventStream, out: &mut impl Write) -> anyhow::Result<ChatResponse> {
    let mut mid_line = false;
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Delta(text) => {
                out.write_all(text.as_bytes())?;
                out.flush()?;
                if !text.is_empty() {
                    mid_line = !text.ends_with('\n');
                }
            }
            // Calls print whole, with the final response.
            StreamEvent::ToolCall(_) => {}
            StreamEvent::Restart { reason } => {
                if mid_line {
                    writeln!(out)?;
                    mid_line = false;
                }
                notice(&format!("[the answer starts again: {reason}]"));
            }
            StreamEvent::Done(response) => {
                if mid_line {
                    writeln!(out)?;
                }
                for call in &response.tool_calls {
                    writeln!(out, "[tool call {}] {}({})", call.id, call.name, call.arguments)?;
                }
                if response.finish_reason == FinishReason::Length {
                    notice("[the answer was cut off: max_tokens or the context window was reached]");
                }
                return Ok(response);
            }
        }
    }
    anyhow::bail!("the model's stream ended before the answer was complete")
}

/// Prints a value (a response, token ids) as JSON on one line. Serialized first, so that a
/// closed pipe (`| head`) comes back as the `io::Error` that `main` knows, not wrapped in a
/// `serde_json::Error`.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    io::stdout().lock().write_all(&line)?;
    Ok(())
}

/// `12 prompt + 40 completion tokens · first token after 35 ms · prefill 512 tok/s · decode 150 tok/s`
/// (and `· $0.000120` when the cost is known)
pub fn usage_line(response: &ChatResponse) -> String {
    let (usage, timings) = (&response.usage, &response.timings);
    let mut line = format!(
        "{} prompt + {} completion tokens · first token after {:.0} ms · prefill {:.0} tok/s · decode {:.0} tok/s",
        usage.prompt_tokens,
        usage.completion_tokens,
        timings.ttft_ms,
        timings.prefill_tokens_per_second,
        timings.decode_tokens_per_second
    );
    if let Some(cost) = response.cost {
        line.push_str(&format!(" · {}", usd(cost)));
    }
    line
}

/// A cost in USD, with enough digits for a fraction of a cent.
pub fn usd(cost: f64) -> String {
    if cost != 0.0 && cost.abs() < 0.01 {
        format!("${cost:.6}")
    } else {
        format!("${cost:.2}")
    }
}

/// Every generation parameter as the next answer will use it, marking the defaults.
pub fn effective_params(params: &GenerationParams, summary: &ModelSummary) -> String {
    let s = SamplerSettings::resolve(params);
    let rows = [
        ("temperature", s.temperature.to_string(), params.temperature.is_some()),
        ("top_k", s.top_k.to_string(), params.top_k.is_some()),
        ("top_p", s.top_p.to_string(), params.top_p.is_some()),
        ("min_p", s.min_p.to_string(), params.min_p.is_some()),
        ("repeat_penalty", s.repeat_penalty.to_string(), params.repeat_penalty.is_some()),
        ("frequency_penalty", s.frequency_penalty.to_string(), params.frequency_penalty.is_some()),
        ("presence_penalty", s.presence_penalty.to_string(), params.presence_penalty.is_some()),
        (
            "max_tokens",
            params.max_tokens.map_or("until the context is full".into(), |m| m.to_string()),
            params.max_tokens.is_some(),
        ),
        ("stop", format!("{:?}", params.stop), !params.stop.is_empty()),
        ("seed", params.seed.map_or("random".into(), |seed| seed.to_string()), params.seed.is_some()),
        (
            "context_window",
            params.context_window.map_or(summary.context_window.to_string(), |w| w.to_string()),
            params.context_window.is_some(),
        ),
    ];
    rows.iter()
        .map(|(name, value, set)| format!("{name} = {value}{}\n", if *set { "" } else { "  (default)" }))
        .collect()
}

/// The parameters that are set, for a remote model whose defaults are the vendor's.
pub fn set_params(params: &GenerationParams) -> String {
    // The names of the set parameters, in order; each value as `describe` writes it (an `f32`
    // as typed, 0.8 rather than 0.800000011920929): the one difference from these parameters
    // with that one cleared.
    let set = serde_json::to_value(params).ok().and_then(|v| v.as_object().cloned()).unwrap_or_default();
    let mut text: String = set
        .keys()
        .map(|name| {
            let mut without = params.clone();
            let _ = without.set(name, "none");
            let pair = params.describe(&without);
            let value =
                pair.strip_prefix(name.as_str()).and_then(|rest| rest.strip_prefix('=')).unwrap_or(&pair);
            format!("{name} = {value}\n")
        })
        .collect();
    text.push_str("(every other parameter: the vendor's default)\n");
    text
}

/// `smollm2-135m-instruct: llama, 135M parameters, Q4_1, context 8192 of 8192, 2 threads (AMD EPYC …)`
pub fn summary_line(name: &str, summary: &ModelSummary) -> String {
    format!(
        "{name}: {}, {} parameters, {}, context {} of {} tokens, {} threads ({})",
        summary.architecture,
        human_count(summary.parameters),
        summary.file_type,
        summary.context_window,
        summary.trained_context,
        summary.threads,
        summary.cpu
    )
}

/// 134_515_008 → `135M`.
fn human_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.0}K", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.0}M", n as f64 / 1e6),
        _ => format!("{:.1}B", n as f64 / 1e9),
    }
}

/// 100_663_296 → `96.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Whether the error is a write to a closed pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// What the command line can do about an error that libraries describe without naming flags.
pub fn hint(err: &anyhow::Error) -> Option<&'static str> {
    use temper_eval::EvalError;
    use temper_prompt::PromptError;
    use temper_rag::RagError;
    err.chain().find_map(|cause| {
        if let Some(error) = cause.downcast_ref::<temper_core::Error>() {
            return core_hint(error);
        }
        // Transparent wrappers hide the core error from the chain: look inside them.
        match cause.downcast_ref::<EvalError>() {
            Some(EvalError::Cache { .. }) => return Some("--no-cache runs without the cache"),
            Some(EvalError::Prompt(error)) => return prompt_hint(error),
            _ => {}
        }
        if let Some(error) = cause.downcast_ref::<PromptError>() {
            return prompt_hint(error);
        }
        match cause.downcast_ref::<RagError>()? {
            RagError::Invalid { what, .. } if what == "context window" => Some(
                "--ctx TOKENS loads the model with a larger context window; --max-tokens N keeps fewer tokens \
                 for the answer",
            ),
            RagError::NoStore { .. } => Some(
                "--db PATH|URL names the store; without it, TEMPER_RAG_DB or temper.toml's [rag] db does, else \
                 $TEMPER_HOME/rag.db",
            ),
            RagError::Model(error) => core_hint(error),
            _ => None,
        }
    })
}

fn core_hint(error: &temper_core::Error) -> Option<&'static str> {
    match error {
        temper_core::Error::ContextOverflow { .. } => {
            Some("--ctx TOKENS loads the model with a larger context window; --truncate drops the oldest prompt tokens")
        }
        temper_core::Error::InvalidParam { name, .. } if name == "context_window" => {
            Some("--ctx TOKENS sets the context window the model is loaded with")
        }
        temper_core::Error::InvalidParam { name, .. } if name == "threads" => {
            Some("--threads N sets the threads; without it every core is used")
        }
        _ => None,
    }
}

fn prompt_hint(error: &temper_prompt::PromptError) -> Option<&'static str> {
    use temper_prompt::PromptError;
    match error {
        PromptError::Overflow { .. } => Some(
            "--ctx TOKENS loads the model with a larger context window; --doc-strategy truncate or map-reduce \
             fits the documents in",
        ),
        PromptError::File { message, .. } if message.contains("is undefined") => {
            Some("--var NAME=VALUE gives a variable its value")
        }
        PromptError::Invalid { what, .. } if what == "document strategy" => {
            Some("--max-tokens N keeps fewer tokens for each answer")
        }
        PromptError::Model(error) => core_hint(error),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use temper_core::{Timings, Usage};

    fn done(text: &str, finish_reason: FinishReason) -> StreamEvent {
        StreamEvent::Done(ChatResponse {
            model: "fake".into(),
            text: text.into(),
            finish_reason,
            usage: Usage::default(),
            timings: Timings::default(),
            ..Default::default()
        })
    }

    fn print(events: Vec<StreamEvent>) -> (anyhow::Result<ChatResponse>, String) {
        let stream: EventStream = Box::pin(futures::stream::iter(events.into_iter().map(Ok)));
        let mut out = Vec::new();
        let result = futures::executor::block_on(stream_answer(stream, &mut out));
        (result, String::from_utf8(out).unwrap())
    }

    #[test]
    fn streams_deltas_and_ends_the_line() {
        let delta = |t: &str| StreamEvent::Delta(t.into());
        let (response, out) = print(vec![delta("Hel"), delta("lo"), done("Hello", FinishReason::Stop)]);
        assert_eq!(response.unwrap().text, "Hello");
        assert_eq!(out, "Hello\n");

        let (_, out) = print(vec![delta("line\n"), done("line\n", FinishReason::Length)]);
        assert_eq!(out, "line\n");

        let restart = StreamEvent::Restart { reason: "fallback".into() };
        let (response, out) =
            print(vec![delta("Hel"), restart, delta("Bye"), done("Bye", FinishReason::Stop)]);
        assert_eq!(response.unwrap().text, "Bye");
        assert_eq!(out, "Hel\nBye\n");
    }

    #[test]
    fn a_stream_without_done_is_an_error() {
        let (response, _) = print(vec![StreamEvent::Delta("Hel".into())]);
        assert!(response.unwrap_err().to_string().contains("ended before"));
    }

    #[test]
    fn set_params_writes_floats_as_typed() {
        let params = GenerationParams {
            temperature: Some(0.8),
            max_tokens: Some(4),
            stop: vec!["a b".into()],
            ..Default::default()
        };
        let text = set_params(&params);
        assert!(text.contains("temperature = 0.8\n"), "{text}");
        assert!(text.contains("max_tokens = 4\n"), "{text}");
        assert!(text.contains("stop = [\"a b\"]\n"), "{text}");
        assert!(text.ends_with("(every other parameter: the vendor's default)\n"), "{text}");
    }

    #[test]
    fn hints_name_the_flags_that_library_errors_do_not() {
        let context = |name: &str| {
            anyhow::Error::new(temper_core::Error::invalid_param(name, "too large")).context("loading")
        };
        assert!(hint(&context("context_window"))
            .unwrap()
            .starts_with("--ctx TOKENS sets the context window"));
        assert!(hint(&context("threads")).unwrap().starts_with("--threads N"));
        assert_eq!(hint(&context("top_p")), None);
        let overflow =
            anyhow::Error::new(temper_core::Error::ContextOverflow { prompt_tokens: 9, context_window: 8 });
        assert!(hint(&overflow).unwrap().contains("--truncate"));
        let inside = anyhow::Error::new(temper_rag::RagError::Model(temper_core::Error::ContextOverflow {
            prompt_tokens: 9,
            context_window: 8,
        }));
        assert!(hint(&inside).unwrap().contains("--truncate"), "a wrapped core error is looked into");
        let overflow =
            temper_prompt::PromptError::Overflow { prompt_tokens: 9, answer_tokens: 2, context_window: 8 };
        assert!(hint(&anyhow::Error::new(overflow)).unwrap().contains("--doc-strategy"));
        let cache = temper_eval::EvalError::Cache { path: "c.sqlite".into(), reason: "junk".into() };
        assert_eq!(hint(&anyhow::Error::new(cache)), Some("--no-cache runs without the cache"));
        let store = temper_rag::RagError::NoStore { path: "typo.db".into() };
        assert!(hint(&anyhow::Error::new(store)).unwrap().starts_with("--db PATH|URL"));
    }

    #[test]
    fn human_units() {
        assert_eq!(human_count(134_515_008), "135M");
        assert_eq!(human_count(268_098_176), "268M");
        assert_eq!(human_count(999), "999");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(100_663_296), "96.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
