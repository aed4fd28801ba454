//! Restarts of the real `herald` binary on the embedded broker: history lives in
//! the data dir, so a restart keeps every channel's epoch and offsets, and a
//! client that resumes with its cursor gets exactly what it missed (nothing lost,
//! nothing twice, no reset). A `kill -9` loses nothing that was acknowledged or
//! delivered (docs/reliability.md).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::cli::{fails, free_port, serve_with, terminate};
use crate::support::*;

const ADMIN: &str = "test-admin-key-0123456789";

/// `herald serve` on `dir` with a known admin key, and helpers pointed at it.
async fn start(dir: &Path, name: &str, extra: &[&str]) -> (tokio::process::Child, TestServer) {
    let mut args = vec!["--admin-key", ADMIN];
    args.extend_from_slice(extra);
    let (child, url) = serve_with(dir, name, &args).await;
    (child, TestServer::attach(&url, ADMIN))
}

fn kill_9(child: &tokio::process::Child) {
    let pid = child.id().expect("the child is running");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

/// Reads SSE events until `n` messages came; panics on any reset.
async fn messages_without_reset(sse: &mut Sse, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let ev = sse.next().await.expect("the stream ended early");
        match ev.event.as_str() {
            "open" | "heartbeat" => {}
            "reset" => panic!("a reset after the restart: {}", ev.data),
            _ => out.push(ev.json()),
        }
    }
    out
}

fn data_ns(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["data"]["n"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_restart_keeps_epochs_and_every_transport_resumes_with_exactly_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, server) = start(dir.path(), "first", &[]).await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");

    // One client per transport reads messages 1..=3, then goes away.
    let mut sse = Sse::connect(&server.events_url(&app, &["room"], &tok), None).await;
    sse.first_id().await;
    let mut ws = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    ws.subscribe_ok("room", None).await;
    let (_, body) = server
        .longpoll(&app, &format!("channel=room&timeout=0&token={tok}"))
        .await;
    let lp_cursor = body["cursor"].as_str().unwrap().to_owned();
    let third = server.publish_seq(&app, "room", 1..=3).await;
    let epoch = third["epoch"].as_str().unwrap().to_owned();
    assert_eq!(offsets(&sse.messages(3).await), vec![1, 2, 3]);
    let sse_id = sse.last_event_id.clone().unwrap();
    let ws_cursor = ws.messages(3).await[2]["cursor"].as_str().unwrap().to_owned();
    let (_, body) = server
        .longpoll(
            &app,
            &format!("channel=room&cursor={}&timeout=5&token={tok}", enc(&lp_cursor)),
        )
        .await;
    assert_eq!(offsets(body["messages"].as_array().unwrap()), vec![1, 2, 3]);
    let lp_cursor = body["cursor"].as_str().unwrap().to_owned();
    drop((sse, ws));

    // Missed while away: 4..=6. Then a clean restart.
    server.publish_seq(&app, "room", 4..=6).await;
    terminate(&mut first).await;
    let (mut second, server) = start(dir.path(), "second", &[]).await;

    // Every transport resumes with 4, 5, 6 (no reset), then gets 7 live.
    let mut sse = Sse::connect(&server.events_url(&app, &["room"], &tok), Some(&sse_id)).await;
    assert_eq!(sse.status, 200);
    let mut ws = Ws::connect(&server.ws_url(&app, &tok)).await.unwrap();
    ws.subscribe_ok("room", Some(&ws_cursor)).await;
    let missed = messages_without_reset(&mut sse, 3).await;
    assert_eq!(offsets(&missed), vec![4, 5, 6]);
    assert_eq!(data_ns(&missed), vec![4, 5, 6], "the data came back");
    assert!(missed.iter().all(|m| m["epoch"] == epoch.as_str()));
    let pushed = ws.messages(3).await;
    assert_eq!(offsets(&pushed), vec![4, 5, 6]);
    let (_, body) = server
        .longpoll(
            &app,
            &format!("channel=room&cursor={}&timeout=5&token={tok}", enc(&lp_cursor)),
        )
        .await;
    assert_eq!(body["resets"], json!([]), "{body}");
    assert_eq!(offsets(body["messages"].as_array().unwrap()), vec![4, 5, 6]);

    let p = server.publish(&app, "room", json!({"n": 7})).await;
    assert_eq!(
        (p["offset"].as_u64(), p["epoch"].as_str()),
        (Some(7), Some(epoch.as_str())),
        "offsets continue"
    );
    assert_eq!(offsets(&messages_without_reset(&mut sse, 1).await), vec![7]);
    assert_eq!(offsets(&ws.messages(1).await), vec![7]);
    sse.assert_quiet(Duration::from_millis(300)).await;
    terminate(&mut second).await;
}

#[tokio::test]
async fn a_kill_9_loses_nothing_acknowledged_or_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (first, server) = start(dir.path(), "first", &[]).await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut sse = Sse::connect(&server.events_url(&app, &["k"], &tok), None).await;
    sse.first_id().await;

    // Four publishers as fast as they can; each acknowledgement is recorded.
    let acked: Arc<Mutex<Vec<(u64, String, Value)>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let (acked, url, key) = (acked.clone(), server.app_url(&app, "/publish"), app.key.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0.. {
                let data = json!({"t": t, "i": i});
                let res = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"channel": "k", "data": data}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                let Ok(res) = res else { return };
                let Ok(v) = res.json::<Value>().await else { return };
                let (Some(offset), Some(epoch)) = (v["offset"].as_u64(), v["epoch"].as_str()) else {
                    return;
                };
                acked.lock().push((offset, epoch.to_owned(), data));
            }
        }));
    }
    // The subscriber reads while they publish; the node dies mid-stream.
    let mut seen = Vec::new();
    while seen.len() < 300 {
        let ev = sse.next().await.expect("the stream is live");
        if ev.event == "message" {
            seen.push(ev.json());
        }
    }
    kill_9(&first);
    while let Ok(Some(ev)) = sse.next_within(Duration::from_secs(5)).await {
        if ev.event == "message" {
            seen.push(ev.json());
        }
    }
    for t in tasks {
        tokio::time::timeout(LONG_WAIT, t).await.unwrap().unwrap();
    }
    let acked = acked.lock().clone();
    assert!(
        acked.len() >= 250,
        "publishes were acknowledged before the kill: {}",
        acked.len()
    );
    let last_seen = sse.last_event_id.clone().unwrap();

    let (mut second, server) = start(dir.path(), "second", &[]).await;
    let history = server.history(&app, "k", "since=0&limit=1000").await;
    let kept = history["messages"].as_array().unwrap().clone();
    let top = history["top"].as_u64().unwrap();
    assert_eq!(history["complete"], true, "{history}");
    assert_eq!(
        offsets(&kept),
        (1..=top).collect::<Vec<_>>(),
        "offsets without a hole"
    );
    let epoch = acked[0].1.clone();
    assert_eq!(history["epoch"], epoch.as_str(), "the epoch survived the kill");
    for (offset, e, data) in &acked {
        assert_eq!(e, &epoch);
        assert_eq!(
            &kept[*offset as usize - 1]["data"],
            data,
            "acknowledged message {offset} is kept as published"
        );
    }
    for m in &seen {
        let offset = m["offset"].as_u64().unwrap();
        assert_eq!(m["epoch"], epoch.as_str());
        assert_eq!(
            kept[offset as usize - 1]["data"],
            m["data"],
            "delivered message {offset} is kept as delivered"
        );
    }

    // The subscriber resumes from its last event: the rest, once, no reset.
    let last = seen.last().unwrap()["offset"].as_u64().unwrap();
    let mut sse = Sse::connect(&server.events_url(&app, &["k"], &tok), Some(&last_seen)).await;
    let rest = messages_without_reset(&mut sse, (top - last) as usize).await;
    assert_eq!(offsets(&rest), (last + 1..=top).collect::<Vec<_>>());
    let p = server.publish(&app, "k", json!("after")).await;
    assert_eq!(
        (p["offset"].as_u64(), &p["epoch"]),
        (Some(top + 1), &json!(epoch))
    );
    assert_eq!(offsets(&messages_without_reset(&mut sse, 1).await), vec![top + 1]);
    terminate(&mut second).await;
}

#[tokio::test]
async fn history_bounds_hold_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        "[namespaces.small]\nhistory_size = 3\n\n[namespaces.brief]\nhistory_ttl = \"1s\"\n",
    )
    .unwrap();
    let conf = config.to_str().unwrap();
    let (mut first, server) = start(dir.path(), "first", &["--config", conf]).await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let small = server.publish_seq(&app, "small:a", 1..=5).await;
    let brief = server.publish_seq(&app, "brief:a", 1..=2).await;
    terminate(&mut first).await;
    // Past the brief channel's age limit while Herald is down.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (mut second, server) = start(dir.path(), "second", &["--config", conf]).await;

    let at = |published: &Value, channel: &str, offset: u64| {
        herald_protocol::Position {
            channel: herald_protocol::ChannelName::parse(channel).unwrap(),
            epoch: published["epoch"].as_str().unwrap().to_owned(),
            offset,
        }
        .encode()
    };
    // Three kept: a client at 2 gets 3, 4, 5; a client at 1 missed 2 for good.
    let url = server.events_url(&app, &["small:a"], &tok);
    let mut sse = Sse::connect(&url, Some(&at(&small, "small:a", 2))).await;
    assert_eq!(data_ns(&messages_without_reset(&mut sse, 3).await), vec![3, 4, 5]);
    let mut sse = Sse::connect(&url, Some(&at(&small, "small:a", 1))).await;
    let ev = sse.next_event().await;
    assert_eq!(ev.event, "reset", "{ev:?}");
    assert_eq!(ev.json()["reason"], "history_gone");
    assert_eq!(ev.json()["epoch"], small["epoch"], "the same epoch");
    assert_eq!(ev.json()["offset"], 5);

    // Aged out while down: same epoch, offsets kept, the messages gone.
    let url = server.events_url(&app, &["brief:a"], &tok);
    let mut sse = Sse::connect(&url, Some(&at(&brief, "brief:a", 0))).await;
    let ev = sse.next_event().await;
    assert_eq!(ev.event, "reset", "{ev:?}");
    assert_eq!(ev.json()["reason"], "history_gone");
    assert_eq!(ev.json()["epoch"], brief["epoch"]);
    let mut caught_up = Sse::connect(&url, Some(&at(&brief, "brief:a", 2))).await;
    let p = server.publish(&app, "brief:a", json!({"n": 3})).await;
    assert_eq!((&p["offset"], &p["epoch"]), (&json!(3), &brief["epoch"]));
    assert_eq!(offsets(&messages_without_reset(&mut caught_up, 1).await), vec![3]);
    terminate(&mut second).await;
}

#[tokio::test]
async fn the_memory_broker_forgets_on_restart_and_a_second_server_on_one_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, server) = start(dir.path(), "first", &["--broker", "memory"]).await;
    let app = server.create_app("acme").await;
    let before = server.publish(&app, "room", json!(1)).await;
    terminate(&mut first).await;
    let (mut second, server) = start(dir.path(), "second", &["--broker", "memory"]).await;
    let after = server.publish(&app, "room", json!(2)).await;
    assert_eq!(after["offset"], 1, "in memory only: a new epoch");
    assert_ne!(after["epoch"], before["epoch"]);
    terminate(&mut second).await;

    let (mut third, _) = start(dir.path(), "third", &[]).await;
    let d = dir.path().to_str().unwrap();
    let port = free_port().to_string();
    fails(
        dir.path(),
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            d,
            "--admin-key",
            ADMIN,
        ],
        "another Herald process",
    )
    .await;
    terminate(&mut third).await;
}
