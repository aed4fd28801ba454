//! Operations: liveness, readiness, metrics.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::ApiError;
use crate::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: the store and the broker answer (503 otherwise).
pub async fn readyz(State(s): State<AppState>) -> Result<Response, ApiError> {
    s.node.ready().await?;
    Ok(Json(serde_json::json!({"status": "ready"})).into_response())
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.node.render_metrics(),
    )
        .into_response()
}
