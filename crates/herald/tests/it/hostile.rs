//! Found when tried as an attacker would (issue 12, 1b): raw bytes on a socket,
//! frames and heads that no polite client sends, and the answers they must get.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// A WebSocket spoken byte by byte, for frames a library would not send.
pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A server frame: opcode and payload.
#[derive(Debug, PartialEq)]
pub struct RawFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The close code of a close frame (None when it has no body).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, 8, "a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl RawWs {
    /// Opens `url` (http://host/path?query) with a fresh connection (the
    /// native path); the answer's head (and body when it is not a 101), and
    /// the socket when it is a 101.
    pub async fn open(url: &str, extra: &[(&str, &str)]) -> (String, Option<RawWs>) {
        Self::open_via(url, extra, false).await
    }

    /// As [`RawWs::open`]; with `after_request`, the connection first serves a
    /// `GET /healthz`, so the upgrade goes through the router (axum's route).
    pub async fn open_via(url: &str, extra: &[(&str, &str)], after_request: bool) -> (String, Option<RawWs>) {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, target) = rest.split_at(rest.find('/').unwrap());
        let mut stream = TcpStream::connect(host).await.unwrap();
        if after_request {
            let get = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");
            stream.write_all(get.as_bytes()).await.unwrap();
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).contains("\"ok\"") {
                let mut chunk = [0u8; 1024];
                let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0, "healthz answered");
                got.extend_from_slice(&chunk[..n]);
            }
        }
        let mut head = format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        );
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                .await
                .expect("an answer to the upgrade")
                .unwrap();
            assert!(n > 0, "the server closed before answering the upgrade");
            buf.extend_from_slice(&chunk[..n]);
        };
        let answer = String::from_utf8_lossy(&buf[..end]).into_owned();
        if !answer.starts_with("HTTP/1.1 101") {
            // The rest is the body (the connection may stay open: read its length).
            let length: usize = answer
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("a content-length");
            let mut rest = buf[end..].to_vec();
            while rest.len() < length {
                let mut chunk = [0u8; 4096];
                let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0, "the body ended early");
                rest.extend_from_slice(&chunk[..n]);
            }
            return (format!("{answer}{}", String::from_utf8_lossy(&rest)), None);
        }
        let rest = buf[end..].to_vec();
        (answer, Some(RawWs { stream, buf: rest }))
    }

    /// Sends one masked frame with `first` as its first byte.
    pub async fn send(&mut self, first: u8, payload: &[u8]) {
        let mask = [7u8, 1, 9, 3];
        let mut out = vec![first];
        assert!(payload.len() < 126);
        out.push(0x80 | payload.len() as u8);
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&out).await.unwrap();
    }

    /// Sends bytes as they are (frames built by hand); a write the server
    /// refused (it closed first) is not an error.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next server frame within `WAIT`; None when the socket closed first.
    pub async fn frame(&mut self) -> Option<RawFrame> {
        self.frame_within(WAIT).await.expect("a frame within the wait")
    }

    /// The next server frame within `d`: Err on timeout, Ok(None) when the
    /// socket closed first.
    pub async fn frame_within(&mut self, d: std::time::Duration) -> Result<Option<RawFrame>, ()> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if self.buf.len() >= 2 {
                let op = self.buf[0] & 0x0F;
                let (len, at) = match self.buf[1] & 0x7F {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    126 => (usize::MAX, 0),
                    127 => panic!("no test expects a frame that long"),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Ok(Some(RawFrame { opcode: op, payload }));
                }
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next frame that is not a ping.
    pub async fn frame_not_ping(&mut self) -> Option<RawFrame> {
        loop {
            match self.frame().await {
                Some(f) if f.opcode == 9 => continue,
                other => return other,
            }
        }
    }
}

/// Opens a WebSocket on `server` for `app` with `tok` (a fresh connection: the native path).
async fn raw_ws(server: &TestServer, app: &App, tok: &str) -> RawWs {
    let (head, ws) = RawWs::open(&server.ws_url(app, tok), &[]).await;
    ws.unwrap_or_else(|| panic!("the upgrade succeeds: {head}"))
}

#[tokio::test]
async fn a_close_with_an_invalid_code_is_answered_with_1002() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    // RFC 6455 7.4: 1004-1006 and 1015 are reserved, never sent; below 1000,
    // 1016-2999 and from 5000 they are not defined.
    for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] {
        let mut ws = raw_ws(&server, &app, &tok).await;
        ws.send(0x88, &[&bad.to_be_bytes()[..], b"bye"].concat()).await;
        let f = ws.frame_not_ping().await.expect("a close frame");
        assert_eq!(f.close_code(), Some(1002), "a client close with {bad}");
    }
    // Valid codes are echoed, and a close without a code gets one without a code.
    for good in [1000u16, 1001, 1003, 1011, 3000, 4999] {
        let mut ws = raw_ws(&server, &app, &tok).await;
        ws.send(0x88, &good.to_be_bytes()).await;
        let f = ws.frame_not_ping().await.expect("a close frame");
        assert_eq!(f.close_code(), Some(good), "a client close with {good}");
    }
    let mut ws = raw_ws(&server, &app, &tok).await;
    ws.send(0x88, b"").await;
    assert_eq!(
        ws.frame_not_ping().await.expect("a close frame").close_code(),
        None
    );
}

#[tokio::test]
async fn only_the_listed_users_publish_to_a_user_limited_channel_from_a_client() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let ch = "im#alice,bob";
    // carol may publish everywhere else, and tries the private line over HTTP
    // and over WebSocket.
    let carol = token(&app, &claims(Some("carol"), &["*"], &["*"]));
    let body = serde_json::json!({"channel": ch, "data": "from carol"}).to_string();
    let got = server.publish_raw(&app, Some(&carol), &body).await;
    assert_refused(&got, 403, "forbidden");
    let mut ws = server.ws(&app, Some(&carol)).await.unwrap();
    let r = ws
        .request(serde_json::json!({"op": "publish", "channel": ch, "data": "from carol"}))
        .await;
    assert_ws_refused(&r, "forbidden");
    // Elsewhere her grant works.
    let r = ws
        .request(serde_json::json!({"op": "publish", "channel": "im#carol,dave", "data": "ok"}))
        .await;
    assert!(r.get("ok").is_some(), "{r}");

    // alice, without any grant, may publish to her own line both ways.
    let alice = token(&app, &claims(Some("alice"), &[], &[]));
    let body = serde_json::json!({"channel": ch, "data": "from alice"}).to_string();
    assert_eq!(server.publish_raw(&app, Some(&alice), &body).await.0, 200);
    let mut ws = server.ws(&app, Some(&alice)).await.unwrap();
    let r = ws
        .request(serde_json::json!({"op": "publish", "channel": ch, "data": "again"}))
        .await;
    assert!(r.get("ok").is_some(), "{r}");
    let data = server.history_data(&app, ch).await;
    assert_eq!(
        data,
        ["from alice", "again"],
        "only alice's messages are on the line"
    );
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused_on_every_transport() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let mut c = claims(Some("alice"), &["*"], &["*"]);
    let now = herald_broker::now_millis() / 1000;
    c.iat = Some(now + 10 * 365 * 24 * 3600);
    c.exp = now + 11 * 365 * 24 * 3600;
    let future = token(&app, &c);
    let q = format!("channel=room&token={future}");
    assert_refused(
        &server
            .get_within(&format!("/v1/apps/acme/events?{q}"), None)
            .await,
        401,
        "invalid_token",
    );
    assert_refused(
        &server
            .get_within(&format!("/v1/apps/acme/poll?{q}&timeout=0"), None)
            .await,
        401,
        "invalid_token",
    );
    let got = server
        .ws(&app, Some(&future))
        .await
        .err()
        .expect("the upgrade is refused");
    assert_refused(&got, 401, "invalid_token");
    let body = serde_json::json!({"channel": "room", "data": 1}).to_string();
    assert_refused(
        &server.publish_raw(&app, Some(&future), &body).await,
        401,
        "invalid_token",
    );
    // Nor does a WebSocket take it as a refresh.
    let mut ws = server.ws(&app, Some(&user_token(&app, "alice"))).await.unwrap();
    let r = ws
        .request(serde_json::json!({"op": "refresh", "token": future}))
        .await;
    assert_ws_refused(&r, "invalid_token");

    // Within the clock leeway (10 s by default) a clock a little ahead is fine.
    c.iat = Some(now + 5);
    let ahead = token(&app, &c);
    server.subscribe_sse(&app, "room", &ahead).await;
}

#[tokio::test]
async fn websocket_upgrades_from_origins_not_allowed_are_refused_with_403() {
    let server =
        TestServer::start_with(|c| c.server.cors_origins = vec!["https://good.example".into()]).await;
    let app = server.create_app("acme").await;
    let url = server.ws_url(&app, &user_token(&app, "alice"));
    let host = server.url.strip_prefix("http://").unwrap().to_owned();
    let same_site = format!("http://{host}");
    let port = host.rsplit(':').next().unwrap();
    let localhost = format!("http://localhost:{port}");
    for via_router in [false, true] {
        for foreign in [
            "https://evil.example",
            "null",
            "https://good.example.evil.example",
            "https://evilgood.example",
            "http://good.example",
            "https://good.example:8443",
            "https://good.example/",
            "https://good.example.",
            "https://good.example/path",
            "",
            localhost.as_str(),
        ] {
            let (answer, ws) = RawWs::open_via(&url, &[("Origin", foreign)], via_router).await;
            assert!(
                ws.is_none(),
                "{foreign} (via the router: {via_router}) was let in"
            );
            assert!(answer.starts_with("HTTP/1.1 403"), "{foreign}: {answer}");
            let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_refused(&(403, v), 403, "origin_not_allowed");
        }
        // The allowed origin, the server's own pages, and clients that send no
        // Origin (not browsers) are let in.
        for ok in [
            Some("https://good.example"),
            Some("HTTPS://GOOD.EXAMPLE"),
            Some(same_site.as_str()),
            None,
        ] {
            let extra: Vec<(&str, &str)> = ok.iter().map(|o| ("Origin", *o)).collect();
            let (answer, ws) = RawWs::open_via(&url, &extra, via_router).await;
            assert!(ws.is_some(), "{ok:?} (via the router: {via_router}): {answer}");
        }
    }
    // With the default `*`, any page may open a WebSocket: tokens, not cookies,
    // say who it is.
    let open = TestServer::start().await;
    let app = open.create_app("acme").await;
    let (answer, ws) = RawWs::open(
        &open.ws_url(&app, &user_token(&app, "alice")),
        &[("Origin", "https://any.example")],
    )
    .await;
    assert!(ws.is_some(), "{answer}");
}

#[tokio::test]
async fn the_classroom_refuses_a_foreign_origin_even_with_its_csrf_token() {
    let server = TestServer::start().await;
    let mut ada = crate::classroom::Browser::new(&server);
    ada.new_account("Ada").await;
    let csrf = ada.csrf.clone().unwrap();
    let create = |origin: &str| {
        ada.http
            .post(format!("{}/courses", ada.base))
            .header("x-csrf-token", &csrf)
            .header("origin", origin)
            .json(&serde_json::json!({"title": "Forged"}))
    };
    // A page elsewhere (the default `cors_origins = ["*"]` lets pages elsewhere
    // call the token-authenticated API, never the cookie-authenticated one).
    for foreign in [
        "https://evil.example",
        "null",
        &format!("{}.evil.example", server.url),
    ] {
        let got = ada.send(create(foreign)).await;
        assert_refused(&got, 403, "origin_not_allowed");
    }
    // Signing in from elsewhere (login CSRF) is refused too.
    let got = ada
        .send(
            ada.http
                .post(format!("{}/auth/signin", ada.base))
                .header("origin", "https://evil.example")
                .json(&serde_json::json!({"email": "x@example.org", "password": "whatever it is"})),
        )
        .await;
    assert_refused(&got, 403, "origin_not_allowed");
    let (status, courses) = ada.get("/courses").await;
    assert_eq!(status, 200);
    assert_eq!(courses["courses"].as_array().map(Vec::len), Some(0), "{courses}");
    // The classroom's own page is this origin.
    let (status, v) = ada.send(create(&server.url)).await;
    assert_eq!(status, 201, "{v}");
}

/// Sends `bytes` one at a time every `gap` until the server answers or closes,
/// for at most 20 seconds; returns what it answered and how long after the start.
pub(crate) async fn drip(
    stream: &mut TcpStream,
    bytes: &[u8],
    gap: std::time::Duration,
) -> (String, std::time::Duration) {
    let started = tokio::time::Instant::now();
    let mut answer = Vec::new();
    for b in bytes {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            break;
        }
        if stream.write_all(&[*b]).await.is_err() {
            break;
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(gap, stream.read(&mut chunk)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&chunk[..n]);
                // Read the rest of the answer, up to the close.
                let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
                break;
            }
        }
    }
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

#[tokio::test]
async fn a_request_head_sent_a_byte_at_a_time_is_cut_at_the_head_timeout() {
    let server =
        TestServer::start_with(|c| c.server.request_head_timeout = std::time::Duration::from_secs(1)).await;
    let host = server.url.strip_prefix("http://").unwrap().to_owned();
    // One byte every 200 ms: each read is quick, the head never ends.
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Padding: {}",
        "a".repeat(400)
    );
    // On a fresh connection (the native head reader) and on a connection that
    // served a request first (hyper).
    for after_request in [false, true] {
        let mut stream = TcpStream::connect(&host).await.unwrap();
        if after_request {
            stream
                .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(String::from_utf8_lossy(&chunk[..n]).contains("200 OK"));
        }
        let (answer, took) = drip(
            &mut stream,
            head.as_bytes(),
            std::time::Duration::from_millis(200),
        )
        .await;
        assert!(
            took < std::time::Duration::from_secs(8),
            "after a request: {after_request}: the connection was cut after {took:?}"
        );
        if !after_request {
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            assert!(answer.contains("\"request_timeout\""), "{answer}");
        }
    }
}

#[tokio::test]
async fn a_request_body_sent_too_slowly_is_cut_with_408() {
    let server =
        TestServer::start_with(|c| c.server.request_body_timeout = std::time::Duration::from_secs(2)).await;
    let app = server.create_app("acme").await;
    let host = server.url.strip_prefix("http://").unwrap().to_owned();
    let mut stream = TcpStream::connect(&host).await.unwrap();
    let body = format!("{{\"channel\":\"room\",\"data\":\"{}\"}}", "x".repeat(500));
    let head = format!(
        "POST /v1/apps/acme/publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.key,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (answer, took) = drip(
        &mut stream,
        body.as_bytes(),
        std::time::Duration::from_millis(200),
    )
    .await;
    assert!(took < std::time::Duration::from_secs(8), "cut after {took:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert_eq!(server.history_offsets(&app, "room").await, Vec::<u64>::new());
}

#[tokio::test]
async fn an_8_mib_publish_gets_its_413_not_a_reset() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let host = server.url.strip_prefix("http://").unwrap().to_owned();
    let body = format!("{{\"channel\":\"room\",\"data\":\"{}\"}}", "x".repeat(8 << 20));
    for attempt in 0..3 {
        // A simple client: it sends the whole request, then reads the answer.
        // The server refuses after the first 128 KiB; if it then closed with
        // the rest unread, the kernel would reset the connection and the
        // client would lose the 413.
        let mut stream = TcpStream::connect(&host).await.unwrap();
        let head = format!(
            "POST /v1/apps/acme/publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            app.key,
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let sent = tokio::time::timeout(WAIT, stream.write_all(body.as_bytes())).await;
        assert!(
            matches!(sent, Ok(Ok(()))),
            "attempt {attempt}: sending the body: {sent:?}"
        );
        let mut answer = Vec::new();
        let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
        assert!(
            matches!(read, Ok(Ok(_))),
            "attempt {attempt}: reading the answer: {read:?}"
        );
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "attempt {attempt}: {answer}");
        assert!(answer.contains("\"body_too_large\""), "{answer}");
    }
    // A client that reads while it sends (reqwest) gets it too.
    let res = reqwest::Client::new()
        .post(server.app_url(&app, "/publish"))
        .bearer_auth(&app.key)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
}

#[tokio::test]
async fn a_malformed_chunk_size_is_400_not_413() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let host = server.url.strip_prefix("http://").unwrap().to_owned();
    let mut stream = TcpStream::connect(&host).await.unwrap();
    let req = format!(
        "POST /v1/apps/acme/publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n",
        app.key
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"bad_request\""), "{answer}");
}

#[tokio::test]
async fn a_cursor_too_long_for_a_url_polls_in_a_post_body() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    // 128 channels (the most a connection may hold) with 250-byte names: their
    // cursor and names pass the 64 KiB a URL may hold.
    let channels: Vec<String> = (0..128).map(|i| format!("c{i:03}{}", "x".repeat(246))).collect();
    for chunk in channels.chunks(64) {
        server
            .publish_body(&app, serde_json::json!({"channels": chunk, "data": 1}))
            .await;
    }
    let tok = user_token(&app, "alice");
    let post = |body: serde_json::Value| {
        server
            .http
            .post(server.app_url(&app, &format!("/poll?token={tok}")))
            .body(body.to_string())
            .send()
    };
    let res = post(serde_json::json!({"channels": channels, "timeout": 0}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    let cursor = v["cursor"].as_str().unwrap().to_owned();
    assert!(cursor.len() > 40_000, "a long cursor: {}", cursor.len());
    for chunk in channels.chunks(64) {
        server
            .publish_body(&app, serde_json::json!({"channels": chunk, "data": 2}))
            .await;
    }
    // In the URL it does not fit.
    let q: Vec<String> = channels.iter().map(|c| format!("channel={c}")).collect();
    let url = format!(
        "/v1/apps/acme/poll?{}&cursor={cursor}&timeout=0&token={tok}",
        q.join("&")
    );
    assert!(url.len() > 65_536);
    let host = server.url.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(host).await.unwrap();
    stream
        .write_all(format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    tokio::time::timeout(WAIT, stream.read_exact(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 414");
    // In the body it does: every channel's second message, and nothing else.
    let res = post(serde_json::json!({"channels": channels, "cursor": cursor, "timeout": 0}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    let got = v["messages"].as_array().unwrap();
    assert_eq!(got.len(), 128, "{}", v["resets"]);
    assert!(got.iter().all(|m| m["offset"] == 2 && m["data"] == 2));
    // A body that is not the poll's shape is refused like any other.
    let res = post(serde_json::json!({"channel": "a"})).await.unwrap();
    assert_eq!(res.status(), 400);
}

/// Texts that others would see broken: a right-to-left override turns what
/// follows it around ("Eve\u{202E}gnp.exe" shows as "Eveexe.png"), an isolate
/// or embedding reorders the words after it, zero-width characters show as
/// nothing, a NUL or an escape has no place on a page.
const BROKEN: [&str; 7] = [
    "Eve\u{202E}gnp.exe",
    "\u{2066}Eve",
    "Eve\u{202A}",
    "\u{200B}\u{200B}",
    "\u{200D}\u{2060}\u{3164}",
    "\u{00AD} \u{FEFF}",
    "a\u{0}b",
];

#[tokio::test]
async fn every_text_shown_to_others_refuses_reordering_invisible_and_control_characters() {
    use crate::classroom_live::Class;
    use serde_json::{json, Value};

    let server = TestServer::start().await;
    let refused = |got: &(u16, Value), what: &str, text: &str| {
        assert_eq!(
            (got.0, got.1["error"]["code"].as_str()),
            (400, Some("invalid_characters")),
            "{what} {text:?}: {}",
            got.1
        );
    };
    // Names: sign-up and guest.
    let mut eve = crate::classroom::Browser::new(&server);
    for name in BROKEN {
        let got = eve
            .signup("eve@example.org", name, "a long enough password")
            .await;
        refused(&got, "a name", name);
    }
    let class = Class::new(&server).await;
    let t = &class.trainer;
    let course = class.course_id.clone();
    let (status, v) = t
        .call(
            reqwest::Method::PATCH,
            &format!("/courses/{course}"),
            json!({ "guests_allowed": true }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let guest = crate::classroom::Browser::new(&server);
    let sid = class.session("Texts").await;
    assert_eq!(t.act(&sid, "start").await.0, 200);
    let (status, v) = t
        .post(
            &format!("/sessions/{sid}/polls"),
            json!({ "kind": "text", "question": "Say" }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let text_poll = v["poll"]["id"].as_str().unwrap().to_owned();
    let (status, v) = t
        .post(
            &format!("/sessions/{sid}/polls"),
            json!({ "kind": "word_cloud", "question": "Words" }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let cloud = v["poll"]["id"].as_str().unwrap().to_owned();
    let (status, v) = class
        .student
        .post(&format!("/sessions/{sid}/questions"), json!({ "text": "Why?" }))
        .await;
    assert_eq!(status, 201, "{v}");
    let qid = v["question"]["id"].as_str().unwrap().to_owned();
    let (status, v) = t
        .call(
            reqwest::Method::PUT,
            &format!("/sessions/{sid}/groups"),
            json!({ "groups": [{ "name": "A" }, { "name": "B" }] }),
        )
        .await;
    assert_eq!(status, 200, "{v}");

    for text in BROKEN {
        let guest_join = json!({ "code": class.join_code, "name": text });
        let cases: Vec<(&str, (u16, Value))> = vec![
            ("a guest's name", guest.post("/auth/guest", guest_join).await),
            (
                "a course title",
                t.post("/courses", json!({ "title": text })).await,
            ),
            (
                "a session title",
                t.post(&format!("/courses/{course}/sessions"), json!({ "title": text }))
                    .await,
            ),
            (
                "a deck title",
                t.post(
                    &format!("/courses/{course}/decks"),
                    json!({ "title": text, "markdown": "# One" }),
                )
                .await,
            ),
            (
                "a question",
                class
                    .student
                    .post(&format!("/sessions/{sid}/questions"), json!({ "text": text }))
                    .await,
            ),
            (
                "an answer",
                t.post(
                    &format!("/sessions/{sid}/questions/{qid}/answer"),
                    json!({ "mode": "public", "text": text }),
                )
                .await,
            ),
            (
                "a poll question",
                t.post(
                    &format!("/sessions/{sid}/polls"),
                    json!({ "kind": "text", "question": text }),
                )
                .await,
            ),
            (
                "a poll option",
                t.post(
                    &format!("/sessions/{sid}/polls"),
                    json!({ "kind": "single", "question": "Pick", "options": ["a", text] }),
                )
                .await,
            ),
            (
                "a group name",
                t.call(
                    reqwest::Method::PUT,
                    &format!("/sessions/{sid}/groups"),
                    json!({ "groups": [{ "name": "A" }, { "name": text }] }),
                )
                .await,
            ),
            (
                "a broadcast",
                t.post(
                    &format!("/sessions/{sid}/groups/broadcast"),
                    json!({ "text": text }),
                )
                .await,
            ),
        ];
        for (what, got) in &cases {
            refused(got, what, text);
        }
    }
    // Answers to an open poll (one poll is open at a time); a word cloud
    // splits at spaces: "big \u{00AD} \u{FEFF}" is three words, two invisible.
    for (pid, what, answer) in [
        (&text_poll, "an open answer", "{text}"),
        (&cloud, "a word", "big {text}"),
    ] {
        let (status, v) = t
            .post(&format!("/sessions/{sid}/polls/{pid}/open"), json!({}))
            .await;
        assert_eq!(status, 200, "{v}");
        for text in BROKEN {
            let got = class
                .student
                .post(
                    &format!("/sessions/{sid}/polls/{pid}/answer"),
                    json!({ "answer": answer.replace("{text}", text) }),
                )
                .await;
            refused(&got, what, text);
        }
    }
    // A Markdown deck may hold no direction override either.
    let got = t
        .post(
            &format!("/courses/{course}/decks"),
            json!({ "title": "Deck", "markdown": "# One\n\nsee \u{202E}gnp.exe" }),
        )
        .await;
    refused(&got, "a Markdown deck", "");

    // Every script and emoji is welcome, joiners and marks included; questions
    // and answers keep their line breaks.
    let mut ada = crate::classroom::Browser::new(&server);
    let (status, v) = ada
        .signup(
            "ada@example.org",
            "عائشة 👩\u{200D}🏫 Ada",
            "a long enough password",
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = ada.post("/courses", json!({ "title": "فيزياء 101" })).await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = class
        .student
        .post(
            &format!("/sessions/{sid}/questions"),
            json!({ "text": "\u{200F}שלום?\nA second line" }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["question"]["text"], "\u{200F}שלום?\nA second line");
    // A name with a line break is not a name.
    let got = ada.post("/courses", json!({ "title": "Two\nlines" })).await;
    refused(&got, "a title", "Two\nlines");
}

#[tokio::test]
async fn every_page_forbids_inline_script_framing_and_referrers() {
    let server = TestServer::start_with(|c| c.demo_app = true).await;
    for path in [
        "/",
        "/developers",
        "/demo/",
        "/classroom/app.js",
        "/sdk/herald.js",
        "/healthz",
    ] {
        let res = server
            .http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers().clone();
        let csp = h
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("{path} has a Content-Security-Policy"))
            .to_str()
            .unwrap()
            .to_owned();
        let script = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src"))
            .unwrap_or_else(|| panic!("{path}: a script-src in {csp}"));
        assert_eq!(script, "script-src 'self'", "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        let body = res.text().await.unwrap();
        if path == "/" || path == "/developers" || path == "/demo/" {
            // Every script is a file: an inline one would be refused by the policy.
            for (i, _) in body.match_indices("<script") {
                let tag = &body[i..i + body[i..].find('>').unwrap()];
                assert!(tag.contains(" src="), "{path}: an inline script: {tag}");
            }
            assert!(!body.contains(" style="), "{path}: an inline style attribute");
        }
    }
}
