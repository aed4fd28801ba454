//! The one place where errors become HTTP responses.
//!
//! Every refusal is `{"error":{"code","message"}}` with the status of the code in
//! herald-protocol's table, including the ones axum would answer in its own format
//! (unknown route, wrong method, body too large): [`framework_errors`] rewrites
//! any non-JSON error response that slips through.

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herald_node::NodeError;
use herald_protocol::{ErrorBody, ErrorCode};

/// An error answer.
#[derive(Debug)]
pub struct ApiError(pub NodeError);

impl ApiError {
    /// Builds an error answer.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(NodeError::new(code, message))
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.0.retry_after_secs();
        let mut res = body_response(
            self.0.code,
            ErrorBody::new(self.0.code, self.0.message).retry_after(retry_after),
        );
        if let Some(secs) = retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// The response for an error code and message.
pub fn error_response(code: ErrorCode, message: &str) -> Response {
    body_response(code, ErrorBody::new(code, message))
}

fn body_response(code: ErrorCode, body: ErrorBody) -> Response {
    let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_string(&body).unwrap_or_default();
    let mut res = (status, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // No `Allow` here: the router adds the methods of the matched route to a 405.
    res
}

/// Fallback for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such endpoint; see docs/protocol.md for the API",
    )
}

/// Fallback for known routes called with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this endpoint does not accept that HTTP method",
    )
}

/// Rewrites error responses that are not JSON (produced by the framework or a
/// layer) into the error format.
pub async fn framework_errors(req: Request<Body>, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return res;
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::BodyTooLarge, "the request body is too large"),
        StatusCode::NOT_FOUND => (
            ErrorCode::NotFound,
            "no such endpoint; see docs/protocol.md for the API",
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "this endpoint does not accept that HTTP method",
        ),
        s if s.is_server_error() => (ErrorCode::Internal, "the server failed; the log has the details"),
        _ => (ErrorCode::BadRequest, "the request could not be understood"),
    };
    let mut out = error_response(code, message);
    if let Some(allow) = res.headers().get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}
