//! Who is calling: the session cookie, and the CSRF check.
//!
//! Signing in (or up) makes two random 32-byte tokens:
//! - the **session token**, in the cookie `herald_session` (`HttpOnly`,
//!   `SameSite=Lax`, `Path=/`, 30 days, `Secure` when configured). The store
//!   keeps only its SHA-256, as the web session's id: a leaked database signs
//!   nobody in.
//! - the **CSRF token**, in the cookie `herald_csrf` (readable by the page's
//!   script, `SameSite=Strict`) and in the sign-in answer. Its SHA-256 is kept
//!   with the web session. Every state-changing request (any method but `GET`,
//!   `HEAD`, `OPTIONS`) must send it back in the `x-csrf-token` header. A page
//!   on another site can make the browser send cookies, but cannot read them nor
//!   set that header, and the token is tied to the session: a token from another
//!   session (or planted in a cookie) does not match.
//!
//! Web sessions last `session_ttl`; an expired one is refused and deleted when
//! it is used, and [`sweep_sessions`] deletes the rest, every
//! `session_sweep`.
//!
//! [`SignedIn`] is the extractor that does both checks; handlers that take it
//! cannot forget either. Beside them, [`same_origin`] refuses every request
//! from a page of another origin (`403 origin_not_allowed`), signing in
//! included: only this server's pages and the listed `cors_origins` may act
//! with the visitor's cookies.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use herald_protocol::ErrorCode;
use herald_server::cors::CorsPolicy;
use herald_server::error::ApiError;
use herald_store::classroom::{User, WebSession};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::now_ms;
use crate::{store_error, ClassroomState};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "herald_session";
/// The CSRF cookie's name.
pub const CSRF_COOKIE: &str = "herald_csrf";
/// The header that must carry the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A caller with a valid session (and, on a state-changing request, the
/// session's CSRF token).
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The signed-in user.
    pub user: User,
    /// The web session's id (SHA-256 of the cookie's token).
    pub session_id: String,
}

impl FromRequestParts<ClassroomState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ClassroomState) -> Result<Self, ApiError> {
        let unauthenticated = || {
            ApiError::new(
                ErrorCode::Unauthorized,
                "you are not signed in; sign in and try again",
            )
        };
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(unauthenticated)?;
        let id = hash_token(token);
        let (session, user) = state
            .store
            .web_session(&id)
            .await
            .map_err(store_error)?
            .ok_or_else(unauthenticated)?;
        if session.expires_at <= now_ms() {
            // Best effort: it is refused either way.
            let _ = state.store.delete_web_session(&id).await;
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "your session has expired; sign in again",
            ));
        }
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let matches: bool = hash_token(sent)
                .as_bytes()
                .ct_eq(session.csrf_hash.as_bytes())
                .into();
            if sent.is_empty() || !matches {
                return Err(ApiError::new(
                    ErrorCode::CsrfFailed,
                    format!("send the value of the {CSRF_COOKIE} cookie in the {CSRF_HEADER} header"),
                ));
            }
        }
        Ok(SignedIn {
            user,
            session_id: session.id,
        })
    }
}

/// The client's address, for the sign-in throttle: the last entry of the
/// configured [`ClassroomOptions::client_ip_header`](crate::ClassroomOptions)
/// when it holds one, else the connection's (None when neither is known).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<ClassroomState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &ClassroomState) -> Result<Self, Self::Rejection> {
        let forwarded = state.options.client_ip_header.as_ref().and_then(|name| {
            parts
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
        });
        let peer = || {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        };
        Ok(Self(forwarded.or_else(peer)))
    }
}

/// Most expired web sessions deleted by one statement of a sweep.
pub const SWEEP_BATCH: usize = 1000;
/// Most statements of one sweep (what is left waits for the next).
pub const SWEEP_BATCHES: usize = 100;

/// Deletes expired web sessions every
/// [`ClassroomOptions::session_sweep`](crate::ClassroomOptions), whoever they
/// belong to (a guest never signs in again, so nothing else would). Runs
/// until dropped.
pub async fn sweep_sessions(state: ClassroomState) {
    let every = state.options.session_sweep;
    loop {
        tokio::time::sleep(every).await;
        let mut swept = 0u64;
        for _ in 0..SWEEP_BATCHES {
            match state
                .store
                .delete_expired_web_sessions(now_ms(), SWEEP_BATCH)
                .await
            {
                Ok(n) => {
                    swept += n;
                    if n < SWEEP_BATCH as u64 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "expired web sessions not swept; the next sweep tries again");
                    break;
                }
            }
        }
        if swept > 0 {
            tracing::info!(swept, "expired web sessions swept");
        }
    }
}

/// Refuses a request sent by a page of a foreign origin (herald_server::cors).
pub async fn same_origin(
    State(state): State<ClassroomState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    CorsPolicy::new(&state.options.allowed_origins).check_credentialed(req.headers())?;
    Ok(next.run(req).await)
}

/// A new web session for `user`: stored, and returned as the `Set-Cookie`
/// headers to send plus the CSRF token (for the answer's body).
///
/// # Errors
/// `store_unavailable`.
pub async fn start_session(state: &ClassroomState, user: &User) -> Result<(HeaderMap, String), ApiError> {
    let token = random_token();
    let csrf = random_token();
    let now = now_ms();
    let ttl_ms = i64::try_from(state.options.session_ttl.as_millis()).unwrap_or(i64::MAX);
    let session = WebSession {
        id: hash_token(&token),
        user_id: user.id.clone(),
        csrf_hash: hash_token(&csrf),
        created_at: now,
        expires_at: now.saturating_add(ttl_ms),
    };
    state
        .store
        .create_web_session(&session)
        .await
        .map_err(store_error)?;
    let max_age = state.options.session_ttl.as_secs();
    let secure = if state.options.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let mut headers = HeaderMap::new();
    for cookie in [
        format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}"),
        format!("{CSRF_COOKIE}={csrf}; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"),
    ] {
        // Tokens are base64url: always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append(SET_COOKIE, v);
        }
    }
    Ok((headers, csrf))
}

/// `Set-Cookie` headers that remove both cookies.
pub fn clear_cookies(state: &ClassroomState) -> HeaderMap {
    let secure = if state.options.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let mut headers = HeaderMap::new();
    for cookie in [
        format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0{secure}"),
        format!("{CSRF_COOKIE}=; SameSite=Strict; Path=/; Max-Age=0{secure}"),
    ] {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append(SET_COOKIE, v);
        }
    }
    headers
}

/// The value of cookie `name` in the request's `Cookie` headers (the first one;
/// empty values count as absent).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.trim_matches('"'))
}

/// 32 random bytes, base64url without padding (43 characters).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The id the store keeps a web session by: the SHA-256 of its cookie's token.
pub fn session_id(token: &str) -> String {
    hash_token(token)
}

/// SHA-256 of a token, hex. Tokens are 256 random bits: a fast hash is enough.
fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; herald_session=tok; b=2"));
        h.append(COOKIE, HeaderValue::from_static("herald_csrf=c"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, CSRF_COOKIE), Some("c"));
        assert_eq!(cookie(&h, "missing"), None);
        let mut empty = HeaderMap::new();
        empty.append(COOKIE, HeaderValue::from_static("herald_session=; x"));
        assert_eq!(cookie(&empty, SESSION_COOKIE), None);
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), a);
    }
}
