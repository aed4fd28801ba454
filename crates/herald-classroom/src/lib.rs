//! The live classroom: accounts, courses and enrolment, live sessions and
//! their features, with their HTTP API under `/classroom/api/`.
//!
//! One module per noun: [`accounts`] (sign-up, sign-in, sign-out, who am I,
//! guests), [`auth`] (the session cookie, the CSRF check every
//! state-changing request passes, the sweep of expired sessions),
//! [`throttle`] (failed sign-ins per address and per account), [`courses`] (courses, join codes, the
//! roster and roles), [`sessions`] (live sessions over HTTP: life, snapshot,
//! token, log), [`demo`] (a demo lesson in one call). A live session is made of
//! features, listed in [`features`]: [`hands`], [`roles`], [`here`] (who is
//! here), [`questions`] (Q&A), [`slides`], [`polls`], [`groups`]. The
//! sequencer [`live`] runs every change of a session, records it in the
//! session log and publishes its events; it knows no feature. Rows live in a
//! [`ClassroomStore`]; errors are herald-server's [`ApiError`], so a refusal
//! here looks like a refusal anywhere else in Herald.
//!
//! The model (docs/classroom.md, "Design"): every change is one entry in the
//! session's log plus events on the session's channels; every screen loads a
//! snapshot carrying a cursor, then subscribes from that cursor.

pub mod accounts;
pub mod auth;
pub mod clock;
pub mod courses;
pub mod demo;
pub mod export;
pub mod features;
pub mod groups;
pub mod hands;
pub mod here;
pub mod live;
pub mod polls;
pub mod questions;
pub mod roles;
pub mod sessions;
pub mod slides;
mod text;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use herald_node::{Node, NodeError};
use herald_protocol::ErrorCode;
use herald_server::error::ApiError;
use herald_store::{ClassroomError, ClassroomStore};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

/// The largest request body the classroom API reads.
pub const MAX_BODY: usize = 16 * 1024;
/// How many password hashes are computed at once (each takes ~19 MiB and tens
/// of milliseconds of CPU); further sign-ins wait their turn.
pub const MAX_CONCURRENT_HASHES: usize = 8;

/// The classroom's settings.
#[derive(Debug, Clone)]
pub struct ClassroomOptions {
    /// Mark the cookies `Secure` (sent over HTTPS only). On behind TLS.
    pub secure_cookies: bool,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// Origins, besides this server's own, whose pages may call the API with
    /// the visitor's cookies: the server's `cors_origins`, where `*` counts for
    /// nothing (herald_server::cors).
    pub allowed_origins: Vec<String>,
    /// The header a reverse proxy in front sets to the client's address
    /// (`x-forwarded-for`: its last entry), for the sign-in throttle; `None`:
    /// the connection's address. Set it only when clients cannot reach Herald
    /// but through that proxy, or they choose their own address.
    pub client_ip_header: Option<axum::http::HeaderName>,
    /// How often expired web sessions are deleted ([`auth::sweep_sessions`]).
    pub session_sweep: Duration,
}

impl Default for ClassroomOptions {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            allowed_origins: Vec::new(),
            client_ip_header: None,
            session_sweep: Duration::from_secs(3600),
        }
    }
}

/// What every classroom handler gets. Cheap to clone.
#[derive(Clone)]
pub struct ClassroomState {
    /// The classroom's rows.
    pub store: Arc<dyn ClassroomStore>,
    /// The settings.
    pub options: Arc<ClassroomOptions>,
    /// The sequencer of live sessions.
    pub live: Arc<live::Live>,
    /// Bounds the password hashes computed at once ([`MAX_CONCURRENT_HASHES`]).
    hashing: Arc<Semaphore>,
    /// Failed sign-ins per address and per account ([`throttle`]).
    throttle: Arc<throttle::Throttle>,
}

impl ClassroomState {
    /// A state over `store` with `options`, publishing live sessions' events
    /// with `node` in the app [`live::APP`] (which must exist).
    ///
    /// # Errors
    /// Only if [`live::APP`] were not a valid app name.
    pub fn new(
        store: Arc<dyn ClassroomStore>,
        options: ClassroomOptions,
        node: Node,
    ) -> Result<Self, NodeError> {
        Ok(Self {
            live: live::Live::new(node, store.clone(), features::registrations())?,
            store,
            options: Arc::new(options),
            hashing: Arc::new(Semaphore::new(MAX_CONCURRENT_HASHES)),
            throttle: Arc::new(throttle::Throttle::default()),
        })
    }
}

/// The classroom API, to merge into Herald's router.
pub fn routes(state: ClassroomState) -> Router {
    Router::new()
        .route("/classroom/api/auth/signup", post(accounts::signup))
        .route("/classroom/api/auth/signin", post(accounts::signin))
        .route("/classroom/api/auth/signout", post(accounts::signout))
        .route("/classroom/api/auth/guest", post(accounts::guest))
        .route("/classroom/api/auth/me", get(accounts::me))
        .route("/classroom/api/courses", get(courses::list).post(courses::create))
        .route("/classroom/api/courses/join", post(courses::join))
        .route("/classroom/api/demo", post(demo::create))
        .route(
            "/classroom/api/courses/{id}",
            get(courses::show).patch(courses::update),
        )
        .route("/classroom/api/courses/{id}/roster", get(courses::roster))
        .route(
            "/classroom/api/courses/{id}/roster/{user_id}",
            post(courses::set_role),
        )
        .route("/classroom/api/courses/{id}/code", post(courses::rotate_code))
        .route(
            "/classroom/api/courses/{id}/sessions",
            get(sessions::list).post(sessions::create),
        )
        .route("/classroom/api/sessions/{sid}", get(sessions::show))
        .route("/classroom/api/sessions/{sid}/start", post(sessions::start))
        .route("/classroom/api/sessions/{sid}/pause", post(sessions::pause))
        .route("/classroom/api/sessions/{sid}/resume", post(sessions::resume))
        .route("/classroom/api/sessions/{sid}/end", post(sessions::end))
        .route("/classroom/api/sessions/{sid}/token", get(sessions::token))
        .route("/classroom/api/sessions/{sid}/log", get(sessions::log))
        .merge(features::routes())
        .route_layer(axum::middleware::from_fn(sessions::prefer))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::same_origin,
        ))
        .with_state(state)
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes.
async fn json<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    herald_server::request::json_body(body, MAX_BODY).await
}

/// The answer for a store failure the handler did not expect.
fn store_error(e: ClassroomError) -> ApiError {
    match e {
        ClassroomError::EmailTaken => ApiError::new(
            ErrorCode::EmailTaken,
            "an account with that email exists already; sign in instead",
        ),
        ClassroomError::CourseNotFound => ApiError::new(ErrorCode::CourseNotFound, "there is no such course"),
        ClassroomError::NotMember => ApiError::new(
            ErrorCode::MemberNotFound,
            "that user is not a member of this course",
        ),
        ClassroomError::LastTrainer => ApiError::new(
            ErrorCode::LastTrainer,
            "a course must keep at least one trainer; make someone else trainer first",
        ),
        ClassroomError::SessionNotFound => live::not_found(),
        ClassroomError::LogConflict => ApiError::new(
            ErrorCode::StoreUnavailable,
            "this session was changed on another server meanwhile; try again",
        ),
        ClassroomError::Unavailable(detail) => {
            tracing::warn!(%detail, "classroom store unavailable");
            ApiError::new(
                ErrorCode::StoreUnavailable,
                "the database is unavailable; retry shortly",
            )
        }
    }
}
