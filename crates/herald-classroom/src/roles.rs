//! Promotion during a live session: a trainer changes a member's role in the
//! course, and every screen learns it at once (`roster.role` with the roles
//! changed during the session; anyone else has their roster role).
//!
//! | who | may |
//! |---|---|
//! | trainer | change anyone's role (until the session has ended) |

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use herald_protocol::ErrorCode;
use herald_server::error::ApiError;
use herald_store::{LiveState, Role};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::auth::SignedIn;
use crate::live::{Audience, Feature, View};
use crate::sessions::{invalid_state, session_role, snapshot, viewer};
use crate::{json, store_error, ClassroomState};

/// Roles changed during the session (user id -> role).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Roles(pub BTreeMap<String, Role>);

/// A role change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleChange {
    /// Whose.
    pub user_id: String,
    /// The new role.
    pub role: Role,
}

impl Feature for Roles {
    const KEY: &'static str = "roles";
    type Change = RoleChange;

    fn apply(&mut self, change: RoleChange) {
        self.0.insert(change.user_id, change.role);
    }

    fn snapshot(&self, _: &View<'_>, out: &mut Map<String, Value>) {
        out.insert("roles".into(), json!(self.0));
    }

    fn from_legacy(old: &Map<String, Value>) -> Self {
        crate::live::doc::field(old, "roles").unwrap_or_default()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRole {
    role: String,
}

/// The routes of roles, merged into [`crate::routes`].
pub fn routes() -> Router<ClassroomState> {
    Router::new().route("/classroom/api/sessions/{sid}/roster/{user_id}", post(set_role))
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
    if locked.state() == LiveState::Ended {
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
    locked.apply::<Roles>(RoleChange {
        user_id: user_id.clone(),
        role: new_role,
    })?;
    let data = json!({ "roles": locked.get::<Roles>()?.0 });
    locked.publish(Audience::All, "roster.role", data)?;
    locked.commit().await?;
    tracing::info!(session = %sid, user = %user_id, role = new_role.as_str(), by = %who.user.id, "role changed in a live session");
    Ok(Json(snapshot(&locked, &viewer(&who, role))).into_response())
}
