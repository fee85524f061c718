//! Running a prompt: fitting its documents into the context window by the chosen strategy,
//! asking the model, checking structured replies against the output schema (repairing and
//! retrying), and chain of thought with self-consistency.

use futures::future::try_join_all;
use serde::Serialize;
use serde_json::Value;
use temper_core::{
    ChatModel, ChatRequest, ChatResponse, GenerationParams, Message, ResponseFormat, TokenCounter, Usage,
};

use crate::budget::{Budget, Cut, Fitting, DEFAULT_ANSWER_TOKENS};
use crate::cot::{Reasoned, Vote};
use crate::json::extract_json;
use crate::render::{Document, Layout, Prompt};
use crate::retrieval::{retrieve, PassageRanker, Retrieval};
use crate::retry::{add_usage, ask_until, Retry, ATTEMPTS, SAMPLING_TEMPERATURE};
use crate::schema::validate;
use crate::{PromptError, Result};

/// Rounds of map-reduce before giving up on partial answers that still do not fit.
const MAX_REDUCE_ROUNDS: usize = 3;

const REDUCE_RULE: &str = "Each document is a partial answer, drawn from one part of a longer text. \
Combine them into one answer to the task.";

/// What to do when the documents do not fit in the context window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocStrategy {
    /// Refuse, saying by how many tokens the prompt is too long.
    #[default]
    Error,
    /// Keep what fits, and say what was dropped.
    Truncate,
    /// Run the task on parts that fit, then combine the partial answers.
    MapReduce,
    /// Keep the passages closest to the task that fit, ranked by [`RunOptions::ranker`].
    Retrieval,
}

/// How to run a prompt.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub layout: Layout,
    pub strategy: DocStrategy,
    /// Reasoning paths to sample and vote over; 0 or 1 is off.
    pub self_consistency: usize,
    pub params: GenerationParams,
    /// The embedding model of the retrieval strategy.
    pub ranker: Option<PassageRanker>,
}

/// Everything a run did, so that a user sees what was sent and what came back.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// The messages of the final request.
    pub messages: Vec<Message>,
    /// The final request's token budget, when the model can count its tokens.
    pub budget: Option<Budget>,
    /// What truncation dropped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cuts: Vec<Cut>,
    /// The partial answers of map-reduce, by part.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partial_answers: Vec<Document>,
    /// The passages retrieval kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<Retrieval>,
    pub answer: Answer,
}

/// The model's answer.
#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    pub model: String,
    /// The reply, or with chain of thought its final answer.
    pub text: String,
    /// The reply parsed and checked against the output schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// The reasoning and answer of a chain of thought.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Reasoned>,
    /// The paths and the majority of self-consistency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vote: Option<Vote>,
    /// Requests made for this answer (retries and paths included).
    pub requests: usize,
    /// Tokens of every request together.
    pub usage: Usage,
}

/// The request for `messages`. Every request of this crate is built here.
pub fn request(messages: Vec<Message>, params: &GenerationParams) -> ChatRequest {
    ChatRequest::new(messages).with_params(params.clone())
}

/// The response format of answers that must follow `schema`. Not `strict`, which some vendors
/// allow only for schemas that require every property.
pub fn structured_format(schema: &Value) -> ResponseFormat {
    ResponseFormat::JsonSchema { name: "answer".into(), schema: schema.clone(), strict: false }
}

/// Sends one request.
pub async fn generate(
    model: &dyn ChatModel,
    messages: Vec<Message>,
    params: &GenerationParams,
) -> Result<ChatResponse> {
    Ok(model.chat(request(messages, params)).await?)
}

/// Runs `prompt` with `documents` on `model`. `counter` counts the model's tokens (a local
/// model); without one the budget is not checked and only the error strategy is allowed.
pub async fn run(
    model: &dyn ChatModel,
    counter: Option<&dyn TokenCounter>,
    prompt: &Prompt,
    documents: &[Document],
    options: &RunOptions,
) -> Result<RunReport> {
    let mut messages = prompt.messages(documents, &options.layout)?;
    let Some(counter) = counter else {
        if options.strategy != DocStrategy::Error && !documents.is_empty() {
            return Err(PromptError::invalid(
                "document strategy",
                format!(
                    "cannot count the tokens of {}: the {:?} strategy needs a local model",
                    model.name(),
                    options.strategy
                ),
            ));
        }
        let answer = answer(model, messages.clone(), prompt.output_schema.as_ref(), options).await?;
        return Ok(RunReport {
            messages,
            budget: None,
            cuts: Vec::new(),
            partial_answers: Vec::new(),
            retrieval: None,
            answer,
        });
    };
    let answer_tokens = options.params.max_tokens.map_or(DEFAULT_ANSWER_TOKENS, |m| m as usize);
    let fitting = Fitting { prompt, layout: &options.layout, answer_tokens, counter };
    let mut budget = Budget::of(&messages, answer_tokens, counter)?;
    let (mut cuts, mut partial_answers, mut retrieval) = (Vec::new(), Vec::new(), None);
    if !budget.fits() {
        match options.strategy {
            DocStrategy::Error => return Err(budget.overflow()),
            DocStrategy::Retrieval => {
                let ranker = options.ranker.as_ref().ok_or_else(|| {
                    PromptError::invalid(
                        "document strategy",
                        "retrieval needs an embedding model to rank passages",
                    )
                })?;
                let (passages, kept) = retrieve(&fitting, documents, ranker).await?;
                messages = prompt.messages(&passages, &options.layout)?;
                retrieval = Some(kept);
            }
            DocStrategy::Truncate => {
                let (kept, dropped) = fitting.truncate(documents)?;
                messages = prompt.messages(&kept, &options.layout)?;
                cuts = dropped;
            }
            DocStrategy::MapReduce => {
                let (reduced, partials) = map_reduce(model, &fitting, documents, options).await?;
                messages = reduced;
                partial_answers = partials;
            }
        }
        budget = Budget::of(&messages, answer_tokens, counter)?;
    }
    let answer = answer(model, messages.clone(), prompt.output_schema.as_ref(), options).await?;
    Ok(RunReport { messages, budget: Some(budget), cuts, partial_answers, retrieval, answer })
}

/// Answers the task on every part at once (a local model batches them), then combines the
/// partial answers; returns the combining request's messages and the partial answers.
async fn map_reduce(
    model: &dyn ChatModel,
    fitting: &Fitting<'_>,
    documents: &[Document],
    options: &RunOptions,
) -> Result<(Vec<Message>, Vec<Document>)> {
    let map_options = RunOptions { self_consistency: 0, ..options.clone() };
    let mut reduce = fitting.prompt.clone();
    let rules = [fitting.prompt.system.clone(), Some(REDUCE_RULE.to_owned())];
    reduce.system = Some(rules.into_iter().flatten().collect::<Vec<_>>().join("\n\n"));
    let mut current = documents.to_vec();
    for _ in 0..MAX_REDUCE_ROUNDS {
        let parts = fitting.parts(&current)?;
        let answers = try_join_all(parts.iter().map(|part| {
            let messages = fitting.prompt.messages(std::slice::from_ref(part), &options.layout);
            let map_options = &map_options;
            async move { answer(model, messages?, None, map_options).await }
        }))
        .await?;
        let partials: Vec<Document> = parts
            .iter()
            .zip(answers)
            .map(|(part, answer)| Document {
                source: format!("answer from {}", part.source),
                text: answer.text,
            })
            .collect();
        let messages = reduce.messages(&partials, &options.layout)?;
        if Budget::of(&messages, fitting.answer_tokens, fitting.counter)?.fits() {
            return Ok((messages, partials));
        }
        // Pack the partial answers together, so that the next round's parts each hold several.
        let text = partials.iter().map(|p| p.text.trim()).collect::<Vec<_>>().join("\n\n");
        current = vec![Document { source: "partial answers".into(), text }];
    }
    Err(PromptError::invalid(
        "document strategy",
        format!(
            "map-reduce: the partial answers still do not fit after {MAX_REDUCE_ROUNDS} rounds; a smaller max_tokens \
             leaves them more room"
        ),
    ))
}

/// Asks for the answer: one request, a schema-checked one, or self-consistency's paths.
async fn answer(
    model: &dyn ChatModel,
    messages: Vec<Message>,
    schema: Option<&Value>,
    options: &RunOptions,
) -> Result<Answer> {
    if options.self_consistency > 1 {
        if schema.is_some() {
            return Err(PromptError::invalid("self-consistency", "does not combine with an output schema"));
        }
        return self_consistency(model, messages, options).await;
    }
    let mut answer = match schema {
        Some(schema) => answer_with_schema(model, messages, schema, &options.params).await?,
        None => Answer::from_response(generate(model, messages, &options.params).await?),
    };
    if options.layout.cot {
        let reasoned = Reasoned::parse(&answer.text);
        answer.text = reasoned.answer.clone();
        answer.reasoning = Some(reasoned);
    }
    Ok(answer)
}

/// Asks until a reply holds JSON that follows `schema`, telling the model what was wrong.
pub async fn answer_with_schema(
    model: &dyn ChatModel,
    messages: Vec<Message>,
    schema: &Value,
    params: &GenerationParams,
) -> Result<Answer> {
    let check = |text: &str| extract_json(text).and_then(|json| validate(&json, schema).map(|()| json));
    // The schema is enforced where the backend can (the local engine constrains its decoding);
    // the reply is checked all the same, since one cut off by `max_tokens` is not JSON.
    let format = structured_format(schema);
    let checked = ask_until(
        model,
        messages,
        params,
        ATTEMPTS,
        "structured output",
        check,
        Retry::WithReason,
        Some(&format),
    )
    .await?;
    let mut answer = Answer::from_response(checked.response);
    (answer.json, answer.requests, answer.usage) = (Some(checked.value), checked.requests, checked.usage);
    Ok(answer)
}

/// Samples the paths together (the local engine batches them) and takes the majority answer.
async fn self_consistency(
    model: &dyn ChatModel,
    messages: Vec<Message>,
    options: &RunOptions,
) -> Result<Answer> {
    let base = GenerationParams {
        temperature: Some(options.params.temperature.unwrap_or(SAMPLING_TEMPERATURE)),
        ..options.params.clone()
    };
    if base.temperature == Some(0.0) {
        return Err(PromptError::invalid(
            "self-consistency",
            "needs sampling; a temperature of 0 gives one path",
        ));
    }
    let responses = try_join_all((0..options.self_consistency as u64).map(|i| {
        // Distinct seeds: repeatable when the caller gave one, different paths either way.
        let params = GenerationParams { seed: Some(base.seed.unwrap_or(0).wrapping_add(i)), ..base.clone() };
        let messages = messages.clone();
        async move { generate(model, messages, &params).await }
    }))
    .await?;
    let mut usage = Usage::default();
    responses.iter().for_each(|r| add_usage(&mut usage, &r.usage));
    let model_name = responses.first().map(|r| r.model.clone()).unwrap_or_default();
    let paths: Vec<Reasoned> = responses.iter().map(|r| Reasoned::parse(&r.text)).collect();
    let vote = Vote::majority(paths).ok_or_else(|| PromptError::Unusable {
        what: "self-consistency".into(),
        attempts: options.self_consistency,
        reason: "no path gave an answer".into(),
    })?;
    Ok(Answer {
        model: model_name,
        text: vote.answer.clone(),
        json: None,
        reasoning: None,
        vote: Some(vote),
        requests: options.self_consistency,
        usage,
    })
}

impl Answer {
    fn from_response(response: ChatResponse) -> Answer {
        Answer {
            model: response.model,
            text: response.text,
            json: None,
            reasoning: None,
            vote: None,
            requests: 1,
            usage: response.usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::budget::tests::WordCounter;
    use crate::scripted::{block_on, Scripted};

    fn schema() -> Value {
        json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
    }

    #[test]
    fn a_reply_off_the_schema_is_retried_with_the_reason() {
        // Answers in prose first, and with JSON once told why the reply was refused.
        let model = Scripted::new(|r| {
            let last = &r.messages.last().unwrap().content;
            if last.contains("cannot be used") {
                "Here: {\"name\": \"Ann\",}".into()
            } else {
                "Her name is Ann.".into()
            }
        });
        let mut prompt = Prompt::task("Who?");
        prompt.output_schema = Some(schema());
        let report = block_on(run(&model, None, &prompt, &[], &RunOptions::default())).unwrap();
        assert_eq!(report.answer.json, Some(json!({"name": "Ann"})));
        assert_eq!(report.answer.requests, 2);
        assert!(model.prompts()[1].starts_with("That reply cannot be used: the reply holds no JSON object."));
    }

    #[test]
    fn replies_that_never_fit_the_schema_end_in_a_clear_error() {
        let model = Scripted::new(|_| "{\"name\": 3}".into());
        let mut prompt = Prompt::task("Who?");
        prompt.output_schema = Some(schema());
        let err = block_on(run(&model, None, &prompt, &[], &RunOptions::default())).unwrap_err().to_string();
        assert_eq!(
            err,
            "structured output: no usable reply after 3 attempts; the last one: /name: 3 is not of type \"string\" (the reply: {\"name\": 3})"
        );
    }

    fn long_doc() -> Document {
        words_doc(200)
    }

    fn words_doc(words: usize) -> Document {
        Document {
            source: "long.txt".into(),
            text: (0..words).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" "),
        }
    }

    fn options(strategy: DocStrategy) -> RunOptions {
        RunOptions {
            strategy,
            params: GenerationParams { max_tokens: Some(10), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn documents_that_do_not_fit_are_refused_by_default_and_truncated_on_request() {
        let model = Scripted::new(|_| "ok".into());
        let prompt = Prompt::task("Summarize.");
        let counter = WordCounter(120);
        let err = block_on(run(&model, Some(&counter), &prompt, &[long_doc()], &options(DocStrategy::Error)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("but the context window is 120 tokens: "), "{err}");
        assert!(model.prompts().is_empty(), "nothing is sent when the budget is exceeded");

        let report =
            block_on(run(&model, Some(&counter), &prompt, &[long_doc()], &options(DocStrategy::Truncate)))
                .unwrap();
        let budget = report.budget.unwrap();
        assert!(budget.fits() && budget.prompt_tokens + 10 > 115, "{budget:?}");
        assert_eq!(report.cuts[0].total_words, 200);
        assert!(report.messages.last().unwrap().content.contains("w0 w1 "));

        let err =
            block_on(run(&model, Some(&counter), &prompt, &[long_doc()], &options(DocStrategy::Retrieval)))
                .unwrap_err()
                .to_string();
        assert!(err.contains("retrieval needs an embedding model"), "{err}");
    }

    #[test]
    fn map_reduce_answers_every_part_at_once_then_combines() {
        // Each map reply names the first word of its part; the combining reply lists the sources.
        let model = Scripted::new(|r| {
            let user = &r.messages.last().unwrap().content;
            let first_word =
                user.split("\">\n").nth(1).and_then(|t| t.split_whitespace().next()).unwrap_or("");
            if user.contains("answer from") {
                format!("combined {}", user.matches("<document ").count())
            } else {
                format!("saw {first_word}")
            }
        })
        .with_delay(Duration::from_millis(20));
        let prompt = Prompt::task("Summarize.");
        let report = block_on(run(
            &model,
            Some(&WordCounter(200)),
            &prompt,
            &[words_doc(400)],
            &options(DocStrategy::MapReduce),
        ))
        .unwrap();
        let parts = report.partial_answers.len();
        assert!(parts >= 3, "{parts}");
        assert_eq!(report.partial_answers[0].text, "saw w0");
        assert_eq!(report.answer.text, format!("combined {parts}"));
        assert!(report.budget.unwrap().fits());
        assert_eq!(model.max_in_flight.load(Ordering::SeqCst), parts, "the parts are asked at once");
        assert_eq!(report.messages[0].content, format!("{REDUCE_RULE}\n\n{}", crate::render::DOCUMENTS_RULE));
    }

    #[test]
    fn self_consistency_samples_distinct_paths_and_takes_the_majority() {
        // The seed decides the path: seeds 0 and 2 reason to 12, seed 1 to 13.
        let model = Scripted::new(|r| {
            let seed = r.params.seed.unwrap();
            format!("Reasoning {seed}.\nAnswer: {}", if seed == 1 { 13 } else { 12 })
        });
        let options = RunOptions {
            layout: Layout { cot: true, grounded: false },
            self_consistency: 3,
            ..Default::default()
        };
        let report = block_on(run(&model, None, &Prompt::task("6+6?"), &[], &options)).unwrap();
        let vote = report.answer.vote.unwrap();
        assert_eq!((report.answer.text.as_str(), vote.votes, vote.paths.len()), ("12", 2, 3));
        let requests = model.requests.lock().unwrap();
        assert!(requests.iter().all(|r| r.params.temperature == Some(SAMPLING_TEMPERATURE)));
        assert!(report.messages.last().unwrap().content.ends_with(crate::render::COT_INSTRUCTION));
    }

    #[test]
    fn chain_of_thought_separates_the_answer() {
        let model = Scripted::new(|_| "Two pairs.\nAnswer: 4".into());
        let options = RunOptions { layout: Layout { cot: true, grounded: false }, ..Default::default() };
        let answer = block_on(run(&model, None, &Prompt::task("2+2?"), &[], &options)).unwrap().answer;
        assert_eq!(answer.text, "4");
        assert_eq!(answer.reasoning.unwrap().reasoning, "Two pairs.");
    }
}
