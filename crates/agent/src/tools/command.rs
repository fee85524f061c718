//! Command tools: a program the user names becomes a tool, without Rust.
//!
//! A call runs the program (no shell) with the arguments object as JSON on its standard
//! input, and takes the JSON it prints on its standard output as the result. The program
//! runs in a process group of its own; at the time limit, or when the call is dropped, the
//! whole group is killed. (Processes it leaves behind after it exits, with their output
//! closed, are not.)
//!
//! The program gets an environment of its own, not Temper's: only `PATH`, `HOME`, `TMPDIR`,
//! the locale (`LANG`, `LC_ALL`, `LC_CTYPE`) and `TZ`, plus the variables its spec names in
//! `pass_env`, so that API keys in Temper's environment reach no tool unless the user says so.

use std::ffi::OsStr;
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::tool::{clip, Tool, ToolError};

/// The most bytes of standard output taken: the result goes into a prompt.
const MAX_STDOUT_BYTES: usize = 1024 * 1024;
/// The most bytes of the end of standard error kept, for error messages.
const MAX_STDERR_BYTES: usize = 64 * 1024;
/// The lines of standard error an error message quotes.
const STDERR_LINES: usize = 10;
/// The variables of Temper's environment every command gets.
const PASSED_ENV: [&str; 7] = ["PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "TZ"];

/// A tool that runs a program: what the model sees of it and how to run it. It reads from a
/// `[[tools]]` table of a TOML file:
///
/// ```toml
/// [[tools]]
/// name = "weather"
/// description = "The weather forecast for a city."
/// command = ["python3", "weather.py"]
/// timeout_seconds = 10
/// pass_env = ["WEATHER_API_KEY"]
/// [tools.parameters]
/// type = "object"
/// properties.city = { type = "string", description = "The city, e.g. Paris" }
/// required = ["city"]
/// ```
///
/// `parameters` may also be a string of JSON text.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandToolSpec {
    /// The name the model calls it by.
    pub name: String,
    /// What it does and when to use it, for the model.
    pub description: String,
    /// The JSON schema of its arguments object; by default any object.
    #[serde(default = "any_object", deserialize_with = "schema")]
    pub parameters: Value,
    /// The program and its arguments. A relative program path is looked up from `cwd`.
    pub command: Vec<String>,
    /// How long a call may run; 30 s by default.
    #[serde(default = "default_timeout", rename = "timeout_seconds", deserialize_with = "seconds")]
    pub timeout: Duration,
    /// The directory it runs in; Temper's own by default.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// More variables of Temper's environment to give it, by name.
    #[serde(default)]
    pub pass_env: Vec<String>,
}

fn any_object() -> Value {
    json!({ "type": "object" })
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn schema<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(text) => serde_json::from_str(&text)
            .map_err(|e| D::Error::custom(format!("parameters: the string is not JSON: {e}"))),
        value => Ok(value),
    }
}

fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let seconds = f64::deserialize(deserializer)?;
    Duration::try_from_secs_f64(seconds).ok().filter(|timeout| !timeout.is_zero()).ok_or_else(|| {
        D::Error::custom(format!("timeout_seconds: {seconds} is not a positive number of seconds"))
    })
}

/// A program run as a tool; see [`CommandToolSpec`].
#[derive(Clone, Debug)]
pub struct CommandTool {
    spec: CommandToolSpec,
}

impl CommandTool {
    /// The tool `spec` describes; an empty command, a zero time limit, parameters that are not
    /// an object or a `cwd` that is not a directory are errors.
    pub fn new(spec: CommandToolSpec) -> io::Result<Self> {
        let bad =
            |why: String| io::Error::new(io::ErrorKind::InvalidInput, format!("tool `{}`: {why}", spec.name));
        if spec.command.first().is_none_or(String::is_empty) {
            return Err(bad("`command` must name a program, e.g. [\"python3\", \"tool.py\"]".into()));
        }
        if spec.timeout.is_zero() {
            return Err(bad("the time limit is zero".into()));
        }
        if !spec.parameters.is_object() {
            return Err(bad(format!("`parameters` must be a JSON schema object, not {}", spec.parameters)));
        }
        if let Some(cwd) = spec.cwd.as_ref().filter(|cwd| !cwd.is_dir()) {
            return Err(bad(format!("`cwd` {} is not a directory", cwd.display())));
        }
        Ok(CommandTool { spec })
    }

    /// Runs the program on `input` until it exits, or the time limit.
    async fn run(&self, input: Vec<u8>) -> Result<(ExitStatus, Vec<u8>, Vec<u8>), ToolError> {
        let spec = &self.spec;
        let mut command = tokio::process::Command::new(&spec.command[0]);
        command
            .args(&spec.command[1..])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        for name in PASSED_ENV.iter().copied().chain(spec.pass_env.iter().map(String::as_str)) {
            if let Some(value) = std::env::var_os(name) {
                command.env(OsStr::new(name), value);
            }
        }
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .spawn()
            .map_err(|e| ToolError::Failed(format!("`{}` did not start: {e}", spec.command[0])))?;
        // Declared after the child, so dropped before it: the group dies while its leader is
        // still unreaped.
        let mut killer = GroupKiller(child.id().and_then(|id| libc::pid_t::try_from(id).ok()));
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ToolError::Failed("the command's pipes were not opened".into()));
        };
        let run = async {
            let write = async move {
                // A program may exit without reading its input: a closed pipe is no error.
                let _ = stdin.write_all(&input).await;
                drop(stdin);
                Ok(())
            };
            let ((), stdout, stderr) = tokio::try_join!(
                write,
                read_pipe(stdout, MAX_STDOUT_BYTES, Keep::Whole),
                read_pipe(stderr, MAX_STDERR_BYTES, Keep::Tail)
            )?;
            let status =
                child.wait().await.map_err(|e| ToolError::Failed(format!("waiting for the command: {e}")))?;
            killer.0 = None;
            Ok((status, stdout, stderr))
        };
        tokio::time::timeout(spec.timeout, run).await.map_err(|_| ToolError::TimedOut(spec.timeout))?
    }
}

/// Kills a process group when dropped while armed: at a time-out, or when the call is
/// dropped. It is disarmed once the group's leader is reaped, since its id may then be reused.
struct GroupKiller(Option<libc::pid_t>);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            // SAFETY: killpg takes two integers and touches no memory. The group is the one
            // the command leads: its leader is not reaped yet, so the id is still its own.
            unsafe {
                libc::killpg(group, libc::SIGKILL);
            }
        }
    }
}

/// Which part of a pipe's output to keep.
#[derive(Clone, Copy)]
enum Keep {
    /// All of it, or an error past the limit: a result is whole or nothing.
    Whole,
    /// Its last bytes: the end of an error log says the most.
    Tail,
}

/// `pipe` read to its end (so that the program never blocks on a full pipe), kept as `keep` says.
async fn read_pipe(mut pipe: impl AsyncRead + Unpin, max: usize, keep: Keep) -> Result<Vec<u8>, ToolError> {
    let mut kept = Vec::new();
    let mut buffer = [0; 8192];
    loop {
        let n = pipe
            .read(&mut buffer)
            .await
            .map_err(|e| ToolError::Failed(format!("reading its output: {e}")))?;
        if n == 0 {
            return Ok(kept);
        }
        kept.extend_from_slice(&buffer[..n]);
        if kept.len() > max {
            match keep {
                Keep::Whole => {
                    return Err(ToolError::Failed(format!("it printed more than {} KiB", max / 1024)))
                }
                Keep::Tail => drop(kept.drain(..kept.len() - max)),
            }
        }
    }
}

/// The last lines of standard error, for an error message.
fn last_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "it wrote nothing to stderr".into();
    }
    let last = &lines[lines.len().saturating_sub(STDERR_LINES)..];
    format!("stderr ends with:\n{}", clip(&last.join("\n"), 2_000))
}

#[async_trait]
impl Tool for CommandTool {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn description(&self) -> &str {
        &self.spec.description
    }

    fn parameters(&self) -> Value {
        self.spec.parameters.clone()
    }

    async fn call(&self, arguments: Value) -> Result<Value, ToolError> {
        let name = &self.spec.name;
        let (status, stdout, stderr) =
            self.run(arguments.to_string().into_bytes()).await.map_err(|e| match e {
                ToolError::Failed(why) => ToolError::Failed(format!("tool `{name}`: {why}")),
                other => other,
            })?;
        if !status.success() {
            return Err(ToolError::Failed(format!(
                "tool `{name}` failed ({status}); {}",
                last_lines(&stderr)
            )));
        }
        if stdout.iter().all(u8::is_ascii_whitespace) {
            return Err(ToolError::Failed(format!(
                "tool `{name}` printed nothing; a command tool prints its result as JSON"
            )));
        }
        serde_json::from_slice(&stdout).map_err(|e| {
            ToolError::Failed(format!(
                "tool `{name}` printed something that is not JSON ({e}): {}",
                clip(&String::from_utf8_lossy(&stdout), 200)
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn spec(script: &str) -> CommandToolSpec {
        CommandToolSpec {
            name: "script".into(),
            description: "A test script.".into(),
            parameters: any_object(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            timeout: Duration::from_secs(10),
            cwd: None,
            pass_env: Vec::new(),
        }
    }

    async fn run(spec: CommandToolSpec, arguments: Value) -> Result<Value, ToolError> {
        CommandTool::new(spec).unwrap().call(arguments).await
    }

    #[tokio::test]
    async fn the_arguments_go_in_on_stdin_and_the_json_printed_comes_back() {
        let arguments = json!({"text": "héllo", "n": [1, 2]});
        assert_eq!(run(spec("cat"), arguments.clone()).await.unwrap(), arguments);
        // A program that ignores its input still works.
        assert_eq!(run(spec("echo '{\"ok\": true}'"), json!({})).await.unwrap(), json!({"ok": true}));
    }

    #[tokio::test]
    async fn output_that_is_not_json_or_a_failure_is_an_error() {
        let err = run(spec("echo hello world"), json!({})).await.unwrap_err();
        assert!(
            matches!(&err, ToolError::Failed(m) if m.starts_with("tool `script` printed something that is not JSON")
                && m.ends_with("hello world\n")),
            "{err}"
        );
        let err = run(spec("true"), json!({})).await.unwrap_err();
        assert!(matches!(&err, ToolError::Failed(m) if m.contains("printed nothing")), "{err}");
        let err =
            run(spec("echo first >&2; echo 'it broke' >&2; echo '{}'; exit 3"), json!({})).await.unwrap_err();
        assert_eq!(
            err,
            ToolError::Failed(
                "tool `script` failed (exit status: 3); stderr ends with:\nfirst\nit broke".into()
            )
        );
        let err = run(spec("yes"), json!({})).await.unwrap_err();
        assert_eq!(err, ToolError::Failed("tool `script`: it printed more than 1024 KiB".into()));
        let mut missing = spec("");
        missing.command = vec!["/nonexistent/program".into()];
        let err = run(missing, json!({})).await.unwrap_err();
        assert!(
            matches!(&err, ToolError::Failed(m) if m.contains("`/nonexistent/program` did not start")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_command_past_its_time_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let mut slow = spec("sleep 60 & echo $! > sleeper.pid; wait");
        slow.timeout = Duration::from_secs(1);
        slow.cwd = Some(dir.path().to_owned());
        let started = Instant::now();
        assert_eq!(run(slow, json!({})).await.unwrap_err(), ToolError::TimedOut(Duration::from_secs(1)));
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

        let sleeper = std::fs::read_to_string(dir.path().join("sleeper.pid")).unwrap();
        let stat = format!("/proc/{}/stat", sleeper.trim());
        // Killed, it is gone or a zombie waiting for whoever adopted it.
        let dead = || {
            std::fs::read_to_string(&stat)
                .map_or(true, |s| s.rsplit(')').next().unwrap().trim().starts_with('Z'))
        };
        let waited = Instant::now();
        while !dead() && waited.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(dead(), "the child {} outlived the time limit", sleeper.trim());
    }

    #[tokio::test]
    async fn the_command_sees_only_the_environment_it_is_given() {
        // Variables cargo gives every test process (setting some here would race the other
        // tests' process spawns): one stands for a key Temper holds, one for a key a tool needs.
        assert!(std::env::var("CARGO_PKG_NAME").is_ok() && std::env::var("CARGO_MANIFEST_DIR").is_ok());
        let script = r#"printf '{"key": "%s", "passed": "%s", "path": "%s"}' \
            "${CARGO_MANIFEST_DIR-unset}" "${CARGO_PKG_NAME-unset}" "${PATH:+set}""#;
        let seen = run(spec(script), json!({})).await.unwrap();
        assert_eq!(seen, json!({"key": "unset", "passed": "unset", "path": "set"}));
        let mut passing = spec(script);
        passing.pass_env = vec!["CARGO_PKG_NAME".into()];
        let seen = run(passing, json!({})).await.unwrap();
        assert_eq!(seen, json!({"key": "unset", "passed": "temper-agent", "path": "set"}));
    }

    #[test]
    fn a_spec_reads_from_a_tools_table_of_toml() {
        #[derive(Deserialize)]
        struct File {
            tools: Vec<CommandToolSpec>,
        }
        let file: File = toml::from_str(
            r#"
            [[tools]]
            name = "weather"
            description = "The forecast."
            command = ["python3", "weather.py"]
            timeout_seconds = 2.5
            cwd = "tools"
            pass_env = ["WEATHER_KEY"]
            [tools.parameters]
            type = "object"
            properties.city = { type = "string" }

            [[tools]]
            name = "echo"
            description = "Echoes."
            command = ["cat"]
            parameters = '{"type": "object", "required": ["text"]}'

            [[tools]]
            name = "bare"
            description = "Anything."
            command = ["true"]
            "#,
        )
        .unwrap();
        let [weather, echo, bare] = &file.tools[..] else { panic!("{:?}", file.tools) };
        assert_eq!(weather.name, "weather");
        assert_eq!(weather.command, ["python3", "weather.py"]);
        assert_eq!(weather.timeout, Duration::from_millis(2_500));
        assert_eq!(weather.cwd, Some(PathBuf::from("tools")));
        assert_eq!(weather.pass_env, ["WEATHER_KEY"]);
        assert_eq!(weather.parameters, json!({"type": "object", "properties": {"city": {"type": "string"}}}));
        assert_eq!(echo.parameters, json!({"type": "object", "required": ["text"]}));
        assert_eq!(bare.parameters, json!({"type": "object"}));
        assert_eq!(bare.timeout, Duration::from_secs(30));

        for (bad, why) in [
            ("timeout_seconds = 0", "not a positive number of seconds"),
            ("parameters = '{oops'", "the string is not JSON"),
            ("shell = true", "unknown field `shell`"),
        ] {
            let text = format!("name = \"x\"\ndescription = \"\"\ncommand = [\"true\"]\n{bad}\n");
            let err = toml::from_str::<CommandToolSpec>(&text).unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn a_spec_that_cannot_run_is_refused_at_construction() {
        let mut empty = spec("");
        empty.command.clear();
        assert!(CommandTool::new(empty).unwrap_err().to_string().contains("`command` must name a program"));
        let mut list = spec("true");
        list.parameters = json!(["not", "an", "object"]);
        assert!(CommandTool::new(list).unwrap_err().to_string().contains("`parameters` must be"));
        let mut instant = spec("true");
        instant.timeout = Duration::ZERO;
        assert!(CommandTool::new(instant).unwrap_err().to_string().contains("the time limit is zero"));
        let mut nowhere = spec("true");
        nowhere.cwd = Some("/nonexistent/dir".into());
        assert!(CommandTool::new(nowhere).unwrap_err().to_string().contains("is not a directory"));
    }
}
