//! The playground: one page and its scripts and styles, embedded in the binary and served at `/`
//! (assets under `/assets/`) without a key: the page holds nothing secret, and every request it
//! makes carries the key the user gives it.

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;

/// What the page may do: load its own scripts, styles and images, talk to this server, show this
/// server's reports in a frame, and nothing else. No inline script or style, no other origin,
/// and, through Trusted Types, no string of markup assigned to the DOM: whatever a model or a
/// document says can only ever become text.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; frame-src 'self'; form-action 'none'; base-uri 'none'; \
     frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// One embedded file, by its path under `crates/server/assets/`.
struct Asset {
    path: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset { path: $path, body: include_bytes!(concat!("../assets/", $path)) }),*]
    };
}

const ASSETS: &[Asset] = assets![
    "index.html",
    "playground.css",
    "favicon.svg",
    "js/api.js",
    "js/app.js",
    "js/chat.js",
    "js/dom.js",
    "js/evals.js",
    "js/markdown.js",
    "js/models.js",
    "js/params.js",
    "js/prompt.js",
    "js/rag.js",
    "js/state.js",
];

/// `GET /` and `GET /assets/{path}`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index)).route("/assets/{*path}", get(asset))
}

async fn index() -> Response {
    serve(find("index.html").expect("the page is embedded"))
}

async fn asset(Path(path): Path<String>) -> Response {
    match find(&path) {
        Some(asset) => serve(asset),
        None => ApiError::not_found(format!("the playground has no asset `{path}`"), "unknown_asset")
            .into_response(),
    }
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

fn serve(asset: &Asset) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type(asset.path))),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        // The binary may be upgraded under a open tab: always ask again (the files are small).
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, asset.body).into_response()
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map_or("", |(_, extension)| extension) {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    fn assets_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
    }

    fn files_under(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                files_under(&entry.path(), &format!("{name}/"), out);
            } else {
                out.insert(name);
            }
        }
    }

    #[test]
    fn every_file_is_embedded_with_a_known_type() {
        let mut on_disk = BTreeSet::new();
        files_under(&assets_dir(), "", &mut on_disk);
        let embedded: BTreeSet<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        assert_eq!(on_disk, embedded, "crates/server/assets and the ASSETS table differ");
        for asset in ASSETS {
            assert_ne!(content_type(asset.path), "application/octet-stream", "{}", asset.path);
        }
    }

    /// Every `/assets/...` the page names and every module a script imports is embedded, so the
    /// page cannot 404 on a file that was renamed.
    #[test]
    fn every_reference_resolves() {
        let text = |asset: &Asset| std::str::from_utf8(asset.body).unwrap().to_owned();
        let mut referenced = Vec::new();
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".html") || a.path.ends_with(".js")) {
            let body = text(asset);
            for piece in body.split("\"/assets/").skip(1) {
                referenced.push((asset.path, piece.split('"').next().unwrap().to_owned()));
            }
            for piece in body.split(" from './").skip(1) {
                let module = piece.split('\'').next().unwrap();
                referenced.push((asset.path, format!("js/{module}")));
            }
        }
        assert!(referenced.len() > ASSETS.len(), "the scan found too little: {referenced:?}");
        for (from, path) in referenced {
            assert!(find(&path).is_some(), "{from} refers to {path}, which is not embedded");
        }
    }

    async fn get(path: &str) -> axum::response::Response {
        routes::<()>().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn serves_the_page_and_assets_with_their_types_and_policy() {
        let page = get("/").await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(page.headers()[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
        assert_eq!(page.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let body = axum::body::to_bytes(page.into_body(), usize::MAX).await.unwrap();
        assert!(body.starts_with(b"<!DOCTYPE html>"));

        let script = get("/assets/js/app.js").await;
        assert_eq!(script.status(), StatusCode::OK);
        assert_eq!(script.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(
            get("/assets/playground.css").await.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );

        for missing in ["/assets/js/nothing.js", "/assets/../Cargo.toml", "/assets/%2e%2e/src/lib.rs"] {
            assert_eq!(get(missing).await.status(), StatusCode::NOT_FOUND, "{missing}");
        }
    }
}
