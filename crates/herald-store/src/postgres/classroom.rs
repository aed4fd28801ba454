//! [`ClassroomStore`] on PostgreSQL: the shared SQL (`classroom/sql.rs`) with
//! this engine's hooks. Statements run at `READ COMMITTED`; a role change locks
//! the course's row first, so concurrent role changes in one course run one
//! after the other and the last trainer cannot be demoted by two calls racing.
//! A live session's lease (`lock_live_session`) is a connection holding
//! `pg_advisory_lock` on the session's key; its appends commit without
//! waiting for the WAL flush.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::{is_foreign_key_violation, is_unique_violation, now_ms, PgStore};
use crate::classroom::{
    generate_id, generate_join_code, sort_roster, ClassroomError, ClassroomStore, Course, CourseUpdate,
    CourseWithRole, DeckRow, Enrolment, FileRow, LiveColumns, LiveLease, LiveSession, LiveState, LogRow,
    Member, NewUser, PollVote, QuestionRow, Role, SnapshotRow, User, UserLogin, Vote, WebSession,
    MAX_ATTEMPTS,
};

/// Several nodes may share the database: changes take a lease.
const SHARED: bool = true;

crate::classroom::classroom_store!(PgStore, Postgres, PgRow);

/// Locks the course's row until `tx` ends: the role changes of one course run
/// one after the other (see the module's note).
async fn serialize_role_changes(
    tx: &mut Transaction<'_, Postgres>,
    course_id: &str,
) -> Result<(), ClassroomError> {
    sqlx::query("SELECT 1 FROM class_courses WHERE id = $1 FOR UPDATE")
        .bind(course_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(fail)?;
    Ok(())
}

/// The lease of live session `id`: a pooled connection holding the session's
/// advisory lock (`pg_advisory_lock`, session level), so that a node may keep
/// it across several changes while more are waiting (decisions §39); each
/// append commits on its own, without waiting for the WAL flush.
async fn lease(store: &PgStore, id: &str) -> Result<Option<Box<dyn LiveLease>>, ClassroomError> {
    // At most half the pool is held by leases, so that the calls made
    // under a lease (vote rows, poll answers) always find a connection.
    let permit = lease_permits()
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ClassroomError::Unavailable(e.to_string()))?;
    let conn = store.pool.acquire().await.map_err(fail)?;
    // Built before the lock is asked for: if this future is dropped while
    // PostgreSQL is still granting it, the lease's drop closes the connection
    // (which ends its session and the lock with it) instead of handing a
    // locked connection back to the pool.
    let mut lease = PgLiveLease {
        conn: Some(conn),
        id: id.to_owned(),
        key: live_lock_key(id),
        clean: false,
        _permit: permit,
    };
    // One round trip: the lock (taken only if the session exists), and
    // commits that do not wait for the WAL flush while it is held (see
    // decisions §33: a crash can lose the last fraction of a second of
    // acknowledged changes, never tear one).
    let locked = sqlx::query(
        "SELECT pg_advisory_lock($1), set_config('synchronous_commit', 'off', false) \
         FROM class_live_sessions WHERE id = $2",
    )
    .bind(lease.key)
    .bind(id)
    .fetch_optional(lease.conn()?)
    .await
    .map_err(fail)?;
    if locked.is_none() {
        // No lock was taken; only the setting was not changed either.
        lease.clean = true;
        return Err(ClassroomError::SessionNotFound);
    }
    Ok(Some(Box::new(lease)))
}

/// The advisory lock key of a live session: FNV-1a (64 bits) of
/// `herald.classroom.live:` + its id. The same on every node and every build
/// (unlike std's hasher); two ids sharing a key only wait for each other.
fn live_lock_key(id: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"herald.classroom.live:".iter().chain(id.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

/// Leases held at once in this process: half the pool.
fn lease_permits() -> &'static std::sync::Arc<tokio::sync::Semaphore> {
    static PERMITS: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        std::sync::Arc::new(tokio::sync::Semaphore::new(
            usize::try_from(super::POOL_MAX / 2).unwrap_or(1).max(1),
        ))
    })
}

/// A live session's lock on PostgreSQL: a connection of the pool that took
/// `pg_advisory_lock` on the session's key. [`LiveLease::release`] unlocks
/// it and gives the connection back; a lease dropped otherwise closes its
/// connection, which ends the session and its lock on the server.
struct PgLiveLease {
    conn: Option<sqlx::pool::PoolConnection<Postgres>>,
    id: String,
    key: i64,
    /// The connection holds no lock and its settings are the pool's: it may
    /// go back to the pool.
    clean: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl PgLiveLease {
    fn conn(&mut self) -> Result<&mut sqlx::PgConnection, ClassroomError> {
        self.conn
            .as_deref_mut()
            .ok_or_else(|| ClassroomError::Unavailable("the lease's connection is gone".into()))
    }
}

impl Drop for PgLiveLease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            if !self.clean {
                conn.close_on_drop();
            }
        }
    }
}

#[async_trait]
impl LiveLease for PgLiveLease {
    async fn log_after(&mut self, after: i64, limit: i64) -> Result<Vec<LogRow>, ClassroomError> {
        let id = self.id.clone();
        read_log(self.conn()?, &id, after, limit).await
    }

    async fn append(&mut self, rows: &[LogRow], columns: Option<&LiveColumns>) -> Result<(), ClassroomError> {
        let id = self.id.clone();
        let conn = self.conn()?;
        if let ([row], None) = (rows, columns) {
            // The common case, one entry: one statement, its own commit.
            return insert_log_row(&mut *conn, &id, row).await;
        }
        let mut tx = sqlx::Connection::begin(conn).await.map_err(fail)?;
        append_log(&mut tx, &id, rows, columns).await?;
        tx.commit().await.map_err(fail)
    }

    async fn release(mut self: Box<Self>) -> Result<(), ClassroomError> {
        let key = self.key;
        let conn = self.conn()?;
        sqlx::query(
            "SELECT pg_advisory_unlock($1), set_config('synchronous_commit', \
             (SELECT reset_val FROM pg_settings WHERE name = 'synchronous_commit'), false)",
        )
        .bind(key)
        .execute(conn)
        .await
        .map_err(fail)?;
        self.clean = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::live_lock_key;

    #[test]
    fn lock_keys_are_stable_and_differ() {
        // Fixed: every node of a cluster (any build) must compute the same key.
        assert_eq!(live_lock_key("s_0"), live_lock_key("s_0"));
        assert_ne!(live_lock_key("s_0"), live_lock_key("s_1"));
        assert_eq!(
            live_lock_key(""),
            i64::from_ne_bytes(0xe529_2b63_4ec7_bd34_u64.to_ne_bytes())
        );
    }
}
