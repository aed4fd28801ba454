//! Long-poll: `GET /v1/apps/{app}/poll?channel=a&cursor=C&timeout=25&token=T`,
//! or `POST /v1/apps/{app}/poll?token=T` with `{"channels":[…],"cursor":C,"timeout":25}`
//! for cursors (and channel lists) too long for a URL (docs/decisions.md).
//!
//! Answers at once when something follows the cursor (messages or resets), else
//! waits up to `timeout` seconds for the first live message, else answers with no
//! messages and a cursor that marks where the wait started, so nothing published
//! between two polls is missed. Without a cursor the wait starts from now.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use herald_node::{Event, Transport};
use herald_protocol::ErrorCode;
use sha2_free::short_hash;

use crate::error::ApiError;
use crate::request::{json_body, Query};
use crate::subscribe::open;
use crate::AppState;
use serde::Deserialize;

mod sha2_free {
    /// A short stable id for a token, so one client's polls share one presence entry.
    pub fn short_hash(s: &str) -> String {
        // FNV-1a, 64 bits: not for security, only to name a presence entry.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in s.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// The largest `POST …/poll` body: a cursor at its limit (128 KiB) and a
/// connection's channels.
pub const MAX_POLL_BODY: usize = 256 * 1024;

/// The `POST …/poll` body: what the query string carries, without its limits.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollBody {
    #[serde(default)]
    channels: Vec<String>,
    cursor: Option<String>,
    timeout: Option<u64>,
}

/// `GET /v1/apps/{app}/poll`.
pub async fn poll(
    State(s): State<AppState>,
    Path(app): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(s, app, Query::parse(q.as_deref()), headers).await
}

/// `POST /v1/apps/{app}/poll`: the body's channels join the query's, its cursor
/// and timeout win over the query's.
pub async fn poll_body(
    State(s): State<AppState>,
    Path(app): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut query = Query::parse(q.as_deref());
    let body: PollBody = json_body(body, MAX_POLL_BODY).await?;
    for c in body.channels {
        query.push("channel", c);
    }
    if let Some(c) = body.cursor {
        query.push("cursor", c);
    }
    if let Some(t) = body.timeout {
        query.push("timeout", t.to_string());
    }
    serve(s, app, query, headers).await
}

async fn serve(s: AppState, app: String, query: Query, headers: HeaderMap) -> Result<Response, ApiError> {
    let max = s.options.longpoll_max_timeout.as_secs();
    let timeout = query.number("timeout")?.unwrap_or(25.min(max));
    if timeout > max {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("timeout must be 0 to {max} seconds"),
        ));
    }
    let (mut session, mut events, _) = open(&s, &app, &headers, &query, Transport::LongPoll, |tok| {
        Some(format!("lp:{}", short_hash(tok)))
    })
    .await?;
    if events.is_empty() && timeout > 0 {
        let waiter = session.waiter();
        let shutdown = s.node.shutdown_token();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        loop {
            tokio::select! {
                _ = waiter.ready() => {
                    events = session.drain().await;
                    if !events.is_empty() {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutdown.cancelled() => break,
            }
        }
    }
    let mut out = String::with_capacity(128 + events.len() * 160);
    out.push_str("{\"cursor\":\"");
    out.push_str(&session.cursor());
    out.push_str("\",\"messages\":[");
    let mut n = 0u64;
    for ev in &events {
        if let Event::Message { delivery, .. } = ev {
            if n > 0 {
                out.push(',');
            }
            out.push_str(delivery.json());
            n += 1;
        }
    }
    out.push_str("],\"resets\":[");
    let mut first = true;
    for ev in &events {
        if let Event::Reset(r) = ev {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&r.to_json());
        }
    }
    out.push_str("],\"presence\":[");
    let mut first = true;
    for ev in &events {
        if let Event::Presence(p) = ev {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(p);
        }
    }
    out.push_str("]}");
    session.delivered(n, out.len() as u64);
    let mut res = ([(header::CONTENT_TYPE, "application/json")], out).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
