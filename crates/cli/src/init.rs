//! `temper init`: a commented example `temper.toml` in the working directory.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::Args;
use temper_models::profiles::CONFIG_FILE;

use crate::output::notice;

/// The example: a local profile that works as it is, a remote one that falls back to it, and
/// the other vendors commented out.
pub const EXAMPLE: &str = r#"# Model profiles: `--model NAME` takes any of these names (or a catalog name, or a GGUF path).
# Temper reads ./temper.toml, else $TEMPER_HOME/temper.toml. Keys never go in this file: a
# profile names the environment variable that holds its key (api_key_env).

# Temper's own engine, on this machine.
[models.local]
backend = "local"                  # openai | ollama | anthropic | local
model = "smollm2-135m-instruct"    # a catalog name or a path to a GGUF file
input_price_per_mtok = 0.0         # USD per million tokens: free to run once you have the machine
output_price_per_mtok = 0.0
[models.local.params]              # default generation parameters; command-line options win
temperature = 0.7

# An OpenAI-compatible API. base_url defaults to OpenAI's; point it at vLLM, llama.cpp's
# server, LM Studio or Ollama's /v1 to use those.
[models.gpt-mini]
backend = "openai"
model = "gpt-4o-mini"
api_key_env = "OPENAI_API_KEY"
context_window = 128000
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
fallback = ["local"]               # tried in order when this one fails, even mid-answer
unsupported_params = "warn"        # drop a parameter the API lacks (top_k, min_p) with a warning; default "error"
timeout_secs = 60
max_retries = 3
[models.gpt-mini.params]
temperature = 0.2

# Anthropic's Messages API.
# [models.claude-haiku]
# backend = "anthropic"
# model = "claude-3-5-haiku-latest"
# api_key_env = "ANTHROPIC_API_KEY"
# input_price_per_mtok = 0.80
# output_price_per_mtok = 4.00
# fallback = ["local"]

# Ollama's native API (no key needed on your own machine).
# [models.llama]
# backend = "ollama"
# model = "llama3.2"
# base_url = "http://localhost:11434"
"#;

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Replace an existing temper.toml.
    #[arg(long)]
    force: bool,
}

pub fn run(args: &InitArgs) -> anyhow::Result<()> {
    let path = Path::new(CONFIG_FILE);
    anyhow::ensure!(args.force || !path.exists(), "{CONFIG_FILE} already exists here; --force replaces it");
    let mut file = std::fs::File::create(path).with_context(|| format!("cannot create {CONFIG_FILE}"))?;
    file.write_all(EXAMPLE.as_bytes()).with_context(|| format!("cannot write {CONFIG_FILE}"))?;
    notice(&format!(
        "wrote {CONFIG_FILE}: profiles `local` and `gpt-mini`; `temper models list` shows them, \
         `temper ask --model local \"…\"` uses one"
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use temper_models::{Backend, Profiles};

    #[test]
    fn the_example_is_valid() {
        let profiles = Profiles::parse(Path::new(CONFIG_FILE), EXAMPLE).unwrap();
        assert_eq!(profiles.get("local").map(|p| p.backend), Some(Backend::Local));
        assert_eq!(profiles.chain("gpt-mini"), ["gpt-mini", "local"]);
    }
}
