//! Server-Sent Events: `GET /v1/apps/{app}/events?channel=a&channel=b&token=T`.
//!
//! One stream carries every channel of the connection. Each event's `id:` is the
//! cursor over all of them *after that event*, so a browser that loses the
//! connection anywhere resumes (with `Last-Event-ID`) exactly after the last event
//! it processed. Refusals that retrying cannot fix (401, 403, 404, 429) answer
//! non-200 before the stream starts; everything transient (shutdown, broker
//! trouble) ends a 200 stream instead, since EventSource only retries those.
//!
//! Each message's `event:` is its published event name, so pages can listen per
//! name; with `?dispatch=message` every message is `event: message` instead (the
//! envelope still carries its name), for clients such as the SDK that cannot know
//! all event names in advance.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_node::{Event, Session, Transport, Waiter};
use herald_protocol::{sse, ChannelName, ErrorCode};
use tokio::time::{Instant, Interval};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::ApiError;
use crate::request::Query;
use crate::subscribe::open;
use crate::AppState;

mod native;

/// The heartbeat sent on a quiet stream: a named event, which EventSource
/// dispatches (a comment line keeps proxies from closing the stream but is
/// invisible to the page), so a client can tell a quiet stream from one that
/// went silent on the way (the SDK reconnects then, docs/sdk.md).
pub(crate) const HEARTBEAT: &[u8] = b"event: heartbeat\ndata: {}\n\n";

/// The `disconnect` event's data when the server shuts down.
const SHUTDOWN: &str = r#"{"reason":"shutdown","reconnect":true}"#;
/// The `error` event's data when the token expires.
const TOKEN_EXPIRED: &str =
    r#"{"code":"token_expired","message":"the token has expired; reconnect with a fresh one"}"#;

/// The `id:` of each event: the cursor over every channel, updated event by event.
struct Ids {
    parts: Vec<(ChannelName, Arc<str>)>,
}

impl Ids {
    fn set(&mut self, channel: &ChannelName, part: Arc<str>) {
        if let Some(p) = self.parts.iter_mut().find(|(c, _)| c == channel) {
            p.1 = part;
        }
    }

    fn render(&self) -> String {
        let mut out = Vec::new();
        self.write(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes the cursor straight into the output: no allocation per event.
    fn write(&self, out: &mut Vec<u8>) {
        for (i, (_, p)) in self.parts.iter().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            out.extend_from_slice(p.as_bytes());
        }
    }
}

/// Appends events to `out`; returns the number of messages written.
fn write_events(out: &mut Vec<u8>, ids: &mut Ids, events: &[Event], named: bool) -> u64 {
    let mut messages = 0;
    for ev in events {
        match ev {
            Event::Message { delivery, .. } => {
                ids.set(&delivery.envelope.channel, delivery.cursor.clone());
                out.extend_from_slice(b"id: ");
                ids.write(out);
                out.push(b'\n');
                out.extend_from_slice(delivery.sse(named));
                messages += 1;
            }
            Event::Reset(r) => {
                ids.set(&r.channel, Arc::from(r.cursor.as_str()));
                sse::write_event(out, Some(&ids.render()), "reset", &r.to_json());
            }
            Event::Presence(p) => sse::write_event(out, None, "presence", p),
            Event::Raw(bytes) => out.extend_from_slice(bytes),
        }
    }
    messages
}

pub(crate) struct Stream {
    session: Session,
    waiter: Waiter,
    ids: Ids,
    first: Option<Bytes>,
    heartbeat_every: Duration,
    heartbeat: Option<Interval>,
    shutdown: CancellationToken,
    expires: Option<Instant>,
    done: bool,
    named: bool,
}

impl Stream {
    /// The next bytes to write; None when the stream is over.
    pub(crate) async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.done {
            return None;
        }
        let expiry = async {
            match self.expires {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.waiter.ready() => {}
            _ = heartbeat_tick(&mut self.heartbeat, self.heartbeat_every) => {
                Box::pin(self.session.tick()).await;
                return Some(Bytes::from_static(HEARTBEAT));
            }
            _ = self.shutdown.cancelled() => {
                self.done = true;
                let mut out = Vec::new();
                sse::write_event(&mut out, None, "disconnect", SHUTDOWN);
                return Some(Bytes::from(out));
            }
            _ = expiry => {
                self.done = true;
                let mut out = Vec::new();
                sse::write_event(&mut out, None, "error", TOKEN_EXPIRED);
                return Some(Bytes::from(out));
            }
        }
        let events = self.session.drain().await;
        let mut out = Vec::new();
        let n = write_events(&mut out, &mut self.ids, &events, self.named);
        if out.is_empty() {
            // Only duplicates were queued: nothing to write, keep the stream alive.
            return Some(Bytes::new());
        }
        self.session.delivered(n, out.len() as u64);
        Some(Bytes::from(out))
    }
}

/// Waits for the next heartbeat, creating the interval on first use.
async fn heartbeat_tick(slot: &mut Option<Interval>, every: Duration) {
    let interval = slot.get_or_insert_with(|| {
        let mut i = tokio::time::interval_at(Instant::now() + every, every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    interval.tick().await;
}

/// What opening an SSE request gave.
pub(crate) enum Opened {
    /// A live stream: write its chunks until it ends.
    Live(Box<Stream>),
    /// A transient failure, answered as a short 200 stream that ends (so that
    /// EventSource retries by itself).
    Transient(Bytes),
}

/// Authenticates, subscribes and prepares the stream of an SSE request. Shared by
/// the axum route and the native HTTP/1 path (listener.rs).
pub(crate) async fn start(
    s: &AppState,
    app: &str,
    headers: &HeaderMap,
    query: &Query,
) -> Result<Opened, ApiError> {
    let retry = s.options.sse_retry.as_millis() as u64;
    // `?dispatch=message`: every message as `event: message` (see the module doc).
    let named = match query.get("dispatch") {
        None | Some("named") => true,
        Some("message") => false,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!("dispatch={other:?}: use \"named\" (the default) or \"message\""),
            ))
        }
    };
    let (session, events, before) = match open(s, app, headers, query, Transport::Sse, |_| None).await {
        Ok(x) => x,
        Err(e)
            if matches!(
                e.0.code,
                ErrorCode::BrokerUnavailable | ErrorCode::StoreUnavailable | ErrorCode::ShuttingDown
            ) =>
        {
            let mut out = Vec::new();
            sse::write_retry(&mut out, retry.max(5000));
            let body = serde_json::json!({"code": e.0.code.as_str(), "message": e.0.message}).to_string();
            sse::write_event(&mut out, None, "error", &body);
            return Ok(Opened::Transient(Bytes::from(out)));
        }
        Err(e) => return Err(e),
    };
    let mut first = Vec::new();
    sse::write_retry(&mut first, retry);
    // Ids start from the positions before the replay and advance event by event.
    let mut ids = Ids { parts: before };
    let n = write_events(&mut first, &mut ids, &events, named);
    // Always hand the browser the current cursor, even when nothing was replayed:
    // a reconnect before the first message must not lose what is published meanwhile.
    // The `open` event also tells clients that the stream really flows (a buffering
    // proxy passes headers but holds this back), and how often a quiet stream
    // carries a heartbeat (milliseconds).
    let cursor = session.cursor();
    let heartbeat = s.options.sse_heartbeat.as_millis();
    sse::write_event(
        &mut first,
        Some(&cursor),
        "open",
        &format!("{{\"cursor\":\"{cursor}\",\"heartbeat\":{heartbeat}}}"),
    );
    session.delivered(n, first.len() as u64);
    let expires = session
        .token_remaining()
        .map(|d| Instant::now() + d.max(Duration::from_millis(1)));
    Ok(Opened::Live(Box::new(Stream {
        waiter: session.waiter(),
        session,
        ids,
        first: Some(Bytes::from(first)),
        heartbeat_every: s.options.sse_heartbeat,
        heartbeat: None,
        shutdown: s.node.shutdown_token(),
        expires,
        done: false,
        named,
    })))
}

impl Stream {
    /// The connection's tracing span.
    pub(crate) fn span(&self) -> tracing::Span {
        let span = tracing::debug_span!("conn", app = %self.session.app(), transport = "sse", id = self.session.id());
        span.in_scope(|| tracing::debug!(channels = self.session.channels().len(), "connected"));
        span
    }
}

/// `GET /v1/apps/{app}/events` (through axum; fresh HTTP/1.1 connections take the
/// native path of listener.rs, with the same bytes).
pub async fn events(
    State(s): State<AppState>,
    Path(app): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    let stream = match start(&s, &app, &headers, &query).await? {
        Opened::Live(stream) => stream,
        Opened::Transient(bytes) => return Ok(stream_response(Body::from(bytes))),
    };
    let span = stream.span();
    let body = futures_util::stream::unfold((stream, span), |(mut st, span)| async move {
        let chunk = st.next_chunk().instrument(span.clone()).await;
        chunk.map(|chunk| (Ok::<_, Infallible>(chunk), (st, span)))
    });
    Ok(stream_response(Body::from_stream(body)))
}

fn stream_response(body: Body) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}
