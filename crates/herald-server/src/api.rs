//! The server API: publish, history, presence, channels, stats.
//!
//! Authenticated by the app's secret key (`Authorization: Bearer <key>`, never
//! in the URL); publish also accepts a client token (as a bearer or in
//! `?token=`) whose `publish` claim allows the channels.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_node::{looks_like_token, Credential, PublishInput};
use herald_protocol::envelope::compact_data;
use herald_protocol::{ChannelName, ErrorCode, EventName};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::request::{bearer, json_body, Query};
use crate::AppState;

/// The publish body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    channel: Option<String>,
    channels: Option<Vec<String>>,
    event: Option<String>,
    data: Option<Box<RawValue>>,
    idempotency_key: Option<String>,
}

/// Turns a publish body into a validated [`PublishInput`]; true when the body
/// used `channels` (the answer is then a `results` list).
pub fn publish_input(body: PublishBody) -> Result<(PublishInput, bool), ApiError> {
    let (names, multi) = match (body.channel, body.channels) {
        (Some(c), None) => (vec![c], false),
        (None, Some(cs)) => (cs, true),
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "send either \"channel\" or \"channels\", not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::new(
                ErrorCode::MissingParameter,
                "name a \"channel\" (or a \"channels\" list) to publish to",
            ))
        }
    };
    let mut channels: Vec<ChannelName> = Vec::with_capacity(names.len());
    for n in &names {
        let c = ChannelName::parse(n)
            .map_err(|e| ApiError::new(ErrorCode::InvalidChannel, format!("channel {n:?}: {e}")))?;
        if !channels.contains(&c) {
            channels.push(c);
        }
    }
    let event = match body.event.as_deref() {
        None => EventName::message(),
        Some(e) => EventName::parse(e)
            .map_err(|err| ApiError::new(ErrorCode::InvalidEvent, format!("event {e:?}: {err}")))?,
    };
    let data = match body.data {
        None => std::sync::Arc::from("null"),
        Some(d) => compact_data(d.get()).map_err(|e| ApiError::new(ErrorCode::InvalidJson, e.to_string()))?,
    };
    Ok((
        PublishInput {
            channels,
            event,
            data,
            idempotency_key: body.idempotency_key,
        },
        multi,
    ))
}

/// `POST /v1/apps/{app}/publish`.
pub async fn publish(
    State(s): State<AppState>,
    Path(app): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    let (app, cred) = match query.get("token").filter(|t| !t.is_empty()) {
        // A credential in the URL is a client token, never a key: URLs end up
        // in logs (proxies, browsers' history), keys must not.
        Some(t) => {
            if !looks_like_token(t) {
                return Err(ApiError::new(
                    ErrorCode::InvalidToken,
                    "?token= takes a client token; send the app key as 'Authorization: Bearer <key>', never in a URL",
                ));
            }
            let (app, id) = s.node.authenticate_client(&app, Some(t)).await?;
            (app, Credential::Client(Box::new(id)))
        }
        None => s.node.authorize(&app, bearer(&headers), true).await?,
    };
    let limit = s.node.config().limits.max_message_size + 64 * 1024;
    let body: PublishBody = json_body(body, limit).await?;
    let (input, multi) = publish_input(body)?;
    let results = match cred {
        Credential::Key => s.node.publish(&app, input).await?,
        Credential::Client(id) => s.node.publish_as_client(&app, &id, input).await?,
    };
    if multi {
        Ok(Json(serde_json::json!({ "results": results })).into_response())
    } else {
        let r = results
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "publish returned no result"))?;
        Ok(Json(r).into_response())
    }
}

fn channel(raw: &str) -> Result<ChannelName, ApiError> {
    ChannelName::parse(raw)
        .map_err(|e| ApiError::new(ErrorCode::InvalidChannel, format!("channel {raw:?}: {e}")))
}

/// `GET /v1/apps/{app}/channels/{channel}/history?since=&limit=`.
pub async fn history(
    State(s): State<AppState>,
    Path((app, ch)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (app, _) = s.node.authorize(&app, bearer(&headers), false).await?;
    let channel = channel(&ch)?;
    let query = Query::parse(q.as_deref());
    let since = query.number("since")?;
    let max = s.node.config().limits.max_history_page;
    // The default page is 100 messages, or the whole allowed page when smaller.
    let limit = query.number("limit")?.unwrap_or(100.min(max as u64));
    if limit == 0 || limit > max as u64 {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("limit must be 1 to {max}"),
        ));
    }
    let read = s.node.history(&app, &channel, since, limit as usize).await?;
    let mut out = String::with_capacity(64 + read.messages.len() * 128);
    out.push_str("{\"epoch\":\"");
    out.push_str(&read.epoch);
    out.push_str("\",\"top\":");
    out.push_str(&read.top.to_string());
    out.push_str(",\"complete\":");
    out.push_str(if read.complete { "true" } else { "false" });
    out.push_str(",\"messages\":[");
    for (i, m) in read.messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        m.write_json(&mut out);
    }
    out.push_str("]}");
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// `GET /v1/apps/{app}/channels/{channel}/presence`.
pub async fn presence(
    State(s): State<AppState>,
    Path((app, ch)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (app, _) = s.node.authorize(&app, bearer(&headers), false).await?;
    let channel = channel(&ch)?;
    let members = s.node.presence(&app, &channel).await?;
    Ok(Json(serde_json::json!({ "members": members })).into_response())
}

/// `GET /v1/apps/{app}/channels`.
pub async fn channels(
    State(s): State<AppState>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (app, _) = s.node.authorize(&app, bearer(&headers), false).await?;
    Ok(Json(serde_json::json!({ "channels": s.node.channels(&app) })).into_response())
}

/// `GET /v1/apps/{app}/stats`.
pub async fn stats(
    State(s): State<AppState>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (app, _) = s.node.authorize(&app, bearer(&headers), false).await?;
    Ok(Json(s.node.stats(&app).await?).into_response())
}
