//! Rows that must outlive a process: apps and their credentials, daily usage.
//!
//! [`Store`] is the contract; [`sqlite::SqliteStore`] is the embedded default (one
//! file under the data directory), and [`postgres::PgStore`] the engine for
//! clusters (one database shared by every node). Both pass the same
//! [`conformance`] suite. Message history is the broker's business, never the
//! store's.

pub mod conformance;
pub mod credentials;
pub mod postgres;
pub mod sqlite;
mod store;

pub use credentials::{AppRecord, NewCredentials};
pub use store::{AppSummary, DailyUsage, Store, StoreError, UsageDelta};
