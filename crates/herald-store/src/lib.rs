//! Rows that must outlive a process: apps and their credentials, daily usage,
//! and the live classroom's accounts, courses and enrolments.
//!
//! [`Store`] (apps, usage) and [`ClassroomStore`] (the classroom) are the
//! contracts; both engines implement both, on one database.
//! [`sqlite::SqliteStore`] is the embedded default (one file under the data
//! directory), and [`postgres::PgStore`] the engine for clusters (one database
//! shared by every node). Both pass the same [`conformance`] suites. Message history is the broker's business, never the
//! store's.

pub mod classroom;
pub mod conformance;
pub mod credentials;
pub mod postgres;
mod sql;
pub mod sqlite;
mod store;

pub use classroom::{ClassroomError, ClassroomStore, LiveSession, LiveState, Role};
pub use credentials::{AppRecord, NewCredentials};
pub use store::{AppSummary, DailyUsage, Store, StoreError, UsageDelta};
