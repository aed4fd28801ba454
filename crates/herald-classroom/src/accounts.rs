//! Accounts: sign-up, sign-in, sign-out, and who am I.
//!
//! Passwords are hashed with Argon2id (the `argon2` crate's default parameters:
//! 19 MiB, 2 passes), off the async threads and at most
//! [`MAX_CONCURRENT_HASHES`](crate::MAX_CONCURRENT_HASHES) at a time. A sign-in
//! with an unknown email still checks a password against a hash, so it takes as
//! long as one with a wrong password and the answers (`401 bad_credentials`,
//! same message) cannot tell which emails have accounts. Failed sign-ins are
//! throttled per address and per account ([`crate::throttle`]): `429
//! rate_limited` with `Retry-After`.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_node::NodeError;
use herald_protocol::ErrorCode;
use herald_server::error::ApiError;
use herald_store::classroom::{NewUser, User};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{clear_cookies, start_session, ClientAddress, SignedIn};
use crate::clock::now_ms;
use crate::text::{self, Shape};
use crate::{json, store_error, ClassroomState};

/// Shortest password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password, in bytes (hashing cost grows with it).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest email, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest display name, in characters (after trimming).
pub const MAX_NAME_CHARS: usize = 80;

/// The domain of guests' made-up email addresses (`.invalid` is reserved: no
/// mail goes there, and nobody can sign in with it).
pub const GUEST_DOMAIN: &str = "guests.invalid";

/// A user as the API shows them.
#[derive(Debug, Serialize)]
pub struct UserView<'a> {
    /// Id.
    pub id: &'a str,
    /// Lower-cased email (`guest.…@guests.invalid` for a guest).
    pub email: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Joined by name with a course's code, without an account.
    pub guest: bool,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(u: &'a User) -> Self {
        Self {
            id: &u.id,
            email: &u.email,
            name: &u.name,
            guest: is_guest(u),
        }
    }
}

/// The stored "hash" of an account without a password (a guest): not a PHC
/// string, so no password matches it.
const NO_PASSWORD: &str = "!no-password";

/// Whether `user` is a guest (joined by name, no password).
pub fn is_guest(user: &User) -> bool {
    user.email.ends_with(&format!("@{GUEST_DOMAIN}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignUp {
    email: String,
    name: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Guest {
    code: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    email: String,
    password: String,
}

/// `POST /classroom/api/auth/signup {email,name,password}` -> `201`, the cookies,
/// `{user:{id,email,name},csrf}`.
pub async fn signup(State(state): State<ClassroomState>, body: Body) -> Result<Response, ApiError> {
    let req: SignUp = json(body).await?;
    let email = valid_email(&req.email)?;
    let name = valid_name(&req.name)?;
    valid_password(&req.password)?;
    let hash = hash_password(&state, req.password).await?;
    let user = state
        .store
        .create_user(NewUser {
            email,
            name,
            password_hash: &hash,
        })
        .await
        .map_err(store_error)?;
    tracing::info!(user = %user.id, "classroom account created");
    signed_in(&state, &user, StatusCode::CREATED).await
}

/// `POST /classroom/api/auth/signin {email,password}` -> `200`, the cookies,
/// `{user,csrf}`; `401 bad_credentials` for an unknown email or a wrong password.
pub async fn signin(
    State(state): State<ClassroomState>,
    address: ClientAddress,
    body: Body,
) -> Result<Response, ApiError> {
    let req: SignIn = json(body).await?;
    let bad = || ApiError::new(ErrorCode::BadCredentials, "wrong email or password");
    // A try is taken before any hashing, and given back on success.
    let taken = state
        .throttle
        .take(now_ms(), address.0, &req.email)
        .map_err(|wait| {
            ApiError(
                NodeError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "too many failed sign-ins from here or for this account; try again in {} s",
                        wait.as_secs().max(1)
                    ),
                )
                .retry_after(wait),
            )
        })?;
    if req.password.len() > MAX_PASSWORD_BYTES {
        // No account has such a password: do not spend time hashing it.
        return Err(bad());
    }
    let login = state
        .store
        .user_by_email(req.email.trim())
        .await
        .map_err(store_error)?;
    let stored = login.as_ref().map(|l| l.password_hash.clone());
    let ok = verify_password(&state, req.password, stored).await?;
    match login {
        Some(login) if ok => {
            state.throttle.give_back(now_ms(), taken);
            signed_in(&state, &login.user, StatusCode::OK).await
        }
        _ => Err(bad()),
    }
}

/// `POST /classroom/api/auth/guest {code, name}` -> `201`, the cookies,
/// `{user, csrf, course}`: joins the course of that join code as a student
/// without an account, where its trainers allow guests (`403 forbidden`
/// otherwise; `404 course_not_found` for an unknown code). The guest is signed
/// in on this browser only: there is no password to sign in elsewhere.
pub async fn guest(State(state): State<ClassroomState>, body: Body) -> Result<Response, ApiError> {
    let req: Guest = json(body).await?;
    let name = valid_name(&req.name)?;
    let course = crate::courses::by_join_code(&state, &req.code).await?;
    if !course.guests_allowed {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this course does not take guests; create an account, or ask the trainer to let guests join",
        ));
    }
    // No password: the account exists for this browser's session only.
    let hash = NO_PASSWORD;
    let email = format!("guest.{}@{GUEST_DOMAIN}", hex::encode(rand::random::<[u8; 12]>()));
    let user = state
        .store
        .create_user(NewUser {
            email: &email,
            name,
            password_hash: hash,
        })
        .await
        .map_err(store_error)?;
    let enrolment = state
        .store
        .enrol(&course.id, &user.id, herald_store::Role::Student)
        .await
        .map_err(store_error)?;
    tracing::info!(course = %course.id, user = %user.id, "a guest joined a course");
    let (cookies, csrf) = start_session(&state, &user).await?;
    let body = json!({
        "user": UserView::from(&user),
        "csrf": csrf,
        "course": crate::courses::CourseView::new(&course, enrolment.role),
    });
    Ok((StatusCode::CREATED, cookies, Json(body)).into_response())
}

/// `POST /classroom/api/auth/signout` -> `204`, the cookies removed. Needs the
/// CSRF header like every state-changing request.
pub async fn signout(State(state): State<ClassroomState>, who: SignedIn) -> Result<Response, ApiError> {
    state
        .store
        .delete_web_session(&who.session_id)
        .await
        .map_err(store_error)?;
    Ok((StatusCode::NO_CONTENT, clear_cookies(&state)).into_response())
}

/// `GET /classroom/api/auth/me` -> `{user}`; `401 unauthorized` when not signed in.
pub async fn me(who: SignedIn) -> Response {
    Json(json!({ "user": UserView::from(&who.user) })).into_response()
}

async fn signed_in(state: &ClassroomState, user: &User, status: StatusCode) -> Result<Response, ApiError> {
    let (cookies, csrf) = start_session(state, user).await?;
    let body = json!({ "user": UserView::from(user), "csrf": csrf });
    Ok((status, cookies, Json(body)).into_response())
}

/// A trimmed email of the loose form `local@domain.tld`, at most
/// [`MAX_EMAIL_BYTES`].
fn valid_email(raw: &str) -> Result<&str, ApiError> {
    let email = raw.trim();
    let bad = |why: &str| ApiError::new(ErrorCode::InvalidEmail, format!("email: {why}"));
    if email.len() > MAX_EMAIL_BYTES {
        return Err(bad(&format!("at most {MAX_EMAIL_BYTES} characters")));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("no spaces or control characters"));
    }
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("write it as name@example.org, with one @"));
    };
    let dotted = domain
        .split_once('.')
        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !domain.ends_with('.'));
    if local.is_empty() || !dotted {
        return Err(bad("write it as name@example.org"));
    }
    Ok(email)
}

/// A trimmed name of 1 to [`MAX_NAME_CHARS`] characters, by the rule of
/// shown texts ([`crate::text`]).
fn valid_name(raw: &str) -> Result<&str, ApiError> {
    text::shown(raw, MAX_NAME_CHARS, "a name", Shape::Line, ErrorCode::InvalidName)
}

fn valid_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::new(
            ErrorCode::InvalidPassword,
            format!("password: at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::new(
            ErrorCode::InvalidPassword,
            format!("password: at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn hashing_failed(detail: impl std::fmt::Display) -> ApiError {
    tracing::error!(%detail, "password hashing failed");
    ApiError::new(ErrorCode::Internal, "the server failed; the log has the details")
}

/// The Argon2id PHC string of `password`, computed on a blocking thread.
async fn hash_password(state: &ClassroomState, password: String) -> Result<String, ApiError> {
    let _permit = state.hashing.acquire().await.map_err(hashing_failed)?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(hashing_failed)?
    .map_err(hashing_failed)
}

/// Whether `password` matches `stored`; with no stored hash, checks against a
/// fixed one (and answers false) so that the time taken does not tell.
async fn verify_password(
    state: &ClassroomState,
    password: String,
    stored: Option<String>,
) -> Result<bool, ApiError> {
    let _permit = state.hashing.acquire().await.map_err(hashing_failed)?;
    tokio::task::spawn_blocking(move || {
        // No account, or one without a password: check against a fixed hash all
        // the same, so the time taken does not tell.
        let known = stored.as_deref().is_some_and(|s| s != NO_PASSWORD);
        let phc = match stored {
            Some(s) if known => s,
            _ => dummy_hash().to_owned(),
        };
        let Ok(parsed) = PasswordHash::new(&phc) else {
            tracing::error!("a stored password hash is not a PHC string");
            return false;
        };
        known
            && Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
    })
    .await
    .map_err(hashing_failed)
}

/// A hash of a random password with the default parameters, made once.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        let random: [u8; 16] = rand::random();
        Argon2::default()
            .hash_password(&random, &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn emails_are_checked_loosely() {
        for ok in ["a@b.co", "  Ada.Lovelace+x@math.example.org ", "x@sub.b.c"] {
            assert!(valid_email(ok).is_ok(), "{ok}");
        }
        assert_eq!(valid_email(" a@b.co ").unwrap(), "a@b.co");
        for bad in [
            "", "a", "a@b", "@b.co", "a@@b.co", "a@b@c.co", "a@.co", "a@b.", "a b@c.de",
        ] {
            assert_eq!(
                valid_email(bad).unwrap_err().0.code,
                ErrorCode::InvalidEmail,
                "{bad:?}"
            );
        }
        let long = format!("{}@example.org", "a".repeat(250));
        assert!(valid_email(&long).is_err());
    }

    #[test]
    fn names_and_passwords() {
        assert_eq!(valid_name("  Ada  ").unwrap(), "Ada");
        assert!(valid_name("   ").is_err());
        assert!(valid_name(&"é".repeat(80)).is_ok());
        assert!(valid_name(&"é".repeat(81)).is_err());
        assert!(valid_name("a\u{0}b").is_err());
        assert!(valid_password("1234567").is_err());
        assert!(valid_password("12345678").is_ok());
        assert!(valid_password(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn dummy_hash_is_a_phc_string() {
        assert!(PasswordHash::new(dummy_hash()).is_ok());
        assert!(dummy_hash().starts_with("$argon2id$"));
    }
}
