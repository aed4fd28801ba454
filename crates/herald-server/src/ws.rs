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

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use herald_node::{ChannelPosition, Event, NodeError, Session, Transport};
use herald_protocol::frame::{self, Command};
use herald_protocol::{ErrorBody, ErrorCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::Instrument;

use crate::cors::CorsPolicy;
use crate::direct::{DirectWriter, Framing};
use crate::error::ApiError;
use crate::request::{token, Query};
use crate::socket::Shared;
use crate::AppState;

pub(crate) mod codec;
use codec::{Incoming, WsConn, WsError};

/// Authenticates a WebSocket request and opens its session. Shared by the axum
/// route and the native HTTP/1 path (listener.rs).
pub(crate) async fn accept(
    s: &AppState,
    app: &str,
    headers: &HeaderMap,
    query: &Query,
) -> Result<Session, ApiError> {
    // A page of a foreign origin learns nothing, not even whether its token is good.
    CorsPolicy::new(&s.options.cors_origins).check_websocket(headers)?;
    // Credentials next: a plain GET then tells a client why its upgrade failed
    // (browsers hide the HTTP status of a refused WebSocket).
    let (app, identity) = s.node.authenticate_client(app, token(headers, query)).await?;
    upgrade_key(headers)?;
    Ok(s.node.connect(&app, identity, Transport::WebSocket, None)?)
}

/// The `Sec-WebSocket-Accept` value for a valid upgrade request (RFC 6455 4.2.1).
pub(crate) fn upgrade_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    let version = headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes());
    let key = headers.get(header::SEC_WEBSOCKET_KEY);
    match key {
        Some(key)
            if has_token(header::CONNECTION, "upgrade")
                && has_token(header::UPGRADE, "websocket")
                && version == Some(b"13") =>
        {
            Ok(codec::accept_key(key.as_bytes()))
        }
        _ => Err(ApiError::new(
            ErrorCode::BadRequest,
            "this endpoint speaks WebSocket; connect with a WebSocket client (Connection: upgrade, \
             Upgrade: websocket, Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key)",
        )),
    }
}

/// The largest client message: the node's limit, and some room for the frame.
fn max_message(s: &AppState) -> usize {
    s.node.config().limits.max_message_size + 64 * 1024
}

/// `GET /v1/apps/{app}/ws` through axum (a connection that sent another request
/// first; fresh connections take the native path of listener.rs).
pub async fn upgrade(
    State(s): State<AppState>,
    Path(app): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    mut req: Request,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    let session = accept(&s, &app, &headers, &query).await?;
    let accept_key = upgrade_key(&headers)?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let socket = WsConn::new(TokioIo::new(upgraded), max_message(&s), s.options.ws_idle_timeout);
        let span =
            tracing::debug_span!("conn", app = %session.app(), transport = "websocket", id = session.id());
        run(socket, session, s, None).instrument(span).await;
    });
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept_key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(res)
}

/// Serves a WebSocket on a socket of its own, after the native path wrote the
/// `101` (listener.rs): the hub writes live messages straight to it while the
/// task sleeps (direct.rs).
pub(crate) async fn serve_native(socket: TcpStream, session: Session, s: AppState) {
    let socket = Arc::new(socket);
    let ws = WsConn::new(Shared(socket.clone()), max_message(&s), s.options.ws_idle_timeout);
    let writer = DirectWriter::new(socket.clone(), Framing::WebSocket, &session);
    session.set_direct(Box::new(writer));
    let span = tracing::debug_span!("conn", app = %session.app(), transport = "websocket", id = session.id());
    run(ws, session, s, Some(socket)).instrument(span).await;
}

fn reply_ok(id: Option<u64>, ok: serde_json::Value) -> Option<String> {
    id.map(|id| serde_json::json!({"id": id, "ok": ok}).to_string())
}

fn reply_err(id: Option<u64>, code: ErrorCode, message: &str) -> String {
    reply_body(id, ErrorBody::new(code, message))
}

/// A node error as a reply, with its `retry_after` (seconds) when it has one.
fn reply_node_err(id: Option<u64>, e: &NodeError) -> String {
    reply_body(
        id,
        ErrorBody::new(e.code, e.message.as_str()).retry_after(e.retry_after_secs()),
    )
}

fn reply_body(id: Option<u64>, body: ErrorBody) -> String {
    match id {
        Some(id) => serde_json::json!({"id": id, "error": body.error}).to_string(),
        None => serde_json::json!({"error": body.error}).to_string(),
    }
}

/// The frame payload of an event (None for raw bytes, written as they are),
/// and whether it is a message.
fn push(ev: &Event) -> Option<(std::borrow::Cow<'_, [u8]>, bool)> {
    use std::borrow::Cow;
    Some(match ev {
        // The push bytes are shared by every subscriber.
        Event::Message { delivery, .. } => (Cow::Borrowed(&delivery.ws()[..]), true),
        Event::Reset(r) => {
            let mut s = String::from("{\"type\":\"reset\",");
            s.push_str(&r.to_json()[1..]);
            (Cow::Owned(s.into_bytes()), false)
        }
        Event::Presence(p) => {
            let mut s = String::from("{\"type\":\"presence\",");
            s.push_str(&p[1..]);
            (Cow::Owned(s.into_bytes()), false)
        }
        Event::Raw(_) => return None,
    })
}

/// The socket types this module serves: the native path's shared socket, and
/// hyper's upgraded connection.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Sends one text frame; false when the client left or took in nothing for the
/// idle timeout (a client that does not read must not hold its connection,
/// its session and this task forever).
async fn send<S: Io>(socket: &mut WsConn<S>, text: &str) -> bool {
    socket.send_text(text.as_bytes()).await.is_ok()
}

/// Writes `events` in one write (raw bytes the direct writer began go first, as
/// they are); false as [`send`].
async fn send_events<S: Io>(socket: &mut WsConn<S>, session: &Session, events: &[Event]) -> bool {
    let mut n = 0u64;
    let mut bytes = 0u64;
    let mut out = Vec::new();
    for ev in events {
        if let Event::Raw(b) = ev {
            out.extend_from_slice(b);
            continue;
        }
        let Some((payload, is_msg)) = push(ev) else {
            continue;
        };
        bytes += payload.len() as u64;
        if is_msg {
            n += 1;
        }
        codec::push_text(&mut out, &payload);
    }
    if out.is_empty() {
        return true;
    }
    if socket.write_all(&out).await.is_err() {
        return false;
    }
    session.delivered(n, bytes);
    true
}

/// How long a server-initiated close waits for the client's Close frame.
const CLOSE_HANDSHAKE_WAIT: Duration = Duration::from_secs(5);

/// Sends a Close frame and completes the closing handshake (RFC 6455, 7.1.1):
/// dropping the socket while the client's frames (pongs, requests) are unread
/// makes the kernel reset the connection, and the client then loses the close
/// frame and its code. So read (and discard) until the client's Close, bounded.
async fn close<S: Io>(socket: &mut WsConn<S>, code: u16, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_WAIT, async {
        if socket.send_close(code, reason).await.is_err() {
            return;
        }
        while let Ok(msg) = socket.next().await {
            if msg == Incoming::Close {
                break;
            }
        }
    })
    .await;
}

/// What the loop does after a step.
enum Flow {
    Continue,
    Stop,
}

/// Handles what the client sent (pings and closes are answered by the codec).
async fn on_message<S: Io>(
    msg: Result<Incoming, WsError>,
    socket: &mut WsConn<S>,
    session: &mut Session,
    s: &AppState,
    expires: &mut Option<Instant>,
) -> Flow {
    match msg {
        Ok(Incoming::Text(text)) => {
            if !Box::pin(handle_frame(socket, session, s, &text, expires)).await {
                return Flow::Stop;
            }
        }
        Ok(Incoming::Binary) => {
            let r = reply_err(None, ErrorCode::BadFrame, "send JSON text frames, not binary");
            if !send(socket, &r).await {
                return Flow::Stop;
            }
        }
        Ok(Incoming::Control) => {}
        Err(WsError::Protocol(code)) => {
            tracing::debug!(code, "closed: the client broke the WebSocket protocol");
            return Flow::Stop;
        }
        Ok(Incoming::Close) | Err(WsError::Io) => return Flow::Stop,
    }
    Flow::Continue
}

enum Wake {
    Queue,
    Timer,
    Shutdown,
    Readable,
}

async fn run<S: Io>(mut socket: WsConn<S>, mut session: Session, s: AppState, raw: Option<Arc<TcpStream>>) {
    tracing::debug!("connected");
    let waiter = session.waiter();
    let shutdown = s.node.shutdown_token();
    let every = s.options.ws_ping;
    let idle = s.options.ws_idle_timeout;
    let mut last_seen = Instant::now();
    let mut next_ping = Instant::now() + every;
    let mut expires = session
        .token_remaining()
        .map(|d| Instant::now() + d.max(Duration::from_millis(1)));
    let mut scratch: Vec<ChannelPosition> = Vec::new();
    let raw = raw.as_deref();
    loop {
        // One timer for the ping and the token's expiry: an idle connection's
        // memory is what limits a node.
        let timer = match expires {
            Some(at) if at < next_ping => at,
            _ => next_ping,
        };
        // On a socket of its own with nothing queued, the task parks and the hub
        // writes (direct.rs). The codec buffers no writes, so nothing is pending.
        let parked = raw.is_some() && DirectWriter::park(&session);
        let wake = if let (true, Some(raw)) = (parked, raw) {
            let wake = tokio::select! {
                _ = waiter.ready() => Wake::Queue,
                _ = tokio::time::sleep_until(timer) => Wake::Timer,
                _ = shutdown.cancelled() => Wake::Shutdown,
                r = raw.readable() => match r {
                    Ok(()) => Wake::Readable,
                    Err(_) => Wake::Shutdown,
                },
            };
            if let Some(rest) = DirectWriter::unpark(&mut session, &mut scratch) {
                if Box::pin(socket.write_all(&rest)).await.is_err() {
                    return;
                }
            }
            if let Wake::Readable = wake {
                // Read what arrived (the codec keeps a partial frame for later).
                last_seen = Instant::now();
                while let Some(msg) = socket.next().now_or_never() {
                    if let Flow::Stop =
                        Box::pin(on_message(msg, &mut socket, &mut session, &s, &mut expires)).await
                    {
                        return;
                    }
                }
                socket.shrink();
                continue;
            }
            wake
        } else {
            tokio::select! {
                msg = socket.next() => {
                    last_seen = Instant::now();
                    if let Flow::Stop = Box::pin(on_message(msg, &mut socket, &mut session, &s, &mut expires)).await {
                        return;
                    }
                    continue;
                }
                _ = waiter.ready() => Wake::Queue,
                _ = tokio::time::sleep_until(timer) => Wake::Timer,
                _ = shutdown.cancelled() => Wake::Shutdown,
            }
        };
        match wake {
            Wake::Queue => {
                let sent = Box::pin(async {
                    let events = session.drain().await;
                    send_events(&mut socket, &session, &events).await
                })
                .await;
                if !sent {
                    return;
                }
            }
            Wake::Timer if expires.is_some_and(|at| at <= Instant::now()) => {
                Box::pin(close(
                    &mut socket,
                    ErrorCode::TokenExpired.close_code(),
                    "token expired; reconnect with a fresh token",
                ))
                .await;
                return;
            }
            Wake::Timer => {
                if Instant::now() < next_ping {
                    continue;
                }
                next_ping = Instant::now() + every;
                if last_seen.elapsed() >= idle {
                    Box::pin(close(
                        &mut socket,
                        ErrorCode::IdleTimeout.close_code(),
                        "idle timeout: no frame or pong received",
                    ))
                    .await;
                    return;
                }
                Box::pin(session.tick()).await;
                if Box::pin(socket.send_ping()).await.is_err() {
                    return;
                }
            }
            Wake::Shutdown => {
                Box::pin(close(
                    &mut socket,
                    ErrorCode::ShuttingDown.close_code(),
                    "server restarting; reconnect with your cursors",
                ))
                .await;
                return;
            }
            Wake::Readable => {}
        }
    }
}

/// Handles one client frame; false when the connection must end.
async fn handle_frame<S: Io>(
    socket: &mut WsConn<S>,
    session: &mut Session,
    s: &AppState,
    text: &str,
    expires: &mut Option<Instant>,
) -> bool {
    let frame = match frame::parse(text) {
        Ok(f) => f,
        Err((code, msg)) => return send(socket, &reply_err(None, code, &msg)).await,
    };
    let id = frame.id;
    let command = match frame.command {
        Ok(c) => c,
        Err((code, msg)) => return send(socket, &reply_err(id, code, &msg)).await,
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
            Err(e) => (Some(reply_node_err(id, &e)), Vec::new()),
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
        if !send(socket, &r).await {
            return false;
        }
    }
    events.is_empty() || send_events(socket, session, &events).await
}
