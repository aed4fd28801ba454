//! The embedded engine: one node, no service to run, the default.
//!
//! Channels are spread over shards by hash, each shard a mutex over a map, so two
//! cores publishing to different channels rarely meet. A publish takes the shard
//! locks of its channels, assigns the offsets and appends to the rings; the
//! messages then reach the handler in offset order per channel. The handler only
//! queues, so the locks are held for microseconds.
//!
//! Two ways to run it:
//! - [`MemoryBroker::new`]: history in memory only. A publish hands its messages to
//!   the handler under the lock and returns; a restart loses every channel (each
//!   starts a new epoch).
//! - [`MemoryBroker::open`]: the same, with a journal in a directory
//!   ([`crate::journal`]) that a restart reads back: epochs, offsets, history and
//!   idempotency keys survive it. A publish queues its records under the lock,
//!   then writes the queue (its own records and any others', in one write) unless
//!   another publisher is writing it already; once written, the messages are
//!   marked durable, handed to the handler and the publishers answered. History
//!   reads show only what is durable, so nobody sees a message a crash could take
//!   back.
//!
//! A channel's state is dropped (and a later publish starts a new epoch) only when
//! no node subscriber holds it, its history is empty, and nobody used it for the
//! idle period given to [`MemoryBroker::evict_idle`]; so a quiet channel keeps its
//! epoch, and a client that comes back to it having missed nothing gets nothing,
//! not a needless reset.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use herald_protocol::{AppName, Envelope};
use parking_lot::{Mutex, MutexGuard};
use tokio::time::Instant;

use crate::broker::{
    Broker, BrokerError, BrokerHandler, ChannelKey, HistoryPolicy, HistoryRead, Idempotency, Publication,
    Published,
};
use crate::journal::{self, Journal, JournalOptions, Record, Unit};
use crate::presence::{Member, Presence, PresenceEntry, PresenceEvent};
use crate::{new_epoch, now_millis};

const SHARDS: usize = 64;

struct Stored {
    msg: Arc<Envelope>,
    at: Instant,
}

pub(crate) struct ChannelState {
    epoch: Arc<str>,
    top: u64,
    ring: VecDeque<Stored>,
    /// The newest offset that is durable (written to the journal; equal to `top`
    /// without one): history shows nothing beyond it.
    durable: Arc<AtomicU64>,
    subscribers: usize,
    last_used: Instant,
}

impl ChannelState {
    fn new() -> Self {
        Self::with(new_epoch(), 0)
    }

    fn with(epoch: Arc<str>, top: u64) -> Self {
        Self {
            epoch,
            top,
            ring: VecDeque::new(),
            durable: Arc::new(AtomicU64::new(top)),
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
    /// The same moment in Unix milliseconds (what the journal keeps).
    expires_ms: i64,
}

type Shard = Mutex<HashMap<ChannelKey, ChannelState>>;

/// What the journal shares with the broker: the channels and the handler.
pub(crate) struct Core {
    shards: Vec<Shard>,
    handler: OnceLock<Arc<dyn BrokerHandler>>,
    idempotency: Mutex<HashMap<(AppName, String), IdemEntry>>,
    presence: Mutex<HashMap<ChannelKey, ChannelPresence>>,
    presence_seq: AtomicU64,
}

impl Core {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            handler: OnceLock::new(),
            idempotency: Mutex::new(HashMap::new()),
            presence: Mutex::new(HashMap::new()),
            presence_seq: AtomicU64::new(0),
        }
    }

    fn shard_index(key: &ChannelKey) -> usize {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() as usize) % SHARDS
    }

    fn shard(&self, key: &ChannelKey) -> &Shard {
        &self.shards[Self::shard_index(key)]
    }

    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub(crate) fn channel_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// The journal wrote `unit`: its messages become durable, reach the handler
    /// (in queue order, so in offset order per channel), and the publisher hears.
    pub(crate) fn written(&self, unit: Unit) {
        let handler = self.handler.get();
        for (app, msg, durable) in unit.deliver {
            durable.fetch_max(msg.offset, Ordering::AcqRel);
            if let Some(h) = handler {
                h.on_message(&app, msg);
            }
        }
        if let Some(done) = unit.done {
            let _ = done.send(());
        }
        drop(unit.permit);
    }

    /// Applies one journal record at start. Records may repeat what an earlier one
    /// said (a rewrite races the queue): an offset at or below the channel's top in
    /// the same epoch is skipped.
    pub(crate) fn apply(&self, record: Record, now: Instant, now_ms: i64) {
        match record {
            Record::Channel {
                app,
                channel,
                epoch,
                top,
            } => {
                let key = ChannelKey::new(app, channel);
                let mut shard = self.shard(&key).lock();
                match shard.get_mut(&key) {
                    Some(s) if s.epoch == epoch => {
                        if top > s.top {
                            s.ring.clear();
                            s.top = top;
                        }
                    }
                    _ => {
                        shard.insert(key, ChannelState::with(epoch, top));
                    }
                }
            }
            Record::Message { app, msg, kept } => {
                let key = ChannelKey::new(app, msg.channel.clone());
                let mut shard = self.shard(&key).lock();
                let s = match shard.get_mut(&key) {
                    Some(s) if s.epoch == msg.epoch => s,
                    _ => {
                        // A message without its channel record: its own epoch.
                        let s = ChannelState::with(msg.epoch.clone(), msg.offset.saturating_sub(1));
                        shard.insert(key.clone(), s);
                        match shard.get_mut(&key) {
                            Some(s) => s,
                            None => return,
                        }
                    }
                };
                if msg.offset <= s.top {
                    return;
                }
                if msg.offset > s.top + 1 {
                    // A hole (should not happen): what came before is not history.
                    s.ring.clear();
                }
                s.top = msg.offset;
                if kept {
                    let age = Duration::from_millis(now_ms.saturating_sub(msg.ts).max(0) as u64);
                    // Share the channel's epoch string rather than one per message.
                    let msg = Arc::new(Envelope {
                        epoch: s.epoch.clone(),
                        ..(*msg).clone()
                    });
                    s.ring.push_back(Stored {
                        msg,
                        at: now.checked_sub(age).unwrap_or(now),
                    });
                }
            }
            Record::Forget { app, channel, epoch } => {
                let key = ChannelKey::new(app, channel);
                let mut shard = self.shard(&key).lock();
                if shard.get(&key).is_some_and(|s| s.epoch == epoch) {
                    shard.remove(&key);
                }
            }
            Record::Idem {
                app,
                key,
                fingerprint,
                expires_ms,
                results,
            } => {
                if expires_ms <= now_ms {
                    return;
                }
                let cell = tokio::sync::OnceCell::new_with(Some((fingerprint, results)));
                self.idempotency.lock().insert(
                    (app, key),
                    IdemEntry {
                        cell: Arc::new(cell),
                        expires: now + Duration::from_millis((expires_ms - now_ms) as u64),
                        expires_ms,
                    },
                );
            }
        }
    }

    /// Trims every channel with its policy, and sets what was replayed durable.
    fn settle(&self, policy_of: &dyn Fn(&ChannelKey) -> HistoryPolicy) {
        let now = Instant::now();
        for shard in &self.shards {
            for (key, s) in shard.lock().iter_mut() {
                s.trim(policy_of(key), now);
                s.durable.store(s.top, Ordering::Release);
            }
        }
    }

    /// The records that rebuild shard `i`'s durable state.
    pub(crate) fn snapshot_shard(&self, i: usize, out: &mut Vec<Record>) {
        let shard = self.shards[i].lock();
        for (key, s) in shard.iter() {
            let durable = s.durable.load(Ordering::Acquire);
            let kept = s.ring.iter().filter(|m| m.msg.offset <= durable);
            let base = s
                .ring
                .front()
                .filter(|m| m.msg.offset <= durable)
                .map_or(durable, |m| m.msg.offset - 1);
            out.push(Record::Channel {
                app: key.app.clone(),
                channel: key.channel.clone(),
                epoch: s.epoch.clone(),
                top: base,
            });
            out.extend(kept.map(|m| Record::Message {
                app: key.app.clone(),
                msg: m.msg.clone(),
                kept: true,
            }));
        }
    }

    /// The idempotency keys whose publish is durable and whose window is open.
    pub(crate) fn snapshot_idempotency(&self, out: &mut Vec<Record>) {
        let now_ms = now_millis();
        for ((app, key), e) in self.idempotency.lock().iter() {
            if e.expires_ms <= now_ms {
                continue;
            }
            if let Some((fingerprint, results)) = e.cell.get() {
                out.push(Record::Idem {
                    app: app.clone(),
                    key: key.clone(),
                    fingerprint: *fingerprint,
                    expires_ms: e.expires_ms,
                    results: results.clone(),
                });
            }
        }
    }
}

/// The embedded [`Broker`] and [`Presence`] engine (see the module doc).
pub struct MemoryBroker {
    core: Arc<Core>,
    journal: Option<Journal>,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

/// The idempotency key of a publish being appended, for its journal record.
struct IdemNote<'a> {
    key: &'a Idempotency,
    expires_ms: i64,
}

impl MemoryBroker {
    /// An empty broker whose history lives in memory only.
    pub fn new() -> Self {
        Self {
            core: Arc::new(Core::new()),
            journal: None,
        }
    }

    /// A broker whose history survives restarts: its journal is in `dir` (created
    /// if missing), read back now (trimmed with `policy_of`, the channels' current
    /// history settings), and written from now on. Blocks while it reads. Call
    /// [`MemoryBroker::close`] at shutdown.
    ///
    /// # Errors
    /// The directory cannot be created, locked (another process uses it), read or
    /// written; the journal is of an unknown format.
    pub fn open(
        dir: &Path,
        policy_of: &dyn Fn(&ChannelKey) -> HistoryPolicy,
        options: JournalOptions,
    ) -> std::io::Result<Self> {
        let core = Arc::new(Core::new());
        let journal = journal::open(dir, &options, &core, |c| c.settle(policy_of))?;
        Ok(Self {
            core,
            journal: Some(journal),
        })
    }

    /// Whether history survives a restart (the broker has a journal).
    pub fn is_durable(&self) -> bool {
        self.journal.is_some()
    }

    /// Writes what is queued, syncs the journal to disk and marks it clean, so the
    /// next start loses nothing; publishes after it fail. Nothing to do without a
    /// journal.
    ///
    /// # Errors
    /// The journal could not be finished in time.
    pub async fn close(&self) -> Result<(), BrokerError> {
        match &self.journal {
            Some(j) => j.close().await,
            None => Ok(()),
        }
    }

    /// The state of `key` in its locked shard, made (with a new epoch, noted in the
    /// journal) if missing.
    fn state<'a>(
        &self,
        shard: &'a mut HashMap<ChannelKey, ChannelState>,
        key: &ChannelKey,
    ) -> &'a mut ChannelState {
        shard.entry(key.clone()).or_insert_with(|| {
            let s = ChannelState::new();
            if let Some(j) = &self.journal {
                j.note(Record::Channel {
                    app: key.app.clone(),
                    channel: key.channel.clone(),
                    epoch: s.epoch.clone(),
                    top: 0,
                });
            }
            s
        })
    }

    /// Assigns offsets and appends, under the shard locks of every target at once
    /// (taken in shard order). Without a journal the messages reach the handler
    /// here; with one, the returned receiver hears once they are written (and
    /// delivered).
    fn append(
        &self,
        app: &AppName,
        publication: &Publication,
        idem: Option<IdemNote<'_>>,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> (Vec<Published>, Option<tokio::sync::oneshot::Receiver<()>>) {
        let ts = now_millis();
        let now = Instant::now();
        let keys: Vec<ChannelKey> = publication
            .targets
            .iter()
            .map(|(c, _)| ChannelKey::new(app.clone(), c.clone()))
            .collect();
        let index: Vec<usize> = keys.iter().map(Core::shard_index).collect();
        let mut order = index.clone();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<MutexGuard<'_, HashMap<ChannelKey, ChannelState>>> =
            order.iter().map(|&i| self.core.shards[i].lock()).collect();
        let mut out = Vec::with_capacity(keys.len());
        let mut records = Vec::new();
        let mut deliver = Vec::new();
        for ((key, (_, policy)), i) in keys.into_iter().zip(&publication.targets).zip(&index) {
            let g = order.binary_search(i).unwrap_or_else(|at| at);
            let state = self.state(&mut guards[g], &key);
            state.top += 1;
            state.last_used = now;
            let msg = Arc::new(Envelope {
                channel: key.channel.clone(),
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
                channel: key.channel.clone(),
                offset: msg.offset,
                epoch: msg.epoch.clone(),
            });
            if self.journal.is_some() {
                records.push(Record::Message {
                    app: app.clone(),
                    msg: msg.clone(),
                    kept: policy.size > 0,
                });
                deliver.push((app.clone(), msg, state.durable.clone()));
            } else {
                state.durable.store(state.top, Ordering::Release);
                if let Some(h) = self.core.handler.get() {
                    h.on_message(app, msg);
                }
            }
        }
        let Some(journal) = &self.journal else {
            return (out, None);
        };
        if let Some(idem) = idem {
            records.push(Record::Idem {
                app: app.clone(),
                key: idem.key.key.clone(),
                fingerprint: idem.key.fingerprint,
                expires_ms: idem.expires_ms,
                results: out.clone(),
            });
        }
        let (done, heard) = tokio::sync::oneshot::channel();
        // Queued before the locks go: the queue holds each channel's records in
        // offset order. A closed journal drops the unit, and `heard` says so.
        journal.push(Unit {
            records,
            deliver,
            done: Some(done),
            permit,
        });
        drop(guards);
        (out, Some(heard))
    }

    /// Appends and, with a journal, waits until the publish is written.
    async fn commit(
        &self,
        app: &AppName,
        publication: &Publication,
        idem: Option<IdemNote<'_>>,
    ) -> Result<Vec<Published>, BrokerError> {
        let permit = match &self.journal {
            Some(j) => Some(j.permit().await?),
            None => None,
        };
        let (published, heard) = self.append(app, publication, idem, permit);
        if let (Some(heard), Some(journal)) = (heard, &self.journal) {
            // Usually writes it here and now (with whatever else is queued).
            journal.flush();
            heard.await.map_err(|_| journal::closed())?;
        }
        Ok(published)
    }

    /// Drops channel states that nobody listens to, whose history is empty and
    /// that were not used for `idle`, and idempotency keys past their window.
    /// Called periodically by the node.
    pub fn evict_idle(&self, policy_of: impl Fn(&ChannelKey) -> HistoryPolicy, idle: Duration) {
        let now = Instant::now();
        for shard in &self.core.shards {
            let mut shard = shard.lock();
            shard.retain(|key, state| {
                state.trim(policy_of(key), now);
                let keep = state.subscribers > 0
                    || !state.ring.is_empty()
                    || now.duration_since(state.last_used) < idle;
                if !keep {
                    if let Some(j) = &self.journal {
                        j.note(Record::Forget {
                            app: key.app.clone(),
                            channel: key.channel.clone(),
                            epoch: state.epoch.clone(),
                        });
                    }
                }
                keep
            });
        }
        self.core.idempotency.lock().retain(|_, e| e.expires > now);
        self.flush();
    }

    /// Writes what the journal has queued (a channel's new epoch, a forgotten
    /// channel) unless someone is writing already.
    fn flush(&self) {
        if let Some(j) = &self.journal {
            j.flush();
        }
    }

    /// The number of channel states held (for tests and metrics).
    pub fn channel_count(&self) -> usize {
        self.core.channel_count()
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn set_handler(&self, handler: Arc<dyn BrokerHandler>) {
        let _ = self.core.handler.set(handler);
    }

    async fn publish(&self, publication: Publication) -> Result<Vec<Published>, BrokerError> {
        let app = publication.app.clone();
        let Some(idem) = publication.idempotency.clone() else {
            return self.commit(&app, &publication, None).await;
        };
        let now = Instant::now();
        let (cell, expires_ms) = {
            let mut map = self.core.idempotency.lock();
            let fresh = || IdemEntry {
                cell: Arc::new(tokio::sync::OnceCell::new()),
                expires: now + idem.window,
                expires_ms: now_millis().saturating_add(idem.window.as_millis() as i64),
            };
            let entry = map.entry((app.clone(), idem.key.clone())).or_insert_with(fresh);
            if entry.expires <= now {
                *entry = fresh();
            }
            (entry.cell.clone(), entry.expires_ms)
        };
        let result: IdemResult = cell
            .get_or_try_init(|| async {
                let note = IdemNote {
                    key: &idem,
                    expires_ms,
                };
                Ok((
                    idem.fingerprint,
                    self.commit(&app, &publication, Some(note)).await?,
                ))
            })
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
        let mut shard = self.core.shard(key).lock();
        let state = self.state(&mut shard, key);
        let now = Instant::now();
        state.last_used = now;
        state.trim(policy, now);
        let top = state.durable.load(Ordering::Acquire);
        let oldest = state.ring.front().map_or(top + 1, |s| s.msg.offset.min(top + 1));
        let complete = since >= top || oldest <= since + 1;
        let messages = state
            .ring
            .iter()
            .take_while(|s| s.msg.offset <= top)
            .filter(|s| s.msg.offset > since)
            .take(limit)
            .map(|s| s.msg.clone())
            .collect();
        let read = HistoryRead {
            epoch: state.epoch.clone(),
            top,
            messages,
            complete,
        };
        drop(shard);
        self.flush();
        Ok(read)
    }

    async fn subscribe(&self, key: &ChannelKey) -> Result<(), BrokerError> {
        let mut shard = self.core.shard(key).lock();
        self.state(&mut shard, key).subscribers += 1;
        drop(shard);
        self.flush();
        Ok(())
    }

    async fn unsubscribe(&self, key: &ChannelKey) -> Result<(), BrokerError> {
        let mut shard = self.core.shard(key).lock();
        if let Some(state) = shard.get_mut(key) {
            state.subscribers = state.subscribers.saturating_sub(1);
        }
        Ok(())
    }

    async fn broadcast(&self, key: &ChannelKey, payload: Arc<str>) -> Result<(), BrokerError> {
        if let Some(h) = self.core.handler.get() {
            h.on_control(key, payload);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        match &self.journal {
            Some(j) => j.health(),
            None => Ok(()),
        }
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
        let seq = self.core.presence_seq.fetch_add(1, Ordering::Relaxed);
        let mut map = self.core.presence.lock();
        let clients = map.entry(key.clone()).or_default();
        let user_was_here = clients.user_here(&entry.user, client, now);
        let prior = clients.insert(client, (entry.clone(), now + ttl, seq));
        let was_here = user_was_here || prior.is_some_and(|(e, exp, _)| e.user == entry.user && exp > now);
        Ok(!was_here)
    }

    async fn leave(&self, key: &ChannelKey, client: &str) -> Result<Option<PresenceEntry>, BrokerError> {
        let now = Instant::now();
        let mut map = self.core.presence.lock();
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
        let map = self.core.presence.lock();
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
        let mut map = self.core.presence.lock();
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
