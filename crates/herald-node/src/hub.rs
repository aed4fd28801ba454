//! The hub: which local connections listen to which channel, and the fan-out.
//!
//! The broker hands every message to [`Hub::on_message`] in offset order per
//! channel. The hub wraps it once in a [`Delivery`] (whose wire formats are each
//! serialized at most once, lazily, and then shared by reference count) and sends it
//! to the shard task that owns the channel, so the publisher is never held up by
//! the fan-out. The shard task pushes a clone of the `Arc` into each listener's
//! bounded [`Queue`]: no copy, no per-subscriber serialization.
//!
//! The hub never blocks on a connection. When a queue is full the message is dropped
//! for that connection and the queue is marked lagged; the connection then catches
//! up from history (see session.rs), so a slow reader costs itself, not others.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use herald_broker::{BrokerHandler, ChannelKey};
use herald_protocol::{AppName, ChannelName, Envelope, Position};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

const SHARDS: usize = 16;
/// Messages a shard takes from its inbox at once. When messages come faster than
/// the shard writes, they pile up there and each connection gets them in one
/// write: the busier the channel, the fewer write calls per message.
const BATCH: usize = 64;
/// Listener slots a shard task keeps allocated between batches (its copy of
/// the listeners it writes to; see the shard task in [`Hub::new`]).
const TARGETS_KEPT: usize = 1024;

/// Groups a batch by channel, keeping each channel's order.
fn group(batch: &mut Vec<(ChannelKey, Item)>, groups: &mut Vec<(ChannelKey, Vec<Item>)>) {
    for (key, item) in batch.drain(..) {
        match groups.iter_mut().rev().find(|(k, _)| *k == key) {
            Some((_, items)) => items.push(item),
            None => groups.push((key, vec![item])),
        }
    }
}

/// A message ready for every transport: the envelope, the channel's cursor after
/// it, and its wire formats, each built once on first use.
pub struct Delivery {
    /// The envelope.
    pub envelope: Arc<Envelope>,
    /// The cursor of this channel after this message.
    pub cursor: Arc<str>,
    json: OnceLock<Arc<str>>,
    sse: OnceLock<Bytes>,
    sse_plain: OnceLock<Bytes>,
    ws: OnceLock<Bytes>,
}

impl Delivery {
    /// Wraps an envelope.
    pub fn new(envelope: Arc<Envelope>) -> Self {
        let cursor = Position {
            channel: envelope.channel.clone(),
            epoch: envelope.epoch.to_string(),
            offset: envelope.offset,
        }
        .encode();
        Self {
            envelope,
            cursor: Arc::from(cursor),
            json: OnceLock::new(),
            sse: OnceLock::new(),
            sse_plain: OnceLock::new(),
            ws: OnceLock::new(),
        }
    }

    /// The envelope as JSON.
    pub fn json(&self) -> &Arc<str> {
        self.json.get_or_init(|| Arc::from(self.envelope.to_json()))
    }

    /// `event: <name>\ndata: <envelope>\n\n`: the SSE event without its `id:` line.
    /// With `named` false the event is always `message` (the envelope still names
    /// it), for clients that cannot know every event name in advance.
    pub fn sse(&self, named: bool) -> &Bytes {
        let (cell, name) = if named {
            (&self.sse, self.envelope.event.as_str())
        } else {
            (&self.sse_plain, "message")
        };
        cell.get_or_init(|| {
            let json = self.json();
            let mut b = Vec::with_capacity(json.len() + 32);
            b.extend_from_slice(b"event: ");
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(b"\ndata: ");
            b.extend_from_slice(json.as_bytes());
            b.extend_from_slice(b"\n\n");
            Bytes::from(b)
        })
    }

    /// The WebSocket push: `{"type":"message","cursor":"...",<envelope fields>}`.
    pub fn ws(&self) -> &Bytes {
        self.ws.get_or_init(|| {
            let mut s = String::with_capacity(self.json().len() + self.cursor.len() + 32);
            s.push_str("{\"type\":\"message\",\"cursor\":\"");
            s.push_str(&self.cursor);
            s.push('"');
            self.envelope.write_json_tail(&mut s);
            Bytes::from(s)
        })
    }
}

/// What the hub queues for a connection.
#[derive(Clone)]
pub enum Item {
    /// A published message.
    Message(Arc<Delivery>),
    /// A control payload (presence join/leave) for a channel.
    Control(ChannelName, Arc<str>),
    /// Bytes a [`Direct`] writer could not finish: the connection writes them first,
    /// as they are (the messages they carry already count as delivered).
    Raw(Bytes),
}

/// What a [`Direct`] writer did with the items offered to it.
#[derive(Debug, PartialEq, Eq)]
pub enum Offered {
    /// Every item was written.
    All,
    /// The first `taken` items were handled (written, or their unwritten bytes are
    /// in `rest`); the others must be queued for the connection's task.
    Part {
        /// How many items, from the first, were handled.
        taken: usize,
        /// The bytes of those items that did not fit in the socket.
        rest: Option<Bytes>,
    },
}

/// A connection's writer that the hub may call while the connection's task sleeps,
/// to write live messages straight to the socket: no task wake-up, no queue, one
/// write call for every message of a hub batch. It only writes what continues the
/// connection's positions exactly and never blocks; anything else it declines, and
/// the task handles it with the whole session logic. A queue calls it only while
/// the task has parked it (see [`Queue::park`]), so the task and the hub never
/// write to the socket at the same time.
pub trait Direct: Send {
    /// Writes what it can of `items` (all of one channel, in order) now.
    fn offer(&mut self, items: &[Item]) -> Offered;
    /// The writer as `Any`, for its owner to reach its own type.
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

struct Inner {
    items: VecDeque<Item>,
    direct: Option<Box<dyn Direct>>,
    parked: bool,
}

/// A connection's bounded inbox, filled by the hub, drained by the connection.
pub struct Queue {
    inner: Mutex<Inner>,
    notify: Notify,
    lagged: AtomicBool,
    cap: usize,
}

impl Queue {
    /// An empty queue holding at most `cap` items.
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                direct: None,
                parked: false,
            }),
            notify: Notify::new(),
            lagged: AtomicBool::new(false),
            cap,
        }
    }

    /// Queues `items` (of one channel, in order), or hands them to the parked
    /// direct writer when nothing is queued before them.
    fn push_all(&self, items: &[Item]) {
        let mut g = self.inner.lock();
        let g = &mut *g;
        let mut from = 0;
        if g.parked && g.items.is_empty() && !self.lagged.load(Ordering::Acquire) {
            if let Some(direct) = g.direct.as_mut() {
                match direct.offer(items) {
                    Offered::All => return,
                    Offered::Part { taken, rest } => {
                        // The task takes over: what was declined must go through it.
                        g.parked = false;
                        if let Some(rest) = rest {
                            g.items.push_back(Item::Raw(rest));
                        }
                        from = taken.min(items.len());
                    }
                }
            }
        }
        for item in &items[from..] {
            if g.items.len() >= self.cap {
                self.lagged.store(true, Ordering::Release);
                break;
            }
            g.items.push_back(item.clone());
        }
        self.notify.notify_one();
    }

    /// Installs the connection's direct writer (not parked yet).
    pub fn set_direct(&self, direct: Box<dyn Direct>) {
        let mut g = self.inner.lock();
        g.direct = Some(direct);
        g.parked = false;
    }

    /// Removes the direct writer (the connection ends).
    pub fn clear_direct(&self) -> Option<Box<dyn Direct>> {
        let mut g = self.inner.lock();
        g.parked = false;
        g.direct.take()
    }

    /// Lets the hub write through the direct writer, after `load` brought it up to
    /// date, if nothing is waiting to be drained; false (and `load` not called)
    /// when something is: drain first.
    pub fn park(&self, load: impl FnOnce(&mut dyn Direct)) -> bool {
        let mut g = self.inner.lock();
        if !g.items.is_empty() || self.lagged.load(Ordering::Acquire) {
            return false;
        }
        let Some(direct) = g.direct.as_mut() else {
            return false;
        };
        load(direct.as_mut());
        g.parked = true;
        true
    }

    /// Takes the socket back from the hub: after this, the hub queues everything.
    /// `store` sees the direct writer (to read back what it wrote) when it was
    /// parked until now or was unparked by the hub since the last call.
    pub fn unpark(&self, store: impl FnOnce(&mut dyn Direct)) {
        let mut g = self.inner.lock();
        g.parked = false;
        if let Some(direct) = g.direct.as_mut() {
            store(direct.as_mut());
        }
    }

    /// Takes the bytes a direct writer left unfinished, if they are next: they
    /// must be the very next bytes on the wire, before anything else is written.
    pub fn take_raw(&self) -> Option<Bytes> {
        let mut g = self.inner.lock();
        if let Some(Item::Raw(_)) = g.items.front() {
            if let Some(Item::Raw(b)) = g.items.pop_front() {
                return Some(b);
            }
        }
        None
    }

    /// Flags the queue as behind (as if it had overflowed) and wakes its reader.
    pub fn mark_lagged(&self) {
        self.lagged.store(true, Ordering::Release);
        self.inner.lock().parked = false;
        self.notify.notify_one();
    }

    /// Waits until there is something to drain. Cancel-safe.
    pub async fn ready(&self) {
        loop {
            if !self.inner.lock().items.is_empty() || self.lagged.load(Ordering::Acquire) {
                return;
            }
            self.notify.notified().await;
        }
    }

    /// Takes everything queued, and whether items were dropped since the last take.
    pub fn take(&self) -> (VecDeque<Item>, bool) {
        let lagged = self.lagged.swap(false, Ordering::AcqRel);
        let mut g = self.inner.lock();
        let taken = std::mem::take(&mut g.items);
        // Give back the buffer's memory when a burst is over: idle connections hold nothing.
        if g.items.capacity() > 64 {
            g.items.shrink_to(0);
        }
        (taken, lagged)
    }
}

type Listeners = HashMap<ChannelKey, Vec<(u64, Arc<Queue>)>>;

struct Shard {
    listeners: Arc<Mutex<Listeners>>,
    tx: mpsc::UnboundedSender<(ChannelKey, Item)>,
    /// What waits in the inbox, and the channels whose messages were not queued
    /// because it was full (their listeners catch up from history).
    backlog: Arc<Backlog>,
}

#[derive(Default)]
struct Backlog {
    queued: AtomicUsize,
    overflowed: Mutex<HashSet<ChannelKey>>,
}

/// The hub. See the module doc.
pub struct Hub {
    shards: Vec<Shard>,
    max_backlog: usize,
    overflows: prometheus_client::metrics::counter::Counter,
}

impl Hub {
    /// A hub with its shard tasks running on the current tokio runtime; at most
    /// `max_backlog` messages wait in a shard's inbox (see `Limits::hub_backlog`).
    pub fn new(max_backlog: usize, overflows: prometheus_client::metrics::counter::Counter) -> Arc<Self> {
        let shards = (0..SHARDS)
            .map(|_| {
                let listeners: Arc<Mutex<Listeners>> = Arc::default();
                let (tx, mut rx) = mpsc::unbounded_channel::<(ChannelKey, Item)>();
                let backlog: Arc<Backlog> = Arc::default();
                let (l, b) = (listeners.clone(), backlog.clone());
                tokio::spawn(async move {
                    let mut batch = Vec::with_capacity(BATCH);
                    let mut groups: Vec<(ChannelKey, Vec<Item>)> = Vec::new();
                    // The listeners of the batch's channels, copied under the shard
                    // lock (group i's are `targets[ends[i-1]..ends[i]]`), so that the
                    // writes happen after it is released: subscribe, unsubscribe and
                    // disconnect on this shard never wait for a socket.
                    let mut targets: Vec<Arc<Queue>> = Vec::new();
                    let mut ends: Vec<usize> = Vec::new();
                    let mut behind: Vec<Arc<Queue>> = Vec::new();
                    while rx.recv_many(&mut batch, BATCH).await > 0 {
                        b.queued.fetch_sub(batch.len(), Ordering::AcqRel);
                        // Empty raw items only wake this task (see `dispatch`).
                        batch.retain(|(_, item)| !matches!(item, Item::Raw(b) if b.is_empty()));
                        group(&mut batch, &mut groups);
                        let overflowed = std::mem::take(&mut *b.overflowed.lock());
                        {
                            let l = l.lock();
                            for key in &overflowed {
                                behind.extend(l.get(key).into_iter().flatten().map(|(_, q)| q.clone()));
                            }
                            for (key, _) in &groups {
                                targets.extend(l.get(key).into_iter().flatten().map(|(_, q)| q.clone()));
                                ends.push(targets.len());
                            }
                        }
                        // Messages of these channels were left out: every local
                        // listener catches up from history.
                        for q in behind.drain(..) {
                            q.mark_lagged();
                        }
                        let mut from = 0;
                        for ((_, items), end) in groups.drain(..).zip(ends.drain(..)) {
                            for q in &targets[from..end] {
                                q.push_all(&items);
                            }
                            from = end;
                        }
                        // A channel of many listeners does not keep its copy's memory.
                        targets.clear();
                        targets.shrink_to(TARGETS_KEPT);
                    }
                });
                Shard {
                    listeners,
                    tx,
                    backlog,
                }
            })
            .collect();
        Arc::new(Self {
            shards,
            max_backlog: max_backlog.max(1),
            overflows,
        })
    }

    fn shard(&self, key: &ChannelKey) -> &Shard {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    /// Registers connection `id`'s queue on `key`; true when it was not registered
    /// yet (the node then subscribes at the broker for it: every listener counts
    /// there, so each one waits until the broker delivers the channel).
    pub fn add(&self, key: &ChannelKey, id: u64, queue: Arc<Queue>) -> bool {
        let mut l = self.shard(key).listeners.lock();
        let list = l.entry(key.clone()).or_default();
        if list.iter().any(|(i, _)| *i == id) {
            return false;
        }
        list.push((id, queue));
        true
    }

    /// Removes connection `id` from `key`; true when it was registered (the node
    /// then undoes its broker subscription).
    pub fn remove(&self, key: &ChannelKey, id: u64) -> bool {
        let mut l = self.shard(key).listeners.lock();
        let Some(list) = l.get_mut(key) else {
            return false;
        };
        let before = list.len();
        list.retain(|(i, _)| *i != id);
        let removed = list.len() != before;
        if list.is_empty() {
            l.remove(key);
        }
        removed
    }

    /// Local listener counts of `app`'s channels.
    pub fn channels_of(&self, app: &AppName) -> Vec<(ChannelName, usize)> {
        let mut out = Vec::new();
        for s in &self.shards {
            for (k, v) in s.listeners.lock().iter() {
                if &k.app == app {
                    out.push((k.channel.clone(), v.len()));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Marks every local connection as possibly behind: each catches up from
    /// history (and gets a reset where history cannot fill the hole).
    pub fn disrupt_all(&self) {
        for s in &self.shards {
            for queues in s.listeners.lock().values() {
                for (_, q) in queues {
                    q.mark_lagged();
                }
            }
        }
    }

    fn dispatch(&self, key: ChannelKey, item: Item) {
        let shard = self.shard(&key);
        if shard.backlog.queued.fetch_add(1, Ordering::AcqRel) >= self.max_backlog {
            // Publishes outrun the fan-out: leave this one to history, and wake the
            // shard so that it marks the channel's listeners behind.
            shard.backlog.queued.fetch_sub(1, Ordering::AcqRel);
            self.overflows.inc();
            let first = {
                let mut o = shard.backlog.overflowed.lock();
                let first = o.is_empty();
                o.insert(key.clone());
                first
            };
            tracing::debug!(channel = %key.channel, "hub backlog full: subscribers catch up from history");
            if first {
                // An empty control item only to wake the shard task.
                shard.backlog.queued.fetch_add(1, Ordering::AcqRel);
                let _ = shard.tx.send((key, Item::Raw(Bytes::new())));
            }
            return;
        }
        let _ = shard.tx.send((key, item));
    }
}

/// Receives the broker's deliveries for the hub.
pub struct HubHandler(pub Arc<Hub>);

impl BrokerHandler for HubHandler {
    fn on_message(&self, app: &AppName, msg: Arc<Envelope>) {
        let key = ChannelKey::new(app.clone(), msg.channel.clone());
        self.0.dispatch(key, Item::Message(Arc::new(Delivery::new(msg))));
    }

    fn on_control(&self, key: &ChannelKey, payload: Arc<str>) {
        self.0
            .dispatch(key.clone(), Item::Control(key.channel.clone(), payload));
    }

    fn on_disruption(&self) {
        tracing::warn!("broker delivery was disrupted; every connection catches up from history");
        self.0.disrupt_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use herald_protocol::EventName;

    use super::*;

    /// A direct writer that reports when the hub calls it and then blocks the
    /// calling thread until released: a socket write that takes long.
    struct Stuck {
        entered: mpsc::Sender<()>,
        release: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    }

    impl Direct for Stuck {
        fn offer(&mut self, _items: &[Item]) -> Offered {
            let _ = self.entered.send(());
            let (lock, cv) = &*self.release;
            let mut go = lock.lock().unwrap();
            while !*go {
                let (g, timeout) = cv.wait_timeout(go, Duration::from_secs(30)).unwrap();
                go = g;
                if timeout.timed_out() {
                    break;
                }
            }
            Offered::All
        }

        fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
            self
        }
    }

    fn message(key: &ChannelKey, offset: u64) -> Item {
        Item::Message(Arc::new(Delivery::new(Arc::new(Envelope {
            channel: key.channel.clone(),
            offset,
            epoch: Arc::from("e"),
            event: EventName::parse("message").unwrap(),
            data: Arc::from("{}"),
            ts: 0,
        }))))
    }

    /// While the hub writes to one connection's socket, other connections
    /// subscribe to and leave channels of the same shard without waiting for
    /// that write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subscribing_does_not_wait_for_a_slow_socket_write() {
        let hub = Hub::new(1024, prometheus_client::metrics::counter::Counter::default());
        let app = AppName::parse("acme").unwrap();
        let key = ChannelKey::new(app, ChannelName::parse("news").unwrap());
        let (entered_tx, entered) = mpsc::channel();
        let release: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)> = Arc::default();
        let writer = Arc::new(Queue::new(16));
        writer.set_direct(Box::new(Stuck {
            entered: entered_tx,
            release: release.clone(),
        }));
        assert!(writer.park(|_| {}));
        hub.add(&key, 1, writer.clone());
        hub.dispatch(key.clone(), message(&key, 1));
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the hub writes to the parked connection");

        // The write is stuck: another connection joins and leaves the same channel.
        let (done_tx, done) = mpsc::channel();
        let (h, k) = (hub.clone(), key.clone());
        let joiner = std::thread::spawn(move || {
            h.add(&k, 2, Arc::new(Queue::new(16)));
            h.remove(&k, 2);
            let _ = done_tx.send(());
        });
        let joined = done.recv_timeout(Duration::from_secs(5));
        let (lock, cv) = &*release;
        *lock.lock().unwrap() = true;
        cv.notify_all();
        joiner.join().unwrap();
        assert!(
            joined.is_ok(),
            "a subscribe on the shard waited for a socket write to finish"
        );
    }
}
