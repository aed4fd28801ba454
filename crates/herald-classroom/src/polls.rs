//! Live polls and quizzes during a live session.
//!
//! | who | may |
//! |---|---|
//! | co_trainer, trainer | create polls (drafts), open (one at a time), close, show or hide results, reset, delete, export CSV |
//! | student | answer an open poll, once, changing the answer until it closes |
//! | observer | watch |
//!
//! Staff changes go through the sequencer like every other change: ONE event
//! `polls` on `class:{sid}` with the audience's views of the polls that
//! changed, the same event with staff views on the staff channel
//! `class:{sid}.staff`, one entry in the session log.
//!
//! **The hot path: answers.** Thousands of students answer within seconds,
//! so an answer publishes nothing itself: under the session's lock it is
//! applied and appended to the log (that makes it durable: one small entry)
//! and marks its poll changed ([`PollsState::dirty`]); the sequencer then
//! commits ONE `poll.tally` event with the tallies of the polls whose answers
//! changed in the next quarter second ([`crate::live::coalesce`]), and the
//! same with the results on the staff channel. So a session publishes at most
//! 4 tally events a second whatever its audience.
//!
//! **Timers.** A timed poll's end is a deadline ([`Feature::deadlines`]):
//! every node holding the session arms it, and the first to fire closes the
//! poll.
//!
//! **Who sees what.** Results are computed from the answers (one per user: a
//! changed answer replaces, never counts twice). The audience gets a poll's
//! `results` only while staff show them, and a quiz's `correct` options only
//! once it is closed and shown; while hidden, `poll.tally` on `class:{sid}`
//! carries only the number of answers, and the staff channel the results.
//! Open-text answers never carry names (the CSV does, for staff). A student's
//! own answers are in their snapshot (`my_poll_answers`), their score once a
//! quiz is closed and shown; staff get the `leaderboard`.

pub(crate) mod csv;
pub mod model;

use std::collections::{BTreeMap, HashMap};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use herald_protocol::ErrorCode;
use herald_server::error::ApiError;
use herald_store::classroom::generate_id;
use herald_store::{ClassroomStore, LiveSession, LiveState, Role};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::auth::SignedIn;
use crate::clock::now_ms;
use crate::live::{Audience, BoxFuture, Feature, Locked, View, Viewer};
use crate::sessions::{enter, session_role, snapshot, staff, Actor};
use crate::{json, store_error, ClassroomState};

pub use model::{Answer, Answers, Entry, Names, Poll, PollKind, PollState, PollsState};

/// Polls a session may hold.
pub const MAX_POLLS: usize = 50;
/// Answers (and changes of answer) a user may send per minute (per node).
pub const ANSWERS_PER_MINUTE: usize = 30;

/// A change of the polls.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PollsChange {
    /// A draft created.
    Created(Poll),
    /// A poll opened at `at`; a poll open before closes.
    Opened {
        /// The poll.
        id: String,
        /// When.
        at: i64,
    },
    /// A poll closed at `at` (by staff, or by its timer: at its time).
    Closed {
        /// The poll.
        id: String,
        /// When.
        at: i64,
    },
    /// Results shown to the audience, or hidden.
    Shown {
        /// The poll.
        id: String,
        /// Shown.
        visible: bool,
    },
    /// Every answer deleted.
    Reset {
        /// The poll.
        id: String,
    },
    /// The poll deleted, with its answers.
    Deleted {
        /// The poll.
        id: String,
    },
    /// A student's answer, replacing theirs (coalesced).
    Answered {
        /// The poll.
        id: String,
        /// Who.
        user_id: String,
        /// Their name, for the leaderboard and the export.
        name: String,
        /// The answer.
        entry: Entry,
    },
    /// The coalesced tallies of these polls went out.
    Tallied {
        /// The polls.
        ids: Vec<String>,
    },
}

/// Closes `p` at `at` (its timer's time if that came first).
fn close(p: &mut Poll, at: i64) {
    p.closed_at = Some(p.closes_at.map_or(at, |c| c.min(at)));
    p.state = PollState::Closed;
    p.closes_at = None;
}

impl Feature for PollsState {
    const KEY: &'static str = "polls";
    type Change = PollsChange;

    fn apply(&mut self, change: PollsChange) {
        match change {
            PollsChange::Created(poll) => {
                self.dirty.remove(&poll.id);
                self.polls.push(poll);
            }
            PollsChange::Opened { id, at } => {
                for p in self.polls.iter_mut() {
                    if p.state == PollState::Open {
                        close(p, at);
                    }
                }
                if let Some(p) = self.find_mut(&id) {
                    p.state = PollState::Open;
                    p.opened_at = Some(at);
                    p.closed_at = None;
                    p.closes_at = p.duration_s.map(|d| at + i64::from(d) * 1000);
                }
            }
            PollsChange::Closed { id, at } => {
                if let Some(p) = self.find_mut(&id) {
                    if p.state == PollState::Open {
                        close(p, at);
                    }
                }
            }
            PollsChange::Shown { id, visible } => {
                if let Some(p) = self.find_mut(&id) {
                    p.visible = visible;
                }
            }
            PollsChange::Reset { id } => {
                if let Some(p) = self.find_mut(&id) {
                    p.answers.clear();
                }
                self.dirty.remove(&id);
            }
            PollsChange::Deleted { id } => {
                self.polls.retain(|p| p.id != id);
                self.dirty.remove(&id);
            }
            PollsChange::Answered {
                id,
                user_id,
                name,
                entry,
            } => {
                if let Some(p) = self.find_mut(&id) {
                    p.answers.insert(user_id.clone(), entry);
                    if self.names.get(&user_id) != Some(&name) {
                        self.names.insert(user_id, name);
                    }
                    self.dirty.insert(id);
                }
            }
            PollsChange::Tallied { ids } => {
                for id in ids {
                    self.dirty.remove(&id);
                }
            }
        }
    }

    fn snapshot(&self, view: &View<'_>, out: &mut Map<String, Value>) {
        snapshot_fields(self, view.viewer, view.now, out);
    }

    fn from_legacy(old: &Map<String, Value>) -> Self {
        crate::live::doc::field(old, "polls").unwrap_or_default()
    }

    fn restore<'a>(
        &'a mut self,
        store: &'a dyn ClassroomStore,
        session: &'a LiveSession,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(restore(self, store, session))
    }

    fn pending(&self) -> bool {
        !self.dirty.is_empty()
    }

    fn flush(tx: &mut Locked<'_>) -> Result<bool, ApiError> {
        let polls = tx.get::<PollsState>()?;
        if polls.dirty.is_empty() {
            return Ok(false);
        }
        let ids: Vec<String> = polls.dirty.iter().cloned().collect();
        let mut public = Map::new();
        let mut staff = Map::new();
        let mut quiz = false;
        for id in &ids {
            let p = polls.find(id);
            quiz |= p.is_some_and(|p| p.correct.is_some());
            public.insert(
                id.clone(),
                p.filter(|p| p.state != PollState::Draft)
                    .map_or(Value::Null, |p| p.tally(false)),
            );
            staff.insert(id.clone(), p.map_or(Value::Null, |p| p.tally(true)));
        }
        let mut staff_data = json!({ "tallies": staff });
        if quiz {
            staff_data["leaderboard"] = polls.leaderboard();
        }
        tx.apply::<PollsState>(PollsChange::Tallied { ids })?;
        tx.publish(Audience::All, "poll.tally", json!({ "tallies": public }))?;
        tx.notify(Audience::Staff, "poll.tally", staff_data)?;
        Ok(true)
    }

    fn deadlines(&self, out: &mut Vec<(String, i64)>) {
        for p in &self.polls {
            if let (PollState::Open, Some(at)) = (p.state, p.closes_at) {
                out.push((p.id.clone(), at));
            }
        }
    }

    fn due(tx: &mut Locked<'_>, key: &str, at: i64) -> Result<(), ApiError> {
        let still = tx
            .get::<PollsState>()?
            .find(key)
            .is_some_and(|p| p.state == PollState::Open && p.closes_at == Some(at));
        if !still {
            return Ok(());
        }
        let was_public = was_public(tx.get::<PollsState>()?, &[key]);
        tx.apply::<PollsState>(PollsChange::Closed {
            id: key.to_owned(),
            at,
        })?;
        tracing::info!(session = %tx.session().id, poll = %key, "timed poll closed");
        queue(tx, &[key], was_public)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    answer: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reveal {
    visible: bool,
}

/// The routes of polls, merged into [`crate::routes`].
pub fn routes() -> Router<ClassroomState> {
    Router::new()
        .route("/classroom/api/sessions/{sid}/polls", post(create))
        .route(
            "/classroom/api/sessions/{sid}/polls/{pid}",
            get(show).delete(remove),
        )
        .route("/classroom/api/sessions/{sid}/polls/{pid}/open", post(open))
        .route("/classroom/api/sessions/{sid}/polls/{pid}/close", post(close_now))
        .route("/classroom/api/sessions/{sid}/polls/{pid}/reveal", post(reveal))
        .route("/classroom/api/sessions/{sid}/polls/{pid}/reset", post(reset))
        .route("/classroom/api/sessions/{sid}/polls/{pid}/answer", post(answer))
}

/// The polls fields of a snapshot for `viewer`: `polls` (views by id; staff
/// see drafts too), and `leaderboard` for staff, `my_poll_answers` and
/// `my_score` for everyone else.
fn snapshot_fields(state: &PollsState, viewer: &Viewer, now: i64, out: &mut Map<String, Value>) {
    let mut polls = Map::new();
    let mut mine = Map::new();
    let mut score = 0;
    for p in &state.polls {
        if p.state == PollState::Draft && !viewer.staff {
            continue;
        }
        polls.insert(p.id.clone(), p.view(now, viewer.staff));
        if let Some(e) = p.answers.get(&viewer.user_id) {
            let m = p.mine(e, now);
            score += m["score"].as_i64().unwrap_or(0);
            mine.insert(p.id.clone(), m);
        }
    }
    out.insert("polls".into(), Value::Object(polls));
    if viewer.staff {
        out.insert("leaderboard".into(), state.leaderboard());
    } else {
        out.insert("my_poll_answers".into(), Value::Object(mine));
        out.insert("my_score".into(), json!(score));
    }
}

/// Brings a state from an old document up to date with the poll answers
/// written as rows before the session log (answers were rows first, the
/// document saved coalesced): every poll's answers become exactly its rows;
/// names missing are taken from the course roster.
async fn restore(
    state: &mut PollsState,
    store: &dyn ClassroomStore,
    row: &LiveSession,
) -> Result<(), ApiError> {
    if state.polls.is_empty() {
        return Ok(());
    }
    let votes = store.poll_votes_of_session(&row.id).await.map_err(store_error)?;
    let mut by_poll: HashMap<&str, BTreeMap<String, Entry>> = HashMap::new();
    for v in &votes {
        match serde_json::from_str::<model::RowAnswer>(&v.answer) {
            Ok(a) => {
                by_poll.entry(v.poll_id.as_str()).or_default().insert(
                    v.user_id.clone(),
                    Entry {
                        answer: a.answer,
                        at: v.updated_at,
                        elapsed_ms: a.elapsed_ms,
                    },
                );
            }
            Err(e) => {
                tracing::warn!(session = %row.id, poll = %v.poll_id, user = %v.user_id, error = %e, "a poll answer row cannot be read; skipped");
            }
        }
    }
    let mut missing = false;
    for p in &mut state.polls {
        let answers = by_poll.remove(p.id.as_str()).unwrap_or_default();
        if p.answers != answers {
            tracing::info!(session = %row.id, poll = %p.id, rows = answers.len(), doc = p.answers.len(), "poll answers rebuilt from their rows");
            state.dirty.insert(p.id.clone());
        }
        p.answers = answers;
        missing |= p.answers.keys().any(|u| !state.names.contains_key(u));
    }
    if missing {
        for m in store.roster(&row.course_id).await.map_err(store_error)? {
            state.names.entry(m.user_id).or_insert(m.name);
        }
    }
    Ok(())
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::PollNotFound, "there is no such poll in this session")
}

/// The caller's viewer and the session under its lock, for a staff change
/// (refused once the session has ended).
async fn staff_lock<'a>(
    state: &'a ClassroomState,
    sid: &str,
    who: &SignedIn,
) -> Result<(Viewer, Locked<'a>), ApiError> {
    enter(
        state,
        sid,
        who,
        Actor::Staff("run polls"),
        "polls cannot be changed any more; export them instead",
    )
    .await
}

fn find<'p>(state: &'p PollsState, pid: &str) -> Result<&'p Poll, ApiError> {
    state.find(pid).ok_or_else(not_found)
}

/// Whether any of `ids` is a poll the audience sees (not a draft).
fn was_public(state: &PollsState, ids: &[&str]) -> bool {
    ids.iter()
        .any(|id| state.find(id).is_some_and(|p| p.state != PollState::Draft))
}

/// Queues the events of a staff change of the polls `ids`: `polls` on the
/// session's channel with the audience's views (`null`: gone, or a draft),
/// then the same with staff views (and the leaderboard when a quiz changed) on
/// the staff channel. A draft created, changed or deleted is nothing to the
/// audience (`was_public` false and still a draft): only the staff's event.
fn queue(tx: &mut Locked<'_>, ids: &[&str], was_public: bool) -> Result<(), ApiError> {
    let now = now_ms();
    let polls = tx.get::<PollsState>()?;
    let mut public = Map::new();
    let mut staff = Map::new();
    let mut quiz = false;
    for id in ids {
        let p = polls.find(id);
        quiz |= p.is_some_and(|p| p.correct.is_some());
        public.insert(
            (*id).to_owned(),
            p.filter(|p| p.state != PollState::Draft)
                .map_or(Value::Null, |p| p.view(now, false)),
        );
        staff.insert((*id).to_owned(), p.map_or(Value::Null, |p| p.view(now, true)));
    }
    let mut staff_data = json!({ "polls": staff });
    if quiz || ids.iter().any(|id| polls.find(id).is_none()) {
        staff_data["leaderboard"] = polls.leaderboard();
    }
    if public.values().all(Value::is_null) && !was_public {
        tx.publish(Audience::Staff, "polls", staff_data)
    } else {
        tx.publish(Audience::All, "polls", json!({ "polls": public }))?;
        tx.notify(Audience::Staff, "polls", staff_data)
    }
}

/// `POST /classroom/api/sessions/{sid}/polls {kind, question, options?,
/// scale?, correct?, duration_s?}` (staff, until ended): a draft poll; `201`
/// with `poll` (its staff view) and the caller's snapshot.
pub async fn create(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    staff(role, "create polls")?;
    let req: model::NewPoll = json(body).await?;
    let poll = Poll::build(req, generate_id("p_"), now_ms())?;
    let (viewer, mut locked) = staff_lock(&state, &sid, &who).await?;
    if locked.get::<PollsState>()?.polls.len() >= MAX_POLLS {
        return Err(model::invalid(format!(
            "a session holds at most {MAX_POLLS} polls; delete one first"
        )));
    }
    let id = poll.id.clone();
    let view = poll.view(now_ms(), true);
    tracing::info!(session = %sid, poll = %id, kind = poll.kind.as_str(), by = %who.user.id, "poll created");
    locked.apply::<PollsState>(PollsChange::Created(poll))?;
    queue(&mut locked, &[&id], false)?;
    locked.commit().await?;
    let mut answer = snapshot(&locked, &viewer);
    answer["poll"] = view;
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /classroom/api/sessions/{sid}/polls/{pid}` (members): `{poll}`, the
/// caller's view (drafts: staff only). `GET .../polls/{pid}.csv` (staff): the
/// answers as CSV.
pub async fn show(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, pid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    if let Some(pid) = pid.strip_suffix(".csv") {
        staff(role, "export poll answers")?;
        let locked = state.live.read(&sid).await?;
        let polls = locked.get::<PollsState>()?;
        return Ok(csv::file(&sid, find(polls, pid)?, polls));
    }
    let locked = state.live.read(&sid).await?;
    let p = find(locked.get::<PollsState>()?, &pid)?;
    if p.state == PollState::Draft && !role.is_staff() {
        return Err(not_found());
    }
    Ok(Json(json!({ "poll": p.view(now_ms(), role.is_staff()) })).into_response())
}

/// `POST /classroom/api/sessions/{sid}/polls/{pid}/open` (staff, until
/// ended): a draft or closed poll takes answers; a poll open before closes in
/// the same event. With a timer, it closes by itself `duration_s` later.
pub async fn open(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, pid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (viewer, mut locked) = staff_lock(&state, &sid, &who).await?;
    let now = now_ms();
    let polls = locked.get::<PollsState>()?;
    if find(polls, &pid)?.is_open(now) {
        return Ok(Json(snapshot(&locked, &viewer)).into_response());
    }
    let mut changed: Vec<String> = vec![pid.clone()];
    changed.extend(
        polls
            .polls
            .iter()
            .filter(|p| p.state == PollState::Open && p.id != pid)
            .map(|p| p.id.clone()),
    );
    let ids: Vec<&str> = changed.iter().map(String::as_str).collect();
    let was_public = was_public(polls, &ids);
    locked.apply::<PollsState>(PollsChange::Opened {
        id: pid.clone(),
        at: now,
    })?;
    tracing::info!(session = %sid, poll = %pid, by = %who.user.id, "poll opened");
    queue(&mut locked, &ids, was_public)?;
    locked.commit().await?;
    Ok(Json(snapshot(&locked, &viewer)).into_response())
}

/// `POST /classroom/api/sessions/{sid}/polls/{pid}/close` (staff, until
/// ended): no more answers.
pub async fn close_now(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, pid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (viewer, mut locked) = staff_lock(&state, &sid, &who).await?;
    if find(locked.get::<PollsState>()?, &pid)?.state != PollState::Open {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            "the poll is not open; open it first",
        ));
    }
    locked.apply::<PollsState>(PollsChange::Closed {
        id: pid.clone(),
        at: now_ms(),
    })?;
    tracing::info!(session = %sid, poll = %pid, by = %who.user.id, "poll closed");
    queue(&mut locked, &[&pid], true)?;
    locked.commit().await?;
    Ok(Json(snapshot(&locked, &viewer)).into_response())
}

/// `POST /classroom/api/sessions/{sid}/polls/{pid}/reveal {visible}` (staff,
/// until ended): results shown to the audience, or hidden again.
pub async fn reveal(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, pid)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    staff(role, "show or hide poll results")?;
    let req: Reveal = json(body).await?;
    let (viewer, mut locked) = staff_lock(&state, &sid, &who).await?;
    let polls = locked.get::<PollsState>()?;
    if find(polls, &pid)?.visible != req.visible {
        let was_public = was_public(polls, &[&pid]);
        locked.apply::<PollsState>(PollsChange::Shown {
            id: pid.clone(),
            visible: req.visible,
        })?;
        tracing::info!(session = %sid, poll = %pid, visible = req.visible, by = %who.user.id, "poll results shown or hidden");
        queue(&mut locked, &[&pid], was_public)?;
        locked.commit().await?;
    }
    Ok(Json(snapshot(&locked, &viewer)).into_response())
}

/// `POST /classroom/api/sessions/{sid}/polls/{pid}/reset` (staff, until
/// ended): every answer deleted, tallies back to zero.
pub async fn reset(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, pid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    clear(&state, &who, &sid, &pid, false).await
}

/// `DELETE /classroom/api/sessions/{sid}/polls/{pid}` (staff, until ended):
/// the poll and its answers.
pub async fn remove(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, pid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    clear(&state, &who, &sid, &pid, true).await
}

/// Deletes the answers of poll `pid`, and the poll itself when `delete`;
/// answers the caller's snapshot.
async fn clear(
    state: &ClassroomState,
    who: &SignedIn,
    sid: &str,
    pid: &str,
    delete: bool,
) -> Result<Response, ApiError> {
    let (viewer, mut locked) = staff_lock(state, sid, who).await?;
    let was_public = was_public(locked.get::<PollsState>()?, &[pid]);
    find(locked.get::<PollsState>()?, pid)?;
    let id = pid.to_owned();
    locked.apply::<PollsState>(if delete {
        PollsChange::Deleted { id }
    } else {
        PollsChange::Reset { id }
    })?;
    tracing::info!(session = %sid, poll = %pid, by = %who.user.id, deleted = delete, "poll answers cleared");
    queue(&mut locked, &[pid], was_public)?;
    locked.commit().await?;
    Ok(Json(snapshot(&locked, &viewer)).into_response())
}

/// `POST /classroom/api/sessions/{sid}/polls/{pid}/answer {answer}`
/// (students, while live and the poll is open): one answer per student; a
/// second one replaces the first. Answers `{my_poll_answers:{pid: mine}}`.
/// Publishes nothing itself: the tallies follow in a coalesced `poll.tally`.
pub async fn answer(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, pid)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: AnswerBody = json(body).await?;
    let role = session_role(&state, &sid, &who).await?;
    if role != Role::Student {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only students answer polls; staff and observers see the results",
        ));
    }
    let mut locked = state.live.lock(&sid).await?;
    let now_state = locked.state();
    if now_state != LiveState::Live {
        return Err(crate::sessions::invalid_state(
            now_state,
            "polls are answered only while it is live",
        ));
    }
    let now = now_ms();
    let p = find(locked.get::<PollsState>()?, &pid)?;
    if p.state == PollState::Draft {
        return Err(not_found());
    }
    if !p.is_open(now) {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            if p.state == PollState::Open {
                "time is up: the poll no longer takes answers"
            } else {
                "the poll is closed; answers can no longer be given or changed"
            },
        ));
    }
    let parsed = p.parse_answer(&req.answer)?;
    if let Some(e) = p.answers.get(&who.user.id) {
        if e.answer == parsed {
            let mine = p.mine(e, now);
            return Ok(Json(json!({ "my_poll_answers": { &pid: mine } })).into_response());
        }
    }
    if !state
        .live
        .within_rate(&who.user.id, "poll_answer", ANSWERS_PER_MINUTE)
    {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("at most {ANSWERS_PER_MINUTE} answers a minute; wait a little"),
        ));
    }
    let entry = Entry {
        answer: parsed,
        at: now,
        elapsed_ms: (now - p.opened_at.unwrap_or(now)).max(0),
    };
    let mine = p.mine(&entry, now);
    locked.apply::<PollsState>(PollsChange::Answered {
        id: pid.clone(),
        user_id: who.user.id.clone(),
        name: who.user.name.clone(),
        entry,
    })?;
    locked.commit().await?;
    drop(locked);
    Ok(Json(json!({ "my_poll_answers": { &pid: mine } })).into_response())
}
