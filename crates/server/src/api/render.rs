//! `POST /api/render`: a conversation as the model reads it, after its chat template, with its
//! token count and the context window it must fit in (what `temper prompt render --final`
//! prints).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use temper_core::GenerationParams;

use super::{blocking, check_params};
use crate::error::{ApiError, ApiJson};
use crate::openai::waits;
use crate::openai::wire::WireMessage;
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderBody {
    model: String,
    /// As `/v1/chat/completions` takes them, so that the text is the one a chat request sends.
    messages: Vec<WireMessage>,
    #[serde(default)]
    params: GenerationParams,
}

pub async fn render(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RenderBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_params(&body.params)?;
    if body.messages.is_empty() {
        return Err(ApiError::bad_request("messages must hold at least one message", Some("messages")));
    }
    let messages = body
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| m.into_message(i))
        .collect::<Result<Vec<_>, _>>()?;
    let lease = state.pool.chat(&body.model, waits(&headers)).await?;
    let Some(local) = lease.model.local.clone() else {
        let message = format!(
            "`{}` is a remote model: remote models apply their own template, which cannot be shown here",
            body.model
        );
        return Err(ApiError::bad_request(message, Some("model")));
    };
    let params = body.params;
    let rendered = blocking(move || Ok(local.final_prompt(&messages, &params)?)).await?;
    drop(lease);
    Ok(Json(serde_json::json!({
        "model": body.model,
        "text": rendered.text,
        "tokens": rendered.tokens,
        "context_window": rendered.context_window,
    })))
}
