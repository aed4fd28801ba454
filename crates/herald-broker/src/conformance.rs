//! The conformance suite every [`Broker`] + [`Presence`] engine must pass.
//!
//! Each check takes a fresh engine (through a factory) with a [`Recorder`]
//! installed as its handler, and uses app and channel names unique to the call, so
//! the suite can run against a shared backend (a real Redis) in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use herald_protocol::{AppName, ChannelName, Envelope, EventName};
use parking_lot::Mutex;

use crate::broker::{Broker, BrokerHandler, ChannelKey, HistoryPolicy, Idempotency, Publication};
use crate::presence::{Presence, PresenceEntry};

/// A handler that records every delivery.
#[derive(Default)]
pub struct Recorder {
    pub messages: Mutex<Vec<(AppName, Arc<Envelope>)>>,
    pub controls: Mutex<Vec<(ChannelKey, Arc<str>)>>,
}

impl BrokerHandler for Recorder {
    fn on_message(&self, app: &AppName, msg: Arc<Envelope>) {
        self.messages.lock().push((app.clone(), msg));
    }
    fn on_control(&self, key: &ChannelKey, payload: Arc<str>) {
        self.controls.lock().push((key.clone(), payload));
    }
}

impl Recorder {
    /// Offsets delivered for `key`, in delivery order.
    pub fn offsets(&self, key: &ChannelKey) -> Vec<u64> {
        self.messages
            .lock()
            .iter()
            .filter(|(a, m)| *a == key.app && m.channel == key.channel)
            .map(|(_, m)| m.offset)
            .collect()
    }
}

/// An engine under test.
pub trait Engine: Broker + Presence {}
impl<T: Broker + Presence> Engine for T {}

fn unique(prefix: &str) -> String {
    use rand::distributions::{Alphanumeric, DistString};
    format!(
        "{prefix}-{}",
        Alphanumeric
            .sample_string(&mut rand::thread_rng(), 10)
            .to_lowercase()
    )
}

pub fn app() -> AppName {
    AppName::parse(&unique("app")).unwrap()
}

pub fn key(app: &AppName, ch: &str) -> ChannelKey {
    ChannelKey::new(app.clone(), ChannelName::parse(ch).unwrap())
}

pub fn publication(key: &ChannelKey, data: &str, policy: HistoryPolicy) -> Publication {
    Publication {
        app: key.app.clone(),
        targets: vec![(key.channel.clone(), policy)],
        event: EventName::message(),
        data: Arc::from(data),
        idempotency: None,
    }
}

async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(f(), "condition not reached within 2 s");
}

/// Runs every check against engines made by `make`.
pub async fn run_all<E, F, Fut>(make: F)
where
    E: Engine,
    F: Fn(Arc<Recorder>) -> Fut,
    Fut: std::future::Future<Output = Arc<E>>,
{
    let r = Arc::new(Recorder::default());
    offsets_have_no_holes_under_concurrency(make(r.clone()).await, r).await;
    let r = Arc::new(Recorder::default());
    history_since_is_exclusive_and_limited(make(r.clone()).await, r).await;
    let r = Arc::new(Recorder::default());
    history_is_bounded_by_size(make(r.clone()).await, r).await;
    let r = Arc::new(Recorder::default());
    history_expires_by_age(make(r.clone()).await, r).await;
    let r = Arc::new(Recorder::default());
    channels_and_apps_are_independent(make(r.clone()).await, r).await;
    let r = Arc::new(Recorder::default());
    multi_channel_publish(make(r.clone()).await, r).await;
    let r = Arc::new(Recorder::default());
    idempotent_publish(make(r.clone()).await, r).await;
    let r = Arc::new(Recorder::default());
    broadcast_reaches_handler(make(r.clone()).await, r).await;
    let r = Arc::new(Recorder::default());
    presence_counts_users_and_connections(make(r.clone()).await, r).await;
    let r = Arc::new(Recorder::default());
    presence_expires(make(r.clone()).await, r).await;
}

pub async fn offsets_have_no_holes_under_concurrency<E: Engine>(b: Arc<E>, rec: Arc<Recorder>) {
    let a = app();
    let k = key(&a, "chat:race");
    b.subscribe(&k).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let b = b.clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..50 {
                let p = b
                    .publish(publication(&k, &format!("[{t},{i}]"), HistoryPolicy::default()))
                    .await
                    .unwrap();
                got.push(p[0].offset);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=400).collect::<Vec<u64>>(),
        "offsets 1..=400, no hole, no repeat"
    );
    eventually(|| rec.offsets(&k).len() == 400).await;
    assert_eq!(
        rec.offsets(&k),
        (1..=400).collect::<Vec<u64>>(),
        "delivered in offset order"
    );
    let h = b.history(&k, HistoryPolicy::default(), 0, 1000).await.unwrap();
    assert_eq!(h.top, 400);
    assert!(h.complete);
    assert_eq!(h.messages.len(), 400);
    let epochs: std::collections::HashSet<_> = h.messages.iter().map(|m| m.epoch.clone()).collect();
    assert_eq!(epochs.len(), 1, "one epoch");
    assert_eq!(&*h.epoch, &*h.messages[0].epoch);
}

pub async fn history_since_is_exclusive_and_limited<E: Engine>(b: Arc<E>, _rec: Arc<Recorder>) {
    let a = app();
    let k = key(&a, "h");
    for i in 1..=10 {
        b.publish(publication(&k, &i.to_string(), HistoryPolicy::default()))
            .await
            .unwrap();
    }
    let h = b.history(&k, HistoryPolicy::default(), 3, 4).await.unwrap();
    assert_eq!(
        h.messages.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![4, 5, 6, 7]
    );
    assert_eq!(&*h.messages[0].data, "4");
    assert!(h.complete);
    assert_eq!(h.top, 10);
    let h = b.history(&k, HistoryPolicy::default(), 10, 100).await.unwrap();
    assert!(h.messages.is_empty());
    assert!(h.complete);
    // a never-published channel has a stable epoch and top 0
    let k2 = key(&a, "empty");
    let h1 = b.history(&k2, HistoryPolicy::default(), 0, 10).await.unwrap();
    let h2 = b.history(&k2, HistoryPolicy::default(), 0, 10).await.unwrap();
    assert_eq!(h1.top, 0);
    assert_eq!(h1.epoch, h2.epoch);
    let p = b
        .publish(publication(&k2, "1", HistoryPolicy::default()))
        .await
        .unwrap();
    assert_eq!(p[0].epoch, h1.epoch, "publishing keeps the epoch a reader saw");
    assert_eq!(p[0].offset, 1);
}

pub async fn history_is_bounded_by_size<E: Engine>(b: Arc<E>, _rec: Arc<Recorder>) {
    let a = app();
    let k = key(&a, "small");
    let policy = HistoryPolicy {
        size: 5,
        ttl: Duration::from_secs(60),
    };
    for i in 1..=20 {
        b.publish(publication(&k, &i.to_string(), policy)).await.unwrap();
    }
    let h = b.history(&k, policy, 0, 100).await.unwrap();
    assert_eq!(
        h.messages.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![16, 17, 18, 19, 20]
    );
    assert!(!h.complete, "1..15 are gone");
    let h = b.history(&k, policy, 15, 100).await.unwrap();
    assert!(h.complete);
    assert_eq!(h.messages.len(), 5);
    let h = b.history(&k, policy, 14, 100).await.unwrap();
    assert!(!h.complete, "15 is gone");
}

pub async fn history_expires_by_age<E: Engine>(b: Arc<E>, _rec: Arc<Recorder>) {
    let a = app();
    let k = key(&a, "short");
    let policy = HistoryPolicy {
        size: 100,
        ttl: Duration::from_millis(300),
    };
    b.subscribe(&k).await.unwrap();
    b.publish(publication(&k, "1", policy)).await.unwrap();
    b.publish(publication(&k, "2", policy)).await.unwrap();
    let h = b.history(&k, policy, 0, 100).await.unwrap();
    assert_eq!(h.messages.len(), 2);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let h2 = b.history(&k, policy, 0, 100).await.unwrap();
    assert!(h2.messages.is_empty(), "expired");
    if h2.epoch == h.epoch {
        assert_eq!(h2.top, 2, "same epoch keeps its offsets");
        assert!(!h2.complete, "messages 1 and 2 are lost");
        assert!(b.history(&k, policy, 2, 100).await.unwrap().complete);
    }
    let p = b.publish(publication(&k, "3", policy)).await.unwrap();
    if p[0].epoch == h.epoch {
        assert_eq!(p[0].offset, 3);
    } else {
        assert_eq!(p[0].offset, 1, "a new epoch starts at 1");
    }
}

pub async fn channels_and_apps_are_independent<E: Engine>(b: Arc<E>, _rec: Arc<Recorder>) {
    let a1 = app();
    let a2 = app();
    let k1 = key(&a1, "same");
    let k2 = key(&a2, "same");
    let k3 = key(&a1, "other");
    for _ in 0..3 {
        b.publish(publication(&k1, "1", HistoryPolicy::default()))
            .await
            .unwrap();
    }
    let p = b
        .publish(publication(&k2, "2", HistoryPolicy::default()))
        .await
        .unwrap();
    assert_eq!(p[0].offset, 1);
    let p = b
        .publish(publication(&k3, "3", HistoryPolicy::default()))
        .await
        .unwrap();
    assert_eq!(p[0].offset, 1);
    let h = b.history(&k2, HistoryPolicy::default(), 0, 100).await.unwrap();
    assert_eq!(h.messages.len(), 1);
    assert_eq!(&*h.messages[0].data, "2");
}

pub async fn multi_channel_publish<E: Engine>(b: Arc<E>, rec: Arc<Recorder>) {
    let a = app();
    let ka = key(&a, "m:a");
    let kb = key(&a, "m:b");
    b.subscribe(&ka).await.unwrap();
    b.subscribe(&kb).await.unwrap();
    b.publish(publication(&kb, "0", HistoryPolicy::default()))
        .await
        .unwrap();
    let p = Publication {
        app: a.clone(),
        targets: vec![
            (ka.channel.clone(), HistoryPolicy::default()),
            (kb.channel.clone(), HistoryPolicy::default()),
        ],
        event: EventName::parse("ev").unwrap(),
        data: Arc::from("{\"x\":1}"),
        idempotency: None,
    };
    let res = b.publish(p).await.unwrap();
    assert_eq!(res.len(), 2);
    assert_eq!((res[0].channel.as_str(), res[0].offset), ("m:a", 1));
    assert_eq!((res[1].channel.as_str(), res[1].offset), ("m:b", 2));
    eventually(|| rec.offsets(&ka) == vec![1] && rec.offsets(&kb) == vec![1, 2]).await;
    let h = b.history(&ka, HistoryPolicy::default(), 0, 10).await.unwrap();
    assert_eq!(h.messages[0].event.as_str(), "ev");
}

pub async fn idempotent_publish<E: Engine>(b: Arc<E>, _rec: Arc<Recorder>) {
    let a = app();
    let k = key(&a, "idem");
    let idem = |fp| Idempotency {
        key: "order-42".into(),
        fingerprint: fp,
        window: Duration::from_secs(300),
    };
    let mut p = publication(&k, "1", HistoryPolicy::default());
    p.idempotency = Some(idem(7));
    let first = b.publish(p.clone()).await.unwrap();
    let again = b.publish(p.clone()).await.unwrap();
    assert_eq!(first, again, "a retried publish returns the first result");
    let h = b.history(&k, HistoryPolicy::default(), 0, 10).await.unwrap();
    assert_eq!(h.messages.len(), 1, "appended once");
    let mut other = p.clone();
    other.idempotency = Some(idem(8));
    assert!(matches!(
        b.publish(other).await,
        Err(crate::BrokerError::IdempotencyConflict)
    ));
    // concurrent retries: one append
    let mut p2 = publication(&k, "2", HistoryPolicy::default());
    p2.idempotency = Some(Idempotency {
        key: "order-43".into(),
        fingerprint: 1,
        window: Duration::from_secs(300),
    });
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let b = b.clone();
        let p2 = p2.clone();
        tasks.push(tokio::spawn(async move { b.publish(p2).await.unwrap() }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    let h = b.history(&k, HistoryPolicy::default(), 0, 10).await.unwrap();
    assert_eq!(h.messages.len(), 2);
    // the same key in another app is another key
    let k2 = key(&app(), "idem");
    let mut p3 = publication(&k2, "1", HistoryPolicy::default());
    p3.idempotency = Some(idem(99));
    assert_eq!(b.publish(p3).await.unwrap()[0].offset, 1);
}

pub async fn broadcast_reaches_handler<E: Engine>(b: Arc<E>, rec: Arc<Recorder>) {
    let a = app();
    let k = key(&a, "ctl");
    b.subscribe(&k).await.unwrap();
    b.broadcast(&k, Arc::from("{\"hello\":1}")).await.unwrap();
    eventually(|| {
        rec.controls
            .lock()
            .iter()
            .any(|(kk, p)| *kk == k && &**p == "{\"hello\":1}")
    })
    .await;
    let h = b.history(&k, HistoryPolicy::default(), 0, 10).await.unwrap();
    assert!(h.messages.is_empty(), "controls are not history");
    b.unsubscribe(&k).await.unwrap();
    b.ping().await.unwrap();
}

fn entry(user: &str, info: &str) -> PresenceEntry {
    PresenceEntry {
        user: user.into(),
        info: Arc::from(info),
    }
}

pub async fn presence_counts_users_and_connections<E: Engine>(b: Arc<E>, _rec: Arc<Recorder>) {
    let a = app();
    let k = key(&a, "room");
    let ttl = Duration::from_secs(30);
    assert!(
        b.join(&k, "c1", entry("alice", "{\"name\":\"Alice\"}"), ttl)
            .await
            .unwrap(),
        "alice appears"
    );
    assert!(
        !b.join(&k, "c2", entry("alice", "{\"name\":\"Alice\"}"), ttl)
            .await
            .unwrap(),
        "second tab"
    );
    assert!(
        !b.join(&k, "c1", entry("alice", "{\"name\":\"Alice\"}"), ttl)
            .await
            .unwrap(),
        "refresh"
    );
    assert!(b.join(&k, "c3", entry("bob", "null"), ttl).await.unwrap());
    assert!(
        !b.join(&k, "c4", entry("", "null"), ttl).await.unwrap(),
        "anonymous is not listed"
    );
    let m = b.members(&k).await.unwrap();
    let got: HashMap<_, _> = m.iter().map(|m| (m.user.as_str(), m.connections)).collect();
    assert_eq!(got, HashMap::from([("alice", 2), ("bob", 1)]));
    assert_eq!(m[0].user, "alice");
    assert_eq!(m[0].info, serde_json::json!({"name":"Alice"}));
    assert_eq!(b.leave(&k, "c1").await.unwrap(), None, "alice still has c2");
    assert_eq!(
        b.leave(&k, "c2").await.unwrap().map(|e| e.user),
        Some("alice".into())
    );
    assert_eq!(
        b.leave(&k, "c2").await.unwrap(),
        None,
        "leaving twice is harmless"
    );
    let m = b.members(&k).await.unwrap();
    assert_eq!(m.len(), 1);
    // a connection that comes back as another user moves to that user
    assert!(b.join(&k, "c5", entry("frank", "null"), ttl).await.unwrap());
    assert!(
        b.join(&k, "c5", entry("gina", "null"), ttl).await.unwrap(),
        "gina appears"
    );
    let users: Vec<_> = b.members(&k).await.unwrap().into_iter().map(|m| m.user).collect();
    assert_eq!(users, ["bob", "gina"], "frank left with his only connection");
    assert_eq!(
        b.leave(&k, "c5").await.unwrap().map(|e| e.user),
        Some("gina".into())
    );
    assert!(
        b.members(&key(&app(), "room")).await.unwrap().is_empty(),
        "apps are isolated"
    );
}

pub async fn presence_expires<E: Engine>(b: Arc<E>, _rec: Arc<Recorder>) {
    let a = app();
    let k = key(&a, "exp");
    b.join(&k, "c1", entry("carol", "null"), Duration::from_millis(200))
        .await
        .unwrap();
    b.join(&k, "c2", entry("dave", "null"), Duration::from_secs(30))
        .await
        .unwrap();
    // two connections of one user expire together: one leave
    for c in ["e1", "e2"] {
        b.join(&k, c, entry("erin", "null"), Duration::from_millis(200))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let m = b.members(&k).await.unwrap();
    assert_eq!(
        m.iter().map(|m| m.user.as_str()).collect::<Vec<_>>(),
        vec!["dave"]
    );
    let left = b.sweep().await.unwrap();
    assert!(left.iter().any(|e| e.key == k && e.entry.user == "carol"));
    assert!(!left.iter().any(|e| e.entry.user == "dave"));
    assert_eq!(
        left.iter()
            .filter(|e| e.key == k && e.entry.user == "erin")
            .count(),
        1,
        "one leave per user, not per connection"
    );
    // an expired entry refreshed later counts as a new join
    assert!(b
        .join(&k, "c1", entry("carol", "null"), Duration::from_secs(30))
        .await
        .unwrap());
}
