//! Live sessions over HTTP: create and list them, load a snapshot, change the
//! state, raise and lower hands, promote during a session, get a client token.
//!
//! | who | may |
//! |---|---|
//! | trainer | everything below, plus promote (change roles) during a session |
//! | co_trainer | create sessions; start, pause, resume, end them; lower anyone's hand, or all |
//! | student | raise and lower their own hand |
//! | observer | watch: snapshot and token only |
//!
//! Every member may list the course's sessions, load a session's snapshot and
//! get a token for its channel. Every change goes through the sequencer
//! ([`crate::live`]): one event on `class:{session_id}`, document and cursor
//! saved together.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_protocol::ErrorCode;
use herald_server::error::ApiError;
use herald_store::{LiveSession, LiveState, Role};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::SignedIn;
use crate::courses::{membership, valid_title};
use crate::live::{self, channel_of, Doc, Hand, Locked};
use crate::{groups, json, polls, questions, slides, store_error, ClassroomState};

/// A live session as the API shows it (without its document: see `snapshot`).
#[derive(Debug, Serialize)]
pub struct SessionView<'a> {
    /// Id.
    pub id: &'a str,
    /// The course.
    pub course_id: &'a str,
    /// Title.
    pub title: &'a str,
    /// `scheduled`, `live`, `paused` or `ended`.
    pub state: LiveState,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// When it first went live.
    pub started_at: Option<i64>,
    /// When it ended.
    pub ended_at: Option<i64>,
    /// Its Herald channel (in the app `classroom`).
    pub channel: String,
}

impl<'a> From<&'a LiveSession> for SessionView<'a> {
    fn from(s: &'a LiveSession) -> Self {
        Self {
            id: &s.id,
            course_id: &s.course_id,
            title: &s.title,
            state: s.state,
            created_at: s.created_at,
            started_at: s.started_at,
            ended_at: s.ended_at,
            channel: format!("{}:{}", live::NAMESPACE, s.id),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSession {
    title: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetActivity {
    activity: String,
}

/// Activity reports a user may send per minute (per node).
pub const ACTIVITY_PER_MINUTE: usize = 30;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRole {
    role: String,
}

/// `POST /classroom/api/courses/{id}/sessions {title}` -> `201 {session}`
/// (trainers and co-trainers).
pub async fn create(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(course_id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, role) = membership(&state, &course_id, &who).await?;
    staff(role, "create live sessions")?;
    let req: NewSession = json(body).await?;
    let title = valid_title(&req.title)?;
    let doc = serde_json::to_string(&Doc::default())
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot encode the document: {e}")))?;
    let session = state
        .store
        .create_live_session(&course_id, title, &doc)
        .await
        .map_err(store_error)?;
    tracing::info!(course = %course_id, session = %session.id, by = %who.user.id, "live session created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "session": SessionView::from(&session) })),
    )
        .into_response())
}

/// `GET /classroom/api/courses/{id}/sessions` -> `{sessions:[session]}`, newest
/// first (members).
pub async fn list(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(course_id): Path<String>,
) -> Result<Response, ApiError> {
    membership(&state, &course_id, &who).await?;
    let sessions = state
        .store
        .live_sessions_of_course(&course_id)
        .await
        .map_err(store_error)?;
    let views: Vec<_> = sessions.iter().map(SessionView::from).collect();
    Ok(Json(json!({ "sessions": views })).into_response())
}

/// `GET /classroom/api/sessions/{sid}` -> `{session, snapshot, cursor, role}`
/// (members): the document and the cursor it is valid at, read together.
pub async fn show(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    let personal = questions::personal_channel(&sid, &who.user.id)?;
    state.live.here.ensure(&state.live, &sid);
    let mut locked = state.live.lock(&sid).await?;
    locked.anchored().await?;
    let private_cursor = locked.position_of(&personal).await?;
    let mut answer = snapshot(&locked, &Viewer::new(&who, role));
    answer["role"] = json!(role);
    answer["private_channel"] = json!(personal.as_str());
    answer["private_cursor"] = json!(private_cursor);
    if role.is_staff() {
        let staff = live::staff_channel(&sid)?;
        answer["staff_channel"] = json!(staff.as_str());
        answer["staff_cursor"] = json!(locked.position_of(&staff).await?);
    }
    Ok(Json(answer).into_response())
}

/// `POST /classroom/api/sessions/{sid}/start`: `scheduled` -> `live` (staff).
pub async fn start(
    state: State<ClassroomState>,
    who: SignedIn,
    sid: Path<String>,
) -> Result<Response, ApiError> {
    transition(state, who, sid, Transition::Start).await
}

/// `POST /classroom/api/sessions/{sid}/pause`: `live` -> `paused` (staff).
pub async fn pause(
    state: State<ClassroomState>,
    who: SignedIn,
    sid: Path<String>,
) -> Result<Response, ApiError> {
    transition(state, who, sid, Transition::Pause).await
}

/// `POST /classroom/api/sessions/{sid}/resume`: `paused` -> `live` (staff).
pub async fn resume(
    state: State<ClassroomState>,
    who: SignedIn,
    sid: Path<String>,
) -> Result<Response, ApiError> {
    transition(state, who, sid, Transition::Resume).await
}

/// `POST /classroom/api/sessions/{sid}/end`: any state but `ended` -> `ended`,
/// for good (staff).
pub async fn end(
    state: State<ClassroomState>,
    who: SignedIn,
    sid: Path<String>,
) -> Result<Response, ApiError> {
    transition(state, who, sid, Transition::End).await
}

#[derive(Clone, Copy)]
enum Transition {
    Start,
    Pause,
    Resume,
    End,
}

async fn transition(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
    t: Transition,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    staff(role, "start, pause, resume or end a live session")?;
    let mut locked = state.live.lock(&sid).await?;
    let mut next = locked.doc().clone();
    let now = live::now_ms();
    let (verb, allowed) = match t {
        Transition::Start => ("started", next.state == LiveState::Scheduled),
        Transition::Pause => ("paused", next.state == LiveState::Live),
        Transition::Resume => ("resumed", next.state == LiveState::Paused),
        Transition::End => ("ended", next.state != LiveState::Ended),
    };
    if !allowed {
        return Err(invalid_state(next.state, &format!("it cannot be {verb} now")));
    }
    next.state = match t {
        Transition::Start | Transition::Resume => LiveState::Live,
        Transition::Pause => LiveState::Paused,
        Transition::End => LiveState::Ended,
    };
    if matches!(t, Transition::Start) {
        next.started_at = Some(now);
    }
    if matches!(t, Transition::End) {
        next.ended_at = Some(now);
    }
    let data = json!({ "state": next.state, "started_at": next.started_at, "ended_at": next.ended_at });
    locked.commit(next, "session.state", data).await?;
    tracing::info!(session = %sid, state = locked.doc().state.as_str(), by = %who.user.id, "live session state");
    Ok(Json(snapshot(&locked, &Viewer::new(&who, role))).into_response())
}

/// `POST /classroom/api/sessions/{sid}/hand`: raise your hand (students, while
/// live; raising it again changes nothing).
pub async fn raise_hand(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    if role != Role::Student {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only students raise hands in a live session",
        ));
    }
    let viewer = Viewer::new(&who, role);
    let mut locked = live_session(&state, &sid).await?;
    if locked.doc().hands.iter().any(|h| h.user_id == who.user.id) {
        return Ok(Json(snapshot(&locked, &viewer)).into_response());
    }
    let mut next = locked.doc().clone();
    next.hands.push(Hand {
        user_id: who.user.id.clone(),
        name: who.user.name.clone(),
        raised_at: live::now_ms(),
    });
    commit_hands(&mut locked, next, &viewer).await
}

/// `DELETE /classroom/api/sessions/{sid}/hand`: lower your own hand (members,
/// while live; lowering a hand that is down changes nothing).
pub async fn lower_own_hand(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    lower(&state, &sid, Some(&who.user.id), &Viewer::new(&who, role)).await
}

/// `DELETE /classroom/api/sessions/{sid}/hands/{user_id}`: lower someone's hand
/// (staff, while live).
pub async fn lower_hand(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, user_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    staff(role, "lower other people's hands")?;
    lower(&state, &sid, Some(&user_id), &Viewer::new(&who, role)).await
}

/// `DELETE /classroom/api/sessions/{sid}/hands`: lower every hand (staff, while
/// live).
pub async fn lower_all_hands(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    staff(role, "lower every hand")?;
    lower(&state, &sid, None, &Viewer::new(&who, role)).await
}

/// Lowers `user_id`'s hand, or all of them; publishes `hands` when the queue
/// changed.
async fn lower(
    state: &ClassroomState,
    sid: &str,
    user_id: Option<&str>,
    viewer: &Viewer,
) -> Result<Response, ApiError> {
    let mut locked = live_session(state, sid).await?;
    let mut next = locked.doc().clone();
    next.hands.retain(|h| user_id.is_some_and(|u| u != h.user_id));
    if next.hands.len() == locked.doc().hands.len() {
        return Ok(Json(snapshot(&locked, viewer)).into_response());
    }
    commit_hands(&mut locked, next, viewer).await
}

async fn commit_hands(locked: &mut Locked<'_>, next: Doc, viewer: &Viewer) -> Result<Response, ApiError> {
    let data = json!({ "hands": next.hands });
    locked.commit(next, "hands", data).await?;
    Ok(Json(snapshot(locked, viewer)).into_response())
}

/// `POST /classroom/api/sessions/{sid}/activity {activity}`: the caller's screen
/// reports `active`, `idle` or `away` (members, until the session ends) -> `204`. An
/// event `activity` `{activity:{user_id: value}}` when it changed; not saved
/// (it describes the connections of now).
pub async fn set_activity(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    session_role(&state, &sid, &who).await?;
    let req: SetActivity = json(body).await?;
    let activity = live::Activity::parse(&req.activity).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            "activity must be one of active, idle, away",
        )
    })?;
    if !state
        .live
        .within_rate(&who.user.id, "activity", ACTIVITY_PER_MINUTE)
    {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("at most {ACTIVITY_PER_MINUTE} activity reports a minute; wait a little"),
        ));
    }
    let mut locked = state.live.lock(&sid).await?;
    if locked.doc().state == LiveState::Ended {
        return Err(invalid_state(LiveState::Ended, "there is nobody to report to"));
    }
    let now = locked
        .doc()
        .activity
        .get(&who.user.id)
        .copied()
        .unwrap_or_default();
    if now != activity {
        let mut next = locked.doc().clone();
        if activity == live::Activity::Active {
            next.activity.remove(&who.user.id);
        } else {
            next.activity.insert(who.user.id.clone(), activity);
        }
        let data = json!({ "activity": { &who.user.id: activity } });
        locked.publish_unsaved(next, "activity", data).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /classroom/api/sessions/{sid}/roster/{user_id} {role}`: changes a
/// member's role in the course during the session (trainers; not once ended).
pub async fn set_role(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, user_id)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    if role != Role::Trainer {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the course's trainers may change roles",
        ));
    }
    let req: SetRole = json(body).await?;
    let new_role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            "role must be one of trainer, co_trainer, student, observer",
        )
    })?;
    let mut locked = state.live.lock(&sid).await?;
    if locked.doc().state == LiveState::Ended {
        return Err(invalid_state(
            LiveState::Ended,
            "change roles in the course instead",
        ));
    }
    let course_id = locked.session().course_id.clone();
    // The row that must last first, under the session's lock: the course role.
    state
        .store
        .set_role(&course_id, &user_id, new_role)
        .await
        .map_err(store_error)?;
    let mut next = locked.doc().clone();
    next.roles.insert(user_id.clone(), new_role);
    let data = json!({ "roles": next.roles });
    locked.commit(next, "roster.role", data).await?;
    tracing::info!(session = %sid, user = %user_id, role = new_role.as_str(), by = %who.user.id, "role changed in a live session");
    Ok(Json(snapshot(&locked, &Viewer::new(&who, role))).into_response())
}

/// `GET /classroom/api/sessions/{sid}/token` -> `{app, token, channel, cursor,
/// private_channel, private_cursor, staff_channel?, staff_cursor?}` (members): a
/// client token for the session's channel, the caller's personal channel, and
/// for staff the staff channel.
pub async fn token(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    let channel = channel_of(&sid)?;
    let personal = questions::personal_channel(&sid, &who.user.id)?;
    let staff_channel = live::staff_channel(&sid)?;
    let mut channels = vec![&channel, &personal];
    if role.is_staff() {
        channels.push(&staff_channel);
    }
    let token = state
        .live
        .token(&channels, &who.user.id, &who.user.name, role)
        .await?;
    state.live.here.ensure(&state.live, &sid);
    let mut locked = state.live.lock(&sid).await?;
    locked.anchored().await?;
    let private_cursor = locked.position_of(&personal).await?;
    let mut answer = json!({
        "app": live::APP,
        "token": token,
        "channel": channel.as_str(),
        "cursor": locked.cursor(),
        "private_channel": personal.as_str(),
        "private_cursor": private_cursor,
        "expires_in": live::TOKEN_TTL.as_secs(),
    });
    if role.is_staff() {
        answer["staff_channel"] = json!(staff_channel.as_str());
        answer["staff_cursor"] = json!(locked.position_of(&staff_channel).await?);
    }
    Ok(Json(answer).into_response())
}

/// Who is looking: what a snapshot shows depends on it.
pub(crate) struct Viewer {
    /// The caller.
    pub user_id: String,
    /// Their role in the course.
    pub role: Role,
    /// Trainer or co-trainer.
    pub staff: bool,
}

impl Viewer {
    pub(crate) fn new(who: &SignedIn, role: Role) -> Self {
        Self {
            user_id: who.user.id.clone(),
            role,
            staff: role.is_staff(),
        }
    }
}

/// `{session, snapshot, cursor}` of a locked session, as `viewer` may see it:
/// the document's session fields as they are, the questions as views
/// ([`crate::questions`]).
pub(crate) fn snapshot(locked: &Locked<'_>, viewer: &Viewer) -> serde_json::Value {
    let doc = locked.doc();
    let mut snap = serde_json::Map::new();
    snap.insert("state".into(), json!(doc.state));
    snap.insert("started_at".into(), json!(doc.started_at));
    snap.insert("ended_at".into(), json!(doc.ended_at));
    snap.insert("hands".into(), json!(doc.hands));
    snap.insert("roles".into(), json!(doc.roles));
    snap.insert("activity".into(), json!(doc.activity));
    snap.insert("here_count".into(), json!(doc.here.len()));
    if viewer.staff {
        snap.insert("here".into(), json!(&*doc.here));
    }
    questions::snapshot_fields(doc, viewer, &mut snap);
    slides::snapshot_fields(doc, viewer, &mut snap);
    polls::snapshot_fields(doc, viewer, &mut snap);
    groups::snapshot_fields(doc, viewer, &mut snap);
    // The offset the cursor names, so that a screen reloading its snapshot
    // mid-stream can skip the events it already has.
    let offset = herald_protocol::Cursor::parse(locked.cursor())
        .ok()
        .and_then(|c| c.get(locked.channel()).map(|p| p.offset))
        .unwrap_or(0);
    json!({
        "session": SessionView::from(locked.session()),
        "snapshot": snap,
        "cursor": locked.cursor(),
        "offset": offset,
    })
}

/// The caller's role in the session's course: `404 session_not_found`, `403
/// forbidden` for a non-member.
pub(crate) async fn session_role(
    state: &ClassroomState,
    sid: &str,
    who: &SignedIn,
) -> Result<Role, ApiError> {
    channel_of(sid)?;
    let session = state
        .store
        .live_session(sid)
        .await
        .map_err(store_error)?
        .ok_or_else(live::not_found)?;
    state
        .store
        .role(&session.course_id, &who.user.id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Forbidden,
                "you are not a member of this session's course; join it with its code",
            )
        })
}

/// The session under its lock, refused with `409 invalid_state` unless live.
async fn live_session<'a>(state: &'a ClassroomState, sid: &str) -> Result<Locked<'a>, ApiError> {
    let locked = state.live.lock(sid).await?;
    let now = locked.doc().state;
    if now != LiveState::Live {
        return Err(invalid_state(
            now,
            "hands are raised and lowered only while it is live",
        ));
    }
    Ok(locked)
}

pub(crate) fn staff(role: Role, what: &str) -> Result<(), ApiError> {
    if role.is_staff() {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("only the course's trainers and co-trainers may {what}"),
        ))
    }
}

/// The rule most changes follow: staff may change a session until it has
/// ended, students only while it is live; `409 invalid_state` with
/// `staff_why` or `student_why` otherwise.
pub(crate) fn allowed_now(
    now: LiveState,
    staff_action: bool,
    staff_why: &str,
    student_why: &str,
) -> Result<(), ApiError> {
    let allowed = if staff_action {
        now != LiveState::Ended
    } else {
        now == LiveState::Live
    };
    if allowed {
        Ok(())
    } else {
        Err(invalid_state(
            now,
            if staff_action { staff_why } else { student_why },
        ))
    }
}

pub(crate) fn invalid_state(now: LiveState, why: &str) -> ApiError {
    let message = if now == LiveState::Ended {
        format!("the session has ended and cannot be changed; {why}")
    } else {
        format!("the session is {}; {why}", now.as_str())
    };
    ApiError::new(ErrorCode::InvalidState, message)
}
