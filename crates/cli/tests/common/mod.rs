//! What the CLI's test binaries share.

use std::path::Path;
use std::process::Command;

/// `temper` run in `dir`, with its store in `dir/home`. Pulls fail fast instead of downloading
/// (`TEMPER_PIP`), so a test that would pull by mistake fails rather than fetching a model.
pub fn temper_in(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_temper"));
    command.current_dir(dir).env("TEMPER_HOME", dir.join("home")).env("TEMPER_PIP", "false").env_remove("CI");
    command
}
