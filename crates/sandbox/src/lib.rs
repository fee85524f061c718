#![doc = include_str!("../README.md")]

mod files;
mod output;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use std::hash::{Hash, Hasher};
use wasmtime::{Config, Engine, Linker, Module, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use output::CappedOutput;

pub use files::FileWritten;

/// The driver that runs the code: see its comments.
const DRIVER: &str = include_str!("driver.py");

/// How often the engine's epoch advances: the granularity of the time limit.
const TICK: Duration = Duration::from_millis(10);

/// What a run may use.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall time, from the interpreter's start to its end (CPU time is at most this: the
    /// guest has one thread).
    pub time: Duration,
    /// The guest's linear memory.
    pub memory_bytes: usize,
    /// Bytes of stdout, and again of stderr.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { time: Duration::from_secs(10), memory_bytes: 256 << 20, output_bytes: 1 << 20 }
    }
}

/// The directories a run sees.
#[derive(Debug, Clone)]
pub struct Mounts {
    /// Seen as `/scratch`, read-write; the code's working directory.
    pub scratch: PathBuf,
    /// Seen as `/data`, read-only.
    pub input: Option<PathBuf>,
}

impl Mounts {
    /// A scratch directory and no input.
    pub fn scratch(dir: &Path) -> Self {
        Mounts { scratch: dir.to_owned(), input: None }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The code ran to its end (or called `sys.exit(0)`).
    Finished,
    /// The code raised an exception (its traceback is in stderr) or exited with this status.
    Failed(i32),
    /// It passed the wall time limit and was stopped.
    TimedOut,
    /// It printed more than the output limit and was stopped.
    OutputLimit,
    /// It used more memory than the limit: Python raised `MemoryError`, or the interpreter
    /// could not go on.
    MemoryLimit,
    /// The interpreter's stack overflowed (a recursion deeper than the stack).
    StackOverflow,
    /// The interpreter itself failed (a trap: a bug in the runtime, not in the code).
    Crashed(String),
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Run {
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
    /// `repr()` of the last expression, when the code ends with one whose value is not `None`.
    pub value: Option<String>,
    /// The files of the scratch directory this run created or changed.
    pub files: Vec<FileWritten>,
    pub duration: Duration,
}

/// A sandbox that could not be set up (a problem of the host, not of the code).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a usable CPython WASI module: {reason}")]
    Module { path: PathBuf, reason: String },
    #[error("the sandbox could not start: {0}")]
    Setup(String),
}

/// CPython compiled once for this machine, ready to run code any number of times (each run a
/// fresh instance: nothing carries over but the files in the scratch directory).
#[derive(Clone)]
pub struct Python {
    engine: Engine,
    module: Module,
    _ticker: Arc<Ticker>,
}

impl Python {
    /// Compiles `wasm` (a CPython WASI build with its standard library embedded), or loads
    /// the machine code compiled before from `cache_dir`: compiling takes seconds, loading a
    /// few milliseconds.
    pub fn load(wasm: &Path, cache_dir: Option<&Path>) -> Result<Self, SandboxError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| SandboxError::Setup(e.to_string()))?;
        let module = match cache_dir {
            Some(dir) => cached_module(&engine, wasm, dir)?,
            None => compile(&engine, wasm)?,
        };
        let ticker = Ticker::start(&engine);
        Ok(Python { engine, module, _ticker: Arc::new(ticker) })
    }

    /// Runs `code` in a fresh interpreter. Blocking: call it off an async runtime's workers.
    pub fn run(&self, code: &str, mounts: &Mounts, limits: &Limits) -> Result<Run, SandboxError> {
        let start = Instant::now();
        let before = files::snapshot(&mounts.scratch);
        let private = tempfile::tempdir()
            .map_err(|source| SandboxError::Io { path: "temporary directory".into(), source })?;
        let stdout = CappedOutput::new(limits.output_bytes);
        let stderr = CappedOutput::new(limits.output_bytes);
        let mut wasi = WasiCtxBuilder::new();
        wasi.args(&["python", "-c", DRIVER])
            .stdin(MemoryInputPipe::new(code.to_owned()))
            .stdout(stdout.clone())
            .stderr(stderr.clone());
        let setup = |e: wasmtime::Error| SandboxError::Setup(e.to_string());
        wasi.preopened_dir(&mounts.scratch, "/scratch", FsPerms::ReadWrite).map_err(setup)?;
        wasi.preopened_dir(private.path(), "/.temper", FsPerms::ReadWrite).map_err(setup)?;
        if let Some(input) = &mounts.input {
            wasi.preopened_dir(input, "/data", FsPerms::ReadOnly).map_err(setup)?;
        }
        let limiter = StoreLimitsBuilder::new().memory_size(limits.memory_bytes).instances(1).build();
        let mut store = Store::new(&self.engine, Guest { wasi: wasi.build_p1(), limiter });
        store.limiter(|guest| &mut guest.limiter);
        store.set_epoch_deadline(ticks(limits.time));
        store.epoch_deadline_trap();

        let mut linker: Linker<Guest> = Linker::new(&self.engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |guest| &mut guest.wasi).map_err(setup)?;
        let outcome = linker
            .instantiate(&mut store, &self.module)
            .and_then(|instance| instance.get_typed_func::<(), ()>(&mut store, "_start"))
            .and_then(|start| start.call(&mut store, ()));
        drop(store);

        let flooded = stdout.overflowed() || stderr.overflowed();
        let (stdout, stderr) = (stdout.text(), stderr.text());
        let exit = match outcome {
            // A flood ends the run however the code took the failing writes.
            _ if flooded => Exit::OutputLimit,
            Ok(()) => Exit::Finished,
            Err(error) => exit_of(&error, &stderr),
        };
        let value = std::fs::read_to_string(private.path().join("value")).ok();
        let files = files::written(&mounts.scratch, &before);
        Ok(Run { exit, stdout, stderr, value, files, duration: start.elapsed() })
    }
}

/// What a run's store holds.
struct Guest {
    wasi: WasiP1Ctx,
    limiter: StoreLimits,
}

/// How an error from the guest ended its run.
fn exit_of(error: &wasmtime::Error, stderr: &str) -> Exit {
    let out_of_memory =
        stderr.trim_end().ends_with("MemoryError") || stderr.contains("Cannot allocate memory");
    if let Some(I32Exit(status)) = error.downcast_ref::<I32Exit>() {
        return match status {
            0 => Exit::Finished,
            _ if out_of_memory => Exit::MemoryLimit,
            _ => Exit::Failed(*status),
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Exit::TimedOut,
        Some(Trap::StackOverflow) => Exit::StackOverflow,
        // Where CPython cannot raise MemoryError it aborts, which is a trap in WASI.
        Some(Trap::UnreachableCodeReached) if out_of_memory => Exit::MemoryLimit,
        _ => {
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            Exit::Crashed(last.map(str::to_owned).unwrap_or_else(|| error.to_string()))
        }
    }
}

fn ticks(time: Duration) -> u64 {
    (time.as_millis() / TICK.as_millis()).max(1) as u64 + 1
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io { path: path.to_owned(), source }
}

fn compile(engine: &Engine, wasm: &Path) -> Result<Module, SandboxError> {
    let bytes = std::fs::read(wasm).map_err(io_at(wasm))?;
    Module::new(engine, &bytes)
        .map_err(|e| SandboxError::Module { path: wasm.to_owned(), reason: e.to_string() })
}

/// The module from `dir`, compiled and written there first if it is not yet: named after the
/// wasm file's size and time and the engine's compatibility hash, so a new wasm or wasmtime
/// never loads an old compilation.
fn cached_module(engine: &Engine, wasm: &Path, dir: &Path) -> Result<Module, SandboxError> {
    let meta = std::fs::metadata(wasm).map_err(io_at(wasm))?;
    let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
    // Only this binary reads the cache, so the std hasher's stability within one build is enough.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    (meta.len(), modified.as_nanos()).hash(&mut hasher);
    let key = format!("{:016x}", hasher.finish());
    let path = dir.join(format!("python-{key}.cwasm"));
    if path.exists() {
        // SAFETY: the file was written by `Module::serialize` below, for an engine with this
        // compatibility hash, into the user's own Temper home, and renamed into place only
        // once complete; wasmtime checks its header against the engine again.
        if let Ok(module) = unsafe { Module::deserialize_file(engine, &path) } {
            return Ok(module);
        }
    }
    let module = compile(engine, wasm)?;
    let bytes = module.serialize().map_err(|e| SandboxError::Setup(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    remove_older_compilations(dir);
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io_at(dir))?;
    std::io::Write::write_all(&mut temp, &bytes).map_err(io_at(&path))?;
    temp.persist(&path).map_err(|e| SandboxError::Io { path: path.clone(), source: e.error })?;
    Ok(module)
}

/// Removes the compilations of other wasm files or engines: each is tens of megabytes.
fn remove_older_compilations(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("python-") && name.ends_with(".cwasm") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Advances the engine's epoch every [`TICK`] for as long as the engine lives.
struct Ticker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Ticker {
    fn start(engine: &Engine) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak = engine.weak();
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("sandbox-epoch".into())
            .spawn(move || {
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawning the sandbox's epoch thread");
        Ticker { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
