//! The in-memory engine: one node, no dependencies, the default.
//!
//! Channels are spread over shards by hash, each shard a mutex over a map, so two
//! cores publishing to different channels rarely meet. A publish takes the
//! channel's shard lock, assigns the offset, appends to the ring and hands the
//! message to the handler before releasing it: that is what keeps delivery in
//! offset order. The handler only queues, so the lock is held for microseconds.
//!
//! A channel's state is dropped (and a later publish starts a new epoch) only when
//! no node subscriber holds it, its history is empty, and nobody used it for the
//! idle period given to [`MemoryBroker::evict_idle`]; so a quiet channel keeps its
//! epoch, and a client that comes back to it having missed nothing gets nothing,
//! not a needless reset.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use herald_protocol::{AppName, Envelope};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::broker::{
    Broker, BrokerError, BrokerHandler, ChannelKey, HistoryPolicy, HistoryRead, Publication, Published,
};
use crate::presence::{Member, Presence, PresenceEntry, PresenceEvent};
use crate::{new_epoch, now_millis};

const SHARDS: usize = 64;

struct Stored {
    msg: Arc<Envelope>,
    at: Instant,
}

struct ChannelState {
    epoch: Arc<str>,
    top: u64,
    ring: VecDeque<Stored>,
    subscribers: usize,
    last_used: Instant,
}

impl ChannelState {
    fn new() -> Self {
        Self {
            epoch: new_epoch(),
            top: 0,
            ring: VecDeque::new(),
            subscribers: 0,
            last_used: Instant::now(),
        }
    }

    fn trim(&mut self, policy: HistoryPolicy, now: Instant) {
        while self.ring.len() > policy.size {
            self.ring.pop_front();
        }
        while let Some(front) = self.ring.front() {
            if now.duration_since(front.at) >= policy.ttl {
                self.ring.pop_front();
            } else {
                break;
            }
        }
    }
}

/// A connection's presence entry, its expiry, and a sequence number (newest info wins).
type PresenceSlot = (PresenceEntry, Instant, u64);

/// One channel's presence: its connections, and for each user the ids of
/// their connections, so that a join or a leave looks at that user's
/// connections only (a refresh of one of 5 000 members does not scan the
/// others).
#[derive(Default)]
struct ChannelPresence {
    clients: HashMap<String, PresenceSlot>,
    users: HashMap<String, HashSet<String>>,
}

impl ChannelPresence {
    fn insert(&mut self, client: &str, slot: PresenceSlot) -> Option<PresenceSlot> {
        let user = slot.0.user.clone();
        let prior = self.clients.insert(client.to_owned(), slot);
        if let Some((old, _, _)) = &prior {
            if old.user != user {
                self.unlink(&old.user.clone(), client);
            }
        }
        self.users.entry(user).or_default().insert(client.to_owned());
        prior
    }

    fn remove(&mut self, client: &str) -> Option<PresenceSlot> {
        let prior = self.clients.remove(client)?;
        self.unlink(&prior.0.user, client);
        Some(prior)
    }

    fn unlink(&mut self, user: &str, client: &str) {
        if let Some(set) = self.users.get_mut(user) {
            set.remove(client);
            if set.is_empty() {
                self.users.remove(user);
            }
        }
    }

    /// Whether `user` has a connection other than `except` alive at `now`.
    fn user_here(&self, user: &str, except: &str, now: Instant) -> bool {
        self.users.get(user).is_some_and(|set| {
            set.iter()
                .filter(|c| c.as_str() != except)
                .any(|c| self.clients.get(c).is_some_and(|(_, exp, _)| *exp > now))
        })
    }
}

type IdemResult = Result<(u64, Vec<Published>), BrokerError>;

struct IdemEntry {
    cell: Arc<tokio::sync::OnceCell<(u64, Vec<Published>)>>,
    expires: Instant,
}

/// The in-memory [`Broker`] and [`Presence`] engine.
pub struct MemoryBroker {
    shards: Vec<Mutex<HashMap<ChannelKey, ChannelState>>>,
    handler: OnceLock<Arc<dyn BrokerHandler>>,
    idempotency: Mutex<HashMap<(AppName, String), IdemEntry>>,
    presence: Mutex<HashMap<ChannelKey, ChannelPresence>>,
    presence_seq: std::sync::atomic::AtomicU64,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            handler: OnceLock::new(),
            idempotency: Mutex::new(HashMap::new()),
            presence: Mutex::new(HashMap::new()),
            presence_seq: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &ChannelKey) -> &Mutex<HashMap<ChannelKey, ChannelState>> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    fn append(&self, app: &AppName, publication: &Publication) -> Vec<Published> {
        let ts = now_millis();
        let now = Instant::now();
        let mut out = Vec::with_capacity(publication.targets.len());
        for (channel, policy) in &publication.targets {
            let key = ChannelKey::new(app.clone(), channel.clone());
            let mut shard = self.shard(&key).lock();
            let state = shard.entry(key).or_insert_with(ChannelState::new);
            state.top += 1;
            state.last_used = now;
            let msg = Arc::new(Envelope {
                channel: channel.clone(),
                offset: state.top,
                epoch: state.epoch.clone(),
                event: publication.event.clone(),
                data: publication.data.clone(),
                ts,
            });
            if policy.size > 0 {
                state.ring.push_back(Stored {
                    msg: msg.clone(),
                    at: now,
                });
            }
            state.trim(*policy, now);
            out.push(Published {
                channel: channel.clone(),
                offset: msg.offset,
                epoch: msg.epoch.clone(),
            });
            if let Some(h) = self.handler.get() {
                h.on_message(app, msg);
            }
        }
        out
    }

    /// Drops channel states that nobody listens to, whose history is empty and
    /// that were not used for `idle`, and idempotency keys past their window.
    /// Called periodically by the node.
    pub fn evict_idle(&self, policy_of: impl Fn(&ChannelKey) -> HistoryPolicy, idle: Duration) {
        let now = Instant::now();
        for shard in &self.shards {
            let mut shard = shard.lock();
            shard.retain(|key, state| {
                state.trim(policy_of(key), now);
                state.subscribers > 0 || !state.ring.is_empty() || now.duration_since(state.last_used) < idle
            });
        }
        self.idempotency.lock().retain(|_, e| e.expires > now);
    }

    /// The number of channel states held (for tests and metrics).
    pub fn channel_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn set_handler(&self, handler: Arc<dyn BrokerHandler>) {
        let _ = self.handler.set(handler);
    }

    async fn publish(&self, publication: Publication) -> Result<Vec<Published>, BrokerError> {
        let app = publication.app.clone();
        let Some(idem) = publication.idempotency.clone() else {
            return Ok(self.append(&app, &publication));
        };
        let now = Instant::now();
        let cell = {
            let mut map = self.idempotency.lock();
            let entry = map
                .entry((app.clone(), idem.key.clone()))
                .or_insert_with(|| IdemEntry {
                    cell: Arc::new(tokio::sync::OnceCell::new()),
                    expires: now + idem.window,
                });
            if entry.expires <= now {
                *entry = IdemEntry {
                    cell: Arc::new(tokio::sync::OnceCell::new()),
                    expires: now + idem.window,
                };
            }
            entry.cell.clone()
        };
        let result: IdemResult = cell
            .get_or_try_init(|| async { Ok((idem.fingerprint, self.append(&app, &publication))) })
            .await
            .cloned();
        let (fingerprint, published) = result?;
        if fingerprint != idem.fingerprint {
            return Err(BrokerError::IdempotencyConflict);
        }
        Ok(published)
    }

    async fn history(
        &self,
        key: &ChannelKey,
        policy: HistoryPolicy,
        since: u64,
        limit: usize,
    ) -> Result<HistoryRead, BrokerError> {
        let mut shard = self.shard(key).lock();
        let state = shard.entry(key.clone()).or_insert_with(ChannelState::new);
        let now = Instant::now();
        state.last_used = now;
        state.trim(policy, now);
        let oldest = state.ring.front().map(|s| s.msg.offset).unwrap_or(state.top + 1);
        let complete = since >= state.top || oldest <= since + 1;
        let messages = state
            .ring
            .iter()
            .filter(|s| s.msg.offset > since)
            .take(limit)
            .map(|s| s.msg.clone())
            .collect();
        Ok(HistoryRead {
            epoch: state.epoch.clone(),
            top: state.top,
            messages,
            complete,
        })
    }

    async fn subscribe(&self, key: &ChannelKey) -> Result<(), BrokerError> {
        let mut shard = self.shard(key).lock();
        shard
            .entry(key.clone())
            .or_insert_with(ChannelState::new)
            .subscribers += 1;
        Ok(())
    }

    async fn unsubscribe(&self, key: &ChannelKey) -> Result<(), BrokerError> {
        let mut shard = self.shard(key).lock();
        if let Some(state) = shard.get_mut(key) {
            state.subscribers = state.subscribers.saturating_sub(1);
        }
        Ok(())
    }

    async fn broadcast(&self, key: &ChannelKey, payload: Arc<str>) -> Result<(), BrokerError> {
        if let Some(h) = self.handler.get() {
            h.on_control(key, payload);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }
}

#[async_trait]
impl Presence for MemoryBroker {
    async fn join(
        &self,
        key: &ChannelKey,
        client: &str,
        entry: PresenceEntry,
        ttl: Duration,
    ) -> Result<bool, BrokerError> {
        if entry.user.is_empty() {
            return Ok(false);
        }
        let now = Instant::now();
        let seq = self
            .presence_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.presence.lock();
        let clients = map.entry(key.clone()).or_default();
        let user_was_here = clients.user_here(&entry.user, client, now);
        let prior = clients.insert(client, (entry.clone(), now + ttl, seq));
        let was_here = user_was_here || prior.is_some_and(|(e, exp, _)| e.user == entry.user && exp > now);
        Ok(!was_here)
    }

    async fn leave(&self, key: &ChannelKey, client: &str) -> Result<Option<PresenceEntry>, BrokerError> {
        let now = Instant::now();
        let mut map = self.presence.lock();
        let Some(clients) = map.get_mut(key) else {
            return Ok(None);
        };
        let Some((entry, _, _)) = clients.remove(client) else {
            return Ok(None);
        };
        let still = clients.user_here(&entry.user, client, now);
        if clients.clients.is_empty() {
            map.remove(key);
        }
        Ok(if still { None } else { Some(entry) })
    }

    async fn members(&self, key: &ChannelKey) -> Result<Vec<Member>, BrokerError> {
        let now = Instant::now();
        let map = self.presence.lock();
        let Some(clients) = map.get(key) else {
            return Ok(Vec::new());
        };
        let mut by_user: HashMap<&str, (u32, u64, &str)> = HashMap::new();
        for (entry, exp, seq) in clients.clients.values() {
            if *exp <= now {
                continue;
            }
            let slot = by_user.entry(&entry.user).or_insert((0, 0, "null"));
            slot.0 += 1;
            if *seq >= slot.1 {
                slot.1 = *seq;
                slot.2 = &entry.info;
            }
        }
        let mut members: Vec<Member> = by_user
            .into_iter()
            .map(|(user, (connections, _, info))| Member {
                user: user.to_owned(),
                info: serde_json::from_str(info).unwrap_or(serde_json::Value::Null),
                connections,
            })
            .collect();
        members.sort_by(|a, b| a.user.cmp(&b.user));
        Ok(members)
    }

    async fn sweep(&self) -> Result<Vec<PresenceEvent>, BrokerError> {
        let now = Instant::now();
        let mut left = Vec::new();
        let mut map = self.presence.lock();
        for (key, clients) in map.iter_mut() {
            let expired: Vec<String> = clients
                .clients
                .iter()
                .filter(|(_, (_, exp, _))| *exp <= now)
                .map(|(c, _)| c.clone())
                .collect();
            if expired.is_empty() {
                continue;
            }
            let expired: Vec<PresenceEntry> = expired
                .iter()
                .filter_map(|c| clients.remove(c).map(|(e, _, _)| e))
                .collect();
            let mut gone = HashSet::new();
            for entry in expired {
                let still = clients.users.contains_key(&entry.user);
                if !still && gone.insert(entry.user.clone()) {
                    left.push(PresenceEvent {
                        key: key.clone(),
                        entry,
                    });
                }
            }
        }
        map.retain(|_, clients| !clients.clients.is_empty());
        Ok(left)
    }
}
