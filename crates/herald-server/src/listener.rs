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
use herald_protocol::ErrorBody;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::request::Query;
use crate::sse::{self, Opened};
use crate::AppState;

/// The longest request head read before handing the connection to hyper.
const MAX_HEAD: usize = 16 * 1024;
/// How long a new connection may take to send its first request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

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
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
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
                tracker.spawn(async move {
                    connection(stream, router, state, builder, watcher).await;
                });
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
    let mut head = BytesMut::with_capacity(1024);
    let complete = loop {
        match tokio::time::timeout(HEAD_TIMEOUT, stream.read_buf(&mut head)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return, // closed before a request
            Ok(Ok(_)) => {}
            Err(_) => return, // nothing sent in time
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if head.len() >= MAX_HEAD {
            break false; // let hyper answer it
        }
    };
    if complete {
        if let Some(req) = sse_request(&head) {
            drop(head);
            native_sse(stream, state, req).await;
            return;
        }
    }
    let io = TokioIo::new(Prefixed {
        prefix: head.freeze(),
        inner: stream,
    });
    let conn = builder
        .serve_connection_with_upgrades(io, TowerToHyperService::new(router))
        .into_owned();
    let _ = watcher.watch(conn).await;
}

/// A fresh SSE request, parsed.
struct SseRequest {
    app: String,
    query: Option<String>,
    headers: HeaderMap,
}

/// The SSE request in `head`, when it is one this path serves: `GET
/// /v1/apps/{app}/events` over HTTP/1.1, without a body or an upgrade.
fn sse_request(head: &[u8]) -> Option<SseRequest> {
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
    let app = path.strip_prefix("/v1/apps/")?.strip_suffix("/events")?;
    if app.is_empty()
        || !app
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return None;
    }
    let mut headers = HeaderMap::new();
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "upgrade" | "content-length" | "transfer-encoding" | "expect"
        ) {
            return None;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) {
            headers.append(n, v);
        }
    }
    Some(SseRequest {
        app: app.to_owned(),
        query,
        headers,
    })
}

/// The `Access-Control-Allow-Origin` line for `origin`, if allowed.
fn cors_line(origins: &[String], headers: &HeaderMap) -> String {
    let Some(origin) = headers.get("origin").and_then(|o| o.to_str().ok()) else {
        return String::new();
    };
    if origins.iter().any(|o| o == "*") {
        return "access-control-allow-origin: *\r\n".to_owned();
    }
    if origins.iter().any(|o| o == origin) {
        return format!("access-control-allow-origin: {origin}\r\nvary: origin\r\n");
    }
    String::new()
}

async fn native_sse(mut stream: TcpStream, state: AppState, req: SseRequest) {
    let query = Query::parse(req.query.as_deref());
    let cors = cors_line(&state.options.cors_origins, &req.headers);
    let opened = sse::start(&state, &req.app, &req.headers, &query).await;
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache, no-transform\r\nx-accel-buffering: no\r\nconnection: close\r\n{cors}\r\n"
    );
    let write_timeout = state.options.ws_idle_timeout;
    match opened {
        Err(e) => {
            let status = axum::http::StatusCode::from_u16(e.0.code.status())
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            let body = serde_json::to_string(&ErrorBody::new(e.0.code, &e.0.message)).unwrap_or_default();
            let res = format!(
                "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{cors}\r\n{body}",
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                body.len()
            );
            let _ = tokio::time::timeout(write_timeout, stream.write_all(res.as_bytes())).await;
            let _ = stream.shutdown().await;
        }
        Ok(Opened::Transient(bytes)) => {
            let mut out = head.into_bytes();
            out.extend_from_slice(&bytes);
            let _ = tokio::time::timeout(write_timeout, stream.write_all(&out)).await;
            let _ = stream.shutdown().await;
        }
        Ok(Opened::Live(mut st)) => {
            let span = st.span();
            async move {
                let (mut rd, mut wr) = stream.split();
                let mut pending: Option<Bytes> = Some(Bytes::from(head));
                let mut sink = [0u8; 64];
                loop {
                    if let Some(first) = pending.take() {
                        if !write(&mut wr, &first, write_timeout).await {
                            return;
                        }
                    }
                    tokio::select! {
                        chunk = st.next_chunk() => match chunk {
                            Some(bytes) if bytes.is_empty() => {}
                            Some(bytes) => {
                                if !write(&mut wr, &bytes, write_timeout).await {
                                    tracing::debug!("client stopped reading; connection dropped");
                                    return;
                                }
                            }
                            None => {
                                let _ = wr.shutdown().await;
                                return;
                            }
                        },
                        read = rd.read(&mut sink) => match read {
                            Ok(0) | Err(_) => return, // the client went away
                            Ok(_) => {} // ignore anything it sends
                        },
                    }
                }
            }
            .instrument(span)
            .await;
        }
    }
}

/// Writes everything within `within`; false when the client took too long or left.
async fn write(wr: &mut tokio::net::tcp::WriteHalf<'_>, bytes: &[u8], within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, wr.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// A stream that first yields bytes already read from it.
struct Prefixed {
    prefix: Bytes,
    inner: TcpStream,
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
        let r = sse_request(ok).unwrap();
        assert_eq!(r.app, "demo");
        assert_eq!(r.query.as_deref(), Some("channel=a&token=t"));
        assert_eq!(r.headers.get("last-event-id").unwrap(), "abc");
        for no in [
            &b"GET /v1/apps/demo/events HTTP/1.0\r\n\r\n"[..],
            b"POST /v1/apps/demo/events HTTP/1.1\r\n\r\n",
            b"GET /v1/apps/demo/poll HTTP/1.1\r\n\r\n",
            b"GET /v1/apps/De%6Do/events HTTP/1.1\r\n\r\n",
            b"GET /v1/apps/demo/events HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"GET /v1/apps/demo/events HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /v1/apps/demo/events HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert!(sse_request(no).is_none(), "{}", String::from_utf8_lossy(no));
        }
    }
}
