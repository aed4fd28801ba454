//! The load generator (`herald-bench`, crates/herald-bench) in-process against a test server: small runs of every subscriber
//! scenario (idle, fan-out over SSE and WebSocket, churn, resume storms) that must see
//! every message they are owed exactly once, the SVG chart, the refusals of bad
//! arguments, and a raw WebSocket peer (no subscribe frame, no resume) whose losses
//! must be reported.

use std::time::Duration;

use herald_bench::{self as bench, BenchArgs, Scenario};
use serde_json::json;

use crate::support::*;

async fn args(server: &TestServer, scenario: Scenario) -> BenchArgs {
    let app = server.create_app("bench").await;
    BenchArgs {
        scenario,
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
    let r = bench::run(args(&server, Scenario::Idle).await).await.unwrap();
    assert_eq!(r["opened"], 50, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["source_addresses"], 253, "{r}");
    assert!(r["server_kb_per_connection"].is_number(), "{r}");
    assert!(!bench::summary(&r).is_empty());
}

#[tokio::test]
async fn fanout_delivers_every_message_once_in_order() {
    let server = TestServer::start().await;
    let r = bench::run(args(&server, Scenario::Fanout).await).await.unwrap();
    assert_eq!(r["expected_deliveries"], 50 * 20, "{r}");
    assert_eq!(r["delivered"], 50 * 20, "{r}");
    for k in ["lost", "duplicates", "reordered", "foreign", "closed_early"] {
        assert_eq!(r[k], 0, "{k}: {r}");
    }
    assert!(r["latency_ms"]["max"].as_f64().unwrap() > 0.0, "{r}");
}

#[tokio::test]
async fn sustained_publishes_for_its_duration_and_reports_peak_memory() {
    let server = TestServer::start().await;
    let mut a = args(&server, Scenario::Sustained).await;
    a.duration = Some(Duration::from_millis(1500));
    a.messages = 100_000;
    let r = bench::run(a).await.unwrap();
    let published = r["messages"].as_u64().unwrap();
    assert!(published > 0, "{r}");
    assert!(r["publish_seconds"].as_f64().unwrap() < 10.0, "{r}");
    assert_eq!(r["expected_deliveries"], json!(50 * published), "{r}");
    assert_eq!(r["delivered"], json!(50 * published), "{r}");
    for k in ["lost", "duplicates", "reordered", "foreign", "closed_early"] {
        assert_eq!(r[k], 0, "{k}: {r}");
    }
    assert!(r["publishes_per_second"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["latency_ms"]["p99"].is_number(), "{r}");
    assert!(r["server_us_per_delivery"].is_number(), "{r}");
    assert!(r["server_peak_rss_kb"].as_u64().unwrap() > 0, "{r}");
    assert!(r["publish_retries"].is_number(), "{r}");
    assert!(bench::summary(&r).contains("one publisher as fast as it can"));
}

#[tokio::test]
async fn fanout_over_channels_keeps_channels_apart() {
    let server = TestServer::start().await;
    let mut a = args(&server, Scenario::Fanout).await;
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

#[tokio::test]
async fn fanout_over_websocket_delivers_every_message_once_in_order() {
    let server = TestServer::start().await;
    let mut a = args(&server, Scenario::Fanout).await;
    a.transport = bench::Transport::Ws;
    a.channels = 2;
    let r = bench::run(a).await.unwrap();
    assert_eq!(r["transport"], "ws", "{r}");
    assert_eq!(r["ws_subscribe_frame"], "herald", "{r}");
    assert_eq!(r["opened"], 50, "{r}");
    assert_eq!(r["source_addresses"], 253, "{r}");
    assert_eq!(r["expected_deliveries"], 25 * 20, "{r}");
    assert_eq!(r["delivered"], 25 * 20, "{r}");
    for k in [
        "lost",
        "duplicates",
        "reordered",
        "foreign",
        "closed_early",
        "failed",
    ] {
        assert_eq!(r[k], 0, "{k}: {r}");
    }
    assert!(r["latency_ms"]["max"].as_f64().unwrap() > 0.0, "{r}");
    assert!(bench::summary(&r).contains("over WebSocket"));
}

#[tokio::test]
async fn churn_replaces_connections_while_publishing() {
    let server = TestServer::start().await;
    let mut a = args(&server, Scenario::Churn).await;
    a.channels = 5;
    a.messages = 200;
    a.rate = 100;
    a.churn_rate = Some(25.0);
    let r = bench::run(a).await.unwrap();
    assert_eq!(r["opened"], 50, "{r}");
    // 25 replacements per second while publishing (about 2 s, longer on a
    // busy machine: the rate is what is asked, not the count).
    let connects = r["churn_connects"].as_u64().unwrap();
    assert!(connects >= 20, "{r}");
    assert_eq!(r["churn_failed"], 0, "{r}");
    let rate = r["churn_connects_per_second"].as_f64().unwrap();
    assert!((5.0..=40.0).contains(&rate), "{r}");
    // Every connection gets what was published while it was subscribed.
    for k in ["lost", "duplicates", "reordered", "foreign", "closed_early"] {
        assert_eq!(r[k], 0, "{k}: {r}");
    }
    assert!(r["delivered"].as_u64().unwrap() > 0, "{r}");
    assert!(r["server_rss_kb_end"].is_number(), "{r}");
    assert!(r["server_rss_kb_growth"].is_number(), "{r}");
    assert!(bench::summary(&r).contains("reconnects"));
}

#[tokio::test]
async fn resume_storm_loses_nothing_over_sse() {
    let server = TestServer::start().await;
    let mut a = args(&server, Scenario::Resume).await;
    a.channels = 5;
    a.messages = 60;
    a.rate = 100;
    let r = bench::run(a).await.unwrap();
    assert_eq!(r["resume_dropped"], 50, "{r}");
    assert_eq!(r["resume_reconnected"], 50, "{r}");
    assert!(r["resume_back_seconds"].is_number(), "{r}");
    assert!(r["resume_caught_up_seconds"].is_number(), "{r}");
    assert_eq!(r["expected_deliveries"], 10 * 60, "{r}");
    assert_eq!(r["delivered"], 10 * 60, "{r}");
    for k in [
        "lost",
        "duplicates",
        "reordered",
        "foreign",
        "resets",
        "resume_gave_up",
    ] {
        assert_eq!(r[k], 0, "{k}: {r}");
    }
    assert!(bench::summary(&r).contains("resume: 50 dropped"));
}

#[tokio::test]
async fn resume_storm_loses_nothing_over_websocket() {
    let server = TestServer::start().await;
    let mut a = args(&server, Scenario::Resume).await;
    a.transport = bench::Transport::Ws;
    a.channels = 5;
    a.messages = 60;
    a.rate = 100;
    let r = bench::run(a).await.unwrap();
    assert_eq!(r["resume_reconnected"], 50, "{r}");
    assert_eq!(r["delivered"], 10 * 60, "{r}");
    for k in ["lost", "duplicates", "reordered", "foreign", "resets"] {
        assert_eq!(r[k], 0, "{k}: {r}");
    }
}

#[tokio::test]
async fn svg_chart_has_both_panels() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fanout.svg");
    let mut a = args(&server, Scenario::Fanout).await;
    a.rate = 200;
    a.svg = Some(path.clone());
    let r = bench::run(a).await.unwrap();
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["svg"], path.display().to_string(), "{r}");
    assert!(r.get("svg_error").is_none(), "{r}");
    let series = r["deliveries_per_100ms"].as_array().unwrap();
    let total: u64 = series.iter().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 50 * 20, "{r}");
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.contains("<svg"), "{svg}");
    assert!(svg.contains("Latency distribution"), "{svg}");
    assert!(svg.contains("Throughput over time"), "{svg}");
    assert!(!svg.contains("NaN"), "{svg}");
}

#[tokio::test]
async fn bad_arguments_are_refused_with_a_sentence() {
    let server = TestServer::start().await;
    let base = args(&server, Scenario::Fanout).await;
    let refused = |a: BenchArgs| async move { format!("{:#}", bench::run(a).await.unwrap_err()) };
    let e = refused(BenchArgs {
        connections: 0,
        ..base.clone()
    })
    .await;
    assert!(e.contains("--connections must be"), "{e}");
    let e = refused(BenchArgs {
        ws_frames: bench::WsFrames::Raw,
        ..base.clone()
    })
    .await;
    assert!(
        e.contains("--ws-subscribe-frame none needs --transport ws"),
        "{e}"
    );
    let e = refused(BenchArgs {
        churn_rate: Some(0.0),
        scenario: Scenario::Churn,
        ..base.clone()
    })
    .await;
    assert!(e.contains("--churn-rate"), "{e}");
    let e = refused(BenchArgs {
        svg: Some("/nonexistent-dir/x.svg".into()),
        ..base.clone()
    })
    .await;
    assert!(e.contains("does not exist"), "{e}");
    let e = refused(BenchArgs {
        scenario: Scenario::Idle,
        svg: Some("x.svg".into()),
        ..base
    })
    .await;
    assert!(e.contains("--svg needs a scenario that delivers"), "{e}");
}

/// A raw WebSocket peer in the manner of Nchan: `GET /sub/{channel}` upgrades and
/// sends every message published to the channel as one text frame (the payload
/// itself); `POST /pub?id=CHANNEL` publishes the body. No history, no resume.
async fn raw_ws_peer() -> String {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::extract::{Path, Query, State};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use tokio::sync::broadcast;

    type Channels = Arc<Mutex<HashMap<String, broadcast::Sender<String>>>>;
    fn sender(channels: &Channels, id: &str) -> broadcast::Sender<String> {
        let mut map = channels.lock().unwrap();
        map.entry(id.to_owned())
            .or_insert_with(|| broadcast::channel(1024).0)
            .clone()
    }
    async fn sub(
        State(channels): State<Channels>,
        Path(id): Path<String>,
        ws: WebSocketUpgrade,
    ) -> axum::response::Response {
        // Subscribed before the handshake completes.
        let mut rx = sender(&channels, &id).subscribe();
        ws.on_upgrade(move |mut socket| async move {
            while let Ok(m) = rx.recv().await {
                if socket.send(Message::Text(m.into())).await.is_err() {
                    return;
                }
            }
        })
    }
    async fn publish(
        State(channels): State<Channels>,
        Query(q): Query<HashMap<String, String>>,
        body: String,
    ) -> &'static str {
        let _ = sender(&channels, q.get("id").map_or("", |s| s.as_str())).send(body);
        "ok"
    }
    let channels: Channels = Arc::default();
    let router = axum::Router::new()
        .route("/sub/{id}", axum::routing::get(sub))
        .route("/pub", axum::routing::post(publish))
        .with_state(channels);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

fn raw_args(url: &str, scenario: Scenario) -> BenchArgs {
    BenchArgs {
        scenario,
        url: url.into(),
        sub_url: Some("{url}/sub/{channel}".into()),
        pub_format: bench::PubFormat::Raw,
        transport: bench::Transport::Ws,
        ws_frames: bench::WsFrames::Raw,
        connections: 20,
        channels: 2,
        messages: 30,
        progress: false,
        deadline: Duration::from_secs(30),
        ..BenchArgs::default()
    }
}

#[tokio::test]
async fn raw_websocket_peer_fanout_and_honest_resume_losses() {
    let url = raw_ws_peer().await;
    let r = bench::run(raw_args(&url, Scenario::Fanout)).await.unwrap();
    assert_eq!(r["ws_subscribe_frame"], "none", "{r}");
    assert_eq!(r["delivered"], 10 * 30, "{r}");
    for k in ["lost", "duplicates", "reordered", "foreign", "failed"] {
        assert_eq!(r[k], 0, "{k}: {r}");
    }
    // The peer cannot resume: what was published while down is lost, and said so.
    let mut a = raw_args(&url, Scenario::Resume);
    a.rate = 200;
    let r = bench::run(a).await.unwrap();
    assert_eq!(r["resume_reconnected"], 20, "{r}");
    let lost = r["lost"].as_u64().unwrap();
    assert!(lost >= 10 * 5, "{r}");
    assert_eq!(r["delivered"].as_u64().unwrap() + lost, 10 * 30, "{r}");
    assert_eq!(r["duplicates"], 0, "{r}");
}

/// A report keeps why connections failed, and that may be an error naming
/// the URL: its token is redacted (reports are files people share).
#[tokio::test]
async fn a_report_never_holds_the_token_of_a_failed_url() {
    let server = TestServer::start().await;
    let mut a = args(&server, Scenario::Idle).await;
    a.connections = 3;
    a.deadline = Duration::from_secs(10);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    a.sub_url = Some(format!(
        "http://{closed}/v1/apps/{{app}}/events?channel={{channel}}&token={{token}}"
    ));
    let tok = a.token.clone();
    let r = bench::run(a).await.unwrap();
    assert_eq!(r["failed"], 3, "{r}");
    let why = r["first_error"]
        .as_str()
        .unwrap_or_else(|| panic!("a first error: {r}"));
    assert!(why.contains("token=[redacted]"), "{why}");
    let text = r.to_string();
    assert!(
        !text.contains(tok.rsplit('.').next().unwrap()),
        "the token is in the report: {text}"
    );
}
