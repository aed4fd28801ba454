//! Raised hands: an ordered queue.
//!
//! | who | may |
//! |---|---|
//! | student | raise and lower their own hand (while live) |
//! | co_trainer, trainer | lower anyone's hand, or all of them (while live) |
//!
//! Every change publishes `hands` with the whole queue (small).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use herald_protocol::ErrorCode;
use herald_server::error::ApiError;
use herald_store::{LiveState, Role};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::auth::SignedIn;
use crate::clock::now_ms;
use crate::live::{Audience, Feature, Locked, View, Viewer};
use crate::sessions::{invalid_state, session_role, snapshot, staff, viewer};
use crate::ClassroomState;

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

/// The raised hands, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Hands(pub Vec<Hand>);

/// A change of the hands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandsChange {
    /// A hand goes up (at the end of the queue).
    Raise(Hand),
    /// One hand goes down.
    Lower(String),
    /// Every hand goes down.
    LowerAll,
}

impl Feature for Hands {
    const KEY: &'static str = "hands";
    type Change = HandsChange;

    fn apply(&mut self, change: HandsChange) {
        match change {
            HandsChange::Raise(hand) => {
                if !self.0.iter().any(|h| h.user_id == hand.user_id) {
                    self.0.push(hand);
                }
            }
            HandsChange::Lower(user_id) => self.0.retain(|h| h.user_id != user_id),
            HandsChange::LowerAll => self.0.clear(),
        }
    }

    fn snapshot(&self, _: &View<'_>, out: &mut Map<String, Value>) {
        out.insert("hands".into(), json!(self.0));
    }

    fn from_legacy(old: &Map<String, Value>) -> Self {
        crate::live::doc::field(old, "hands").unwrap_or_default()
    }
}

/// The routes of hands, merged into [`crate::routes`].
pub fn routes() -> Router<ClassroomState> {
    Router::new()
        .route(
            "/classroom/api/sessions/{sid}/hand",
            post(raise).delete(lower_own),
        )
        .route("/classroom/api/sessions/{sid}/hands", delete(lower_all))
        .route("/classroom/api/sessions/{sid}/hands/{user_id}", delete(lower_of))
}

/// `POST /classroom/api/sessions/{sid}/hand`: raise your hand (students, while
/// live; raising it again changes nothing).
pub async fn raise(
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
    let viewer = viewer(&who, role);
    let mut locked = live_session(&state, &sid).await?;
    if !locked.get::<Hands>()?.0.iter().any(|h| h.user_id == who.user.id) {
        locked.apply::<Hands>(HandsChange::Raise(Hand {
            user_id: who.user.id.clone(),
            name: who.user.name.clone(),
            raised_at: now_ms(),
        }))?;
        publish(&mut locked).await?;
    }
    Ok(Json(snapshot(&locked, &viewer)).into_response())
}

/// `DELETE /classroom/api/sessions/{sid}/hand`: lower your own hand (members,
/// while live; lowering a hand that is down changes nothing).
pub async fn lower_own(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    lower(&state, &sid, Some(&who.user.id), &viewer(&who, role)).await
}

/// `DELETE /classroom/api/sessions/{sid}/hands/{user_id}`: lower someone's hand
/// (staff, while live).
pub async fn lower_of(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, user_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    staff(role, "lower other people's hands")?;
    lower(&state, &sid, Some(&user_id), &viewer(&who, role)).await
}

/// `DELETE /classroom/api/sessions/{sid}/hands`: lower every hand (staff, while
/// live).
pub async fn lower_all(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let role = session_role(&state, &sid, &who).await?;
    staff(role, "lower every hand")?;
    lower(&state, &sid, None, &viewer(&who, role)).await
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
    let hands = &locked.get::<Hands>()?.0;
    let changes = match user_id {
        Some(u) => hands.iter().any(|h| h.user_id == u),
        None => !hands.is_empty(),
    };
    if changes {
        locked.apply::<Hands>(match user_id {
            Some(u) => HandsChange::Lower(u.to_owned()),
            None => HandsChange::LowerAll,
        })?;
        publish(&mut locked).await?;
    }
    Ok(Json(snapshot(&locked, viewer)).into_response())
}

async fn publish(locked: &mut Locked<'_>) -> Result<(), ApiError> {
    let data = json!({ "hands": locked.get::<Hands>()?.0 });
    locked.publish(Audience::All, "hands", data)?;
    locked.commit().await
}

/// The session under its lock, refused with `409 invalid_state` unless live.
async fn live_session<'a>(state: &'a ClassroomState, sid: &str) -> Result<Locked<'a>, ApiError> {
    let locked = state.live.lock(sid).await?;
    let now = locked.state();
    if now != LiveState::Live {
        return Err(invalid_state(
            now,
            "hands are raised and lowered only while it is live",
        ));
    }
    Ok(locked)
}
