//! The sequencer of live sessions: every change to a session, one at a time,
//! recorded in the session log. It knows no feature: it is given a list of
//! them ([`Registration`], from `crate::features`) and calls each through
//! [`Feature`].
//!
//! **State.** A session's state ([`Doc`]) is its [`Lifecycle`] plus one part
//! per feature. The store holds its **log** (one entry per committed change:
//! the changes applied and the events published, [`log::Entry`]) and, every
//! so often, a **snapshot** of the whole state at an entry. A node loads the
//! newest snapshot and applies the entries after it; it then keeps the state
//! in memory, one copy per session, never cloned.
//!
//! **A change** runs under the session's lock ([`Live::lock`]):
//!
//! 1. the handler validates it against the current state ([`Locked::get`]);
//! 2. it applies the change ([`Locked::apply`]: the feature's own
//!    [`Feature::apply`], the same function that replays the log) and queues
//!    the events that tell screens the new values ([`Locked::publish`]), built
//!    from the state as it now is;
//! 3. [`Locked::commit`] publishes the events (the session channel's cursor
//!    moves to the last one) and appends ONE entry to the log: a change costs
//!    one small append, whatever the session's size.
//!
//! If the first event cannot be published, nothing happened: the state in
//! memory is dropped and the next lock loads it again from the store (the log
//! is the truth), which is how a failed change rolls back without copying the
//! state first. So does a lock dropped with changes applied and not
//! committed. If the append fails after the events went out, the entry stays
//! in memory (pending), is appended first by the next change (a task retries
//! meanwhile), and the change answers `store_unavailable`.
//!
//! A snapshot ([`Locked::cursor`] with the state) is read under the same lock,
//! so the state and its cursor always match: a client that subscribes from
//! that cursor gets exactly the changes after it, none twice.
//!
//! **The cursor's epoch.** When the channel's history was lost (a restart with
//! `broker = "memory"`, the machine stopping under the embedded broker, Redis
//! flushed), the cursor names an epoch the channel
//! no longer has. The state is still the truth, so [`Locked::anchored`] moves
//! the cursor to the channel's current position with an entry of its own; a
//! client still holding the old cursor gets a `reset` and reloads.
//!
//! **Cluster.** With several nodes on one PostgreSQL database the store gives
//! a lease per change ([`ClassroomStore::lock_live_session`]:
//! `pg_advisory_xact_lock` on the session id), taken after the node's own
//! mutex. Under it the node applies the entries other nodes appended since its
//! copy ([`Live::lock`]), so a change is validated against the exact state,
//! then appends. Reads ([`Live::read`]) take no lease: they apply what was
//! appended since (one query), so they see every change committed before they
//! began ([`READ_STALENESS`]); a change still in flight on another node comes
//! to the screen as its event, since the snapshot's cursor matches its state.

pub mod coalesce;
pub mod doc;
pub mod feature;
pub mod log;
pub mod rate;
pub mod ticker;
pub mod timers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use herald_node::{Claims, NamespaceOptions, Node, NodeError, PublishInput};
use herald_protocol::{AppName, ChannelName, Cursor, ErrorCode, EventName, Position};
use herald_server::error::ApiError;
use herald_store::classroom::{LiveColumns, LiveLease, LogRow, SnapshotRow};
use herald_store::{ClassroomStore, LiveSession, LiveState, Role};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::OwnedMutexGuard;

use crate::clock::now_ms;
use crate::store_error;

pub use doc::{Doc, Lifecycle};
pub use feature::{register, BoxFuture, Feature, Registration, View, Viewer};
pub use log::{visible_events, Audience};

/// The internal Herald app of the classroom's channels, created at startup.
pub const APP: &str = "classroom";
/// The namespace of live sessions' channels: `class:{session_id}`.
pub const NAMESPACE: &str = "class";
/// How long a client token minted for a live session is valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Sessions whose sequencer slot (and state in memory) is kept while unused.
const MAX_IDLE_SLOTS: usize = 1024;
/// The largest event the classroom pushes, in bytes of JSON data (under the
/// server's default message limit of 64 KiB); larger ones go out as `reload`
/// ([`Locked::commit`]).
pub const MAX_EVENT_BYTES: usize = 48 * 1024;
/// In cluster mode, how far behind the log a node's copy may be when it
/// serves a read ([`Live::read`]): none. A read applies what other nodes
/// appended (one indexed query, no lease), so it sees every change committed
/// before it began; changes catch up under the lease.
pub const READ_STALENESS: Duration = Duration::ZERO;
/// Log entries read per query when a node loads or catches up.
const LOG_PAGE: i64 = 1000;
/// A snapshot is written once the entries appended since the last one hold at
/// least this many bytes and at least as many as the last snapshot: loading
/// then reads at most about twice the state's size, and snapshots take at
/// most as much room as the log.
pub const SNAPSHOT_MIN_BYTES: usize = 256 * 1024;
/// A snapshot is also written once this many entries were appended since the
/// last one and they hold at least an eighth of its size: loading then
/// replays at most about this many entries (each is read, parsed and applied:
/// a long log after a large snapshot was half of a cold load), and a snapshot
/// costs at most eight times the log it saves replaying.
pub const SNAPSHOT_ENTRIES: usize = 5_000;
/// Snapshots kept per session: the newest, and the one before it (a node may
/// be loading it while the newest is written). The log is the record; older
/// snapshots are deleted.
pub const SNAPSHOTS_KEPT: i64 = 2;
/// Pending entries (published, not appended: the store is failing) a session
/// may hold; past it, changes are refused until the store is back.
const MAX_PENDING: usize = 64;
/// How often, and how many times, pending entries are retried when no change
/// comes to append them.
const PENDING_RETRY: (Duration, u32) = (Duration::from_secs(1), 300);
/// In cluster mode a node keeps a session's lease from one change to the next
/// while more of its changes of that session wait, at most this many changes
/// and this long in a row; then it lets the other nodes have their turn
/// (decisions §39).
const LEASE_RUN: (u32, Duration) = (64, Duration::from_millis(25));
/// A kept lease that no change took within this long is released (the change
/// that was waiting for it was given up).
const LEASE_IDLE: Duration = Duration::from_millis(50);

/// The options of the [`NAMESPACE`] namespace, unless the configuration names
/// it: presence without join/leave events (the classroom publishes who is here
/// coalesced), no client publishing (only the classroom publishes), history of
/// 10 000 events kept for 24 hours.
pub fn namespace_options() -> NamespaceOptions {
    NamespaceOptions {
        history_size: 10_000,
        history_ttl: Duration::from_secs(24 * 3600),
        presence: true,
        join_leave: false,
        client_publish: false,
        anonymous_subscribe: false,
    }
}

/// The channel of a live session.
///
/// # Errors
/// `session_not_found` for an id no session can have (ids are `s_` + hex).
pub fn channel_of(session_id: &str) -> Result<ChannelName, ApiError> {
    let well_formed = session_id.len() <= 64
        && session_id.starts_with("s_")
        && session_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !well_formed {
        return Err(not_found());
    }
    ChannelName::parse(&format!("{NAMESPACE}:{session_id}")).map_err(|_| not_found())
}

/// The staff channel of a live session, `class:{session_id}.staff`: what only
/// trainers and co-trainers may see live. Only staff tokens name it.
///
/// # Errors
/// `session_not_found` for an id no session can have.
pub fn staff_channel(session_id: &str) -> Result<ChannelName, ApiError> {
    let session = channel_of(session_id)?;
    ChannelName::parse(&format!("{}.staff", session.as_str())).map_err(|_| not_found())
}

/// A member's personal channel in a session, `class:{session_id}#{user_id}`:
/// only their token names it (private answers).
///
/// # Errors
/// `session_not_found` for an id no session can have; `internal` for a user
/// id no channel can name.
pub fn personal_channel(session_id: &str, user_id: &str) -> Result<ChannelName, ApiError> {
    channel_of(session_id)?;
    ChannelName::parse(&format!("{NAMESPACE}:{session_id}#{user_id}")).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("no personal channel for this user: {e}"),
        )
    })
}

/// `404 session_not_found`.
pub fn not_found() -> ApiError {
    ApiError::new(ErrorCode::SessionNotFound, "there is no such live session")
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Internal, message)
}

/// A session as a node holds it.
struct Loaded {
    /// Its row (its `doc` emptied: the state is `doc` below).
    row: LiveSession,
    doc: Doc,
    /// The last log entry applied.
    seq: i64,
    /// The session channel's cursor after it.
    cursor: String,
    /// Entries applied and published, not in the store yet (oldest first).
    pending: Vec<LogRow>,
    /// Bytes of log appended since the newest snapshot.
    since_snapshot: usize,
    /// Log entries appended since the newest snapshot.
    since_entries: usize,
    /// The newest snapshot's size.
    snapshot_bytes: usize,
    /// Cluster mode: when this copy last caught up with the log.
    synced: Option<Instant>,
    /// Cluster mode: the lease kept between two changes ([`LEASE_RUN`]).
    kept: Option<Held>,
}

impl Default for Loaded {
    fn default() -> Self {
        Self {
            row: LiveSession {
                id: String::new(),
                course_id: String::new(),
                title: String::new(),
                state: LiveState::Scheduled,
                created_at: 0,
                started_at: None,
                ended_at: None,
                doc: String::new(),
                cursor: String::new(),
                updated_at: 0,
            },
            doc: Doc::default(),
            seq: 0,
            cursor: String::new(),
            pending: Vec::new(),
            since_snapshot: 0,
            since_entries: 0,
            snapshot_bytes: 0,
            synced: None,
            kept: None,
        }
    }
}

/// A session's place in the sequencer: its state under an async mutex, and
/// how many changes wait for it.
#[derive(Clone, Default)]
struct Slot {
    state: Arc<tokio::sync::Mutex<Option<Loaded>>>,
    writers: Arc<AtomicUsize>,
}

/// Counts a change waiting for its session's mutex, while it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A session's lease as a node holds it.
struct Held {
    lease: Box<dyn LiveLease>,
    /// Told apart from later leases of the same session.
    id: u64,
    since: Instant,
    changes: u32,
    /// The node's copy has every entry of the log: it caught up or appended
    /// under this lease (nobody else appends while it is held).
    synced: bool,
    /// A watchdog releases it if it is kept and no change takes it.
    watched: bool,
}

impl Held {
    fn new(lease: Box<dyn LiveLease>) -> Self {
        static IDS: AtomicU64 = AtomicU64::new(0);
        Self {
            lease,
            id: IDS.fetch_add(1, Ordering::Relaxed),
            since: Instant::now(),
            changes: 0,
            synced: false,
            watched: false,
        }
    }
}

/// The sequencer: one async mutex per live session, holding its state once
/// loaded. Made by [`Live::new`], shared behind an `Arc`.
pub struct Live {
    me: Weak<Live>,
    node: Node,
    app: AppName,
    store: Arc<dyn ClassroomStore>,
    features: Vec<&'static Registration>,
    slots: Mutex<HashMap<String, Slot>>,
    rates: rate::Rates,
    waiting: coalesce::Waiting,
    timers: timers::Armed,
    open: ticker::Open,
    snapshot_min: std::sync::atomic::AtomicUsize,
}

impl Live {
    /// A sequencer of sessions made of `features`, publishing with `node` in
    /// the app [`APP`].
    ///
    /// # Errors
    /// `invalid_app_name` if [`APP`] were not a valid app name (it is).
    pub fn new(
        node: Node,
        store: Arc<dyn ClassroomStore>,
        features: impl IntoIterator<Item = &'static Registration>,
    ) -> Result<Arc<Self>, NodeError> {
        let app =
            AppName::parse(APP).map_err(|e| NodeError::new(ErrorCode::InvalidAppName, e.to_string()))?;
        let features = features.into_iter().collect();
        Ok(Arc::new_cyclic(|me| Self {
            me: me.clone(),
            node,
            app,
            store,
            features,
            slots: Mutex::new(HashMap::new()),
            rates: rate::Rates::default(),
            waiting: coalesce::Waiting::default(),
            timers: timers::Armed::default(),
            open: ticker::Open::default(),
            snapshot_min: std::sync::atomic::AtomicUsize::new(SNAPSHOT_MIN_BYTES),
        }))
    }

    /// The node (for presence).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The store.
    pub fn store(&self) -> &dyn ClassroomStore {
        self.store.as_ref()
    }

    /// The state of a new session, as JSON (what `create_live_session` stores).
    ///
    /// # Errors
    /// `internal` (never, for the crate's features).
    pub fn new_doc(&self) -> Result<String, ApiError> {
        Doc::new(&self.features)
            .to_json()
            .map_err(|e| internal(format!("cannot encode the document: {e}")))
    }

    /// Counts one `kind` action of `user_id` (per node) and answers whether
    /// it is within `max` per minute; a refused attempt is not counted.
    pub fn within_rate(&self, user_id: &str, kind: &'static str, max: usize) -> bool {
        self.rates.within(user_id, kind, max)
    }

    /// Takes the session's lock to change it: in cluster mode also its lease,
    /// with the entries other nodes appended applied first.
    ///
    /// # Errors
    /// `session_not_found`, `store_unavailable` (also while entries of an
    /// earlier change wait to be appended), `internal` (a state that does not
    /// load).
    pub async fn lock(&self, session_id: &str) -> Result<Locked<'_>, ApiError> {
        self.enter(session_id, true).await
    }

    /// Takes the session's lock to read it: no lease; in cluster mode the
    /// state is at most [`READ_STALENESS`] behind the log (with its cursor).
    ///
    /// # Errors
    /// `session_not_found`, `store_unavailable`, `internal`.
    pub async fn read(&self, session_id: &str) -> Result<Locked<'_>, ApiError> {
        self.enter(session_id, false).await
    }

    fn slot(&self, session_id: &str) -> Slot {
        let mut slots = self.slots.lock();
        if slots.len() >= MAX_IDLE_SLOTS && !slots.contains_key(session_id) {
            // Only the map holds an idle slot: dropping it drops its state.
            slots.retain(|_, s| Arc::strong_count(&s.state) > 1);
        }
        slots.entry(session_id.to_owned()).or_default().clone()
    }

    async fn enter(&self, session_id: &str, write: bool) -> Result<Locked<'_>, ApiError> {
        let channel = channel_of(session_id)?;
        let slot = self.slot(session_id);
        let mut guard = {
            let _waiting = write.then(|| Waiting::new(&slot.writers));
            slot.state.clone().lock_owned().await
        };
        let shared = self.store.shared();
        // The node's own queue first, then the cluster's: a node holds at most
        // one lease per session, kept from the change before while changes
        // waited for it, else taken now.
        let mut lease = if write {
            guard.as_mut().and_then(|l| l.kept.take())
        } else {
            None
        };
        if shared && write && lease.is_none() {
            lease = self
                .store
                .lock_live_session(session_id)
                .await
                .map_err(store_error)?
                .map(Held::new);
        }
        let loaded = match guard.take() {
            Some(loaded) => loaded,
            None => {
                // Read after the lease was granted: the newest columns.
                let row = match self.store.live_session(session_id).await {
                    Ok(Some(row)) => row,
                    Ok(None) => return Err(self.give_back(lease, not_found())),
                    Err(e) => return Err(self.give_back(lease, store_error(e))),
                };
                match self.load(row).await {
                    Ok(loaded) => loaded,
                    Err(e) => return Err(self.give_back(lease, e)),
                }
            }
        };
        let mut locked = Locked {
            live: self,
            channel,
            guard,
            writers: slot.writers,
            loaded,
            lease,
            tx: Tx::default(),
            poisoned: false,
        };
        if write && !locked.loaded.pending.is_empty() {
            locked.append_pending().await?;
            if locked.poisoned {
                // Appended after another node's entries: load the log's order.
                locked.poisoned = false;
                let row = locked.loaded.row.clone();
                let kept = std::mem::take(&mut locked.loaded);
                match self.load(row).await {
                    Ok(loaded) => locked.loaded = loaded,
                    Err(e) => {
                        drop(kept);
                        locked.poisoned = true;
                        return Err(e);
                    }
                }
            }
        }
        let loaded = &mut locked.loaded;
        let stale = loaded.synced.is_none_or(|t| t.elapsed() >= READ_STALENESS);
        // While this node holds the lease nobody else appends: nothing to read.
        let caught_up = match &locked.lease {
            Some(held) => held.synced,
            None => loaded.kept.is_some(),
        };
        if shared && loaded.pending.is_empty() && (write || stale) && !caught_up {
            let through = locked.lease.as_mut().map(|h| &mut h.lease);
            if let Err(e) = self.catch_up(loaded, through).await {
                // Partly applied, perhaps: load it again next time.
                locked.poisoned = true;
                return Err(e);
            }
            if let Some(held) = locked.lease.as_mut() {
                held.synced = true;
            }
        }
        self.after_change(&locked);
        Ok(locked)
    }

    /// Releases `lease` (in the background) and answers `error`.
    fn give_back(&self, lease: Option<Held>, error: ApiError) -> ApiError {
        if let Some(held) = lease {
            self.release(held);
        }
        error
    }

    /// Releases a lease in the background (tracked I/O: a shutdown waits).
    fn release(&self, held: Held) {
        self.node.spawn_io("live session lease release", async move {
            if let Err(e) = held.lease.release().await {
                tracing::warn!(error = %e, "a live session's lease was not released cleanly (its connection was closed instead)");
            }
        });
    }

    /// Releases the lease `id` of the session in `state` if it is still kept
    /// and no change took it for [`LEASE_IDLE`].
    fn watch(&self, state: Arc<tokio::sync::Mutex<Option<Loaded>>>, id: u64) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let mut seen = None;
            loop {
                tokio::time::sleep(LEASE_IDLE).await;
                let mut guard = state.lock().await;
                let Some(loaded) = guard.as_mut() else {
                    return;
                };
                let changes = match &loaded.kept {
                    Some(held) if held.id == id => held.changes,
                    // Released, or dropped with the state.
                    _ => return,
                };
                if seen == Some(changes) {
                    if let Some(held) = loaded.kept.take() {
                        me.release(held);
                    }
                    return;
                }
                seen = Some(changes);
            }
        });
    }

    /// Loads session `row` from its newest snapshot (or the row's own
    /// document) and the log after it.
    async fn load(&self, mut row: LiveSession) -> Result<Loaded, ApiError> {
        let snapshot = self
            .store
            .live_snapshot(&row.id, None)
            .await
            .map_err(store_error)?;
        let (text, seq, cursor) = match &snapshot {
            Some(s) => (s.doc.as_str(), s.seq, s.cursor.clone()),
            None => (row.doc.as_str(), 0, row.cursor.clone()),
        };
        let bytes = text.len();
        let (mut doc, legacy) = Doc::parse(&self.features, text).map_err(|e| {
            tracing::error!(session = %row.id, error = %e, "a live session's state does not load");
            internal("this session's stored state cannot be read; the server log has details")
        })?;
        if legacy {
            // Written before the session log: the row's columns win, the
            // features bring their rows in, and the result is the first
            // snapshot (the rows are never read again).
            doc.session = Lifecycle {
                state: row.state,
                started_at: row.started_at,
                ended_at: row.ended_at,
            };
            for r in &self.features {
                if let Some(part) = doc.part_mut(r.key) {
                    (r.restore)(part, self.store.as_ref(), &row).await?;
                }
            }
        }
        row.doc = String::new();
        let mut loaded = Loaded {
            row,
            doc,
            seq,
            cursor,
            snapshot_bytes: bytes,
            ..Loaded::default()
        };
        if legacy {
            self.write_snapshot(&mut loaded);
        }
        self.catch_up(&mut loaded, None).await?;
        Ok(loaded)
    }

    /// Applies the entries after `loaded.seq`, read through `lease` or from
    /// the store.
    async fn catch_up(
        &self,
        loaded: &mut Loaded,
        mut lease: Option<&mut Box<dyn LiveLease>>,
    ) -> Result<(), ApiError> {
        loop {
            let rows = match lease.as_mut() {
                Some(lease) => lease.log_after(loaded.seq, LOG_PAGE).await,
                None => self.store.live_log(&loaded.row.id, loaded.seq, LOG_PAGE).await,
            }
            .map_err(store_error)?;
            let full = rows.len() as i64 >= LOG_PAGE;
            for row in &rows {
                self.replay(loaded, row)?;
            }
            if !full {
                break;
            }
        }
        loaded.synced = Some(Instant::now());
        Ok(())
    }

    /// Applies one log entry read from the store.
    fn replay(&self, loaded: &mut Loaded, row: &LogRow) -> Result<(), ApiError> {
        let sid = loaded.row.id.clone();
        let broken = |why: String| {
            tracing::error!(session = %sid, seq = row.seq, error = %why, "a session log entry cannot be applied");
            internal("this session's log cannot be read; the server log has details")
        };
        if row.seq != loaded.seq + 1 {
            return Err(broken(format!(
                "entry {} follows {} (a gap)",
                row.seq, loaded.seq
            )));
        }
        let entry: log::Entry = serde_json::from_str(&row.body).map_err(|e| broken(e.to_string()))?;
        apply_entry(&mut loaded.doc, &entry).map_err(broken)?;
        if let Some(p) = &entry.position {
            loaded.cursor = self.cursor_at(&sid, p)?;
        }
        loaded.seq = row.seq;
        loaded.since_snapshot += row.body.len();
        loaded.since_entries += 1;
        Ok(())
    }

    fn cursor_at(&self, sid: &str, p: &log::Pos) -> Result<String, ApiError> {
        Ok(Position {
            channel: channel_of(sid)?,
            epoch: p.epoch.clone(),
            offset: p.offset,
        }
        .encode())
    }

    /// Writes the state as the newest snapshot, in the background; a failure
    /// is logged (the log has everything; loading just reads more of it).
    fn write_snapshot(&self, loaded: &mut Loaded) {
        let doc = match loaded.doc.to_json() {
            Ok(doc) => doc,
            Err(e) => {
                tracing::error!(session = %loaded.row.id, error = %e, "the state cannot be encoded for a snapshot");
                return;
            }
        };
        let bytes = doc.len();
        let snapshot = SnapshotRow {
            session_id: loaded.row.id.clone(),
            seq: loaded.seq,
            cursor: loaded.cursor.clone(),
            doc,
            at: now_ms(),
        };
        // Written off the session's lock: a snapshot is an immutable row keyed
        // by its entry number, and the log is the truth meanwhile (a load
        // finds the previous snapshot and replays a little more). Several MB
        // written to the store no longer hold up every change of the session.
        // Tracked I/O: a shutdown waits for it.
        loaded.snapshot_bytes = bytes;
        loaded.since_snapshot = 0;
        loaded.since_entries = 0;
        let store = self.store.clone();
        self.node.spawn_io("live session snapshot", async move {
            match store.save_live_snapshot(&snapshot).await {
                Ok(()) => {
                    tracing::debug!(session = %snapshot.session_id, seq = snapshot.seq, bytes, "live session snapshot written");
                    if let Err(e) = store
                        .prune_live_snapshots(&snapshot.session_id, SNAPSHOTS_KEPT)
                        .await
                    {
                        tracing::warn!(session = %snapshot.session_id, error = %e, "older live session snapshots not deleted; the next snapshot tries again");
                    }
                }
                Err(e) => {
                    tracing::warn!(session = %snapshot.session_id, error = %e, "live session snapshot not written; the next one follows as much log later");
                }
            }
        });
    }

    /// After a load or a commit: arms the deadlines, schedules the flushes of
    /// features with coalesced changes waiting.
    fn after_change(&self, locked: &Locked<'_>) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let sid = &locked.loaded.row.id;
        for (i, r) in self.features.iter().enumerate() {
            let Some(part) = locked.loaded.doc.parts().nth(i).map(|(_, p)| p) else {
                continue;
            };
            if part.pending() {
                me.coalesce_index(sid, i);
            }
            let mut deadlines = Vec::new();
            part.deadlines(&mut deadlines);
            for (key, at) in deadlines {
                me.arm(sid, i, r.key, key, at);
            }
        }
    }

    fn index_of(&self, key: &str) -> Option<usize> {
        self.features.iter().position(|r| r.key == key)
    }

    /// Marks session `sid` as open on this node (someone loaded its snapshot
    /// or a token): its features tick while it is ([`Feature::tick`]).
    pub fn opened(&self, sid: &str) {
        if let Some(me) = self.me.upgrade() {
            me.ensure_ticker(sid);
        }
    }

    /// A client token for `user_id` on `channels` only (the session's channel,
    /// the user's personal one, the staff channel for staff), with `{name,
    /// role}` as presence info, valid for [`TOKEN_TTL`].
    ///
    /// # Errors
    /// `app_not_found` (the classroom app was deleted), `store_unavailable`,
    /// `internal`.
    pub async fn token(
        &self,
        channels: &[&ChannelName],
        user_id: &str,
        name: &str,
        role: Role,
    ) -> Result<String, ApiError> {
        let (_, record) = self.node.app(APP).await?;
        let secret = record
            .token_secrets
            .first()
            .ok_or_else(|| internal("the classroom app has no token secret; rotate its credentials"))?;
        let now = now_ms() / 1000;
        let claims = Claims {
            sub: Some(user_id.to_owned()),
            exp: now + TOKEN_TTL.as_secs() as i64,
            nbf: None,
            iat: Some(now),
            app: Some(APP.to_owned()),
            channels: channels.iter().map(|c| c.as_str().to_owned()).collect(),
            publish: Vec::new(),
            info: Some(serde_json::json!({ "name": name, "role": role })),
        };
        Ok(herald_node::sign_token(secret, &claims)?)
    }

    /// Session `sid`'s state as this node holds it, as JSON, with its log
    /// number and cursor.
    ///
    /// # Errors
    /// `session_not_found`, `store_unavailable`, `internal`.
    pub async fn state_json(&self, sid: &str) -> Result<(String, i64, String), ApiError> {
        let locked = self.read(sid).await?;
        let doc = locked.loaded.doc.to_json().map_err(|e| internal(e.to_string()))?;
        Ok((doc, locked.loaded.seq, locked.loaded.cursor.clone()))
    }

    /// Rebuilds session `sid`'s state from the store, as JSON with its log
    /// number and cursor: from its newest snapshot and the log after it (what
    /// a restart does), or with `log_only` from its first state and every
    /// entry of its log. What a test compares with [`Live::state_json`].
    ///
    /// # Errors
    /// `session_not_found`, `store_unavailable`, `internal`.
    pub async fn replayed(&self, sid: &str, log_only: bool) -> Result<(String, i64, String), ApiError> {
        let mut row = self
            .store
            .live_session(sid)
            .await
            .map_err(store_error)?
            .ok_or_else(not_found)?;
        let loaded = if log_only {
            let (doc, _) = Doc::parse(&self.features, &row.doc).map_err(internal)?;
            let cursor = std::mem::take(&mut row.cursor);
            row.doc = String::new();
            let mut loaded = Loaded {
                row,
                doc,
                cursor,
                ..Loaded::default()
            };
            self.catch_up(&mut loaded, None).await?;
            loaded
        } else {
            self.load(row).await?
        };
        let doc = loaded.doc.to_json().map_err(|e| internal(e.to_string()))?;
        Ok((doc, loaded.seq, loaded.cursor))
    }

    /// Writes a snapshot once this many bytes of log were appended since the
    /// last one (and at least as many as its size): [`SNAPSHOT_MIN_BYTES`]
    /// unless a test sets less.
    pub fn set_snapshot_min_bytes(&self, bytes: usize) {
        self.snapshot_min
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Applies an entry's changes to `doc`.
fn apply_entry(doc: &mut Doc, entry: &log::Entry) -> Result<(), String> {
    for c in &entry.changes {
        if c.key == doc::SESSION_KEY {
            doc.session = serde_json::from_str(c.value.get()).map_err(|e| e.to_string())?;
            continue;
        }
        let part = doc
            .part_mut(&c.key)
            .ok_or_else(|| format!("no feature {} (written by a newer version?)", c.key))?;
        part.apply_raw(&c.value)
            .map_err(|e| format!("a change of {} does not read: {e}", c.key))?;
    }
    Ok(())
}

/// An event queued by a transaction.
struct Queued {
    to: Audience,
    channel: ChannelName,
    event: &'static str,
    data: Value,
    /// Its failure is logged, not answered (private and staff notices whose
    /// content the recipient's snapshot has anyway).
    best_effort: bool,
}

/// What a transaction has applied and queued.
#[derive(Default)]
struct Tx {
    changes: Vec<log::Change>,
    events: Vec<Queued>,
    position: Option<log::Pos>,
}

impl Tx {
    fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.events.is_empty() && self.position.is_none()
    }
}

/// A live session under its lock: read its state, apply changes, publish
/// events, commit. The lock is released when this is dropped; changes applied
/// and not committed are then dropped with the node's copy of the state
/// (reloaded from the store by the next lock).
pub struct Locked<'a> {
    live: &'a Live,
    channel: ChannelName,
    guard: OwnedMutexGuard<Option<Loaded>>,
    /// Changes waiting for this session's mutex.
    writers: Arc<AtomicUsize>,
    loaded: Loaded,
    /// Cluster mode: the lease, if taken.
    lease: Option<Held>,
    tx: Tx,
    /// The state in memory is not the log's: drop it.
    poisoned: bool,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let uncommitted = !self.tx.changes.is_empty();
        if uncommitted && self.loaded.pending.is_empty() {
            tracing::debug!(session = %self.loaded.row.id, "changes not committed: the state is loaded again");
            self.poisoned = true;
        }
        let dropped = self.poisoned && self.loaded.pending.is_empty();
        if let Some(mut held) = self.lease.take() {
            // Kept for the next change while changes wait and the run is
            // short; else released.
            let (most, longest) = LEASE_RUN;
            let busy = self.writers.load(Ordering::Relaxed) > 0;
            if !dropped && busy && held.changes < most && held.since.elapsed() < longest {
                if !held.watched {
                    held.watched = true;
                    self.live
                        .watch(tokio::sync::OwnedMutexGuard::mutex(&self.guard).clone(), held.id);
                }
                self.loaded.kept = Some(held);
            } else {
                self.live.release(held);
            }
        }
        if dropped {
            *self.guard = None;
            return;
        }
        *self.guard = Some(std::mem::take(&mut self.loaded));
    }
}

impl Locked<'_> {
    /// The session's row as loaded (its `doc` field is empty: the state is
    /// [`Locked::doc`]).
    pub fn session(&self) -> &LiveSession {
        &self.loaded.row
    }

    /// The session's state.
    pub fn doc(&self) -> &Doc {
        &self.loaded.doc
    }

    /// Where the session is in its life.
    pub fn state(&self) -> LiveState {
        self.loaded.doc.session.state
    }

    /// Feature `F`'s state.
    ///
    /// # Errors
    /// `internal` if the sequencer was not given `F` (a programming error).
    pub fn get<F: Feature>(&self) -> Result<&F, ApiError> {
        self.loaded.doc.get::<F>().ok_or_else(unregistered::<F>)
    }

    /// The cursor of the session's channel the state is valid at.
    pub fn cursor(&self) -> &str {
        &self.loaded.cursor
    }

    /// The number of the last log entry in the state.
    pub fn seq(&self) -> i64 {
        self.loaded.seq
    }

    /// The session's channel.
    pub fn channel(&self) -> &ChannelName {
        &self.channel
    }

    /// The store, for rows written under the lock.
    pub fn store(&self) -> &dyn ClassroomStore {
        self.live.store.as_ref()
    }

    /// The sequencer.
    pub fn live(&self) -> &Live {
        self.live
    }

    /// Applies `change` to feature `F`'s state, as part of this transaction.
    ///
    /// # Errors
    /// `store_unavailable` while earlier entries wait to be appended;
    /// `internal` if `F` is not in the list or the change cannot be encoded.
    pub fn apply<F: Feature>(&mut self, change: F::Change) -> Result<(), ApiError> {
        self.writable()?;
        let value = raw(&change)?;
        let state = self.loaded.doc.get_mut::<F>().ok_or_else(unregistered::<F>)?;
        state.apply(change);
        self.tx.changes.push(log::Change {
            key: F::KEY.to_owned(),
            value,
        });
        Ok(())
    }

    /// Changes where the session is in its life, as part of this transaction
    /// (the session's row is updated with the entry).
    ///
    /// # Errors
    /// `store_unavailable` while earlier entries wait to be appended.
    pub fn set_lifecycle(&mut self, next: Lifecycle) -> Result<(), ApiError> {
        self.writable()?;
        let value = raw(&next)?;
        self.loaded.doc.session = next;
        self.tx.changes.push(log::Change {
            key: doc::SESSION_KEY.to_owned(),
            value,
        });
        Ok(())
    }

    fn writable(&self) -> Result<(), ApiError> {
        if self.loaded.pending.is_empty() {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::StoreUnavailable,
                "the database is unavailable; retry shortly",
            ))
        }
    }

    /// Queues `event` with `data` for `to`, published by [`Locked::commit`]
    /// in the order queued.
    ///
    /// # Errors
    /// `session_not_found`/`internal` for a channel that cannot be named.
    pub fn publish(&mut self, to: Audience, event: &'static str, data: Value) -> Result<(), ApiError> {
        self.queue(to, event, data, false)
    }

    /// Like [`Locked::publish`], for a notice whose content the recipients'
    /// snapshots have anyway: if it cannot be published, that is logged and
    /// the change stands.
    ///
    /// # Errors
    /// As [`Locked::publish`].
    pub fn notify(&mut self, to: Audience, event: &'static str, data: Value) -> Result<(), ApiError> {
        self.queue(to, event, data, true)
    }

    fn queue(
        &mut self,
        to: Audience,
        event: &'static str,
        data: Value,
        best_effort: bool,
    ) -> Result<(), ApiError> {
        let sid = &self.loaded.row.id;
        let channel = match &to {
            Audience::All => self.channel.clone(),
            Audience::Staff => staff_channel(sid)?,
            Audience::User(u) => personal_channel(sid, u)?,
        };
        self.tx.events.push(Queued {
            to,
            channel,
            event,
            data,
            best_effort,
        });
        Ok(())
    }

    /// Publishes what this transaction queued, in order, and appends one log
    /// entry with its changes and the events that went out.
    ///
    /// # Errors
    /// Those of [`Node::publish`] for the first event (then nothing happened:
    /// the node drops its copy of the state); `store_unavailable` when the
    /// entry cannot be appended (if events went out, the change stands in
    /// memory and is appended later; if none did, nothing happened).
    pub async fn commit(&mut self) -> Result<(), ApiError> {
        if self.tx.is_empty() {
            return Ok(());
        }
        let tx = std::mem::take(&mut self.tx);
        let mut entry = log::Entry {
            changes: tx.changes,
            events: Vec::with_capacity(tx.events.len()),
            position: tx.position,
        };
        // Required events first, in order; notices after them.
        let (required, notices): (Vec<Queued>, Vec<Queued>) =
            tx.events.into_iter().partition(|q| !q.best_effort);
        let mut out = false;
        for q in required.iter().chain(&notices) {
            match self.publish_now(q).await {
                Ok((event, epoch)) => {
                    if q.to == Audience::All {
                        entry.position = Some(log::Pos {
                            epoch,
                            offset: event.offset,
                        });
                    }
                    entry.events.push(event);
                    out |= !q.best_effort;
                }
                Err(e) if !out && !q.best_effort => {
                    // Nothing went out: nothing happened.
                    self.poisoned = self.loaded.pending.is_empty();
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(session = %self.loaded.row.id, event = q.event, error = ?e, "an event of a change was not published; the change stands");
                }
            }
        }
        if let Some(p) = &entry.position {
            self.loaded.cursor = self.live.cursor_at(&self.loaded.row.id, p)?;
        }
        let published = !entry.events.is_empty();
        let body =
            serde_json::to_string(&entry).map_err(|e| internal(format!("cannot encode a log entry: {e}")))?;
        self.loaded.seq += 1;
        self.loaded.pending.push(LogRow {
            seq: self.loaded.seq,
            at: now_ms(),
            body,
        });
        let appended = self.append_pending().await;
        if let Err(e) = appended {
            if !published && self.loaded.pending.len() == 1 {
                // Nothing went out: nothing happened.
                self.poisoned = true;
                self.loaded.pending.clear();
                return Err(e);
            }
            if let Some(me) = self.live.me.upgrade() {
                me.retry_pending(&self.loaded.row.id);
            }
            return Err(e);
        }
        self.live.after_change(self);
        let min = self.live.snapshot_min.load(std::sync::atomic::Ordering::Relaxed);
        let (bytes, entries) = (self.loaded.since_snapshot, self.loaded.since_entries);
        let geometric = bytes >= min.max(self.loaded.snapshot_bytes);
        let long = entries >= SNAPSHOT_ENTRIES && bytes >= min.max(self.loaded.snapshot_bytes / 8);
        if geometric || long {
            self.live.write_snapshot(&mut self.loaded);
        }
        Ok(())
    }

    /// Publishes one queued event; answers its log record and the channel's epoch.
    async fn publish_now(&self, q: &Queued) -> Result<(log::Event, String), ApiError> {
        let mut text = q.data.to_string();
        let mut name = q.event;
        if text.len() > MAX_EVENT_BYTES {
            // A breakout of thousands of students with their names, a deck of
            // hundreds of slides: screens load the snapshot again instead.
            tracing::info!(channel = %q.channel, event = name, bytes = text.len(), "an event too large to push: screens reload their snapshot");
            text = serde_json::json!({ "reload": name }).to_string();
            name = "reload";
        }
        let event = EventName::parse(name).map_err(|e| internal(format!("bad classroom event name: {e}")))?;
        let data = RawValue::from_string(text.clone())
            .map_err(|e| internal(format!("an event's data is not JSON: {e}")))?;
        let published = self
            .live
            .node
            .publish(
                &self.live.app,
                PublishInput {
                    channels: vec![q.channel.clone()],
                    event,
                    data: Arc::from(text),
                    idempotency_key: None,
                },
            )
            .await?;
        let at = published
            .into_iter()
            .next()
            .ok_or_else(|| internal("the publish answered no position"))?;
        Ok((
            log::Event {
                to: q.to.clone(),
                name: name.to_owned(),
                data,
                offset: at.offset,
            },
            at.epoch.to_string(),
        ))
    }

    /// Appends the pending entries (with the session's columns when they
    /// changed): straight to the store on one node; in cluster mode through
    /// the lease, taking a new one if a commit finished the last, and after
    /// the entries of other nodes if some came in between (then the node's
    /// copy is dropped, to be loaded in the log's order).
    async fn append_pending(&mut self) -> Result<(), ApiError> {
        if self.loaded.pending.is_empty() {
            return Ok(());
        }
        if self.loaded.pending.len() > MAX_PENDING {
            tracing::error!(session = %self.loaded.row.id, pending = self.loaded.pending.len(), "the store keeps failing: changes are refused until it is back");
        }
        let doc_session = self.loaded.doc.session;
        let columns = LiveColumns {
            state: doc_session.state,
            started_at: doc_session.started_at,
            ended_at: doc_session.ended_at,
        };
        let row = &self.loaded.row;
        let stale_columns = (row.state, row.started_at, row.ended_at)
            != (columns.state, columns.started_at, columns.ended_at);
        let columns = stale_columns.then_some(&columns);
        let sid = self.loaded.row.id.clone();
        let bytes: usize = self.loaded.pending.iter().map(|r| r.body.len()).sum();
        if !self.live.store.shared() {
            self.live
                .store
                .append_live_log(&sid, &self.loaded.pending, columns)
                .await
                .map_err(store_error)?;
        } else {
            let mut held = match self.lease.take() {
                Some(held) => held,
                None => Held::new(
                    self.live
                        .store
                        .lock_live_session(&sid)
                        .await
                        .map_err(store_error)?
                        .ok_or_else(|| internal("the store gave no lease for a session it leases"))?,
                ),
            };
            if !held.synced {
                let base = self.loaded.seq - self.loaded.pending.len() as i64;
                let others = match held.lease.log_after(base, 1).await {
                    Ok(others) => others,
                    Err(e) => return Err(self.live.give_back(Some(held), store_error(e))),
                };
                if !others.is_empty() {
                    let top = match held.lease.log_after(base, i64::MAX).await {
                        Ok(rows) => rows.last().map_or(base, |r| r.seq),
                        Err(e) => return Err(self.live.give_back(Some(held), store_error(e))),
                    };
                    tracing::warn!(session = %sid, "another node appended meanwhile: this node's entries follow theirs");
                    for (i, row) in self.loaded.pending.iter_mut().enumerate() {
                        row.seq = top + 1 + i as i64;
                    }
                    self.poisoned = true;
                }
            }
            if let Err(e) = held.lease.append(&self.loaded.pending, columns).await {
                return Err(self.live.give_back(Some(held), store_error(e)));
            }
            held.synced = true;
            held.changes += 1;
            self.lease = Some(held);
            self.loaded.synced = Some(Instant::now());
        }
        if let Some(c) = columns {
            self.loaded.row.state = c.state;
            self.loaded.row.started_at = c.started_at;
            self.loaded.row.ended_at = c.ended_at;
        }
        self.loaded.since_entries += self.loaded.pending.len();
        self.loaded.pending.clear();
        self.loaded.since_snapshot += bytes;
        Ok(())
    }

    /// Makes sure the cursor names the channel's current epoch at or below its
    /// newest offset; if not (the channel's history was lost), moves it to the
    /// channel's current position with an entry of its own. Call before
    /// handing out a snapshot.
    ///
    /// # Errors
    /// `broker_unavailable`, `store_unavailable`.
    pub async fn anchored(&mut self) -> Result<(), ApiError> {
        let read = self
            .live
            .node
            .history(&self.live.app, &self.channel, Some(u64::MAX), 0)
            .await?;
        let valid = Cursor::parse(self.cursor())
            .ok()
            .and_then(|c| c.get(&self.channel).cloned())
            .is_some_and(|p| *p.epoch == *read.epoch && p.offset <= read.top);
        if valid {
            return Ok(());
        }
        self.tx.position = Some(log::Pos {
            epoch: read.epoch.to_string(),
            offset: read.top,
        });
        self.commit().await?;
        tracing::info!(session = %self.loaded.row.id, "live session re-anchored on its channel's current position");
        Ok(())
    }

    /// The cursor of `channel`'s current position (its epoch and newest
    /// offset): subscribing from it gets every later message. Read under the
    /// lock, it matches the state for what the sequencer publishes there.
    ///
    /// # Errors
    /// `broker_unavailable`.
    pub async fn position_of(&self, channel: &ChannelName) -> Result<String, ApiError> {
        let read = self
            .live
            .node
            .history(&self.live.app, channel, Some(u64::MAX), 0)
            .await?;
        Ok(Position {
            channel: channel.clone(),
            epoch: read.epoch.to_string(),
            offset: read.top,
        }
        .encode())
    }

    /// The state for `viewer` now: every feature's fields.
    pub fn snapshot_fields(&self, viewer: &Viewer, out: &mut serde_json::Map<String, Value>) {
        let view = View {
            viewer,
            now: now_ms(),
        };
        self.loaded.doc.snapshot(&view, out);
    }
}

fn raw<T: Serialize>(value: &T) -> Result<Box<RawValue>, ApiError> {
    serde_json::value::to_raw_value(value).map_err(|e| internal(format!("cannot encode a change: {e}")))
}

fn unregistered<F: Feature>() -> ApiError {
    internal(format!("the feature {} is not in the sequencer's list", F::KEY))
}
