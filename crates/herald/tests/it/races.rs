//! Races and hazards found by reading the code (issue 12, part 1): each test
//! puts a slow engine between the node and the real one, so that the window a
//! race needs is seconds wide instead of microseconds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_broker::{
    Broker, BrokerError, BrokerHandler, ChannelKey, HistoryPolicy, HistoryRead, Member, Presence,
    PresenceEntry, PresenceEvent, Publication, Published,
};
use herald_protocol::{AppName, Envelope};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::OnceCell;

use crate::support::*;

type Active = Arc<Mutex<HashMap<ChannelKey, (usize, Arc<OnceCell<()>>)>>>;

/// The real broker behind a remote-like front: a channel's messages reach the
/// node only once its subscription is active, and activating it takes
/// `subscribe_delay` (later subscribes wait for the same activation, as on
/// Redis); `unsubscribe` takes `unsubscribe_delay`.
pub struct SlowBroker {
    inner: Arc<dyn Broker>,
    subscribe_delay: Duration,
    unsubscribe_delay: Duration,
    active: Active,
    /// `subscribe` calls begun.
    pub subscribes: AtomicUsize,
    /// `unsubscribe` calls finished.
    pub unsubscribed: AtomicUsize,
}

impl SlowBroker {
    /// Hooks that put a `SlowBroker` in front of the server's broker; `slot`
    /// receives it once the server is wired.
    pub fn hooks(
        subscribe_delay: Duration,
        unsubscribe_delay: Duration,
    ) -> (herald::Hooks, Arc<Mutex<Option<Arc<SlowBroker>>>>) {
        let slot: Arc<Mutex<Option<Arc<SlowBroker>>>> = Arc::default();
        let put = slot.clone();
        let hooks = herald::Hooks {
            broker: Some(Box::new(move |inner| {
                let slow = Arc::new(SlowBroker {
                    inner,
                    subscribe_delay,
                    unsubscribe_delay,
                    active: Arc::default(),
                    subscribes: AtomicUsize::new(0),
                    unsubscribed: AtomicUsize::new(0),
                });
                *put.lock() = Some(slow.clone());
                slow as Arc<dyn Broker>
            })),
            ..Default::default()
        };
        (hooks, slot)
    }

    /// Waits until `n` subscribes have begun.
    pub async fn subscribes_begun(&self, n: usize) {
        wait_until(|| self.subscribes.load(Ordering::SeqCst) >= n).await;
    }
}

/// Polls `cond` every 10 ms for at most `WAIT`.
async fn wait_until(cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the condition did not hold within the wait"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Hands the node only the messages of active channels.
struct Filter {
    to: Arc<dyn BrokerHandler>,
    active: Active,
}

impl Filter {
    fn passes(&self, key: &ChannelKey) -> bool {
        self.active
            .lock()
            .get(key)
            .is_some_and(|(_, on)| on.initialized())
    }
}

impl BrokerHandler for Filter {
    fn on_message(&self, app: &AppName, msg: Arc<Envelope>) {
        if self.passes(&ChannelKey::new(app.clone(), msg.channel.clone())) {
            self.to.on_message(app, msg);
        }
    }

    fn on_control(&self, key: &ChannelKey, payload: Arc<str>) {
        if self.passes(key) {
            self.to.on_control(key, payload);
        }
    }

    fn on_disruption(&self) {
        self.to.on_disruption();
    }
}

#[async_trait::async_trait]
impl Broker for SlowBroker {
    fn set_handler(&self, handler: Arc<dyn BrokerHandler>) {
        self.inner.set_handler(Arc::new(Filter {
            to: handler,
            active: self.active.clone(),
        }));
    }

    async fn publish(&self, publication: Publication) -> Result<Vec<Published>, BrokerError> {
        self.inner.publish(publication).await
    }

    async fn history(
        &self,
        key: &ChannelKey,
        policy: HistoryPolicy,
        since: u64,
        limit: usize,
    ) -> Result<HistoryRead, BrokerError> {
        self.inner.history(key, policy, since, limit).await
    }

    async fn subscribe(&self, key: &ChannelKey) -> Result<(), BrokerError> {
        self.subscribes.fetch_add(1, Ordering::SeqCst);
        self.inner.subscribe(key).await?;
        let on = {
            let mut active = self.active.lock();
            let entry = active.entry(key.clone()).or_default();
            entry.0 += 1;
            entry.1.clone()
        };
        let delay = self.subscribe_delay;
        on.get_or_init(|| tokio::time::sleep(delay)).await;
        Ok(())
    }

    async fn unsubscribe(&self, key: &ChannelKey) -> Result<(), BrokerError> {
        tokio::time::sleep(self.unsubscribe_delay).await;
        {
            let mut active = self.active.lock();
            if let Some(entry) = active.get_mut(key) {
                entry.0 -= 1;
                if entry.0 == 0 {
                    active.remove(key);
                }
            }
        }
        let r = self.inner.unsubscribe(key).await;
        self.unsubscribed.fetch_add(1, Ordering::SeqCst);
        r
    }

    async fn broadcast(&self, key: &ChannelKey, payload: Arc<str>) -> Result<(), BrokerError> {
        self.inner.broadcast(key, payload).await
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        self.inner.ping().await
    }
}

fn slow(slot: &Arc<Mutex<Option<Arc<SlowBroker>>>>) -> Arc<SlowBroker> {
    slot.lock().clone().expect("the server wired the slow broker")
}

/// Two students open the same channel at once on a node whose broker takes two
/// seconds to activate a subscription: the second must not start reading before
/// the channel's messages reach the node, or a message published in that window
/// never reaches it (on a quiet channel, nothing later reveals the gap).
#[tokio::test]
async fn a_second_subscriber_waits_until_the_broker_delivers_the_channel() {
    let (hooks, slot) = SlowBroker::hooks(Duration::from_secs(2), Duration::ZERO);
    let server = TestServer::start_hooked(tempfile::tempdir().unwrap(), hooks, |_| {}).await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "u");
    let url = server.app_url(&app, &format!("/events?channel=news&token={tok}"));
    let broker = slow(&slot);

    let first_url = url.clone();
    let first = tokio::spawn(async move { Sse::connect(&first_url, None).await });
    broker.subscribes_begun(1).await;
    // The first subscription is being activated: a second subscriber arrives.
    let mut second = Sse::connect(&url, None).await;
    assert_eq!(second.status, 200);
    server.publish(&app, "news", json!({"n": 1})).await;

    let got = second.messages(1).await;
    assert_eq!(
        got[0]["data"],
        json!({"n": 1}),
        "the second subscriber gets the message"
    );
    let mut first = first.await.unwrap();
    let got = first.messages(1).await;
    assert_eq!(
        got[0]["data"],
        json!({"n": 1}),
        "the first subscriber gets it too"
    );
}

/// The real presence engine behind one whose `leave` takes `delay`.
pub struct SlowLeave {
    inner: Arc<dyn Presence>,
    delay: Duration,
    /// `leave` calls finished.
    pub left: AtomicUsize,
}

impl SlowLeave {
    /// Hooks that put a `SlowLeave` in front of the server's presence engine.
    pub fn hooks(
        delay: Duration,
        mut hooks: herald::Hooks,
    ) -> (herald::Hooks, Arc<Mutex<Option<Arc<SlowLeave>>>>) {
        let slot: Arc<Mutex<Option<Arc<SlowLeave>>>> = Arc::default();
        let put = slot.clone();
        hooks.presence = Some(Box::new(move |inner| {
            let slow = Arc::new(SlowLeave {
                inner,
                delay,
                left: AtomicUsize::new(0),
            });
            *put.lock() = Some(slow.clone());
            slow as Arc<dyn Presence>
        }));
        (hooks, slot)
    }
}

#[async_trait::async_trait]
impl Presence for SlowLeave {
    async fn join(
        &self,
        key: &ChannelKey,
        client: &str,
        entry: PresenceEntry,
        ttl: Duration,
    ) -> Result<bool, BrokerError> {
        self.inner.join(key, client, entry, ttl).await
    }

    async fn leave(&self, key: &ChannelKey, client: &str) -> Result<Option<PresenceEntry>, BrokerError> {
        tokio::time::sleep(self.delay).await;
        let r = self.inner.leave(key, client).await;
        self.left.fetch_add(1, Ordering::SeqCst);
        r
    }

    async fn members(&self, key: &ChannelKey) -> Result<Vec<Member>, BrokerError> {
        self.inner.members(key).await
    }

    async fn sweep(&self) -> Result<Vec<PresenceEvent>, BrokerError> {
        self.inner.sweep().await
    }
}

/// A shutdown ends every connection; what their ends start (the presence
/// leave others would otherwise see only when the entry expires, the broker
/// unsubscribe) finishes before the server says it stopped, however slow the
/// engines are (within the shutdown's limit).
#[tokio::test]
async fn shutdown_waits_for_the_presence_leaves_and_unsubscribes_of_closed_connections() {
    let (hooks, brokers) = SlowBroker::hooks(Duration::ZERO, Duration::from_secs(1));
    let (hooks, presences) = SlowLeave::hooks(Duration::from_secs(1), hooks);
    let server = TestServer::start_hooked(tempfile::tempdir().unwrap(), hooks, |c| {
        c.server.shutdown_deadline = Duration::from_secs(5);
    })
    .await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let sse = Sse::connect(&server.events_url(&app, &["room"], &tok), None).await;
    assert_eq!(sse.status, 200);
    let (broker, presence) = (slow(&brokers), presences.lock().clone().unwrap());

    server.stop().await;
    assert_eq!(
        broker.unsubscribed.load(Ordering::SeqCst),
        1,
        "the broker unsubscribe finished before the server stopped"
    );
    assert_eq!(
        presence.left.load(Ordering::SeqCst),
        1,
        "the presence leave finished before the server stopped"
    );
    drop(sse);
}
