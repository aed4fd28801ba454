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
//! `class:{sid}.staff`, document and cursor saved.
//!
//! **The hot path: answers.** Thousands of students answer within seconds,
//! so an answer publishes nothing and does not save the document: under the
//! session's lock it writes its row (`class_poll_votes`, one per user and
//! poll: that makes it durable), puts it in the document in memory
//! ([`Locked::stage`]) and, unless one is pending, schedules a flush
//! [`live::COALESCE_WINDOW`] later ([`Live::coalesce`]). The flush takes the lock and commits ONE
//! `poll.tally` event with the tallies of the polls whose answers changed
//! (which saves the document), then notifies the staff channel. So a session
//! publishes at most 4 tally events a second whatever its audience.
//! [`on_load`] rebuilds every poll's answers from the rows, so a crash
//! between an answer and its flush loses nothing.
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

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use herald_protocol::ErrorCode;
use herald_server::error::ApiError;
use herald_store::classroom::{generate_id, PollVote};
use herald_store::{LiveState, Role};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::auth::SignedIn;
use crate::live::{self, Doc, Live, Locked};
use crate::sessions::{session_role, snapshot, staff, Viewer};
use crate::{json, store_error, ClassroomState};

pub use model::{Answer, Answers, Entry, Names, Poll, PollKind, PollState, PollsState, SharedMap};

/// Polls a session may hold.
pub const MAX_POLLS: usize = 50;
/// Answers (and changes of answer) a user may send per minute (per node).
pub const ANSWERS_PER_MINUTE: usize = 30;

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
        .route("/classroom/api/sessions/{sid}/polls/{pid}/close", post(close))
        .route("/classroom/api/sessions/{sid}/polls/{pid}/reveal", post(reveal))
        .route("/classroom/api/sessions/{sid}/polls/{pid}/reset", post(reset))
        .route("/classroom/api/sessions/{sid}/polls/{pid}/answer", post(answer))
}

/// The polls fields of a snapshot for `viewer`: `polls` (views by id; staff
/// see drafts too), and `leaderboard` for staff, `my_poll_answers` and
/// `my_score` for everyone else.
pub(crate) fn snapshot_fields(doc: &Doc, viewer: &Viewer, out: &mut Map<String, Value>) {
    let now = live::now_ms();
    let mut polls = Map::new();
    let mut mine = Map::new();
    let mut score = 0;
    for p in &doc.polls.polls {
        if p.state == PollState::Draft && !viewer.staff {
            continue;
        }
        polls.insert(p.id.clone(), p.view(now, viewer.staff));
        if let Some(e) = p.answers.get(&viewer.user_id) {
            let m = p.mine(&e, now);
            score += m["score"].as_i64().unwrap_or(0);
            mine.insert(p.id.clone(), m);
        }
    }
    out.insert("polls".into(), Value::Object(polls));
    if viewer.staff {
        out.insert("leaderboard".into(), doc.polls.leaderboard());
    } else {
        out.insert("my_poll_answers".into(), Value::Object(mine));
        out.insert("my_score".into(), json!(score));
    }
}

/// Brings a document loaded from the store up to date with the poll answers
/// saved after it (answers are rows first, the document is saved coalesced):
/// every poll's answers become exactly its rows; names missing are taken from
/// the course roster.
///
/// # Errors
/// `store_unavailable`.
pub(crate) async fn on_load(
    store: &dyn herald_store::ClassroomStore,
    row: &herald_store::LiveSession,
    doc: &mut Doc,
) -> Result<(), ApiError> {
    if doc.polls.polls.is_empty() {
        return Ok(());
    }
    let votes = store.poll_votes_of_session(&row.id).await.map_err(store_error)?;
    let mut by_poll: std::collections::HashMap<&str, std::collections::BTreeMap<String, Entry>> =
        std::collections::HashMap::new();
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
    for p in &mut doc.polls.polls {
        let answers = by_poll.remove(p.id.as_str()).unwrap_or_default();
        if *p.answers.read() != answers {
            tracing::info!(session = %row.id, poll = %p.id, rows = answers.len(), doc = p.answers.len(), "poll answers rebuilt from their rows");
            doc.polls.dirty.insert(p.id.clone());
        }
        // New answers in any case: never share them with a copy loaded before.
        p.answers = Answers::new(answers);
        missing |= p.answers.read().keys().any(|u| !doc.polls.names.contains_key(u));
    }
    if missing {
        for m in store.roster(&row.course_id).await.map_err(store_error)? {
            if !doc.polls.names.contains_key(&m.user_id) {
                doc.polls.names.insert(m.user_id, m.name);
            }
        }
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidPoll, message)
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
    let role = session_role(state, sid, who).await?;
    staff(role, "run polls")?;
    let locked = state.live.lock(sid).await?;
    if locked.doc().state == LiveState::Ended {
        return Err(crate::sessions::invalid_state(
            LiveState::Ended,
            "polls cannot be changed any more; export them instead",
        ));
    }
    Ok((Viewer::new(who, role), locked))
}

fn index_of(doc: &Doc, pid: &str) -> Result<usize, ApiError> {
    doc.polls
        .polls
        .iter()
        .position(|p| p.id == pid)
        .ok_or_else(not_found)
}

/// Publishes a staff change of the polls `ids`: `polls` on the session's
/// channel with the audience's views (`null`: gone, or a draft; nothing at all
/// when only drafts changed: the document is saved without an event), then
/// the same with staff views (and the leaderboard when a quiz changed) on the
/// staff channel.
async fn publish(locked: &mut Locked<'_>, mut next: Doc, ids: &[String]) -> Result<(), ApiError> {
    let now = live::now_ms();
    let mut public = Map::new();
    let mut staff = Map::new();
    let mut quiz = false;
    for id in ids {
        next.polls.dirty.remove(id);
        let p = next.polls.find(id);
        quiz |= p.is_some_and(|p| p.correct.is_some());
        public.insert(
            id.clone(),
            p.filter(|p| p.state != PollState::Draft)
                .map_or(Value::Null, |p| p.view(now, false)),
        );
        staff.insert(id.clone(), p.map_or(Value::Null, |p| p.view(now, true)));
    }
    let mut staff_data = json!({ "polls": staff });
    if quiz || ids.iter().any(|id| next.polls.find(id).is_none()) {
        staff_data["leaderboard"] = next.polls.leaderboard();
    }
    // A draft created, changed or deleted is nothing to the audience: no
    // event on their channel (not even a poll id), only the staff's.
    let was_public = |id: &String| {
        locked
            .doc()
            .polls
            .find(id)
            .is_some_and(|p| p.state != PollState::Draft)
    };
    if public.values().all(Value::is_null) && !ids.iter().any(was_public) {
        locked.stage(next);
        locked.save().await?;
    } else {
        locked.commit(next, "polls", json!({ "polls": public })).await?;
    }
    notify_staff(locked, "polls", staff_data).await;
    Ok(())
}

/// Publishes `data` on the staff channel. The document has it already (a
/// staff snapshot shows it), so a failure is logged, not answered.
async fn notify_staff(locked: &Locked<'_>, event: &str, data: Value) {
    let sid = locked.session().id.clone();
    let result = match live::staff_channel(&sid) {
        Ok(channel) => locked.notify(&channel, event, data).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!(session = %sid, event, error = ?e, "poll event not delivered to the staff channel");
    }
}

/// Starts the task that closes `pid` when its timer runs out, unless one is
/// waiting already; marks it in `next`.
fn arm_timer(live: &Arc<Live>, sid: &str, next: &mut Doc, pid: &str) {
    let Some(p) = next.polls.find_mut(pid) else {
        return;
    };
    let (PollState::Open, Some(closes_at), false) = (p.state, p.closes_at, p.timer_armed) else {
        return;
    };
    p.timer_armed = true;
    let live = live.clone();
    let sid = sid.to_owned();
    let pid = pid.to_owned();
    tokio::spawn(async move {
        let wait = u64::try_from(closes_at - live::now_ms()).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        if let Err(e) = close_on_time(&live, &sid, &pid, closes_at).await {
            tracing::warn!(session = %sid, poll = %pid, error = ?e, "a timed poll could not be closed on time; answers are refused anyway");
        }
    });
}

/// Arms the timers of the session's open timed polls that have none on this
/// node (after a restart, or a document another node changed): run once by
/// the session's watcher ([`crate::here`]) when it starts.
///
/// # Errors
/// Those of [`Live::lock`].
pub(crate) async fn rearm_timers(live: &Arc<Live>, sid: &str) -> Result<(), ApiError> {
    let mut locked = live.lock(sid).await?;
    let waiting: Vec<String> = locked
        .doc()
        .polls
        .polls
        .iter()
        .filter(|p| p.state == PollState::Open && p.closes_at.is_some() && !p.timer_armed)
        .map(|p| p.id.clone())
        .collect();
    if waiting.is_empty() {
        return Ok(());
    }
    let mut next = locked.doc().clone();
    for pid in &waiting {
        arm_timer(live, sid, &mut next, pid);
    }
    locked.stage(next);
    Ok(())
}

async fn close_on_time(live: &Live, sid: &str, pid: &str, closes_at: i64) -> Result<(), ApiError> {
    let mut locked = live.lock(sid).await?;
    let mut next = locked.doc().clone();
    let Some(p) = next.polls.find_mut(pid) else {
        return Ok(());
    };
    if p.state != PollState::Open || p.closes_at != Some(closes_at) {
        return Ok(());
    }
    p.state = PollState::Closed;
    p.closed_at = Some(closes_at);
    p.closes_at = None;
    p.timer_armed = false;
    tracing::info!(session = %sid, poll = %pid, "timed poll closed");
    publish(&mut locked, next, &[pid.to_owned()]).await
}

/// Commits ONE `poll.tally` with the tallies of the polls whose answers
/// changed since the last one, then notifies the staff channel (the
/// [`Flush`](live::Flush) of answers, run by [`Live::coalesce`]).
fn flush_answers<'a>(
    live: &'a Live,
    sid: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ApiError>> + Send + 'a>> {
    Box::pin(flush(live, sid))
}

async fn flush(live: &Live, sid: &str) -> Result<(), ApiError> {
    let mut locked = live.lock(sid).await?;
    if locked.doc().polls.dirty.is_empty() {
        return Ok(());
    }
    let mut next = locked.doc().clone();
    let dirty = std::mem::take(&mut next.polls.dirty);
    let mut public = Map::new();
    let mut staff = Map::new();
    let mut quiz = false;
    for id in &dirty {
        let p = next.polls.find(id);
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
        staff_data["leaderboard"] = next.polls.leaderboard();
    }
    match locked
        .commit(next, "poll.tally", json!({ "tallies": public }))
        .await
    {
        Ok(()) => {}
        // Published (the document moved on), only not saved: the next change saves it.
        Err(e) if locked.doc().polls.dirty.is_empty() => {
            tracing::warn!(session = %sid, error = ?e, "poll tallies published but not saved yet");
        }
        Err(e) => return Err(e),
    }
    notify_staff(&locked, "poll.tally", staff_data).await;
    Ok(())
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
    let poll = Poll::build(req, generate_id("p_"), live::now_ms()).map_err(invalid)?;
    let (viewer, mut locked) = staff_lock(&state, &sid, &who).await?;
    if locked.doc().polls.polls.len() >= MAX_POLLS {
        return Err(invalid(format!(
            "a session holds at most {MAX_POLLS} polls; delete one first"
        )));
    }
    let mut next = locked.doc().clone();
    let id = poll.id.clone();
    let view = poll.view(live::now_ms(), true);
    tracing::info!(session = %sid, poll = %id, kind = poll.kind.as_str(), by = %who.user.id, "poll created");
    next.polls.polls.push(poll);
    publish(&mut locked, next, std::slice::from_ref(&id)).await?;
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
        let locked = state.live.lock(&sid).await?;
        let doc = locked.doc();
        let p = doc.polls.find(pid).ok_or_else(not_found)?;
        return Ok(csv::file(&sid, p, &doc.polls));
    }
    let locked = state.live.lock(&sid).await?;
    let p = locked.doc().polls.find(&pid).ok_or_else(not_found)?;
    if p.state == PollState::Draft && !role.is_staff() {
        return Err(not_found());
    }
    Ok(Json(json!({ "poll": p.view(live::now_ms(), role.is_staff()) })).into_response())
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
    let mut next = locked.doc().clone();
    let i = index_of(&next, &pid)?;
    let now = live::now_ms();
    if next.polls.polls[i].is_open(now) {
        return Ok(Json(snapshot(&locked, &viewer)).into_response());
    }
    let mut changed = vec![pid.clone()];
    for p in next.polls.polls.iter_mut() {
        if p.state == PollState::Open {
            p.closed_at = Some(p.closes_at.map_or(now, |c| c.min(now)));
            p.state = PollState::Closed;
            p.closes_at = None;
            p.timer_armed = false;
            if p.id != pid {
                changed.push(p.id.clone());
            }
        }
    }
    let p = &mut next.polls.polls[i];
    p.state = PollState::Open;
    p.opened_at = Some(now);
    p.closed_at = None;
    p.closes_at = p.duration_s.map(|d| now + i64::from(d) * 1000);
    arm_timer(&state.live, &sid, &mut next, &pid);
    tracing::info!(session = %sid, poll = %pid, by = %who.user.id, "poll opened");
    publish(&mut locked, next, &changed).await?;
    Ok(Json(snapshot(&locked, &viewer)).into_response())
}

/// `POST /classroom/api/sessions/{sid}/polls/{pid}/close` (staff, until
/// ended): no more answers.
pub async fn close(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, pid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (viewer, mut locked) = staff_lock(&state, &sid, &who).await?;
    let mut next = locked.doc().clone();
    let i = index_of(&next, &pid)?;
    let now = live::now_ms();
    let p = &mut next.polls.polls[i];
    if p.state != PollState::Open {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            "the poll is not open; open it first",
        ));
    }
    p.closed_at = Some(p.closes_at.map_or(now, |c| c.min(now)));
    p.state = PollState::Closed;
    p.closes_at = None;
    p.timer_armed = false;
    tracing::info!(session = %sid, poll = %pid, by = %who.user.id, "poll closed");
    publish(&mut locked, next, &[pid]).await?;
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
    let mut next = locked.doc().clone();
    let i = index_of(&next, &pid)?;
    if next.polls.polls[i].visible == req.visible {
        return Ok(Json(snapshot(&locked, &viewer)).into_response());
    }
    next.polls.polls[i].visible = req.visible;
    tracing::info!(session = %sid, poll = %pid, visible = req.visible, by = %who.user.id, "poll results shown or hidden");
    publish(&mut locked, next, &[pid]).await?;
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

/// Deletes the answers of poll `pid` (rows first), and the poll itself when
/// `delete`; answers the caller's snapshot.
async fn clear(
    state: &ClassroomState,
    who: &SignedIn,
    sid: &str,
    pid: &str,
    delete: bool,
) -> Result<Response, ApiError> {
    let (viewer, mut locked) = staff_lock(state, sid, who).await?;
    let mut next = locked.doc().clone();
    let i = index_of(&next, pid)?;
    locked
        .store()
        .delete_poll_votes(sid, pid)
        .await
        .map_err(store_error)?;
    if delete {
        next.polls.polls.remove(i);
    } else {
        next.polls.polls[i].answers = Answers::default();
    }
    tracing::info!(session = %sid, poll = %pid, by = %who.user.id, deleted = delete, "poll answers cleared");
    publish_or_stage(state, &mut locked, next, pid).await?;
    Ok(Json(snapshot(&locked, &viewer)).into_response())
}

/// Publishes a change whose rows are gone already (reset, delete); if the
/// event cannot be published, the document still follows the rows, and a
/// `poll.tally` tells screens later.
async fn publish_or_stage(
    state: &ClassroomState,
    locked: &mut Locked<'_>,
    next: Doc,
    pid: &str,
) -> Result<(), ApiError> {
    let mut fallback = next.clone();
    match publish(locked, next, &[pid.to_owned()]).await {
        Ok(()) => Ok(()),
        Err(e) if e.0.code == ErrorCode::StoreUnavailable => Err(e),
        Err(e) => {
            fallback.polls.dirty.insert(pid.to_owned());
            locked.stage(fallback);
            state
                .live
                .coalesce(&locked.session().id, "poll_answers", flush_answers);
            Err(e)
        }
    }
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
    let now_state = locked.doc().state;
    if now_state != LiveState::Live {
        return Err(crate::sessions::invalid_state(
            now_state,
            "polls are answered only while it is live",
        ));
    }
    let now = live::now_ms();
    let i = index_of(locked.doc(), &pid)?;
    let p = &locked.doc().polls.polls[i];
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
    let parsed = p.parse_answer(&req.answer).map_err(invalid)?;
    if let Some(e) = p.answers.get(&who.user.id) {
        if e.answer == parsed {
            let mine = p.mine(&e, now);
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
    let row_answer = serde_json::to_string(&model::RowAnswer {
        answer: entry.answer.clone(),
        elapsed_ms: entry.elapsed_ms,
    })
    .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot encode the answer: {e}")))?;
    // The row first: it is what makes the answer last.
    locked
        .store()
        .save_poll_vote(&PollVote {
            poll_id: pid.clone(),
            session_id: sid.clone(),
            user_id: who.user.id.clone(),
            answer: row_answer,
            created_at: now,
            updated_at: now,
        })
        .await
        .map_err(store_error)?;
    let mut next = locked.doc().clone();
    let polls = &mut next.polls;
    if polls.names.get(&who.user.id).as_ref() != Some(&who.user.name) {
        polls.names.insert(who.user.id.clone(), who.user.name.clone());
    }
    let p = &polls.polls[i];
    // In place (shared by every copy of the document), staged right below.
    p.answers.insert(who.user.id.clone(), entry.clone());
    let mine = p.mine(&entry, now);
    polls.dirty.insert(pid.clone());
    // A timer lost with a restart is armed again by the first answer.
    arm_timer(&state.live, &sid, &mut next, &pid);
    locked.stage(next);
    state.live.coalesce(&sid, "poll_answers", flush_answers);
    Ok(Json(json!({ "my_poll_answers": { &pid: mine } })).into_response())
}
