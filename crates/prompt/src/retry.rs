//! Asking until a reply passes a check: small models often miss a format on the first try, so
//! each failed reply goes back to the model with the reason, and later attempts sample.

use temper_core::{ChatModel, ChatResponse, GenerationParams, Message, ResponseFormat, Usage};

use crate::run::request;
use crate::{PromptError, Result};

/// Attempts at a usable reply, first included.
pub const ATTEMPTS: usize = 3;

/// Temperature of attempts after the first, and of self-consistency's paths, when the caller
/// sets none: diverse, still sensible.
pub const SAMPLING_TEMPERATURE: f32 = 0.7;

/// A reply that passed the check, and what it took to get it.
pub struct Checked<T> {
    pub value: T,
    pub response: ChatResponse,
    /// Requests made, the good one included.
    pub requests: usize,
    /// Tokens of every request together.
    pub usage: Usage,
}

/// What a retry shows the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// The refused reply and the reason, so that the model can correct it.
    WithReason,
    /// The same conversation afresh (sampled), without the refused reply: for requests where
    /// seeing its mistake makes a small model answer in prose ("I'm unable to provide the
    /// requested response…") rather than correct it.
    Afresh,
}

/// Asks up to `attempts` times until `check` accepts the reply's text, each retry as `retry`
/// says. `what` names the reply in the error. `format` is asked of the backend; one that
/// refuses it is asked without.
#[allow(clippy::too_many_arguments)]
pub async fn ask_until<T>(
    model: &dyn ChatModel,
    mut messages: Vec<Message>,
    params: &GenerationParams,
    attempts: usize,
    what: &str,
    check: impl Fn(&str) -> std::result::Result<T, String>,
    retry: Retry,
    mut format: Option<&ResponseFormat>,
) -> Result<Checked<T>> {
    let mut usage = Usage::default();
    let mut reason = String::from("no attempt was made");
    for attempt in 1..=attempts {
        let params = retry_params(params, attempt);
        let ask = |format: Option<&ResponseFormat>| {
            let mut request = request(messages.clone(), &params);
            request.response_format = format.cloned();
            model.chat(request)
        };
        let response = match ask(format).await {
            Err(temper_core::Error::Unsupported(_)) if format.is_some() => {
                format = None;
                ask(None).await?
            }
            response => response?,
        };
        add_usage(&mut usage, &response.usage);
        match check(&response.text) {
            Ok(value) => return Ok(Checked { value, response, requests: attempt, usage }),
            Err(why) => {
                reason = format!("{why} (the reply: {})", excerpt(&response.text));
                if retry == Retry::Afresh {
                    continue;
                }
                messages.push(Message::assistant(response.text));
                messages.push(Message::user(format!(
                    "That reply cannot be used: {why}. Reply again, in the format asked for."
                )));
            }
        }
    }
    Err(PromptError::Unusable { what: what.to_owned(), attempts, reason })
}

/// The parameters of attempt `attempt` (from 1): the caller's first, then sampled with a
/// fresh seed, since a greedy retry of a small model tends to repeat its mistake.
fn retry_params(params: &GenerationParams, attempt: usize) -> GenerationParams {
    if attempt == 1 {
        return params.clone();
    }
    GenerationParams {
        temperature: Some(params.temperature.unwrap_or(0.0).max(SAMPLING_TEMPERATURE)),
        seed: Some(params.seed.unwrap_or(0).wrapping_add(attempt as u64)),
        ..params.clone()
    }
}

/// The start of a reply, on one line, for an error message.
pub fn excerpt(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(160) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

pub(crate) fn add_usage(total: &mut Usage, more: &Usage) {
    total.prompt_tokens += more.prompt_tokens;
    total.completion_tokens += more.completion_tokens;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripted::{block_on, Scripted};

    #[test]
    fn a_fresh_retry_asks_the_same_conversation_sampled_without_the_refused_reply() {
        let model = Scripted::new(|r| if r.params.temperature.is_some() { "ok" } else { "no" }.into());
        let check = |text: &str| if text == "ok" { Ok(()) } else { Err("not ok".to_owned()) };
        let messages = vec![Message::user("Say ok.")];
        let params = GenerationParams::default();
        let checked =
            block_on(ask_until(&model, messages.clone(), &params, 2, "ok", check, Retry::Afresh, None))
                .unwrap();
        assert_eq!(checked.requests, 2);
        let requests = model.requests.lock().unwrap();
        assert_eq!(requests[1].messages, messages);
        assert_eq!(requests[1].params.temperature, Some(SAMPLING_TEMPERATURE));
    }
}
