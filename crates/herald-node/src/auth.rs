//! Who is asking and what they may do: app keys, client tokens, permissions.
//!
//! - Server API calls carry the app's secret key (or the admin key); keys are kept
//!   hashed and compared in constant time (herald-store).
//! - Browsers carry a JWT signed with the app's token secret. The algorithm is
//!   pinned to HS256 (no `none`, no algorithm confusion); `exp` is required, `nbf`
//!   honoured, an `iat` in the future refused, all with a small leeway; a `sub`
//!   with control characters and a token over [`MAX_TOKEN_BYTES`] are refused.
//!   No key is ever fetched: headers that point at keys elsewhere (`jku`,
//!   `x5u`, `jwk`, `kid`) are not read, only the app's own secrets verify.
//! - Permissions: `channels` and `publish` claims are patterns (herald-protocol's
//!   `pattern`); a user-limited channel (`im#alice,bob`) admits exactly its users,
//!   to subscribe and to publish from a client, whatever the patterns say;
//!   a namespace may open subscribing to everyone (`anonymous_subscribe`) and may
//!   close client publishing altogether (`client_publish = false`).

use std::sync::Arc;
use std::time::Duration;

use herald_protocol::{pattern, ChannelName, ErrorCode};
use herald_store::AppRecord;
use jsonwebtoken::{decode, errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::config::NamespaceOptions;
use crate::error::NodeError;

/// The claims of a client token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// User id; absent for anonymous users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Expiry, Unix seconds (required).
    pub exp: i64,
    /// Not valid before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued at, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// The app the token is for; when present it must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Patterns of channels the holder may subscribe to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Patterns of channels the holder may publish to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// Presence info (e.g. a display name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

/// The holder of a connection or client request.
#[derive(Debug, Clone)]
pub struct Identity {
    /// User id (`""`: anonymous).
    pub user: String,
    /// Presence info as compact JSON.
    pub info: Arc<str>,
    /// Subscribe patterns.
    pub channels: Vec<String>,
    /// Publish patterns.
    pub publish: Vec<String>,
    /// Token expiry, Unix seconds (None: no token).
    pub expires: Option<i64>,
}

impl Identity {
    /// Someone without a token.
    pub fn anonymous() -> Self {
        Self {
            user: String::new(),
            info: Arc::from("null"),
            channels: Vec::new(),
            publish: Vec::new(),
            expires: None,
        }
    }

    fn from_claims(mut c: Claims) -> Self {
        // Held for the connection's life: no spare capacity.
        c.channels.shrink_to_fit();
        c.publish.shrink_to_fit();
        Self {
            user: c.sub.unwrap_or_default(),
            info: Arc::from(c.info.map(|v| v.to_string()).unwrap_or_else(|| "null".into())),
            channels: c.channels,
            publish: c.publish,
            expires: Some(c.exp),
        }
    }

    /// True when the holder sent a token (an anonymous one included).
    pub fn has_token(&self) -> bool {
        self.expires.is_some()
    }

    /// Checks that this identity may subscribe to `channel`.
    ///
    /// # Errors
    /// `unauthorized` without a token (no credentials: the client should get
    /// one), `forbidden` when the token does not allow it; both name the channel.
    pub fn check_subscribe(&self, channel: &ChannelName, ns: &NamespaceOptions) -> Result<(), NodeError> {
        let ok = if channel.allowed_users().is_some() {
            channel.is_limited_to(&self.user)
        } else {
            ns.anonymous_subscribe || pattern::any_matches(&self.channels, channel.as_str())
        };
        if ok {
            Ok(())
        } else if !self.has_token() {
            Err(NodeError::new(
                ErrorCode::Unauthorized,
                format!(
                    "subscribing to {:?} needs a token: send one as ?token= or 'Authorization: Bearer <token>'",
                    channel.as_str()
                ),
            ))
        } else {
            Err(NodeError::new(
                ErrorCode::Forbidden,
                format!("this token does not allow subscribing to {:?}", channel.as_str()),
            ))
        }
    }

    /// Checks that this identity may publish to `channel` from a client.
    ///
    /// # Errors
    /// `forbidden` with a message saying why.
    pub fn check_publish(&self, channel: &ChannelName, ns: &NamespaceOptions) -> Result<(), NodeError> {
        if !ns.client_publish {
            return Err(NodeError::new(
                ErrorCode::Forbidden,
                format!(
                    "clients may not publish to namespace {:?}; publish from your backend with the app key",
                    channel.namespace()
                ),
            ));
        }
        // A user-limited channel takes only its users' messages, whatever the
        // grants say (as for subscribing); any other needs a matching grant.
        let ok = if channel.allowed_users().is_some() {
            channel.is_limited_to(&self.user)
        } else {
            pattern::any_matches(&self.publish, channel.as_str())
        };
        if ok {
            Ok(())
        } else {
            Err(NodeError::new(
                ErrorCode::Forbidden,
                format!("this token does not allow publishing to {:?}", channel.as_str()),
            ))
        }
    }
}

/// True when `s` has the shape of a JWT (three dot-separated parts).
pub fn looks_like_token(s: &str) -> bool {
    s.split('.').count() == 3
}

/// The longest client token taken: it travels in URLs and is held by its
/// connection; grants are patterns, so a long list is a mistake.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Verifies a client token against the app's token secrets.
///
/// # Errors
/// `token_expired` when it has expired, `invalid_token` for anything else wrong.
pub fn verify_token(app: &AppRecord, token: &str, leeway: Duration) -> Result<Identity, NodeError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(NodeError::new(
            ErrorCode::InvalidToken,
            format!(
                "the token is over {MAX_TOKEN_BYTES} bytes; grant channels with patterns (chat:*) rather than long lists"
            ),
        ));
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = leeway.as_secs();
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp"]);
    let mut last = NodeError::new(ErrorCode::InvalidToken, "the token is not valid for this app");
    for secret in &app.token_secrets {
        match decode::<Claims>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation) {
            Ok(data) => {
                if let Some(a) = &data.claims.app {
                    if a != &app.name {
                        return Err(NodeError::new(
                            ErrorCode::InvalidToken,
                            format!("the token is for app {a:?}, not {:?}", app.name),
                        ));
                    }
                }
                // A user id is shown to others (presence) and written in logs.
                if data
                    .claims
                    .sub
                    .as_deref()
                    .is_some_and(|s| s.chars().any(char::is_control))
                {
                    return Err(NodeError::new(
                        ErrorCode::InvalidToken,
                        "the token's sub may not hold control characters (line breaks, NUL, ...)",
                    ));
                }
                // A token issued in the future was made by a wrong clock or
                // forged to outlive a key rotation's audit: refuse it beyond the
                // leeway, as `nbf`.
                if let Some(iat) = data.claims.iat {
                    let now = herald_broker::now_millis() / 1000;
                    if iat > now.saturating_add(leeway.as_secs() as i64) {
                        return Err(NodeError::new(
                            ErrorCode::InvalidToken,
                            format!(
                                "the token was issued in the future (iat {iat}, now {now}); check the issuer's clock"
                            ),
                        ));
                    }
                }
                return Ok(Identity::from_claims(data.claims));
            }
            Err(e) => {
                last = match e.kind() {
                    ErrorKind::ExpiredSignature => {
                        return Err(NodeError::new(
                            ErrorCode::TokenExpired,
                            "the token has expired; get a fresh one and reconnect",
                        ))
                    }
                    ErrorKind::ImmatureSignature => {
                        NodeError::new(ErrorCode::InvalidToken, "the token is not valid yet (nbf)")
                    }
                    ErrorKind::InvalidAlgorithm => NodeError::new(
                        ErrorCode::InvalidToken,
                        "the token must be signed with HS256 and the app's token secret",
                    ),
                    ErrorKind::MissingRequiredClaim(c) => NodeError::new(
                        ErrorCode::InvalidToken,
                        format!("the token lacks the required claim {c:?}"),
                    ),
                    ErrorKind::InvalidSignature => NodeError::new(
                        ErrorCode::InvalidToken,
                        "the token's signature does not match this app",
                    ),
                    _ => NodeError::new(ErrorCode::InvalidToken, format!("the token is malformed: {e}")),
                };
            }
        }
    }
    Err(last)
}

/// Signs a client token with the app's newest token secret (for the CLI and tests).
///
/// # Errors
/// `internal` when signing fails (it does not with HS256).
pub fn sign_token(secret: &str, claims: &Claims) -> Result<String, NodeError> {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| NodeError::new(ErrorCode::Internal, format!("could not sign the token: {e}")))
}
