//! The `Store` trait.
//!
//! Contract:
//! - every method is atomic: on `Err` nothing was written;
//! - `create_app` fails with [`StoreError::AppExists`] when the name is taken, and
//!   returns the only plain copy of the new secret key (the store keeps a SHA-256
//!   hash of it) and the token secret (kept as is: it signs and checks HS256 tokens);
//! - `rotate_app` adds a new key and token secret; the previous ones keep working
//!   until `grace` has passed (zero: they stop at once);
//! - usage is added per app and per UTC day, and read back newest day first.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::credentials::{AppRecord, NewCredentials};

/// Why a store operation failed. On any error nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An app of that name exists already.
    #[error("an app named {0:?} exists already")]
    AppExists(String),
    /// No app of that name.
    #[error("no app named {0:?}")]
    AppNotFound(String),
    /// The database could not be reached or answered with an error.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

/// One app in a listing.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AppSummary {
    /// The app's name.
    pub name: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
}

/// Counters to add to one app's usage of one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageDelta {
    /// Messages published (one per channel appended to).
    pub published: u64,
    /// Messages delivered (one per subscriber that received one).
    pub delivered: u64,
    /// Bytes of message data published.
    pub bytes_in: u64,
    /// Bytes written to subscribers.
    pub bytes_out: u64,
    /// Highest number of simultaneous connections seen (merged with `max`).
    pub peak_connections: u64,
}

impl UsageDelta {
    /// True when there is nothing to add.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One app's usage of one UTC day.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DailyUsage {
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Messages published.
    pub published: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Bytes of message data published.
    pub bytes_in: u64,
    /// Bytes written to subscribers.
    pub bytes_out: u64,
    /// Highest number of simultaneous connections.
    pub peak_connections: u64,
}

/// Durable rows: apps, credentials, usage. Shared by every node of a cluster.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates an app with a fresh key and token secret.
    ///
    /// # Errors
    /// [`StoreError::AppExists`] when the name is taken; [`StoreError::Unavailable`].
    async fn create_app(&self, name: &str) -> Result<NewCredentials, StoreError>;

    /// The app with its currently valid credentials, or `None`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn app(&self, name: &str) -> Result<Option<AppRecord>, StoreError>;

    /// Every app, by name.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn list_apps(&self) -> Result<Vec<AppSummary>, StoreError>;

    /// Issues a new key and token secret; the old ones stop working after `grace`.
    ///
    /// # Errors
    /// [`StoreError::AppNotFound`]; [`StoreError::Unavailable`].
    async fn rotate_app(&self, name: &str, grace: Duration) -> Result<NewCredentials, StoreError>;

    /// Adds `delta` to the app's usage of `day` (`YYYY-MM-DD`); `peak_connections`
    /// is merged with `max`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn add_usage(&self, app: &str, day: &str, delta: UsageDelta) -> Result<(), StoreError>;

    /// The app's usage of the last `days` days that have any, newest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn usage(&self, app: &str, days: u32) -> Result<Vec<DailyUsage>, StoreError>;

    /// Checks that the database answers (for `/readyz`).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn ping(&self) -> Result<(), StoreError>;
}
