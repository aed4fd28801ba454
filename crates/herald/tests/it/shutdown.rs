//! Graceful shutdown: every client is told to reconnect, nobody hangs, and a
//! restarted server never hides what the restart lost.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

fn quick_drain(c: &mut herald::Config) {
    c.server.shutdown_deadline = Duration::from_secs(5);
}

/// History in memory only (`broker = "memory"`): a restart loses it. The
/// default, which keeps it, is tested in restart.rs.
fn in_memory(c: &mut herald::Config) {
    quick_drain(c);
    c.broker = herald::config::MEMORY.into();
}

#[tokio::test]
async fn shutdown_tells_every_client_and_a_restart_in_memory_resets_old_cursors() {
    let server = TestServer::start_with(in_memory).await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");

    // One client per transport, each with a cursor after message 2.
    let mut sse = Sse::connect(&server.events_url(&app, &["room"], &tok), None).await;
    sse.first_id().await;
    let mut ws = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    ws.subscribe_ok("room", None).await;
    server.publish_seq(&app, "room", 1..=2).await;
    let sse_id = sse.messages(2).await;
    assert_eq!(offsets(&sse_id), vec![1, 2]);
    let sse_id = sse.last_event_id.clone().unwrap();
    let ws_cursor = ws.messages(2).await[1]["cursor"].as_str().unwrap().to_owned();
    let (_, body) = server
        .longpoll(&app, &format!("channel=room&timeout=0&token={tok}"))
        .await;
    let lp_cursor = body["cursor"].as_str().unwrap().to_owned();

    let poll_url = server.app_url(
        &app,
        &format!(
            "/poll?channel=room&cursor={}&timeout=60&token={tok}",
            enc(&lp_cursor)
        ),
    );
    let http = server.http.clone();
    let poll = tokio::spawn(async move {
        let res = http.get(poll_url).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json::<Value>().await.unwrap(), Instant::now())
    });
    server
        .wait_metric(WAIT, "herald_connections", "transport=\"longpoll\"", |v| v == 1.0)
        .await;

    let stopping = Instant::now();
    let stop = tokio::spawn(server.stop());

    // SSE: a disconnect event, then the end of the stream.
    let ev = sse.next_event().await;
    assert_eq!(ev.event, "disconnect", "{ev:?}");
    assert_eq!(ev.json()["reconnect"], true);
    assert_eq!(sse.next().await, None, "the stream ends");

    // WebSocket: 1012, "service restart".
    match ws.closed().await {
        WsEnd::Closed(code, reason) => {
            assert_eq!(code, 1012, "{reason}");
            assert!(!reason.is_empty());
        }
        other => panic!("expected a close frame, got {other:?}"),
    }

    // Long-poll: answers promptly (its own timeout is a minute), with no message.
    let (status, body, at) = tokio::time::timeout(LONG_WAIT, poll).await.unwrap().unwrap();
    assert!(
        at.duration_since(stopping) < Duration::from_secs(15),
        "the pending poll returned promptly"
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"], json!([]));

    let dir = tokio::time::timeout(LONG_WAIT, stop).await.unwrap().unwrap();

    // A new server on the same data dir: the app is still there; the memory
    // broker lost the history, so every old cursor gets a reset, not a gap.
    let server = TestServer::start_in(dir, in_memory).await;
    let tok = user_token(&app, "alice");
    let url = server.events_url(&app, &["room"], &tok);

    let mut sse = Sse::connect(&url, Some(&sse_id)).await;
    assert_eq!(
        sse.status, 200,
        "the app and its token secret survived the restart"
    );
    let ev = sse.next_event().await;
    assert_eq!(ev.event, "reset", "{ev:?}");
    assert_eq!(ev.json()["channel"], "room");
    assert_eq!(ev.json()["reason"], "epoch_changed");

    let mut ws = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    ws.subscribe_ok("room", Some(&ws_cursor)).await;
    let r = ws.push().await;
    assert_eq!(r["type"], "reset", "{r}");
    assert_eq!(r["channel"], "room");
    assert_eq!(r["reason"], "epoch_changed");

    let (status, body) = server
        .longpoll(
            &app,
            &format!("channel=room&cursor={}&timeout=10&token={tok}", enc(&lp_cursor)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resets"][0]["reason"], "epoch_changed", "{body}");
    let lp_cursor = body["cursor"].as_str().unwrap().to_owned();

    // After the reset, everything new arrives once, on every transport.
    let p = server.publish(&app, "room", json!("after restart")).await;
    assert_eq!(p["offset"], 1);
    assert_eq!(ev.json()["epoch"], p["epoch"], "the reset names the new epoch");
    assert_eq!(sse.messages(1).await[0]["data"], "after restart");
    assert_eq!(ws.messages(1).await[0]["data"], "after restart");
    let (_, body) = server
        .longpoll(
            &app,
            &format!("channel=room&cursor={}&timeout=10&token={tok}", enc(&lp_cursor)),
        )
        .await;
    assert_eq!(body["messages"][0]["data"], "after restart", "{body}");
}
