//! `herald bench` in-process against a test server: small runs of the idle and
//! fan-out scenarios that must see every message exactly once.

use std::time::Duration;

use herald::bench::{self, BenchArgs};

use crate::support::*;

async fn args(server: &TestServer, scenario: &str) -> BenchArgs {
    let app = server.create_app("bench").await;
    BenchArgs {
        scenario: scenario.into(),
        url: server.url.clone(),
        app: app.name.clone(),
        token: token(&app, &claims(None, &["bench:*"], &[])),
        key: Some(app.key.clone()),
        connections: 50,
        messages: 20,
        server_pids: vec![std::process::id()],
        progress: false,
        deadline: Duration::from_secs(30),
        ..BenchArgs::default()
    }
}

#[tokio::test]
async fn idle_opens_every_connection_from_spread_source_addresses() {
    let server = TestServer::start().await;
    let r = bench::run(args(&server, "idle").await).await.unwrap();
    assert_eq!(r["opened"], 50, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["source_addresses"], 253, "{r}");
    assert!(r["server_kb_per_connection"].is_number(), "{r}");
    assert!(!bench::summary(&r).is_empty());
}

#[tokio::test]
async fn fanout_delivers_every_message_once_in_order() {
    let server = TestServer::start().await;
    let r = bench::run(args(&server, "fanout").await).await.unwrap();
    assert_eq!(r["expected_deliveries"], 50 * 20, "{r}");
    assert_eq!(r["delivered"], 50 * 20, "{r}");
    for k in ["lost", "duplicates", "reordered", "foreign", "closed_early"] {
        assert_eq!(r[k], 0, "{k}: {r}");
    }
    assert!(r["latency_ms"]["max"].as_f64().unwrap() > 0.0, "{r}");
}

#[tokio::test]
async fn fanout_over_channels_keeps_channels_apart() {
    let server = TestServer::start().await;
    let mut a = args(&server, "fanout").await;
    a.channels = 5;
    a.messages = 23;
    let r = bench::run(a).await.unwrap();
    // 10 subscribers per channel; channels 0-2 get 5 messages, 3-4 get 4.
    assert_eq!(r["expected_deliveries"], 10 * 23, "{r}");
    assert_eq!(r["delivered"], 10 * 23, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["foreign"], 0, "{r}");
    assert_eq!(r["duplicates"], 0, "{r}");
}
