//! `python`: model-written Python, run in the sandbox of `temper-sandbox` (CPython compiled to
//! WASI): no network, no files but its scratch directory and the user's read-only input
//! directory, and limits on time, memory and output. Each call is a fresh interpreter; files in
//! the scratch directory carry over from one call to the next.

use std::io;
use std::path::PathBuf;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use temper_sandbox::{Exit, Limits, Mounts, Python, Run};

use crate::tool::{arguments, schema_of, Tool, ToolError};

/// The most characters of a traceback, or of the output before it, put in an error.
const MAX_ERROR_CHARS: usize = 2_000;

/// Runs Python code in the sandbox.
pub struct PythonTool {
    python: Python,
    mounts: Mounts,
    limits: Limits,
    /// The scratch directory when it is temporary, removed with the tool.
    _temporary: Option<tempfile::TempDir>,
}

impl PythonTool {
    /// The tool over a loaded runtime. `scratch` is kept (created if missing); without it the
    /// scratch directory is a temporary one that lives as long as the tool. `input`, if given,
    /// is seen read-only as `/data`.
    pub fn new(
        python: Python,
        scratch: Option<PathBuf>,
        input: Option<PathBuf>,
        limits: Limits,
    ) -> io::Result<Self> {
        let (scratch, temporary) = match scratch {
            Some(dir) => {
                std::fs::create_dir_all(&dir)?;
                (dir, None)
            }
            None => {
                let dir = tempfile::Builder::new().prefix("temper-python-").tempdir()?;
                (dir.path().to_owned(), Some(dir))
            }
        };
        if let Some(input) = &input {
            if !input.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{}: not a directory", input.display()),
                ));
            }
        }
        Ok(PythonTool { python, mounts: Mounts { scratch, input }, limits, _temporary: temporary })
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Arguments {
    /// Python 3.12 code. The value of a last bare expression is returned, as in a notebook,
    /// e.g. `sum(range(101))`; `print` output is returned too.
    // Bounded, so that a small model decoding under the schema must close the string.
    #[schemars(length(max = 4000))]
    code: String,
}

#[async_trait]
impl Tool for PythonTool {
    fn name(&self) -> &str {
        "python"
    }

    fn description(&self) -> &str {
        "Runs Python 3.12 code (standard library only, no network) and returns what it printed \
         and the value of its last expression. Use it for exact arithmetic and to compute over \
         data. Input files are read-only under /data; write files in the working directory, \
         where they stay for later calls."
    }

    fn parameters(&self) -> Value {
        schema_of::<Arguments>()
    }

    async fn call(&self, value: Value) -> Result<Value, ToolError> {
        let Arguments { code } = arguments(value)?;
        if code.trim().is_empty() {
            return Err(ToolError::Arguments("the code is empty".into()));
        }
        let (python, mounts, limits) = (self.python.clone(), self.mounts.clone(), self.limits.clone());
        let run = tokio::task::spawn_blocking(move || python.run(&code, &mounts, &limits))
            .await
            .map_err(|e| ToolError::Failed(format!("python stopped: {e}")))?
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        outcome(run, &self.limits)
    }
}

/// The tool's result: the run's output and value, or an error that says what stopped it.
fn outcome(run: Run, limits: &Limits) -> Result<Value, ToolError> {
    let failed = |what: String| Err(ToolError::Failed(what));
    match run.exit {
        Exit::Finished => Ok(json!({
            "stdout": run.stdout,
            "value": run.value,
            "stderr": run.stderr,
            "files": run.files,
        })),
        Exit::Failed(status) => {
            let mut message = match run.stderr.trim() {
                "" => format!("the code exited with status {status}"),
                traceback => format!("the code failed:\n{}", tail(traceback)),
            };
            if !run.stdout.trim().is_empty() {
                message += &format!("\nIt printed before that:\n{}", tail(run.stdout.trim_end()));
            }
            failed(message)
        }
        Exit::TimedOut => Err(ToolError::TimedOut(limits.time)),
        Exit::OutputLimit => failed(format!(
            "the code printed more than {} KiB and was stopped; print less (a count, a summary, the first rows)",
            limits.output_bytes >> 10
        )),
        Exit::MemoryLimit => failed(format!(
            "the code used more than {} MiB of memory and was stopped",
            limits.memory_bytes >> 20
        )),
        Exit::StackOverflow => {
            failed("the code recursed deeper than the interpreter's stack; use a loop instead".into())
        }
        Exit::Crashed(reason) => failed(format!("the Python interpreter stopped: {reason}")),
    }
}

/// The end of `text`, where a traceback's exception and the latest output are.
fn tail(text: &str) -> String {
    match text.chars().count().checked_sub(MAX_ERROR_CHARS) {
        Some(skip) if skip > 0 => format!("…{}", text.chars().skip(skip).collect::<String>()),
        _ => text.to_owned(),
    }
}
