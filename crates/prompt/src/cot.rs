//! Chain of thought: separating a reply's reasoning from its final answer, and self-consistency,
//! the majority answer over several sampled reasoning paths.

use serde::Serialize;

use crate::render::ANSWER_MARKER;

/// A reply split into its reasoning and its final answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reasoned {
    pub reasoning: String,
    pub answer: String,
    /// Whether the reply marked its answer with `Answer:`; when not, the answer is its last line.
    pub marked: bool,
}

impl Reasoned {
    /// Splits at the last `Answer:` (any case) that starts a line; without one, the last
    /// non-empty line is taken as the answer.
    pub fn parse(reply: &str) -> Reasoned {
        let reply = reply.trim();
        let marker = ANSWER_MARKER.to_lowercase();
        let lower = reply.to_lowercase();
        let at = lower
            .match_indices(&marker)
            .map(|(i, _)| i)
            .filter(|&i| i == 0 || reply[..i].ends_with(['\n', ' ', '*']))
            .last();
        let (reasoning, answer, marked) = match at {
            Some(i) => (&reply[..i], &reply[i + marker.len()..], true),
            None => match reply.rfind('\n') {
                Some(i) => (&reply[..i], &reply[i + 1..], false),
                None => ("", reply, false),
            },
        };
        Reasoned {
            reasoning: reasoning.trim().trim_end_matches('*').trim().to_owned(),
            answer: answer.trim().trim_start_matches('*').trim().to_owned(),
            marked,
        }
    }
}

/// The answers of several reasoning paths and the one most of them gave.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Vote {
    pub answer: String,
    /// How many paths gave it.
    pub votes: usize,
    pub paths: Vec<Reasoned>,
}

impl Vote {
    /// The majority answer, compared without case, spaces or final punctuation; a tie goes to
    /// the answer given first. `None` when no path has an answer.
    pub fn majority(paths: Vec<Reasoned>) -> Option<Vote> {
        let keys: Vec<String> = paths.iter().map(|p| normalize(&p.answer)).collect();
        let best = (0..paths.len())
            .filter(|&i| !keys[i].is_empty())
            .map(|i| (i, keys.iter().filter(|k| **k == keys[i]).count()))
            .fold(None, |best: Option<(usize, usize)>, (i, n)| match best {
                Some((_, m)) if m >= n => best,
                _ => Some((i, n)),
            })?;
        Some(Vote { answer: paths[best.0].answer.clone(), votes: best.1, paths })
    }
}

fn normalize(answer: &str) -> String {
    let words: Vec<&str> = answer.split_whitespace().collect();
    words.join(" ").trim_end_matches(['.', '!', '?', ',', ';']).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_last_answer_marker() {
        let r = Reasoned::parse("3 apples plus 2.\nSo 5 in all.\nAnswer: 5 apples");
        assert_eq!(
            r,
            Reasoned {
                reasoning: "3 apples plus 2.\nSo 5 in all.".into(),
                answer: "5 apples".into(),
                marked: true
            }
        );
        let r = Reasoned::parse("Step. **Answer:** 7");
        assert_eq!((r.reasoning.as_str(), r.answer.as_str(), r.marked), ("Step.", "7", true));
        assert_eq!(Reasoned::parse("answer: yes").answer, "yes");
    }

    #[test]
    fn without_a_marker_the_last_line_is_the_answer() {
        let r = Reasoned::parse("First this.\nThen 42\n");
        assert_eq!((r.reasoning.as_str(), r.answer.as_str(), r.marked), ("First this.", "Then 42", false));
        assert_eq!(Reasoned::parse("42").answer, "42");
    }

    #[test]
    fn the_majority_wins_ignoring_case_and_final_punctuation() {
        let paths =
            ["a\nAnswer: Paris.", "b\nAnswer: Lyon", "c\nAnswer: paris", "d"].map(Reasoned::parse).to_vec();
        let vote = Vote::majority(paths).unwrap();
        assert_eq!((vote.answer.as_str(), vote.votes, vote.paths.len()), ("Paris.", 2, 4));
        let tie = Vote::majority(["Answer: x", "Answer: y"].map(Reasoned::parse).to_vec()).unwrap();
        assert_eq!(tie.answer, "x");
        assert_eq!(Vote::majority(vec![Reasoned::parse("Answer:")]), None);
    }
}
