//! Loss-free resume: a cursor from any transport resumes on any other, at any
//! point of a live stream, and a slow reader is caught up from history: every
//! message exactly once, in order.

use serde_json::{json, Value};

use crate::support::*;

/// What a long-poll from `cursor` answers at once (or within its timeout).
async fn poll_from(server: &TestServer, app: &App, channel: &str, cursor: &str, tok: &str) -> Value {
    let (status, body) = server
        .longpoll(
            app,
            &format!(
                "channel={}&cursor={}&timeout=10&token={tok}",
                enc(channel),
                enc(cursor)
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resets"], json!([]), "no reset: {body}");
    body
}

fn body_messages(body: &Value) -> Vec<Value> {
    body["messages"].as_array().expect("a messages list").clone()
}

#[tokio::test]
async fn an_sse_id_resumes_on_long_poll_and_websocket() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");

    let mut sse = Sse::connect(&server.events_url(&app, &["room"], &tok), None).await;
    sse.first_id().await;
    server.publish_seq(&app, "room", 1..=2).await;
    let ev = sse.next_event().await;
    assert_eq!(ev.json()["offset"], 1);
    let id = ev.id.clone().unwrap(); // the reader stops after message 1
    drop(sse);
    server.publish_seq(&app, "room", 3..=4).await;

    let body = poll_from(&server, &app, "room", &id, &tok).await;
    assert_eq!(offsets(&body_messages(&body)), vec![2, 3, 4]);

    let mut ws = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    ws.subscribe_ok("room", Some(&id)).await;
    assert_eq!(offsets(&ws.messages(3).await), vec![2, 3, 4]);
    server.publish(&app, "room", json!("live")).await;
    assert_eq!(offsets(&ws.messages(1).await), vec![5], "nothing twice");
}

#[tokio::test]
async fn a_websocket_push_cursor_resumes_on_sse() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");

    let mut ws = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    ws.subscribe_ok("room", None).await;
    server.publish_seq(&app, "room", 1..=3).await;
    let seen = ws.messages(2).await; // the reader stops after message 2
    let cursor = seen[1]["cursor"].as_str().unwrap().to_owned();
    drop(ws);
    server.publish_seq(&app, "room", 4..=5).await;

    let mut sse = Sse::connect(&server.events_url(&app, &["room"], &tok), Some(&cursor)).await;
    assert_eq!(sse.status, 200);
    let got = sse.messages(3).await;
    assert_eq!(offsets(&got), vec![3, 4, 5]);
    server.publish(&app, "room", json!("live")).await;
    assert_eq!(offsets(&sse.messages(1).await), vec![6], "nothing twice");
}

#[tokio::test]
async fn a_long_poll_cursor_resumes_on_sse() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");

    let (_, body) = server
        .longpoll(&app, &format!("channel=room&timeout=0&token={tok}"))
        .await;
    let start = body["cursor"].as_str().unwrap().to_owned();
    server.publish_seq(&app, "room", 1..=2).await;
    let body = poll_from(&server, &app, "room", &start, &tok).await;
    assert_eq!(offsets(&body_messages(&body)), vec![1, 2]);
    let cursor = body["cursor"].as_str().unwrap().to_owned();
    server.publish_seq(&app, "room", 3..=4).await;

    let mut sse = Sse::connect(&server.events_url(&app, &["room"], &tok), Some(&cursor)).await;
    assert_eq!(offsets(&sse.messages(2).await), vec![3, 4]);
    server.publish(&app, "room", json!("live")).await;
    assert_eq!(offsets(&sse.messages(1).await), vec![5], "nothing twice");
}

/// The transports a resume loop rotates through.
#[derive(Clone, Copy, Debug)]
enum Via {
    Sse,
    Ws,
    LongPoll,
}

/// One connection's worth of a client that reads up to `take` messages from
/// `cursor` and stops; returns the offsets read and the cursor to go on from.
async fn read_some(
    server: &TestServer,
    app: &App,
    tok: &str,
    via: Via,
    cursor: &str,
    take: usize,
) -> (Vec<u64>, String) {
    let mut got = Vec::new();
    let mut cursor = cursor.to_owned();
    match via {
        Via::Sse => {
            let mut sse = Sse::connect(&server.events_url(app, &["seam"], tok), Some(&cursor)).await;
            assert_eq!(sse.status, 200);
            for _ in 0..take {
                let ev = sse.next_event().await;
                assert_eq!(ev.event, "message", "no reset or error on resume: {ev:?}");
                got.push(ev.json()["offset"].as_u64().unwrap());
                cursor = ev.id.clone().expect("a message has an id");
            }
        }
        Via::Ws => {
            let mut ws = Ws::connect(&server.ws_url(app, tok)).await.unwrap();
            ws.subscribe_ok("seam", Some(&cursor)).await;
            for _ in 0..take {
                let m = ws.push().await;
                assert_eq!(m["type"], "message", "no reset on resume: {m}");
                got.push(m["offset"].as_u64().unwrap());
                cursor = m["cursor"].as_str().unwrap().to_owned();
            }
        }
        Via::LongPoll => {
            let body = poll_from(server, app, "seam", &cursor, tok).await;
            got = offsets(&body_messages(&body));
            cursor = body["cursor"].as_str().unwrap().to_owned();
        }
    }
    (got, cursor)
}

/// While a publisher appends `total` messages, a client disconnects and resumes
/// over and over (through `vias` in turn); everything it read, concatenated,
/// must be exactly offsets 1..=total.
async fn resume_loop(vias: &[Via], total: u64) {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");

    // The client's starting point: the first id of an SSE connection.
    let mut sse = Sse::connect(&server.events_url(&app, &["seam"], &tok), None).await;
    let mut cursor = sse.first_id().await;
    drop(sse);

    let publisher = tokio::spawn({
        let (url, key) = (server.app_url(&app, "/publish"), app.key.clone());
        let http = server.http.clone();
        async move {
            for n in 1..=total {
                let res = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"channel": "seam", "data": {"n": n}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
            }
        }
    });

    let mut all: Vec<u64> = Vec::new();
    let mut round = 0usize;
    while (all.len() as u64) < total {
        assert!(round < 2000, "the resume loop did not finish: read {}", all.len());
        let via = vias[round % vias.len()];
        // 1 to 23 messages per connection, never more than are left.
        let take = (1 + (round * 7) % 23).min(total as usize - all.len());
        let (got, next) = read_some(&server, &app, &tok, via, &cursor, take).await;
        all.extend(got);
        cursor = next;
        round += 1;
    }
    tokio::time::timeout(LONG_WAIT, publisher).await.unwrap().unwrap();
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "every message once, in order"
    );
    assert!(round > 5, "the client really resumed several times ({round})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_at_any_point_of_a_live_stream_without_loss() {
    resume_loop(&[Via::Sse], 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_resumes_at_any_point_of_a_live_stream_without_loss() {
    resume_loop(&[Via::Ws], 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_follows_a_live_stream_without_loss() {
    resume_loop(&[Via::LongPoll], 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_moves_between_transports_during_a_live_stream_without_loss() {
    resume_loop(
        &[Via::Sse, Via::Ws, Via::LongPoll, Via::Ws, Via::Sse, Via::LongPoll],
        300,
    )
    .await;
}

/// A burst of large messages that no socket buffer holds, published while the
/// client reads nothing.
async fn burst(server: &TestServer, app: &App, channel: &str, n: u64) {
    let pad = "x".repeat(60_000);
    for i in 1..=n {
        server.publish(app, channel, json!({ "n": i, "pad": pad })).await;
    }
}

fn small_queue(c: &mut herald::Config) {
    c.node.limits.queue_len = 4;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_websocket_reader_gets_every_message_once() {
    let server = TestServer::start_with(small_queue).await;
    let app = server.create_app("acme").await;
    let mut ws = Ws::connect(&server.ws_url(&app, &user_token(&app, "alice")))
        .await
        .unwrap();
    ws.subscribe_ok("burst", None).await;

    burst(&server, &app, "burst", 200).await;
    let got = ws.messages(200).await;
    assert_eq!(offsets(&got), (1..=200).collect::<Vec<_>>());
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m["data"]["n"], i as u64 + 1);
    }
    assert!(
        server.metric("herald_lagged_catchups_total", "").await >= 1.0,
        "the queue overflowed and the reader was caught up from history"
    );
    server.publish(&app, "burst", json!("after")).await;
    assert_eq!(offsets(&ws.messages(1).await), vec![201], "nothing twice");
    direct_paths_were_taken(&server).await;
}

/// The hub wrote to the sleeping connection itself, and handed it back to the
/// connection's task when its socket was full (docs/decisions.md, direct writes).
async fn direct_paths_were_taken(server: &TestServer) {
    assert!(server.metric("herald_direct_writes_total", "").await >= 1.0);
    assert!(server.metric("herald_direct_handed_back_total", "").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sse_reader_gets_every_message_once() {
    let server = TestServer::start_with(small_queue).await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut sse = Sse::connect(&server.events_url(&app, &["burst"], &tok), None).await;
    sse.first_id().await;

    burst(&server, &app, "burst", 200).await;
    let got = sse.messages(200).await;
    assert_eq!(offsets(&got), (1..=200).collect::<Vec<_>>());
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m["data"]["n"], i as u64 + 1);
    }
    assert!(
        server.metric("herald_lagged_catchups_total", "").await >= 1.0,
        "the queue overflowed and the reader was caught up from history"
    );
    server.publish(&app, "burst", json!("after")).await;
    assert_eq!(offsets(&sse.messages(1).await), vec![201], "nothing twice");
    direct_paths_were_taken(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sse_id_resumes_several_live_channels_without_loss() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let url = server.events_url(&app, &["left", "right", "quiet"], &tok);
    let total = 150u64; // per channel

    let mut sse = Sse::connect(&url, None).await;
    let mut id = sse.first_id().await;
    drop(sse);
    let publisher = tokio::spawn({
        let (purl, key) = (server.app_url(&app, "/publish"), app.key.clone());
        let http = server.http.clone();
        async move {
            for n in 1..=total {
                for c in ["left", "right"] {
                    let res = http
                        .post(&purl)
                        .bearer_auth(&key)
                        .json(&json!({"channel": c, "data": {"n": n}}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 200);
                }
            }
        }
    });

    let (mut left, mut right) = (Vec::new(), Vec::new());
    let mut round = 0usize;
    while (left.len() + right.len()) < 2 * total as usize {
        assert!(round < 2000, "the resume loop did not finish");
        let mut sse = Sse::connect(&url, Some(&id)).await;
        let take = (1 + (round * 5) % 19).min(2 * total as usize - left.len() - right.len());
        for _ in 0..take {
            let ev = sse.next_event().await;
            assert_eq!(ev.event, "message", "no reset on resume: {ev:?}");
            let m = ev.json();
            let offset = m["offset"].as_u64().unwrap();
            match m["channel"].as_str().unwrap() {
                "left" => left.push(offset),
                "right" => right.push(offset),
                other => panic!("a message of {other}"),
            }
            id = ev.id.clone().unwrap();
        }
        round += 1;
    }
    tokio::time::timeout(LONG_WAIT, publisher).await.unwrap().unwrap();
    let want: Vec<u64> = (1..=total).collect();
    assert_eq!(left, want, "left: every message once, in order");
    assert_eq!(right, want, "right: every message once, in order");
}

#[tokio::test]
async fn a_replay_longer_than_a_history_page_arrives_whole_on_every_transport() {
    let server = TestServer::start_with(|c| c.node.limits.max_history_page = 7).await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut sse = Sse::connect(&server.events_url(&app, &["room"], &tok), None).await;
    let start = sse.first_id().await;
    drop(sse);
    server.publish_seq(&app, "room", 1..=50).await;
    let want: Vec<u64> = (1..=50).collect();

    let mut sse = Sse::connect(&server.events_url(&app, &["room"], &tok), Some(&start)).await;
    assert_eq!(offsets(&sse.messages(50).await), want, "SSE");
    let mut ws = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    ws.subscribe_ok("room", Some(&start)).await;
    assert_eq!(offsets(&ws.messages(50).await), want, "WebSocket");
    let body = poll_from(&server, &app, "room", &start, &tok).await;
    assert_eq!(offsets(&body_messages(&body)), want, "long-poll");

    server.publish(&app, "room", json!("live")).await;
    assert_eq!(offsets(&sse.messages(1).await), vec![51]);
    assert_eq!(offsets(&ws.messages(1).await), vec![51]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_of_several_channels_gets_every_message_once() {
    let server = TestServer::start_with(small_queue).await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut sse = Sse::connect(&server.events_url(&app, &["a", "b"], &tok), None).await;
    sse.first_id().await;
    let mut ws = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    ws.subscribe_ok("a", None).await;
    ws.subscribe_ok("b", None).await;

    let pad = "x".repeat(60_000);
    for n in 1..=100u64 {
        for c in ["a", "b"] {
            server.publish(&app, c, json!({ "n": n, "pad": pad })).await;
        }
    }
    let want: Vec<u64> = (1..=100).collect();
    let per_channel = |got: &[Value], c: &str| -> Vec<u64> {
        got.iter()
            .filter(|m| m["channel"] == c)
            .map(|m| m["offset"].as_u64().unwrap())
            .collect()
    };
    let got = sse.messages(200).await;
    assert_eq!(per_channel(&got, "a"), want, "SSE a");
    assert_eq!(per_channel(&got, "b"), want, "SSE b");
    let got = ws.messages(200).await;
    assert_eq!(per_channel(&got, "a"), want, "WebSocket a");
    assert_eq!(per_channel(&got, "b"), want, "WebSocket b");
    assert!(server.metric("herald_lagged_catchups_total", "").await >= 1.0);
}

/// Checks a stream of pushes (`type` message or reset) up to offset `last`:
/// offsets follow one another, and every jump is announced by a reset whose
/// `offset` is where the stream goes on from. Returns the number of resets.
fn assert_no_silent_gap(events: &[(String, Value)], last: u64) -> usize {
    let mut next = 1;
    let mut resets = 0;
    for (kind, v) in events {
        match kind.as_str() {
            "reset" => {
                assert_eq!(v["reason"], "history_gone", "{v}");
                next = v["offset"].as_u64().unwrap() + 1;
                resets += 1;
            }
            "message" => {
                assert_eq!(v["offset"].as_u64().unwrap(), next, "a gap without a reset");
                next += 1;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(next, last + 1, "the stream reached the newest message");
    resets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_beyond_history_gets_a_reset_never_a_silent_gap() {
    let server = TestServer::start_with(|c| {
        small_queue(c);
        c.node.default_namespace.history_size = 3;
    })
    .await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut sse = Sse::connect(&server.events_url(&app, &["burst"], &tok), None).await;
    sse.first_id().await;
    let mut ws = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    ws.subscribe_ok("burst", None).await;

    burst(&server, &app, "burst", 200).await;
    let mut got = Vec::new();
    while got
        .last()
        .map(|(_, v): &(String, Value)| v["offset"] != 200)
        .unwrap_or(true)
    {
        assert!(got.len() < 1000, "the stream reaches offset 200");
        let ev = sse.next_event().await;
        got.push((ev.event.clone(), ev.json()));
    }
    let sse_resets = assert_no_silent_gap(&got, 200);
    let mut got = Vec::new();
    while got
        .last()
        .map(|(_, v): &(String, Value)| v["offset"] != 200)
        .unwrap_or(true)
    {
        assert!(got.len() < 1000, "the stream reaches offset 200");
        let v = ws.push().await;
        got.push((v["type"].as_str().unwrap().to_owned(), v));
    }
    let ws_resets = assert_no_silent_gap(&got, 200);
    assert!(
        sse_resets + ws_resets >= 1,
        "the overflow went past history at least once"
    );

    server.publish(&app, "burst", json!("after")).await;
    assert_eq!(offsets(&sse.messages(1).await), vec![201]);
    assert_eq!(offsets(&ws.messages(1).await), vec![201]);
}
