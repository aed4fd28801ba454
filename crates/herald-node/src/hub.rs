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
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use herald_broker::{BrokerHandler, ChannelKey};
use herald_protocol::{AppName, ChannelName, Envelope, Position};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

const SHARDS: usize = 16;

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
}

/// A connection's bounded inbox, filled by the hub, drained by the connection.
pub struct Queue {
    items: Mutex<VecDeque<Item>>,
    notify: Notify,
    lagged: AtomicBool,
    cap: usize,
}

impl Queue {
    /// An empty queue holding at most `cap` items.
    pub fn new(cap: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            lagged: AtomicBool::new(false),
            cap,
        }
    }

    fn push(&self, item: Item) {
        {
            let mut items = self.items.lock();
            if items.len() >= self.cap {
                self.lagged.store(true, Ordering::Release);
            } else {
                items.push_back(item);
            }
        }
        self.notify.notify_one();
    }

    /// Flags the queue as behind (as if it had overflowed) and wakes its reader.
    pub fn mark_lagged(&self) {
        self.lagged.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Waits until there is something to drain. Cancel-safe.
    pub async fn ready(&self) {
        loop {
            if !self.items.lock().is_empty() || self.lagged.load(Ordering::Acquire) {
                return;
            }
            self.notify.notified().await;
        }
    }

    /// Takes everything queued, and whether items were dropped since the last take.
    pub fn take(&self) -> (VecDeque<Item>, bool) {
        let lagged = self.lagged.swap(false, Ordering::AcqRel);
        let mut items = self.items.lock();
        let taken = std::mem::take(&mut *items);
        // Give back the buffer's memory when a burst is over: idle connections hold nothing.
        if items.capacity() > 64 {
            items.shrink_to(0);
        }
        (taken, lagged)
    }
}

type Listeners = HashMap<ChannelKey, Vec<(u64, Arc<Queue>)>>;

struct Shard {
    listeners: Arc<Mutex<Listeners>>,
    tx: mpsc::UnboundedSender<(ChannelKey, Item)>,
}

/// The hub. See the module doc.
pub struct Hub {
    shards: Vec<Shard>,
}

impl Hub {
    /// A hub with its shard tasks running on the current tokio runtime.
    pub fn new() -> Arc<Self> {
        let shards = (0..SHARDS)
            .map(|_| {
                let listeners: Arc<Mutex<Listeners>> = Arc::default();
                let (tx, mut rx) = mpsc::unbounded_channel::<(ChannelKey, Item)>();
                let l = listeners.clone();
                tokio::spawn(async move {
                    let mut batch = Vec::with_capacity(64);
                    while rx.recv_many(&mut batch, 64).await > 0 {
                        let l = l.lock();
                        for (key, item) in batch.drain(..) {
                            if let Some(queues) = l.get(&key) {
                                for (_, q) in queues {
                                    q.push(item.clone());
                                }
                            }
                        }
                    }
                });
                Shard { listeners, tx }
            })
            .collect();
        Arc::new(Self { shards })
    }

    fn shard(&self, key: &ChannelKey) -> &Shard {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    /// Registers connection `id`'s queue on `key`; true when it is the first local
    /// listener (the node must then subscribe at the broker).
    pub fn add(&self, key: &ChannelKey, id: u64, queue: Arc<Queue>) -> bool {
        let mut l = self.shard(key).listeners.lock();
        let list = l.entry(key.clone()).or_default();
        let first = list.is_empty();
        if !list.iter().any(|(i, _)| *i == id) {
            list.push((id, queue));
        }
        first
    }

    /// Removes connection `id` from `key`; true when no local listener is left.
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
            return removed;
        }
        false
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
        let _ = self.shard(&key).tx.send((key, item));
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
