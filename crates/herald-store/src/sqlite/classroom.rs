//! [`ClassroomStore`] on SQLite: the shared SQL (`classroom/sql.rs`) with this
//! engine's hooks. Writes that read before they write (enrol, role changes) run
//! in `BEGIN IMMEDIATE` transactions, so they see no concurrent change between
//! the read and the write; one node only uses a file, so a live session needs
//! no lease.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use super::{is_foreign_key_violation, is_unique_violation, now_ms, SqliteStore};
use crate::classroom::{
    generate_id, generate_join_code, sort_roster, ClassroomError, ClassroomStore, Course, CourseUpdate,
    CourseWithRole, DeckRow, Enrolment, FileRow, LiveColumns, LiveLease, LiveSession, LiveState, LogRow,
    Member, NewUser, PollVote, QuestionRow, Role, SnapshotRow, User, UserLogin, Vote, WebSession,
    MAX_ATTEMPTS,
};

/// One node only uses a SQLite file.
const SHARED: bool = false;

crate::classroom::classroom_store!(SqliteStore, Sqlite, SqliteRow);

/// Nothing to add: `BEGIN IMMEDIATE` let no other writer in.
async fn serialize_role_changes(
    _tx: &mut Transaction<'_, Sqlite>,
    _course_id: &str,
) -> Result<(), ClassroomError> {
    Ok(())
}

/// One node only uses a SQLite file: its sequencer's mutex is the lock.
async fn lease(_store: &SqliteStore, _id: &str) -> Result<Option<Box<dyn LiveLease>>, ClassroomError> {
    Ok(None)
}
