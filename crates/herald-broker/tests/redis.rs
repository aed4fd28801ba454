//! The Redis engine against a real Redis: the conformance suite on one shard and on
//! two, and what a cluster relies on: delivery between nodes, idempotency and
//! presence shared by nodes, reconnection after the Pub/Sub connection is killed,
//! prompt errors while Redis is down, quiet channels keeping their epoch.
//!
//! Needs Redis on 127.0.0.1:6379 (and `redis-server` on the PATH for the tests that
//! run a Redis of their own, to kill or restart it). Without them the tests fail and
//! say how to start it. Every key and topic carries a prefix unique to the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_broker::conformance::{app, key, publication, run_all, Recorder};
use herald_broker::redis::{RedisBroker, RedisOptions};
use herald_broker::{
    Broker, BrokerError, BrokerHandler, ChannelKey, HistoryPolicy, Idempotency, Presence, PresenceEntry,
    Publication,
};
use herald_protocol::{AppName, Envelope, EventName};

const REDIS: &str = "redis://127.0.0.1:6379";
const START_REDIS: &str =
    "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no";

fn require_redis() {
    let addr = "127.0.0.1:6379".parse().unwrap();
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        panic!("Redis is not running on 127.0.0.1:6379; start it with: {START_REDIS}");
    }
}

fn unique_prefix() -> String {
    format!("herald-test-{}", herald_broker::new_epoch().to_lowercase())
}

fn options(prefix: &str) -> RedisOptions {
    RedisOptions {
        prefix: prefix.to_owned(),
        ..RedisOptions::default()
    }
}

async fn connect(urls: &[&str], opts: RedisOptions, handler: Arc<dyn BrokerHandler>) -> Arc<RedisBroker> {
    let urls: Vec<String> = urls.iter().map(|u| (*u).to_owned()).collect();
    let b = RedisBroker::connect(&urls, opts).await.expect("Redis answers");
    b.set_handler(handler);
    Arc::new(b)
}

/// A plain connection for what a test does behind the broker's back.
async fn admin(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Keys of the test's prefix in the database of `url`.
async fn keys_of(url: &str, prefix: &str) -> Vec<String> {
    let mut c = admin(url).await;
    redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut c)
        .await
        .unwrap()
}

async fn cleanup(url: &str, prefix: &str) {
    let keys = keys_of(url, prefix).await;
    if !keys.is_empty() {
        let mut c = admin(url).await;
        let _: i64 = redis::cmd("DEL").arg(keys).query_async(&mut c).await.unwrap();
    }
}

/// Waits (at most `within`) for `f` to hold.
async fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(f(), "not within {within:?}: {what}");
}

/// A handler that records deliveries and counts disruptions.
#[derive(Default)]
struct Counting {
    rec: Recorder,
    disruptions: AtomicUsize,
}

impl BrokerHandler for Counting {
    fn on_message(&self, app: &AppName, msg: Arc<Envelope>) {
        self.rec.on_message(app, msg);
    }
    fn on_control(&self, key: &ChannelKey, payload: Arc<str>) {
        self.rec.on_control(key, payload);
    }
    fn on_disruption(&self) {
        self.disruptions.fetch_add(1, Ordering::SeqCst);
    }
}

/// A Redis of the test's own, on a free port, that the test may kill and restart.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = OwnRedis { port, child: None };
        r.up().await;
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}); install it (apt-get install redis-server) and start it with: {START_REDIS}")
            });
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the test's redis-server did not start within 5 s");
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

fn entry(user: &str) -> PresenceEntry {
    PresenceEntry {
        user: user.into(),
        info: Arc::from(format!("{{\"name\":\"{user}\"}}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_engine_conforms_on_one_shard() {
    require_redis();
    let prefix = unique_prefix();
    run_all(|rec: Arc<Recorder>| {
        let prefix = prefix.clone();
        async move { connect(&[REDIS], options(&prefix), rec).await }
    })
    .await;
    cleanup(REDIS, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_engine_conforms_on_two_shards() {
    require_redis();
    let prefix = unique_prefix();
    let shards = ["redis://127.0.0.1:6379/1", "redis://127.0.0.1:6379/2"];
    run_all(|rec: Arc<Recorder>| {
        let prefix = prefix.clone();
        async move { connect(&shards, options(&prefix), rec).await }
    })
    .await;
    let (one, two) = (
        keys_of(shards[0], &prefix).await,
        keys_of(shards[1], &prefix).await,
    );
    assert!(
        !one.is_empty() && !two.is_empty(),
        "channels are spread over both shards: {} and {} keys",
        one.len(),
        two.len()
    );
    cleanup(shards[0], &prefix).await;
    cleanup(shards[1], &prefix).await;
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_promptly() {
    let started = Instant::now();
    let res = RedisBroker::connect(&["redis://127.0.0.1:1".to_owned()], RedisOptions::default()).await;
    assert!(matches!(res, Err(BrokerError::Unavailable(_))), "{res:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let res = RedisBroker::connect(&["not a url".to_owned()], RedisOptions::default()).await;
    assert!(matches!(res, Err(BrokerError::Unavailable(_))));
    let res = RedisBroker::connect(&[], RedisOptions::default()).await;
    assert!(matches!(res, Err(BrokerError::Unavailable(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_through_one_node_reaches_the_subscribers_of_another() {
    require_redis();
    let prefix = unique_prefix();
    let (ra, rb) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let a = connect(&[REDIS], options(&prefix), ra.clone()).await;
    let b = connect(&[REDIS], options(&prefix), rb.clone()).await;
    let k = key(&app(), "news");
    b.subscribe(&k).await.unwrap();
    for i in 1..=3 {
        a.publish(publication(&k, &i.to_string(), HistoryPolicy::default()))
            .await
            .unwrap();
    }
    a.broadcast(&k, Arc::from("{\"hello\":1}")).await.unwrap();
    eventually(Duration::from_secs(2), "node B got 1..3", || {
        rb.offsets(&k) == vec![1, 2, 3]
    })
    .await;
    eventually(Duration::from_secs(2), "node B got the control", || {
        rb.controls
            .lock()
            .iter()
            .any(|(kk, p)| *kk == k && &**p == "{\"hello\":1}")
    })
    .await;
    {
        let msgs = rb.messages.lock();
        assert_eq!(&*msgs[2].1.data, "3");
        assert_eq!(msgs[2].1.event, EventName::message());
    }
    assert!(ra.offsets(&k).is_empty(), "node A did not subscribe");
    // The last unsubscribe stops delivery to B.
    b.subscribe(&k).await.unwrap();
    b.unsubscribe(&k).await.unwrap();
    a.publish(publication(&k, "4", HistoryPolicy::default()))
        .await
        .unwrap();
    eventually(Duration::from_secs(2), "still subscribed once", || {
        rb.offsets(&k).len() == 4
    })
    .await;
    b.unsubscribe(&k).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.publish(publication(&k, "5", HistoryPolicy::default()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rb.offsets(&k),
        vec![1, 2, 3, 4],
        "nothing after the last unsubscribe"
    );
    cleanup(REDIS, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_on_two_nodes_append_once() {
    require_redis();
    let prefix = unique_prefix();
    let shards = ["redis://127.0.0.1:6379/1", "redis://127.0.0.1:6379/2"];
    let rec = Arc::new(Recorder::default());
    let a = connect(&shards, options(&prefix), rec.clone()).await;
    let b = connect(&shards, options(&prefix), rec.clone()).await;
    let ap = app();
    // Channels on both shards: a multi-channel publish spans them.
    // (Names are random per run: take channels until both shards have some, bounded,
    // so the test never depends on where six names happen to hash.)
    let mut keys: Vec<ChannelKey> = Vec::new();
    for i in 0..64 {
        keys.push(key(&ap, &format!("orders-{i}")));
        if keys.len() >= 6
            && keys.iter().any(|k| a.shard_of(k) == 0)
            && keys.iter().any(|k| a.shard_of(k) == 1)
        {
            break;
        }
    }
    assert!(keys.iter().any(|k| a.shard_of(k) == 0) && keys.iter().any(|k| a.shard_of(k) == 1));
    let p = Publication {
        app: ap.clone(),
        targets: keys
            .iter()
            .map(|k| (k.channel.clone(), HistoryPolicy::default()))
            .collect(),
        event: EventName::parse("order").unwrap(),
        data: Arc::from("{\"id\":7}"),
        idempotency: Some(Idempotency {
            key: "order-7".into(),
            fingerprint: 77,
            window: Duration::from_secs(60),
        }),
    };
    let mut tasks = Vec::new();
    for i in 0..10 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        let p = p.clone();
        tasks.push(tokio::spawn(async move { node.publish(p).await.unwrap() }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
    assert_eq!(results[0].len(), keys.len());
    for k in &keys {
        let h = b.history(k, HistoryPolicy::default(), 0, 10).await.unwrap();
        assert_eq!(h.messages.len(), 1, "appended once to {}", k.channel.as_str());
        assert_eq!(h.top, 1);
    }
    // A later retry on either node gets the same answer; another request is refused.
    assert_eq!(b.publish(p.clone()).await.unwrap(), results[0]);
    let mut other = p.clone();
    other.idempotency.as_mut().unwrap().fingerprint = 78;
    assert!(matches!(
        a.publish(other).await,
        Err(BrokerError::IdempotencyConflict)
    ));
    cleanup(shards[0], &prefix).await;
    cleanup(shards[1], &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_shared_and_a_dead_node_s_entries_are_swept_once() {
    require_redis();
    let prefix = unique_prefix();
    let rec = Arc::new(Recorder::default());
    let a = connect(&[REDIS], options(&prefix), rec.clone()).await;
    let b = connect(&[REDIS], options(&prefix), rec.clone()).await;
    let c = connect(&[REDIS], options(&prefix), rec.clone()).await;
    let k = key(&app(), "room");
    let long = Duration::from_secs(30);
    assert!(a.join(&k, "a:1", entry("alice"), long).await.unwrap());
    assert!(
        !b.join(&k, "b:1", entry("alice"), long).await.unwrap(),
        "alice is already there (via A)"
    );
    assert!(a
        .join(&k, "a:2", entry("ghost"), Duration::from_millis(500))
        .await
        .unwrap());
    let m = b.members(&k).await.unwrap();
    assert_eq!(
        m.iter()
            .map(|m| (m.user.as_str(), m.connections))
            .collect::<Vec<_>>(),
        vec![("alice", 2), ("ghost", 1)]
    );
    assert_eq!(m[0].info, serde_json::json!({"name": "alice"}));
    // Node A dies: no leave for its connections.
    drop(a);
    let early = b.sweep().await.unwrap();
    assert!(
        !early.iter().any(|e| e.key == k),
        "nothing expired yet: {early:?}"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let m = c.members(&k).await.unwrap();
    assert_eq!(
        m.iter().map(|m| m.user.as_str()).collect::<Vec<_>>(),
        vec!["alice"]
    );
    // Two nodes sweep at once: the departure is reported once.
    let (l1, l2) = tokio::join!(b.sweep(), c.sweep());
    let gone: Vec<_> = l1
        .unwrap()
        .into_iter()
        .chain(l2.unwrap())
        .filter(|e| e.key == k)
        .collect();
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert_eq!(gone[0].entry, entry("ghost"));
    // Alice's connection made on A leaves through C; the one on B is the last.
    assert_eq!(c.leave(&k, "a:1").await.unwrap(), None);
    assert_eq!(c.leave(&k, "b:1").await.unwrap(), Some(entry("alice")));
    assert!(b.members(&k).await.unwrap().is_empty());
    cleanup(REDIS, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_pubsub_connection_is_killed_a_node_resubscribes_and_catches_up() {
    let redis = OwnRedis::start().await;
    let url = redis.url();
    let prefix = unique_prefix();
    let h = Arc::new(Counting::default());
    let sub = connect(&[&url], options(&prefix), h.clone()).await;
    let publisher = connect(&[&url], options(&prefix), Arc::new(Recorder::default())).await;
    let k = key(&app(), "live");
    sub.subscribe(&k).await.unwrap();
    publisher
        .publish(publication(&k, "1", HistoryPolicy::default()))
        .await
        .unwrap();
    eventually(Duration::from_secs(2), "message 1", || {
        h.rec.offsets(&k) == vec![1]
    })
    .await;

    let mut admin = admin(&url).await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(killed >= 1, "the subscriber's connection was killed");
    eventually(
        Duration::from_secs(5),
        "on_disruption after resubscribing",
        || h.disruptions.load(Ordering::SeqCst) >= 1,
    )
    .await;
    let p = publisher
        .publish(publication(&k, "2", HistoryPolicy::default()))
        .await
        .unwrap();
    assert_eq!(p[0].offset, 2);
    eventually(Duration::from_secs(2), "message 2 after the reconnection", || {
        h.rec.offsets(&k) == vec![1, 2]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_every_call_fails_promptly_and_then_a_new_epoch_starts() {
    let mut redis = OwnRedis::start().await;
    let url = redis.url();
    let timeout = Duration::from_millis(800);
    let opts = RedisOptions {
        command_timeout: timeout,
        reconnect_max_delay: Duration::from_millis(300),
        ..options(&unique_prefix())
    };
    let h = Arc::new(Counting::default());
    let b = connect(&[&url], opts, h.clone()).await;
    let k = key(&app(), "news");
    b.subscribe(&k).await.unwrap();
    let first = b
        .publish(publication(&k, "1", HistoryPolicy::default()))
        .await
        .unwrap();
    eventually(Duration::from_secs(2), "message 1", || {
        h.rec.offsets(&k) == vec![1]
    })
    .await;

    redis.down();
    let bound = timeout + Duration::from_millis(700);
    let other = key(&k.app, "other");
    macro_rules! unavailable {
        ($what:expr, $call:expr) => {{
            let started = Instant::now();
            let res = $call.await;
            assert!(
                matches!(res, Err(BrokerError::Unavailable(_))),
                "{}: {:?}",
                $what,
                res.map(|_| ())
            );
            assert!(
                started.elapsed() < bound,
                "{} took {:?}",
                $what,
                started.elapsed()
            );
        }};
    }
    unavailable!(
        "publish",
        b.publish(publication(&k, "x", HistoryPolicy::default()))
    );
    unavailable!(
        "publish again",
        b.publish(publication(&k, "x", HistoryPolicy::default()))
    );
    unavailable!("history", b.history(&k, HistoryPolicy::default(), 0, 10));
    unavailable!("subscribe", b.subscribe(&other));
    b.unsubscribe(&other).await.unwrap();
    unavailable!("broadcast", b.broadcast(&k, Arc::from("{}")));
    unavailable!("ping", b.ping());
    unavailable!("join", b.join(&k, "c1", entry("alice"), Duration::from_secs(5)));
    unavailable!("leave", b.leave(&k, "c1"));
    unavailable!("members", b.members(&k));
    unavailable!("sweep", b.sweep());

    redis.up().await; // restarted empty: the channel's keys are gone
    let mut published = None;
    for _ in 0..100 {
        if let Ok(p) = b.publish(publication(&k, "2", HistoryPolicy::default())).await {
            published = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = published.expect("publishing works again once Redis is back");
    assert_eq!(p[0].offset, 1, "a new epoch starts at 1");
    assert_ne!(
        p[0].epoch, first[0].epoch,
        "the old cursors see a new epoch: a reset, not a gap"
    );
    eventually(Duration::from_secs(5), "on_disruption", || {
        h.disruptions.load(Ordering::SeqCst) >= 1
    })
    .await;
    let p = b
        .publish(publication(&k, "3", HistoryPolicy::default()))
        .await
        .unwrap();
    assert_eq!(p[0].offset, 2);
    eventually(Duration::from_secs(3), "live delivery again", || {
        h.rec
            .messages
            .lock()
            .iter()
            .any(|(_, m)| m.offset == 2 && m.epoch == p[0].epoch)
    })
    .await;
    b.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_under_churn_go_out_in_batches() {
    let redis = OwnRedis::start().await;
    let url = redis.url();
    let b = connect(&[&url], options(&unique_prefix()), Arc::new(Recorder::default())).await;
    let ap = app();
    let keys: Vec<ChannelKey> = (0..300).map(|i| key(&ap, &format!("c{i}"))).collect();
    let subscribed = futures_util::future::join_all(keys.iter().map(|k| b.subscribe(k))).await;
    assert!(subscribed.iter().all(Result::is_ok));
    let mut admin = admin(&url).await;
    let numsub: i64 = redis::cmd("PUBSUB")
        .arg("NUMPAT")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(numsub, 0);
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(channels.len(), 300, "every channel is subscribed in Redis");
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut admin)
        .await
        .unwrap();
    let calls = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_subscribe:calls="))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap();
    assert!(calls < 30, "300 subscriptions took {calls} SUBSCRIBE commands");
    for k in &keys {
        b.unsubscribe(k).await.unwrap();
    }
    let mut left = usize::MAX;
    for _ in 0..200 {
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query_async(&mut admin)
            .await
            .unwrap();
        left = channels.len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(left, 0, "the last unsubscribe leaves Redis too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_channel_keeps_its_epoch_while_a_node_listens() {
    require_redis();
    let prefix = unique_prefix();
    let opts = RedisOptions {
        min_channel_life: Duration::from_secs(1),
        keepalive_interval: Duration::from_millis(200),
        ..options(&prefix)
    };
    let b = connect(&[REDIS], opts, Arc::new(Recorder::default())).await;
    let policy = HistoryPolicy {
        size: 10,
        ttl: Duration::from_millis(100),
    };
    let ap = app();
    let (listened, quiet) = (key(&ap, "listened"), key(&ap, "quiet"));
    b.subscribe(&listened).await.unwrap();
    let l = b.publish(publication(&listened, "1", policy)).await.unwrap();
    let q = b.publish(publication(&quiet, "1", policy)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let h = b.history(&listened, policy, 1, 10).await.unwrap();
    assert_eq!(
        (h.epoch.clone(), h.top),
        (l[0].epoch.clone(), 1),
        "kept while listened to"
    );
    assert!(h.complete, "a client that saw everything resumes without a reset");
    let h = b.history(&quiet, policy, 1, 10).await.unwrap();
    assert_ne!(h.epoch, q[0].epoch, "forgotten after its life: a new epoch");
    assert_eq!(h.top, 0);
    cleanup(REDIS, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_gives_errors_within_the_timeout_then_recovers() {
    let redis = OwnRedis::start().await;
    let url = redis.url();
    let timeout = Duration::from_millis(500);
    let opts = RedisOptions {
        command_timeout: timeout,
        ping_interval: Duration::from_millis(200),
        reconnect_max_delay: Duration::from_millis(200),
        ..options(&unique_prefix())
    };
    let h = Arc::new(Counting::default());
    let b = connect(&[&url], opts, h.clone()).await;
    let k = key(&app(), "paused");
    b.subscribe(&k).await.unwrap();
    b.publish(publication(&k, "1", HistoryPolicy::default()))
        .await
        .unwrap();
    eventually(Duration::from_secs(2), "message 1", || {
        h.rec.offsets(&k) == vec![1]
    })
    .await;

    // Redis keeps the connections open but answers nothing for 2 s.
    let mut admin = admin(&url).await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2000)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .unwrap();
    let paused_at = Instant::now();
    let started = Instant::now();
    let res = b.publish(publication(&k, "2", HistoryPolicy::default())).await;
    assert!(matches!(res, Err(BrokerError::Unavailable(_))), "{res:?}");
    assert!(
        started.elapsed() < timeout + Duration::from_millis(300),
        "took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert!(matches!(b.ping().await, Err(BrokerError::Unavailable(_))));
    assert!(
        started.elapsed() < timeout + Duration::from_millis(300),
        "took {:?}",
        started.elapsed()
    );

    tokio::time::sleep_until((paused_at + Duration::from_millis(2100)).into()).await;
    let mut answered = false;
    for _ in 0..50 {
        if b.publish(publication(&k, "3", HistoryPolicy::default()))
            .await
            .is_ok()
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "Redis answers again");
    eventually(
        Duration::from_secs(5),
        "on_disruption after the silent spell",
        || h.disruptions.load(Ordering::SeqCst) >= 1,
    )
    .await;
    // The publish that timed out may have been run by Redis once it woke up (the
    // caller was told it failed): offsets still have no hole.
    let h2 = b.history(&k, HistoryPolicy::default(), 0, 10).await.unwrap();
    let offsets: Vec<u64> = h2.messages.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, (1..=h2.top).collect::<Vec<_>>());
    let p = b
        .publish(publication(&k, "4", HistoryPolicy::default()))
        .await
        .unwrap();
    eventually(Duration::from_secs(3), "live delivery again", || {
        h.rec.offsets(&k).contains(&p[0].offset)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_that_failed_on_one_shard_is_completed_by_its_idempotent_retry() {
    require_redis();
    let mut own = OwnRedis::start().await;
    let own_url = own.url();
    let live = "redis://127.0.0.1:6379/3";
    let prefix = unique_prefix();
    let b = connect(&[live, &own_url], options(&prefix), Arc::new(Recorder::default())).await;
    let ap = app();
    own.down();
    // Find an attempt whose idempotency record lives on the shard that is up (the
    // record's shard is chosen by the key): there, the channels of that shard get
    // their message and the others fail.
    let mut found = None;
    for attempt in 0..40 {
        let keys: Vec<ChannelKey> = (0..6).map(|i| key(&ap, &format!("a{attempt}-c{i}"))).collect();
        let on_live: Vec<&ChannelKey> = keys.iter().filter(|k| b.shard_of(k) == 0).collect();
        let on_own: Vec<&ChannelKey> = keys.iter().filter(|k| b.shard_of(k) == 1).collect();
        if on_live.is_empty() || on_own.is_empty() {
            // All six on one shard (about 3 % of the attempts): nothing to learn
            // here, and on the live shard alone the publish would succeed.
            continue;
        }
        let p = Publication {
            app: ap.clone(),
            targets: keys
                .iter()
                .map(|k| (k.channel.clone(), HistoryPolicy::default()))
                .collect(),
            event: EventName::message(),
            data: Arc::from("1"),
            idempotency: Some(Idempotency {
                key: format!("k{attempt}"),
                fingerprint: 1,
                window: Duration::from_secs(60),
            }),
        };
        let err = b.publish(p.clone()).await.unwrap_err();
        let BrokerError::Unavailable(msg) = &err else {
            panic!("{err:?}");
        };
        let top = b
            .history(on_live[0], HistoryPolicy::default(), 0, 10)
            .await
            .unwrap()
            .top;
        if top == 1 {
            for k in &on_own {
                assert!(
                    msg.contains(k.channel.as_str()),
                    "the error names {}: {msg}",
                    k.channel.as_str()
                );
            }
            for k in &on_live {
                assert!(
                    !msg.contains(k.channel.as_str()),
                    "{} was appended: {msg}",
                    k.channel.as_str()
                );
            }
            found = Some((p, keys));
            break;
        }
    }
    let (p, keys) = found.expect("some idempotency key lives on the shard that is up");
    own.up().await;
    let mut done = None;
    for _ in 0..50 {
        if let Ok(r) = b.publish(p.clone()).await {
            done = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = done.expect("the retry succeeds once the shard is back");
    assert_eq!(done.len(), 6);
    for (k, r) in keys.iter().zip(&done) {
        let h = b.history(k, HistoryPolicy::default(), 0, 10).await.unwrap();
        assert_eq!(h.messages.len(), 1, "{} has its message once", k.channel.as_str());
        assert_eq!((r.offset, &r.epoch), (1, &h.epoch));
    }
    assert_eq!(
        b.publish(p).await.unwrap(),
        done,
        "and later retries get the same answer"
    );
    cleanup(live, &prefix).await;
}
