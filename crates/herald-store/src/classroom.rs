//! The `ClassroomStore` trait: the live classroom's rows that must last
//! (accounts, web sessions, courses, enrolments).
//!
//! Contract (every engine, checked by [`crate::conformance::classroom`]):
//! - every method is atomic: on `Err` nothing was written;
//! - emails are compared and stored lower-cased: `create_user` lower-cases the
//!   email it is given, `user_by_email` finds it whatever the case asked;
//! - ids (users, courses) and join codes are random strings the store makes; a
//!   course's join code is unique among all courses (a collision is retried);
//! - `create_course` enrols the owner as [`Role::Trainer`] in the same transaction;
//! - `enrol` is idempotent: enrolling a member again keeps the role they have;
//! - `set_role` never leaves a course without a trainer: demoting the last one
//!   fails with [`ClassroomError::LastTrainer`], also under concurrent calls;
//! - web sessions are stored by the SHA-256 of their token (the caller hashes);
//!   the store hands back expired ones too: the caller compares `expires_at`
//!   with its clock and deletes them. Creating a session deletes the user's
//!   expired ones, and `delete_expired_web_sessions` anyone's (the classroom
//!   sweeps them), so they do not pile up;
//! - times (`created_at`) are the node's clock, Unix milliseconds;
//! - a live session's `doc` (its state document, JSON) and `cursor` are opaque
//!   text to the store: the classroom's sequencer writes them together with the
//!   state in one statement, so a reader always gets a matching pair;
//! - `lock_live_session` serialises the changes of one live session across
//!   every node sharing the database (PostgreSQL: an advisory transaction
//!   lock, the row re-read under it); an engine used by one node only answers
//!   `None` (SQLite);
//! - a question's row is written whole (`save_question` inserts or replaces);
//!   a vote's key is (question, user): `add_vote` answers `false` for a second
//!   vote and writes nothing; deleting a question deletes its votes.
//!
//! Validation of what users type (email shape, name length, password strength)
//! is the HTTP layer's; the store only refuses what would break its rules.

use async_trait::async_trait;
use rand::Rng;
use serde::Serialize;

mod sql;
pub(crate) use sql::classroom_store;

/// Why a classroom store operation failed. On any error nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ClassroomError {
    /// An account with that email exists already.
    #[error("an account with that email exists already")]
    EmailTaken,
    /// No course with that id (or join code).
    #[error("no such course")]
    CourseNotFound,
    /// The user is not enrolled in the course.
    #[error("the user is not a member of the course")]
    NotMember,
    /// The change would leave the course without a trainer.
    #[error("a course must keep at least one trainer")]
    LastTrainer,
    /// No live session with that id.
    #[error("no such live session")]
    SessionNotFound,
    /// A log entry with that number exists already (another writer appended
    /// first); nothing was appended.
    #[error("the session log has an entry with that number already")]
    LogConflict,
    /// The database could not be reached or answered with an error.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

impl From<crate::StoreError> for ClassroomError {
    fn from(e: crate::StoreError) -> Self {
        match e {
            crate::StoreError::Unavailable(detail) => ClassroomError::Unavailable(detail),
            other => ClassroomError::Unavailable(other.to_string()),
        }
    }
}

/// A member's role in a course, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the course: manages members, the join code and the settings.
    Trainer,
    /// Helps run live sessions; sees the join code; cannot manage members.
    CoTrainer,
    /// Takes part.
    Student,
    /// Watches, does not take part.
    Observer,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [Role::Trainer, Role::CoTrainer, Role::Student, Role::Observer];

    /// The snake_case name, as stored and as sent over the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Trainer => "trainer",
            Role::CoTrainer => "co_trainer",
            Role::Student => "student",
            Role::Observer => "observer",
        }
    }

    /// The role of a snake_case name, or `None`.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Trainers and co-trainers: the people who teach.
    pub fn is_staff(self) -> bool {
        matches!(self, Role::Trainer | Role::CoTrainer)
    }
}

/// An account, without its password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Random id (`u_` + 32 hex digits).
    pub id: String,
    /// Lower-cased email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
}

/// An account with its password hash, for signing in.
#[derive(Clone, PartialEq, Eq)]
pub struct UserLogin {
    /// The account.
    pub user: User,
    /// The PHC string of the password hash (argon2).
    pub password_hash: String,
}

impl std::fmt::Debug for UserLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserLogin")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What `create_user` needs.
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    /// Email (lower-cased by the store).
    pub email: &'a str,
    /// Display name.
    pub name: &'a str,
    /// The PHC string of the password hash.
    pub password_hash: &'a str,
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// SHA-256 (hex) of the session cookie's token.
    pub id: String,
    /// The signed-in user.
    pub user_id: String,
    /// SHA-256 (hex) of the CSRF token.
    pub csrf_hash: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Expiry time, Unix milliseconds.
    pub expires_at: i64,
}

/// A course.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Course {
    /// Random id (`c_` + 32 hex digits).
    pub id: String,
    /// Title.
    pub title: String,
    /// The user who created it.
    pub owner_id: String,
    /// The code students type to join ([`JOIN_CODE_LEN`] characters of [`JOIN_CODE_ALPHABET`]).
    pub join_code: String,
    /// Whether guests without an account may join its live sessions.
    pub guests_allowed: bool,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
}

/// A course with the role a given user has in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourseWithRole {
    /// The course.
    pub course: Course,
    /// The user's role.
    pub role: Role,
}

/// One line of a course's roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The user's id.
    pub user_id: String,
    /// The user's email.
    pub email: String,
    /// The user's name.
    pub name: String,
    /// The role in the course.
    pub role: Role,
    /// When the user was enrolled, Unix milliseconds.
    pub enrolled_at: i64,
}

/// What `enrol` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enrolment {
    /// The role in force: the one asked for if the user was new, else the one kept.
    pub role: Role,
    /// True when the user was not a member before.
    pub created: bool,
}

/// Changes to a course's settings; `None` keeps a value.
#[derive(Debug, Clone, Copy, Default)]
pub struct CourseUpdate<'a> {
    /// New title.
    pub title: Option<&'a str>,
    /// New guest setting.
    pub guests_allowed: Option<bool>,
}

/// The life of a live session: `scheduled` -> `live` <-> `paused` -> `ended`
/// (`ended` is final; a scheduled session may be ended without starting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveState {
    /// Created, not started yet.
    #[default]
    Scheduled,
    /// Running: hands may be raised.
    Live,
    /// Interrupted for a while; resumes to `live`.
    Paused,
    /// Over, for good.
    Ended,
}

impl LiveState {
    /// Every state, in the order of a session's life.
    pub const ALL: [LiveState; 4] = [
        LiveState::Scheduled,
        LiveState::Live,
        LiveState::Paused,
        LiveState::Ended,
    ];

    /// The snake_case name, as stored and as sent over the API.
    pub fn as_str(self) -> &'static str {
        match self {
            LiveState::Scheduled => "scheduled",
            LiveState::Live => "live",
            LiveState::Paused => "paused",
            LiveState::Ended => "ended",
        }
    }

    /// The state of a snake_case name, or `None`.
    pub fn parse(s: &str) -> Option<LiveState> {
        LiveState::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A live session of a course: its row, with the state document and the cursor
/// the document is valid at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveSession {
    /// Random id (`s_` + 32 hex digits): also the channel name's suffix.
    pub id: String,
    /// The course.
    pub course_id: String,
    /// Title.
    pub title: String,
    /// Where it is in its life.
    pub state: LiveState,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// When it first went live, Unix milliseconds.
    pub started_at: Option<i64>,
    /// When it ended, Unix milliseconds.
    pub ended_at: Option<i64>,
    /// The state document, JSON (the classroom's business).
    pub doc: String,
    /// The Herald cursor of the session's channel `doc` is valid at (`""`: none yet).
    pub cursor: String,
    /// Last save, Unix milliseconds.
    pub updated_at: i64,
}

/// One entry of a live session's log, as stored: its number (1, 2, 3… per
/// session), when it was appended, and its body (JSON, the classroom's
/// business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Its number in the session's log.
    pub seq: i64,
    /// When it was appended, Unix milliseconds.
    pub at: i64,
    /// What it holds.
    pub body: String,
}

/// A snapshot of a live session's whole state at entry `seq` of its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    /// The live session.
    pub session_id: String,
    /// The last log entry it includes (0: none).
    pub seq: i64,
    /// The session channel's Herald cursor after that entry.
    pub cursor: String,
    /// The state, JSON (the classroom's business).
    pub doc: String,
    /// When it was written, Unix milliseconds.
    pub at: i64,
}

/// A live session's columns that listings show, written with the log entry
/// that changed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveColumns {
    /// Where it is in its life.
    pub state: LiveState,
    /// When it first went live.
    pub started_at: Option<i64>,
    /// When it ended.
    pub ended_at: Option<i64>,
}

/// The cluster-wide lock of one live session
/// ([`ClassroomStore::lock_live_session`]), held for one change or, while
/// more of the same node's changes wait, for several in a row.
///
/// Each [`LiveLease::append`] is durable and visible to others when it
/// returns (all its rows or none); the lock stays held until
/// [`LiveLease::release`], or until the lease is dropped (which releases it
/// too, less cheaply: the engine may close a connection to do so).
#[async_trait]
pub trait LiveLease: Send + Sync {
    /// The session's log entries after `after`, oldest first, at most `limit`,
    /// read under the lock (so: every entry appended before it was granted).
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`] (then the lease can only be dropped).
    async fn log_after(&mut self, after: i64, limit: i64) -> Result<Vec<LogRow>, ClassroomError>;

    /// Appends `rows` to the session's log like
    /// [`ClassroomStore::append_live_log`] (all or none, durable and visible
    /// on return), under the lock, which stays held.
    ///
    /// # Errors
    /// [`ClassroomError::LogConflict`]; [`ClassroomError::Unavailable`] (then
    /// nothing was appended and the lease can only be dropped).
    async fn append(&mut self, rows: &[LogRow], columns: Option<&LiveColumns>) -> Result<(), ClassroomError>;

    /// Releases the lock.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`]: the lock is released anyway (the
    /// engine drops the connection that held it).
    async fn release(self: Box<Self>) -> Result<(), ClassroomError>;
}

/// A question asked during a live session, as stored. `state` and
/// `answer_mode` are the classroom's names (opaque to the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuestionRow {
    /// Random id (`q_` + 32 hex digits).
    pub id: String,
    /// The live session.
    pub session_id: String,
    /// Who asked (kept even when it is shown as anonymous).
    pub author_id: String,
    /// The question.
    pub text: String,
    /// Shown without its author.
    pub anonymous: bool,
    /// `pending`, `published`, `starred`, `answering`, `answered`, `dismissed`.
    pub state: String,
    /// How it was answered: `public`, `private`, `live`, or `None`.
    pub answer_mode: Option<String>,
    /// The answer's text (public and private answers).
    pub answer: Option<String>,
    /// When it was asked, Unix milliseconds.
    pub created_at: i64,
    /// Last change, Unix milliseconds.
    pub updated_at: i64,
}

/// One upvote of a question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vote {
    /// The question.
    pub question_id: String,
    /// Who voted.
    pub user_id: String,
    /// When, Unix milliseconds.
    pub created_at: i64,
}

/// A deck of slides of a course. `slides` is the classroom's JSON list of
/// slides (opaque to the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeckRow {
    /// Random id (`d_` + 32 hex digits).
    pub id: String,
    /// The course.
    pub course_id: String,
    /// Title.
    pub title: String,
    /// The slides, JSON.
    pub slides: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Last change, Unix milliseconds.
    pub updated_at: i64,
}

/// A file of a deck: a slide's image (uploaded, or a rendered PDF page).
#[derive(Clone, PartialEq, Eq)]
pub struct FileRow {
    /// Random id (`f_` + 32 hex digits).
    pub id: String,
    /// The deck it belongs to (deleted with it).
    pub deck_id: String,
    /// Its media type (`image/png`, ...).
    pub content_type: String,
    /// The content.
    pub bytes: Vec<u8>,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
}

impl std::fmt::Debug for FileRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRow")
            .field("id", &self.id)
            .field("deck_id", &self.deck_id)
            .field("content_type", &self.content_type)
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// One user's answer to a poll of a live session (`answer` is the classroom's
/// JSON, opaque to the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PollVote {
    /// The poll (its id in the session's document).
    pub poll_id: String,
    /// The live session.
    pub session_id: String,
    /// Who answered.
    pub user_id: String,
    /// The answer, JSON.
    pub answer: String,
    /// First answer, Unix milliseconds.
    pub created_at: i64,
    /// Last change, Unix milliseconds.
    pub updated_at: i64,
}

/// Join codes use these characters: capitals and digits without the ones people
/// confuse (0/O, 1/I/L).
pub const JOIN_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// Characters of a join code (31^8, about 8.5e11 codes).
pub const JOIN_CODE_LEN: usize = 8;
/// How many fresh codes (or ids) an engine tries before giving up.
pub(crate) const MAX_ATTEMPTS: usize = 8;

/// A fresh join code.
pub fn generate_join_code() -> String {
    let mut rng = rand::thread_rng();
    (0..JOIN_CODE_LEN)
        .map(|_| char::from(JOIN_CODE_ALPHABET[rng.gen_range(0..JOIN_CODE_ALPHABET.len())]))
        .collect()
}

/// A fresh id: `prefix` + 32 hex digits (128 random bits).
pub fn generate_id(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// Sorts a roster: trainers first (by role), then by name (case-insensitive), then id.
pub(crate) fn sort_roster(members: &mut [Member]) {
    members.sort_by(|a, b| {
        (a.role, a.name.to_lowercase(), &a.user_id).cmp(&(b.role, b.name.to_lowercase(), &b.user_id))
    });
}

/// Durable classroom rows. Shared by every node of a cluster.
#[async_trait]
pub trait ClassroomStore: Send + Sync + 'static {
    /// Creates an account (email lower-cased).
    ///
    /// # Errors
    /// [`ClassroomError::EmailTaken`]; [`ClassroomError::Unavailable`].
    async fn create_user(&self, new: NewUser<'_>) -> Result<User, ClassroomError>;

    /// The account with that email (any case) and its password hash, or `None`.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn user_by_email(&self, email: &str) -> Result<Option<UserLogin>, ClassroomError>;

    /// The account with that id, or `None`.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn user(&self, id: &str) -> Result<Option<User>, ClassroomError>;

    /// Stores a web session, and deletes the user's expired ones.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`] (also when the user does not exist).
    async fn create_web_session(&self, session: &WebSession) -> Result<(), ClassroomError>;

    /// The web session with that id (hash of the token) and its user, expired or
    /// not, or `None`.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn web_session(&self, id: &str) -> Result<Option<(WebSession, User)>, ClassroomError>;

    /// Deletes a web session (nothing if there is none).
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn delete_web_session(&self, id: &str) -> Result<(), ClassroomError>;

    /// Deletes at most `limit` web sessions (anyone's) that expired at or
    /// before `now` (Unix milliseconds); returns how many.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn delete_expired_web_sessions(&self, now: i64, limit: usize) -> Result<u64, ClassroomError>;

    /// Creates a course with a fresh id and unique join code, with `owner_id` as
    /// its first trainer.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`] (also when the owner does not exist).
    async fn create_course(&self, title: &str, owner_id: &str) -> Result<Course, ClassroomError>;

    /// The courses `user_id` is enrolled in, with the role, newest first.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn courses_of_user(&self, user_id: &str) -> Result<Vec<CourseWithRole>, ClassroomError>;

    /// The course with that id, or `None`.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn course(&self, id: &str) -> Result<Option<Course>, ClassroomError>;

    /// The course with that join code (exact match), or `None`.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn course_by_join_code(&self, code: &str) -> Result<Option<Course>, ClassroomError>;

    /// Changes a course's title and guest setting; returns the course as it is now.
    ///
    /// # Errors
    /// [`ClassroomError::CourseNotFound`]; [`ClassroomError::Unavailable`].
    async fn update_course(&self, id: &str, update: CourseUpdate<'_>) -> Result<Course, ClassroomError>;

    /// Gives the course a fresh join code (the old one stops working); returns it.
    ///
    /// # Errors
    /// [`ClassroomError::CourseNotFound`]; [`ClassroomError::Unavailable`].
    async fn rotate_join_code(&self, course_id: &str) -> Result<String, ClassroomError>;

    /// Enrols `user_id` with `role`, or keeps the role of a member already there.
    ///
    /// # Errors
    /// [`ClassroomError::CourseNotFound`]; [`ClassroomError::Unavailable`] (also
    /// when the user does not exist).
    async fn enrol(&self, course_id: &str, user_id: &str, role: Role) -> Result<Enrolment, ClassroomError>;

    /// The role of `user_id` in the course, or `None` when not a member.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn role(&self, course_id: &str, user_id: &str) -> Result<Option<Role>, ClassroomError>;

    /// The course's members: trainers first (by role), then by name.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn roster(&self, course_id: &str) -> Result<Vec<Member>, ClassroomError>;

    /// Changes a member's role.
    ///
    /// # Errors
    /// [`ClassroomError::NotMember`]; [`ClassroomError::LastTrainer`] when it would
    /// demote the course's only trainer; [`ClassroomError::Unavailable`].
    async fn set_role(&self, course_id: &str, user_id: &str, role: Role) -> Result<(), ClassroomError>;

    /// Creates a live session of a course, `scheduled`, with a fresh id, the
    /// given state document and no cursor yet.
    ///
    /// # Errors
    /// [`ClassroomError::CourseNotFound`]; [`ClassroomError::Unavailable`].
    async fn create_live_session(
        &self,
        course_id: &str,
        title: &str,
        doc: &str,
    ) -> Result<LiveSession, ClassroomError>;

    /// The live session with that id, or `None`.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn live_session(&self, id: &str) -> Result<Option<LiveSession>, ClassroomError>;

    /// The course's live sessions, newest first.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn live_sessions_of_course(&self, course_id: &str) -> Result<Vec<LiveSession>, ClassroomError>;

    /// Writes a session's `state`, `started_at`, `ended_at`, `doc`, `cursor` and
    /// `updated_at` (all at once; the id, course, title and creation time are
    /// kept).
    ///
    /// # Errors
    /// [`ClassroomError::SessionNotFound`]; [`ClassroomError::Unavailable`].
    async fn save_live_session(&self, session: &LiveSession) -> Result<(), ClassroomError>;

    /// Whether several nodes may write live sessions through this store at
    /// once, so that a change needs [`ClassroomStore::lock_live_session`]'s
    /// lease and a node's copy may fall behind the log (PostgreSQL: yes;
    /// SQLite, one node's file: no).
    fn shared(&self) -> bool;

    /// Appends `rows` to live session `session_id`'s log, all or none, in one
    /// transaction with its `columns` when given.
    ///
    /// # Errors
    /// [`ClassroomError::LogConflict`] (an entry of that number exists: nothing
    /// appended); [`ClassroomError::SessionNotFound`];
    /// [`ClassroomError::Unavailable`].
    async fn append_live_log(
        &self,
        session_id: &str,
        rows: &[LogRow],
        columns: Option<&LiveColumns>,
    ) -> Result<(), ClassroomError>;

    /// Live session `session_id`'s log entries after `after`, oldest first, at
    /// most `limit`.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn live_log(&self, session_id: &str, after: i64, limit: i64)
        -> Result<Vec<LogRow>, ClassroomError>;

    /// Writes a snapshot; one of the same session and `seq` is kept as it is.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`] (also when the session does not exist).
    async fn save_live_snapshot(&self, snapshot: &SnapshotRow) -> Result<(), ClassroomError>;

    /// Deletes the session's snapshots but the newest `keep` (at least one);
    /// answers how many were deleted.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn prune_live_snapshots(&self, session_id: &str, keep: i64) -> Result<u64, ClassroomError>;

    /// The newest snapshot of live session `session_id` at or before entry
    /// `at_most` (`None`: the newest of all).
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn live_snapshot(
        &self,
        session_id: &str,
        at_most: Option<i64>,
    ) -> Result<Option<SnapshotRow>, ClassroomError>;

    /// Takes the cluster-wide lock of live session `id` ([`LiveLease`]). `None` when the engine needs no
    /// such lock: only one node uses it (SQLite), and the sequencer's own
    /// mutex is enough. While a lease is held, every other `lock_live_session`
    /// of the same id, on any node, waits; other ids do not.
    ///
    /// # Errors
    /// [`ClassroomError::SessionNotFound`] (no lock is held then);
    /// [`ClassroomError::Unavailable`] (also when the wait for the lock is
    /// longer than the engine's lock timeout).
    async fn lock_live_session(&self, id: &str) -> Result<Option<Box<dyn LiveLease>>, ClassroomError>;

    /// Inserts a question, or replaces every field but its id, session, author
    /// and creation time when it exists.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`] (also when the session or the author does
    /// not exist).
    async fn save_question(&self, question: &QuestionRow) -> Result<(), ClassroomError>;

    /// Deletes a question and its votes; `false` when there was none.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn delete_question(&self, id: &str) -> Result<bool, ClassroomError>;

    /// The session's questions, oldest first.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn questions_of_session(&self, session_id: &str) -> Result<Vec<QuestionRow>, ClassroomError>;

    /// Records `user_id`'s vote for a question: `true` if new, `false` (nothing
    /// written) when that user had voted for it already.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`] (also when the question does not exist).
    async fn add_vote(&self, question_id: &str, user_id: &str, at: i64) -> Result<bool, ClassroomError>;

    /// Removes `user_id`'s vote for a question: `false` when there was none.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn remove_vote(&self, question_id: &str, user_id: &str) -> Result<bool, ClassroomError>;

    /// The votes of the session's questions, by question then time.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn votes_of_session(&self, session_id: &str) -> Result<Vec<Vote>, ClassroomError>;

    /// Inserts a deck, or replaces its title, slides and `updated_at`, and
    /// inserts `files` with it, in one transaction.
    ///
    /// # Errors
    /// [`ClassroomError::CourseNotFound`] when the course does not exist,
    /// [`ClassroomError::Unavailable`].
    async fn save_deck(&self, deck: &DeckRow, files: &[FileRow]) -> Result<(), ClassroomError>;

    /// A deck by id.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn deck(&self, id: &str) -> Result<Option<DeckRow>, ClassroomError>;

    /// The course's decks, newest first.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn decks_of_course(&self, course_id: &str) -> Result<Vec<DeckRow>, ClassroomError>;

    /// Deletes a deck and its files; `false` when there was none.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn delete_deck(&self, id: &str) -> Result<bool, ClassroomError>;

    /// A file by id.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn file(&self, id: &str) -> Result<Option<FileRow>, ClassroomError>;

    /// Records a poll answer, or replaces the answer and `updated_at` of the
    /// user's earlier one (one per user and poll).
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`] (also when the session or user does not
    /// exist).
    async fn save_poll_vote(&self, vote: &PollVote) -> Result<(), ClassroomError>;

    /// Deletes every answer to a poll; answers how many there were.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn delete_poll_votes(&self, session_id: &str, poll_id: &str) -> Result<u64, ClassroomError>;

    /// The answers to the session's polls, by poll, then time, then user.
    ///
    /// # Errors
    /// [`ClassroomError::Unavailable`].
    async fn poll_votes_of_session(&self, session_id: &str) -> Result<Vec<PollVote>, ClassroomError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("admin"), None);
        assert!(Role::Trainer < Role::Student);
        for s in LiveState::ALL {
            assert_eq!(LiveState::parse(s.as_str()), Some(s));
        }
        assert_eq!(LiveState::parse("running"), None);
    }

    #[test]
    fn join_codes_use_the_alphabet() {
        let c = generate_join_code();
        assert_eq!(c.len(), JOIN_CODE_LEN);
        assert!(c.bytes().all(|b| JOIN_CODE_ALPHABET.contains(&b)));
        assert_ne!(generate_id("u_"), generate_id("u_"));
    }
}
