//! An answer cut into sentences, each with the `[n]` citations that follow it.

use serde::Serialize;

/// One sentence of an answer, its text without citations and the source numbers it cites.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sentence {
    pub text: String,
    pub citations: Vec<usize>,
}

/// The sentences of `answer`. A sentence ends at `.`, `!` or `?` followed by a space (not after
/// a single capital or a number's decimal point) or at a line break; citations right after its
/// end belong to it, and list markers are not part of it.
pub fn sentences(answer: &str) -> Vec<Sentence> {
    let mut found: Vec<Sentence> = Vec::new();
    let mut current = Sentence { text: String::new(), citations: Vec::new() };
    let mut chars = answer.char_indices().peekable();
    let mut closed = false;
    while let Some((i, c)) = chars.next() {
        if c == '[' {
            if let Some((numbers, len)) = citation_at(&answer[i..]) {
                match (closed, found.last_mut()) {
                    (true, Some(last)) if current.text.trim().is_empty() => last.citations.extend(numbers),
                    _ => {
                        // "1897 [1]." reads "1897." without its citation.
                        current.text.truncate(current.text.trim_end().len());
                        current.citations.extend(numbers);
                    }
                }
                for _ in 1..len {
                    chars.next();
                }
                continue;
            }
        }
        if c == '\n' {
            push(&mut found, &mut current);
            closed = true;
            continue;
        }
        current.text.push(c);
        if c.is_whitespace() && current.text.trim().is_empty() {
            continue;
        }
        let next_is_space = chars.peek().is_none_or(|(_, n)| n.is_whitespace() || *n == '[');
        if matches!(c, '.' | '!' | '?') && next_is_space && !abbreviation(&current.text) {
            push(&mut found, &mut current);
            closed = true;
        } else if !c.is_whitespace() {
            closed = false;
        }
    }
    push(&mut found, &mut current);
    found
}

fn push(found: &mut Vec<Sentence>, current: &mut Sentence) {
    let text = current.text.trim();
    let text = text.trim_start_matches(['-', '*', '•']).trim_start();
    let text = strip_number_marker(text);
    if text.chars().any(char::is_alphanumeric) {
        found.push(Sentence { text: text.to_owned(), citations: std::mem::take(&mut current.citations) });
    } else if let Some(last) = found.last_mut() {
        last.citations.append(&mut current.citations);
    }
    current.text.clear();
}

/// `text` without a leading list number (`2. `, `3) `).
fn strip_number_marker(text: &str) -> &str {
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    match text[digits..].strip_prefix(['.', ')']) {
        Some(rest) if digits > 0 && digits < 3 && rest.starts_with(' ') => rest.trim_start(),
        _ => text,
    }
}

/// Whether the text ends in what a period does not end a sentence after: an initial (`J.`), a
/// list item's number (`2.`) or a common abbreviation.
fn abbreviation(text: &str) -> bool {
    let last = text.trim_end_matches('.').rsplit(|c: char| c.is_whitespace()).next().unwrap_or("");
    let initial = last.chars().count() == 1 && last.chars().all(char::is_uppercase);
    let list_number =
        text.trim().len() <= 3 && text.trim().trim_end_matches('.').chars().all(|c| c.is_ascii_digit());
    initial
        || list_number
        || ["Mr", "Mrs", "Ms", "Dr", "St", "Mt", "e.g", "i.e", "etc", "vs", "No"].contains(&last)
}

/// The numbers of a citation starting `text` (`[2]`, `[1, 3]`) and its length in chars.
fn citation_at(text: &str) -> Option<(Vec<usize>, usize)> {
    let close = text.find(']')?;
    let inner = &text[1..close];
    let numbers: Option<Vec<usize>> = inner.split(',').map(|n| n.trim().parse().ok()).collect();
    Some((numbers?, text[..=close].chars().count()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(answer: &str) -> Vec<(String, Vec<usize>)> {
        sentences(answer).into_iter().map(|s| (s.text, s.citations)).collect()
    }

    #[test]
    fn citations_belong_to_the_sentence_before_them() {
        assert_eq!(
            cut("It opened in 1897 [1]. Dr. Lind built it. [2] It cost 4.5 million [1, 3]."),
            vec![
                ("It opened in 1897.".into(), vec![1]),
                ("Dr. Lind built it.".into(), vec![2]),
                ("It cost 4.5 million.".into(), vec![1, 3]),
            ]
        );
    }

    #[test]
    fn lines_and_list_items_are_sentences() {
        assert_eq!(
            cut("Two things:\n- the ferry [1]\n2. the bridge\n\n"),
            vec![
                ("Two things:".into(), vec![]),
                ("the ferry".into(), vec![1]),
                ("the bridge".into(), vec![]),
            ]
        );
        assert_eq!(cut("J. R. Lind wrote it!"), vec![("J. R. Lind wrote it!".into(), vec![])]);
        assert!(cut(" [1] ").is_empty());
    }
}
