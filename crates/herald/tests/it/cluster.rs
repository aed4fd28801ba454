//! Cluster mode: several nodes sharing Redis (fan-out, history, presence) and
//! PostgreSQL (apps, keys, usage), and what happens when pieces fail.
//!
//! These tests use the real Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432,
//! database `test`); failure tests run a Redis of their own on a free port, so they
//! can stop it without disturbing the others. Without the services they fail and
//! say how to start them.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::*;

const REDIS: &str = "redis://127.0.0.1:6379";
const ADMIN: &str = "test-admin-key-0123456789";

fn pg_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn require_services() {
    if std::net::TcpStream::connect("127.0.0.1:6379").is_err() {
        panic!("Redis is not running on 127.0.0.1:6379; start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no");
    }
    if std::net::TcpStream::connect("127.0.0.1:5432").is_err() {
        panic!("PostgreSQL is not running on 127.0.0.1:5432; start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start");
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", herald_broker::new_epoch().to_lowercase())
}

/// A node of the cluster, in this process.
async fn node(broker: &str) -> TestServer {
    let broker = broker.to_owned();
    TestServer::start_with(move |c| {
        c.broker = broker;
        c.database = pg_url();
    })
    .await
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Redis of the test's own, on a free port, that the test may stop and restart.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    async fn start() -> Self {
        let mut r = OwnRedis {
            port: free_port(),
            child: None,
        };
        r.up().await;
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn up(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the test's redis-server did not start");
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.down();
    }
}

/// A node as a child process (so it can be killed with SIGKILL or drained with SIGTERM).
struct NodeProcess {
    url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    async fn start(broker: &str) -> Self {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let child = Command::new(env!("CARGO_BIN_EXE_herald"))
                .args([
                    "serve",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--broker",
                    broker,
                ])
                .args(["--database", &pg_url(), "--admin-key", ADMIN])
                .arg("--data-dir")
                .arg(dir.path())
                .env("HERALD_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let url = format!("http://127.0.0.1:{port}");
            let mut node = NodeProcess {
                url,
                child,
                _dir: dir,
            };
            for _ in 0..200 {
                if reqwest::get(format!("{}/readyz", node.url))
                    .await
                    .is_ok_and(|r| r.status() == 200)
                {
                    return node;
                }
                if node.child.try_wait().unwrap().is_some() {
                    break; // port taken meanwhile: try another
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let _ = node.child.kill();
        }
        panic!("a herald node did not start");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    async fn exited(&mut self) -> std::process::ExitStatus {
        for _ in 0..400 {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the node did not exit within 10 s");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates an app through any node (they share PostgreSQL).
async fn create_app(url: &str) -> App {
    let name = unique("c");
    let res = reqwest::Client::new()
        .post(format!("{url}/v1/admin/apps"))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: serde_json::Value = res.json().await.unwrap();
    App {
        name: v["app"].as_str().unwrap().into(),
        key: v["key"].as_str().unwrap().into(),
        token_secret: v["token_secret"].as_str().unwrap().into(),
    }
}

async fn publish_via(url: &str, app: &App, channel: &str, data: serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/apps/{}/publish", app.name))
        .bearer_auth(&app.key)
        .json(&json!({ "channel": channel, "data": data }))
        .send()
        .await
        .unwrap()
}

fn events_url(base: &str, app: &App, channel: &str, token: &str) -> String {
    format!(
        "{base}/v1/apps/{}/events?channel={}&token={token}",
        app.name,
        enc(channel)
    )
}

#[tokio::test]
async fn a_subscriber_on_one_node_receives_what_the_others_publish_in_order() {
    require_services();
    let (a, b, c) = (node(REDIS).await, node(REDIS).await, node(REDIS).await);
    let app = create_app(&a.url).await;
    let tok = user_token(&app, "alice");
    let mut sse = Sse::connect(&events_url(&a.url, &app, "news", &tok), None).await;
    assert_eq!(sse.status, 200);
    let mut ws = Ws::connect(&format!("{}/v1/apps/{}/ws?token={tok}", b.url, app.name))
        .await
        .unwrap();
    let r = ws.request(json!({"op":"subscribe","channel":"news"})).await;
    assert!(r.get("ok").is_some(), "{r}");
    for i in 1..=30 {
        let via = if i % 2 == 0 { &b.url } else { &c.url };
        let res = publish_via(via, &app, "news", json!(i)).await;
        assert_eq!(res.status(), 200);
    }
    let got: Vec<u64> = sse
        .messages(30)
        .await
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(
        got,
        (1..=30).collect::<Vec<_>>(),
        "node A got every message once, in order"
    );
    let got: Vec<u64> = ws
        .messages(30)
        .await
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(got, (1..=30).collect::<Vec<_>>(), "node B too");
    // History is shared: any node answers it.
    let (status, h) = c
        .get(
            &format!("/v1/apps/{}/channels/news/history?since=25", app.name),
            Some(&app.key),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(h["messages"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn presence_lists_members_connected_to_different_nodes() {
    require_services();
    let (a, b) = (node(REDIS).await, node(REDIS).await);
    let app = create_app(&a.url).await;
    let alice = token(&app, &{
        let mut c = claims(Some("alice"), &["*"], &[]);
        c.info = Some(json!({"name": "Alice"}));
        c
    });
    let bob = user_token(&app, "bob");
    let _sa = Sse::connect(&events_url(&a.url, &app, "room", &alice), None).await;
    let _sb = Sse::connect(&events_url(&b.url, &app, "room", &bob), None).await;
    let _sb2 = Sse::connect(&events_url(&a.url, &app, "room", &bob), None).await;
    let mut members = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, v) = b
            .get(
                &format!("/v1/apps/{}/channels/room/presence", app.name),
                Some(&app.key),
            )
            .await;
        members = v["members"].clone();
        if members.as_array().is_some_and(|m| m.len() == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        members,
        json!([
            {"user": "alice", "info": {"name": "Alice"}, "connections": 1},
            {"user": "bob", "info": null, "connections": 2}
        ])
    );
}

#[tokio::test]
async fn an_idempotent_publish_retried_on_another_node_appends_once() {
    require_services();
    let (a, b) = (node(REDIS).await, node(REDIS).await);
    let app = create_app(&a.url).await;
    let body = json!({"channel": "orders", "data": {"id": 7}, "idempotency_key": "order-7"});
    let mut results = Vec::new();
    for url in [&a.url, &b.url, &a.url] {
        let res = reqwest::Client::new()
            .post(format!("{url}/v1/apps/{}/publish", app.name))
            .bearer_auth(&app.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        results.push(res.json::<serde_json::Value>().await.unwrap());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
    let (_, h) = b
        .get(
            &format!("/v1/apps/{}/channels/orders/history?since=0", app.name),
            Some(&app.key),
        )
        .await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn redis_down_gives_503_and_not_ready_then_clients_resume_with_a_reset() {
    require_services();
    let mut redis = OwnRedis::start().await;
    let a = node(&redis.url()).await;
    let app = create_app(&a.url).await;
    let tok = user_token(&app, "alice");
    let mut sse = Sse::connect(&events_url(&a.url, &app, "news", &tok), None).await;
    assert_eq!(publish_via(&a.url, &app, "news", json!(1)).await.status(), 200);
    assert_eq!(sse.messages(1).await[0]["offset"], 1);

    redis.down();
    let res = publish_via(&a.url, &app, "news", json!(2)).await;
    assert_eq!(res.status(), 503, "a publish that cannot be stored is refused");
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "broker_unavailable");
    let (status, _) = a.get("/readyz", None).await;
    assert_eq!(status, 503, "not ready while Redis is down");
    let (status, _) = a.get("/healthz", None).await;
    assert_eq!(status, 200, "but alive");

    redis.up().await; // restarted empty: history and epochs are gone
    let mut published = false;
    for _ in 0..200 {
        if publish_via(&a.url, &app, "news", json!(3)).await.status() == 200 {
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(published, "publishing works again once Redis is back");
    // The subscriber is told its history is gone, then gets the new message:
    // once the node's Pub/Sub connection is back (its backoff reaches 2 s
    // while Redis is down) and it has read the channels' positions. Under a
    // full parallel suite on 2 cores that took longer than the usual wait.
    let mut saw_reset = false;
    loop {
        let ev = sse
            .next_within(Duration::from_secs(30))
            .await
            .expect("an event within 30 s of Redis coming back")
            .expect("the stream goes on");
        if ev.event == "reset" {
            assert_eq!(ev.json()["reason"], "epoch_changed");
            saw_reset = true;
        } else if ev.event == "message" {
            assert_eq!(ev.json()["data"], 3);
            break;
        }
    }
    assert!(
        saw_reset,
        "a reset came before the first message of the new epoch"
    );
    let (status, _) = a.get("/readyz", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_killed_node_s_clients_resume_on_another_node_exactly_once() {
    require_services();
    let mut a = NodeProcess::start(REDIS).await;
    let b = NodeProcess::start(REDIS).await;
    let app = create_app(&a.url).await;
    let tok = user_token(&app, "alice");
    let mut sse = Sse::connect(&events_url(&a.url, &app, "feed", &tok), None).await;
    let publisher = {
        let (url, app) = (b.url.clone(), app.clone());
        tokio::spawn(async move {
            for i in 1..=80 {
                assert_eq!(publish_via(&url, &app, "feed", json!(i)).await.status(), 200);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut got: Vec<u64> = sse
        .messages(20)
        .await
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    a.signal("-KILL");
    a.exited().await;
    // The client reconnects to another node with the last id it saw.
    let mut sse = Sse::connect(
        &events_url(&b.url, &app, "feed", &tok),
        sse.last_event_id.as_deref(),
    )
    .await;
    publisher.await.unwrap();
    while got.len() < 80 {
        match sse.next_within(Duration::from_secs(5)).await {
            Ok(Some(ev)) if ev.event == "message" => got.push(ev.json()["offset"].as_u64().unwrap()),
            Ok(Some(ev)) => assert_ne!(ev.event, "reset", "history covers the outage: no reset"),
            _ => break,
        }
    }
    assert_eq!(
        got,
        (1..=80).collect::<Vec<_>>(),
        "every message exactly once, in order"
    );
}

#[tokio::test]
async fn a_drained_node_tells_its_clients_to_reconnect_elsewhere() {
    require_services();
    let mut a = NodeProcess::start(REDIS).await;
    let b = NodeProcess::start(REDIS).await;
    let app = create_app(&a.url).await;
    let tok = user_token(&app, "alice");
    let mut sse = Sse::connect(&events_url(&a.url, &app, "feed", &tok), None).await;
    let mut ws = Ws::connect(&format!("{}/v1/apps/{}/ws?token={tok}", a.url, app.name))
        .await
        .unwrap();
    assert!(ws
        .request(json!({"op":"subscribe","channel":"feed"}))
        .await
        .get("ok")
        .is_some());
    assert_eq!(publish_via(&b.url, &app, "feed", json!(1)).await.status(), 200);
    sse.messages(1).await;
    a.signal("-TERM");
    let mut told = false;
    while let Ok(Some(ev)) = sse.next_within(Duration::from_secs(5)).await {
        if ev.event == "disconnect" {
            told = true;
        }
    }
    assert!(told, "the SSE stream was told to reconnect before it ended");
    assert_eq!(
        ws.closed().await,
        WsEnd::Closed(1012, "server restarting; reconnect with your cursors".into())
    );
    assert!(a.exited().await.success(), "a drained node exits cleanly");
    assert_eq!(publish_via(&b.url, &app, "feed", json!(2)).await.status(), 200);
    let mut sse = Sse::connect(
        &events_url(&b.url, &app, "feed", &tok),
        sse.last_event_id.as_deref(),
    )
    .await;
    let m = sse.messages(1).await;
    assert_eq!(
        (m[0]["offset"].as_u64(), m[0]["data"].clone()),
        (Some(2), json!(2)),
        "resumed on node B"
    );
}

#[tokio::test]
async fn join_and_leave_events_cross_nodes() {
    require_services();
    let with_join_leave = |c: &mut herald::Config| {
        c.broker = REDIS.into();
        c.database = pg_url();
        let ns = herald_node::NamespaceOptions {
            join_leave: true,
            ..Default::default()
        };
        c.node.namespaces.insert("lobby".into(), ns);
    };
    let a = TestServer::start_with(with_join_leave).await;
    let b = TestServer::start_with(with_join_leave).await;
    let app = create_app(&a.url).await;
    let watcher = user_token(&app, "watcher");
    let mut sse = Sse::connect(&events_url(&a.url, &app, "lobby:1", &watcher), None).await;
    let carol = user_token(&app, "carol");
    let mut ws = Ws::connect(&format!("{}/v1/apps/{}/ws?token={carol}", b.url, app.name))
        .await
        .unwrap();
    assert!(ws
        .request(json!({"op":"subscribe","channel":"lobby:1"}))
        .await
        .get("ok")
        .is_some());
    let mut ws = Some(ws);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let ev = sse.next().await.expect("presence events");
        if ev.event == "presence" {
            let p = ev.json();
            if p["user"] == "carol" {
                seen.push(p["action"].as_str().unwrap().to_owned());
                if seen.len() == 1 {
                    drop(ws.take()); // carol closes her tab on node B
                }
            }
        }
    }
    assert_eq!(
        seen,
        vec!["join", "leave"],
        "carol joined on node B and left, seen on node A"
    );
}

/// A node's publishers get room only in their own node's hub: a node whose
/// fan-out lags behind what the others publish cannot push back on them. Its
/// hub keeps its bound anyway: what does not fit is left to history, and the
/// node's subscribers catch up from there, every message once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_from_other_nodes_overflow_a_lagging_hub_into_history_never_into_loss() {
    require_services();
    let a = TestServer::start_with(|c| {
        c.broker = REDIS.into();
        c.database = pg_url();
        // One message may wait per hub shard on the subscribers' node.
        c.node.limits.hub_backlog = 1;
    })
    .await;
    let b = node(REDIS).await;
    let app = create_app(&a.url).await;
    let tok = user_token(&app, "alice");
    let mut sse = Sse::connect(&events_url(&a.url, &app, "hot", &tok), None).await;
    sse.first_id().await;
    let mut ws = Ws::connect(&format!("{}/v1/apps/{}/ws?token={tok}", a.url, app.name))
        .await
        .unwrap();
    ws.subscribe_ok("hot", None).await;

    let per_task = 50u64;
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (url, app) = (b.url.clone(), app.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                let res = publish_via(&url, &app, "hot", json!({"t": t, "i": i})).await;
                assert_eq!(res.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = 8 * per_task;
    let want: Vec<u64> = (1..=total).collect();
    assert_eq!(
        offsets(&sse.messages(total as usize).await),
        want,
        "SSE: every message once, in order"
    );
    assert_eq!(
        offsets(&ws.messages(total as usize).await),
        want,
        "WebSocket: the same"
    );
    assert!(
        a.metric("herald_hub_overflows_total", "").await >= 1.0,
        "the hub's inbox overflowed (else this test proves nothing)"
    );
    assert!(
        a.metric("herald_hub_backlog_peak", "").await <= 1.0,
        "and kept its bound"
    );
    let res = publish_via(&b.url, &app, "hot", json!("after")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(offsets(&sse.messages(1).await), vec![total + 1], "nothing twice");
    assert_eq!(offsets(&ws.messages(1).await), vec![total + 1], "nothing twice");
}
