//! WebSocket: `GET /v1/apps/{app}/ws?token=T`, JSON text frames.
//!
//! Client frames (`subscribe`, `unsubscribe`, `publish`, `presence`, `ping`,
//! `refresh`) are answered by `id` with `{"id":N,"ok":{...}}` or
//! `{"id":N,"error":{"code","message"}}`. Pushes are `{"type":"message",...}`,
//! `{"type":"reset",...}`, `{"type":"presence",...}`. A subscribe's reply comes
//! before the messages it replays. The server pings; a client silent for the idle
//! timeout is closed (4008), and one that takes in nothing for that long is
//! dropped (it reads nothing, so no close frame can reach it). Close codes
//! 4000-4999 mean "do not retry blindly"; 1012 means "server restarting,
//! reconnect (elsewhere) with your cursors".

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::SinkExt;
use herald_node::{Event, Session, Transport};
use herald_protocol::frame::{self, Command};
use herald_protocol::{ErrorBody, ErrorCode};
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::ApiError;
use crate::request::{token, Query};
use crate::AppState;

/// `GET /v1/apps/{app}/ws`: authenticates before the upgrade, so refusals are
/// plain HTTP errors.
pub async fn upgrade(
    State(s): State<AppState>,
    Path(app): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // Credentials first: a plain GET then tells a client why its upgrade failed
    // (browsers hide the HTTP status of a refused WebSocket).
    let query = Query::parse(q.as_deref());
    let (app, identity) = s.node.authenticate_client(&app, token(&headers, &query)).await?;
    let ws = ws.map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "this endpoint speaks WebSocket; connect with a WebSocket client ({})",
                e.body_text()
            ),
        )
    })?;
    let session = s.node.connect(&app, identity, Transport::WebSocket, None)?;
    let max = s.node.config().limits.max_message_size + 64 * 1024;
    Ok(ws
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            let span =
                tracing::info_span!("conn", app = %session.app(), transport = "websocket", id = session.id());
            run(socket, session, s).instrument(span)
        }))
}

fn reply_ok(id: Option<u64>, ok: serde_json::Value) -> Option<String> {
    id.map(|id| serde_json::json!({"id": id, "ok": ok}).to_string())
}

fn reply_err(id: Option<u64>, code: ErrorCode, message: &str) -> String {
    let body = ErrorBody::new(code, message);
    match id {
        Some(id) => serde_json::json!({"id": id, "error": body.error}).to_string(),
        None => serde_json::json!({"error": body.error}).to_string(),
    }
}

fn push(ev: &Event) -> (Utf8Bytes, bool) {
    match ev {
        Event::Message { delivery, .. } => {
            // The frame bytes are shared by every subscriber; they are valid UTF-8.
            let text =
                Utf8Bytes::try_from(delivery.ws().clone()).unwrap_or_else(|_| Utf8Bytes::from_static("{}"));
            (text, true)
        }
        Event::Reset(r) => {
            let mut s = String::from("{\"type\":\"reset\",");
            s.push_str(&r.to_json()[1..]);
            (Utf8Bytes::from(s), false)
        }
        Event::Presence(p) => {
            let mut s = String::from("{\"type\":\"presence\",");
            s.push_str(&p[1..]);
            (Utf8Bytes::from(s), false)
        }
    }
}

/// Awaits one write; false when it failed or the client took in nothing for
/// `within` (the idle timeout): a client that does not read must not hold its
/// connection, its session and this task forever.
async fn bounded<E>(within: Duration, write: impl std::future::Future<Output = Result<(), E>>) -> bool {
    matches!(tokio::time::timeout(within, write).await, Ok(Ok(())))
}

/// Sends one frame; false as [`bounded`].
async fn send(socket: &mut WebSocket, msg: Message, within: Duration) -> bool {
    bounded(within, socket.send(msg)).await
}

/// Writes `events` with one flush; false as [`bounded`], for each frame.
async fn send_events(socket: &mut WebSocket, session: &Session, events: &[Event], within: Duration) -> bool {
    let mut n = 0u64;
    let mut bytes = 0u64;
    for ev in events {
        let (text, is_msg) = push(ev);
        bytes += text.len() as u64;
        if is_msg {
            n += 1;
        }
        if !bounded(within, socket.feed(Message::Text(text))).await {
            return false;
        }
    }
    session.delivered(n, bytes);
    bounded(within, socket.flush()).await
}

/// How long a server-initiated close waits for the client's Close frame.
const CLOSE_HANDSHAKE_WAIT: Duration = Duration::from_secs(5);

/// Sends a Close frame and completes the closing handshake (RFC 6455, 7.1.1):
/// dropping the socket while the client's frames (pongs, requests) are unread
/// makes the kernel reset the connection, and the client then loses the close
/// frame and its code. So read (and discard) until the client's Close, bounded.
async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_WAIT, async {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(reason.to_owned()),
        };
        if socket.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        while let Some(Ok(msg)) = socket.recv().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

async fn run(mut socket: WebSocket, mut session: Session, s: AppState) {
    tracing::debug!("connected");
    let waiter = session.waiter();
    let shutdown = s.node.shutdown_token();
    let mut ping = tokio::time::interval_at(Instant::now() + s.options.ws_ping, s.options.ws_ping);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let idle = s.options.ws_idle_timeout;
    let mut last_seen = Instant::now();
    let mut expires = session
        .token_remaining()
        .map(|d| Instant::now() + d.max(Duration::from_millis(1)));
    loop {
        let expiry = async {
            match expires {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = socket.recv() => {
                last_seen = Instant::now();
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        if !handle_frame(&mut socket, &mut session, &s, text.as_str(), &mut expires).await {
                            break;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let r = reply_err(None, ErrorCode::BadFrame, "send JSON text frames, not binary");
                        if !send(&mut socket, Message::Text(r.into()), idle).await { break; }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) => {
                        // Send the Close reply tungstenite queued: a clean close for the client.
                        bounded(idle, socket.flush()).await;
                        break;
                    }
                    None | Some(Err(_)) => break,
                }
            }
            _ = waiter.ready() => {
                let events = session.drain().await;
                if !send_events(&mut socket, &session, &events, idle).await {
                    break;
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() >= idle {
                    close(&mut socket, 4008, "idle timeout: no frame or pong received").await;
                    break;
                }
                session.tick().await;
                if !send(&mut socket, Message::Ping(Default::default()), idle).await {
                    break;
                }
            }
            _ = shutdown.cancelled() => {
                close(&mut socket, ErrorCode::ShuttingDown.close_code(), "server restarting; reconnect with your cursors").await;
                break;
            }
            _ = expiry => {
                close(&mut socket, ErrorCode::TokenExpired.close_code(), "token expired; reconnect with a fresh token").await;
                break;
            }
        }
    }
}

/// Handles one client frame; false when the connection must end.
async fn handle_frame(
    socket: &mut WebSocket,
    session: &mut Session,
    s: &AppState,
    text: &str,
    expires: &mut Option<Instant>,
) -> bool {
    let idle = s.options.ws_idle_timeout;
    let frame = match frame::parse(text) {
        Ok(f) => f,
        Err((code, msg)) => {
            return send(socket, Message::Text(reply_err(None, code, &msg).into()), idle).await
        }
    };
    let id = frame.id;
    let command = match frame.command {
        Ok(c) => c,
        Err((code, msg)) => return send(socket, Message::Text(reply_err(id, code, &msg).into()), idle).await,
    };
    let (reply, events) = match command {
        Command::Subscribe { channel, cursor } => {
            let from = cursor.as_ref().and_then(|c| c.get(&channel)).cloned();
            let already = session.is_subscribed(&channel);
            match session.subscribe(channel.clone(), from.as_ref()).await {
                Ok(events) => {
                    // The position the pushes that follow start from: after a reset,
                    // the reset's; when replaying, the client's; else the current one.
                    let current = session
                        .channel_cursor(&channel)
                        .map(|c| c.to_string())
                        .unwrap_or_default();
                    let reset = events.iter().find_map(|e| match e {
                        Event::Reset(r) => Some(r.cursor.clone()),
                        _ => None,
                    });
                    let start = match (already, reset, from) {
                        (true, _, _) => current,
                        (false, Some(r), _) => r,
                        (false, None, Some(p)) => p.encode(),
                        (false, None, None) => current,
                    };
                    (
                        reply_ok(
                            id,
                            serde_json::json!({"channel": channel.as_str(), "cursor": start}),
                        ),
                        events,
                    )
                }
                Err(e) => (Some(reply_err(id, e.code, &e.message)), Vec::new()),
            }
        }
        Command::Unsubscribe { channel } => {
            session.unsubscribe(&channel).await;
            (reply_ok(id, serde_json::json!({})), Vec::new())
        }
        Command::Publish { channel, event, data } => match session.publish(channel, event, data).await {
            Ok(p) => (
                reply_ok(id, serde_json::to_value(&p).unwrap_or_default()),
                Vec::new(),
            ),
            Err(e) => (Some(reply_err(id, e.code, &e.message)), Vec::new()),
        },
        Command::Presence { channel } => {
            let ns = s.node.config().namespace(channel.namespace());
            let allowed =
                session.is_subscribed(&channel) || session.identity().check_subscribe(&channel, ns).is_ok();
            if !allowed {
                (
                    Some(reply_err(
                        id,
                        ErrorCode::Forbidden,
                        "this token does not allow reading that channel's presence",
                    )),
                    Vec::new(),
                )
            } else {
                match s.node.presence(session.app(), &channel).await {
                    Ok(members) => (reply_ok(id, serde_json::json!({"members": members})), Vec::new()),
                    Err(e) => (Some(reply_err(id, e.code, &e.message)), Vec::new()),
                }
            }
        }
        Command::Ping => (reply_ok(id, serde_json::json!({})), Vec::new()),
        Command::Refresh { token } => {
            match s
                .node
                .authenticate_client(session.app().as_str(), Some(&token))
                .await
            {
                Ok((_, identity)) => match session.refresh(identity).await {
                    Ok(revoked) => {
                        *expires = session
                            .token_remaining()
                            .map(|d| Instant::now() + d.max(Duration::from_millis(1)));
                        let revoked: Vec<&str> = revoked.iter().map(|c| c.as_str()).collect();
                        (
                            reply_ok(
                                id,
                                serde_json::json!({"expires": session.identity().expires, "revoked": revoked}),
                            ),
                            Vec::new(),
                        )
                    }
                    Err(e) => (Some(reply_err(id, e.code, &e.message)), Vec::new()),
                },
                Err(e) => (Some(reply_err(id, e.code, &e.message)), Vec::new()),
            }
        }
    };
    if let Some(r) = reply {
        if !send(socket, Message::Text(r.into()), idle).await {
            return false;
        }
    }
    events.is_empty() || send_events(socket, session, &events, idle).await
}
