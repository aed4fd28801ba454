//! The negative matrix of requests and frames (issue 12, 2.5): malformed HTTP
//! heads, bodies, JSON and names, and broken WebSocket frames, one row each
//! with the answer it must get. Every case is bounded by a timeout. Around the
//! table: a neighbour connected throughout still gets its messages, none of
//! the broken connections is left open on the server, and a slowloris head and
//! body sent beside the table are cut in time.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::hostile::{drip, RawWs};
use crate::support::*;

/// What a case must get.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// An HTTP answer: the status, and the error code of its JSON body. An
    /// expected `None` checks the status alone (what the HTTP parser refuses
    /// before any route is answered with a status and no body).
    Http(u16, Option<String>),
    /// The WebSocket was closed with this code, and then the connection.
    Close(u16),
    /// An error reply with this code, and the connection still answers.
    Reply(String),
    /// Something else (named), or nothing within the case's time.
    Other(String),
}

fn http(status: u16, code: &str) -> Answer {
    Answer::Http(status, Some(code.to_owned()))
}

/// Refused by the HTTP parser: the status alone.
fn parser(status: u16) -> Answer {
    Answer::Http(status, None)
}

fn reply(code: &str) -> Answer {
    Answer::Reply(code.to_owned())
}

/// Whether `got` is what `expected` asks.
fn fits(expected: &Answer, got: &Answer) -> bool {
    match (expected, got) {
        (Answer::Http(s, None), Answer::Http(t, _)) => s == t,
        _ => expected == got,
    }
}

/// How long one case may take.
const CASE_WAIT: Duration = Duration::from_secs(10);

/// Sends `bytes` on a fresh connection and reads the answer: its head and,
/// by its length, its body (or up to the close).
async fn exchange(host: &str, bytes: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(host).await.unwrap();
    // The server may answer and close before it read everything: not an error.
    let _ = stream.write_all(bytes).await;
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + CASE_WAIT;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if buf.starts_with(b"HTTP/1.1 1") {
                buf.drain(..end + 4); // an interim answer (100 Continue): the final one follows
                continue;
            }
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|n| buf.len() >= end + 4 + n) {
                break;
            }
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) if buf.is_empty() => return Answer::Other("no answer within the wait".into()),
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let Some(status) = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse::<u16>().ok())
    else {
        return Answer::Other(format!("not an HTTP answer: {text:?}"));
    };
    let body = text.find("\r\n\r\n").map(|i| &text[i + 4..]).unwrap_or("");
    if body.is_empty() {
        return Answer::Http(status, None);
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return Answer::Other(format!("{status} with a body that is not JSON: {body:?}"));
    };
    // The body is the one error shape, with a sentence.
    let got = (status, v.clone());
    let code = v["error"]["code"].as_str().unwrap_or("").to_owned();
    if std::panic::catch_unwind(|| assert_refused(&got, status, &code)).is_err() {
        return Answer::Other(format!("{status} with a body not of the error shape: {v}"));
    }
    Answer::Http(status, Some(code))
}

/// One client frame, masked unless `unmasked`; the length field is the
/// payload's (7, 16 or 64 bits).
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    build_frame(first, payload, true)
}

fn build_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(bit | n as u8),
        n if n < 65_536 => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A masked frame head announcing `len` bytes in the 64-bit length field
/// (no payload follows).
fn announce64(first: u8, len: u64) -> Vec<u8> {
    let mut out = vec![first, 0x80 | 127];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[1, 2, 3, 4]);
    out
}

fn text(v: serde_json::Value) -> Vec<u8> {
    frame(0x81, v.to_string().as_bytes())
}

/// Opens a WebSocket (through the router when `via_router`), sends `bytes`,
/// and reads what comes back.
async fn ws_exchange(url: &str, via_router: bool, bytes: &[u8]) -> Answer {
    let (head, ws) = RawWs::open_via(url, &[], via_router).await;
    let Some(mut ws) = ws else {
        return Answer::Other(format!("the upgrade was refused: {head}"));
    };
    ws.send_raw(bytes).await;
    let first = loop {
        match ws.frame_within(CASE_WAIT).await {
            Err(()) => return Answer::Other("no frame within the wait".into()),
            Ok(None) => return Answer::Other("closed without a close frame".into()),
            Ok(Some(f)) if f.opcode == 9 => continue,
            Ok(Some(f)) => break f,
        }
    };
    match first.opcode {
        8 => {
            let Some(code) = first.close_code() else {
                return Answer::Other("a close frame without a code".into());
            };
            // After a protocol error the server closes the connection too.
            loop {
                match ws.frame_within(CASE_WAIT).await {
                    Err(()) => {
                        return Answer::Other(format!("closed with {code}, but the socket stayed open"))
                    }
                    Ok(None) => return Answer::Close(code),
                    Ok(Some(_)) => continue,
                }
            }
        }
        1 => {
            let v: serde_json::Value = match serde_json::from_slice(&first.payload) {
                Ok(v) => v,
                Err(_) => return Answer::Other("a text frame that is not JSON".into()),
            };
            let Some(code) = v["error"]["code"].as_str().map(str::to_owned) else {
                return Answer::Other(format!("not an error reply: {v}"));
            };
            // The connection goes on: a ping op is answered.
            ws.send_raw(&text(json!({"op": "ping", "id": 424242}))).await;
            loop {
                match ws.frame_within(CASE_WAIT).await {
                    Ok(Some(f)) if f.opcode == 1 => {
                        let pong: serde_json::Value = serde_json::from_slice(&f.payload).unwrap_or_default();
                        if pong["id"] == 424242 && pong.get("ok").is_some() {
                            return Answer::Reply(code);
                        }
                    }
                    Ok(Some(_)) => continue,
                    _ => return Answer::Other(format!("replied {code}, then the connection died")),
                }
            }
        }
        op => Answer::Other(format!("a frame of opcode {op}")),
    }
}

#[tokio::test]
async fn malformed_requests_and_frames_get_their_answers_and_harm_nobody_else() {
    let server = TestServer::start_with(|c| {
        c.server.request_head_timeout = Duration::from_secs(2);
        c.server.request_body_timeout = Duration::from_secs(3);
    })
    .await;
    let app = server.create_app("acme").await;
    let host = server.url.strip_prefix("http://").unwrap().to_owned();
    let key = app.key.clone();
    let tok = token(&app, &claims(Some("alice"), &["*"], &["*"]));

    // The neighbours: connected before the table, on other connections.
    let mut sse_neighbour = server.subscribe_sse(&app, "neighbour", &tok).await;
    let mut ws_neighbour = server.ws(&app, Some(&tok)).await.unwrap();
    ws_neighbour.subscribe_ok("neighbour", None).await;

    // Slowloris beside the table: a head and a body a byte every 200 ms.
    let slow_head = {
        let host = host.clone();
        tokio::spawn(async move {
            let mut s = TcpStream::connect(&host).await.unwrap();
            let head = format!(
                "GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Slow: {}",
                "a".repeat(400)
            );
            drip(&mut s, head.as_bytes(), Duration::from_millis(200)).await
        })
    };
    let slow_body = {
        let (host, key) = (host.clone(), key.clone());
        tokio::spawn(async move {
            let mut s = TcpStream::connect(&host).await.unwrap();
            let body = format!("{{\"channel\":\"neighbour\",\"data\":\"{}\"}}", "x".repeat(400));
            let head = format!(
                "POST /v1/apps/acme/publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).await.unwrap();
            drip(&mut s, body.as_bytes(), Duration::from_millis(200)).await
        })
    };

    // ---- HTTP ----
    let get = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
    let with_head = |line: &str, extra: &str, body: &str| {
        format!(
            "{line}\r\nHost: {host}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let publish = |body: &str| {
        format!(
            "POST /v1/apps/acme/publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let publish_bytes = |body: &[u8]| {
        let mut out = format!(
            "POST /v1/apps/acme/publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    };
    let chunked = |chunks: &str| {
        format!(
            "POST /v1/apps/acme/publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}"
        )
        .into_bytes()
    };
    let events = |q: &str| get(&format!("/v1/apps/acme/events?{q}&token={tok}"));
    let poll = |q: &str| get(&format!("/v1/apps/acme/poll?{q}&timeout=0&token={tok}"));
    let poll_body = |body: &str| {
        format!(
            "POST /v1/apps/acme/poll?token={tok} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let keyed = |target: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\r\n").into_bytes()
    };
    let with_auth = |auth: &[u8]| {
        let mut out =
            format!("GET /v1/apps/acme/stats HTTP/1.1\r\nHost: {host}\r\nAuthorization: ").into_bytes();
        out.extend_from_slice(auth);
        out.extend_from_slice(b"\r\n\r\n");
        out
    };
    let upgrade = |method: &str, extra: &str| {
        format!(
            "{method} /v1/apps/acme/ws?token={tok} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\n{extra}\r\n"
        )
        .into_bytes()
    };
    let deep = format!(
        "{{\"channel\":\"news\",\"data\":{}1{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let long_header = format!("X-Long: {}\r\n", "a".repeat(100 * 1024));
    let many_headers: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();

    let http_cases: Vec<(&str, Vec<u8>, Answer)> = vec![
        // Request lines.
        ("a method with a bad character", with_head("G(T /healthz HTTP/1.1", "", ""), parser(400)),
        ("an unknown method", with_head("BREW /healthz HTTP/1.1", "", ""), http(405, "method_not_allowed")),
        ("a lower-case method", with_head("get /healthz HTTP/1.1", "", ""), http(405, "method_not_allowed")),
        ("HTTP/2.0 on an HTTP/1 connection", b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(), parser(400)),
        ("HTTP/1.2", b"GET /healthz HTTP/1.2\r\nHost: x\r\n\r\n".to_vec(), parser(400)),
        ("no version (HTTP/0.9)", b"GET /healthz\r\n\r\n".to_vec(), parser(400)),
        ("an asterisk target on GET", get("*"), http(404, "not_found")),
        ("a control character in the path", get("/heal\x01thz"), parser(400)),
        ("raw bytes that are not UTF-8 in the path", {
            let mut r = b"GET /v1/apps/acme/events?channel=a\xff\xfe&token=".to_vec();
            r.extend_from_slice(format!("{tok} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
            r
        }, parser(400)),
        ("a URI over 64 KiB", get(&format!("/healthz?{}", "a".repeat(70 * 1024))), parser(414)),
        ("a dot-dot path to the admin API", keyed("/v1/apps/acme/../../admin/apps"), http(404, "not_found")),
        // Headers.
        ("a space before a header's colon", format!("GET /healthz HTTP/1.1\r\nHost : {host}\r\n\r\n").into_bytes(), parser(400)),
        ("a header name with a parenthesis", with_head("GET /healthz HTTP/1.1", "X(y): z\r\n", ""), parser(400)),
        ("an obsolete folded header", with_head("GET /healthz HTTP/1.1", "X-A: one\r\n two\r\n", ""), parser(400)),
        ("a NUL in a header value", with_head("GET /healthz HTTP/1.1", "X-A: a\0b\r\n", ""), parser(400)),
        ("a bare CR in a header value", with_head("GET /healthz HTTP/1.1", "X-A: a\rb\r\n", ""), parser(400)),
        ("a header of 100 KiB (hyper or the router answers)", with_head("GET /healthz HTTP/1.1", &long_header, ""), parser(431)),
        ("150 headers", with_head("GET /healthz HTTP/1.1", &many_headers, ""), parser(431)),
        ("HTTP/1.1 without Host", b"GET /healthz HTTP/1.1\r\n\r\n".to_vec(), http(400, "bad_request")),
        ("two Host headers", format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nHost: evil.example\r\n\r\n").into_bytes(), http(400, "bad_request")),
        ("Authorization: Bearer and nothing", with_auth(b"Bearer"), http(401, "unauthorized")),
        ("Authorization: Bearer with spaces inside", with_auth(b"Bearer a b c"), http(401, "invalid_key")),
        ("Authorization with bytes that are not ASCII", with_auth(b"Bearer hk_\xff\xfe"), http(401, "unauthorized")),
        ("a WebSocket upgrade of version 12", upgrade("GET", "Sec-WebSocket-Version: 12\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), http(400, "bad_request")),
        ("a WebSocket upgrade without a key", upgrade("GET", "Sec-WebSocket-Version: 13\r\n"), http(400, "bad_request")),
        ("a WebSocket upgrade by POST", upgrade("POST", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), http(405, "method_not_allowed")),
        // Body framing.
        ("two different Content-Lengths", with_head("POST /v1/apps/acme/publish HTTP/1.1", "Content-Length: 3\r\n", "{}"), parser(400)),
        ("a negative Content-Length", b"POST /v1/apps/acme/publish HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(), parser(400)),
        ("a Content-Length that is not a number", b"POST /v1/apps/acme/publish HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n".to_vec(), parser(400)),
        ("a Content-Length past 64 bits", b"POST /v1/apps/acme/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(), parser(400)),
        ("Transfer-Encoding: gzip alone", format!("POST /v1/apps/acme/publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nTransfer-Encoding: gzip\r\n\r\n{{}}").into_bytes(), parser(400)),
        ("a chunk size that is not hex", chunked("zz\r\n{}\r\n0\r\n\r\n"), http(400, "bad_request")),
        ("a chunk size past 64 bits", chunked("fffffffffffffffffffff\r\n{}\r\n0\r\n\r\n"), http(400, "bad_request")),
        ("a chunk longer than its size", chunked("2\r\n{}xx\r\n0\r\n\r\n"), http(400, "bad_request")),
        ("a 100 MiB body announced with Expect: 100-continue",
            format!("POST /v1/apps/acme/publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\
                     Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 104857600\r\n\r\n").into_bytes(),
            http(413, "body_too_large")),
        // JSON.
        ("JSON nested 10,000 deep", publish(&deep), http(400, "invalid_json")),
        ("data nested 65 deep", publish(&format!("{{\"channel\":\"news\",\"data\":{}1{}}}", "{\"a\":".repeat(65), "}".repeat(65))), http(400, "invalid_json")),
        ("JSON that is not UTF-8", publish_bytes(b"{\"channel\":\"news\",\"data\":\"\xff\xfe\"}"), http(400, "invalid_json")),
        ("JSON with single quotes", publish("{'channel':'news','data':1}"), http(400, "invalid_json")),
        ("JSON with a duplicate key", publish(r#"{"channel":"news","channel":"other","data":1}"#), http(400, "invalid_json")),
        ("JSON with a key without quotes", publish(r#"{channel:"news","data":1}"#), http(400, "invalid_json")),
        ("JSON after a byte order mark", publish("\u{feff}{\"channel\":\"news\",\"data\":1}"), http(400, "invalid_json")),
        ("JSON with a comment", publish("{\"channel\":\"news\",/* hi */\"data\":1}"), http(400, "invalid_json")),
        ("JSON with a trailing comma", publish(r#"{"channel":"news","data":1,}"#), http(400, "invalid_json")),
        ("JSON with a NaN", publish(r#"{"channel":"news","data":NaN}"#), http(400, "invalid_json")),
        // Names and ids with CR, LF, NUL.
        ("a channel with CR on SSE", events("channel=a%0Db"), http(400, "invalid_channel")),
        ("a channel with LF on SSE", events("channel=a%0Ab"), http(400, "invalid_channel")),
        ("a channel with NUL on SSE", events("channel=a%00b"), http(400, "invalid_channel")),
        ("a channel of bytes that are not UTF-8 on SSE", events("channel=%FF%FE"), http(400, "invalid_channel")),
        ("a channel with CR on long-poll", poll("channel=a%0Db"), http(400, "invalid_channel")),
        ("a channel with LF on long-poll", poll("channel=a%0Ab"), http(400, "invalid_channel")),
        ("a channel with NUL in a long-poll body", poll_body(r#"{"channels":["a\u0000b"],"timeout":0}"#), http(400, "invalid_channel")),
        ("a channel with NUL in a history path", keyed("/v1/apps/acme/channels/a%00b/history"), http(400, "invalid_channel")),
        ("a channel with LF in a presence path", keyed("/v1/apps/acme/channels/a%0Ab/presence"), http(400, "invalid_channel")),
        ("a channel with CR in a publish", publish(r#"{"channel":"a\rb","data":1}"#), http(400, "invalid_channel")),
        ("a channel with LF in a publish list", publish(r#"{"channels":["ok","a\nb"],"data":1}"#), http(400, "invalid_channel")),
        ("an event with CR", publish(r#"{"channel":"news","event":"a\rb","data":1}"#), http(400, "invalid_event")),
        ("an event with NUL", publish(r#"{"channel":"news","event":"a\u0000b","data":1}"#), http(400, "invalid_event")),
        ("an event with CRLF and a field", publish(r#"{"channel":"news","event":"x\r\ndata: forged","data":1}"#), http(400, "invalid_event")),
        ("an idempotency key with LF", publish(r#"{"channel":"news","data":1,"idempotency_key":"a\nb"}"#), http(400, "invalid_parameter")),
        ("an idempotency key with CR", publish(r#"{"channel":"news","data":1,"idempotency_key":"a\rb"}"#), http(400, "invalid_parameter")),
        ("an idempotency key with NUL", publish(r#"{"channel":"news","data":1,"idempotency_key":"a\u0000b"}"#), http(400, "invalid_parameter")),
        ("an app name with NUL", keyed("/v1/apps/ac%00me/stats"), http(400, "invalid_app_name")),
        // Parameters.
        ("a history limit past 64 bits", keyed("/v1/apps/acme/channels/news/history?limit=99999999999999999999999"), http(400, "invalid_parameter")),
        ("a long-poll timeout of a billion seconds", get(&format!("/v1/apps/acme/poll?channel=a&timeout=1000000000&token={tok}")), http(400, "invalid_parameter")),
        ("a Last-Event-ID of 10 KiB of garbage", {
            format!("GET /v1/apps/acme/events?channel=a&token={tok} HTTP/1.1\r\nHost: {host}\r\nLast-Event-ID: {}\r\n\r\n", "!".repeat(10 * 1024)).into_bytes()
        }, http(400, "invalid_cursor")),
        ("a cursor that is not a cursor in a long-poll body", poll_body(r#"{"channels":["a"],"cursor":"!!","timeout":0}"#), http(400, "invalid_cursor")),
    ];

    let mut wrong = Vec::new();
    let mut count = 0;
    for (name, bytes, expected) in &http_cases {
        count += 1;
        let got = tokio::time::timeout(CASE_WAIT * 2, exchange(&host, bytes))
            .await
            .unwrap_or_else(|_| Answer::Other("the case did not end".into()));
        if !fits(expected, &got) {
            wrong.push(format!("HTTP {name}: expected {expected:?}, got {got:?}"));
        }
    }

    // ---- WebSocket frames ----
    let url = server.ws_url(&app, &tok);
    let max = 64 * 1024 + 64 * 1024; // max_message_size + room for the frame
    let big = vec![b'x'; max / 2 + 1];
    let ws_cases: Vec<(&str, Vec<u8>, Answer)> = vec![
        (
            "RSV1 set without an extension",
            frame(0xC1, b"{}"),
            Answer::Close(1002),
        ),
        ("RSV2 set", frame(0xA1, b"{}"), Answer::Close(1002)),
        ("RSV3 set", frame(0x91, b"{}"), Answer::Close(1002)),
        ("reserved data opcode 3", frame(0x83, b"{}"), Answer::Close(1002)),
        ("reserved data opcode 7", frame(0x87, b"{}"), Answer::Close(1002)),
        (
            "reserved control opcode 0xB",
            frame(0x8B, b""),
            Answer::Close(1002),
        ),
        (
            "reserved control opcode 0xF",
            frame(0x8F, b""),
            Answer::Close(1002),
        ),
        (
            "a continuation of nothing",
            frame(0x80, b"{}"),
            Answer::Close(1002),
        ),
        ("a fragmented ping", frame(0x09, b"hi"), Answer::Close(1002)),
        (
            "a ping of 126 bytes",
            frame(0x89, &[b'p'; 126]),
            Answer::Close(1002),
        ),
        (
            "a close of 126 bytes",
            frame(0x88, &[[3u8, 232].as_slice(), &[b'r'; 124]].concat()),
            Answer::Close(1002),
        ),
        (
            "an unmasked text frame",
            build_frame(0x81, b"{\"op\":\"ping\"}", false),
            Answer::Close(1002),
        ),
        (
            "an unmasked close",
            build_frame(0x88, &1000u16.to_be_bytes(), false),
            Answer::Close(1002),
        ),
        (
            "text that is not UTF-8",
            frame(0x81, b"{\"op\":\"\xff\"}"),
            Answer::Close(1007),
        ),
        (
            "UTF-8 broken across fragments",
            [frame(0x01, b"{\"a\":\"\xe2\x82"), frame(0x80, b"\x28\"}")].concat(),
            Answer::Close(1007),
        ),
        (
            "a new message inside a fragmented one",
            [frame(0x01, b"{\"op\":"), frame(0x81, b"{}")].concat(),
            Answer::Close(1002),
        ),
        (
            "a close with a one-byte body",
            frame(0x88, &[3]),
            Answer::Close(1002),
        ),
        (
            "a close reason that is not UTF-8",
            frame(0x88, &[3, 232, 0xff, 0xfe]),
            Answer::Close(1007),
        ),
        (
            "a close with code 1005",
            frame(0x88, &1005u16.to_be_bytes()),
            Answer::Close(1002),
        ),
        (
            "a close with code 999",
            frame(0x88, &999u16.to_be_bytes()),
            Answer::Close(1002),
        ),
        (
            "a close with code 5000",
            frame(0x88, &5000u16.to_be_bytes()),
            Answer::Close(1002),
        ),
        (
            "a 64-bit length with its top bit set",
            announce64(0x81, 1 << 63 | 5),
            Answer::Close(1002),
        ),
        (
            "a frame announcing more than the limit",
            announce64(0x81, max as u64 + 1),
            Answer::Close(1009),
        ),
        (
            "fragments adding up past the limit",
            [frame(0x01, &big), frame(0x80, &big)].concat(),
            Answer::Close(1009),
        ),
        (
            "a binary frame",
            frame(0x82, b"{\"op\":\"ping\"}"),
            reply("bad_frame"),
        ),
        (
            "a text frame that is not JSON",
            frame(0x81, b"hello"),
            reply("bad_frame"),
        ),
        (
            "JSON nested 10,000 deep",
            frame(
                0x81,
                format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).as_bytes(),
            ),
            reply("bad_frame"),
        ),
        (
            "a publish of data nested 65 deep",
            frame(
                0x81,
                format!(
                    "{{\"op\":\"publish\",\"id\":1,\"channel\":\"news\",\"data\":{}1{}}}",
                    "[".repeat(65),
                    "]".repeat(65)
                )
                .as_bytes(),
            ),
            reply("invalid_json"),
        ),
        (
            "an id that is a string",
            text(json!({"op": "ping", "id": "one"})),
            reply("bad_frame"),
        ),
        (
            "an id that is negative",
            text(json!({"op": "ping", "id": -1})),
            reply("bad_frame"),
        ),
        (
            "a subscribe to a channel with CR LF",
            text(json!({"op": "subscribe", "id": 1, "channel": "a\r\nb"})),
            reply("invalid_channel"),
        ),
        (
            "a subscribe to a channel with NUL",
            text(json!({"op": "subscribe", "id": 1, "channel": "a\u{0}b"})),
            reply("invalid_channel"),
        ),
        (
            "a publish to a channel with LF",
            text(json!({"op": "publish", "id": 1, "channel": "a\nb", "data": 1})),
            reply("invalid_channel"),
        ),
        (
            "a publish with an event with CR",
            text(json!({"op": "publish", "id": 1, "channel": "news", "event": "a\rb", "data": 1})),
            reply("invalid_event"),
        ),
        (
            "a publish with an event with NUL",
            text(json!({"op": "publish", "id": 1, "channel": "news", "event": "a\u{0}b", "data": 1})),
            reply("invalid_event"),
        ),
        (
            "a presence of a channel with NUL",
            text(json!({"op": "presence", "id": 1, "channel": "\u{0}"})),
            reply("invalid_channel"),
        ),
        (
            "an unsubscribe with no channel",
            text(json!({"op": "unsubscribe", "id": 1})),
            reply("missing_parameter"),
        ),
        (
            "a refresh with a garbage token",
            text(json!({"op": "refresh", "id": 1, "token": "a.b.c"})),
            reply("invalid_token"),
        ),
    ];
    let mut ws_count = 0;
    for via_router in [false, true] {
        for (name, bytes, expected) in &ws_cases {
            ws_count += 1;
            let got = tokio::time::timeout(CASE_WAIT * 3, ws_exchange(&url, via_router, bytes))
                .await
                .unwrap_or_else(|_| Answer::Other("the case did not end".into()));
            if !fits(expected, &got) {
                wrong.push(format!(
                    "WebSocket {name} (via the router: {via_router}): expected {expected:?}, got {got:?}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases answered wrongly:\n{}",
        wrong.len(),
        count + ws_count,
        wrong.join("\n")
    );
    assert!(http_cases.len() + ws_cases.len() >= 50);

    // Content-Length and Transfer-Encoding together (request smuggling behind
    // a proxy that reads the other one): the body is read by its chunks, and
    // the connection is closed after the answer, so the bytes behind it are
    // never read as a request of their own.
    let hidden = r#"{"channel":"smuggle","data":"hidden"}"#;
    let second = format!(
        "POST /v1/apps/acme/publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{hidden}",
        hidden.len()
    );
    let chunk = r#"{"channel":"smuggle","data":"seen"}"#;
    let smuggling = format!(
        "POST /v1/apps/acme/publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{chunk}\r\n0\r\n\r\n{second}",
        chunk.len()
    );
    let mut stream = TcpStream::connect(&host).await.unwrap();
    stream.write_all(smuggling.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(CASE_WAIT, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was closed after the answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "one answer only: {answer}"
    );
    let data = server.history_data(&app, "smuggle").await;
    assert_eq!(data, ["seen"], "the smuggled request was not served");

    // Nothing was published by a refused request.
    for c in ["news", "ok", "other", "neighbour"] {
        assert_eq!(server.history_offsets(&app, c).await, Vec::<u64>::new(), "{c}");
    }

    // The slowloris pair was cut within a bounded time, with 408.
    for (what, task) in [("head", slow_head), ("body", slow_body)] {
        let (answer, took) = task.await.unwrap();
        assert!(
            took < Duration::from_secs(10),
            "the slow {what} was cut after {took:?}"
        );
        assert!(answer.starts_with("HTTP/1.1 408"), "the slow {what}: {answer}");
    }

    // None of the broken connections is left open: only the two neighbours.
    eventually("the broken connections are gone", WAIT * 2, || async {
        (server.stats(&app).await["connections"] == 2).then_some(())
    })
    .await;
    // And the neighbours were not disturbed.
    server.publish(&app, "neighbour", json!("still here")).await;
    assert_eq!(sse_neighbour.messages(1).await[0]["data"], "still here");
    assert_eq!(ws_neighbour.messages(1).await[0]["data"], "still here");
}
