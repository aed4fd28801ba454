//! The first request head of a connection (the native SSE and WebSocket path,
//! listener.rs) and what the SSE and long-poll handlers read from it: the
//! channels, the resume id (`Last-Event-ID`, or `?cursor=`) and the token, all
//! read before the token is checked, so in time proportional to the request
//! (the unit test `many_channels_are_read_in_linear_time` checks 40 000).
#![no_main]

use herald_server::fuzzing::{native_request, subscribe_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(head) = native_request(data) {
        assert!(head.kind == "sse" || head.kind == "ws");
        assert!(!head.app.is_empty());
        for name in ["content-length", "transfer-encoding", "expect"] {
            assert!(!head.headers.contains_key(name), "{name} on the native path");
        }
        let (_channels, cursor, _token) = subscribe_request(&head.headers, head.query.as_deref());
        if let Ok(c) = cursor {
            // What a resume id gave prints back to an id that gives the same.
            let printed = c.to_string();
            assert_eq!(herald_protocol::Cursor::parse(&printed).unwrap(), c);
        }
    }
    // The same readers over a query string alone, with the input as the resume id.
    let text = String::from_utf8_lossy(data);
    let (query, id) = text.split_once('\n').unwrap_or((&text, ""));
    let mut headers = axum::http::HeaderMap::new();
    if let Ok(v) = axum::http::HeaderValue::from_str(id) {
        headers.insert("last-event-id", v);
    }
    let started = std::time::Instant::now();
    let (channels, _cursor, token) = subscribe_request(&headers, Some(query));
    assert!(
        started.elapsed() < std::time::Duration::from_millis(500),
        "reading took {:?}",
        started.elapsed()
    );
    if let Ok(n) = channels {
        assert!(n >= 1);
    }
    if let Some(t) = token {
        assert!(!t.is_empty() || headers.contains_key("authorization"));
    }
});
