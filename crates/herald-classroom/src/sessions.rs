//! Live sessions over HTTP: create and list them, load a snapshot, change the
//! state, get a client token, read the session log; and what every feature's
//! handlers share (the caller's role, the checks of who may act when).
//!
//! | who | may |
//! |---|---|
//! | co_trainer, trainer | create sessions; start, pause, resume, end them |
//! | every member | list the course's sessions, load a session's snapshot, get a token for its channels, read its log (what they could see live) |
//!
//! Every change goes through the sequencer ([`crate::live`]): events on
//! `class:{session_id}` (and the staff and personal channels), one entry in
//! the session log. The features add their own routes
//! (`crate::features`).

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_protocol::ErrorCode;
use herald_server::error::ApiError;
use herald_server::request::Query;
use herald_store::{LiveSession, LiveState, Role};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::auth::SignedIn;
use crate::clock::now_ms;
use crate::courses::{membership, valid_title};
use crate::live::{self, channel_of, personal_channel, Audience, Lifecycle, Locked, Viewer};
use crate::{json, store_error, ClassroomState};

/// Log entries one `GET sessions/{sid}/log` answers when no `limit` is given.
pub const LOG_PAGE: u64 = 100;
/// The most log entries one `GET sessions/{sid}/log` answers.
pub const MAX_LOG_PAGE: u64 = 1000;

/// A live session as the API shows it (without its state: see `snapshot`).
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
    let doc = state.live.new_doc()?;
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

/// `GET /classroom/api/sessions/{sid}` -> `{session, snapshot, cursor, offset,
/// seq, role, private_channel, private_cursor, staff_channel?, staff_cursor?}`
/// (members): the state and the cursor it is valid at, read together.
pub async fn show(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    let personal = personal_channel(&sid, &who.user.id)?;
    state.live.opened(&sid);
    let mut locked = state.live.read(&sid).await?;
    locked.anchored().await?;
    let private_cursor = locked.position_of(&personal).await?;
    let mut answer = snapshot(&locked, &viewer(&who, role));
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
    let mut next: Lifecycle = locked.doc().session;
    let now = now_ms();
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
    locked.set_lifecycle(next)?;
    let data = json!({ "state": next.state, "started_at": next.started_at, "ended_at": next.ended_at });
    locked.publish(Audience::All, "session.state", data)?;
    locked.commit().await?;
    tracing::info!(session = %sid, state = next.state.as_str(), by = %who.user.id, "live session state");
    Ok(Json(snapshot(&locked, &viewer(&who, role))).into_response())
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
    let personal = personal_channel(&sid, &who.user.id)?;
    let staff_channel = live::staff_channel(&sid)?;
    let mut channels = vec![&channel, &personal];
    if role.is_staff() {
        channels.push(&staff_channel);
    }
    let token = state
        .live
        .token(&channels, &who.user.id, &who.user.name, role)
        .await?;
    state.live.opened(&sid);
    let mut locked = state.live.read(&sid).await?;
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

/// `GET /classroom/api/sessions/{sid}/log?after=N&limit=M` (members) ->
/// `{entries:[{seq, at, events:[{event, data, to, offset?}]}], next, more}`:
/// the session log from entry `N + 1` (0: the first), at most `M` entries
/// ([`LOG_PAGE`] by default, at most [`MAX_LOG_PAGE`]). Each entry shows only
/// the events the caller could have received live: the session channel's,
/// the staff channel's for staff, their own personal channel's (staff: every
/// one's, since they sent them). `next` is the `after` of the next page;
/// `more` says whether there may be one.
pub async fn log(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(query.as_deref());
    let after = query.number("after")?.unwrap_or(0);
    let limit = query.number("limit")?.unwrap_or(LOG_PAGE);
    if !(1..=MAX_LOG_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("limit must be 1 to {MAX_LOG_PAGE}"),
        ));
    }
    let after = i64::try_from(after)
        .map_err(|_| ApiError::new(ErrorCode::InvalidParameter, "after is out of range"))?;
    let role = session_role(&state, &sid, &who).await?;
    let viewer = viewer(&who, role);
    let rows = state
        .store
        .live_log(&sid, after, limit as i64)
        .await
        .map_err(store_error)?;
    let more = rows.len() as u64 == limit;
    let next = rows.last().map_or(after, |r| r.seq);
    let mut entries = Vec::with_capacity(rows.len());
    for row in &rows {
        let events = live::visible_events(&row.body, &viewer).map_err(|e| {
            tracing::error!(session = %sid, seq = row.seq, error = %e, "a session log entry cannot be read");
            ApiError::new(
                ErrorCode::Internal,
                "this session's log cannot be read; the server log has details",
            )
        })?;
        entries.push(json!({ "seq": row.seq, "at": row.at, "events": events }));
    }
    Ok(Json(json!({ "entries": entries, "next": next, "more": more })).into_response())
}

/// The viewer of a signed-in caller with `role`.
pub(crate) fn viewer(who: &SignedIn, role: Role) -> Viewer {
    Viewer::new(&who.user.id, role)
}

tokio::task_local! {
    /// The request being answered asked for a minimal answer
    /// (`Prefer: return=minimal`, set by [`prefer`]).
    static MINIMAL: bool;
}

/// Honours `Prefer: return=minimal` (RFC 7240) on a change: the handlers'
/// answer then has no `snapshot` (only `{session, cursor, offset, seq}`), and
/// says `Preference-Applied: return=minimal`. A screen that follows the
/// session's events needs nothing more, and a staff member's click in a
/// session of thousands no longer answers a snapshot of thousands.
pub async fn prefer(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let minimal = req.method() != axum::http::Method::GET
        && req
            .headers()
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("return=minimal"));
    let mut res = MINIMAL.scope(minimal, next.run(req)).await;
    if minimal {
        res.headers_mut().insert(
            "preference-applied",
            axum::http::HeaderValue::from_static("return=minimal"),
        );
    }
    res
}

/// `{session, snapshot, cursor, offset, seq}` of a locked session, as `viewer`
/// may see it: the session's life, then every feature's fields (no
/// `snapshot` when the request prefers a minimal answer: [`prefer`]).
pub(crate) fn snapshot(locked: &Locked<'_>, viewer: &Viewer) -> Value {
    // The offset the cursor names, so that a screen reloading its snapshot
    // mid-stream can skip the events it already has.
    let offset = herald_protocol::Cursor::parse(locked.cursor())
        .ok()
        .and_then(|c| c.get(locked.channel()).map(|p| p.offset))
        .unwrap_or(0);
    if MINIMAL.try_with(|m| *m).unwrap_or(false) {
        return json!({
            "session": SessionView::from(locked.session()),
            "cursor": locked.cursor(),
            "offset": offset,
            "seq": locked.seq(),
        });
    }
    let life = locked.doc().session;
    let mut snap = Map::new();
    snap.insert("state".into(), json!(life.state));
    snap.insert("started_at".into(), json!(life.started_at));
    snap.insert("ended_at".into(), json!(life.ended_at));
    locked.snapshot_fields(viewer, &mut snap);
    json!({
        "session": SessionView::from(locked.session()),
        "snapshot": snap,
        "cursor": locked.cursor(),
        "offset": offset,
        "seq": locked.seq(),
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

/// Who may take an action, and when.
#[derive(Clone, Copy)]
pub(crate) enum Actor<'a> {
    /// Trainers and co-trainers, until the session has ended; `what` they do,
    /// for the refusal.
    Staff(&'a str),
    /// Students only, while the session is live; `what` they do.
    Student(&'a str),
}

/// The start of most features' handlers: the caller's role checked against
/// `actor`, then the session under its lock, refused when the session is not
/// in a state for it (`why` ends the refusal's sentence).
pub(crate) async fn enter<'a>(
    state: &'a ClassroomState,
    sid: &str,
    who: &SignedIn,
    actor: Actor<'_>,
    why: &str,
) -> Result<(Viewer, Locked<'a>), ApiError> {
    let role = session_role(state, sid, who).await?;
    let staff_action = match actor {
        Actor::Staff(what) => {
            staff(role, what)?;
            true
        }
        Actor::Student(what) => {
            if role != Role::Student {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    format!("only students {what}"),
                ));
            }
            false
        }
    };
    let locked = state.live.lock(sid).await?;
    allowed_now(locked.state(), staff_action, why, why)?;
    Ok((viewer(who, role), locked))
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
