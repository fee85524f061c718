//! The prompt file of a candidate: the base file with the candidate's system message and
//! examples, and writing it where the user asked without touching the file being tuned.

use std::path::Path;

use temper_prompt::PromptFile;

use crate::prompt::Candidate;
use crate::{Result, TuneError};

impl Candidate {
    /// `base` with this candidate's system message (none when empty) and examples: what an
    /// objective evaluates, and what `write_prompt` writes.
    pub fn apply(&self, base: &PromptFile) -> Result<PromptFile> {
        let system = Some(self.instruction.as_str()).filter(|s| !s.trim().is_empty());
        Ok(base.with_prompt(system, self.demos.clone())?)
    }
}

/// Writes `base` with `candidate`'s system message and examples to `path`, as a prompt file
/// that `PromptFile::load` reads back to the returned file. Refuses to overwrite `base`'s own
/// file, and writes through a temporary file so that a failure leaves nothing half-written.
pub fn write_prompt(base: &PromptFile, candidate: &Candidate, path: &Path) -> Result<PromptFile> {
    let same = |a: &Path, b: &Path| {
        a == b || a.canonicalize().ok().is_some_and(|a| b.canonicalize().ok() == Some(a))
    };
    if same(path, &base.path) {
        return Err(TuneError::Write {
            path: path.to_owned(),
            reason: "it is the prompt being tuned; write the tuned prompt to another file".into(),
        });
    }
    let text =
        format!("# Tuned by temper from {}.\n{}", base.path.display(), candidate.apply(base)?.to_toml()?);
    let file = PromptFile::parse(path, &text)?;
    let io = |e: std::io::Error| TuneError::Write { path: path.to_owned(), reason: e.to_string() };
    let temporary = path.with_extension("toml.partial");
    std::fs::write(&temporary, &text).map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use temper_prompt::Example;

    const BASE: &str = r#"
description = "Labels reviews."
model = "smollm2-135m-instruct"
system = "You label reviews: {{ labels }}."
template = "Review: {{ review }}"
[vars]
labels = "positive or negative"
[params]
temperature = 0.0
max_tokens = 4
[[examples]]
prompt = "Review: great"
response = "positive"
[[tests]]
vars = { review = "awful" }
expected = "negative"
"#;

    fn base(dir: &Path) -> PromptFile {
        let path = dir.join("base.toml");
        std::fs::write(&path, BASE).unwrap();
        PromptFile::load(&path).unwrap()
    }

    fn tuned() -> Candidate {
        Candidate {
            instruction: "Answer with one word.\nSay \"positive\" or 'negative'.".into(),
            demos: vec![
                Example { prompt: "Review: it broke".into(), response: "negative".into(), reasoning: None },
                Example { prompt: "Review: \"fine\"\n".into(), response: "positive".into(), reasoning: None },
            ],
        }
    }

    #[test]
    fn the_written_file_loads_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let base = base(dir.path());
        let path = dir.path().join("tuned.toml");
        let written = write_prompt(&base, &tuned(), &path).unwrap();
        let loaded = PromptFile::load(&path).unwrap();
        assert_eq!(loaded.system.as_ref().map(|t| t.source()), Some(tuned().instruction.as_str()));
        assert_eq!(loaded.examples, tuned().demos);
        assert_eq!(loaded.to_toml().unwrap(), written.to_toml().unwrap());
        // Everything else is the base's.
        assert_eq!(loaded.template.source(), base.template.source());
        assert_eq!((&loaded.params, &loaded.vars, &loaded.tests), (&base.params, &base.vars, &base.tests));
        assert_eq!((&loaded.description, &loaded.model), (&base.description, &base.model));
        assert!(!dir.path().join("tuned.toml.partial").exists());
    }

    #[test]
    fn the_baseline_candidate_gives_back_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let base = base(dir.path());
        let same = Candidate::baseline(&base).apply(&base).unwrap();
        assert_eq!(same.to_toml().unwrap(), base.to_toml().unwrap());
        let bare = Candidate { instruction: " ".into(), demos: vec![] }.apply(&base).unwrap();
        assert!(bare.system.is_none() && bare.examples.is_empty());
    }

    #[test]
    fn the_tuned_prompt_never_replaces_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let base = base(dir.path());
        let err = write_prompt(&base, &tuned(), &base.path).unwrap_err().to_string();
        assert!(err.contains("base.toml") && err.contains("the prompt being tuned"), "{err}");
        assert_eq!(std::fs::read_to_string(&base.path).unwrap(), BASE);
    }
}
