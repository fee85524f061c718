//! `hf:OWNER/REPO[:FILE_OR_QUANT]`: a GGUF file of a Hugging Face repository, found in the
//! user's Hugging Face cache (used in place) or listed through the hub's API and downloaded.

use std::fs;
use std::path::{Path, PathBuf};

use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde::Deserialize;

use super::download::reqwest_reason;
use super::Sources;
use crate::error::StoreError;

/// The revision pulled: the hub's default branch.
pub(crate) const REVISION: &str = "main";
/// The quantization picked when none is named: small, and good enough for most models.
const DEFAULT_QUANT: &str = "Q4_K_M";

/// `OWNER/REPO` and, optionally, a file name or a quantization of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HfSpec {
    pub owner: String,
    pub repo: String,
    pub want: Option<String>,
}

impl HfSpec {
    /// Parses what follows `hf:`.
    pub(crate) fn parse(text: &str) -> Result<HfSpec, StoreError> {
        let bad = |reason: &str| StoreError::BadSourceName {
            name: format!("hf:{text}"),
            reason: format!("{reason}; write hf:OWNER/REPO, hf:OWNER/REPO:QUANT or hf:OWNER/REPO:FILE.gguf"),
        };
        let (id, want) = match text.split_once(':') {
            Some((id, want)) if want.trim().is_empty() => {
                return Err(bad(&format!("nothing follows `{id}:`")))
            }
            Some((id, want)) => (id, Some(want.to_owned())),
            None => (text, None),
        };
        let name_ok = |part: &str| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        match id.split_once('/') {
            Some((owner, repo)) if name_ok(owner) && name_ok(repo) => {
                Ok(HfSpec { owner: owner.to_owned(), repo: repo.to_owned(), want })
            }
            _ => Err(bad(&format!("`{id}` is not OWNER/REPO (letters, digits, `-`, `_`, `.`)"))),
        }
    }

    pub(crate) fn repo_id(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }
}

/// A file of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepoFile {
    /// Its path in the repository.
    pub path: String,
    pub size: Option<u64>,
    /// The SHA-256 the hub keeps for files stored with LFS (every GGUF of any size).
    pub sha256: Option<String>,
}

impl RepoFile {
    fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Why a repository's files hold no file fitting what was asked.
#[derive(Debug)]
pub(crate) enum NoPick {
    NoGguf,
    NotFound { available: Vec<String> },
    Ambiguous { matches: Vec<String> },
}

/// The GGUF file of `files` that `want` names (a file name, or a quantization such as `Q4_K_M`,
/// case-insensitively), or by default the Q4_K_M file, else the smallest; and why it was picked.
pub(crate) fn pick<'a>(files: &'a [RepoFile], want: Option<&str>) -> Result<(&'a RepoFile, String), NoPick> {
    let ggufs: Vec<&RepoFile> =
        files.iter().filter(|f| f.path.to_ascii_lowercase().ends_with(".gguf")).collect();
    if ggufs.is_empty() {
        return Err(NoPick::NoGguf);
    }
    let names = || ggufs.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
    let Some(want) = want else {
        if let Some(file) = ggufs.iter().find(|f| has_quant(f.name(), DEFAULT_QUANT)) {
            return Ok((file, format!("{DEFAULT_QUANT}, the default quantization")));
        }
        let smallest = ggufs.iter().min_by_key(|f| f.size.unwrap_or(u64::MAX)).expect("not empty");
        return Ok((smallest, format!("the smallest GGUF file; the repository has no {DEFAULT_QUANT}")));
    };
    if let Some(file) = ggufs.iter().find(|f| f.path == want || f.name() == want) {
        return Ok((file, "the file named".to_owned()));
    }
    let matches: Vec<&&RepoFile> = ggufs.iter().filter(|f| has_quant(f.name(), want)).collect();
    match matches.as_slice() {
        [only] => Ok((only, format!("quantization {want}"))),
        [] => Err(NoPick::NotFound { available: names() }),
        many => Err(NoPick::Ambiguous { matches: many.iter().map(|f| f.path.clone()).collect() }),
    }
}

/// Whether file name `name` is of quantization `quant`: one of its `-`/`.`-separated words is it
/// (`Qwen2.5-0.5B-Instruct-Q4_K_M.gguf`, `model.q4_k_m.gguf`), so `Q4_K` is not `Q4_K_M`.
fn has_quant(name: &str, quant: &str) -> bool {
    let stem = name.len().checked_sub(".gguf".len()).map_or(name, |end| &name[..end]);
    stem.split(['-', '.']).any(|word| word.eq_ignore_ascii_case(quant))
}

/// The error for a failed pick in `repo`.
pub(crate) fn no_pick_error(spec: &HfSpec, reason: NoPick) -> StoreError {
    let repo = spec.repo_id();
    let want = spec.want.clone().unwrap_or_default();
    match reason {
        NoPick::NoGguf => StoreError::NoGgufInRepo { repo },
        NoPick::NotFound { available } => {
            StoreError::NoSuchRepoFile { repo, want, available: available.join(", ") }
        }
        NoPick::Ambiguous { matches } => {
            StoreError::AmbiguousRepoFile { repo, want, matches: matches.join(", ") }
        }
    }
}

/// The file of `spec` in the Hugging Face cache at `cache`, if the cache holds the repository at
/// the commit its `refs/main` names and a file there fits `spec`.
pub(crate) fn cached(cache: &Path, spec: &HfSpec) -> Option<PathBuf> {
    let repo_dir = cache.join(format!("models--{}--{}", spec.owner, spec.repo));
    let commit = fs::read_to_string(repo_dir.join("refs").join(REVISION)).ok()?;
    let snapshot = repo_dir.join("snapshots").join(commit.trim());
    let mut files = Vec::new();
    list_snapshot(&snapshot, "", &mut files);
    let (file, _why) = pick(&files, spec.want.as_deref()).ok()?;
    Some(snapshot.join(&file.path))
}

/// The files under `dir` (following the cache's symlinks into `blobs/`), as repository paths.
fn list_snapshot(dir: &Path, prefix: &str, files: &mut Vec<RepoFile>) {
    let Ok(listing) = fs::read_dir(dir) else { return };
    for item in listing.flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}{name}");
        match fs::metadata(item.path()) {
            Ok(meta) if meta.is_dir() => list_snapshot(&item.path(), &format!("{path}/"), files),
            // A dangling link (a blob deleted by hand) is not a file of the cache.
            Ok(meta) => files.push(RepoFile { path, size: Some(meta.len()), sha256: None }),
            Err(_) => {}
        }
    }
}

/// A repository at a commit, as the hub's API lists it.
#[derive(Debug)]
pub(crate) struct Listing {
    pub commit: Option<String>,
    pub files: Vec<RepoFile>,
}

#[derive(Deserialize)]
struct RevisionJson {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<SiblingJson>,
}

#[derive(Deserialize)]
struct SiblingJson {
    rfilename: String,
    size: Option<u64>,
    lfs: Option<LfsJson>,
}

#[derive(Deserialize)]
struct LfsJson {
    sha256: String,
    size: Option<u64>,
}

/// Lists `spec`'s repository with sizes and LFS hashes:
/// `GET {endpoint}/api/models/{repo}/revision/main?blobs=true`.
pub(crate) fn list(client: &Client, sources: &Sources, spec: &HfSpec) -> Result<Listing, StoreError> {
    let repo = spec.repo_id();
    let url = format!("{}/api/models/{repo}/revision/{REVISION}?blobs=true", endpoint(sources));
    let mut request = client.get(&url);
    if let Some(token) = &sources.hf_token {
        request = request.bearer_auth(token.expose());
    }
    let response =
        request.send().map_err(|e| StoreError::Http { url: url.clone(), reason: reqwest_reason(e) })?;
    let status = response.status();
    // The hub says why it refuses in `x-error-code`: a private or missing repository is
    // `RepoNotFound` (401 without a token), a repository whose terms must be accepted `GatedRepo`.
    let code =
        response.headers().get("x-error-code").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let has_token = sources.hf_token.is_some();
    match status {
        s if s.is_success() => {}
        StatusCode::NOT_FOUND => {
            return Err(StoreError::RepoNotFound { repo, endpoint: endpoint(sources).to_owned(), has_token })
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if code == "RepoNotFound" => {
            return Err(StoreError::RepoNotFound { repo, endpoint: endpoint(sources).to_owned(), has_token })
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(StoreError::RepoDenied { url: repo_page(sources, spec), repo, has_token })
        }
        _ => {
            return Err(StoreError::HttpStatus {
                what: format!("hf:{repo}"),
                url,
                status: status.to_string(),
                advice: "pull again later".to_owned(),
            })
        }
    }
    let body: RevisionJson = response.json().map_err(|e| StoreError::Http {
        url: url.clone(),
        reason: format!("the hub's answer is not the JSON expected: {}", reqwest_reason(e)),
    })?;
    let files = body
        .siblings
        .into_iter()
        .map(|s| RepoFile {
            size: s.lfs.as_ref().and_then(|l| l.size).or(s.size),
            sha256: s.lfs.map(|l| l.sha256),
            path: s.rfilename,
        })
        .collect();
    Ok(Listing { commit: body.sha, files })
}

/// Where the hub serves a file: `{endpoint}/{repo}/resolve/{revision}/{path}` (often a redirect
/// to a CDN).
pub(crate) fn file_url(sources: &Sources, spec: &HfSpec, revision: &str, path: &str) -> String {
    format!("{}/{}/resolve/{revision}/{path}", endpoint(sources), spec.repo_id())
}

/// The repository's page on the hub, where its terms are accepted.
pub(crate) fn repo_page(sources: &Sources, spec: &HfSpec) -> String {
    format!("{}/{}", endpoint(sources), spec.repo_id())
}

fn endpoint(sources: &Sources) -> &str {
    sources.hf_endpoint.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> RepoFile {
        RepoFile { path: path.into(), size: Some(size), sha256: None }
    }

    #[test]
    fn specs_parse() {
        let spec = HfSpec::parse("bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M").unwrap();
        assert_eq!(spec.repo_id(), "bartowski/Qwen2.5-0.5B-Instruct-GGUF");
        assert_eq!(spec.want.as_deref(), Some("Q4_K_M"));
        assert_eq!(HfSpec::parse("o/r").unwrap().want, None);
        for bad in ["o", "o/", "/r", "o/r:", "o/../r", "o/r/x", "o/ r"] {
            assert!(HfSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn picks_by_name_quant_default_and_size() {
        let files = [
            file("README.md", 1),
            file("m-Q8_0.gguf", 800),
            file("m-Q4_K_M.gguf", 400),
            file("m-Q4_K_S.gguf", 380),
            file("sub/m.q2_k.gguf", 200),
        ];
        assert_eq!(pick(&files, Some("q8_0")).unwrap().0.path, "m-Q8_0.gguf");
        assert_eq!(pick(&files, Some("m-Q4_K_S.gguf")).unwrap().0.path, "m-Q4_K_S.gguf");
        assert_eq!(pick(&files, Some("Q2_K")).unwrap().0.path, "sub/m.q2_k.gguf");
        assert_eq!(pick(&files, None).unwrap().0.path, "m-Q4_K_M.gguf");
        assert_eq!(pick(&files[..2], None).unwrap().0.path, "m-Q8_0.gguf");
        assert_eq!(
            pick(&[file("a-Q8_0.gguf", 9), file("b-Q6_K.gguf", 5)], None).unwrap().0.path,
            "b-Q6_K.gguf"
        );
        assert!(matches!(pick(&files, Some("Q4_K")), Err(NoPick::NotFound { .. })));
        assert!(matches!(pick(&files[..1], None), Err(NoPick::NoGguf)));
        let twice = [file("a/m-Q8_0.gguf", 1), file("b/m-Q8_0.gguf", 1)];
        assert!(matches!(pick(&twice, Some("Q8_0")), Err(NoPick::Ambiguous { .. })));
    }
}
