//! Declining to answer: recognising a reply that declines, and writing the one the documents
//! warrant — what was asked that they do not say, and what they do say about it.

use crate::check::Passage;
use crate::sentences::sentences;
use crate::words::content_words;

/// How an answer that declines begins.
pub const DECLINE_PREFIX: &str = "The documents do not say";

/// Whether `text` says that the documents (or the answerer) do not hold the answer.
pub fn is_abstention(text: &str) -> bool {
    const PHRASES: &[&str] = &[
        "do not say",
        "does not say",
        "doesn't say",
        "don't say",
        "do not contain",
        "does not contain",
        "doesn't contain",
        "don't contain",
        "do not mention",
        "does not mention",
        "doesn't mention",
        "do not state",
        "does not state",
        "do not specify",
        "does not specify",
        "do not provide",
        "does not provide",
        "not mentioned",
        "not stated",
        "not specified",
        "not provided",
        "not given",
        "no information",
        "not enough information",
        "cannot answer",
        "can't answer",
        "cannot be answered",
        "cannot be determined",
        "don't know",
        "do not know",
        "unknown",
        "is not known",
        "not available",
    ];
    let text = text.to_lowercase().replace('’', "'");
    PHRASES.iter().any(|p| text.contains(p))
}

/// The answer that declines `question`: "The documents do not say …", then the passage
/// sentence that best matches the question, cited, as what they do say about it (when one
/// shares any of the question's content words).
pub fn decline(question: &str, passages: &[Passage]) -> String {
    let asked = question.trim().trim_end_matches('?').trim();
    let mut text = format!("{DECLINE_PREFIX}: {}?", lowercase_first(asked));
    let wanted = content_words(question);
    let best = passages
        .iter()
        .enumerate()
        .flat_map(|(i, p)| sentences(&p.text).into_iter().map(move |s| (i, s.text)))
        .map(|(i, s)| (content_words(&s).intersection(&wanted).count(), std::cmp::Reverse(i), s))
        .max_by_key(|(shared, rank, _)| (*shared, *rank));
    if let Some((shared, std::cmp::Reverse(i), sentence)) = best {
        if shared > 0 {
            text.push_str(&format!(" What they say: {}", cited(&sentence, &[i + 1])));
        }
    }
    text
}

/// `text` with its first letter lowercased, unless it begins a name (a second capital follows
/// within the word, or the word is "I").
fn lowercase_first(text: &str) -> String {
    let first_word = text.split_whitespace().next().unwrap_or("");
    let common = [
        "What", "When", "Who", "Whom", "Whose", "Where", "Which", "Why", "How", "Is", "Are", "Was", "Were",
        "Did", "Does", "Do", "Has", "Have", "Had", "Can", "Could", "Will", "Would", "In", "On", "At", "For",
        "From", "To", "By", "Of", "The", "A", "An",
    ];
    if !common.contains(&first_word) {
        return text.to_owned();
    }
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |c| c.to_lowercase().chain(chars).collect())
}

/// `sentence` with the citation of `sources` (`[2]`, `[1, 3]`) before its final punctuation, as
/// answers cite; as it is when there are none.
pub fn cited(sentence: &str, sources: &[usize]) -> String {
    if sources.is_empty() {
        return sentence.to_owned();
    }
    let numbers: Vec<String> = sources.iter().map(usize::to_string).collect();
    let trimmed = sentence.trim().trim_end_matches(['.', '!', '?', ':', ';']);
    let end = &sentence.trim()[trimmed.len()..];
    format!("{trimmed} [{}]{}", numbers.join(", "), if end.is_empty() { "." } else { end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declining_replies_are_recognised() {
        assert!(is_abstention("The documents do not contain the answer to this question."));
        assert!(is_abstention("The population of Dunmarrow is not mentioned in the sources."));
        assert!(is_abstention("I don’t know."));
        assert!(!is_abstention("The bridge opened in 1897 [1]."));
    }

    #[test]
    fn a_decline_names_the_question_and_what_the_documents_do_say() {
        let passages = vec![
            Passage::new("The Blue Kettle café opened in 2011. It won the Harbour Prize in 2019.", "cafe.md"),
            Passage::new("Dunmarrow lies on the river Wend. The Harrow Bridge crosses it there.", "town.md"),
        ];
        assert_eq!(
            decline("What is the population of Dunmarrow?", &passages),
            "The documents do not say: what is the population of Dunmarrow? \
             What they say: Dunmarrow lies on the river Wend [2]."
        );
        assert_eq!(decline("Who is Zed?", &passages), "The documents do not say: who is Zed?");
    }
}
