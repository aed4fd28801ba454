//! Who is here: Herald presence on `class:{sid}`, turned into coalesced
//! events, and how present each person is (their screens report it).
//!
//! Herald's own join/leave events go to every subscriber of a channel: with N
//! students joining, that is N events to each of N screens (N² deliveries, and
//! N² redraws of a list in every browser: 12.5 million for 5 000 students,
//! ~9 ms of server CPU per join as measured by `herald bench classroom`). So the
//! `class` namespace keeps presence (who is connected, with `{name, role}` from
//! the token) but sends no join/leave events, and while a session is open on a
//! node ([`crate::live::ticker`]) this feature reads the presence list once a
//! second and, when it changed, under the session's lock:
//!
//! - applies who joined and left to the state (so a snapshot carries the list,
//!   consistent with its cursors, and the log records attendance);
//! - publishes `here` on the staff channel with what changed
//!   (`{joined:{user_id:{name,role}}, left:[user_id], count}`): staff screens
//!   keep the live list;
//! - publishes `here.count` `{count}` on the session's channel when the number
//!   changed: every screen shows how many are here.
//!
//! At most one event of each a second per session, whatever the audience. In a
//! cluster every node holding the session reads the same presence list; the
//! first to apply a change makes it none for the others.
//!
//! **Activity**: a screen reports `active`, `idle` or `away`
//! (`POST sessions/{sid}/activity`), published as `activity` to everyone;
//! someone who leaves is forgotten.
//!
//! | who | may |
//! |---|---|
//! | every member | report their own activity (until the session ends) |

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use herald_protocol::{AppName, ErrorCode};
use herald_server::error::ApiError;
use herald_store::LiveState;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::auth::SignedIn;
use crate::live::{self, Audience, BoxFuture, Feature, Live, View};
use crate::sessions::{invalid_state, session_role};
use crate::{json, ClassroomState};

/// Activity reports a user may send per minute (per node).
pub const ACTIVITY_PER_MINUTE: usize = 30;

/// Someone present on the session's channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Present {
    /// Their name (from their token).
    pub name: String,
    /// Their role (from their token; `roles` in the snapshot wins).
    pub role: String,
}

/// How present a person on the session page is, as their screen reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// The page is visible and used.
    #[default]
    Active,
    /// The page is visible, but nobody has touched it for a while.
    Idle,
    /// The page is hidden (another tab, the phone locked).
    Away,
}

impl Activity {
    /// The activity of a snake_case name, or `None`.
    pub fn parse(s: &str) -> Option<Activity> {
        match s {
            "active" => Some(Activity::Active),
            "idle" => Some(Activity::Idle),
            "away" => Some(Activity::Away),
            _ => None,
        }
    }
}

/// Who is here and how present they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Here {
    /// Who is here (user id -> name and role), as presence last read.
    #[serde(default)]
    pub present: BTreeMap<String, Present>,
    /// Who is idle or away (user id -> activity); anyone else is active.
    #[serde(default)]
    pub activity: BTreeMap<String, Activity>,
}

/// A change of who is here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HereChange {
    /// People came and went.
    Moved {
        /// Who came (or changed name or role).
        joined: BTreeMap<String, Present>,
        /// Who went.
        left: Vec<String>,
    },
    /// Someone's screen reported its activity.
    Activity {
        /// Whose.
        user_id: String,
        /// What.
        activity: Activity,
    },
}

impl Feature for Here {
    const KEY: &'static str = "here";
    type Change = HereChange;

    fn apply(&mut self, change: HereChange) {
        match change {
            HereChange::Moved { joined, left } => {
                for id in left {
                    self.present.remove(&id);
                    self.activity.remove(&id);
                }
                self.present.extend(joined);
            }
            HereChange::Activity { user_id, activity } => {
                if activity == Activity::Active {
                    self.activity.remove(&user_id);
                } else {
                    self.activity.insert(user_id, activity);
                }
            }
        }
    }

    fn snapshot(&self, view: &View<'_>, out: &mut Map<String, Value>) {
        out.insert("activity".into(), json!(self.activity));
        out.insert("here_count".into(), json!(self.present.len()));
        if view.viewer.staff {
            out.insert("here".into(), json!(self.present));
        }
    }

    fn tick<'a>(live: &'a Arc<Live>, sid: &'a str) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(watch(live, sid))
    }
}

/// Reads the presence list and applies what changed; answers whether anyone
/// is here.
async fn watch(live: &Live, sid: &str) -> Result<bool, ApiError> {
    let app = AppName::parse(live::APP)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("bad classroom app name: {e}")))?;
    let channel = live::channel_of(sid)?;
    let now: BTreeMap<String, Present> = live
        .node()
        .presence(&app, &channel)
        .await?
        .into_iter()
        .map(|m| {
            let text = |k: &str| m.info.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let present = Present {
                name: text("name").unwrap_or_else(|| m.user.clone()),
                role: text("role").unwrap_or_default(),
            };
            (m.user, present)
        })
        .collect();
    let busy = !now.is_empty();
    {
        // Most ticks change nothing: look without the cluster's lease first.
        let locked = live.read(sid).await?;
        if locked.state() == LiveState::Ended || locked.get::<Here>()?.present == now {
            return Ok(busy);
        }
    }
    let mut locked = live.lock(sid).await?;
    if locked.state() == LiveState::Ended {
        return Ok(busy);
    }
    let before = &locked.get::<Here>()?.present;
    let mut joined = BTreeMap::new();
    for (id, p) in &now {
        if before.get(id) != Some(p) {
            joined.insert(id.clone(), p.clone());
        }
    }
    let left: Vec<String> = before
        .keys()
        .filter(|id| !now.contains_key(*id))
        .cloned()
        .collect();
    if joined.is_empty() && left.is_empty() {
        return Ok(busy);
    }
    let count_changed = before.len() != now.len();
    let changes = json!({ "joined": joined, "left": left, "count": now.len() });
    locked.apply::<Here>(HereChange::Moved { joined, left })?;
    // Staff first: if it cannot be published nothing changed, and the next
    // tick sends the same changes again.
    locked.publish(Audience::Staff, "here", changes)?;
    if count_changed {
        locked.notify(Audience::All, "here.count", json!({ "count": now.len() }))?;
    }
    locked.commit().await?;
    Ok(busy)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetActivity {
    activity: String,
}

/// The routes of who is here, merged into [`crate::routes`].
pub fn routes() -> Router<ClassroomState> {
    Router::new().route("/classroom/api/sessions/{sid}/activity", post(set_activity))
}

/// `POST /classroom/api/sessions/{sid}/activity {activity}`: the caller's screen
/// reports `active`, `idle` or `away` (members, until the session ends) -> `204`. An
/// event `activity` `{activity:{user_id: value}}` when it changed.
pub async fn set_activity(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    session_role(&state, &sid, &who).await?;
    let req: SetActivity = json(body).await?;
    let activity = Activity::parse(&req.activity).ok_or_else(|| {
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
    if locked.state() == LiveState::Ended {
        return Err(invalid_state(LiveState::Ended, "there is nobody to report to"));
    }
    let now = locked
        .get::<Here>()?
        .activity
        .get(&who.user.id)
        .copied()
        .unwrap_or_default();
    if now != activity {
        locked.apply::<Here>(HereChange::Activity {
            user_id: who.user.id.clone(),
            activity,
        })?;
        let data = json!({ "activity": { &who.user.id: activity } });
        locked.publish(Audience::All, "activity", data)?;
        locked.commit().await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
