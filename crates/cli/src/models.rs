//! `temper models …`: the catalog and the local store.

use std::io::{self, Write};

use temper_models::{catalog, ConsoleProgress, ModelStore, DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL};

use crate::output::{human_bytes, notice};

pub fn list() -> anyhow::Result<()> {
    let store = ModelStore::from_env()?;
    let models = store.list();
    let width = models.iter().map(|m| m.entry.name.len()).max().unwrap_or(0);
    let mut out = io::stdout();
    writeln!(out, "{:width$}  {:10}  {:>10}  DESCRIPTION", "NAME", "KIND", "INSTALLED")?;
    for model in &models {
        let installed = match model.size_on_disk {
            Some(size) => human_bytes(size),
            None => "no".to_owned(),
        };
        let (name, kind, description) =
            (model.entry.name, model.entry.kind.to_string(), model.entry.description);
        writeln!(out, "{name:width$}  {kind:10}  {installed:>10}  {description}")?;
    }
    writeln!(out, "\nstore: {}", store.root().display())?;
    Ok(())
}

/// Pulls `names`, every catalog model with `all`, or else the default chat model and embedder.
/// Installed models are skipped unless `force`: installs are atomic and verified, so one that is
/// present is complete.
pub fn pull(names: Vec<String>, all: bool, force: bool) -> anyhow::Result<()> {
    let store = ModelStore::from_env()?;
    let names = if all {
        catalog().iter().map(|entry| entry.name.to_owned()).collect()
    } else if names.is_empty() {
        vec![DEFAULT_CHAT_MODEL.to_owned(), DEFAULT_EMBEDDING_MODEL.to_owned()]
    } else {
        names
    };
    let installed = store.list();
    for name in &names {
        let present = installed.iter().find(|m| m.entry.name == name).and_then(|m| m.path.as_ref());
        match present {
            Some(path) if !force => {
                notice(&format!("{name} is already installed at {} (--force pulls it again)", path.display()))
            }
            _ => {
                store.pull(name, &ConsoleProgress::default())?;
            }
        }
    }
    Ok(())
}

pub fn info(name: &str) -> anyhow::Result<()> {
    let info = ModelStore::from_env()?.info(name)?;
    writeln!(io::stdout(), "{info}")?;
    Ok(())
}

pub fn remove(name: &str) -> anyhow::Result<()> {
    ModelStore::from_env()?.remove(name)?;
    writeln!(io::stdout(), "removed {name}")?;
    Ok(())
}
