//! Courses, join codes, the roster and roles.
//!
//! | role | may |
//! |---|---|
//! | trainer | everything below, plus: change roles, new join code, course settings |
//! | co_trainer | see the join code and members' emails |
//! | student, observer | see the course and the roster (names and roles) |
//!
//! Anyone signed in may create a course (and becomes its trainer) or join one by
//! its code (as a student). A course is visible to its members only: others get
//! `403 forbidden`, an unknown id `404 course_not_found`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_protocol::ErrorCode;
use herald_server::error::ApiError;
use herald_store::classroom::{Course, CourseUpdate, Member};
use herald_store::Role;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::SignedIn;
use crate::text::{self, Shape};
use crate::{json, store_error, ClassroomState};

/// Longest course title, in characters (after trimming).
pub const MAX_TITLE_CHARS: usize = 120;

/// A course as a member sees it: the join code only for trainers and co-trainers.
#[derive(Debug, Serialize)]
pub struct CourseView<'a> {
    /// Id.
    pub id: &'a str,
    /// Title.
    pub title: &'a str,
    /// Creator's user id.
    pub owner_id: &'a str,
    /// Whether guests may join live sessions.
    pub guests_allowed: bool,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// The caller's role.
    pub role: Role,
    /// The join code (staff only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_code: Option<&'a str>,
}

impl<'a> CourseView<'a> {
    /// `course` as seen by a member with `role`.
    pub fn new(course: &'a Course, role: Role) -> Self {
        Self {
            id: &course.id,
            title: &course.title,
            owner_id: &course.owner_id,
            guests_allowed: course.guests_allowed,
            created_at: course.created_at,
            role,
            join_code: role.is_staff().then_some(course.join_code.as_str()),
        }
    }
}

/// A roster line as a member sees it: emails only for staff.
#[derive(Debug, Serialize)]
struct MemberView<'a> {
    user_id: &'a str,
    name: &'a str,
    role: Role,
    enrolled_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

impl<'a> MemberView<'a> {
    fn new(m: &'a Member, viewer: Role) -> Self {
        Self {
            user_id: &m.user_id,
            name: &m.name,
            role: m.role,
            enrolled_at: m.enrolled_at,
            email: viewer.is_staff().then_some(m.email.as_str()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCourse {
    title: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Join {
    code: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRole {
    role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    title: Option<String>,
    guests_allowed: Option<bool>,
}

/// `GET /classroom/api/courses` -> `{courses:[course with my role]}`, newest first.
pub async fn list(State(state): State<ClassroomState>, who: SignedIn) -> Result<Response, ApiError> {
    let mine = state
        .store
        .courses_of_user(&who.user.id)
        .await
        .map_err(store_error)?;
    let courses: Vec<_> = mine.iter().map(|c| CourseView::new(&c.course, c.role)).collect();
    Ok(Json(json!({ "courses": courses })).into_response())
}

/// `POST /classroom/api/courses {title}` -> `201 {course}`; the caller is its trainer.
pub async fn create(
    State(state): State<ClassroomState>,
    who: SignedIn,
    body: Body,
) -> Result<Response, ApiError> {
    let req: NewCourse = json(body).await?;
    let title = valid_title(&req.title)?;
    let course = state
        .store
        .create_course(title, &who.user.id)
        .await
        .map_err(store_error)?;
    tracing::info!(course = %course.id, user = %who.user.id, "course created");
    let view = CourseView::new(&course, Role::Trainer);
    Ok((StatusCode::CREATED, Json(json!({ "course": view }))).into_response())
}

/// `GET /classroom/api/courses/{id}` -> `{course}` (members only).
pub async fn show(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (course, role) = membership(&state, &id, &who).await?;
    Ok(Json(json!({ "course": CourseView::new(&course, role) })).into_response())
}

/// `PATCH /classroom/api/courses/{id} {title?, guests_allowed?}` -> `{course}`
/// (trainers only).
pub async fn update(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, role) = trainer(&state, &id, &who, "change the course's settings").await?;
    let req: Update = json(body).await?;
    let title = req.title.as_deref().map(valid_title).transpose()?;
    let course = state
        .store
        .update_course(
            &id,
            CourseUpdate {
                title,
                guests_allowed: req.guests_allowed,
            },
        )
        .await
        .map_err(store_error)?;
    Ok(Json(json!({ "course": CourseView::new(&course, role) })).into_response())
}

/// `POST /classroom/api/courses/join {code}` -> `{course}`: enrols the caller as a
/// student (a member already keeps their role). Codes are read without regard
/// to case, spaces or dashes.
pub async fn join(
    State(state): State<ClassroomState>,
    who: SignedIn,
    body: Body,
) -> Result<Response, ApiError> {
    let req: Join = json(body).await?;
    let course = by_join_code(&state, &req.code).await?;
    let enrolment = state
        .store
        .enrol(&course.id, &who.user.id, Role::Student)
        .await
        .map_err(store_error)?;
    if enrolment.created {
        tracing::info!(course = %course.id, user = %who.user.id, "joined a course");
    }
    Ok(Json(json!({ "course": CourseView::new(&course, enrolment.role) })).into_response())
}

/// The course of a join code as people type it (any case, spaces and dashes
/// ignored): `404 course_not_found` when none has it.
pub(crate) async fn by_join_code(state: &ClassroomState, raw: &str) -> Result<Course, ApiError> {
    let code: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let not_found = || {
        ApiError::new(
            ErrorCode::CourseNotFound,
            "no course has that join code; check it with your trainer",
        )
    };
    if code.is_empty() || code.len() > 64 {
        return Err(not_found());
    }
    state
        .store
        .course_by_join_code(&code)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)
}

/// `GET /classroom/api/courses/{id}/roster` -> `{members:[{user_id,name,role,enrolled_at,email?}]}`
/// (members only; emails for trainers and co-trainers).
pub async fn roster(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, role) = membership(&state, &id, &who).await?;
    let members = state.store.roster(&id).await.map_err(store_error)?;
    let views: Vec<_> = members.iter().map(|m| MemberView::new(m, role)).collect();
    Ok(Json(json!({ "members": views })).into_response())
}

/// `POST /classroom/api/courses/{id}/roster/{user_id} {role}` -> `{user_id, role}`
/// (trainers only; the last trainer cannot be demoted).
pub async fn set_role(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path((id, user_id)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    trainer(&state, &id, &who, "change roles").await?;
    let req: SetRole = json(body).await?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            "role must be one of trainer, co_trainer, student, observer",
        )
    })?;
    state
        .store
        .set_role(&id, &user_id, role)
        .await
        .map_err(store_error)?;
    tracing::info!(course = %id, user = %user_id, role = role.as_str(), by = %who.user.id, "role changed");
    Ok(Json(json!({ "user_id": user_id, "role": role })).into_response())
}

/// `POST /classroom/api/courses/{id}/code` -> `{join_code}`: a new join code, the
/// old one stops working (trainers only).
pub async fn rotate_code(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    trainer(&state, &id, &who, "change the join code").await?;
    let code = state.store.rotate_join_code(&id).await.map_err(store_error)?;
    Ok(Json(json!({ "join_code": code })).into_response())
}

/// The course and the caller's role in it: `404 course_not_found` for an unknown
/// course, `403 forbidden` for a non-member.
pub(crate) async fn membership(
    state: &ClassroomState,
    id: &str,
    who: &SignedIn,
) -> Result<(Course, Role), ApiError> {
    let course = state
        .store
        .course(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::new(ErrorCode::CourseNotFound, "there is no such course"))?;
    let role = state
        .store
        .role(id, &who.user.id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Forbidden,
                "you are not a member of this course; join it with its code",
            )
        })?;
    Ok((course, role))
}

/// Like [`membership`], and `403 forbidden` unless the caller is a trainer.
async fn trainer(
    state: &ClassroomState,
    id: &str,
    who: &SignedIn,
    what: &str,
) -> Result<(Course, Role), ApiError> {
    let (course, role) = membership(state, id, who).await?;
    if role != Role::Trainer {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("only the course's trainers may {what}"),
        ));
    }
    Ok((course, role))
}

/// A trimmed title (course, session, deck) of 1 to [`MAX_TITLE_CHARS`]
/// characters, by the rule of shown texts ([`crate::text`]).
pub(crate) fn valid_title(raw: &str) -> Result<&str, ApiError> {
    text::shown(
        raw,
        MAX_TITLE_CHARS,
        "a title",
        Shape::Line,
        ErrorCode::InvalidName,
    )
}
