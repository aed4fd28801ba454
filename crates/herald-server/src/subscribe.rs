//! Opening a session from a request: shared by SSE and long-poll.

use std::sync::Arc;

use axum::http::HeaderMap;
use herald_node::{Event, Session, Transport};
use herald_protocol::ChannelName;

use crate::error::ApiError;
use crate::request::{cursor, token, Query};
use crate::AppState;

/// Authenticates the client, opens a session and subscribes every `channel` of
/// the query from the request's cursor. Returns the session, what to write first
/// (replayed messages, resets), and each channel's cursor *before* those events
/// (the request's position where it had one), from which per-event ids advance.
pub async fn open(
    s: &AppState,
    app: &str,
    headers: &HeaderMap,
    query: &Query,
    transport: Transport,
    client_id: impl FnOnce(&str) -> Option<String>,
) -> Result<(Session, Vec<Event>, Vec<(ChannelName, Arc<str>)>), ApiError> {
    let channels = query.channels()?;
    let cursor = cursor(headers, query)?;
    let tok = token(headers, query);
    let (app, identity) = s.node.authenticate_client(app, tok).await?;
    let max = s.node.config().limits.max_channels_per_connection;
    if channels.len() > max {
        return Err(ApiError::new(
            herald_protocol::ErrorCode::TooManyChannels,
            format!("a connection may subscribe to at most {max} channels"),
        ));
    }
    // Check every channel before subscribing to any: a refused connection must
    // leave no trace (no presence join and leave that others would see).
    for c in &channels {
        identity.check_subscribe(c, s.node.config().namespace(c.namespace()))?;
    }
    let client = if identity.user.is_empty() {
        None
    } else {
        client_id(tok.unwrap_or(""))
    };
    let mut session = s.node.connect(&app, identity, transport, client)?;
    let mut events = Vec::new();
    let mut before = Vec::with_capacity(channels.len());
    for c in channels {
        let from = cursor.get(&c);
        events.extend(session.subscribe(c.clone(), from).await?);
        let part = match from {
            Some(p) => Arc::from(p.encode()),
            None => session.channel_cursor(&c).unwrap_or_else(|| Arc::from("")),
        };
        before.push((c, part));
    }
    Ok((session, events, before))
}
