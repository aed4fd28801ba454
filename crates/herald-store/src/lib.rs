//! Rows that must outlive a process: apps and their credentials, daily usage.
//!
//! [`Store`] is the contract; [`sqlite::SqliteStore`] is the embedded default (one
//! file under the data directory). A PostgreSQL engine for clusters implements the
//! same trait and passes the same [`conformance`] suite. Message history is the
//! broker's business, never the store's.

pub mod conformance;
pub mod credentials;
pub mod sqlite;
mod store;

pub use credentials::{AppRecord, NewCredentials};
pub use store::{AppSummary, DailyUsage, Store, StoreError, UsageDelta};
