//! Questions and answers during a live session (the Slido part).
//!
//! | who | may |
//! |---|---|
//! | student | ask (rate limited), edit or withdraw their own question until it is answered |
//! | student, co_trainer, trainer | upvote someone else's question once, take the vote back |
//! | co_trainer, trainer | change a question's state, answer it (publicly, privately, live), toggle the Q&A settings, export |
//! | observer | watch |
//!
//! Every change goes through the sequencer ([`crate::live`]): the rows that
//! must last first (`class_questions`, `class_question_votes`), then ONE event
//! `questions` on `class:{sid}` whose data holds only **public views**, then the
//! document and cursor are saved. A private answer also goes to the asker's
//! personal channel `class:{sid}#{user_id}` (event `answer.private`).
//!
//! **Who sees what.** The document keeps everything; screens get views:
//! - the public view of a question (events, everyone's snapshot) never has the
//!   text of a pending question (it is not in `questions` at all: only the
//!   count `held_back`), never the author of an anonymous one (to staff
//!   neither), never a private answer's text;
//! - a caller's snapshot adds what is theirs or their role's: `pending` (their
//!   own pending questions; all of them for staff), `my_questions`,
//!   `my_votes`, `my_answers` (private answers to their questions);
//! - staff reload their snapshot when an event's `held_back_rev` differs from
//!   theirs (a pending question changed, whose text is in no event).
//!
//! **Small answers.** A student's actions (ask, edit, withdraw, vote, unvote)
//! are many and frequent, so their answer is not the snapshot but
//! `{question, mine}` ([`own_answer`]): the question's view for the caller
//! (`null` once withdrawn) and the caller's own fields of the snapshot, built
//! in one pass over the questions with no other view, the lock dropped before
//! it is sent. Staff's actions (rare) answer the whole snapshot.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_protocol::{ChannelName, ErrorCode};
use herald_server::error::ApiError;
use herald_store::classroom::{generate_id, QuestionRow};
use herald_store::Role;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::auth::SignedIn;
use crate::live::{self, AnswerMode, Doc, Locked, Question, QuestionState, NAMESPACE};
use crate::sessions::{session_role, snapshot, staff, Viewer};
use crate::{json, store_error, ClassroomState};

/// Longest question, in characters (after trimming).
pub const MAX_QUESTION_CHARS: usize = 500;
/// Longest answer, in characters (after trimming).
pub const MAX_ANSWER_CHARS: usize = 2000;
/// Questions a user may ask per minute (per node).
pub const ASKS_PER_MINUTE: usize = 5;
/// Votes (and vote removals) a user may cast per minute (per node).
pub const VOTES_PER_MINUTE: usize = 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ask {
    text: String,
    #[serde(default)]
    anonymous: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Edit {
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetState {
    state: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    mode: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    anonymous: Option<bool>,
    #[serde(default)]
    moderation: Option<bool>,
}

/// The public view of a question: what everyone may see.
pub(crate) fn public_view(q: &Question) -> Value {
    json!({
        "id": q.id,
        "text": q.text,
        "votes": q.voters.len(),
        "state": q.state,
        "author": if q.anonymous { None } else { Some(&q.author_name) },
        "answer_mode": q.answer_mode,
        "answer": if q.answer_mode == Some(AnswerMode::Public) { q.answer.as_deref() } else { None },
        "created_at": q.created_at,
    })
}

/// What of the questions is a viewer's own (or their role's): the snapshot's
/// fields `pending`, `my_questions`, `my_votes` and `my_answers`, gathered one
/// question at a time.
#[derive(Default)]
struct Own {
    pending: Map<String, Value>,
    questions: Vec<Value>,
    votes: Vec<Value>,
    answers: Map<String, Value>,
}

impl Own {
    /// Adds what of `q` is `viewer`'s; returns the view of `q` when it is a
    /// pending question `viewer` may see (built once, for the caller to reuse).
    fn add<'a>(&'a mut self, q: &Question, viewer: &Viewer) -> Option<&'a Value> {
        let own = q.author_id == viewer.user_id;
        if own {
            self.questions.push(json!(q.id));
            if q.answer_mode == Some(AnswerMode::Private) {
                self.answers.insert(q.id.clone(), json!(q.answer));
            }
        }
        if q.voters.contains(&viewer.user_id) {
            self.votes.push(json!(q.id));
        }
        if q.state == QuestionState::Pending && (own || viewer.staff) {
            self.pending.insert(q.id.clone(), public_view(q));
            return self.pending.get(&q.id);
        }
        None
    }

    fn into_fields(self, out: &mut Map<String, Value>) {
        out.insert("pending".into(), Value::Object(self.pending));
        out.insert("my_questions".into(), Value::Array(self.questions));
        out.insert("my_votes".into(), Value::Array(self.votes));
        out.insert("my_answers".into(), Value::Object(self.answers));
    }
}

/// The Q&A fields of a snapshot for `viewer`.
pub(crate) fn snapshot_fields(doc: &Doc, viewer: &Viewer, out: &mut Map<String, Value>) {
    let mut public = Map::new();
    let mut own = Own::default();
    for q in &doc.questions {
        own.add(q, viewer);
        if q.state != QuestionState::Pending {
            public.insert(q.id.clone(), public_view(q));
        }
    }
    out.insert("qa".into(), json!(doc.qa));
    out.insert("questions".into(), Value::Object(public));
    out.insert("held_back".into(), json!(held_back(doc)));
    out.insert("held_back_rev".into(), json!(doc.held_back_rev));
    own.into_fields(out);
}

/// The answer of a student's action on question `qid` (ask, edit, withdraw,
/// vote, unvote): `{question, mine}`, where `question` is its view for
/// `viewer` (`null`: withdrawn, or pending and not theirs) and `mine` holds
/// the snapshot's `my_questions`, `my_votes`, `my_answers` and `pending` for
/// `viewer`. One pass over the questions, no view but the caller's own.
pub(crate) fn own_answer(doc: &Doc, viewer: &Viewer, qid: &str) -> Value {
    let mut own = Own::default();
    let mut question = Value::Null;
    for q in &doc.questions {
        let pending_view = own.add(q, viewer);
        if q.id == qid {
            if let Some(v) = pending_view {
                question = v.clone();
            } else if q.state != QuestionState::Pending {
                question = public_view(q);
            }
        }
    }
    let mut mine = Map::new();
    own.into_fields(&mut mine);
    json!({ "question": question, "mine": mine })
}

fn held_back(doc: &Doc) -> usize {
    doc.questions
        .iter()
        .filter(|q| q.state == QuestionState::Pending)
        .count()
}

/// The data of a `questions` event: the new public view of each question in
/// `ids` (`null`: gone from the public list), `held_back` and `held_back_rev`.
fn event_data(doc: &Doc, ids: &[&str]) -> Value {
    let mut changed = Map::new();
    for id in ids {
        let view = doc
            .questions
            .iter()
            .find(|q| q.id == *id && q.state != QuestionState::Pending)
            .map_or(Value::Null, public_view);
        changed.insert((*id).to_owned(), view);
    }
    json!({ "questions": changed, "held_back": held_back(doc), "held_back_rev": doc.held_back_rev })
}

/// The asker's personal channel: `class:{sid}#{user_id}`.
pub(crate) fn personal_channel(sid: &str, user_id: &str) -> Result<ChannelName, ApiError> {
    ChannelName::parse(&format!("{NAMESPACE}:{sid}#{user_id}")).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("no personal channel for this user: {e}"),
        )
    })
}

fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::QuestionNotFound,
        "there is no such question in this session",
    )
}

fn invalid(message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuestion, message)
}

fn valid_text(raw: &str, max: usize, what: &str) -> Result<String, ApiError> {
    let text = raw.trim();
    if text.is_empty() || text.chars().count() > max {
        return Err(invalid(&format!("{what} must be 1 to {max} characters")));
    }
    Ok(text.to_owned())
}

fn row_of(sid: &str, q: &Question) -> QuestionRow {
    QuestionRow {
        id: q.id.clone(),
        session_id: sid.to_owned(),
        author_id: q.author_id.clone(),
        text: q.text.clone(),
        anonymous: q.anonymous,
        state: q.state.as_str().to_owned(),
        answer_mode: q.answer_mode.map(|m| m.as_str().to_owned()),
        answer: q.answer.clone(),
        created_at: q.created_at,
        updated_at: q.updated_at,
    }
}

/// The caller's role and the session under its lock, refused unless the
/// session is `live` (students' actions) or not `ended` (staff's).
async fn open<'a>(
    state: &'a ClassroomState,
    sid: &str,
    who: &SignedIn,
    staff_action: bool,
) -> Result<(Viewer, Locked<'a>), ApiError> {
    let role = session_role(state, sid, who).await?;
    let viewer = Viewer::new(who, role);
    if staff_action {
        staff(role, "moderate and answer questions")?;
    }
    let locked = state.live.lock(sid).await?;
    crate::sessions::allowed_now(
        locked.doc().state,
        staff_action,
        "questions cannot be changed any more; export them instead",
        "questions are asked, edited and voted on only while it is live",
    )?;
    Ok((viewer, locked))
}

/// The index of question `qid` as `viewer` may see it (a pending question is
/// visible to staff and its author only).
fn find(doc: &Doc, qid: &str, viewer: &Viewer) -> Result<usize, ApiError> {
    doc.questions
        .iter()
        .position(|q| {
            q.id == qid
                && (q.state != QuestionState::Pending || viewer.staff || q.author_id == viewer.user_id)
        })
        .ok_or_else(not_found)
}

/// Commits `next` with ONE `questions` event for `ids`.
async fn publish(locked: &mut Locked<'_>, next: Doc, ids: &[&str]) -> Result<(), ApiError> {
    let data = event_data(&next, ids);
    locked.commit(next, "questions", data).await
}

/// Commits `next` (see [`publish`]) and answers staff's whole snapshot.
async fn commit(
    locked: &mut Locked<'_>,
    next: Doc,
    ids: &[&str],
    viewer: &Viewer,
) -> Result<Response, ApiError> {
    publish(locked, next, ids).await?;
    Ok(Json(snapshot(locked, viewer)).into_response())
}

/// A student's action done: [`own_answer`] built under the lock, which is
/// released before the answer is encoded and sent.
fn small(locked: Locked<'_>, viewer: &Viewer, qid: &str, status: StatusCode) -> Response {
    let answer = own_answer(locked.doc(), viewer, qid);
    drop(locked);
    (status, Json(answer)).into_response()
}

/// `POST /classroom/api/sessions/{sid}/questions {text, anonymous?}`: ask
/// (students, while live). `pending` when the session moderates questions.
pub async fn ask(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: Ask = json(body).await?;
    let text = valid_text(&req.text, MAX_QUESTION_CHARS, "a question")?;
    let (viewer, mut locked) = open(&state, &sid, &who, false).await?;
    if viewer.role != Role::Student {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only students ask questions in a live session",
        ));
    }
    if req.anonymous && !locked.doc().qa.anonymous {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this session does not allow anonymous questions",
        ));
    }
    if !state.live.within_rate(&who.user.id, "ask", ASKS_PER_MINUTE) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("at most {ASKS_PER_MINUTE} questions a minute; wait a little"),
        ));
    }
    let mut next = locked.doc().clone();
    let now = live::now_ms();
    let pending = next.qa.moderation;
    let q = Question {
        id: generate_id("q_"),
        author_id: who.user.id.clone(),
        author_name: who.user.name.clone(),
        anonymous: req.anonymous,
        text,
        state: if pending {
            QuestionState::Pending
        } else {
            QuestionState::Published
        },
        answer_mode: None,
        answer: None,
        voters: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    locked
        .store()
        .save_question(&row_of(&sid, &q))
        .await
        .map_err(store_error)?;
    if pending {
        next.held_back_rev += 1;
    }
    let id = q.id.clone();
    next.questions.push(q);
    tracing::info!(session = %sid, question = %id, by = %who.user.id, pending, "question asked");
    // Coalesced like votes: the row is written, the document changes now, the
    // event goes out with the other questions of the next quarter second (a
    // burst of 500 questions makes a few events, not 500 to every screen).
    next.questions_dirty.insert(id.clone());
    locked.stage(next);
    state.live.coalesce(&sid, "questions", flush_questions);
    Ok(small(locked, &viewer, &id, StatusCode::CREATED))
}

/// `PATCH /classroom/api/sessions/{sid}/questions/{qid} {text}`: the author
/// edits their question until it is answered or dismissed.
pub async fn edit(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, qid)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: Edit = json(body).await?;
    let text = valid_text(&req.text, MAX_QUESTION_CHARS, "a question")?;
    let (viewer, mut locked) = open(&state, &sid, &who, false).await?;
    let mut next = locked.doc().clone();
    let i = own_open_question(&next, &qid, &viewer, "edited")?;
    let q = &mut next.questions[i];
    if q.text == text {
        return Ok(small(locked, &viewer, &qid, StatusCode::OK));
    }
    q.text = text;
    q.updated_at = live::now_ms();
    let pending = q.state == QuestionState::Pending;
    locked
        .store()
        .save_question(&row_of(&sid, q))
        .await
        .map_err(store_error)?;
    if pending {
        next.held_back_rev += 1;
    }
    publish(&mut locked, next, &[&qid]).await?;
    Ok(small(locked, &viewer, &qid, StatusCode::OK))
}

/// `DELETE /classroom/api/sessions/{sid}/questions/{qid}`: the author withdraws
/// their question (and its votes) until it is answered or dismissed.
pub async fn withdraw(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, qid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (viewer, mut locked) = open(&state, &sid, &who, false).await?;
    let mut next = locked.doc().clone();
    let i = own_open_question(&next, &qid, &viewer, "withdrawn")?;
    let q = next.questions.remove(i);
    locked.store().delete_question(&q.id).await.map_err(store_error)?;
    if q.state == QuestionState::Pending {
        next.held_back_rev += 1;
    }
    publish(&mut locked, next, &[&qid]).await?;
    Ok(small(locked, &viewer, &qid, StatusCode::OK))
}

/// The index of the caller's own question `qid`, refused once answered or
/// dismissed.
fn own_open_question(doc: &Doc, qid: &str, viewer: &Viewer, verb: &str) -> Result<usize, ApiError> {
    let i = find(doc, qid, viewer)?;
    let q = &doc.questions[i];
    if q.author_id != viewer.user_id {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("only its author may have a question {verb}"),
        ));
    }
    if matches!(q.state, QuestionState::Answered | QuestionState::Dismissed) {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "the question is {}; it cannot be {verb} any more",
                q.state.as_str()
            ),
        ));
    }
    Ok(i)
}

/// `POST /classroom/api/sessions/{sid}/questions/{qid}/vote`: upvote once
/// (anyone but the author and observers; a second vote is `409 already_voted`).
pub async fn vote(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, qid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    cast(state, who, sid, qid, true).await
}

/// `DELETE /classroom/api/sessions/{sid}/questions/{qid}/vote`: take your vote
/// back (no vote: no change).
pub async fn unvote(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, qid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    cast(state, who, sid, qid, false).await
}

async fn cast(
    state: ClassroomState,
    who: SignedIn,
    sid: String,
    qid: String,
    up: bool,
) -> Result<Response, ApiError> {
    let (viewer, mut locked) = open(&state, &sid, &who, false).await?;
    if viewer.role == Role::Observer {
        return Err(ApiError::new(ErrorCode::Forbidden, "observers do not vote"));
    }
    let mut next = locked.doc().clone();
    let i = find(&next, &qid, &viewer)?;
    let q = &mut next.questions[i];
    let had = q.voters.contains(&who.user.id);
    if up {
        if q.author_id == who.user.id {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "you cannot upvote your own question",
            ));
        }
        if had {
            return Err(ApiError::new(
                ErrorCode::AlreadyVoted,
                "you have upvoted this question already; DELETE the vote to take it back",
            ));
        }
    } else if !had {
        return Ok(small(locked, &viewer, &qid, StatusCode::OK));
    }
    if !state.live.within_rate(&who.user.id, "vote", VOTES_PER_MINUTE) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("at most {VOTES_PER_MINUTE} votes a minute; wait a little"),
        ));
    }
    // The row first; the document decides (a row left by a failed publish is
    // taken as it is).
    if up {
        locked
            .store()
            .add_vote(&qid, &who.user.id, live::now_ms())
            .await
            .map_err(store_error)?;
        q.voters.push(who.user.id.clone());
    } else {
        locked
            .store()
            .remove_vote(&qid, &who.user.id)
            .await
            .map_err(store_error)?;
        q.voters.retain(|v| *v != who.user.id);
    }
    // Votes are coalesced: the document changes now (snapshots show it), the
    // event goes out with the other votes of the next quarter second.
    next.questions_dirty.insert(qid.clone());
    locked.stage(next);
    state.live.coalesce(&sid, "questions", flush_questions);
    Ok(small(locked, &viewer, &qid, StatusCode::OK))
}

/// Publishes ONE `questions` event with the questions asked or voted on
/// since the last one (the [`Flush`](live::Flush) of asks and votes).
fn flush_questions<'a>(
    live: &'a live::Live,
    sid: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ApiError>> + Send + 'a>> {
    Box::pin(async move {
        let mut locked = live.lock(sid).await?;
        if locked.doc().questions_dirty.is_empty() {
            return Ok(());
        }
        let mut next = locked.doc().clone();
        let dirty = std::mem::take(&mut next.questions_dirty);
        // A burst can change more questions than one event holds: several
        // events of at most EVENT_CHUNK_BYTES of views, the last one saved.
        let mut chunks: Vec<Vec<&str>> = Vec::new();
        let mut size = 0;
        for id in &dirty {
            let bytes = next
                .questions
                .iter()
                .find(|q| q.id == *id)
                .map_or(64, |q| public_view(q).to_string().len());
            match chunks.last_mut() {
                Some(chunk) if size + bytes <= EVENT_CHUNK_BYTES => chunk.push(id),
                _ => {
                    chunks.push(vec![id]);
                    size = 0;
                }
            }
            size += bytes;
        }
        let last = chunks.pop().unwrap_or_default();
        for chunk in &chunks {
            // Still dirty until the last one is out: a failure part way
            // publishes them all again (replacing the same views).
            let mut interim = next.clone();
            interim.questions_dirty = dirty.clone();
            let data = event_data(&next, chunk);
            locked.publish_unsaved(interim, "questions", data).await?;
        }
        let data = event_data(&next, &last);
        locked.commit(next, "questions", data).await
    })
}

/// The most question views one `questions` event carries, in bytes of JSON.
const EVENT_CHUNK_BYTES: usize = 32 * 1024;

/// Brings a document loaded from the store up to date with the question and
/// vote rows (asks and votes are rows first, the document is saved with the
/// coalesced event, so a crash in between loses nothing): a question whose
/// row is newer than the document is added, every question's voters are its
/// vote rows.
///
/// # Errors
/// `store_unavailable`.
pub(crate) async fn on_load(
    store: &dyn herald_store::ClassroomStore,
    row: &herald_store::LiveSession,
    doc: &mut Doc,
) -> Result<(), ApiError> {
    let rows = store.questions_of_session(&row.id).await.map_err(store_error)?;
    if rows.is_empty() && doc.questions.is_empty() {
        return Ok(());
    }
    let known: std::collections::HashSet<String> = doc.questions.iter().map(|q| q.id.clone()).collect();
    for r in rows.into_iter().filter(|r| !known.contains(&r.id)) {
        let Some(state) = QuestionState::parse(&r.state) else {
            continue;
        };
        let author_name = match store.user(&r.author_id).await.map_err(store_error)? {
            Some(u) => u.name,
            None => continue,
        };
        let answer_mode = match r.answer_mode.as_deref() {
            Some("public") => Some(AnswerMode::Public),
            Some("private") => Some(AnswerMode::Private),
            Some("live") => Some(AnswerMode::Live),
            _ => None,
        };
        if state == QuestionState::Pending {
            doc.held_back_rev += 1;
        }
        doc.questions.push(Question {
            id: r.id,
            author_id: r.author_id,
            author_name,
            anonymous: r.anonymous,
            text: r.text,
            state,
            answer_mode,
            answer: r.answer,
            voters: Vec::new(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        });
    }
    doc.questions
        .sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
    let mut voters: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for v in store.votes_of_session(&row.id).await.map_err(store_error)? {
        voters.entry(v.question_id).or_default().push(v.user_id);
    }
    for q in &mut doc.questions {
        q.voters = voters.remove(&q.id).unwrap_or_default();
    }
    Ok(())
}

/// `POST /classroom/api/sessions/{sid}/questions/{qid}/state {state}` (staff):
/// `pending`, `published`, `starred`, `answering` (clears the previous one) or
/// `dismissed`. Leaving `answered` drops the answer.
pub async fn set_state(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, qid)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: SetState = json(body).await?;
    let to = QuestionState::parse(&req.state)
        .filter(|s| *s != QuestionState::Answered)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidParameter,
                "state must be one of pending, published, starred, answering, dismissed \
                 (answer with POST .../answer)",
            )
        })?;
    let (viewer, mut locked) = open(&state, &sid, &who, true).await?;
    let mut next = locked.doc().clone();
    let i = find(&next, &qid, &viewer)?;
    if next.questions[i].state == to {
        return Ok(Json(snapshot(&locked, &viewer)).into_response());
    }
    let now = live::now_ms();
    let mut changed = vec![qid.clone()];
    if to == QuestionState::Answering {
        for q in next.questions.iter_mut() {
            if q.state == QuestionState::Answering {
                q.state = QuestionState::Published;
                q.updated_at = now;
                changed.push(q.id.clone());
            }
        }
    }
    let q = &mut next.questions[i];
    let was_pending = q.state == QuestionState::Pending;
    let dropped_private = (q.answer_mode == Some(AnswerMode::Private)).then(|| q.author_id.clone());
    q.state = to;
    q.answer_mode = None;
    q.answer = None;
    q.updated_at = now;
    if was_pending || to == QuestionState::Pending {
        next.held_back_rev += 1;
    }
    for id in &changed {
        if let Some(q) = next.questions.iter().find(|q| q.id == *id) {
            locked
                .store()
                .save_question(&row_of(&sid, q))
                .await
                .map_err(store_error)?;
        }
    }
    let ids: Vec<&str> = changed.iter().map(String::as_str).collect();
    let answer = commit(&mut locked, next, &ids, &viewer).await?;
    if let Some(author) = dropped_private {
        private(&locked, &sid, &author, &qid, None).await;
    }
    tracing::info!(session = %sid, question = %qid, state = to.as_str(), by = %who.user.id, "question state");
    Ok(answer)
}

/// `POST /classroom/api/sessions/{sid}/questions/{qid}/answer {mode, text?}`
/// (staff): `public` (text for all), `private` (text for the asker only, on
/// their personal channel), `live` (no text). The question becomes `answered`.
pub async fn answer(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, qid)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: Answer = json(body).await?;
    let mode = match req.mode.as_str() {
        "public" => AnswerMode::Public,
        "private" => AnswerMode::Private,
        "live" => AnswerMode::Live,
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                "mode must be one of public, private, live",
            ))
        }
    };
    let text = match (mode, req.text.as_deref()) {
        (AnswerMode::Live, None) => None,
        (AnswerMode::Live, Some(_)) => return Err(invalid("a live answer has no text")),
        (_, Some(t)) => Some(valid_text(t, MAX_ANSWER_CHARS, "an answer")?),
        (_, None) => return Err(invalid("a public or private answer needs a text")),
    };
    let (viewer, mut locked) = open(&state, &sid, &who, true).await?;
    let mut next = locked.doc().clone();
    let i = find(&next, &qid, &viewer)?;
    let q = &mut next.questions[i];
    let was_pending = q.state == QuestionState::Pending;
    let dropped_private = (q.answer_mode == Some(AnswerMode::Private) && mode != AnswerMode::Private)
        .then(|| q.author_id.clone());
    q.state = QuestionState::Answered;
    q.answer_mode = Some(mode);
    q.answer = text.clone();
    q.updated_at = live::now_ms();
    let author = q.author_id.clone();
    locked
        .store()
        .save_question(&row_of(&sid, q))
        .await
        .map_err(store_error)?;
    if was_pending {
        next.held_back_rev += 1;
    }
    let response = commit(&mut locked, next, &[&qid], &viewer).await?;
    if mode == AnswerMode::Private {
        private(&locked, &sid, &author, &qid, text.as_deref()).await;
    } else if let Some(author) = dropped_private {
        private(&locked, &sid, &author, &qid, None).await;
    }
    tracing::info!(session = %sid, question = %qid, mode = mode.as_str(), by = %who.user.id, "question answered");
    Ok(response)
}

/// Publishes `{my_answers:{qid: text}}` (`null`: withdrawn) on the asker's
/// personal channel. The document has it already (their next snapshot shows
/// it), so a failure is logged, not answered.
async fn private(locked: &Locked<'_>, sid: &str, author: &str, qid: &str, text: Option<&str>) {
    let result = match personal_channel(sid, author) {
        Ok(channel) => {
            locked
                .notify(&channel, "answer.private", json!({ "my_answers": { qid: text } }))
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!(session = %sid, question = %qid, error = ?e, "private answer not delivered live");
    }
}

/// `PATCH /classroom/api/sessions/{sid}/qa {anonymous?, moderation?}` (staff):
/// the session's Q&A settings; publishes `qa`.
pub async fn settings(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: Settings = json(body).await?;
    let (viewer, mut locked) = open(&state, &sid, &who, true).await?;
    let mut next = locked.doc().clone();
    if let Some(a) = req.anonymous {
        next.qa.anonymous = a;
    }
    if let Some(m) = req.moderation {
        next.qa.moderation = m;
    }
    if next.qa == locked.doc().qa {
        return Ok(Json(snapshot(&locked, &viewer)).into_response());
    }
    let data = json!({ "qa": next.qa });
    locked.commit(next, "qa", data).await?;
    Ok(Json(snapshot(&locked, &viewer)).into_response())
}

/// `GET /classroom/api/sessions/{sid}/questions.csv` (staff): every question,
/// oldest first.
pub async fn export_csv(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let doc = export_doc(&state, &sid, &who).await?;
    Ok(file(&sid, "csv", "text/csv; charset=utf-8", to_csv(&doc)))
}

/// `GET /classroom/api/sessions/{sid}/questions.md` (staff): every question,
/// oldest first, as Markdown.
pub async fn export_md(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let doc = export_doc(&state, &sid, &who).await?;
    Ok(file(
        &sid,
        "md",
        "text/markdown; charset=utf-8",
        to_markdown(&doc),
    ))
}

async fn export_doc(state: &ClassroomState, sid: &str, who: &SignedIn) -> Result<Doc, ApiError> {
    let role = session_role(state, sid, who).await?;
    staff(role, "export the questions")?;
    let locked = state.live.lock(sid).await?;
    Ok(locked.doc().clone())
}

fn file(sid: &str, ext: &str, content_type: &'static str, body: String) -> Response {
    let disposition = format!("attachment; filename=\"questions-{sid}.{ext}\"");
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    if let Ok(v) = header::HeaderValue::from_str(&disposition) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

fn author_of(q: &Question) -> &str {
    if q.anonymous {
        "anonymous"
    } else {
        &q.author_name
    }
}

/// One CSV field (RFC 4180, formulas defused): the one the poll exports use.
fn csv_field(s: &str) -> String {
    crate::polls::csv::field(s)
}

/// The questions as CSV, CRLF line ends, with a header line.
pub(crate) fn to_csv(doc: &Doc) -> String {
    let mut out = String::from("id,created_at,state,votes,author,question,answer_mode,answer\r\n");
    for q in &doc.questions {
        let fields = [
            q.id.clone(),
            q.created_at.to_string(),
            q.state.as_str().to_owned(),
            q.voters.len().to_string(),
            author_of(q).to_owned(),
            q.text.clone(),
            q.answer_mode.map_or("", AnswerMode::as_str).to_owned(),
            q.answer.clone().unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

fn quote_block(s: &str) -> String {
    s.lines().map(|l| format!("> {l}")).collect::<Vec<_>>().join("\n")
}

/// The questions as Markdown: one numbered section each.
pub(crate) fn to_markdown(doc: &Doc) -> String {
    let mut out = String::from("# Questions\n");
    for (n, q) in doc.questions.iter().enumerate() {
        out.push_str(&format!(
            "\n## {}. {} ({} votes, {})\n\n{}\n",
            n + 1,
            author_of(q),
            q.voters.len(),
            q.state.as_str(),
            quote_block(&q.text)
        ));
        match (q.answer_mode, q.answer.as_deref()) {
            (Some(mode), Some(a)) => {
                out.push_str(&format!("\nAnswer ({}):\n\n{}\n", mode.as_str(), quote_block(a)));
            }
            (Some(mode), None) => out.push_str(&format!("\nAnswered {}.\n", mode.as_str())),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn question(text: &str, anonymous: bool) -> Question {
        Question {
            id: "q_1".into(),
            author_id: "u_1".into(),
            author_name: "Sam".into(),
            anonymous,
            text: text.into(),
            state: QuestionState::Answered,
            answer_mode: Some(AnswerMode::Private),
            answer: Some("secret".into()),
            voters: vec!["u_2".into()],
            created_at: 5,
            updated_at: 5,
        }
    }

    #[test]
    fn csv_fields_that_look_like_formulas_are_defused() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("@cmd"), "'@cmd");
        assert_eq!(csv_field("a-b"), "a-b", "only a leading sign counts");
    }

    #[test]
    fn csv_quotes_commas_quotes_and_newlines() {
        let doc = Doc {
            questions: vec![question("a, \"b\"\nc", true)],
            ..Doc::default()
        };
        assert_eq!(
            to_csv(&doc),
            "id,created_at,state,votes,author,question,answer_mode,answer\r\n\
             q_1,5,answered,1,anonymous,\"a, \"\"b\"\"\nc\",private,secret\r\n"
        );
    }

    #[test]
    fn public_views_hide_authors_and_private_answers() {
        let v = public_view(&question("why?", true));
        assert_eq!(v["author"], Value::Null);
        assert_eq!(v["answer"], Value::Null);
        assert_eq!(v["answer_mode"], "private");
        assert_eq!(v["votes"], 1);
        let v = public_view(&question("why?", false));
        assert_eq!(v["author"], "Sam");
    }
}
