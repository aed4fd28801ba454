//! Subscriber connections: the dialer (one HTTP client per source address, or
//! the WebSocket target and its source addresses), opening and subscribing a
//! connection, reading it, and reconnecting.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::args::{fill, sub_template, BenchArgs, Transport, WsFrames};
use crate::report::redact_tokens;
use crate::scenario::churn::churn_subscriber;
use crate::scenario::resume::resume_subscriber;
use crate::track::{Mode, Shared, SubSpec, SubStats, Track};
use crate::wire::{find, herald_ws_frame, now_micros, parse_block, sse_field, ws_url, WsPush};

/// A WebSocket connection (TCP connect, handshake, subscribe reply) gives up after this.
pub(crate) const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The read buffer of a WebSocket subscriber (tungstenite's default is 128 KiB).
pub(crate) const WS_READ_BUFFER: usize = 4096;

/// Churn and resume: attempts per reconnection, and the pause between two.
pub(crate) const RECONNECT_ATTEMPTS: u32 = 3;

pub(crate) const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

/// How subscriber connections are made: one HTTP client per source address, or the
/// WebSocket target and the source addresses to bind.
pub(crate) enum Dialer {
    Sse(Vec<reqwest::Client>),
    Ws {
        target: SocketAddr,
        sources: Vec<Option<IpAddr>>,
    },
}

impl Dialer {
    pub(crate) fn sources(&self) -> usize {
        match self {
            Self::Sse(clients) => clients.len(),
            Self::Ws { sources, .. } => sources.len(),
        }
    }
}

pub(crate) type WsStream = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// One open subscriber connection.
pub(crate) enum Conn {
    Sse { res: reqwest::Response, buf: Vec<u8> },
    Ws(Box<WsStream>),
}

impl Conn {
    /// Waits for input and books what it carries; false when the connection ended.
    pub(crate) async fn pump(&mut self, track: &mut Track, sh: &Shared) -> bool {
        match self {
            Self::Sse { res, buf } => {
                let Ok(Some(chunk)) = res.chunk().await else {
                    return false;
                };
                buf.extend_from_slice(&chunk);
                let now = now_micros();
                let mut start = 0;
                let mut got = 0u64;
                while let Some(end) = find(&buf[start..], b"\n\n") {
                    let block = &buf[start..start + end];
                    start += end + 2;
                    if track.keep_cursor {
                        track.set_cursor(sse_field(block, b"id:"));
                    }
                    match parse_block(block) {
                        Some(p) => got += track.payload(p, now),
                        None => {
                            if find(block, b"event: reset").is_some() {
                                track.st.resets += 1;
                            }
                        }
                    }
                }
                buf.drain(..start);
                track.delivered(sh, got, now);
                true
            }
            Self::Ws(ws) => {
                let Some(Ok(msg)) = ws.next().await else {
                    return false;
                };
                let frame: &[u8] = match &msg {
                    Message::Text(t) => t.as_bytes(),
                    Message::Binary(b) => b,
                    Message::Close(_) => return false,
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return true,
                };
                let now = now_micros();
                let got = track.ws_frame(frame, sh.frames, now);
                track.delivered(sh, got, now);
                true
            }
        }
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut why = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        why = format!("{why}: {s}");
        src = s.source();
    }
    why
}

/// A TCP connection from `source` (when given), then the WebSocket handshake.
pub(crate) async fn ws_connect(
    target: SocketAddr,
    source: Option<IpAddr>,
    url: &str,
) -> Result<WsStream, String> {
    let socket = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| format!("cannot create a socket: {e}"))?;
    // Churned connections leave TIME_WAIT sockets behind on this side.
    let _ = socket.set_reuseaddr(true);
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("cannot bind {ip}: {e}"))?;
    }
    let stream = match tokio::time::timeout(OPEN_TIMEOUT, socket.connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect to {target}: {e}")),
        Err(_) => return Err(format!("connect to {target} timed out")),
    };
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20));
    let handshake = tokio_tungstenite::client_async_with_config(url, stream, Some(config));
    match tokio::time::timeout(OPEN_TIMEOUT, handshake).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(res))) => Err(format!("subscribe answered {}", res.status())),
        Ok(Err(e)) => Err(format!("WebSocket handshake with {}: {e}", redact_tokens(url))),
        Err(_) => Err(format!(
            "WebSocket handshake with {} timed out",
            redact_tokens(url)
        )),
    }
}

/// Sends Herald's subscribe frame (with the cursor when resuming) and waits for its reply.
pub(crate) async fn herald_subscribe(
    ws: &mut WsStream,
    spec: &SubSpec,
    sh: &Shared,
    track: &mut Track,
) -> Result<(), String> {
    let mut frame = json!({"id": 1, "op": "subscribe", "channel": spec.channel_name});
    if let Some(c) = &track.cursor {
        frame["cursor"] = c.as_str().into();
    }
    ws.send(Message::text(frame.to_string()))
        .await
        .map_err(|e| format!("cannot send the subscribe frame: {e}"))?;
    let until = tokio::time::Instant::now() + OPEN_TIMEOUT;
    loop {
        let msg = match tokio::time::timeout_at(until, ws.next()).await {
            Err(_) => return Err("no reply to the subscribe frame".into()),
            Ok(None) => return Err("the connection ended before the subscribe reply".into()),
            Ok(Some(Err(e))) => return Err(format!("before the subscribe reply: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(c) => {
                return Err(format!(
                    "closed before the subscribe reply: {}",
                    c.map_or_else(String::new, |c| format!("{} {}", c.code, c.reason))
                ))
            }
            _ => continue,
        };
        let f = text.as_bytes();
        if let WsPush::Reply(ok, cursor) = herald_ws_frame(f) {
            if ok {
                track.set_cursor(cursor);
                return Ok(());
            }
            return Err(format!(
                "subscribe refused: {}",
                text.chars().take(300).collect::<String>()
            ));
        }
        let now = now_micros();
        let got = track.ws_frame(f, WsFrames::Herald, now);
        track.delivered(sh, got, now);
    }
}

/// Opens and subscribes one connection (resuming from the track's cursor, if any).
pub(crate) async fn open(spec: &SubSpec, sh: &Shared, track: &mut Track) -> Result<Conn, String> {
    match &sh.dialer {
        Dialer::Sse(clients) => {
            let client = clients.get(spec.src).ok_or("no HTTP client")?;
            let mut req = client.get(&spec.url).header("accept", "text/event-stream");
            if let Some(c) = &track.cursor {
                req = req.header("last-event-id", c.as_str());
            }
            match req.send().await {
                Ok(r) if r.status() == 200 => Ok(Conn::Sse {
                    res: r,
                    buf: Vec::with_capacity(512),
                }),
                Ok(r) => Err(format!("subscribe answered {}", r.status())),
                Err(e) => Err(error_chain(&e)),
            }
        }
        Dialer::Ws { target, sources } => {
            let source = sources.get(spec.src).copied().flatten();
            let mut ws = ws_connect(*target, source, &spec.url).await?;
            if sh.frames == WsFrames::Herald {
                herald_subscribe(&mut ws, spec, sh, track).await?;
            }
            Ok(Conn::Ws(Box::new(ws)))
        }
    }
}

/// Opens a connection behind the gate. `Err(None)`: the run stopped first.
pub(crate) async fn connect(spec: &SubSpec, sh: &Shared, track: &mut Track) -> Result<Conn, Option<String>> {
    let permit = tokio::select! {
        _ = sh.stop.cancelled() => return Err(None),
        p = sh.gate.acquire() => p,
    };
    track.reset_connection();
    let opened = tokio::select! {
        _ = sh.stop.cancelled() => return Err(None),
        // Boxed: the handshake's state lives only while connecting.
        r = Box::pin(open(spec, sh, track)) => r,
    };
    drop(permit);
    let conn = opened.map_err(Some)?;
    track.connected(sh);
    Ok(conn)
}

/// Up to [`RECONNECT_ATTEMPTS`] attempts; `None` when all failed or the run stopped.
pub(crate) async fn reconnect(spec: &SubSpec, sh: &Shared, track: &mut Track) -> Option<Conn> {
    for attempt in 0..RECONNECT_ATTEMPTS {
        if attempt > 0 {
            tokio::select! {
                _ = sh.stop.cancelled() => return None,
                _ = tokio::time::sleep(RECONNECT_BACKOFF) => {}
            }
        }
        match connect(spec, sh, track).await {
            Ok(c) => {
                sh.tally.reconnects.fetch_add(1, Ordering::Relaxed);
                return Some(c);
            }
            Err(None) => return None,
            Err(Some(why)) => {
                sh.tally.reconnect_failed.fetch_add(1, Ordering::Relaxed);
                sh.tally.note(format!("reconnect: {why}"));
            }
        }
    }
    sh.tally.gave_up.fetch_add(1, Ordering::Relaxed);
    None
}

pub(crate) enum End {
    Stopped,
    Closed,
    Interrupted,
}

/// Reads until the run stops, the connection ends or `interrupt` fires.
pub(crate) async fn read_until(
    conn: &mut Conn,
    track: &mut Track,
    sh: &Shared,
    interrupt: impl Future<Output = ()>,
) -> End {
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
            _ = sh.stop.cancelled() => return End::Stopped,
            _ = &mut interrupt => return End::Interrupted,
            open = conn.pump(track, sh) => if !open {
                return End::Closed;
            },
        }
    }
}

pub(crate) async fn subscriber(spec: SubSpec, sh: Arc<Shared>) -> SubStats {
    let mut track = Track::new(&spec, sh.mode);
    let conn = match connect(&spec, &sh, &mut track).await {
        Ok(c) => c,
        Err(None) => return track.st,
        Err(Some(why)) => {
            sh.tally.fail(why);
            return track.st;
        }
    };
    sh.tally.opened.fetch_add(1, Ordering::Relaxed);
    match sh.mode {
        Mode::Plain => {
            let mut conn = conn;
            if let End::Closed = read_until(&mut conn, &mut track, &sh, std::future::pending()).await {
                sh.tally.closed_early.fetch_add(1, Ordering::Relaxed);
            }
        }
        Mode::Churn => churn_subscriber(conn, &spec, &sh, &mut track).await,
        Mode::Resume => resume_subscriber(conn, &spec, &sh, &mut track).await,
    }
    track.st
}

/// The source addresses 127.0.0.2… for an IPv4 loopback target, else one unbound.
pub(crate) fn source_ips(a: &BenchArgs, url: &str) -> Vec<Option<IpAddr>> {
    let loopback_v4 = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str()?.parse::<Ipv4Addr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    let n = if loopback_v4 {
        a.source_addresses.min(253)
    } else {
        0
    };
    if n == 0 {
        return vec![None];
    }
    (0..n)
        .map(|i| Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8))))
        .collect()
}

/// One HTTP client per source address (SSE), or the WebSocket target.
pub(crate) async fn dialer(a: &BenchArgs) -> anyhow::Result<Dialer> {
    let example = fill(sub_template(a), a, "x");
    match a.transport {
        Transport::Sse => {
            let build = |local: Option<IpAddr>| {
                reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .tcp_nodelay(true)
                    .connect_timeout(Duration::from_secs(10))
                    .local_address(local)
                    .build()
                    .context("cannot build the HTTP client")
            };
            let clients = source_ips(a, &example)
                .into_iter()
                .map(build)
                .collect::<anyhow::Result<_>>()?;
            Ok(Dialer::Sse(clients))
        }
        Transport::Ws => {
            let url = ws_url(&example)?;
            let parsed = reqwest::Url::parse(&url)
                .with_context(|| format!("the subscriber URL {:?} is not a URL", redact_tokens(&url)))?;
            let host = parsed
                .host_str()
                .with_context(|| format!("the subscriber URL {:?} has no host", redact_tokens(&url)))?;
            let port = parsed.port_or_known_default().unwrap_or(80);
            let target = match host.trim_matches(['[', ']']).parse::<IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, port),
                Err(_) => tokio::net::lookup_host((host, port))
                    .await
                    .with_context(|| format!("cannot resolve {host}"))?
                    .next()
                    .with_context(|| format!("{host} has no address"))?,
            };
            let sources = if target.is_ipv4() {
                source_ips(a, &url)
            } else {
                vec![None]
            };
            Ok(Dialer::Ws { target, sources })
        }
    }
}
