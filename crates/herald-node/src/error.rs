//! `NodeError`: a refusal or failure with its error code and a sentence for the user.

use std::time::Duration;

use herald_broker::BrokerError;
use herald_protocol::ErrorCode;
use herald_store::StoreError;

/// An error of any node operation: the code (which fixes the HTTP status and close
/// code) and a message a person can act on. The caller's state is unchanged unless
/// the operation's doc says otherwise.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct NodeError {
    /// The error code.
    pub code: ErrorCode,
    /// A sentence for the user.
    pub message: String,
    /// When trying again later helps: how much later (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl NodeError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the client to try again after `delay`.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// [`NodeError::retry_after`] in whole seconds, at least 1 (as the HTTP
    /// header and the WebSocket error's `retry_after` say it).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .map(|s| s.max(1))
    }
}

impl From<BrokerError> for NodeError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::Unavailable(detail) => {
                tracing::warn!(%detail, "broker unavailable");
                NodeError::new(
                    ErrorCode::BrokerUnavailable,
                    "the message broker is unavailable; nothing was published, retry shortly",
                )
            }
            BrokerError::IdempotencyConflict => NodeError::new(
                ErrorCode::IdempotencyConflict,
                "this idempotency_key was already used with a different request; use a new key",
            ),
        }
    }
}

impl From<StoreError> for NodeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AppExists(name) => NodeError::new(
                ErrorCode::AppExists,
                format!("an app named {name:?} exists already"),
            ),
            StoreError::AppNotFound(name) => {
                NodeError::new(ErrorCode::AppNotFound, format!("there is no app named {name:?}"))
            }
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "store unavailable");
                NodeError::new(
                    ErrorCode::StoreUnavailable,
                    "the database is unavailable; retry shortly",
                )
            }
        }
    }
}
