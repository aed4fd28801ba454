//! The admin API under `/v1/admin/`, authenticated by the admin key.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_protocol::ErrorCode;
use serde::Deserialize;

use crate::error::ApiError;
use crate::request::{bearer, body_bytes, json_body};
use crate::AppState;

fn check_admin(s: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match bearer(headers) {
        None => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "send the admin key as 'Authorization: Bearer <admin key>'",
        )),
        Some(k) if s.node.is_admin(k) => Ok(()),
        Some(_) => Err(ApiError::new(ErrorCode::InvalidKey, "that is not the admin key")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateApp {
    name: String,
}

/// `POST /v1/admin/apps` `{"name":"acme"}` -> `201 {"app","key","token_secret"}`.
pub async fn create_app(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_admin(&s, &headers)?;
    let body: CreateApp = json_body(body, 4096).await?;
    let creds = s.node.create_app(&body.name).await?;
    Ok((StatusCode::CREATED, Json(creds)).into_response())
}

/// `GET /v1/admin/apps` -> `{"apps":[{"name","created_at"}]}`.
pub async fn list_apps(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    check_admin(&s, &headers)?;
    Ok(Json(serde_json::json!({ "apps": s.node.list_apps().await? })).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    /// Seconds the old credentials keep working.
    #[serde(default)]
    grace_seconds: u64,
}

/// `POST /v1/admin/apps/{app}/rotate` `{"grace_seconds":3600}` -> new credentials.
pub async fn rotate_app(
    State(s): State<AppState>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_admin(&s, &headers)?;
    let bytes = body_bytes(body, 4096).await?;
    let r: Rotate = if bytes.iter().all(u8::is_ascii_whitespace) {
        Rotate::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidJson,
                format!("the body is not valid JSON of the expected shape: {e}"),
            )
        })?
    };
    let creds = s
        .node
        .rotate_app(&app, std::time::Duration::from_secs(r.grace_seconds))
        .await?;
    Ok(Json(creds).into_response())
}
