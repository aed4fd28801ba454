//! `NodeError`: a refusal or failure with its error code and a sentence for the user.

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
}

impl NodeError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
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
