//! The sequencer of live sessions: every change to a session, one at a time.
//!
//! Each live session has a **state document** ([`Doc`]: its state, the hand
//! queue, the roles changed during it; the questions; later polls, slides) and
//! a Herald channel, `class:{session_id}` in the internal app [`APP`]. A change
//! runs under the session's own async mutex ([`Live::lock`]):
//!
//! 1. the handler validates it against the current document and builds the
//!    next one;
//! 2. [`Locked::commit`] publishes ONE event to the channel with
//!    [`Node::publish`], whose data is the new value of what changed (clients
//!    replace, never fold), takes the offset and epoch the publish answered and
//!    makes the channel's cursor from them exactly as herald-node does
//!    ([`Position::encode`]);
//! 3. it saves document + cursor + state in one store write, then the lock is
//!    released.
//!
//! A snapshot ([`Locked::anchored`]) is read under the same lock, so the
//! document and its cursor always match: a client that subscribes from that
//! cursor gets exactly the changes after the document, none twice.
//!
//! **The cursor's epoch.** When the channel's history was lost (a restart of
//! the in-memory broker, Redis flushed, a quiet channel evicted), the stored
//! cursor names an epoch the channel no longer has. The document in the store
//! is still the truth, so a snapshot re-anchors it at the channel's current
//! position (a history read of no messages) and saves that: the next change is
//! the first message after it. A client still holding the old cursor gets a
//! `reset` and reloads the snapshot.
//!
//! **Cluster.** The mutex is per node. With several nodes on one PostgreSQL
//! database, the store also gives a lease per change
//! ([`ClassroomStore::lock_live_session`]: `pg_advisory_xact_lock` on the
//! session id, the row re-read under it), taken after the node's own mutex.
//! If the row is the version this node last read or saved (`updated_at`,
//! `cursor`), the cached document is used; otherwise another node changed the
//! session and the document is parsed again (with the `on_load` rebuilds of a
//! first load), keeping what this node alone holds (activity, who is here,
//! its pending coalesced changes and poll timers). Saves go through the lease,
//! which the first save finishes (commits: the lock is released); a lock
//! dropped without a save gives it back. In cluster mode staged changes
//! ([`Locked::stage`]) are saved when the lock is dropped, still under the
//! lease, and [`Locked::publish_unsaved`] saves the new cursor with the
//! document; what is not saved stays per node. Every save in cluster mode
//! makes a new `updated_at`, so versions never repeat. With no lease (SQLite,
//! one node) none of this runs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_node::{Claims, NamespaceOptions, Node, NodeError, PublishInput};
use herald_protocol::{AppName, ChannelName, Cursor, ErrorCode, EventName, Position};
use herald_server::error::ApiError;
use herald_store::classroom::LiveLease;
use herald_store::{ClassroomStore, LiveSession, LiveState, Role};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedMutexGuard;

use crate::store_error;

/// The internal Herald app of the classroom's channels, created at startup.
pub const APP: &str = "classroom";
/// The namespace of live sessions' channels: `class:{session_id}`.
pub const NAMESPACE: &str = "class";
/// How long a client token minted for a live session is valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Sessions whose sequencer slot (and cached document) is kept while unused.
const MAX_IDLE_SLOTS: usize = 1024;
/// The window of the per-user rate limits ([`Live::within_rate`]).
const RATE_WINDOW_MS: i64 = 60_000;
/// Users x kinds tracked before idle entries are dropped.
const MAX_RATE_ENTRIES: usize = 10_000;
/// The largest event the classroom pushes, in bytes of JSON data (under the
/// server's default message limit of 64 KiB); larger changes go out as
/// `reload` ([`Locked::commit`]).
pub const MAX_EVENT_BYTES: usize = 48 * 1024;
/// How long changes wait to be published together ([`Live::coalesce`]): at
/// most 4 events a second per session and kind, whatever the audience.
pub const COALESCE_WINDOW: Duration = Duration::from_millis(250);
/// A coalesced flush that fails is tried again this many times, a second apart.
const COALESCE_RETRIES: u32 = 20;

/// A coalesced flush: takes the session's lock and publishes what was staged.
pub type Flush =
    for<'a> fn(
        &'a Live,
        &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ApiError>> + Send + 'a>>;

/// The options of the [`NAMESPACE`] namespace, unless the configuration names
/// it: presence without join/leave events (the classroom publishes who is here
/// coalesced: [`crate::here`]), no client publishing (only the classroom
/// publishes), history of 10 000 events kept for 24 hours.
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
/// trainers and co-trainers may see live (poll tallies while hidden from the
/// audience). Only staff tokens name it.
///
/// # Errors
/// `session_not_found` for an id no session can have.
pub fn staff_channel(session_id: &str) -> Result<ChannelName, ApiError> {
    let session = channel_of(session_id)?;
    ChannelName::parse(&format!("{}.staff", session.as_str())).map_err(|_| not_found())
}

/// A raised hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hand {
    /// Who raised it.
    pub user_id: String,
    /// Their name when they raised it.
    pub name: String,
    /// When, Unix milliseconds.
    pub raised_at: i64,
}

/// A live session's state document: what a screen loads, and what the
/// session's events replace piece by piece. Every field has a default, so that
/// later slices can add fields (questions, polls, slides) and old documents
/// still load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doc {
    /// Where the session is in its life.
    #[serde(default)]
    pub state: LiveState,
    /// When it first went live, Unix milliseconds.
    #[serde(default)]
    pub started_at: Option<i64>,
    /// When it ended, Unix milliseconds.
    #[serde(default)]
    pub ended_at: Option<i64>,
    /// The raised hands, oldest first.
    #[serde(default)]
    pub hands: Vec<Hand>,
    /// Roles changed during the session (user id -> role); anyone else has the
    /// role of the course's roster.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// The Q&A settings.
    #[serde(default)]
    pub qa: QaSettings,
    /// Every question, oldest first, with everything about it (pending text,
    /// authors, private answers, voters): never sent as is; see
    /// [`crate::questions`] for the views.
    #[serde(default)]
    pub questions: Vec<Question>,
    /// Bumped on every change to a pending question (asked, edited, withdrawn,
    /// held back, published): a staff screen reloads its snapshot when the
    /// value in an event differs from its own.
    #[serde(default)]
    pub held_back_rev: u64,
    /// The deck on screen and where everyone is in it ([`crate::slides`]).
    #[serde(default)]
    pub slides: crate::slides::SlidesState,
    /// The polls and quizzes ([`crate::polls`]).
    #[serde(default)]
    pub polls: crate::polls::PollsState,
    /// The breakout groups ([`crate::groups`]).
    #[serde(default)]
    pub groups: crate::groups::GroupsState,
    /// Who is idle or away (user id -> activity), as their screens report it;
    /// anyone present and not here is active. Not saved: it describes the
    /// connections of now, and screens report it again when they reconnect.
    #[serde(skip)]
    pub activity: BTreeMap<String, Activity>,
    /// Who is here now (user id -> name and role), as the presence watcher
    /// last read it ([`crate::here`]). Not saved.
    /// Shared, replaced whole: every change clones the document, and this
    /// list has an entry per person (5 000 in a big session).
    #[serde(skip)]
    pub here: Arc<BTreeMap<String, crate::here::Present>>,
    /// Questions asked or voted on since the last `questions` event (asks and
    /// votes are coalesced: [`crate::questions`]).
    #[serde(skip)]
    pub questions_dirty: std::collections::BTreeSet<String>,
}

/// How present a person on the session page is, as their screen reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// The page is visible and used.
    #[default]
    Active,
    /// The page is visible, but nobody has touched it for a while.
    Idle,
    /// The page is hidden (another tab, the phone locked).
    Away,
}

impl Activity {
    /// The activity of a snake_case name, or `None`.
    pub fn parse(s: &str) -> Option<Activity> {
        match s {
            "active" => Some(Activity::Active),
            "idle" => Some(Activity::Idle),
            "away" => Some(Activity::Away),
            _ => None,
        }
    }
}

/// The session's Q&A settings, which staff toggle during the session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QaSettings {
    /// Students may ask without their name.
    #[serde(default)]
    pub anonymous: bool,
    /// New questions wait (`pending`) until staff publish them.
    #[serde(default)]
    pub moderation: bool,
}

/// Where a question is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionState {
    /// Held back for moderation: staff (and the author) only.
    Pending,
    /// Visible to all.
    Published,
    /// Marked by staff.
    Starred,
    /// Being answered now (at most one per session).
    Answering,
    /// Answered (publicly, privately or live).
    Answered,
    /// Set aside by staff.
    Dismissed,
}

impl QuestionState {
    /// Every state.
    pub const ALL: [QuestionState; 6] = [
        QuestionState::Pending,
        QuestionState::Published,
        QuestionState::Starred,
        QuestionState::Answering,
        QuestionState::Answered,
        QuestionState::Dismissed,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            QuestionState::Pending => "pending",
            QuestionState::Published => "published",
            QuestionState::Starred => "starred",
            QuestionState::Answering => "answering",
            QuestionState::Answered => "answered",
            QuestionState::Dismissed => "dismissed",
        }
    }

    /// The state of a snake_case name, or `None`.
    pub fn parse(s: &str) -> Option<QuestionState> {
        QuestionState::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

/// How a question was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerMode {
    /// A text everyone sees.
    Public,
    /// A text only the asker sees.
    Private,
    /// Answered aloud, no text.
    Live,
}

impl AnswerMode {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerMode::Public => "public",
            AnswerMode::Private => "private",
            AnswerMode::Live => "live",
        }
    }
}

/// A question as the document keeps it (everything; screens get views).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    /// Id (`q_` + 32 hex digits).
    pub id: String,
    /// Who asked (kept for anonymous questions too: the author may edit them).
    pub author_id: String,
    /// The author's name when asking.
    pub author_name: String,
    /// Shown without the author's name, to everyone.
    #[serde(default)]
    pub anonymous: bool,
    /// The question, trimmed.
    pub text: String,
    /// Its state.
    pub state: QuestionState,
    /// How it was answered.
    #[serde(default)]
    pub answer_mode: Option<AnswerMode>,
    /// The answer's text (public or private answers).
    #[serde(default)]
    pub answer: Option<String>,
    /// Who upvoted it, in order.
    #[serde(default)]
    pub voters: Vec<String>,
    /// When it was asked, Unix milliseconds.
    pub created_at: i64,
    /// Last change, Unix milliseconds.
    #[serde(default)]
    pub updated_at: i64,
}

/// A loaded session: its row (with `doc` emptied: the parsed document is kept
/// beside it) and its document.
#[derive(Clone)]
struct Loaded {
    row: LiveSession,
    doc: Doc,
    /// In cluster mode, the version (`updated_at`, `cursor`) of the row in the
    /// store that `doc` was read from or last saved as: a lease reading the
    /// same version keeps `doc`, any other makes the node read it again.
    stored: Option<(i64, String)>,
}

/// The version of a row that tells whether another node saved it since.
fn version_of(row: &LiveSession) -> (i64, String) {
    (row.updated_at, row.cursor.clone())
}

/// Keeps what a node holds of a session and never saves (who is here, activity,
/// the coalesced changes this node has to publish, its poll timers) when the
/// document is read again from the store.
fn carry_over(old: &Doc, doc: &mut Doc) {
    doc.activity = old.activity.clone();
    doc.here = old.here.clone();
    doc.questions_dirty.extend(old.questions_dirty.iter().cloned());
    doc.polls.dirty.extend(old.polls.dirty.iter().cloned());
    for p in &mut doc.polls.polls {
        if old
            .polls
            .find(&p.id)
            .is_some_and(|o| o.timer_armed && o.closes_at == p.closes_at)
        {
            p.timer_armed = true;
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Loaded>>>;

/// The sequencer: one async mutex per live session, holding its row (with the
/// document) once loaded. Cheap to share behind an `Arc`.
pub struct Live {
    node: Node,
    app: AppName,
    store: Arc<dyn ClassroomStore>,
    slots: Mutex<HashMap<String, Slot>>,
    recent: Mutex<HashMap<(String, &'static str), VecDeque<i64>>>,
    /// Sessions x kinds with a coalesced flush waiting.
    waiting: Mutex<std::collections::HashSet<(String, &'static str)>>,
    /// The presence watchers of live sessions ([`crate::here`]).
    pub(crate) here: crate::here::Watchers,
}

impl Live {
    /// A sequencer publishing with `node` in the app [`APP`].
    ///
    /// # Errors
    /// `invalid_app_name` if [`APP`] were not a valid app name (it is).
    pub fn new(node: Node, store: Arc<dyn ClassroomStore>) -> Result<Self, NodeError> {
        let app =
            AppName::parse(APP).map_err(|e| NodeError::new(ErrorCode::InvalidAppName, e.to_string()))?;
        Ok(Self {
            node,
            app,
            store,
            slots: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            waiting: Mutex::new(std::collections::HashSet::new()),
            here: crate::here::Watchers::default(),
        })
    }

    /// Counts one `kind` action of `user_id` (per node) and answers whether
    /// it is within `max` per minute; a refused attempt is not counted.
    pub fn within_rate(&self, user_id: &str, kind: &'static str, max: usize) -> bool {
        let now = now_ms();
        let mut recent = self.recent.lock();
        if recent.len() >= MAX_RATE_ENTRIES {
            recent.retain(|_, times| times.back().is_some_and(|t| now - t < RATE_WINDOW_MS));
        }
        let times = recent.entry((user_id.to_owned(), kind)).or_default();
        while times.front().is_some_and(|t| now - t >= RATE_WINDOW_MS) {
            times.pop_front();
        }
        if times.len() >= max {
            return false;
        }
        times.push_back(now);
        true
    }

    /// Runs `flush` for session `sid` [`COALESCE_WINDOW`] from now, unless a
    /// flush of this `kind` is waiting already: changes staged meanwhile
    /// ([`Locked::stage`]) go out in one event. The mark is taken off before the
    /// flush takes the lock, so a change staged after that schedules the next
    /// flush; a failed flush is tried again a second later (at most
    /// `COALESCE_RETRIES` times).
    pub fn coalesce(self: &Arc<Self>, sid: &str, kind: &'static str, flush: Flush) {
        let key = (sid.to_owned(), kind);
        if !self.waiting.lock().insert(key.clone()) {
            return;
        }
        let live = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(COALESCE_WINDOW).await;
            for attempt in 0..=COALESCE_RETRIES {
                live.waiting.lock().remove(&key);
                match flush(&live, &key.0).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(session = %key.0, kind, attempt, error = ?e, "coalesced changes not published yet; trying again");
                    }
                }
                if !live.waiting.lock().insert(key.clone()) {
                    return; // a newer change scheduled its own flush
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            live.waiting.lock().remove(&key);
            tracing::error!(session = %key.0, kind, "coalesced changes given up on; the next change publishes them");
        });
    }

    /// The node (for presence).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Takes the session's lock and loads its row on first use.
    ///
    /// # Errors
    /// `session_not_found`, `store_unavailable`, `internal` (a document that is
    /// not JSON).
    pub async fn lock(&self, session_id: &str) -> Result<Locked<'_>, ApiError> {
        let channel = channel_of(session_id)?;
        let slot = {
            let mut slots = self.slots.lock();
            if slots.len() >= MAX_IDLE_SLOTS && !slots.contains_key(session_id) {
                // Only the map holds an idle slot: dropping it drops its cached row.
                slots.retain(|_, s| Arc::strong_count(s) > 1);
            }
            slots.entry(session_id.to_owned()).or_default().clone()
        };
        let mut guard = slot.lock_owned().await;
        // The node's own queue first, then the cluster's: a node holds at most
        // one lease per session, and waits for it with the row it will use.
        let lease = self
            .store
            .lock_live_session(session_id)
            .await
            .map_err(store_error)?;
        let cached = match (guard.as_ref(), &lease) {
            (Some(loaded), None) => Some(loaded.clone()),
            (Some(loaded), Some(lease)) if loaded.stored == Some(version_of(lease.row())) => {
                Some(loaded.clone())
            }
            _ => None,
        };
        let loaded = match cached {
            Some(loaded) => loaded,
            None => {
                let mut row = match &lease {
                    Some(lease) => lease.row().clone(),
                    None => self
                        .store
                        .live_session(session_id)
                        .await
                        .map_err(store_error)?
                        .ok_or_else(not_found)?,
                };
                let mut doc = parse_doc(&row)?;
                crate::questions::on_load(self.store.as_ref(), &row, &mut doc).await?;
                crate::polls::on_load(self.store.as_ref(), &row, &mut doc).await?;
                if let Some(old) = guard.as_ref() {
                    // Another node changed it: what this node alone knows stays.
                    carry_over(&old.doc, &mut doc);
                }
                row.doc = String::new();
                let stored = lease.as_ref().map(|_| version_of(&row));
                let loaded = Loaded { row, doc, stored };
                *guard = Some(loaded.clone());
                loaded
            }
        };
        Ok(Locked {
            live: self,
            channel,
            guard,
            clustered: lease.is_some(),
            lease,
            staged: false,
            stored: loaded.stored,
            row: loaded.row,
            doc: loaded.doc,
        })
    }

    /// A client token for `user_id` on `channels` only (the session's channel
    /// and the user's personal one), with `{name, role}` as presence info, valid
    /// for [`TOKEN_TTL`].
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
        let secret = record.token_secrets.first().ok_or_else(|| {
            ApiError::new(
                ErrorCode::Internal,
                "the classroom app has no token secret; rotate its credentials",
            )
        })?;
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
}

/// A live session under its lock: read the document, commit a change. The lock
/// is released when this is dropped.
///
/// In cluster mode it also holds the session's lease ([`LiveLease`]): the
/// first save finishes it; a later save takes a new one (and fails if another
/// node saved in between); staged changes are saved when this is dropped,
/// still under the lease; dropped without a change, the lease is given back.
pub struct Locked<'a> {
    live: &'a Live,
    channel: ChannelName,
    guard: OwnedMutexGuard<Option<Loaded>>,
    /// The store gave a lease: other nodes change this session too.
    clustered: bool,
    /// The lease, until a save finishes it.
    lease: Option<Box<dyn LiveLease>>,
    /// Cluster mode: the document was staged and not saved since.
    staged: bool,
    /// Cluster mode: the version of the row in the store ([`Loaded::stored`]).
    stored: Option<(i64, String)>,
    row: LiveSession,
    doc: Doc,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if !self.staged {
            // Dropped unfinished: rolled back, the cluster lock released.
            return;
        }
        // Staged changes in cluster mode: saved now, under the lease still, so
        // that other nodes see them (their events stay coalesced). The node's
        // mutex is released at once; the next lease of this session, here or
        // elsewhere, waits for this save.
        let row = match self.staged_row() {
            Ok(row) => row,
            Err(e) => {
                tracing::error!(session = %self.row.id, error = ?e, "staged changes not saved");
                return;
            }
        };
        let base = self.stored.replace(version_of(&row));
        self.row.updated_at = row.updated_at;
        self.remember();
        let lease = self.lease.take();
        let store = self.live.store.clone();
        self.live.node.spawn_io("staged save", async move {
            if let Err(e) = save_staged(store.as_ref(), lease, base, &row).await {
                // The rows (votes, answers) are in the store: the next node to
                // read the document rebuilds them from there.
                tracing::warn!(session = %row.id, error = %e, "staged changes not saved; the next load rebuilds them from their rows");
            }
        });
    }
}

/// Saves staged changes through `lease`, or (staged after this lock's lease was
/// finished by a save) through a new one if the row is still at `base`.
async fn save_staged(
    store: &dyn ClassroomStore,
    lease: Option<Box<dyn LiveLease>>,
    base: Option<(i64, String)>,
    row: &LiveSession,
) -> Result<(), herald_store::ClassroomError> {
    let mut lease = match lease {
        Some(lease) => lease,
        None => match store.lock_live_session(&row.id).await? {
            Some(lease) if base == Some(version_of(lease.row())) => lease,
            _ => {
                return Err(herald_store::ClassroomError::Unavailable(
                    "the session was saved by another change first".to_owned(),
                ))
            }
        },
    };
    lease.save(row).await?;
    lease.finish().await
}

impl Locked<'_> {
    /// The session's row as last saved (its `doc` field is empty: the document
    /// is [`Locked::doc`]).
    pub fn session(&self) -> &LiveSession {
        &self.row
    }

    /// The current document.
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// The cursor of the session's channel the document is valid at.
    pub fn cursor(&self) -> &str {
        &self.session().cursor
    }

    /// The session's channel.
    pub fn channel(&self) -> &ChannelName {
        &self.channel
    }

    /// Makes sure the cursor names the channel's current epoch at or below its
    /// newest offset; if not (the channel's history was lost), moves it to the
    /// channel's current position and saves it. Call before handing out a
    /// snapshot.
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
        let mut row = self.session().clone();
        row.doc = self.doc_json()?;
        row.cursor = Position {
            channel: self.channel.clone(),
            epoch: read.epoch.to_string(),
            offset: read.top,
        }
        .encode();
        row.updated_at = self.next_updated_at();
        self.write(&row).await?;
        tracing::info!(session = %row.id, "live session re-anchored on its channel's current position");
        row.doc = String::new();
        self.row = row;
        self.remember();
        Ok(())
    }

    /// The cursor of `channel`'s current position (its epoch and newest
    /// offset): subscribing from it gets every later message. Read under the
    /// lock, it matches the document for what the sequencer publishes there.
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

    /// Publishes `event` with `data` on another channel of the session (a
    /// user's personal channel), under the session's lock, after a commit.
    ///
    /// # Errors
    /// Those of [`Node::publish`].
    pub async fn notify(
        &self,
        channel: &ChannelName,
        event: &str,
        data: serde_json::Value,
    ) -> Result<(), ApiError> {
        self.publish_to(channel, event, &data).await.map(drop)
    }

    /// Publishes one event on `channel`; answers the cursor just after it.
    ///
    /// An event whose data is over [`MAX_EVENT_BYTES`] (a breakout of thousands
    /// of students with their names, a deck of hundreds of slides shown) goes
    /// out as `reload` `{reload: event}` instead: screens load the snapshot
    /// again, which has the change. Rare, and every message stays within the
    /// server's message size limit.
    async fn publish_to(
        &self,
        channel: &ChannelName,
        event: &str,
        data: &serde_json::Value,
    ) -> Result<String, ApiError> {
        let mut text = data.to_string();
        let mut event = event;
        if text.len() > MAX_EVENT_BYTES {
            tracing::info!(channel = %channel, event, bytes = text.len(), "an event too large to push: screens reload their snapshot");
            text = serde_json::json!({ "reload": event }).to_string();
            event = "reload";
        }
        let event = EventName::parse(event)
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("bad classroom event name: {e}")))?;
        let published = self
            .live
            .node
            .publish(
                &self.live.app,
                PublishInput {
                    channels: vec![channel.clone()],
                    event,
                    data: Arc::from(text),
                    idempotency_key: None,
                },
            )
            .await?;
        let at = published
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the publish answered no position"))?;
        Ok(Position {
            channel: channel.clone(),
            epoch: at.epoch.to_string(),
            offset: at.offset,
        }
        .encode())
    }

    /// The store, for rows written under the lock.
    pub fn store(&self) -> &dyn ClassroomStore {
        self.live.store.as_ref()
    }

    /// Applies `next` as the new document: publishes `event` with `data` (the
    /// new value of what changed) to the session's channel, then saves the
    /// document with the cursor after that event.
    ///
    /// # Errors
    /// Those of [`Node::publish`] (then nothing changed), `store_unavailable`
    /// (the event is out and the node keeps the new document, saved with the
    /// next change).
    pub async fn commit(&mut self, next: Doc, event: &str, data: serde_json::Value) -> Result<(), ApiError> {
        let doc_json = serde_json::to_string(&next)
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot encode the document: {e}")))?;
        let cursor = self.publish_to(&self.channel, event, &data).await?;
        let mut row = self.session().clone();
        row.state = next.state;
        row.started_at = next.started_at;
        row.ended_at = next.ended_at;
        row.doc = doc_json;
        row.cursor = cursor;
        row.updated_at = self.next_updated_at();
        let saved = self.write(&row).await;
        // In memory whether saved or not: it is what the channel says now.
        row.doc = String::new();
        self.row = row;
        self.doc = next;
        self.remember();
        saved
    }

    /// Replaces the document in memory only, with no event and no save: for
    /// changes whose rows are in the store already and whose event is
    /// published later, coalesced (poll answers: [`crate::polls`]). The next
    /// [`Locked::commit`] saves it. In cluster mode it is also saved when this
    /// lock is dropped (without an event), so that other nodes see it.
    pub fn stage(&mut self, next: Doc) {
        self.doc = next;
        self.staged = self.clustered;
        self.remember();
    }

    /// Saves the document as it is now (staged changes included) with the
    /// current cursor, without an event: for staged changes when nothing else
    /// commits (the end of a coalescing window, shutdown).
    ///
    /// # Errors
    /// `store_unavailable`, `internal`.
    pub async fn save(&mut self) -> Result<(), ApiError> {
        let row = self.staged_row()?;
        self.write(&row).await?;
        self.row.updated_at = row.updated_at;
        self.remember();
        Ok(())
    }

    /// Publishes `event` with `data` on the session's channel and moves the
    /// cursor past it in memory, with the document changed to `next` in memory
    /// only: for what is not saved ([`Doc::activity`]). A snapshot after it
    /// carries the new cursor; the next save writes that cursor with the
    /// document, which is valid there (nothing saved changed).
    ///
    /// In cluster mode the cursor is saved now, with the document, so that
    /// every node's snapshot carries it; what is not saved stays per node (each
    /// node knows the activity reported to it, and reads who is here itself).
    /// A failed save is logged only: the event is out, and a client subscribing
    /// from the older cursor gets it again, which changes nothing.
    ///
    /// # Errors
    /// Those of [`Node::publish`] (then nothing changed).
    pub async fn publish_unsaved(
        &mut self,
        next: Doc,
        event: &str,
        data: serde_json::Value,
    ) -> Result<(), ApiError> {
        self.row.cursor = self.publish_to(&self.channel, event, &data).await?;
        self.doc = next;
        if self.clustered {
            match self.staged_row() {
                Ok(row) => match self.write(&row).await {
                    Ok(()) => self.row.updated_at = row.updated_at,
                    Err(e) => {
                        tracing::warn!(session = %row.id, error = ?e, "the cursor after an unsaved event was not saved");
                    }
                },
                Err(e) => {
                    tracing::warn!(session = %self.row.id, error = ?e, "the cursor after an unsaved event was not saved");
                }
            }
        }
        self.remember();
        Ok(())
    }

    /// The row to save the document as it is now with the current cursor.
    fn staged_row(&self) -> Result<LiveSession, ApiError> {
        let mut row = self.session().clone();
        row.doc = self.doc_json()?;
        row.updated_at = self.next_updated_at();
        Ok(row)
    }

    /// `updated_at` of the next save: now, and in cluster mode always after the
    /// version in the store, so that every save makes a new version even within
    /// one millisecond.
    fn next_updated_at(&self) -> i64 {
        match &self.stored {
            Some((at, _)) if self.clustered => now_ms().max(at.saturating_add(1)),
            _ => now_ms(),
        }
    }

    /// Writes `row`: with no lease, to the store as is; in cluster mode through
    /// the lease, which is then finished (a second write under this lock takes
    /// a new lease, and refuses if another node saved in between).
    async fn write(&mut self, row: &LiveSession) -> Result<(), ApiError> {
        if !self.clustered {
            return self.live.store.save_live_session(row).await.map_err(store_error);
        }
        let mut lease = match self.lease.take() {
            Some(lease) => lease,
            None => {
                let lease = self
                    .live
                    .store
                    .lock_live_session(&row.id)
                    .await
                    .map_err(store_error)?
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::Internal,
                            "the store gave no lease for a session it leased",
                        )
                    })?;
                if self.stored != Some(version_of(lease.row())) {
                    return Err(ApiError::new(
                        ErrorCode::StoreUnavailable,
                        "this session was changed on another server meanwhile; try again",
                    ));
                }
                lease
            }
        };
        lease.save(row).await.map_err(store_error)?;
        lease.finish().await.map_err(store_error)?;
        self.staged = false;
        self.stored = Some(version_of(row));
        Ok(())
    }

    fn doc_json(&self) -> Result<String, ApiError> {
        serde_json::to_string(&self.doc)
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot encode the document: {e}")))
    }

    /// Writes the row and document back to the session's slot.
    fn remember(&mut self) {
        *self.guard = Some(Loaded {
            row: self.row.clone(),
            doc: self.doc.clone(),
            stored: self.stored.clone(),
        });
    }
}

fn parse_doc(row: &LiveSession) -> Result<Doc, ApiError> {
    let mut doc: Doc = serde_json::from_str(&row.doc).map_err(|e| {
        tracing::error!(session = %row.id, error = %e, "a live session's document is not valid");
        ApiError::new(
            ErrorCode::Internal,
            "this session's stored state cannot be read; the server log has details",
        )
    })?;
    // The row's columns are written with the document; they win if they differ.
    doc.state = row.state;
    doc.started_at = row.started_at;
    doc.ended_at = row.ended_at;
    Ok(doc)
}

/// `404 session_not_found`.
pub fn not_found() -> ApiError {
    ApiError::new(ErrorCode::SessionNotFound, "there is no such live session")
}

/// Now, Unix milliseconds (0 before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn channels_of_session_ids() {
        let c = channel_of("s_0123abcd").unwrap();
        assert_eq!(c.as_str(), "class:s_0123abcd");
        assert_eq!(c.namespace(), NAMESPACE);
        assert!(c.allowed_users().is_none());
        for bad in [
            "",
            "x",
            "s_a#b",
            "s_a:b",
            "s_a*",
            "c_123",
            &format!("s_{}", "a".repeat(80)),
        ] {
            assert!(channel_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn documents_load_with_defaults() {
        let doc: Doc = serde_json::from_str("{}").unwrap();
        assert_eq!(doc, Doc::default());
        let doc: Doc = serde_json::from_str(r#"{"state":"live","later":1}"#).unwrap();
        assert_eq!(doc.state, LiveState::Live);
        let json = serde_json::to_value(Doc::default()).unwrap();
        for (key, value) in [
            ("state", serde_json::json!("scheduled")),
            ("started_at", serde_json::json!(null)),
            ("hands", serde_json::json!([])),
            ("roles", serde_json::json!({})),
            ("qa", serde_json::json!({"anonymous":false,"moderation":false})),
            ("questions", serde_json::json!([])),
            ("held_back_rev", serde_json::json!(0)),
        ] {
            assert_eq!(json[key], value, "{key}");
        }
    }
}
