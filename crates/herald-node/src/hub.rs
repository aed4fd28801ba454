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
//!
//! Each shard's inbox is bounded twice, and publishers feel it before the bound
//! does (backpressure, see [`Hub::room`]): a publish first takes room on the
//! shards of its channels, which it gets only while the inbox holds fewer than
//! `hub_backlog` messages *and* the shard's fan-out is less than `hub_lag` behind
//! (the oldest message it has not finished was queued less than that long ago).
//! The node makes a publish wait up to `publish_wait` for room, then refuses it
//! (`429 overloaded`): nothing was appended, nothing is lost. What still comes
//! without room (other nodes' messages on a cluster, presence events) meets the
//! hard bound in [`Hub::dispatch`]: past `hub_backlog` it is not queued, and the
//! channel's local listeners catch up from history instead.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

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
/// Channels a shard remembers as overflowed between two batches; past it, the
/// shard marks every one of its listeners behind instead (a bound on the set,
/// whatever the number of channels published to while the inbox is full).
const MAX_OVERFLOWED: usize = 1024;

/// Groups a batch by channel, keeping each channel's order.
fn group(batch: &mut Vec<Inboxed>, groups: &mut Vec<(ChannelKey, Vec<Item>)>) {
    for (key, item, _) in batch.drain(..) {
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

/// An inbox entry: the channel, the item, and when it was queued (see [`Hub::now`]).
type Inboxed = (ChannelKey, Item, u64);

struct Shard {
    listeners: Arc<Mutex<Listeners>>,
    tx: mpsc::UnboundedSender<Inboxed>,
    /// What waits in the inbox, the room publishers hold, how far behind the
    /// fan-out is, and the channels whose messages were not queued.
    backlog: Arc<Backlog>,
}

#[derive(Default)]
struct Backlog {
    /// Items in the inbox (the hard bound, `hub_backlog`, is on this).
    queued: AtomicUsize,
    /// Room held by publishes on their way to the broker ([`Room`]).
    reserved: AtomicUsize,
    /// When the oldest message the shard has not finished was queued, in
    /// [`Hub::now`] units plus one; 0 while the shard has nothing to do.
    oldest: AtomicU64,
    /// Notified when room may have come: a batch taken, the inbox emptied, a
    /// reservation given back.
    room: Notify,
    overflowed: Mutex<Overflowed>,
}

/// Channels whose messages were left to history since the shard's last batch.
#[derive(Default)]
struct Overflowed {
    channels: HashSet<ChannelKey>,
    /// More than [`MAX_OVERFLOWED`] channels: every listener of the shard.
    all: bool,
}

/// Room for one message on the shard of each channel of a publish, taken by
/// [`Hub::room`] and given back when dropped (once the broker has the message).
pub struct Room<'a> {
    hub: &'a Hub,
    shards: Vec<usize>,
}

impl Drop for Room<'_> {
    fn drop(&mut self) {
        for &i in &self.shards {
            let b = &self.hub.shards[i].backlog;
            b.reserved.fetch_sub(1, Ordering::AcqRel);
            b.room.notify_waiters();
        }
    }
}

/// The fan-out lags: no room came within the wait (see [`Hub::room`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded;

/// The bounds of a hub's shards (from `Limits`).
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Messages a shard's inbox may hold (`Limits::hub_backlog`).
    pub backlog: usize,
    /// How far behind a shard's fan-out may be for a publish to get room
    /// (`Limits::hub_lag`; zero: no bound in time).
    pub lag: Duration,
}

/// The hub. See the module doc.
pub struct Hub {
    shards: Vec<Shard>,
    max_backlog: usize,
    max_lag_us: u64,
    start: Instant,
    /// The most items any shard's inbox held at once since the start.
    peak: AtomicUsize,
    overflows: prometheus_client::metrics::counter::Counter,
}

impl Hub {
    /// A hub with its shard tasks running on the current tokio runtime, within
    /// `limits`; `overflows` counts what the hard bound left to history.
    pub fn new(limits: HubLimits, overflows: prometheus_client::metrics::counter::Counter) -> Arc<Self> {
        let start = Instant::now();
        let shards = (0..SHARDS)
            .map(|_| {
                let listeners: Arc<Mutex<Listeners>> = Arc::default();
                let (tx, mut rx) = mpsc::unbounded_channel::<Inboxed>();
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
                        // Empty raw items only wake this task (see `dispatch`); they
                        // are not counted in the inbox.
                        batch.retain(|(_, item, _)| !matches!(item, Item::Raw(b) if b.is_empty()));
                        b.queued.fetch_sub(batch.len(), Ordering::AcqRel);
                        // The batch's first item is the oldest not yet delivered: the
                        // shard is as far behind as it is old (see `Hub::room`).
                        if let Some((_, _, at)) = batch.first() {
                            b.oldest.store(at + 1, Ordering::Release);
                        }
                        b.room.notify_waiters();
                        group(&mut batch, &mut groups);
                        let overflowed = std::mem::take(&mut *b.overflowed.lock());
                        {
                            let l = l.lock();
                            if overflowed.all {
                                behind.extend(l.values().flatten().map(|(_, q)| q.clone()));
                            }
                            for key in &overflowed.channels {
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
                        if b.queued.load(Ordering::Acquire) == 0 {
                            // Nothing waits: not behind (the next batch sets it again).
                            b.oldest.store(0, Ordering::Release);
                            b.room.notify_waiters();
                        }
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
            max_backlog: limits.backlog.max(1),
            max_lag_us: u64::try_from(limits.lag.as_micros()).unwrap_or(u64::MAX),
            start,
            peak: AtomicUsize::new(0),
            overflows,
        })
    }

    /// Microseconds since the hub started: the clock of inbox entries.
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn shard_index(key: &ChannelKey) -> usize {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() as usize) % SHARDS
    }

    fn shard(&self, key: &ChannelKey) -> &Shard {
        &self.shards[Self::shard_index(key)]
    }

    /// How far behind shard `b`'s fan-out is: the age of the oldest message it
    /// has not finished delivering (zero when it has nothing to do).
    fn lag_of(&self, b: &Backlog) -> u64 {
        match b.oldest.load(Ordering::Acquire) {
            0 => 0,
            at => self.now().saturating_sub(at - 1),
        }
    }

    /// Takes room for one message on shard `b` if it has some now.
    fn try_take(&self, b: &Backlog) -> bool {
        if self.max_lag_us > 0 && self.lag_of(b) >= self.max_lag_us {
            return false;
        }
        let mut held = b.reserved.load(Ordering::Acquire);
        loop {
            if b.queued.load(Ordering::Acquire) + held >= self.max_backlog {
                return false;
            }
            match b
                .reserved
                .compare_exchange_weak(held, held + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => held = now,
            }
        }
    }

    /// Waits until shard `i` has room and takes it; false if none came by `until`.
    async fn take(&self, i: usize, until: tokio::time::Instant) -> bool {
        let b = &self.shards[i].backlog;
        loop {
            let notified = b.room.notified();
            tokio::pin!(notified);
            // Registered before the check: a batch taken in between wakes us.
            notified.as_mut().enable();
            if self.try_take(b) {
                return true;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => return self.try_take(b),
            }
        }
    }

    /// Room for one message on each of `keys` (the channels of one publish),
    /// waiting at most `wait` for it: the backpressure publishers feel when the
    /// fan-out lags. A shard has room while its inbox holds fewer than
    /// `hub_backlog` messages (counting the room others hold) and its fan-out
    /// is less than `hub_lag` behind. Hold the room until the broker has taken
    /// the message, then drop it.
    ///
    /// # Errors
    /// [`Overloaded`] when a shard had no room within `wait`; nothing is held then.
    pub async fn room<'a>(
        &'a self,
        keys: impl IntoIterator<Item = &ChannelKey>,
        wait: Duration,
    ) -> Result<Room<'a>, Overloaded> {
        let until = tokio::time::Instant::now() + wait;
        let mut room = Room {
            hub: self,
            shards: Vec::with_capacity(1),
        };
        for key in keys {
            let i = Self::shard_index(key);
            let b = &self.shards[i].backlog;
            // The common case, without a timer.
            if !self.try_take(b) && !self.take(i, until).await {
                return Err(Overloaded);
            }
            room.shards.push(i);
        }
        Ok(room)
    }

    /// Messages waiting in the shards' inboxes now (all shards).
    pub fn backlog(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.backlog.queued.load(Ordering::Relaxed))
            .sum()
    }

    /// The most messages one shard's inbox held at once since the start.
    pub fn backlog_peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// How far behind the most lagging shard's fan-out is now.
    pub fn lag(&self) -> Duration {
        let us = self
            .shards
            .iter()
            .map(|s| self.lag_of(&s.backlog))
            .max()
            .unwrap_or(0);
        Duration::from_micros(us)
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
        let before = shard.backlog.queued.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_backlog {
            // Came without room (another node's publish, a presence event, a
            // publish that lost its room to those) into a full inbox: leave it
            // to history, and wake the shard so that it marks the channel's
            // listeners behind.
            shard.backlog.queued.fetch_sub(1, Ordering::AcqRel);
            self.overflows.inc();
            let first = {
                let mut o = shard.backlog.overflowed.lock();
                let first = o.channels.is_empty() && !o.all;
                if o.all || o.channels.len() >= MAX_OVERFLOWED {
                    o.all = true;
                    o.channels.clear();
                } else {
                    o.channels.insert(key.clone());
                }
                first
            };
            tracing::debug!(channel = %key.channel, "hub backlog full: subscribers catch up from history");
            if first {
                // An empty control item only to wake the shard task (not counted:
                // one per batch at most, it holds nothing).
                let _ = shard.tx.send((key, Item::Raw(Bytes::new()), self.now()));
            }
            return;
        }
        if before >= self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(before + 1, Ordering::Relaxed);
        }
        let _ = shard.tx.send((key, item, self.now()));
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

    fn hub(backlog: usize, lag: Duration) -> Arc<Hub> {
        Hub::new(
            HubLimits { backlog, lag },
            prometheus_client::metrics::counter::Counter::default(),
        )
    }

    fn key(channel: &str) -> ChannelKey {
        ChannelKey::new(
            AppName::parse("acme").unwrap(),
            ChannelName::parse(channel).unwrap(),
        )
    }

    /// A hub whose shard of `key` is stuck writing to a connection of `key`
    /// until the returned release is called.
    fn stuck(hub: &Arc<Hub>, key: &ChannelKey) -> impl FnOnce() {
        let (entered_tx, entered) = mpsc::channel();
        let release: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)> = Arc::default();
        let writer = Arc::new(Queue::new(16));
        writer.set_direct(Box::new(Stuck {
            entered: entered_tx,
            release: release.clone(),
        }));
        assert!(writer.park(|_| {}));
        hub.add(key, u64::MAX, writer);
        hub.dispatch(key.clone(), message(key, 1));
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the hub writes to the parked connection");
        move || {
            let (lock, cv) = &*release;
            *lock.lock().unwrap() = true;
            cv.notify_all();
        }
    }

    /// A publish gets room while the inbox has some, waits while it is full,
    /// is refused when none comes in time, and goes ahead as soon as the
    /// shard takes the waiting messages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_inbox_makes_publishes_wait_then_refuses_them() {
        let hub = hub(3, Duration::ZERO);
        let key = key("news");
        let release = stuck(&hub, &key);
        // The shard is stuck on message 1: two more wait in its inbox.
        for n in 2..=3 {
            let room = hub.room([&key], Duration::ZERO).await.expect("room in the inbox");
            hub.dispatch(key.clone(), message(&key, n));
            drop(room);
        }
        // One more could be queued, but that room is held.
        let held = hub.room([&key], Duration::ZERO).await.expect("the last room");
        assert_eq!(
            hub.room([&key], Duration::from_millis(50)).await.err(),
            Some(Overloaded),
            "no room within the wait: refused"
        );
        drop(held);
        let _room = hub.room([&key], Duration::ZERO).await.expect("room given back");
        hub.dispatch(key.clone(), message(&key, 4));
        assert_eq!(hub.backlog(), 3);
        assert_eq!(hub.backlog_peak(), 3);
        assert_eq!(
            hub.room([&key], Duration::ZERO).await.err(),
            Some(Overloaded),
            "a full inbox"
        );

        // A waiting publish gets room as soon as the shard catches up.
        let waiting = {
            let hub = hub.clone();
            let key = key.clone();
            tokio::spawn(async move { hub.room([&key], Duration::from_secs(10)).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "it waits while the inbox is full");
        let started = Instant::now();
        release();
        assert!(waiting.await.unwrap(), "room came");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(hub.backlog_peak(), 3, "the inbox never held more than its bound");
    }

    /// A shard more than `hub_lag` behind gives no room, however short its inbox.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shard_too_far_behind_makes_publishes_wait() {
        let hub = hub(1024, Duration::from_millis(20));
        let key = key("news");
        let release = stuck(&hub, &key);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(hub.lag() >= Duration::from_millis(40));
        assert_eq!(hub.backlog(), 0, "nothing waits in the inbox");
        assert_eq!(
            hub.room([&key], Duration::from_millis(20)).await.err(),
            Some(Overloaded),
            "the message in progress is older than hub_lag"
        );
        // Another shard's channels are not held up.
        let other = (0..100)
            .map(|i| self::key(&format!("other-{i}")))
            .find(|k| Hub::shard_index(k) != Hub::shard_index(&key))
            .unwrap();
        assert!(hub.room([&other], Duration::ZERO).await.is_ok());
        release();
        let room = hub.room([&key], Duration::from_secs(10)).await;
        assert!(room.is_ok(), "room once the shard caught up");
        drop(room);
        eventually_idle(&hub).await;
    }

    async fn eventually_idle(hub: &Hub) {
        for _ in 0..500 {
            if hub.lag() == Duration::ZERO {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the hub stays behind: {:?}", hub.lag());
    }

    /// Messages that come without room into a full inbox (another node's) are
    /// left to history: their channels' listeners are marked behind. A flood of
    /// such channels is remembered in a bounded set: past it, every listener
    /// of the shard is marked behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overflowing_channels_are_remembered_within_a_bound() {
        let hub = hub(1, Duration::ZERO);
        let hot = key("hot");
        let release = stuck(&hub, &hot);
        hub.dispatch(hot.clone(), message(&hot, 2)); // fills the inbox
        let shard = Hub::shard_index(&hot);
        let same: Vec<ChannelKey> = (0..40_000)
            .map(|i| key(&format!("c-{i}")))
            .filter(|k| Hub::shard_index(k) == shard)
            .take(MAX_OVERFLOWED * 2)
            .collect();
        let listener = Arc::new(Queue::new(16));
        let quiet = same[MAX_OVERFLOWED * 2 - 1].clone();
        hub.add(&quiet, 7, listener.clone());
        for k in &same[..MAX_OVERFLOWED * 2 - 1] {
            hub.dispatch(k.clone(), message(k, 1));
        }
        {
            let o = hub.shards[shard].backlog.overflowed.lock();
            assert!(o.channels.len() <= MAX_OVERFLOWED, "{}", o.channels.len());
            assert!(o.all, "past the bound, the whole shard is behind");
        }
        assert_eq!(hub.backlog(), 1, "the inbox held its bound");
        release();
        for _ in 0..500 {
            if listener.lagged.load(Ordering::Acquire) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("a listener of the shard was not told to catch up from history");
    }

    /// While the hub writes to one connection's socket, other connections
    /// subscribe to and leave channels of the same shard without waiting for
    /// that write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subscribing_does_not_wait_for_a_slow_socket_write() {
        let hub = hub(1024, Duration::ZERO);
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
