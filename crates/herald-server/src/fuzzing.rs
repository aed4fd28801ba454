//! Entry points for the fuzz targets in `fuzz/` (built only with the `fuzzing`
//! feature, which nothing but `fuzz/Cargo.toml` turns on): the parsers of the
//! HTTP face that are private to this crate, driven exactly as a connection
//! drives them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::HeaderMap;
use herald_protocol::Cursor;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::request::Query;
use crate::ws::codec::{Incoming, WsConn, WsError};

/// What a WebSocket connection made of a byte stream.
#[derive(Debug, Default)]
pub struct WsOutcome {
    /// The whole text messages, in order.
    pub texts: Vec<String>,
    /// How many binary messages, pings/pongs and closes came.
    pub others: usize,
    /// The close code sent for a protocol error, if the stream broke the protocol.
    pub error: Option<u16>,
    /// Every byte the server wrote back (pongs, close frames).
    pub written: Vec<u8>,
}

/// Feeds `input` to the server side of a WebSocket connection (its reads cut
/// into chunks of `chunk` bytes, as a socket would deliver them) until the
/// stream ends, the client closes or breaks the protocol.
pub async fn ws_stream(input: &[u8], chunk: usize, max_message: usize) -> WsOutcome {
    let io = Script {
        input,
        at: 0,
        chunk: chunk.max(1),
        written: Vec::new(),
    };
    let mut conn = WsConn::new(io, max_message, Duration::from_secs(1));
    let mut out = WsOutcome::default();
    // Every message takes at least two bytes: the loop ends with the input.
    for _ in 0..=input.len() {
        match conn.next().await {
            Ok(Incoming::Text(t)) => out.texts.push(t),
            Ok(Incoming::Close) => {
                out.others += 1;
                break;
            }
            Ok(_) => out.others += 1,
            Err(WsError::Protocol(code)) => {
                out.error = Some(code);
                break;
            }
            Err(WsError::Io) => break,
        }
    }
    out.written = conn.into_io().written;
    out
}

/// A socket that reads from a script and keeps what is written.
struct Script<'a> {
    input: &'a [u8],
    at: usize,
    chunk: usize,
    written: Vec<u8>,
}

impl AsyncRead for Script<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(buf.remaining()).min(self.input.len() - self.at);
        let from = self.at;
        buf.put_slice(&self.input[from..from + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Script<'_> {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What the native path made of a request head.
#[derive(Debug)]
pub struct Head {
    /// `"sse"` or `"ws"`.
    pub kind: &'static str,
    /// The app named in the path.
    pub app: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The headers kept.
    pub headers: HeaderMap,
}

/// The native path's reading of a first request head (listener.rs): `None`
/// when hyper would serve it instead.
pub fn native_request(head: &[u8]) -> Option<Head> {
    let r = crate::listener::native_request(head)?;
    Some(Head {
        kind: match r.kind {
            crate::listener::Kind::Sse => "sse",
            crate::listener::Kind::WebSocket => "ws",
        },
        app: r.app,
        query: r.query,
        headers: r.headers,
    })
}

/// What an SSE or long-poll request asks for, read as the handlers read it:
/// the channels, the resume cursor (`Last-Event-ID` or `?cursor=`) and the token.
pub fn subscribe_request(
    headers: &HeaderMap,
    query: Option<&str>,
) -> (Result<usize, String>, Result<Cursor, String>, Option<String>) {
    let q = Query::parse(query);
    let channels = q.channels().map(|c| c.len()).map_err(|e| e.0.message);
    let cursor = crate::request::cursor(headers, &q).map_err(|e| e.0.message);
    let token = crate::request::token(headers, &q).map(str::to_owned);
    (channels, cursor, token)
}
