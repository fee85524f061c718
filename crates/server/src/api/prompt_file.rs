//! `POST /api/prompt-file/export` and `/import`: prompt files to and from their parts as JSON,
//! through temper-prompt, so that what the playground saves `temper prompt run` reads back
//! unchanged, and the other way round.

use std::path::Path;

use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use temper_prompt::{PromptFile, PromptParts};

use crate::error::{ApiError, ApiJson};

pub async fn export(ApiJson(parts): ApiJson<PromptParts>) -> Result<Json<Value>, ApiError> {
    let toml = PromptFile::from_parts(parts)?.to_toml()?;
    Ok(Json(json!({ "toml": toml })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    toml: String,
}

pub async fn import(ApiJson(body): ApiJson<ImportBody>) -> Result<Json<PromptParts>, ApiError> {
    // The name appears in no answer: errors give the line and column in `toml`.
    let file = PromptFile::parse(Path::new("prompt.toml"), &body.toml)
        .map_err(|error| ApiError { param: Some("toml".into()), ..error.into() })?;
    Ok(Json(file.parts()))
}
