//! A ready demo course, so that a new user sees a live lesson in a minute.
//!
//! `POST /classroom/api/demo` (signed in) makes the caller the trainer of a new
//! course "Demo: a first live lesson" that lets guests in, with a Markdown deck
//! explaining what to try, a live session showing that deck, a poll and a quiz
//! ready to open, and breakout groups left to the trainer. It answers `201
//! {course, session}`; the page then opens the session and shows the join link
//! to open in another browser (or a private window) as a student.
//!
//! It is built with the same handlers the pages call (course, deck, session,
//! polls), as the caller: one path for every rule and check, no second way to
//! make a course.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_protocol::ErrorCode;
use herald_server::error::ApiError;
use serde_json::{json, Value};

use crate::auth::SignedIn;
use crate::{courses, polls, sessions, slides, ClassroomState};

/// Demo courses one user may create per minute (per node).
pub const DEMOS_PER_MINUTE: usize = 3;

/// The demo deck: one slide per `#` heading.
pub const DECK: &str = "\
# Welcome to Herald's live classroom

This is a **live session**: everything you do here reaches every screen at once.

- Open the *invite link* (at the top of this page) in another browser or a private window
- Join as a guest with any name: you are now a student too
- Turn this page with **Next page**: the student follows

# Questions

Students ask in the *Questions* panel, and upvote each other's questions.

As the trainer you can:

- hold questions for moderation, star them, mark one *answering now*
- answer publicly, privately (only the asker sees it) or live

# Polls and quizzes

Open the poll *How is the pace?* in the *Polls* panel, vote as the student, and watch the chart move.

The quiz has a correct answer, a timer and scores.

# Breakout groups

Split the class into groups, move people between them, extend the timer, and send a message to all groups.

# Slides

This deck is Markdown: one slide per heading. You can also upload a PDF or an image.

Try the modes: *teacher-paced* (students follow), *student-paced* and *free*.

# That's it

Reload any page, or join late: every screen lands on the same state, the same page, the same tallies.
";

/// `POST /classroom/api/demo` -> `201 {course, session}` (signed in).
pub async fn create(State(state): State<ClassroomState>, who: SignedIn) -> Result<Response, ApiError> {
    if !state.live.within_rate(&who.user.id, "demo", DEMOS_PER_MINUTE) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("at most {DEMOS_PER_MINUTE} demo courses a minute; open the one you have"),
        ));
    }
    let course = ok(courses::create(
        State(state.clone()),
        who.clone(),
        body(json!({ "title": "Demo: a first live lesson" })),
    )
    .await)
    .await?;
    let course_id = id_of(&course["course"])?;
    ok(courses::update(
        State(state.clone()),
        who.clone(),
        Path(course_id.clone()),
        body(json!({ "guests_allowed": true })),
    )
    .await)
    .await?;
    let deck = ok(slides::create(
        State(state.clone()),
        who.clone(),
        Path(course_id.clone()),
        body(json!({ "title": "Welcome", "markdown": DECK })),
    )
    .await)
    .await?;
    let deck_id = id_of(&deck["deck"])?;
    let session = ok(sessions::create(
        State(state.clone()),
        who.clone(),
        Path(course_id.clone()),
        body(json!({ "title": "Demo lesson" })),
    )
    .await)
    .await?;
    let sid = id_of(&session["session"])?;
    ok(sessions::start(State(state.clone()), who.clone(), Path(sid.clone())).await).await?;
    ok(slides::show_deck(
        State(state.clone()),
        who.clone(),
        Path(sid.clone()),
        body(json!({ "deck_id": deck_id })),
    )
    .await)
    .await?;
    for poll in [
        json!({ "kind": "single", "question": "How is the pace?",
                "options": ["Too slow", "Just right", "Too fast"] }),
        json!({ "kind": "single", "question": "Quiz: which transport does Herald fall back to when WebSocket is blocked?",
                "options": ["Carrier pigeon", "Server-Sent Events, then long-polling", "FTP"],
                "correct": [1], "duration_s": 60 }),
    ] {
        ok(polls::create(State(state.clone()), who.clone(), Path(sid.clone()), body(poll)).await).await?;
    }
    tracing::info!(user = %who.user.id, course = %course_id, session = %sid, "demo course created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "course": course["course"], "session": session["session"] })),
    )
        .into_response())
}

/// The JSON of a handler's successful answer, or its refusal as is.
async fn ok(answer: Result<Response, ApiError>) -> Result<Value, ApiError> {
    let res = answer?;
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 4 * 1024 * 1024)
        .await
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("the demo could not read an answer: {e}"),
            )
        })?;
    if !status.is_success() {
        return Err(ApiError::new(
            ErrorCode::Internal,
            format!("a step of the demo answered {status}"),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("a step of the demo answered no JSON: {e}"),
        )
    })
}

fn body(v: Value) -> Body {
    Body::from(v.to_string())
}

fn id_of(v: &Value) -> Result<String, ApiError> {
    v["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "a step of the demo answered no id"))
}
