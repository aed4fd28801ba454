//! Questions and answers during a live session (the Slido part).
//!
//! | who | may |
//! |---|---|
//! | student | ask (rate limited), edit or withdraw their own question until it is answered |
//! | student, co_trainer, trainer | upvote someone else's question once, take the vote back |
//! | co_trainer, trainer | change a question's state, answer it (publicly, privately, live), toggle the Q&A settings, export |
//! | observer | watch |
//!
//! Every change goes through the sequencer ([`crate::live`]): ONE event
//! `questions` on `class:{sid}` whose data holds only **public views**, one
//! entry in the session log with the whole change. A private answer also goes
//! to the asker's personal channel `class:{sid}#{user_id}` (event
//! `answer.private`) and to the staff channel (`private_answers`).
//!
//! **Coalesced.** Asks and upvotes are many (500 questions and 5 000 votes in
//! a minute): each is applied and logged at once, and marks its question
//! changed ([`Questions::dirty`]); the sequencer then publishes ONE `questions`
//! event with every question changed in the next quarter second
//! ([`crate::live::coalesce`]; several events when they are many, each at most
//! [`EVENT_CHUNK_BYTES`]).
//!
//! **Who sees what.** The state keeps everything; screens get views:
//! - the public view of a question (events, everyone's snapshot) never has the
//!   text of a pending question (it is not in `questions` at all: only the
//!   count `held_back`), never the author of an anonymous one (to staff
//!   neither), never a private answer's text;
//! - a caller's snapshot adds what is theirs or their role's: `pending` (their
//!   own pending questions; all of them for staff), `my_questions`,
//!   `my_votes`, `my_answers` (private answers to their questions), and for
//!   staff `private_answers` (every private answer's text);
//! - staff reload their snapshot when an event's `held_back_rev` differs from
//!   theirs (a pending question changed, whose text is in no event).
//!
//! **Small answers.** A student's actions (ask, edit, withdraw, vote, unvote)
//! are many and frequent, so their answer is not the snapshot but
//! `{question, mine}` ([`own_answer`]): the question's view for the caller
//! (`null` once withdrawn) and the caller's own fields of the snapshot, built
//! in one pass over the questions with no other view, the lock dropped before
//! it is sent. Staff's actions (rare) answer the whole snapshot.

use std::collections::{BTreeSet, HashMap, HashSet};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use herald_protocol::ErrorCode;
use herald_server::error::ApiError;
use herald_store::classroom::generate_id;
use herald_store::{ClassroomStore, LiveSession, Role};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::auth::SignedIn;
use crate::clock::now_ms;
use crate::live::{Audience, BoxFuture, Feature, Locked, View, Viewer};
use crate::sessions::{enter, session_role, snapshot, staff, Actor};
use crate::text::{self, Shape};
use crate::{export, json, store_error, ClassroomState};

/// Longest question, in characters (after trimming).
pub const MAX_QUESTION_CHARS: usize = 500;
/// Longest answer, in characters (after trimming).
pub const MAX_ANSWER_CHARS: usize = 2000;
/// Questions a user may ask per minute (per node).
pub const ASKS_PER_MINUTE: usize = 5;
/// Votes (and vote removals) a user may cast per minute (per node).
pub const VOTES_PER_MINUTE: usize = 60;
/// The most question views one `questions` event carries, in bytes of JSON.
pub const EVENT_CHUNK_BYTES: usize = 32 * 1024;

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

/// The Q&A of a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Stored")]
pub struct Questions {
    /// The settings.
    #[serde(default)]
    pub qa: QaSettings,
    /// Every question, oldest first, with everything about it (pending text,
    /// authors, private answers, voters): never sent as is.
    #[serde(default)]
    pub questions: Vec<Question>,
    /// Bumped on every change to a pending question (asked, edited, withdrawn,
    /// held back, published): a staff screen reloads its snapshot when the
    /// value in an event differs from its own.
    #[serde(default)]
    pub held_back_rev: u64,
    /// Questions asked since the last `questions` event (their whole view
    /// goes out).
    #[serde(default)]
    pub dirty: BTreeSet<String>,
    /// Questions whose only change since the last `questions` event is their
    /// vote count (only the count goes out, in `votes`).
    #[serde(default)]
    pub recounted: BTreeSet<String>,
    /// Who asked and voted for what, and what waits for moderation: what a
    /// student's small answer needs without a pass over every question
    /// (derived from the above, never saved).
    #[serde(skip)]
    index: Index,
}

/// [`Questions`] as stored: everything but the index.
#[derive(Deserialize)]
struct Stored {
    #[serde(default)]
    qa: QaSettings,
    #[serde(default)]
    questions: Vec<Question>,
    #[serde(default)]
    held_back_rev: u64,
    #[serde(default)]
    dirty: BTreeSet<String>,
    #[serde(default)]
    recounted: BTreeSet<String>,
}

impl From<Stored> for Questions {
    fn from(s: Stored) -> Self {
        let mut qs = Questions {
            qa: s.qa,
            questions: s.questions,
            held_back_rev: s.held_back_rev,
            dirty: s.dirty,
            recounted: s.recounted,
            index: Index::default(),
        };
        qs.reindex();
        qs
    }
}

/// Who asked and voted for what (question ids, in the order it happened),
/// and the pending questions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Index {
    /// Where each question is in `questions`.
    at: HashMap<String, usize>,
    asked: HashMap<String, Vec<String>>,
    voted: HashMap<String, Vec<String>>,
    pending: BTreeSet<String>,
}

impl Index {
    fn forget(list: &mut HashMap<String, Vec<String>>, user: &str, qid: &str) {
        if let Some(ids) = list.get_mut(user) {
            ids.retain(|id| id != qid);
            if ids.is_empty() {
                list.remove(user);
            }
        }
    }
}

/// A change of the Q&A.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionsChange {
    /// New settings.
    Settings(QaSettings),
    /// A question asked (coalesced).
    Asked(Question),
    /// Its author changed the text.
    Edited {
        /// The question.
        id: String,
        /// The new text.
        text: String,
        /// When.
        at: i64,
    },
    /// Its author took it back (with its votes).
    Withdrawn {
        /// The question.
        id: String,
    },
    /// An upvote given or taken back (coalesced).
    Voted {
        /// The question.
        id: String,
        /// Whose vote.
        user_id: String,
        /// Given (`true`) or taken back.
        up: bool,
    },
    /// Staff set its state (not `answered`); `answering` takes it from the
    /// question being answered before; the answer, if any, is dropped.
    State {
        /// The question.
        id: String,
        /// The new state.
        state: QuestionState,
        /// When.
        at: i64,
    },
    /// Staff answered it.
    Answered {
        /// The question.
        id: String,
        /// How.
        mode: AnswerMode,
        /// The text of a public or private answer.
        text: Option<String>,
        /// When.
        at: i64,
    },
    /// The coalesced event of these questions went out.
    Published {
        /// The questions.
        ids: Vec<String>,
    },
}

impl Questions {
    fn find(&self, id: &str) -> Option<&Question> {
        let i = *self.index.at.get(id)?;
        self.questions.get(i).filter(|q| q.id == id)
    }

    fn find_mut(&mut self, id: &str) -> Option<&mut Question> {
        let i = *self.index.at.get(id)?;
        self.questions.get_mut(i).filter(|q| q.id == id)
    }

    /// Builds the index from the questions.
    fn reindex(&mut self) {
        let mut index = Index::default();
        for (i, q) in self.questions.iter().enumerate() {
            index.at.insert(q.id.clone(), i);
            index
                .asked
                .entry(q.author_id.clone())
                .or_default()
                .push(q.id.clone());
            for v in &q.voters {
                index.voted.entry(v.clone()).or_default().push(q.id.clone());
            }
            if q.state == QuestionState::Pending {
                index.pending.insert(q.id.clone());
            }
        }
        self.index = index;
    }

    /// Keeps the pending set right for question `id` after a change of state.
    fn track_pending(&mut self, id: &str) {
        let pending = self.find(id).is_some_and(|q| q.state == QuestionState::Pending);
        if pending {
            self.index.pending.insert(id.to_owned());
        } else {
            self.index.pending.remove(id);
        }
    }
}

impl Feature for Questions {
    const KEY: &'static str = "questions";
    type Change = QuestionsChange;

    fn apply(&mut self, change: QuestionsChange) {
        match change {
            QuestionsChange::Settings(qa) => self.qa = qa,
            QuestionsChange::Asked(q) => {
                if self.find(&q.id).is_some() {
                    return;
                }
                if q.state == QuestionState::Pending {
                    self.held_back_rev += 1;
                    self.index.pending.insert(q.id.clone());
                }
                self.dirty.insert(q.id.clone());
                self.index
                    .asked
                    .entry(q.author_id.clone())
                    .or_default()
                    .push(q.id.clone());
                self.index.at.insert(q.id.clone(), self.questions.len());
                self.questions.push(q);
            }
            QuestionsChange::Edited { id, text, at } => {
                if let Some(q) = self.find_mut(&id) {
                    q.text = text;
                    q.updated_at = at;
                    if q.state == QuestionState::Pending {
                        self.held_back_rev += 1;
                    }
                }
            }
            QuestionsChange::Withdrawn { id } => {
                if let Some(i) = self.index.at.remove(&id) {
                    let q = self.questions.remove(i);
                    // Rare (a withdrawal): the questions after it move up one.
                    for (j, later) in self.questions.iter().enumerate().skip(i) {
                        self.index.at.insert(later.id.clone(), j);
                    }
                    if q.state == QuestionState::Pending {
                        self.held_back_rev += 1;
                    }
                    self.dirty.remove(&id);
                    self.recounted.remove(&id);
                    self.index.pending.remove(&id);
                    Index::forget(&mut self.index.asked, &q.author_id, &id);
                    for v in &q.voters {
                        Index::forget(&mut self.index.voted, v, &id);
                    }
                }
            }
            QuestionsChange::Voted { id, user_id, up } => {
                if let Some(q) = self.find_mut(&id) {
                    let had = q.voters.contains(&user_id);
                    if up && !had {
                        q.voters.push(user_id.clone());
                        self.index.voted.entry(user_id).or_default().push(id.clone());
                    } else if !up && had {
                        q.voters.retain(|v| *v != user_id);
                        Index::forget(&mut self.index.voted, &user_id, &id);
                    }
                    if !self.dirty.contains(&id) {
                        self.recounted.insert(id);
                    }
                }
            }
            QuestionsChange::State { id, state, at } => {
                if state == QuestionState::Answering {
                    for q in self.questions.iter_mut() {
                        if q.state == QuestionState::Answering && q.id != id {
                            q.state = QuestionState::Published;
                            q.updated_at = at;
                        }
                    }
                }
                if let Some(q) = self.find_mut(&id) {
                    let was_pending = q.state == QuestionState::Pending;
                    q.state = state;
                    q.answer_mode = None;
                    q.answer = None;
                    q.updated_at = at;
                    if was_pending || state == QuestionState::Pending {
                        self.held_back_rev += 1;
                    }
                }
                self.track_pending(&id);
            }
            QuestionsChange::Answered { id, mode, text, at } => {
                if let Some(q) = self.find_mut(&id) {
                    let was_pending = q.state == QuestionState::Pending;
                    q.state = QuestionState::Answered;
                    q.answer_mode = Some(mode);
                    q.answer = text;
                    q.updated_at = at;
                    if was_pending {
                        self.held_back_rev += 1;
                    }
                }
                self.track_pending(&id);
            }
            QuestionsChange::Published { ids } => {
                for id in ids {
                    self.dirty.remove(&id);
                    self.recounted.remove(&id);
                }
            }
        }
    }

    fn snapshot(&self, view: &View<'_>, out: &mut Map<String, Value>) {
        snapshot_fields(self, view.viewer, out);
    }

    fn from_legacy(old: &Map<String, Value>) -> Self {
        use crate::live::doc::field;
        Stored {
            qa: field(old, "qa").unwrap_or_default(),
            questions: field(old, "questions").unwrap_or_default(),
            held_back_rev: field(old, "held_back_rev").unwrap_or_default(),
            dirty: BTreeSet::new(),
            recounted: BTreeSet::new(),
        }
        .into()
    }

    fn restore<'a>(
        &'a mut self,
        store: &'a dyn ClassroomStore,
        session: &'a LiveSession,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(restore(self, store, session))
    }

    fn pending(&self) -> bool {
        !self.dirty.is_empty() || !self.recounted.is_empty()
    }

    fn flush(tx: &mut Locked<'_>) -> Result<bool, ApiError> {
        let qs = tx.get::<Questions>()?;
        let mut ids: Vec<String> = Vec::new();
        let mut size = 0;
        for id in &qs.dirty {
            let bytes = qs.find(id).map_or(64, |q| public_view(q).to_string().len());
            if !ids.is_empty() && size + bytes > EVENT_CHUNK_BYTES {
                break;
            }
            ids.push(id.clone());
            size += bytes;
        }
        let views = ids.len();
        for id in &qs.recounted {
            // `"q_…":1234,`: the id and at most six digits.
            let bytes = id.len() + 10;
            if !ids.is_empty() && size + bytes > EVENT_CHUNK_BYTES {
                break;
            }
            ids.push(id.clone());
            size += bytes;
        }
        if ids.is_empty() {
            return Ok(false);
        }
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (views, counts) = refs.split_at(views);
        let data = event_data_with(qs, views, counts);
        tx.apply::<Questions>(QuestionsChange::Published { ids })?;
        tx.publish(Audience::All, "questions", data)?;
        Ok(true)
    }
}

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
struct AnswerBody {
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

/// The routes of Q&A, merged into [`crate::routes`].
pub fn routes() -> Router<ClassroomState> {
    Router::new()
        .route("/classroom/api/sessions/{sid}/qa", patch(settings))
        .route("/classroom/api/sessions/{sid}/questions", post(ask))
        .route("/classroom/api/sessions/{sid}/questions.csv", get(export_csv))
        .route("/classroom/api/sessions/{sid}/questions.md", get(export_md))
        .route(
            "/classroom/api/sessions/{sid}/questions/{qid}",
            patch(edit).delete(withdraw),
        )
        .route(
            "/classroom/api/sessions/{sid}/questions/{qid}/vote",
            post(vote).delete(unvote),
        )
        .route(
            "/classroom/api/sessions/{sid}/questions/{qid}/state",
            post(set_state),
        )
        .route(
            "/classroom/api/sessions/{sid}/questions/{qid}/answer",
            post(answer),
        )
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
fn snapshot_fields(qs: &Questions, viewer: &Viewer, out: &mut Map<String, Value>) {
    let mut public = Map::new();
    let mut own = Own::default();
    let mut private = Map::new();
    for q in &qs.questions {
        own.add(q, viewer);
        if q.state != QuestionState::Pending {
            public.insert(q.id.clone(), public_view(q));
        }
        if viewer.staff && q.answer_mode == Some(AnswerMode::Private) {
            private.insert(q.id.clone(), json!(q.answer));
        }
    }
    out.insert("qa".into(), json!(qs.qa));
    out.insert("questions".into(), Value::Object(public));
    out.insert("held_back".into(), json!(held_back(qs)));
    out.insert("held_back_rev".into(), json!(qs.held_back_rev));
    if viewer.staff {
        out.insert("private_answers".into(), Value::Object(private));
    }
    own.into_fields(out);
}

/// The answer of a student's action on question `qid` (ask, edit, withdraw,
/// vote, unvote): `{question, mine}`, where `question` is its view for
/// `viewer` (`null`: withdrawn, or pending and not theirs) and `mine` holds
/// the snapshot's `my_questions`, `my_votes`, `my_answers` and `pending` for
/// `viewer` (`my_votes` in the order given). From the index: its cost is the
/// caller's own questions and votes, not the session's.
pub(crate) fn own_answer(qs: &Questions, viewer: &Viewer, qid: &str) -> Value {
    let mut pending = Map::new();
    let mut questions = Vec::new();
    let mut answers = Map::new();
    for id in qs.index.asked.get(&viewer.user_id).into_iter().flatten() {
        let Some(q) = qs.find(id) else { continue };
        questions.push(json!(id));
        if q.answer_mode == Some(AnswerMode::Private) {
            answers.insert(id.clone(), json!(q.answer));
        }
        if q.state == QuestionState::Pending && !viewer.staff {
            pending.insert(id.clone(), public_view(q));
        }
    }
    if viewer.staff {
        for id in &qs.index.pending {
            if let Some(q) = qs.find(id) {
                pending.insert(id.clone(), public_view(q));
            }
        }
    }
    let votes: Vec<Value> = qs
        .index
        .voted
        .get(&viewer.user_id)
        .into_iter()
        .flatten()
        .map(|id| json!(id))
        .collect();
    let question = match qs.find(qid) {
        Some(q) if q.state != QuestionState::Pending => public_view(q),
        Some(_) => pending.get(qid).cloned().unwrap_or(Value::Null),
        None => Value::Null,
    };
    let mut mine = Map::new();
    Own {
        pending,
        questions,
        votes,
        answers,
    }
    .into_fields(&mut mine);
    json!({ "question": question, "mine": mine })
}

fn held_back(qs: &Questions) -> usize {
    qs.questions
        .iter()
        .filter(|q| q.state == QuestionState::Pending)
        .count()
}

/// The data of a `questions` event: the new public view of each question in
/// `ids` (`null`: gone from the public list), `held_back` and `held_back_rev`.
fn event_data(qs: &Questions, ids: &[&str]) -> Value {
    event_data_with(qs, ids, &[])
}

/// The data of a `questions` event: the public views of `ids` (`null` for one
/// not public), and under `votes` the new count of each of `counts` (questions
/// whose only change was their votes; one no longer public is left out, its
/// `null` went out with the change that hid it).
fn event_data_with(qs: &Questions, ids: &[&str], counts: &[&str]) -> Value {
    let mut changed = Map::new();
    for id in ids {
        let view = qs
            .find(id)
            .filter(|q| q.state != QuestionState::Pending)
            .map_or(Value::Null, public_view);
        changed.insert((*id).to_owned(), view);
    }
    let mut data =
        json!({ "questions": changed, "held_back": held_back(qs), "held_back_rev": qs.held_back_rev });
    let votes: Map<String, Value> = counts
        .iter()
        .filter_map(|id| qs.find(id).filter(|q| q.state != QuestionState::Pending))
        .map(|q| (q.id.clone(), Value::from(q.voters.len())))
        .collect();
    if !votes.is_empty() {
        data["votes"] = Value::Object(votes);
    }
    data
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

/// A question or an answer, trimmed, by the rule of shown texts ([`text`]).
fn valid_text(raw: &str, max: usize, what: &str) -> Result<String, ApiError> {
    text::shown(raw, max, what, Shape::Lines, ErrorCode::InvalidQuestion).map(str::to_owned)
}

/// The caller's viewer and the session under its lock, refused unless the
/// session is `live` (students' actions) or not `ended` (staff's).
async fn open<'a>(
    state: &'a ClassroomState,
    sid: &str,
    who: &SignedIn,
    staff_action: bool,
) -> Result<(Viewer, Locked<'a>), ApiError> {
    if staff_action {
        return enter(
            state,
            sid,
            who,
            Actor::Staff("moderate and answer questions"),
            "questions cannot be changed any more; export them instead",
        )
        .await;
    }
    let role = session_role(state, sid, who).await?;
    let locked = state.live.lock(sid).await?;
    crate::sessions::allowed_now(
        locked.state(),
        false,
        "",
        "questions are asked, edited and voted on only while it is live",
    )?;
    Ok((crate::sessions::viewer(who, role), locked))
}

/// The question `qid` as `viewer` may see it (a pending question is visible
/// to staff and its author only).
fn find<'q>(qs: &'q Questions, qid: &str, viewer: &Viewer) -> Result<&'q Question, ApiError> {
    qs.find(qid)
        .filter(|q| q.state != QuestionState::Pending || viewer.staff || q.author_id == viewer.user_id)
        .ok_or_else(not_found)
}

/// Publishes ONE `questions` event for `ids` and commits.
async fn publish(locked: &mut Locked<'_>, ids: &[&str]) -> Result<(), ApiError> {
    let data = event_data(locked.get::<Questions>()?, ids);
    locked.publish(Audience::All, "questions", data)?;
    locked.commit().await
}

/// A student's action done: [`own_answer`] built under the lock, which is
/// released before the answer is encoded and sent.
fn small(locked: Locked<'_>, viewer: &Viewer, qid: &str, status: StatusCode) -> Result<Response, ApiError> {
    let answer = own_answer(locked.get::<Questions>()?, viewer, qid);
    drop(locked);
    Ok((status, Json(answer)).into_response())
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
    let qa = locked.get::<Questions>()?.qa;
    if req.anonymous && !qa.anonymous {
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
    let now = now_ms();
    let pending = qa.moderation;
    let id = generate_id("q_");
    locked.apply::<Questions>(QuestionsChange::Asked(Question {
        id: id.clone(),
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
    }))?;
    // Coalesced like votes: logged now, the event goes out with the other
    // questions of the next quarter second.
    locked.commit().await?;
    tracing::info!(session = %sid, question = %id, by = %who.user.id, pending, "question asked");
    small(locked, &viewer, &id, StatusCode::CREATED)
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
    let q = own_open_question(locked.get::<Questions>()?, &qid, &viewer, "edited")?;
    if q.text != text {
        locked.apply::<Questions>(QuestionsChange::Edited {
            id: qid.clone(),
            text,
            at: now_ms(),
        })?;
        publish(&mut locked, &[&qid]).await?;
    }
    small(locked, &viewer, &qid, StatusCode::OK)
}

/// `DELETE /classroom/api/sessions/{sid}/questions/{qid}`: the author withdraws
/// their question (and its votes) until it is answered or dismissed.
pub async fn withdraw(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, qid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (viewer, mut locked) = open(&state, &sid, &who, false).await?;
    own_open_question(locked.get::<Questions>()?, &qid, &viewer, "withdrawn")?;
    locked.apply::<Questions>(QuestionsChange::Withdrawn { id: qid.clone() })?;
    publish(&mut locked, &[&qid]).await?;
    small(locked, &viewer, &qid, StatusCode::OK)
}

/// The caller's own question `qid`, refused once answered or dismissed.
fn own_open_question<'q>(
    qs: &'q Questions,
    qid: &str,
    viewer: &Viewer,
    verb: &str,
) -> Result<&'q Question, ApiError> {
    let q = find(qs, qid, viewer)?;
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
    Ok(q)
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
    let q = find(locked.get::<Questions>()?, &qid, &viewer)?;
    let had = q.voters.contains(&who.user.id);
    if up {
        if q.author_id == who.user.id {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "you cannot upvote your own question",
            ));
        }
        if matches!(q.state, QuestionState::Answered | QuestionState::Dismissed) {
            return Err(ApiError::new(
                ErrorCode::InvalidState,
                format!("the question is {}; it takes no more votes", q.state.as_str()),
            ));
        }
        if had {
            return Err(ApiError::new(
                ErrorCode::AlreadyVoted,
                "you have upvoted this question already; DELETE the vote to take it back",
            ));
        }
    } else if !had {
        return small(locked, &viewer, &qid, StatusCode::OK);
    }
    if !state.live.within_rate(&who.user.id, "vote", VOTES_PER_MINUTE) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("at most {VOTES_PER_MINUTE} votes a minute; wait a little"),
        ));
    }
    // Coalesced: logged now (a snapshot shows it), the event goes out with
    // the other votes of the next quarter second.
    locked.apply::<Questions>(QuestionsChange::Voted {
        id: qid.clone(),
        user_id: who.user.id.clone(),
        up,
    })?;
    locked.commit().await?;
    small(locked, &viewer, &qid, StatusCode::OK)
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
    let qs = locked.get::<Questions>()?;
    let q = find(qs, &qid, &viewer)?;
    if q.state == to {
        return Ok(Json(snapshot(&locked, &viewer)).into_response());
    }
    let dropped_private = (q.answer_mode == Some(AnswerMode::Private)).then(|| q.author_id.clone());
    let mut changed = vec![qid.clone()];
    if to == QuestionState::Answering {
        changed.extend(
            qs.questions
                .iter()
                .filter(|o| o.state == QuestionState::Answering && o.id != qid)
                .map(|o| o.id.clone()),
        );
    }
    locked.apply::<Questions>(QuestionsChange::State {
        id: qid.clone(),
        state: to,
        at: now_ms(),
    })?;
    if let Some(author) = dropped_private {
        private(&mut locked, &author, &qid, None)?;
    }
    let ids: Vec<&str> = changed.iter().map(String::as_str).collect();
    publish(&mut locked, &ids).await?;
    tracing::info!(session = %sid, question = %qid, state = to.as_str(), by = %who.user.id, "question state");
    Ok(Json(snapshot(&locked, &viewer)).into_response())
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
    let req: AnswerBody = json(body).await?;
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
    let q = find(locked.get::<Questions>()?, &qid, &viewer)?;
    let author = q.author_id.clone();
    let was_private = q.answer_mode == Some(AnswerMode::Private);
    locked.apply::<Questions>(QuestionsChange::Answered {
        id: qid.clone(),
        mode,
        text: text.clone(),
        at: now_ms(),
    })?;
    if mode == AnswerMode::Private {
        private(&mut locked, &author, &qid, text.as_deref())?;
    } else if was_private {
        private(&mut locked, &author, &qid, None)?;
    }
    publish(&mut locked, &[&qid]).await?;
    tracing::info!(session = %sid, question = %qid, mode = mode.as_str(), by = %who.user.id, "question answered");
    Ok(Json(snapshot(&locked, &viewer)).into_response())
}

/// Queues a private answer's text (`None`: withdrawn) for the asker's personal
/// channel (`my_answers`) and the staff channel (`private_answers`). Both
/// snapshots have it, so a failure to publish is logged, not answered.
fn private(locked: &mut Locked<'_>, author: &str, qid: &str, text: Option<&str>) -> Result<(), ApiError> {
    locked.notify(
        Audience::User(author.to_owned()),
        "answer.private",
        json!({ "my_answers": { qid: text } }),
    )?;
    locked.notify(
        Audience::Staff,
        "answer.private",
        json!({ "private_answers": { qid: text } }),
    )
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
    let now = locked.get::<Questions>()?.qa;
    let mut next = now;
    if let Some(a) = req.anonymous {
        next.anonymous = a;
    }
    if let Some(m) = req.moderation {
        next.moderation = m;
    }
    if next != now {
        locked.apply::<Questions>(QuestionsChange::Settings(next))?;
        locked.publish(Audience::All, "qa", json!({ "qa": next }))?;
        locked.commit().await?;
    }
    Ok(Json(snapshot(&locked, &viewer)).into_response())
}

/// `GET /classroom/api/sessions/{sid}/questions.csv` (staff): every question,
/// oldest first.
pub async fn export_csv(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    staff(role, "export the questions")?;
    let locked = state.live.read(&sid).await?;
    let csv = to_csv(locked.get::<Questions>()?);
    drop(locked);
    Ok(export::download(
        &format!("questions-{sid}.csv"),
        "text/csv; charset=utf-8",
        csv,
    ))
}

/// `GET /classroom/api/sessions/{sid}/questions.md` (staff): every question,
/// oldest first, as Markdown.
pub async fn export_md(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    staff(role, "export the questions")?;
    let locked = state.live.read(&sid).await?;
    let md = to_markdown(locked.get::<Questions>()?);
    drop(locked);
    Ok(export::download(
        &format!("questions-{sid}.md"),
        "text/markdown; charset=utf-8",
        md,
    ))
}

fn author_of(q: &Question) -> &str {
    if q.anonymous {
        "anonymous"
    } else {
        &q.author_name
    }
}

/// The questions as CSV, CRLF line ends, with a header line.
pub(crate) fn to_csv(qs: &Questions) -> String {
    let mut out = String::from("id,created_at,state,votes,author,question,answer_mode,answer\r\n");
    for q in &qs.questions {
        out.push_str(&export::line(&[
            q.id.as_str(),
            &q.created_at.to_string(),
            q.state.as_str(),
            &q.voters.len().to_string(),
            author_of(q),
            &q.text,
            q.answer_mode.map_or("", AnswerMode::as_str),
            q.answer.as_deref().unwrap_or_default(),
        ]));
    }
    out
}

fn quote_block(s: &str) -> String {
    s.lines().map(|l| format!("> {l}")).collect::<Vec<_>>().join("\n")
}

/// The questions as Markdown: one numbered section each.
pub(crate) fn to_markdown(qs: &Questions) -> String {
    let mut out = String::from("# Questions\n");
    for (n, q) in qs.questions.iter().enumerate() {
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

/// Brings a state from an old document up to date with the question and vote
/// rows written before the session log (asks and votes were rows first, the
/// document saved with the coalesced event, so a crash in between lost
/// nothing): a question whose row is newer than the document is added, every
/// question's voters are its vote rows.
async fn restore(qs: &mut Questions, store: &dyn ClassroomStore, row: &LiveSession) -> Result<(), ApiError> {
    let rows = store.questions_of_session(&row.id).await.map_err(store_error)?;
    if rows.is_empty() && qs.questions.is_empty() {
        return Ok(());
    }
    let known: HashSet<String> = qs.questions.iter().map(|q| q.id.clone()).collect();
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
            qs.held_back_rev += 1;
        }
        qs.dirty.insert(r.id.clone());
        qs.questions.push(Question {
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
    qs.questions
        .sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
    let mut voters: HashMap<String, Vec<String>> = HashMap::new();
    for v in store.votes_of_session(&row.id).await.map_err(store_error)? {
        voters.entry(v.question_id).or_default().push(v.user_id);
    }
    for q in &mut qs.questions {
        let rows = voters.remove(&q.id).unwrap_or_default();
        if rows != q.voters {
            qs.dirty.insert(q.id.clone());
            q.voters = rows;
        }
    }
    qs.reindex();
    Ok(())
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
    fn csv_quotes_commas_quotes_and_newlines() {
        let qs = Questions {
            questions: vec![question("a, \"b\"\nc", true)],
            ..Questions::default()
        };
        assert_eq!(
            to_csv(&qs),
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

    #[test]
    fn answering_one_question_takes_it_from_the_other() {
        let mut qs = Questions::default();
        for id in ["q_a", "q_b"] {
            let mut q = question("?", false);
            q.id = id.into();
            q.state = QuestionState::Published;
            q.answer_mode = None;
            qs.apply(QuestionsChange::Asked(q));
        }
        assert_eq!(qs.dirty.len(), 2);
        qs.apply(QuestionsChange::State {
            id: "q_a".into(),
            state: QuestionState::Answering,
            at: 7,
        });
        qs.apply(QuestionsChange::State {
            id: "q_b".into(),
            state: QuestionState::Answering,
            at: 8,
        });
        let states: Vec<_> = qs.questions.iter().map(|q| q.state).collect();
        assert_eq!(states, [QuestionState::Published, QuestionState::Answering]);
        qs.apply(QuestionsChange::Published {
            ids: vec!["q_a".into(), "q_b".into()],
        });
        assert!(!Feature::pending(&qs));
    }

    #[test]
    fn the_index_follows_every_change() {
        let mut qs = Questions::default();
        for (id, author, state) in [
            ("q_a", "u_1", QuestionState::Published),
            ("q_b", "u_2", QuestionState::Pending),
        ] {
            let mut q = question("?", false);
            (q.id, q.author_id, q.state, q.voters, q.answer_mode) =
                (id.into(), author.into(), state, vec![], None);
            qs.apply(QuestionsChange::Asked(q));
        }
        let vote = |id: &str, user: &str, up| QuestionsChange::Voted {
            id: id.into(),
            user_id: user.into(),
            up,
        };
        qs.apply(vote("q_a", "u_2", true));
        qs.apply(vote("q_a", "u_3", true));
        qs.apply(vote("q_b", "u_3", true));
        qs.apply(vote("q_a", "u_3", false));
        qs.apply(QuestionsChange::State {
            id: "q_b".into(),
            state: QuestionState::Published,
            at: 9,
        });
        qs.apply(QuestionsChange::State {
            id: "q_a".into(),
            state: QuestionState::Pending,
            at: 9,
        });
        qs.apply(QuestionsChange::Withdrawn { id: "q_b".into() });
        let rebuilt = {
            let mut r = qs.clone();
            r.reindex();
            r.index
        };
        assert_eq!(qs.index, rebuilt);
        let student = Viewer::new("u_2", Role::Student);
        let mine = own_answer(&qs, &student, "q_a");
        assert_eq!(mine["mine"]["my_votes"], json!(["q_a"]));
        assert_eq!(mine["question"], Value::Null, "pending and not theirs");
        let staff = Viewer::new("u_9", Role::Trainer);
        assert_eq!(own_answer(&qs, &staff, "q_a")["question"]["id"], "q_a");
        let back: Questions = serde_json::from_value(serde_json::to_value(&qs).unwrap()).unwrap();
        assert_eq!(back, qs, "the index is rebuilt on load");
    }
}
