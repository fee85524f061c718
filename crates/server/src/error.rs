//! Errors as OpenAI's API sends them: `{"error": {"message", "type", "param", "code"}}` with the
//! status that says whose fault it was, so that every OpenAI client raises the right exception.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;
pub(crate) use temper_core::error_chain as chain;
use temper_models::ResolveError;

/// An error answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `not_found_error`, ...
    pub kind: &'static str,
    /// The request field at fault, as a path (`messages[0].role`).
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds a client should wait before trying again (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), kind, param: None, code: None, retry_after: None }
    }

    /// 400: the request is wrong; `param` names the field when one is at fault.
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> ApiError {
        let error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        ApiError { param: param.map(str::to_owned), ..error }
    }

    /// 401: no key, or not one of the server's.
    pub fn unauthorized() -> ApiError {
        let message = "missing or invalid API key; send it as `Authorization: Bearer KEY`";
        ApiError {
            code: Some("invalid_api_key"),
            ..ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
        }
    }

    /// 404: no such model (or route).
    pub fn not_found(message: impl Into<String>, code: &'static str) -> ApiError {
        ApiError { code: Some(code), ..ApiError::new(StatusCode::NOT_FOUND, "not_found_error", message) }
    }

    /// 413: the body is larger than the server takes.
    pub fn too_large(limit: usize) -> ApiError {
        let message = format!("the request body is larger than the server's limit of {limit} bytes");
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", message)
    }

    /// 429: the model's queue is full.
    pub fn queue_full(model: &str, depth: usize) -> ApiError {
        let message =
            format!("model `{model}` has {depth} requests running or waiting, its limit; try again shortly");
        let error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message);
        ApiError { code: Some("queue_full"), retry_after: Some(1), ..error }
    }

    /// 503: the model is still loading and the client asked not to wait.
    pub fn loading(model: &str) -> ApiError {
        let message = format!("model `{model}` is loading; try again shortly, or send the request without X-Temper-No-Wait to wait for it");
        let error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message);
        ApiError { code: Some("model_loading"), retry_after: Some(2), ..error }
    }

    /// 503: the server is shutting down.
    pub fn shutting_down() -> ApiError {
        let error =
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", "the server is shutting down");
        ApiError { code: Some("shutting_down"), ..error }
    }

    /// 500: the server failed.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({ "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<temper_core::Error> for ApiError {
    fn from(error: temper_core::Error) -> ApiError {
        use temper_core::Error;
        let message = chain(&error);
        match &error {
            Error::InvalidParam { name, .. } => ApiError::bad_request(message, Some(name)),
            Error::ContextOverflow { .. } => ApiError {
                code: Some("context_length_exceeded"),
                ..ApiError::bad_request(message, Some("messages"))
            },
            Error::Unsupported(_) => ApiError::bad_request(message, None),
            Error::ModelNotFound(_) => ApiError::not_found(message, "model_not_found"),
            _ => ApiError::internal(message),
        }
    }
}

impl From<ResolveError> for ApiError {
    fn from(error: ResolveError) -> ApiError {
        let message = chain(&error);
        if error.is_unknown_model() {
            ApiError::not_found(message, "model_not_found")
        } else {
            ApiError::internal(message)
        }
    }
}

impl From<temper_prompt::PromptError> for ApiError {
    fn from(error: temper_prompt::PromptError) -> ApiError {
        use temper_prompt::PromptError;
        match error {
            // The place is in the text the client sent (a prompt file, a template).
            PromptError::File { line, column, message, .. } => {
                ApiError::bad_request(format!("line {line}, column {column}: {message}"), None)
            }
            PromptError::Invalid { ref what, .. } => ApiError::bad_request(error.to_string(), Some(what)),
            PromptError::Overflow { .. } => ApiError {
                code: Some("context_length_exceeded"),
                ..ApiError::bad_request(error.to_string(), Some("messages"))
            },
            PromptError::Model(error) => error.into(),
            other => ApiError::internal(chain(&other)),
        }
    }
}

impl From<temper_rag::RagError> for ApiError {
    fn from(error: temper_rag::RagError) -> ApiError {
        use temper_rag::RagError;
        match error {
            RagError::NoCollection(_) => ApiError::not_found(error.to_string(), "collection_not_found"),
            RagError::Invalid { .. } | RagError::EmbedderMismatch { .. } => {
                ApiError::bad_request(error.to_string(), None)
            }
            RagError::Model(error) => error.into(),
            other => ApiError::internal(chain(&other)),
        }
    }
}

/// A JSON body parsed as `T`. Unlike axum's `Json`, every failure is an OpenAI-shaped error that
/// names the field at fault and where it is, and no content type is demanded (curl's `-d`
/// sends a form type).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes =
            axum::body::Bytes::from_request(request, state).await.map_err(|rejection| match rejection {
                BytesRejection::FailedToBufferBody(ref failed)
                    if failed.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    ApiError::too_large(crate::BODY_LIMIT)
                }
                other => ApiError::bad_request(
                    format!("cannot read the request body: {}", other.body_text()),
                    None,
                ),
            })?;
        from_value(parse_json(&bytes)?).map(ApiJson)
    }
}

/// `bytes` as JSON, or a 400 saying where it stops being JSON.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty; send a JSON object", None));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}"), None))
}

/// `value` as `T`, or a 400 naming the field at fault by its path (`messages[0].role`).
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match path.as_str() {
            "." => ApiError::bad_request(format!("the request body does not fit this route: {inner}"), None),
            field => ApiError::bad_request(format!("invalid `{field}`: {inner}"), Some(field)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read only through Debug
    struct Body {
        name: String,
        items: Vec<Item>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        weight: f32,
    }

    fn parse(bytes: &[u8]) -> Result<Body, ApiError> {
        from_value(parse_json(bytes)?)
    }

    #[test]
    fn json_errors_name_the_field_and_the_place() {
        let err = parse(br#"{"name": "a", "items": [{"weight": "heavy"}]}"#).unwrap_err();
        assert_eq!((err.status, err.param.as_deref()), (StatusCode::BAD_REQUEST, Some("items[0].weight")));
        let err = parse(br#"{"name": "a", "items": [], "colour": 1}"#).unwrap_err();
        assert!(err.message.contains("unknown field `colour`"), "{}", err.message);
        let err = parse(b"{\"name\": \"a\",").unwrap_err();
        assert!(
            err.message.contains("not valid JSON") && err.message.contains("line 1 column"),
            "{}",
            err.message
        );
        let err = parse(b"  ").unwrap_err();
        assert!(err.message.contains("empty"), "{}", err.message);
        let err = parse(b"{\"name\": \"\xff\", \"items\": []}").unwrap_err();
        assert!(err.message.contains("not valid JSON"), "{}", err.message);
        let err = parse(br#"{"name": "a", "items": []} {}"#).unwrap_err();
        assert!(err.message.contains("trailing"), "{}", err.message);
    }

    #[test]
    fn errors_have_openai_shape_and_status() {
        let err: ApiError =
            temper_core::Error::ContextOverflow { prompt_tokens: 5000, context_window: 4096 }.into();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.code, Some("context_length_exceeded"));
        assert!(err.message.contains("5000") && err.message.contains("4096"));
        let body = ApiError::queue_full("m", 3).body();
        assert_eq!(body["error"]["type"], "rate_limit_error");
        let invalid: ApiError =
            temper_core::Error::invalid_param("temperature", "must be between 0 and 2").into();
        assert_eq!(invalid.param.as_deref(), Some("temperature"));
    }
}
