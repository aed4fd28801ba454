//! Breakout groups during a live session: the trainer splits the students into
//! named groups (at random, or by hand) or lets them pick one, moves people
//! live, runs a timer that can be extended and broadcasts short messages to
//! every group; ending the breakouts brings everyone back together.
//!
//! | who | may |
//! |---|---|
//! | co_trainer, trainer | set up, split, move, rename, switch the mode, extend the timer, broadcast, end (until the session has `ended`) |
//! | student | join and leave a group in `pick` mode (while `live`) |
//! | observer | watch |
//!
//! Everything lives in the session's state ([`GroupsState`], no table of its
//! own), so every change goes through the sequencer ([`crate::live`]): it is
//! checked against the state under the session's lock, then ONE event
//! `groups` on `class:{sid}` carries the **whole new state** (names, members
//! with their names, mode, end time, latest broadcasts: small), and so does
//! the log entry. A client replaces its copy; the
//! snapshot's `groups` field is the same value. Groups are not secret in a
//! classroom: every member of the course sees every group and its members.
//!
//! Members are students of the course's roster at the time they are placed;
//! their names are copied into the state, so no screen shows a bare id.

use std::collections::{BTreeMap, HashSet};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, patch, post, put};
use axum::{Json, Router};
use herald_protocol::{AppName, ErrorCode};
use herald_server::error::ApiError;
use herald_store::classroom::generate_id;
use herald_store::Role;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::auth::SignedIn;
use crate::clock::now_ms;
use crate::live::{self, Audience, Feature, Locked, View, Viewer};
use crate::sessions::{enter, snapshot, Actor};
use crate::text::{self, Shape};
use crate::{json, store_error, ClassroomState};

/// Most groups in one breakout.
pub const MAX_GROUPS: usize = 50;
/// Longest group name, in characters (after trimming).
pub const MAX_NAME_CHARS: usize = 60;
/// Longest broadcast, in characters (after trimming).
pub const MAX_BROADCAST_CHARS: usize = 500;
/// Broadcasts kept in the document (the newest), for late joiners.
pub const KEPT_BROADCASTS: usize = 5;
/// Longest timer, in seconds from now (4 hours), when set up or extended.
pub const MAX_TIMER_S: i64 = 4 * 3600;
/// Largest single extension of the timer, in seconds.
pub const MAX_EXTEND_S: i64 = 3600;
/// Broadcasts a staff member may send per minute (per node).
pub const BROADCASTS_PER_MINUTE: usize = 20;
/// Group joins and leaves a student may make per minute (per node).
pub const PICKS_PER_MINUTE: usize = 30;

/// Who places people in groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupMode {
    /// The trainer places people; students cannot move themselves.
    #[default]
    Assigned,
    /// Students join (and leave) a group themselves; staff may still move them.
    Pick,
}

impl GroupMode {
    fn parse(s: &str) -> Result<GroupMode, ApiError> {
        match s {
            "assigned" => Ok(GroupMode::Assigned),
            "pick" => Ok(GroupMode::Pick),
            _ => Err(invalid("mode must be assigned or pick")),
        }
    }
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The user's id.
    pub user_id: String,
    /// Their name in the roster when placed.
    pub name: String,
}

/// One breakout group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Id (`g_` + 32 hex digits).
    pub id: String,
    /// Its name, unique in the session (case-insensitive).
    pub name: String,
    /// Its members, in the order they were placed.
    #[serde(default)]
    pub members: Vec<GroupMember>,
}

/// A message from staff to every group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broadcast {
    /// Id (`b_` + 32 hex digits).
    pub id: String,
    /// The message, trimmed.
    pub text: String,
    /// The sender's name.
    pub by: String,
    /// When it was sent, Unix milliseconds.
    pub at: i64,
}

/// What a live session's document keeps of its groups: the whole of it is the
/// data of every `groups` event and the snapshot's `groups` field. No group
/// means no breakouts running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsState {
    /// Who places people.
    #[serde(default)]
    pub mode: GroupMode,
    /// The groups, in the order they were set up.
    #[serde(default)]
    pub groups: Vec<Group>,
    /// When the breakouts are due to end, Unix milliseconds (`None`: no timer).
    /// Nothing happens by itself at that time: screens show "time is up".
    #[serde(default)]
    pub ends_at: Option<i64>,
    /// The newest broadcasts, oldest first, at most [`KEPT_BROADCASTS`].
    #[serde(default)]
    pub broadcasts: Vec<Broadcast>,
}

impl GroupsState {
    /// Whether breakouts are running.
    pub fn active(&self) -> bool {
        !self.groups.is_empty()
    }

    fn group(&self, gid: &str) -> Result<usize, ApiError> {
        self.groups
            .iter()
            .position(|g| g.id == gid)
            .ok_or_else(group_not_found)
    }

    /// Takes `user_id` out of every group; answers whether they were in one.
    fn remove(&mut self, user_id: &str) -> bool {
        let mut found = false;
        for g in &mut self.groups {
            let before = g.members.len();
            g.members.retain(|m| m.user_id != user_id);
            found |= g.members.len() != before;
        }
        found
    }

    /// Puts `member` in group `i` only (out of any other).
    fn place(&mut self, i: usize, member: GroupMember) {
        self.remove(&member.user_id);
        if let Some(g) = self.groups.get_mut(i) {
            g.members.push(member);
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Setup {
    groups: Vec<NewGroup>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    duration_s: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    name: String,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Split {
    #[serde(default)]
    count: Option<i64>,
    #[serde(default)]
    size: Option<i64>,
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    duration_s: Option<i64>,
    #[serde(default)]
    online_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMember {
    user_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Extend {
    extend_s: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    mode: String,
}

/// The routes of groups, merged into [`crate::routes`].
pub fn routes() -> Router<ClassroomState> {
    Router::new()
        .route(
            "/classroom/api/sessions/{sid}/groups",
            put(set_up).patch(settings).delete(end),
        )
        .route("/classroom/api/sessions/{sid}/groups/split", post(split))
        .route("/classroom/api/sessions/{sid}/groups/leave", post(leave))
        .route("/classroom/api/sessions/{sid}/groups/timer", post(extend))
        .route("/classroom/api/sessions/{sid}/groups/broadcast", post(broadcast))
        .route("/classroom/api/sessions/{sid}/groups/{gid}", patch(rename))
        .route(
            "/classroom/api/sessions/{sid}/groups/{gid}/members",
            post(add_member),
        )
        .route(
            "/classroom/api/sessions/{sid}/groups/{gid}/members/{user_id}",
            delete(remove_member),
        )
        .route("/classroom/api/sessions/{sid}/groups/{gid}/join", post(join))
}

impl Feature for GroupsState {
    const KEY: &'static str = "groups";
    /// The whole new state (small: it is also every `groups` event's data).
    type Change = GroupsState;

    fn apply(&mut self, change: GroupsState) {
        *self = change;
    }

    /// The whole state, the same for everyone (a screen finds its own group by
    /// its user id).
    fn snapshot(&self, _: &View<'_>, out: &mut Map<String, Value>) {
        out.insert("groups".into(), json!(self));
    }

    fn from_legacy(old: &Map<String, Value>) -> Self {
        crate::live::doc::field(old, "groups").unwrap_or_default()
    }
}

fn invalid(message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidGroups, message)
}

fn group_not_found() -> ApiError {
    ApiError::new(
        ErrorCode::GroupNotFound,
        "there is no such group in this session's breakouts",
    )
}

fn not_running() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidState,
        "no breakouts are running in this session; set up or split into groups first",
    )
}

/// A group name, trimmed: 1 to [`MAX_NAME_CHARS`] characters, by the rule of
/// shown texts ([`crate::text`]).
fn valid_name(raw: &str) -> Result<String, ApiError> {
    let (max, code) = (MAX_NAME_CHARS, ErrorCode::InvalidGroups);
    text::shown(raw, max, "a group name", Shape::Line, code).map(str::to_owned)
}

/// Checks that `names` are valid and unique (case-insensitive); answers them trimmed.
fn valid_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, ApiError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for raw in names {
        let name = valid_name(raw)?;
        if !seen.insert(name.to_lowercase()) {
            return Err(invalid(&format!(
                "two groups are named \"{name}\"; give each group its own name"
            )));
        }
        out.push(name);
    }
    if out.is_empty() || out.len() > MAX_GROUPS {
        return Err(invalid(&format!("there must be 1 to {MAX_GROUPS} groups")));
    }
    Ok(out)
}

/// The end time of a timer of `duration_s` seconds from now.
fn timer(duration_s: Option<i64>) -> Result<Option<i64>, ApiError> {
    match duration_s {
        None => Ok(None),
        Some(s) if (1..=MAX_TIMER_S).contains(&s) => Ok(Some(now_ms() + s * 1000)),
        Some(_) => Err(invalid(&format!("duration_s must be 1 to {MAX_TIMER_S} seconds"))),
    }
}

/// The course's students, id -> name.
async fn students(locked: &Locked<'_>) -> Result<BTreeMap<String, String>, ApiError> {
    let roster = locked
        .store()
        .roster(&locked.session().course_id)
        .await
        .map_err(store_error)?;
    Ok(roster
        .into_iter()
        .filter(|m| m.role == Role::Student)
        .map(|m| (m.user_id, m.name))
        .collect())
}

/// The member `user_id` as a student of the course, or `400 invalid_groups`.
fn student(students: &BTreeMap<String, String>, user_id: &str) -> Result<GroupMember, ApiError> {
    students
        .get(user_id)
        .map(|name| GroupMember {
            user_id: user_id.to_owned(),
            name: name.clone(),
        })
        .ok_or_else(|| invalid("only the course's students can be placed in groups; that user is not one"))
}

/// Deals `people` (in the order given: shuffle first) round-robin into groups
/// named `names`: sizes differ by one at most. Members are sorted by name.
fn deal(people: Vec<GroupMember>, names: Vec<String>) -> Vec<Group> {
    let mut groups: Vec<Group> = names
        .into_iter()
        .map(|name| Group {
            id: generate_id("g_"),
            name,
            members: Vec::new(),
        })
        .collect();
    let count = groups.len();
    if count == 0 {
        return groups;
    }
    for (i, person) in people.into_iter().enumerate() {
        groups[i % count].members.push(person);
    }
    for g in &mut groups {
        g.members
            .sort_by(|a, b| (a.name.to_lowercase(), &a.user_id).cmp(&(b.name.to_lowercase(), &b.user_id)));
    }
    groups
}

/// The caller's role and the session under its lock. Staff actions are refused
/// once the session has `ended`; students' only while it is not `live`.
async fn open<'a>(
    state: &'a ClassroomState,
    sid: &str,
    who: &SignedIn,
    staff_action: bool,
) -> Result<(Viewer, Locked<'a>), ApiError> {
    if staff_action {
        enter(
            state,
            sid,
            who,
            Actor::Staff("run breakout groups"),
            "breakout groups cannot be changed any more",
        )
        .await
    } else {
        enter(
            state,
            sid,
            who,
            Actor::Student("join and leave groups; staff move people instead"),
            "groups are joined and left only while it is live",
        )
        .await
    }
}

/// The groups as they are now, to build the next state from.
fn current(locked: &Locked<'_>) -> Result<GroupsState, ApiError> {
    Ok(locked.get::<GroupsState>()?.clone())
}

/// Publishes `groups` with the whole new state (unless nothing changed) and
/// answers the caller's snapshot.
async fn commit(locked: &mut Locked<'_>, next: GroupsState, viewer: &Viewer) -> Result<Response, ApiError> {
    if next != *locked.get::<GroupsState>()? {
        let data = json!({ "groups": next });
        locked.apply::<GroupsState>(next)?;
        locked.publish(Audience::All, "groups", data)?;
        locked.commit().await?;
    }
    Ok(Json(snapshot(locked, viewer)).into_response())
}

/// `PUT /classroom/api/sessions/{sid}/groups {groups:[{name, members}], mode?,
/// duration_s?}` (staff): sets up breakouts, replacing any running ones (their
/// broadcasts too).
pub async fn set_up(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: Setup = json(body).await?;
    let names = valid_names(req.groups.iter().map(|g| g.name.as_str()))?;
    let mode = GroupMode::parse(req.mode.as_deref().unwrap_or("assigned"))?;
    let ends_at = timer(req.duration_s)?;
    let (viewer, mut locked) = open(&state, &sid, &who, true).await?;
    let students = students(&locked).await?;
    let mut placed = HashSet::new();
    let mut groups = Vec::with_capacity(names.len());
    for (name, g) in names.into_iter().zip(req.groups) {
        let mut members = Vec::with_capacity(g.members.len());
        for user_id in &g.members {
            let member = student(&students, user_id)?;
            if !placed.insert(user_id.clone()) {
                return Err(invalid(&format!(
                    "{} is placed in two groups; put each student in one group only",
                    member.name
                )));
            }
            members.push(member);
        }
        groups.push(Group {
            id: generate_id("g_"),
            name,
            members,
        });
    }
    let next = GroupsState {
        mode,
        groups,
        ends_at,
        broadcasts: Vec::new(),
    };
    tracing::info!(session = %sid, groups = next.groups.len(), by = %who.user.id, "breakout groups set up");
    commit(&mut locked, next, &viewer).await
}

/// `POST /classroom/api/sessions/{sid}/groups/split {count | size, names?,
/// mode?, duration_s?, online_only?}` (staff): deals the course's students (or
/// only those online on the session's channel) at random into `count` groups,
/// or groups of `size`; replaces any running breakouts.
pub async fn split(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: Split = json(body).await?;
    let mode = GroupMode::parse(req.mode.as_deref().unwrap_or("assigned"))?;
    let ends_at = timer(req.duration_s)?;
    let (viewer, mut locked) = open(&state, &sid, &who, true).await?;
    let mut people: Vec<GroupMember> = students(&locked)
        .await?
        .into_iter()
        .map(|(user_id, name)| GroupMember { user_id, name })
        .collect();
    if req.online_only {
        let app = AppName::parse(live::APP)
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("bad classroom app name: {e}")))?;
        let here: HashSet<String> = state
            .live
            .node()
            .presence(&app, locked.channel())
            .await?
            .into_iter()
            .map(|m| m.user)
            .collect();
        people.retain(|p| here.contains(&p.user_id));
    }
    let n = people.len() as i64;
    let whom = if req.online_only {
        "students here now"
    } else {
        "students in the course"
    };
    if n == 0 {
        return Err(invalid(&format!("there are no {whom} to split")));
    }
    let count = match (req.count, req.size) {
        (Some(c), None) if (1..=n.min(MAX_GROUPS as i64)).contains(&c) => c,
        (Some(_), None) => {
            return Err(invalid(&format!(
                "count must be 1 to {} (there are {n} {whom})",
                n.min(MAX_GROUPS as i64)
            )))
        }
        (None, Some(s)) if (1..=n).contains(&s) => {
            let c = (n + s - 1) / s;
            if c > MAX_GROUPS as i64 {
                return Err(invalid(&format!(
                    "groups of {s} would make {c} groups; at most {MAX_GROUPS}"
                )));
            }
            c
        }
        (None, Some(_)) => return Err(invalid(&format!("size must be 1 to {n} (there are {n} {whom})"))),
        _ => {
            return Err(invalid(
                "give either count (how many groups) or size (people per group)",
            ))
        }
    };
    let count = usize::try_from(count).map_err(|_| invalid("count is out of range"))?;
    let names = match &req.names {
        Some(names) if names.len() != count => {
            return Err(invalid(&format!(
                "{} names for {count} groups; give one name per group, or none",
                names.len()
            )))
        }
        Some(names) => valid_names(names.iter().map(String::as_str))?,
        None => (1..=count).map(|i| format!("Group {i}")).collect(),
    };
    people.shuffle(&mut rand::thread_rng());
    let next = GroupsState {
        mode,
        groups: deal(people, names),
        ends_at,
        broadcasts: Vec::new(),
    };
    tracing::info!(session = %sid, groups = count, students = n, by = %who.user.id, "students split into groups");
    commit(&mut locked, next, &viewer).await
}

/// `PATCH /classroom/api/sessions/{sid}/groups {mode}` (staff): switches
/// between `assigned` and `pick` while breakouts run.
pub async fn settings(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: Settings = json(body).await?;
    let mode = GroupMode::parse(&req.mode)?;
    let (viewer, mut locked) = open(&state, &sid, &who, true).await?;
    let mut next = current(&locked)?;
    if !next.active() {
        return Err(not_running());
    }
    next.mode = mode;
    commit(&mut locked, next, &viewer).await
}

/// `DELETE /classroom/api/sessions/{sid}/groups` (staff): ends the breakouts,
/// everyone back together (none running: no change).
pub async fn end(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let (viewer, mut locked) = open(&state, &sid, &who, true).await?;
    let next = GroupsState::default();
    tracing::info!(session = %sid, by = %who.user.id, "breakouts ended");
    commit(&mut locked, next, &viewer).await
}

/// `PATCH /classroom/api/sessions/{sid}/groups/{gid} {name}` (staff): renames a group.
pub async fn rename(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, gid)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: Rename = json(body).await?;
    let name = valid_name(&req.name)?;
    let (viewer, mut locked) = open(&state, &sid, &who, true).await?;
    let mut next = current(&locked)?;
    let i = next.group(&gid)?;
    let key = name.to_lowercase();
    if next
        .groups
        .iter()
        .any(|g| g.id != gid && g.name.to_lowercase() == key)
    {
        return Err(invalid(&format!(
            "another group is named \"{name}\"; give each group its own name"
        )));
    }
    next.groups[i].name = name;
    commit(&mut locked, next, &viewer).await
}

/// `POST /classroom/api/sessions/{sid}/groups/{gid}/members {user_id}` (staff):
/// moves a student into the group, out of any other.
pub async fn add_member(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, gid)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: AddMember = json(body).await?;
    let (viewer, mut locked) = open(&state, &sid, &who, true).await?;
    let i = locked.get::<GroupsState>()?.group(&gid)?;
    let member = student(&students(&locked).await?, &req.user_id)?;
    let mut next = current(&locked)?;
    let already = next.groups[i].members.iter().any(|m| m.user_id == member.user_id);
    if !already {
        tracing::info!(session = %sid, group = %gid, user = %member.user_id, by = %who.user.id, "moved into a group");
        next.place(i, member);
    }
    commit(&mut locked, next, &viewer).await
}

/// `DELETE /classroom/api/sessions/{sid}/groups/{gid}/members/{user_id}`
/// (staff): takes someone out of the group (not in it: no change).
pub async fn remove_member(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, gid, user_id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (viewer, mut locked) = open(&state, &sid, &who, true).await?;
    let mut next = current(&locked)?;
    let i = next.group(&gid)?;
    next.groups[i].members.retain(|m| m.user_id != user_id);
    commit(&mut locked, next, &viewer).await
}

/// `POST /classroom/api/sessions/{sid}/groups/{gid}/join` (students, `pick`
/// mode, while live): moves the caller into the group.
pub async fn join(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((sid, gid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (viewer, mut locked) = open(&state, &sid, &who, false).await?;
    let i = locked.get::<GroupsState>()?.group(&gid)?;
    picking(&locked)?;
    let mut next = current(&locked)?;
    if next.groups[i].members.iter().any(|m| m.user_id == who.user.id) {
        return commit(&mut locked, next, &viewer).await;
    }
    picks_within_rate(&state, &who)?;
    next.place(
        i,
        GroupMember {
            user_id: who.user.id.clone(),
            name: who.user.name.clone(),
        },
    );
    commit(&mut locked, next, &viewer).await
}

/// `POST /classroom/api/sessions/{sid}/groups/leave` (students, `pick` mode,
/// while live): leaves the caller's group (in none: no change).
pub async fn leave(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let (viewer, mut locked) = open(&state, &sid, &who, false).await?;
    if !locked.get::<GroupsState>()?.active() {
        return Err(not_running());
    }
    picking(&locked)?;
    let mut next = current(&locked)?;
    if next.remove(&who.user.id) {
        picks_within_rate(&state, &who)?;
    }
    commit(&mut locked, next, &viewer).await
}

fn picking(locked: &Locked<'_>) -> Result<(), ApiError> {
    if locked.get::<GroupsState>()?.mode == GroupMode::Pick {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidState,
            "the trainer assigns the groups in this session; ask them to move you",
        ))
    }
}

fn picks_within_rate(state: &ClassroomState, who: &SignedIn) -> Result<(), ApiError> {
    if state
        .live
        .within_rate(&who.user.id, "group_pick", PICKS_PER_MINUTE)
    {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("at most {PICKS_PER_MINUTE} group changes a minute; wait a little"),
        ))
    }
}

/// `POST /classroom/api/sessions/{sid}/groups/timer {extend_s}` (staff): moves
/// the end time `extend_s` seconds later, counted from now if it has passed or
/// there was no timer.
pub async fn extend(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: Extend = json(body).await?;
    if !(1..=MAX_EXTEND_S).contains(&req.extend_s) {
        return Err(invalid(&format!("extend_s must be 1 to {MAX_EXTEND_S} seconds")));
    }
    let (viewer, mut locked) = open(&state, &sid, &who, true).await?;
    let mut next = current(&locked)?;
    if !next.active() {
        return Err(not_running());
    }
    let now = now_ms();
    let ends_at = next.ends_at.unwrap_or(now).max(now) + req.extend_s * 1000;
    if ends_at - now > MAX_TIMER_S * 1000 {
        return Err(invalid(&format!(
            "the timer can end at most {} hours from now",
            MAX_TIMER_S / 3600
        )));
    }
    next.ends_at = Some(ends_at);
    tracing::info!(session = %sid, extend_s = req.extend_s, by = %who.user.id, "breakout timer extended");
    commit(&mut locked, next, &viewer).await
}

/// `POST /classroom/api/sessions/{sid}/groups/broadcast {text}` (staff): a
/// message to every group; the newest [`KEPT_BROADCASTS`] stay in the state.
pub async fn broadcast(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: Message = json(body).await?;
    let (max, code) = (MAX_BROADCAST_CHARS, ErrorCode::InvalidGroups);
    let text = text::shown(&req.text, max, "a broadcast", Shape::Lines, code)?;
    let (viewer, mut locked) = open(&state, &sid, &who, true).await?;
    let mut next = current(&locked)?;
    if !next.active() {
        return Err(not_running());
    }
    if !state
        .live
        .within_rate(&who.user.id, "group_broadcast", BROADCASTS_PER_MINUTE)
    {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("at most {BROADCASTS_PER_MINUTE} broadcasts a minute; wait a little"),
        ));
    }
    let kept = &mut next.broadcasts;
    kept.push(Broadcast {
        id: generate_id("b_"),
        text: text.to_owned(),
        by: who.user.name.clone(),
        at: now_ms(),
    });
    if kept.len() > KEPT_BROADCASTS {
        kept.drain(..kept.len() - KEPT_BROADCASTS);
    }
    tracing::info!(session = %sid, by = %who.user.id, "broadcast to all groups");
    commit(&mut locked, next, &viewer).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn people(n: usize) -> Vec<GroupMember> {
        (0..n)
            .map(|i| GroupMember {
                user_id: format!("u_{i}"),
                name: format!("Student {i:02}"),
            })
            .collect()
    }

    #[test]
    fn dealing_places_everyone_once_with_sizes_within_one() {
        for (n, count) in [(1, 1), (7, 3), (10, 2), (5, 5), (23, 4)] {
            let names = (1..=count).map(|i| format!("Group {i}")).collect();
            let groups = deal(people(n), names);
            assert_eq!(groups.len(), count);
            let sizes: Vec<usize> = groups.iter().map(|g| g.members.len()).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "{sizes:?}");
            let mut ids: Vec<&str> = groups
                .iter()
                .flat_map(|g| g.members.iter().map(|m| m.user_id.as_str()))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), n, "each placed once");
            assert!(groups.iter().all(|g| g.id.starts_with("g_") && g.id.len() == 34));
        }
    }

    #[test]
    fn names_are_trimmed_bounded_and_unique_regardless_of_case() {
        assert_eq!(valid_names([" A ", "b"]).unwrap(), ["A", "b"]);
        assert!(valid_names(["Team", "team "]).is_err());
        assert!(valid_names(["", "x"]).is_err());
        assert!(valid_names([&*"é".repeat(61)]).is_err());
        assert!(valid_names([&*"é".repeat(60)]).is_ok());
        assert!(valid_names(std::iter::empty()).is_err());
        let many: Vec<String> = (0..51).map(|i| format!("G{i}")).collect();
        assert!(valid_names(many.iter().map(String::as_str)).is_err());
    }

    #[test]
    fn placing_moves_out_of_the_old_group() {
        let mut s = GroupsState {
            groups: deal(people(2), vec!["A".into(), "B".into()]),
            ..GroupsState::default()
        };
        let sam = s.groups[0].members[0].clone();
        s.place(1, sam.clone());
        assert!(s.groups[0].members.is_empty());
        assert_eq!(s.groups[1].members.len(), 2);
        assert!(s.remove(&sam.user_id));
        assert!(!s.remove(&sam.user_id));
    }

    #[test]
    fn an_old_document_loads_with_no_breakouts() {
        let s: GroupsState = serde_json::from_str("{}").unwrap();
        assert!(!s.active());
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"mode":"assigned","groups":[],"ends_at":null,"broadcasts":[]})
        );
    }
}
