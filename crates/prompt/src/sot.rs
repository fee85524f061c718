//! Skeleton of thought: ask for a skeleton of short points, expand every point at once (the
//! local engine decodes them as one batch, HTTP backends get concurrent requests), and assemble
//! the answer in order. The latency is measured next to a normal answer to the same question,
//! and, on request, next to expanding the same points one after another.

use std::time::Instant;

use futures::future::try_join_all;
use serde::Serialize;
use temper_core::{ChatModel, ChatResponse, GenerationParams, Message};

use crate::retry::{ask_until, Retry, ATTEMPTS};
use crate::run::generate;
use crate::{PromptError, Result};

/// How a skeleton-of-thought answer is made.
#[derive(Clone, Debug)]
pub struct SotOptions {
    pub min_points: usize,
    pub max_points: usize,
    /// The most tokens of one point's expansion.
    pub point_tokens: u32,
    /// Also expand the points one after another, to measure what answering them at once saves.
    pub sequential: bool,
    /// Also answer the question normally, to compare latency.
    pub normal: bool,
    /// With `sequential`, first read every expansion's prompt once (one token each), so that
    /// both timings start from the same warm state: for the local engine, the shared preamble
    /// already read and every sequence's cache in place. Otherwise whichever ran first would
    /// pay for both. Pointless (and billed) for HTTP backends.
    pub warm_up: bool,
    /// The skeleton's penalty on repeated tokens, for backends that have one (the local engine,
    /// llama.cpp's server; OpenAI's API refuses it): without it, small models give the same
    /// point again in other words. `temper answer` sets [`SKELETON_REPEAT_PENALTY`] for a local
    /// model. The caller's own `params.repeat_penalty` comes first.
    pub skeleton_repeat_penalty: Option<f32>,
    pub params: GenerationParams,
}

impl SotOptions {
    /// Refuses options that cannot give an answer, and a question with no text, before any
    /// model call (the skeleton of nothing would be asked for again and again).
    pub fn check(&self, question: &str) -> Result<()> {
        if question.trim().is_empty() {
            return Err(PromptError::invalid("question", "it is empty: there is nothing to answer"));
        }
        if self.point_tokens == 0 {
            return Err(PromptError::invalid(
                "point tokens",
                "must be at least 1: a point needs room to be expanded",
            ));
        }
        if self.min_points == 0 || self.min_points > self.max_points {
            return Err(PromptError::invalid(
                "points",
                format!("need 1 ≤ min_points ≤ max_points, got {} and {}", self.min_points, self.max_points),
            ));
        }
        Ok(())
    }
}

impl Default for SotOptions {
    fn default() -> Self {
        SotOptions {
            min_points: 3,
            max_points: 10,
            point_tokens: 64,
            sequential: false,
            normal: true,
            warm_up: false,
            skeleton_repeat_penalty: None,
            params: GenerationParams::default(),
        }
    }
}

/// The answer and how long each stage took.
#[derive(Clone, Debug, Serialize)]
pub struct SotAnswer {
    pub points: Vec<String>,
    /// Each point's expansion, in order.
    pub expansions: Vec<String>,
    pub answer: String,
    /// The normal answer it is compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normal_answer: Option<String>,
    pub timings: SotTimings,
}

/// Wall-clock milliseconds of each stage; speedups are ratios of wall-clock times.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SotTimings {
    pub skeleton_ms: f64,
    /// Every point expanded at once.
    pub expand_ms: f64,
    pub expand_tokens: u32,
    /// Skeleton and expansion: the latency of the answer.
    pub sot_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normal_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normal_tokens: Option<u32>,
    /// `normal_ms / sot_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speedup_vs_normal: Option<f64>,
    /// The same points expanded one after another.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequential_expand_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequential_tokens: Option<u32>,
    /// `sequential_expand_ms / expand_ms`: what answering the points at once saves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_speedup: Option<f64>,
}

/// The skeleton's instructions, for `min` to `max` points.
fn skeleton_system(min: usize, max: usize) -> String {
    format!(
        "You plan answers. Give only the skeleton of the answer: a numbered list of {min} to {max} \
short points, each of three to five words. Do not explain the points."
    )
}

const EXAMPLE_QUESTION: &str = "How do I paint a room?";
const EXAMPLE_SKELETON: &str = "1. Choose the colour\n2. Move the furniture out\n3. Cover the floor\n\
4. Fill cracks and sand\n5. Apply a primer coat\n6. Paint two thin coats\n7. Clean the brushes";

/// The example's point expanded in the worked exchange, from 0.
const EXAMPLE_POINT: usize = 2;
const EXAMPLE_EXPANSION: &str =
    "Lay dust sheets over the floor and tape their edges, so that drips land on cloth, not on the boards.";

/// A mild penalty on repeated tokens (llama.cpp's default strength): enough for distinct
/// points, not so much that the list loses its numbering.
pub const SKELETON_REPEAT_PENALTY: f32 = 1.1;

const EXPAND_SYSTEM: &str = "You write one point of an answer whose skeleton is given. Write only that \
point, in one or two sentences.";

/// Answers `question` by skeleton of thought.
pub async fn answer(model: &dyn ChatModel, question: &str, options: &SotOptions) -> Result<SotAnswer> {
    options.check(question)?;
    let started = Instant::now();
    let points = skeleton(model, question, options).await?;
    let skeleton_ms = ms(started);
    if options.sequential && options.warm_up {
        let one_token = SotOptions { point_tokens: 1, ..options.clone() };
        expand_all(model, question, &points, &one_token).await?;
    }
    let expand_started = Instant::now();
    let responses = expand_all(model, question, &points, options).await?;
    let expand_ms = ms(expand_started);
    let mut timings = SotTimings {
        skeleton_ms,
        expand_ms,
        expand_tokens: completion_tokens(&responses),
        sot_ms: skeleton_ms + expand_ms,
        ..SotTimings::default()
    };
    if options.sequential {
        let sequential_started = Instant::now();
        let example = parse_points(EXAMPLE_SKELETON);
        let mut sequential = Vec::new();
        for index in 0..points.len() {
            sequential.push(expand(model, question, &points, index, &example, options).await?);
        }
        let sequential_ms = ms(sequential_started);
        timings.sequential_expand_ms = Some(sequential_ms);
        timings.sequential_tokens = Some(completion_tokens(&sequential));
        timings.batch_speedup = Some(sequential_ms / expand_ms);
    }
    let mut normal_answer = None;
    if options.normal {
        let normal_started = Instant::now();
        let params = GenerationParams {
            max_tokens: Some(options.point_tokens * points.len() as u32),
            ..options.params.clone()
        };
        let normal = generate(model, vec![Message::user(question)], &params).await?;
        let normal_ms = ms(normal_started);
        timings.normal_ms = Some(normal_ms);
        timings.normal_tokens = Some(normal.usage.completion_tokens);
        timings.speedup_vs_normal = Some(normal_ms / timings.sot_ms);
        normal_answer = Some(normal.text);
    }
    let expansions: Vec<String> = responses.iter().map(|r| expansion_text(&r.text)).collect();
    let answer = assemble(&points, &expansions);
    Ok(SotAnswer { points, expansions, answer, normal_answer, timings })
}

/// Asks for the skeleton until it has at least `min_points` points; keeps at most `max_points`.
pub async fn skeleton(model: &dyn ChatModel, question: &str, options: &SotOptions) -> Result<Vec<String>> {
    let (min, max) = (options.min_points, options.max_points);
    // Ending on `Skeleton:` cues a list: asked "What makes a good leader?" without it, the
    // default model answered in prose three times over.
    let ask = |q: &str| Message::user(format!("Question: {q}\nSkeleton:"));
    // One worked exchange: small models copy a shown format far better than a described one.
    let messages = vec![
        Message::system(skeleton_system(min, max)),
        ask(EXAMPLE_QUESTION),
        Message::assistant(EXAMPLE_SKELETON),
        ask(question),
    ];
    let params = GenerationParams {
        max_tokens: Some(16 * max as u32),
        repeat_penalty: options.params.repeat_penalty.or(options.skeleton_repeat_penalty),
        ..options.params.clone()
    };
    let example = parse_points(EXAMPLE_SKELETON);
    let check = |text: &str| {
        let mut points = parse_points(text);
        // Small models sometimes answer the shown example's question instead.
        let copied = points.iter().filter(|p| example.iter().any(|e| e.eq_ignore_ascii_case(p))).count();
        if copied >= 2 {
            return Err(format!("it repeats the example's points; give points that answer \"{question}\""));
        }
        if points.len() < min {
            return Err(format!(
                "it has {} points; give {min} to {max} numbered points, one per line",
                points.len()
            ));
        }
        points.truncate(max);
        Ok(points)
    };
    Ok(ask_until(model, messages, &params, ATTEMPTS, "skeleton", check, Retry::WithReason, None).await?.value)
}

/// Expands every point at once.
pub async fn expand_all(
    model: &dyn ChatModel,
    question: &str,
    points: &[String],
    options: &SotOptions,
) -> Result<Vec<ChatResponse>> {
    let example = parse_points(EXAMPLE_SKELETON);
    try_join_all((0..points.len()).map(|index| expand(model, question, points, index, &example, options)))
        .await
}

/// Expands point `index` (from 0), showing the whole skeleton so that it does not repeat others.
/// `example` is the points of `EXAMPLE_SKELETON`, read once by the caller for every point.
async fn expand(
    model: &dyn ChatModel,
    question: &str,
    points: &[String],
    index: usize,
    example: &[String],
    options: &SotOptions,
) -> Result<ChatResponse> {
    let params = GenerationParams { max_tokens: Some(options.point_tokens), ..options.params.clone() };
    let messages = vec![
        Message::system(EXPAND_SYSTEM),
        Message::user(expand_request(EXAMPLE_QUESTION, example, EXAMPLE_POINT)),
        Message::assistant(EXAMPLE_EXPANSION),
        Message::user(expand_request(question, points, index)),
    ];
    generate(model, messages, &params).await
}

fn expand_request(question: &str, points: &[String], index: usize) -> String {
    let skeleton: String = (1..).zip(points).map(|(i, p)| format!("{i}. {p}\n")).collect();
    format!(
        "Question: {question}\nSkeleton:\n{skeleton}\nWrite point {}, \"{}\", in one or two sentences.",
        index + 1,
        points[index]
    )
}

/// The text of an expansion: its first paragraph, without the list items and headings
/// (`Skeleton:`) small models sometimes go on to, or start with when they echo the request.
fn expansion_text(text: &str) -> String {
    let paragraph = text.trim().split("\n\n").next().unwrap_or_default();
    let prose = paragraph.lines().map(str::trim).filter(|l| list_marker(l).is_none() && !l.ends_with(':'));
    prose.collect::<Vec<_>>().join(" ")
}

/// The points of a numbered or bulleted list, without numbers, markup or repeats.
fn parse_points(text: &str) -> Vec<String> {
    let mut points: Vec<String> = Vec::new();
    for line in text.lines().flat_map(numbered_items) {
        let point = list_marker(line)
            .map(|r| r.trim().trim_matches('*').trim().trim_end_matches(['.', ':']).to_owned());
        if let Some(point) = point.filter(|p| !p.is_empty()) {
            if !points.iter().any(|p| p.eq_ignore_ascii_case(&point)) {
                points.push(point);
            }
        }
    }
    points
}

/// The items of a line that numbers several in a row (`1. Rest. 2. Eat well.`), one each;
/// any other line as it is.
fn numbered_items(line: &str) -> Vec<&str> {
    let line = line.trim();
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let first = match line[digits..].starts_with(". ") {
        true => line[..digits].parse::<usize>().ok(),
        false => None,
    };
    let Some(first) = first else { return vec![line] };
    let mut items = Vec::new();
    let mut rest = line;
    for next in first + 1.. {
        let Some(at) = rest.find(&format!(" {next}. ")) else { break };
        items.push(&rest[..at]);
        rest = &rest[at + 1..];
    }
    items.push(rest);
    items
}

/// The line after its list marker (`1.`, `2)`, `3:`, `-`, `*`, `•`, `Instruction 4:`, `**5**.`),
/// if it has one; other bold marks are left to the caller. At most three digits: `2024: a year`
/// is not an item. Shared by the skeleton's points and temper-tune's proposed instructions.
pub fn list_marker(line: &str) -> Option<&str> {
    let line = line.trim().trim_start_matches("**");
    if let Some(rest) = line.strip_prefix(['-', '*', '•']) {
        return Some(rest.trim_start());
    }
    let line = line.strip_prefix("Instruction ").unwrap_or(line);
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 3 {
        return None;
    }
    line[digits..].trim_start_matches("**").strip_prefix(['.', ')', ':']).map(str::trim_start)
}

/// The answer: each point with its expansion, in the skeleton's order.
fn assemble(points: &[String], expansions: &[String]) -> String {
    let line = |(i, (point, expansion)): (usize, (&String, &String))| match expansion.is_empty() {
        true => format!("{i}. {point}"),
        false => format!("{i}. {point}: {expansion}"),
    };
    let lines: Vec<String> = (1..).zip(points.iter().zip(expansions)).map(line).collect();
    lines.join("\n")
}

fn completion_tokens(responses: &[ChatResponse]) -> u32 {
    responses.iter().map(|r| r.usage.completion_tokens).sum()
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;
    use crate::scripted::{block_on, Scripted};

    #[test]
    fn an_empty_question_and_options_that_cannot_answer_are_refused() {
        let options = SotOptions::default();
        options.check("Why?").unwrap();
        let err = options.check(" \n").unwrap_err().to_string();
        assert_eq!(err, "invalid question: it is empty: there is nothing to answer");
        let err = SotOptions { point_tokens: 0, ..options.clone() }.check("Why?").unwrap_err().to_string();
        assert!(err.starts_with("invalid point tokens: must be at least 1"), "{err}");
        let err = SotOptions { min_points: 0, ..options }.check("Why?").unwrap_err().to_string();
        assert!(err.starts_with("invalid points: need 1"), "{err}");
    }

    #[test]
    fn points_come_from_numbered_or_bulleted_lines() {
        let text = "Skeleton:\n1. **Boil water**\n2) Add tea.\n- Steep 3 minutes\n3. add tea\nEnjoy!";
        assert_eq!(parse_points(text), vec!["Boil water", "Add tea", "Steep 3 minutes"]);
        assert!(parse_points("2024 was a year").is_empty());
        let one_line = "1. Rest well. 2. Eat less sugar. 3. Walk in 2. gear";
        assert_eq!(parse_points(one_line), vec!["Rest well", "Eat less sugar", "Walk in 2. gear"]);
        let example: Vec<&str> = EXAMPLE_SKELETON.lines().map(|l| &l[3..]).collect();
        assert_eq!(parse_points(EXAMPLE_SKELETON), example, "the shown example's points, unchanged");
    }

    #[test]
    fn an_expansion_is_its_first_paragraph_without_echoed_lists() {
        assert_eq!(expansion_text(" Rest well.\nSleep early.\n\n1. Rest"), "Rest well. Sleep early.");
        assert_eq!(expansion_text("Skeleton:\n1. Rest\n2. Eat"), "");
        assert_eq!(
            assemble(&["Rest".into(), "Eat".into()], &["".into(), "Less.".into()]),
            "1. Rest\n2. Eat: Less."
        );
    }

    #[test]
    fn list_markers_are_numbers_bullets_and_bold() {
        let cases = [
            ("1. Boil", Some("Boil")),
            ("  12) Boil", Some("Boil")),
            ("**3**. Boil", Some("Boil")),
            ("**3.** Boil", Some("** Boil")), // the callers drop bold marks
            ("Instruction 4: Boil", Some("Boil")),
            ("• Boil", Some("Boil")),
            ("*Boil*", Some("Boil*")),
            ("2024: a year", None),
            ("2024 was a year", None),
            ("Boil.", None),
        ];
        for (line, rest) in cases {
            assert_eq!(list_marker(line), rest, "{line:?}");
        }
    }

    /// Gives a skeleton of four points, and expands a point by naming it back.
    fn model() -> Scripted {
        Scripted::new(|r| {
            let user = &r.messages.last().unwrap().content;
            match user.split_once("Write point ") {
                Some((_, rest)) => format!("Detail of {}\n\n1. Heat again", rest.split('"').nth(1).unwrap()),
                None => "1. Heat\n2. Steep\n3. Pour\n4. Drink".into(),
            }
        })
        .with_delay(Duration::from_millis(50))
    }

    #[test]
    fn expands_every_point_at_once_and_assembles_in_order() {
        let model = model();
        let options = SotOptions { sequential: true, ..SotOptions::default() };
        let sot = block_on(answer(&model, "How to make tea?", &options)).unwrap();
        assert_eq!(sot.points, vec!["Heat", "Steep", "Pour", "Drink"]);
        assert_eq!(
            sot.answer,
            "1. Heat: Detail of Heat\n2. Steep: Detail of Steep\n3. Pour: Detail of Pour\n4. Drink: Detail of Drink"
        );
        assert_eq!(model.max_in_flight.load(Ordering::SeqCst), 4, "the points are asked at once");
        let t = &sot.timings;
        // Four 50 ms answers at once take about 50 ms; one after another about 200 ms.
        assert!(t.batch_speedup.unwrap() > 2.5, "{t:?}");
        assert_eq!(t.sequential_tokens, Some(t.expand_tokens));
        assert!(t.normal_ms.is_some() && sot.normal_answer.is_some());
        let requests = model.requests.lock().unwrap();
        assert_eq!(
            requests.last().unwrap().params.max_tokens,
            Some(4 * 64),
            "the normal answer gets the same budget"
        );
    }

    #[test]
    fn a_skeleton_too_short_is_asked_again() {
        let model = Scripted::new(|r| {
            if r.messages.len() > 4 {
                "1. One\n2. Two\n3. Three".into()
            } else {
                "Just one thing.".into()
            }
        });
        let points = block_on(skeleton(&model, "Q?", &SotOptions::default())).unwrap();
        assert_eq!(points.len(), 3);
        assert!(model.prompts()[1].starts_with("That reply cannot be used: it has 0 points; give 3 to 10"));
    }

    #[test]
    fn a_skeleton_copied_from_the_example_is_asked_again() {
        let model = Scripted::new(|r| {
            if r.messages.len() > 4 {
                "1. Lace up\n2. Run slowly\n3. Rest".into()
            } else {
                format!("{EXAMPLE_SKELETON}\n6. Drink")
            }
        });
        let points = block_on(skeleton(&model, "How do I start running?", &SotOptions::default())).unwrap();
        assert_eq!(points, vec!["Lace up", "Run slowly", "Rest"]);
        assert!(model.prompts()[1].contains("it repeats the example's points; give points that answer"));
    }
}
