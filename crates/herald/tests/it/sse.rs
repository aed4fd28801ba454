//! Server-Sent Events: what a browser's EventSource sees, live and on resume.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn two_hundred_messages_arrive_live_in_offset_order_once_each() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut sse = Sse::connect(&server.events_url(&app, &["feed"], &tok), None).await;
    assert_eq!(sse.status, 200);
    sse.first_id().await;

    server.publish_seq(&app, "feed", 1..=200).await;
    let got = sse.messages(200).await;
    assert_eq!(offsets(&got), (1..=200).collect::<Vec<_>>());
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m["data"], json!({"n": i as u64 + 1}), "data follows the offset");
        assert_eq!(m["channel"], "feed");
        assert_eq!(m["event"], "message");
        assert!(m["epoch"].as_str().is_some_and(|e| !e.is_empty()), "{m}");
        assert!(m["ts"].as_i64().is_some(), "{m}");
    }
    // Nothing twice: the next thing on the stream is the next message.
    server.publish(&app, "feed", json!("marker")).await;
    let next = sse.messages(1).await;
    assert_eq!(offsets(&next), vec![201]);
}

#[tokio::test]
async fn one_connection_carries_several_channels() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut sse = Sse::connect(
        &server.events_url(&app, &["chat:a", "chat:b", "news"], &tok),
        None,
    )
    .await;
    assert_eq!(sse.status, 200);
    sse.first_id().await;

    server.publish(&app, "chat:a", json!("a1")).await;
    server.publish(&app, "news", json!("n1")).await;
    server.publish(&app, "chat:b", json!("b1")).await;
    server.publish(&app, "chat:a", json!("a2")).await;
    let got = sse.messages(4).await;
    let seen: Vec<(String, u64, serde_json::Value)> = got
        .iter()
        .map(|m| {
            (
                m["channel"].as_str().unwrap().to_owned(),
                m["offset"].as_u64().unwrap(),
                m["data"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("chat:a".into(), 1, json!("a1")),
            ("news".into(), 1, json!("n1")),
            ("chat:b".into(), 1, json!("b1")),
            ("chat:a".into(), 2, json!("a2")),
        ]
    );
}

#[tokio::test]
async fn the_event_field_follows_the_published_event_name() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut sse = Sse::connect(&server.events_url(&app, &["room"], &tok), None).await;
    sse.first_id().await;

    server
        .publish_body(
            &app,
            json!({"channel": "room", "event": "typing", "data": {"who": "bob"}}),
        )
        .await;
    server.publish(&app, "room", json!("plain")).await;
    let ev = sse.next_event().await;
    assert_eq!(ev.event, "typing");
    assert_eq!(ev.json()["event"], "typing");
    assert_eq!(ev.json()["data"], json!({"who": "bob"}));
    let ev = sse.next_event().await;
    assert_eq!(ev.event, "message", "the default event name");
    assert_eq!(ev.json()["event"], "message");
}

#[tokio::test]
async fn the_stream_is_unbuffered_event_stream_with_a_retry_hint() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut sse = Sse::connect(&server.events_url(&app, &["room"], &tok), None).await;
    assert_eq!(sse.status, 200);
    let h = |name: &str| {
        sse.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert!(
        h("content-type").starts_with("text/event-stream"),
        "{:?}",
        sse.headers
    );
    assert!(h("cache-control").contains("no-cache"), "{:?}", sse.headers);
    assert_eq!(h("x-accel-buffering"), "no");
    sse.read_until(|s| s.retry.is_some() && s.last_event_id.is_some())
        .await;
    assert!(sse.retry.unwrap() > 0);
}

#[tokio::test]
async fn a_reconnect_before_the_first_message_loses_nothing() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let url = server.events_url(&app, &["room"], &tok);

    let mut sse = Sse::connect(&url, None).await;
    let id = sse.first_id().await;
    drop(sse);
    server.publish_seq(&app, "room", 1..=3).await;

    let mut sse = Sse::connect(&url, Some(&id)).await;
    assert_eq!(sse.status, 200);
    let got = sse.messages(3).await;
    assert_eq!(offsets(&got), vec![1, 2, 3]);
    server.publish(&app, "room", json!("live")).await;
    assert_eq!(
        offsets(&sse.messages(1).await),
        vec![4],
        "no duplicate after the replay"
    );
}

#[tokio::test]
async fn heartbeat_events_keep_an_idle_stream_alive_and_visible() {
    // Named events (a comment is invisible to EventSource): a client can tell a
    // quiet stream from a dead one. The `open` event says how often they come.
    let server = TestServer::start_with(|c| c.server.sse_heartbeat = Duration::from_millis(200)).await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut sse = Sse::connect(&server.events_url(&app, &["quiet"], &tok), None).await;
    sse.read_until(|s| s.heartbeats >= 3).await;
    let open: serde_json::Value = serde_json::from_str(&sse.opens[0]).unwrap();
    assert_eq!(open["heartbeat"], 200, "{open}");
    // Still a working stream after the heartbeats.
    server.publish(&app, "quiet", json!("hi")).await;
    assert_eq!(sse.messages(1).await[0]["data"], "hi");
}

#[tokio::test]
async fn resume_with_last_event_id_or_cursor_and_last_event_id_wins() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let url = server.events_url(&app, &["room"], &tok);

    let mut sse = Sse::connect(&url, None).await;
    sse.first_id().await;
    server.publish_seq(&app, "room", 1..=5).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let ev = sse.next_event().await;
        ids.push(ev.id.clone().expect("every message has an id"));
    }
    drop(sse);
    let (after2, after4) = (&ids[1], &ids[3]);

    let mut by_header = Sse::connect(&url, Some(after2)).await;
    assert_eq!(offsets(&by_header.messages(3).await), vec![3, 4, 5]);

    let mut by_query = Sse::connect(&format!("{url}&cursor={}", enc(after2)), None).await;
    assert_eq!(by_query.status, 200);
    assert_eq!(offsets(&by_query.messages(3).await), vec![3, 4, 5]);

    let mut both = Sse::connect(&format!("{url}&cursor={}", enc(after2)), Some(after4)).await;
    assert_eq!(offsets(&both.messages(1).await), vec![5], "Last-Event-ID wins");

    server.publish(&app, "room", json!("live")).await;
    for sse in [&mut by_header, &mut by_query, &mut both] {
        assert_eq!(offsets(&sse.messages(1).await), vec![6]);
    }
}

#[tokio::test]
async fn multi_channel_resume_replays_what_each_channel_missed() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let url = server.events_url(&app, &["a", "b"], &tok);

    let mut sse = Sse::connect(&url, None).await;
    sse.first_id().await;
    server.publish(&app, "a", json!("a1")).await;
    server.publish(&app, "b", json!("b1")).await;
    let first = sse.messages(2).await;
    assert_eq!(first.len(), 2);
    let id = sse.last_event_id.clone().unwrap();
    drop(sse);

    // Both channels move while the client is away, interleaved.
    for (c, d) in [("a", "a2"), ("b", "b2"), ("b", "b3"), ("a", "a3"), ("b", "b4")] {
        server.publish(&app, c, json!(d)).await;
    }
    let mut sse = Sse::connect(&url, Some(&id)).await;
    let mut evs = Vec::new();
    for _ in 0..5 {
        evs.push(sse.next_event().await);
    }
    let data_of = |ch: &str| -> Vec<serde_json::Value> {
        evs.iter()
            .map(|e| e.json())
            .filter(|m| m["channel"] == ch)
            .map(|m| m["data"].clone())
            .collect()
    };
    assert_eq!(data_of("a"), vec![json!("a2"), json!("a3")]);
    assert_eq!(data_of("b"), vec![json!("b2"), json!("b3"), json!("b4")]);

    // Each event's id covers both channels: resuming from the middle of the
    // replay yields exactly the rest.
    let mid = evs[2].id.clone().unwrap();
    let rest: Vec<serde_json::Value> = evs[3..].iter().map(|e| e.json()["data"].clone()).collect();
    drop(sse);
    let mut sse = Sse::connect(&url, Some(&mid)).await;
    let got: Vec<serde_json::Value> = sse.messages(2).await.iter().map(|m| m["data"].clone()).collect();
    assert_eq!(got, rest);
    server.publish(&app, "a", json!("a4")).await;
    assert_eq!(sse.messages(1).await[0]["data"], "a4", "nothing replayed twice");
}

#[tokio::test]
async fn resume_beyond_history_gives_a_reset_then_live_messages() {
    let server = TestServer::start_with(|c| c.node.default_namespace.history_size = 3).await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let url = server.events_url(&app, &["room"], &tok);

    let mut sse = Sse::connect(&url, None).await;
    let id = sse.first_id().await;
    drop(sse);
    let last = server.publish_seq(&app, "room", 1..=10).await;

    let mut sse = Sse::connect(&url, Some(&id)).await;
    let ev = sse.next_event().await;
    assert_eq!(ev.event, "reset", "{ev:?}");
    let r = ev.json();
    assert_eq!(r["channel"], "room");
    assert_eq!(r["epoch"], last["epoch"]);
    assert_eq!(r["reason"], "history_gone");
    let reset_id = ev.id.clone().expect("the reset carries the cursor to go on from");

    server.publish(&app, "room", json!("after")).await;
    let m = sse.messages(1).await;
    assert_eq!(offsets(&m), vec![11]);
    assert_eq!(m[0]["data"], "after");
    drop(sse);

    // The reset's id is a position from which nothing is lost.
    let mut sse = Sse::connect(&url, Some(&reset_id)).await;
    assert_eq!(offsets(&sse.messages(1).await), vec![11]);
}

#[tokio::test]
async fn an_expired_token_ends_the_stream_with_an_error_event() {
    let server = TestServer::start_with(|c| c.node.token_leeway = Duration::ZERO).await;
    let app = server.create_app("acme").await;
    let tok = token_expiring_in(&app, "alice", 2);
    let mut sse = Sse::connect(&server.events_url(&app, &["room"], &tok), None).await;
    assert_eq!(sse.status, 200);
    sse.first_id().await;
    let ev = sse.next_event().await;
    assert_eq!(ev.event, "error", "{ev:?}");
    assert_eq!(ev.json()["code"], "token_expired");
    assert!(ev.json()["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(sse.next().await, None, "the stream ends after the error");
}

#[tokio::test]
async fn a_cursor_ahead_of_the_channel_or_past_its_age_gives_a_reset() {
    let server = TestServer::start_with(|c| {
        c.node.namespaces.insert(
            "brief".into(),
            herald_node::NamespaceOptions {
                history_ttl: Duration::from_millis(300),
                ..Default::default()
            },
        );
    })
    .await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");

    // A position beyond the newest message of the epoch.
    let p = server.publish(&app, "room", json!(1)).await;
    let ahead = herald_protocol::Position {
        channel: herald_protocol::ChannelName::parse("room").unwrap(),
        epoch: p["epoch"].as_str().unwrap().to_owned(),
        offset: 9,
    }
    .encode();
    let mut sse = Sse::connect(&server.events_url(&app, &["room"], &tok), Some(&ahead)).await;
    let ev = sse.next_event().await;
    assert_eq!(
        (ev.event.as_str(), ev.json()["reason"].clone()),
        ("reset", json!("position_ahead"))
    );
    server.publish(&app, "room", json!(2)).await;
    assert_eq!(offsets(&sse.messages(1).await), vec![2]);

    // Messages that aged out of history while the client was away.
    let url = server.events_url(&app, &["brief:x"], &tok);
    let mut sse = Sse::connect(&url, None).await;
    let id = sse.first_id().await;
    drop(sse);
    server.publish_seq(&app, "brief:x", 1..=3).await;
    tokio::time::sleep(Duration::from_millis(600)).await; // the history age under test
    let mut sse = Sse::connect(&url, Some(&id)).await;
    let ev = sse.next_event().await;
    assert_eq!(
        (ev.event.as_str(), ev.json()["reason"].clone()),
        ("reset", json!("history_gone"))
    );
    server.publish(&app, "brief:x", json!("fresh")).await;
    assert_eq!(offsets(&sse.messages(1).await), vec![4]);
}
