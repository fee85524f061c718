//! The sandbox against code that tries to get out of it or to exhaust the machine, on the real
//! CPython WASI runtime of the store (`temper models pull python-wasi`).

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use temper_sandbox::{Exit, Limits, Mounts, Python, Run};

fn python() -> Option<&'static Python> {
    static PYTHON: OnceLock<Option<Python>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let wasm = temper_testkit::installed(temper_models::PYTHON_RUNTIME)?;
            let cache = temper_testkit::store().root().join("compiled");
            Some(Python::load(&wasm, Some(&cache)).expect("loading the runtime"))
        })
        .as_ref()
}

fn run_in(scratch: &Path, code: &str, limits: &Limits) -> Option<Run> {
    Some(python()?.run(code, &Mounts::scratch(scratch), limits).unwrap())
}

fn run(code: &str) -> Option<Run> {
    let scratch = tempfile::tempdir().unwrap();
    run_in(scratch.path(), code, &Limits::default())
}

#[test]
fn code_runs_and_returns_output_the_last_value_and_its_files() {
    let Some(run) = run("import math\nprint('hi')\nopen('out.txt', 'w').write('x' * 5)\nmath.factorial(25)")
    else {
        return;
    };
    assert_eq!(run.exit, Exit::Finished, "{}", run.stderr);
    assert_eq!(run.stdout, "hi\n");
    assert_eq!(run.value.as_deref(), Some("15511210043330985984000000"));
    assert_eq!(run.files.len(), 1);
    assert_eq!((run.files[0].path.as_str(), run.files[0].bytes), ("out.txt", 5));
}

#[test]
fn an_exception_shows_the_users_code_in_its_traceback() {
    let Some(run) = run("x = 1\ny = x / 0") else { return };
    assert_eq!(run.exit, Exit::Failed(1));
    assert!(run.stderr.contains("line 2"), "{}", run.stderr);
    assert!(run.stderr.contains("y = x / 0"), "{}", run.stderr);
    assert!(run.stderr.trim_end().ends_with("ZeroDivisionError: division by zero"), "{}", run.stderr);
    assert!(!run.stderr.contains("driver"), "{}", run.stderr);
}

#[test]
fn files_persist_in_the_scratch_directory_between_runs() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(first) = run_in(scratch.path(), "open('n', 'w').write('41')", &Limits::default()) else {
        return;
    };
    assert_eq!(first.exit, Exit::Finished);
    let second = run_in(scratch.path(), "int(open('n').read()) + 1", &Limits::default()).unwrap();
    assert_eq!(second.value.as_deref(), Some("42"));
    assert!(second.files.is_empty(), "nothing was written: {:?}", second.files);
}

#[test]
fn the_network_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!("import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)");
    let Some(run) = run(&code) else { return };
    assert_eq!(run.exit, Exit::Failed(1), "{}", run.stderr);
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "the guest connected");
}

#[test]
fn host_files_are_out_of_reach() {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let temper_home = temper_testkit::store().root().to_path_buf();
    for path in ["/etc/passwd".to_owned(), home, temper_home.display().to_string(), "../".into(), "/".into()]
    {
        let code =
            format!("import os\np = {path:?}\nprint(os.listdir(p) if os.path.isdir(p) else open(p).read())");
        let Some(run) = run(&code) else { return };
        assert_eq!(run.exit, Exit::Failed(1), "{path}: {}", run.stdout);
        assert!(run.stdout.is_empty(), "{path}: {}", run.stdout);
    }
}

#[test]
fn no_environment_variable_is_passed_in() {
    std::env::set_var("TEMPER_TEST_SECRET_API_KEY", "sk-do-not-leak");
    let Some(run) = run("import os\ndict(os.environ)") else { return };
    assert_eq!(run.value.as_deref(), Some("{}"));
}

#[test]
fn writes_outside_the_scratch_directory_fail() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("pwned");
    for path in [target.display().to_string(), "../pwned".into(), "/pwned".into(), "/data/pwned".into()] {
        let Some(run) = run(&format!("open({path:?}, 'w').write('x')")) else { return };
        assert_eq!(run.exit, Exit::Failed(1), "{path}");
    }
    assert!(!target.exists());
}

#[test]
fn a_symlink_out_of_the_scratch_directory_is_not_followed() {
    let scratch = tempfile::tempdir().unwrap();
    let code = "import os\nos.symlink('/etc/passwd', 'link')\nopen('link').read()";
    let Some(run) = run_in(scratch.path(), code, &Limits::default()) else { return };
    assert_eq!(run.exit, Exit::Failed(1), "{:?}", run.value);
    assert!(run.value.is_none());
}

#[test]
fn the_input_directory_is_read_only() {
    let scratch = tempfile::tempdir().unwrap();
    let input = tempfile::tempdir().unwrap();
    std::fs::write(input.path().join("a.csv"), "x\n1\n2\n").unwrap();
    let mounts = Mounts { scratch: scratch.path().to_owned(), input: Some(input.path().to_owned()) };
    let Some(python) = python() else { return };
    let read = python.run("len(open('/data/a.csv').read().split())", &mounts, &Limits::default()).unwrap();
    assert_eq!(read.value.as_deref(), Some("3"));
    let write = python.run("open('/data/a.csv', 'w').write('gone')", &mounts, &Limits::default()).unwrap();
    assert_eq!(write.exit, Exit::Failed(1));
    assert_eq!(std::fs::read_to_string(input.path().join("a.csv")).unwrap(), "x\n1\n2\n");
}

#[test]
fn an_infinite_loop_is_stopped_at_the_time_limit() {
    let scratch = tempfile::tempdir().unwrap();
    let limits = Limits { time: Duration::from_millis(500), ..Limits::default() };
    let Some(run) = run_in(scratch.path(), "while True:\n    pass", &limits) else { return };
    assert_eq!(run.exit, Exit::TimedOut);
    assert!(run.duration < Duration::from_secs(5), "{:?}", run.duration);
}

#[test]
fn a_memory_bomb_is_stopped_at_the_memory_limit() {
    let scratch = tempfile::tempdir().unwrap();
    let limits = Limits { memory_bytes: 64 << 20, ..Limits::default() };
    for code in ["x = 'a' * (10 ** 9)", "x = []\nwhile True:\n    x.append(' ' * 10 ** 6)"] {
        let Some(run) = run_in(scratch.path(), code, &limits) else { return };
        assert_eq!(run.exit, Exit::MemoryLimit, "{code}: {}", run.stderr);
    }
}

#[test]
fn processes_and_threads_cannot_be_started() {
    for code in [
        "import os\nwhile True:\n    os.fork()",
        "import subprocess\nsubprocess.run(['ls'])",
        "import threading\nfor _ in range(10 ** 6):\n    threading.Thread(target=lambda: None).start()",
    ] {
        let Some(run) = run(code) else { return };
        assert_eq!(run.exit, Exit::Failed(1), "{code}: {}", run.stderr);
    }
}

#[test]
fn a_flood_of_output_is_stopped_at_the_output_limit() {
    let Some(run) = run("import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1 << 20))") else {
        return;
    };
    assert_eq!(run.exit, Exit::OutputLimit, "{}", run.stderr);
    assert!(run.stdout.len() <= Limits::default().output_bytes);
}

#[test]
fn a_deep_recursion_ends_in_an_error_not_a_crash() {
    let Some(run) = run("def f(n):\n    return f(n + 1)\nf(0)") else { return };
    assert_eq!(run.exit, Exit::Failed(1));
    assert!(run.stderr.contains("RecursionError"), "{}", run.stderr);
    let Some(deeper) = run_deeper() else { return };
    // Either the interpreter's stack or its memory runs out first; both are a clean end.
    assert!(
        matches!(deeper.exit, Exit::StackOverflow | Exit::MemoryLimit | Exit::Failed(1)),
        "{:?}: {}",
        deeper.exit,
        deeper.stderr
    );
}

/// With the recursion limit raised, the interpreter's own stack is what overflows.
fn run_deeper() -> Option<Run> {
    run("import sys\nsys.setrecursionlimit(10 ** 7)\ndef f(n):\n    return f(n + 1)\nf(0)")
}
