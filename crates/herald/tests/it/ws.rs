//! WebSocket: replies by id, pushes, resume on subscribe, refusals, keep-alive,
//! token lifetime.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn every_op_is_answered_by_its_id() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = token(&app, &claims(Some("alice"), &["*"], &["chat:*"]));
    let mut ws = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();

    let r = ws.request(json!({"op": "ping"})).await;
    assert_eq!(r, json!({"id": 1, "ok": {}}));

    let r = ws
        .request(json!({"op": "subscribe", "channel": "chat:room"}))
        .await;
    assert_eq!(r["id"], 2);
    assert_eq!(r["ok"]["channel"], "chat:room");
    assert!(r["ok"]["cursor"].as_str().is_some_and(|c| !c.is_empty()), "{r}");

    let r = ws
        .request(json!({"op": "publish", "channel": "chat:room", "event": "said", "data": {"t": "hi"}}))
        .await;
    assert_eq!(r["id"], 3);
    assert_eq!(r["ok"]["channel"], "chat:room");
    assert_eq!(r["ok"]["offset"], 1);
    assert!(r["ok"]["epoch"].as_str().is_some(), "{r}");

    let r = ws
        .request(json!({"op": "presence", "channel": "chat:room"}))
        .await;
    assert_eq!(r["id"], 4);
    let members = r["ok"]["members"].as_array().expect("a members list");
    assert!(
        members.iter().any(|m| m["user"] == "alice"),
        "alice is present on the channel she subscribed: {r}"
    );

    let r = ws
        .request(json!({"op": "unsubscribe", "channel": "chat:room"}))
        .await;
    assert_eq!(r["id"], 5);
    assert!(r.get("ok").is_some(), "{r}");

    // The publish of id 3 came back as a push, with the event name it was given.
    let m = ws.messages(1).await;
    assert_eq!(m[0]["event"], "said");
    assert_eq!(m[0]["data"], json!({"t": "hi"}));
}

#[tokio::test]
async fn an_upgrade_after_another_request_on_the_same_connection_works_the_same() {
    // A fresh connection's upgrade takes the native path (listener.rs); one that
    // served a request first goes through the router. Both must behave alike.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") || !got.ends_with(b"}") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection stays open after the first response");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    let mut ws = Ws::upgrade(&server.ws_url(&app, &user_token(&app, "alice")), stream).await;
    ws.subscribe_ok("feed", None).await;
    server.publish_seq(&app, "feed", 1..=20).await;
    assert_eq!(offsets(&ws.messages(20).await), (1..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn live_pushes_arrive_in_order_with_the_envelope_and_a_cursor() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let mut ws = Ws::connect(&server.ws_url(&app, &user_token(&app, "alice")))
        .await
        .unwrap();
    ws.subscribe_ok("feed", None).await;

    server.publish_seq(&app, "feed", 1..=100).await;
    let got = ws.messages(100).await;
    assert_eq!(offsets(&got), (1..=100).collect::<Vec<_>>());
    let epoch = got[0]["epoch"].clone();
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m["type"], "message");
        assert_eq!(m["channel"], "feed");
        assert_eq!(m["event"], "message");
        assert_eq!(m["epoch"], epoch);
        assert_eq!(m["data"], json!({"n": i as u64 + 1}));
        assert!(m["ts"].as_i64().is_some(), "{m}");
        assert!(m["cursor"].as_str().is_some_and(|c| !c.is_empty()), "{m}");
    }
    server.publish(&app, "feed", json!("marker")).await;
    assert_eq!(offsets(&ws.messages(1).await), vec![101], "nothing twice");
}

#[tokio::test]
async fn subscribe_with_a_cursor_replays_exactly_what_was_missed_after_the_reply() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");

    let mut ws = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    ws.subscribe_ok("room", None).await;
    server.publish_seq(&app, "room", 1..=2).await;
    let seen = ws.messages(2).await;
    let cursor = seen[1]["cursor"].as_str().unwrap().to_owned();
    drop(ws);

    server.publish_seq(&app, "room", 3..=5).await;
    let mut ws = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    let ok = ws.subscribe_ok("room", Some(&cursor)).await;
    assert_eq!(ok["channel"], "room");
    assert!(
        ws.pushes.is_empty(),
        "the reply comes before the replay: {:?}",
        ws.pushes
    );
    let replay = ws.messages(3).await;
    assert_eq!(offsets(&replay), vec![3, 4, 5]);
    assert_eq!(replay[0]["data"], json!({"n": 3}));

    server.publish(&app, "room", json!("live")).await;
    assert_eq!(
        offsets(&ws.messages(1).await),
        vec![6],
        "nothing twice after the replay"
    );
}

#[tokio::test]
async fn bad_frames_get_an_error_and_the_connection_stays_usable() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let mut ws = Ws::connect(&server.ws_url(&app, &user_token(&app, "alice")))
        .await
        .unwrap();

    ws.send_text("this is not json").await;
    let r = ws.recv().await.expect("an error frame");
    assert_eq!(r["error"]["code"], "bad_frame", "{r}");
    assert!(r["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));

    let r = ws.request(json!({"op": "fly", "channel": "room"})).await;
    assert_eq!(r["error"]["code"], "bad_frame", "{r}");

    let r = ws
        .request(json!({"op": "subscribe", "channel": "no spaces allowed"}))
        .await;
    assert_eq!(r["error"]["code"], "invalid_channel", "{r}");

    let r = ws.request(json!({"op": "subscribe"})).await;
    assert_eq!(r["error"]["code"], "missing_parameter", "{r}");

    let r = ws
        .request(json!({"op": "subscribe", "channel": "room", "cursor": "not a cursor"}))
        .await;
    assert_eq!(r["error"]["code"], "invalid_cursor", "{r}");

    // Still a working connection.
    assert_eq!(ws.request(json!({"op": "ping"})).await["ok"], json!({}));
    ws.subscribe_ok("room", None).await;
    server.publish(&app, "room", json!("after errors")).await;
    assert_eq!(ws.messages(1).await[0]["data"], "after errors");
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let mut ws = Ws::connect(&server.ws_url(&app, &user_token(&app, "alice")))
        .await
        .unwrap();
    ws.subscribe_ok("a", None).await;
    ws.subscribe_ok("b", None).await;
    server.publish(&app, "a", json!("a1")).await;
    assert_eq!(ws.messages(1).await[0]["data"], "a1");

    let r = ws.request(json!({"op": "unsubscribe", "channel": "a"})).await;
    assert!(r.get("ok").is_some(), "{r}");
    server.publish(&app, "a", json!("a2")).await;
    server.publish(&app, "b", json!("b1")).await;
    let m = ws.messages(1).await;
    assert_eq!(
        (m[0]["channel"].clone(), m[0]["data"].clone()),
        (json!("b"), json!("b1"))
    );
}

#[tokio::test]
async fn client_publish_needs_the_publish_grant() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let mut reader = Ws::connect(&server.ws_url(&app, &user_token(&app, "carol")))
        .await
        .unwrap();
    reader.subscribe_ok("chat:room", None).await;

    let mut no_grant = Ws::connect(&server.ws_url(&app, &user_token(&app, "alice")))
        .await
        .unwrap();
    let r = no_grant
        .request(json!({"op": "publish", "channel": "chat:room", "data": "nope"}))
        .await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    assert!(r["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));

    let granted = token(&app, &claims(Some("bob"), &[], &["chat:*"]));
    let mut publisher = Ws::connect(&server.ws_url(&app, &granted)).await.unwrap();
    let r = publisher
        .request(json!({"op": "publish", "channel": "chat:room", "data": "yes"}))
        .await;
    assert_eq!(r["ok"]["offset"], 1, "{r}");
    let r = publisher
        .request(json!({"op": "publish", "channel": "other", "data": "no"}))
        .await;
    assert_eq!(r["error"]["code"], "forbidden", "the grant is per pattern: {r}");

    let m = reader.messages(1).await;
    assert_eq!(
        (m[0]["offset"].clone(), m[0]["data"].clone()),
        (json!(1), json!("yes"))
    );
}

#[tokio::test]
async fn the_server_pings_and_closes_a_silent_client_with_4008() {
    let server = TestServer::start_with(|c| {
        c.server.ws_ping = Duration::from_millis(100);
        c.server.ws_idle_timeout = Duration::from_millis(1000);
    })
    .await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");

    // A client that keeps reading answers the pings and stays connected well
    // past the idle timeout.
    let mut alive = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    assert_eq!(
        alive.recv_within(Duration::from_millis(2500)).await,
        Err(()),
        "no frame and no close while pongs flow"
    );
    assert_eq!(alive.request(json!({"op": "ping"})).await["ok"], json!({}));

    // A client that reads nothing answers no ping and is closed for idleness.
    let mut silent = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    match silent.closed().await {
        WsEnd::Closed(code, reason) => {
            assert_eq!(code, 4008, "{reason}");
            assert!(!reason.is_empty());
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn an_expired_token_closes_with_4002() {
    let server = TestServer::start_with(|c| c.node.token_leeway = Duration::ZERO).await;
    let app = server.create_app("acme").await;
    let mut ws = Ws::connect(&server.ws_url(&app, &token_expiring_in(&app, "alice", 2)))
        .await
        .unwrap();
    ws.subscribe_ok("room", None).await;
    match ws.closed().await {
        WsEnd::Closed(code, reason) => {
            assert_eq!(code, 4002, "{reason}");
            assert!(!reason.is_empty());
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn refresh_extends_the_connection() {
    let server = TestServer::start_with(|c| c.node.token_leeway = Duration::ZERO).await;
    let app = server.create_app("acme").await;
    let mut ws = Ws::connect(&server.ws_url(&app, &token_expiring_in(&app, "alice", 2)))
        .await
        .unwrap();
    ws.subscribe_ok("room", None).await;

    let other_user = user_token(&app, "mallory");
    let r = ws.request(json!({"op": "refresh", "token": other_user})).await;
    assert_eq!(r["error"]["code"], "forbidden", "a refresh keeps the user: {r}");

    let fresh = token_expiring_in(&app, "alice", 3600);
    let r = ws.request(json!({"op": "refresh", "token": fresh})).await;
    assert!(r["ok"]["expires"].as_i64().is_some(), "{r}");

    // Past the first token's expiry the connection still works.
    assert_eq!(
        ws.recv_within(Duration::from_secs(4)).await,
        Err(()),
        "not closed"
    );
    server.publish(&app, "room", json!("still here")).await;
    assert_eq!(ws.messages(1).await[0]["data"], "still here");
    let r: Value = ws.request(json!({"op": "ping"})).await;
    assert_eq!(r["ok"], json!({}));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_the_idle_timeout() {
    let server = TestServer::start_with(|c| {
        c.server.ws_ping = Duration::from_millis(100);
        c.server.ws_idle_timeout = Duration::from_millis(500);
    })
    .await;
    let app = server.create_app("acme").await;
    let mut ws = Ws::connect(&server.ws_url(&app, &user_token(&app, "alice")))
        .await
        .unwrap();
    ws.subscribe_ok("burst", None).await;
    assert_eq!(
        server
            .metric("herald_connections", "transport=\"websocket\"")
            .await,
        1.0
    );

    // More than the socket buffers hold, while the client reads nothing: the
    // server's writes block, and it must still let the silent client go.
    let pad = "x".repeat(60_000);
    for n in 1..=200 {
        server.publish(&app, "burst", json!({ "n": n, "pad": pad })).await;
    }
    // Let go within the idle timeout plus the bounded close handshake.
    server
        .wait_metric(LONG_WAIT, "herald_connections", "transport=\"websocket\"", |v| {
            v == 0.0
        })
        .await;
    // The client finds what was buffered, then the end of the connection.
    for frames in 0.. {
        match ws.recv_within(WAIT).await {
            Ok(Some(_)) => assert!(frames < 200, "more frames than were published"),
            Ok(None) => break,
            Err(()) => panic!("the connection neither ended nor delivered within the wait"),
        }
    }
}

#[tokio::test]
async fn resume_beyond_history_pushes_a_reset_then_live_messages() {
    let server = TestServer::start_with(|c| c.node.default_namespace.history_size = 3).await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut ws = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    let start = ws.subscribe_ok("room", None).await["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(ws);
    let last = server.publish_seq(&app, "room", 1..=10).await;

    let mut ws = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    ws.subscribe_ok("room", Some(&start)).await;
    assert!(
        ws.pushes.is_empty(),
        "the reply comes before the reset: {:?}",
        ws.pushes
    );
    let r = ws.push().await;
    assert_eq!(r["type"], "reset", "{r}");
    assert_eq!(r["channel"], "room");
    assert_eq!(r["epoch"], last["epoch"]);
    assert_eq!(r["reason"], "history_gone");
    let reset_cursor = r["cursor"].as_str().expect("the cursor to go on from").to_owned();

    server.publish(&app, "room", json!("after")).await;
    let m = ws.messages(1).await;
    assert_eq!(offsets(&m), vec![11]);
    drop(ws);
    let mut ws = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    ws.subscribe_ok("room", Some(&reset_cursor)).await;
    assert_eq!(
        offsets(&ws.messages(1).await),
        vec![11],
        "the reset's cursor loses nothing"
    );
}

#[tokio::test]
async fn subscribing_twice_delivers_once() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let mut ws = Ws::connect(&server.ws_url(&app, &user_token(&app, "alice")))
        .await
        .unwrap();
    ws.subscribe_ok("room", None).await;
    ws.subscribe_ok("room", None).await;
    server.publish_seq(&app, "room", 1..=2).await;
    assert_eq!(offsets(&ws.messages(2).await), vec![1, 2]);
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let mut ws = Ws::connect(&server.ws_url(&app, &user_token(&app, "alice")))
        .await
        .unwrap();
    ws.subscribe_ok("room", None).await;
    assert_eq!(
        ws.close_with(1000).await,
        WsEnd::Closed(1000, "bye".into()),
        "the server completes the closing handshake"
    );
}
