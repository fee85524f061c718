//! `/api/eval/reports`: the HTML reports `temper eval run --html` wrote into the server's
//! reports folder, listed and served with a Content-Security-Policy that keeps them inert (a
//! report shows model outputs; it needs its inline CSS and SVG and nothing else).

use std::io::ErrorKind;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{blocking, plain_name};
use crate::error::ApiError;
use crate::AppState;

/// No script, no fetch, no frame; inline styles and `data:` images only.
pub const REPORT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// Every `.html` file of the folder, newest first.
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let folder = state.reports.clone();
    let mut reports = blocking(move || {
        let entries = std::fs::read_dir(&folder).map_err(|error| unreadable(&folder, &error))?;
        let mut reports = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| unreadable(&folder, &error))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Following links, as a fetch does; what cannot be read is not listed.
            let Ok(meta) = std::fs::metadata(entry.path()) else { continue };
            if meta.is_file() && report_name(&name).is_ok() {
                let modified = meta.modified().map(OffsetDateTime::from).ok();
                reports.push((modified, name, meta.len()));
            }
        }
        Ok(reports)
    })
    .await?;
    reports.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let reports: Vec<Value> = reports
        .into_iter()
        .map(|(modified, name, bytes)| {
            let modified = modified.and_then(|m| m.format(&Rfc3339).ok());
            json!({ "name": name, "modified": modified, "bytes": bytes })
        })
        .collect();
    Ok(Json(json!({ "reports": reports })))
}

pub async fn fetch(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    report_name(&name).map_err(|reason| {
        ApiError::bad_request(format!("`{name}` is not a report name: it {reason}"), Some("name"))
    })?;
    let path = state.reports.join(&name);
    let page = match tokio::fs::read(&path).await {
        Ok(page) => page,
        Err(error) if error.kind() == ErrorKind::NotFound => {
            let message = format!("no report `{name}`; GET /api/eval/reports lists them");
            return Err(ApiError::not_found(message, "report_not_found"));
        }
        Err(error) => return Err(unreadable(&path, &error)),
    };
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, REPORT_CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    Ok((headers, page).into_response())
}

/// Why `name` is not the name of a report, if it is not.
fn report_name(name: &str) -> Result<(), &'static str> {
    plain_name(name)?;
    let extension = name.rsplit_once('.').map(|(_, ext)| ext);
    if !extension.is_some_and(|ext| ext.eq_ignore_ascii_case("html")) {
        return Err("does not end in .html");
    }
    Ok(())
}

/// A 500 that does not show the server's folders to the client; the log has the path.
fn unreadable(path: &std::path::Path, error: &std::io::Error) -> ApiError {
    tracing::warn!("cannot read {}: {error}", path.display());
    ApiError::internal(format!("cannot read the reports folder: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_are_html_file_names_alone() {
        assert!(report_name("sentiment.html").is_ok() && report_name("Run 2.HTML").is_ok());
        for bad in ["../x.html", "a/b.html", "a\\b.html", "..", "", "x.htm", "x.html\0", "notes.txt"] {
            assert!(report_name(bad).is_err(), "{bad:?}");
        }
    }
}
