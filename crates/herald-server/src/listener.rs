//! The front door: accepts connections, reads the first request head, serves a
//! fresh HTTP/1.1 SSE request natively, and hands everything else to hyper and the
//! axum router.
//!
//! Why: an SSE connection is one request that then only receives. Through hyper it
//! keeps an 8-16 KB read buffer and an 8 KB write buffer for its whole life (valgrind
//! massif, docs/benchmarks.md), and every chunk goes through the body and chunked
//! encoding layers. Natively, the request head is parsed once (httparse), its
//! buffer is dropped, and the stream's bytes go to the socket with one write per
//! batch, close-delimited (RFC 9112 6.3: no chunk framing), with a write timeout so
//! a client that stops reading cannot hold its connection forever. The bytes on the
//! wire are the same as through axum's route (sse.rs builds both).
//!
//! Any other first request (another path, an upgrade, HTTP/1.0, HTTP/2, a body, a
//! head that does not parse) is replayed to hyper, which serves the connection from
//! then on, keep-alive and WebSocket upgrades included.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::Router;
use bytes::{Bytes, BytesMut};
use herald_protocol::{ErrorBody, ErrorCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::cors::CorsPolicy;
use crate::error::ApiError;
use crate::request::Query;
use crate::socket::{close_lingering, Shared};
use crate::sse::{self, Opened, Stream};
use crate::AppState;

/// The longest request head read before handing the connection to hyper.
const MAX_HEAD: usize = 16 * 1024;

/// Accepts connections until `shutdown` resolves, then drains (see `crate::serve`).
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let node = state.node.clone();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let tracker = TaskTracker::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A whole request head within the limit (a head sent a byte at a time is
    // cut), on every request of a connection hyper serves.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.options.request_head_timeout)
        // Each connection may hold this much while its head arrives: well
        // below hyper's ~400 KiB (a bound it keeps loosely; the router's
        // `checked_head` is exact).
        .max_buf_size(crate::request::MAX_REQUEST_HEAD);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little, go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (router, state, builder) = (router.clone(), state.clone(), builder.clone());
                let watcher = graceful.watcher();
                tracker.spawn(connection(stream, router, state, builder, watcher));
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: telling clients to reconnect");
    node.shutdown().await;
    tracker.close();
    let deadline = state.options.shutdown_deadline;
    let drained = async {
        graceful.shutdown().await;
        tracker.wait().await;
    };
    if tokio::time::timeout(deadline, drained).await.is_err() {
        tracing::warn!(
            ?deadline,
            "drain deadline passed; closing the remaining connections"
        );
    }
    node.flush_usage().await;
    Ok(())
}

async fn connection(
    mut stream: TcpStream,
    router: Router,
    state: AppState,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    // Every step is boxed: a task's future is as large as its largest state, for
    // as long as it lives, so an idle SSE or WebSocket connection must not carry
    // the head reader's or hyper's state (docs/decisions.md, memory per connection).
    let limit = state.options.request_head_timeout;
    let (head, complete) = match Box::pin(read_head(&mut stream, limit)).await {
        Head::Read(head, complete) => (head, complete),
        Head::Gone => return,
        Head::TimedOut => {
            let e = ApiError::new(
                ErrorCode::RequestTimeout,
                format!("the request head did not arrive within {limit:?}"),
            );
            return Box::pin(answer_and_close(stream, error_response(&e, ""), &state)).await;
        }
    };
    route(head, complete, stream, router, state, builder, watcher).await;
}

/// Writes a whole answer, then closes in stages (socket.rs).
async fn answer_and_close(mut stream: TcpStream, bytes: Vec<u8>, state: &AppState) {
    let write_timeout = state.options.ws_idle_timeout;
    if let Ok(Ok(())) = tokio::time::timeout(write_timeout, stream.write_all(&bytes)).await {
        drop(bytes);
        close_lingering(stream).await;
    }
}

type Boxed = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The rest of the connection: a native path, or hyper with the head replayed.
fn route(
    head: BytesMut,
    complete: bool,
    stream: TcpStream,
    router: Router,
    state: AppState,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
) -> Boxed {
    if complete {
        if let Some(req) = native_request(&head) {
            return match req.kind {
                Kind::Sse => Box::pin(native_sse(stream, state, req)),
                Kind::WebSocket => Box::pin(native_ws(stream, state, req)),
            };
        }
    }
    // Each request knows the client's address (axum's `ConnectInfo`).
    let peer = stream.peer_addr().ok();
    let service = tower::ServiceExt::map_request(
        router,
        move |mut req: axum::http::Request<hyper::body::Incoming>| {
            if let Some(p) = peer {
                req.extensions_mut().insert(axum::extract::ConnectInfo(p));
            }
            req
        },
    );
    // Shared, so that the socket is closed in stages once hyper is done with it
    // (unless an upgraded WebSocket still holds it).
    let socket = Arc::new(stream);
    let io = TokioIo::new(Prefixed {
        prefix: head.freeze(),
        inner: Shared(socket.clone()),
    });
    let conn = builder
        .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
        .into_owned();
    Box::pin(async move {
        let _ = watcher.watch(conn).await;
        if let Ok(stream) = Arc::try_unwrap(socket) {
            Box::pin(close_lingering(stream)).await;
        }
    })
}

/// What came of reading the first request head.
enum Head {
    /// The bytes read, and false when the head is too long for this path
    /// (hyper answers).
    Read(BytesMut, bool),
    /// The client left.
    Gone,
    /// The whole head did not arrive in time (one byte at a time is no excuse).
    TimedOut,
}

/// Reads the first request head within `limit`, all reads together.
async fn read_head(stream: &mut TcpStream, limit: Duration) -> Head {
    let deadline = tokio::time::Instant::now() + limit;
    let mut head = BytesMut::with_capacity(1024);
    loop {
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut head)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Head::Gone,
            Ok(Ok(_)) => {}
            Err(_) if head.is_empty() => return Head::Gone, // an idle connection: just close
            Err(_) => return Head::TimedOut,
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Head::Read(head, true);
        }
        if head.len() >= MAX_HEAD {
            return Head::Read(head, false);
        }
    }
}

/// Which native path a request takes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Sse,
    WebSocket,
}

/// A fresh SSE or WebSocket request, parsed.
pub(crate) struct NativeRequest {
    pub(crate) kind: Kind,
    pub(crate) app: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: HeaderMap,
}

/// The request in `head`, when it is one a native path serves: `GET
/// /v1/apps/{app}/events` over HTTP/1.1 without a body or an upgrade, or a
/// well-formed WebSocket upgrade `GET /v1/apps/{app}/ws` over HTTP/1.1.
pub(crate) fn native_request(head: &[u8]) -> Option<NativeRequest> {
    let mut raw = [httparse::EMPTY_HEADER; 48];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return None, // partial, invalid, or followed by more bytes (pipelining, a body)
    }
    if req.method != Some("GET") || req.version != Some(1) {
        return None;
    }
    let target = req.path?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    let rest = path.strip_prefix("/v1/apps/")?;
    let (app, kind) = if let Some(app) = rest.strip_suffix("/events") {
        (app, Kind::Sse)
    } else {
        (rest.strip_suffix("/ws")?, Kind::WebSocket)
    };
    if app.is_empty()
        || !app
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return None;
    }
    // No Host, or two: the router's answer (request::one_host).
    if req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .count()
        != 1
    {
        return None;
    }
    let mut headers = HeaderMap::new();
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let refused = match kind {
            Kind::Sse => matches!(
                name.as_str(),
                "upgrade" | "content-length" | "transfer-encoding" | "expect"
            ),
            Kind::WebSocket => matches!(name.as_str(), "content-length" | "transfer-encoding" | "expect"),
        };
        if refused {
            return None;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) {
            headers.append(n, v);
        }
    }
    if kind == Kind::WebSocket && crate::ws::upgrade_key(&headers).is_err() {
        return None; // not a well-formed upgrade: axum's route answers it
    }
    Some(NativeRequest {
        kind,
        app: app.to_owned(),
        query,
        headers,
    })
}

/// What the native SSE path writes: a whole response, or a head and a live stream.
enum Answer {
    Whole(Vec<u8>),
    Live(Box<Stream>, Vec<u8>),
}

async fn native_sse(stream: TcpStream, state: AppState, req: NativeRequest) {
    let write_timeout = state.options.ws_idle_timeout;
    // Boxed, and everything the opening needs (the request, the query, the headers,
    // authentication, store and broker calls) ends with it: an open stream's task
    // holds only the stream (docs/decisions.md, memory per connection).
    let answer = Box::pin(open_native_sse(&state, req)).await;
    match answer {
        Answer::Whole(bytes) => Box::pin(answer_and_close(stream, bytes, &state)).await,
        Answer::Live(st, head) => {
            let span = st.span();
            st.serve_native(stream, head, write_timeout)
                .instrument(span)
                .await;
        }
    }
}

async fn open_native_sse(state: &AppState, req: NativeRequest) -> Answer {
    let query = Query::parse(req.query.as_deref());
    let cors = CorsPolicy::new(&state.options.cors_origins).header_lines(&req.headers);
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache, no-transform\r\nx-accel-buffering: no\r\nconnection: close\r\n{cors}\r\n"
    );
    match sse::start(state, &req.app, &req.headers, &query).await {
        Err(e) => Answer::Whole(error_response(&e, &cors)),
        Ok(Opened::Transient(bytes)) => {
            let mut out = head.into_bytes();
            out.extend_from_slice(&bytes);
            Answer::Whole(out)
        }
        Ok(Opened::Live(st)) => Answer::Live(st, head.into_bytes()),
    }
}

/// An error as a whole HTTP/1.1 response that closes the connection, the same
/// bytes as the axum routes answer.
fn error_response(e: &ApiError, cors: &str) -> Vec<u8> {
    let status = axum::http::StatusCode::from_u16(e.0.code.status())
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_string(&ErrorBody::new(e.0.code, &e.0.message)).unwrap_or_default();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{cors}\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

async fn native_ws(mut stream: TcpStream, state: AppState, req: NativeRequest) {
    let write_timeout = state.options.ws_idle_timeout;
    let cors = CorsPolicy::new(&state.options.cors_origins).header_lines(&req.headers);
    let query = Query::parse(req.query.as_deref());
    let opened = Box::pin(crate::ws::accept(&state, &req.app, &req.headers, &query)).await;
    let accept_key = crate::ws::upgrade_key(&req.headers);
    drop((query, req));
    match (opened, accept_key) {
        (Ok(session), Ok(key)) => {
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: {key}\r\n{cors}\r\n"
            );
            drop((cors, key));
            if !matches!(
                tokio::time::timeout(write_timeout, stream.write_all(head.as_bytes())).await,
                Ok(Ok(()))
            ) {
                return;
            }
            drop(head);
            crate::ws::serve_native(stream, session, state).await;
        }
        (Err(e), _) | (_, Err(e)) => {
            let bytes = error_response(&e, &cors);
            Box::pin(answer_and_close(stream, bytes, &state)).await;
        }
    }
}

/// A stream that first yields bytes already read from it.
struct Prefixed {
    prefix: Bytes,
    inner: Shared,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_sse_requests_take_the_native_path() {
        let ok =
            b"GET /v1/apps/demo/events?channel=a&token=t HTTP/1.1\r\nHost: x\r\nLast-Event-ID: abc\r\n\r\n";
        let r = native_request(ok).unwrap();
        assert_eq!(r.kind, Kind::Sse);
        assert_eq!(r.app, "demo");
        assert_eq!(r.query.as_deref(), Some("channel=a&token=t"));
        assert_eq!(r.headers.get("last-event-id").unwrap(), "abc");
        for no in [
            &b"GET /v1/apps/demo/events HTTP/1.1\r\n\r\n"[..],
            b"GET /v1/apps/demo/events HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            b"GET /v1/apps/demo/events HTTP/1.0\r\n\r\n",
            b"POST /v1/apps/demo/events HTTP/1.1\r\n\r\n",
            b"GET /v1/apps/demo/poll HTTP/1.1\r\n\r\n",
            b"GET /v1/apps/De%6Do/events HTTP/1.1\r\n\r\n",
            b"GET /v1/apps/demo/events HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"GET /v1/apps/demo/events HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /v1/apps/demo/events HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert!(native_request(no).is_none(), "{}", String::from_utf8_lossy(no));
        }
    }
}
