//! The built-in tools, and the toolbox a user's settings ask for.
//!
//! Their argument types deny unknown fields, so their schemas are closed
//! (`additionalProperties: false`): a model decoding under a schema then ends the object when
//! the fields are written, where an open one lets a small model add fields until `max_tokens`.

mod calculator;
mod command;
mod files;
mod http;
mod python;
mod rag_search;
mod sql;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use calculator::Calculator;
pub use command::{CommandTool, CommandToolSpec};
pub use files::{ListFiles, ReadFile};
pub use http::HttpGet;
pub use python::PythonTool;
pub use rag_search::RagSearch;
pub use sql::SqlQuery;

use temper_sandbox::{Limits, Python};

use crate::{Tool, Toolbox, ToolboxError};

/// The built-in tools, by name.
pub const TOOL_NAMES: &[&str] =
    &["calculator", "python", "rag_search", "read_file", "list_files", "sql_query", "http_get"];

/// What the tools may reach. A tool whose setting is missing cannot be had.
#[derive(Default)]
pub struct ToolSettings {
    /// The directory `read_file` and `list_files` read, and `python` sees read-only as `/data`.
    pub root: Option<PathBuf>,
    /// The CPython WASI runtime `python` runs code in.
    pub python: Option<PythonRuntime>,
    /// Where `python` keeps the files it writes; a temporary directory when not given.
    pub scratch: Option<PathBuf>,
    /// The SQLite file `sql_query` reads.
    pub sql: Option<PathBuf>,
    /// The hosts `http_get` may fetch from.
    pub allow_hosts: Vec<String>,
    /// A TOML file of `[[tools]]`: commands offered as tools.
    pub tools_file: Option<PathBuf>,
    /// `rag_search`, made by the caller (it needs a store and an embedder).
    pub rag: Option<RagSearch>,
}

/// Where the `python` tool's runtime is.
#[derive(Debug, Clone)]
pub struct PythonRuntime {
    /// `python.wasm`: CPython compiled to WASI with its standard library.
    pub wasm: PathBuf,
    /// Where its compilation for this machine is kept (compiling takes seconds).
    pub cache_dir: Option<PathBuf>,
    pub limits: Limits,
}

/// A toolbox the settings cannot make.
#[derive(Debug, thiserror::Error)]
pub enum ToolSetupError {
    #[error("there is no tool `{name}`; the built-in tools are {}{}", TOOL_NAMES.join(", "), commands_hint(.commands))]
    Unknown { name: String, commands: Vec<String> },
    #[error("{tool} needs {what}")]
    Missing { tool: &'static str, what: &'static str },
    #[error("{tool}: {source}")]
    Io { tool: String, source: std::io::Error },
    #[error("{path}: {reason}")]
    ToolsFile { path: PathBuf, reason: String },
    #[error("python: {0}")]
    Sandbox(#[from] temper_sandbox::SandboxError),
    #[error(transparent)]
    Toolbox(#[from] ToolboxError),
}

fn commands_hint(commands: &[String]) -> String {
    match commands.is_empty() {
        true => String::new(),
        false => format!(", and the tools file adds {}", commands.join(", ")),
    }
}

impl ToolSettings {
    /// The tools `names`, in that order; without names, the calculator and every tool whose
    /// setting is given.
    pub fn toolbox(self, names: Option<&[String]>) -> Result<Toolbox, ToolSetupError> {
        let commands = match &self.tools_file {
            Some(path) => read_tools_file(path)?,
            None => Vec::new(),
        };
        let names: Vec<String> = match names {
            Some(names) => names.to_vec(),
            None => {
                let mut names = vec!["calculator".to_owned()];
                let configured = [
                    (self.rag.is_some(), "rag_search"),
                    (self.root.is_some(), "read_file"),
                    (self.root.is_some(), "list_files"),
                    (self.sql.is_some(), "sql_query"),
                    (!self.allow_hosts.is_empty(), "http_get"),
                ];
                names.extend(configured.iter().filter(|(given, _)| *given).map(|(_, name)| name.to_string()));
                names.extend(commands.iter().map(|c| c.name.clone()));
                names
            }
        };
        let mut rag = self.rag;
        let mut toolbox = Toolbox::new();
        for name in &names {
            let io = |source| ToolSetupError::Io { tool: name.clone(), source };
            let tool: Arc<dyn Tool> = match name.as_str() {
                "calculator" => Arc::new(Calculator),
                "python" => {
                    let runtime = self.python.as_ref().ok_or(ToolSetupError::Missing {
                        tool: "python",
                        what: "its runtime (temper models pull python-wasi)",
                    })?;
                    let python = Python::load(&runtime.wasm, runtime.cache_dir.as_deref())?;
                    let tool = PythonTool::new(
                        python,
                        self.scratch.clone(),
                        self.root.clone(),
                        runtime.limits.clone(),
                    );
                    Arc::new(tool.map_err(io)?)
                }
                "rag_search" => Arc::new(rag.take().ok_or(ToolSetupError::Missing {
                    tool: "rag_search",
                    what: "a collection of the RAG store to search (--collection)",
                })?),
                "read_file" => Arc::new(ReadFile::new(root(&self.root, "read_file")?).map_err(io)?),
                "list_files" => Arc::new(ListFiles::new(root(&self.root, "list_files")?).map_err(io)?),
                "sql_query" => {
                    let path = self.sql.clone().ok_or(ToolSetupError::Missing {
                        tool: "sql_query",
                        what: "a SQLite file to query (--sql)",
                    })?;
                    Arc::new(SqlQuery::new(path).map_err(io)?)
                }
                "http_get" => {
                    if self.allow_hosts.is_empty() {
                        return Err(ToolSetupError::Missing {
                            tool: "http_get",
                            what: "the hosts it may fetch from (--allow-host); it is off without them",
                        });
                    }
                    Arc::new(HttpGet::new(self.allow_hosts.clone()).map_err(io)?)
                }
                _ => match commands.iter().find(|c| &c.name == name) {
                    Some(spec) => Arc::new(CommandTool::new(spec.clone()).map_err(io)?),
                    None => {
                        let commands = commands.iter().map(|c| c.name.clone()).collect();
                        return Err(ToolSetupError::Unknown { name: name.clone(), commands });
                    }
                },
            };
            toolbox.add(tool)?;
        }
        Ok(toolbox)
    }
}

fn root<'a>(root: &'a Option<PathBuf>, tool: &'static str) -> Result<&'a Path, ToolSetupError> {
    root.as_deref().ok_or(ToolSetupError::Missing { tool, what: "a directory to read inside (--root)" })
}

/// The `[[tools]]` of a TOML file: a tools file, which holds nothing else, or `temper.toml`,
/// which also holds profiles. Their `cwd` is relative to the file's directory, and is that
/// directory when not given, so that a tools file works from wherever Temper runs.
pub fn read_tools_file(path: &Path) -> Result<Vec<CommandToolSpec>, ToolSetupError> {
    let bad = |reason: String| ToolSetupError::ToolsFile { path: path.to_owned(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| bad(e.to_string()))?;
    let tools = table.remove("tools").unwrap_or(toml::Value::Array(Vec::new()));
    let is_config = path.file_name().is_some_and(|name| name == "temper.toml");
    if let Some(other) = table.keys().next().filter(|_| !is_config) {
        return Err(bad(format!("unknown table `{other}`: a tools file holds [[tools]] tables only")));
    }
    let tools: Vec<CommandToolSpec> =
        tools.try_into().map_err(|e: toml::de::Error| bad(format!("[[tools]]: {e}")))?;
    if tools.is_empty() {
        return Err(bad("no [[tools]] table: there is no tool in it".into()));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let tools = tools.into_iter().map(|mut spec| {
        spec.cwd = Some(match spec.cwd.take() {
            Some(cwd) => dir.join(cwd),
            None => dir.to_owned(),
        });
        spec
    });
    Ok(tools.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Toolbox;
    use std::sync::Arc;

    #[test]
    fn the_built_in_tools_fit_in_a_toolbox_with_every_argument_described() {
        let dir = tempfile::tempdir().unwrap();
        rusqlite::Connection::open(dir.path().join("db.sqlite"))
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let tools = Toolbox::new()
            .with(Arc::new(Calculator))
            .unwrap()
            .with(Arc::new(ReadFile::new(dir.path()).unwrap()))
            .unwrap()
            .with(Arc::new(ListFiles::new(dir.path()).unwrap()))
            .unwrap()
            .with(Arc::new(SqlQuery::new(dir.path().join("db.sqlite")).unwrap()))
            .unwrap()
            .with(Arc::new(HttpGet::new(vec!["example.com".into()]).unwrap()))
            .unwrap();
        assert_eq!(tools.names(), ["calculator", "read_file", "list_files", "sql_query", "http_get"]);
        for spec in tools.specs() {
            assert_eq!(spec.parameters["additionalProperties"], false, "{}", spec.name);
            let properties = spec.parameters["properties"].as_object().unwrap();
            assert!(!properties.is_empty(), "{}", spec.name);
            for (name, property) in properties {
                assert!(
                    property["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{}.{name}",
                    spec.name
                );
            }
        }
    }

    #[test]
    fn settings_offer_the_calculator_and_every_tool_they_configure() {
        let dir = tempfile::tempdir().unwrap();
        let settings = ToolSettings { root: Some(dir.path().into()), ..ToolSettings::default() };
        assert_eq!(settings.toolbox(None).unwrap().names(), ["calculator", "read_file", "list_files"]);
        assert_eq!(ToolSettings::default().toolbox(None).unwrap().names(), ["calculator"]);

        let names = ["list_files".to_owned()];
        let settings = ToolSettings { root: Some(dir.path().into()), ..ToolSettings::default() };
        assert_eq!(settings.toolbox(Some(&names)).unwrap().names(), ["list_files"]);
    }

    #[test]
    fn a_tool_without_its_setting_or_with_an_unknown_name_is_an_error() {
        let want =
            |name: &str| ToolSettings::default().toolbox(Some(&[name.to_owned()])).err().unwrap().to_string();
        assert_eq!(want("read_file"), "read_file needs a directory to read inside (--root)");
        assert_eq!(want("sql_query"), "sql_query needs a SQLite file to query (--sql)");
        assert!(want("http_get").starts_with("http_get needs the hosts it may fetch from"));
        assert!(want("rag_search").starts_with("rag_search needs a collection"));
        assert_eq!(want("python"), "python needs its runtime (temper models pull python-wasi)");
        assert_eq!(
            want("shell"),
            "there is no tool `shell`; the built-in tools are calculator, python, rag_search, read_file, list_files, \
             sql_query, http_get"
        );
        let settings = ToolSettings { root: Some("/no/such/dir".into()), ..ToolSettings::default() };
        let err = settings.toolbox(None).err().unwrap().to_string();
        assert!(err.starts_with("read_file: ") && err.contains("/no/such/dir"), "{err}");
    }

    #[tokio::test]
    async fn a_tools_file_runs_its_commands_from_its_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/greet.sh"), "read args; echo \"{\\\"got\\\": $args}\"\n")
            .unwrap();
        let file = dir.path().join("tools.toml");
        let spec = "[[tools]]\nname = \"greet\"\ndescription = \"Echoes its arguments.\"\n\
                    command = [\"sh\", \"bin/greet.sh\"]\ntimeout_seconds = 5\n";
        std::fs::write(&file, spec).unwrap();
        let settings = ToolSettings { tools_file: Some(file.clone()), ..ToolSettings::default() };
        let tools = settings.toolbox(None).unwrap();
        assert_eq!(tools.names(), ["calculator", "greet"]);
        let result = tools.call("greet", r#"{"name": "Ada"}"#).await.unwrap();
        assert_eq!(result, serde_json::json!({"got": {"name": "Ada"}}));

        std::fs::write(&file, "[[tools]]\nname = \"x\"\n").unwrap();
        let err = read_tools_file(&file).err().unwrap().to_string();
        assert!(err.starts_with(&format!("{}: ", file.display())) && err.contains("missing field"), "{err}");
        std::fs::write(&file, "# nothing\n").unwrap();
        let err = read_tools_file(&file).err().unwrap().to_string();
        assert!(err.ends_with("no [[tools]] table: there is no tool in it"), "{err}");
        std::fs::write(&file, format!("[models.m]\nbackend = \"local\"\n{spec}")).unwrap();
        let err = read_tools_file(&file).err().unwrap().to_string();
        assert!(err.ends_with("unknown table `models`: a tools file holds [[tools]] tables only"), "{err}");

        // temper.toml holds profiles besides its tools.
        let config = dir.path().join("temper.toml");
        std::fs::write(&config, format!("[models.m]\nbackend = \"local\"\nmodel = \"x\"\n\n{spec}")).unwrap();
        let tools = read_tools_file(&config).unwrap();
        assert_eq!((tools.len(), tools[0].name.as_str()), (1, "greet"));
    }
}
