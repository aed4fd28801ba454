//! Long-poll: `GET /v1/apps/{app}/poll?channel=a&cursor=C&timeout=25&token=T`.
//!
//! Answers at once when something follows the cursor (messages or resets), else
//! waits up to `timeout` seconds for the first live message, else answers with no
//! messages and a cursor that marks where the wait started, so nothing published
//! between two polls is missed. Without a cursor the wait starts from now.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use herald_node::{Event, Transport};
use herald_protocol::ErrorCode;
use sha2_free::short_hash;

use crate::error::ApiError;
use crate::request::Query;
use crate::subscribe::open;
use crate::AppState;

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

/// `GET /v1/apps/{app}/poll`.
pub async fn poll(
    State(s): State<AppState>,
    Path(app): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
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
