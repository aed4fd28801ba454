//! The embedded SQLite engine of [`Store`]: one database file under the data
//! directory, in WAL mode, with its schema migrated on open.
//!
//! Writes that touch several rows run in `BEGIN IMMEDIATE` transactions, so two
//! writers never deadlock on a lock upgrade: the second one waits (up to the busy
//! timeout) for the first to finish. Reads are single statements, hence consistent.
//! Counters are `u64` in Rust and `INTEGER` (i64) in SQLite: values are clamped to
//! `i64::MAX` on the way in and sums saturate there.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite};

mod classroom;

use crate::credentials::{self, AppRecord, NewCredentials};
use crate::sql::{is_foreign_key_violation, is_unique_violation, now_ms, unavailable};
use crate::store::{AppSummary, DailyUsage, Store, StoreError, UsageDelta};

crate::sql::store_sql!(Sqlite, SqliteRow);

/// The schema, embedded at compile time from `migrations/sqlite`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for a free connection of the pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections of a file store (SQLite has one writer at a time anyway).
const POOL_SIZE: u32 = 4;

/// The SQLite [`Store`]. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it and its parent directory when missing) the database file
    /// at `path` and brings its schema up to date.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the directory or file cannot be created or
    /// opened, or a migration fails.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                StoreError::Unavailable(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL syncs at checkpoints, not at every commit: a crash of
            // Herald loses nothing; a power cut may lose the last commits
            // (docs/decisions.md §23).
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let store = Self::migrated(pool).await?;
        tracing::debug!(path = %path.display(), "sqlite store opened");
        Ok(store)
    }

    /// A fresh, private in-memory database (for tests): one connection that lives
    /// as long as the store, so every call sees the same database.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when SQLite cannot be started or a migration fails.
    pub async fn in_memory() -> Result<Self, StoreError> {
        // `sqlite::memory:` names a new shared-cache database each time it is parsed.
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(unavailable)?
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        Self::migrated(pool).await
    }

    /// Closes every connection, waiting for calls in flight. Later calls fail
    /// with [`StoreError::Unavailable`]. Dropping the store without closing it is
    /// safe too: committed rows are on disk either way.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrated(pool: SqlitePool) -> Result<Self, StoreError> {
        if let Err(e) = MIGRATOR.run(&pool).await {
            pool.close().await;
            return Err(StoreError::Unavailable(format!("migration failed: {e}")));
        }
        Ok(Self { pool })
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_app(&self, name: &str) -> Result<NewCredentials, StoreError> {
        let creds = credentials::generate(name);
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query("INSERT INTO apps (name, created_at) VALUES (?1, ?2)")
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(StoreError::AppExists(name.to_owned())),
            Err(e) => return Err(unavailable(e)),
        }
        insert_credential(&mut tx, &creds, now).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(creds)
    }

    async fn app(&self, name: &str) -> Result<Option<AppRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.created_at AS app_created_at, c.key_hash, c.token_secret \
             FROM apps a \
             LEFT JOIN app_credentials c \
               ON c.app = a.name AND (c.expires_at IS NULL OR c.expires_at > ?2) \
             WHERE a.name = ?1 \
             ORDER BY c.id DESC",
        )
        .bind(name)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        app_record(name, &rows)
    }

    async fn list_apps(&self) -> Result<Vec<AppSummary>, StoreError> {
        let rows = sqlx::query("SELECT name, created_at FROM apps ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        app_summaries(&rows)
    }

    async fn rotate_app(&self, name: &str, grace: Duration) -> Result<NewCredentials, StoreError> {
        let creds = credentials::generate(name);
        let now = now_ms();
        let deadline = now.saturating_add(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 FROM apps WHERE name = ?1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?
            .is_some();
        if !exists {
            // Dropping `tx` rolls it back; nothing was written anyway.
            return Err(StoreError::AppNotFound(name.to_owned()));
        }
        // Forget the credentials that have expired already.
        sqlx::query(
            "DELETE FROM app_credentials \
             WHERE app = ?1 AND expires_at IS NOT NULL AND expires_at <= ?2",
        )
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        // The others stop at the deadline, or earlier if they were due to already.
        sqlx::query(
            "UPDATE app_credentials SET expires_at = ?2 \
             WHERE app = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        )
        .bind(name)
        .bind(deadline)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        insert_credential(&mut tx, &creds, now).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(creds)
    }

    /// An empty `delta` writes nothing.
    async fn add_usage(&self, app: &str, day: &str, delta: UsageDelta) -> Result<(), StoreError> {
        if delta.is_empty() {
            return Ok(());
        }
        add_usage(&self.pool, app, day, delta).await
    }

    async fn usage(&self, app: &str, days: u32) -> Result<Vec<DailyUsage>, StoreError> {
        usage(&self.pool, app, days).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        ping(&self.pool).await
    }
}

/// Inserts one credential row (key hash + token secret) for `creds.app`.
async fn insert_credential(
    conn: &mut SqliteConnection,
    creds: &NewCredentials,
    now: i64,
) -> Result<(), StoreError> {
    let hash = credentials::hash_key(&creds.key);
    sqlx::query(
        "INSERT INTO app_credentials (app, key_hash, token_secret, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, NULL)",
    )
    .bind(&creds.app)
    .bind(&hash[..])
    .bind(&creds.token_secret)
    .bind(now)
    .execute(conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn file_store_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("herald.db")).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode.to_ascii_lowercase(), "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(fk, 1);
        let timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(timeout, 5000);
        store.close().await;
    }

    /// The classroom's SQL is one text for both engines (`classroom/sql.rs`):
    /// it relies on this sqlx's SQLite driver binding `$N` by its number, as
    /// PostgreSQL does, out of order and repeated.
    #[tokio::test]
    async fn dollar_placeholders_bind_by_number() {
        let store = SqliteStore::in_memory().await.unwrap();
        let text: String = sqlx::query_scalar("SELECT $2 || $1 || $2 || $3")
            .bind("a")
            .bind("b")
            .bind(7_i64)
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(text, "bab7");
    }

    #[tokio::test]
    async fn usage_saturates() {
        let store = SqliteStore::in_memory().await.unwrap();
        let big = UsageDelta {
            published: u64::MAX,
            bytes_in: u64::MAX / 2 + 10,
            peak_connections: 3,
            ..UsageDelta::default()
        };
        store.add_usage("a", "2024-01-01", big).await.unwrap();
        store.add_usage("a", "2024-01-01", big).await.unwrap();
        let u = store.usage("a", 1).await.unwrap();
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].published, i64::MAX as u64);
        assert_eq!(u[0].bytes_in, i64::MAX as u64);
        assert_eq!(u[0].delivered, 0);
        assert_eq!(u[0].peak_connections, 3);
    }

    #[tokio::test]
    async fn expired_credentials_are_deleted_on_rotation() {
        let store = SqliteStore::in_memory().await.unwrap();
        store.create_app("a").await.unwrap();
        store.rotate_app("a", Duration::ZERO).await.unwrap();
        store.rotate_app("a", Duration::ZERO).await.unwrap();
        // The first credential, expired by the first rotation, is gone: only the
        // newest (valid) and the one expired by the last rotation remain.
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM app_credentials WHERE app = 'a'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(n, 2);
    }

    #[tokio::test]
    async fn empty_delta_writes_nothing() {
        let store = SqliteStore::in_memory().await.unwrap();
        store
            .add_usage("a", "2024-01-01", UsageDelta::default())
            .await
            .unwrap();
        assert!(store.usage("a", 10).await.unwrap().is_empty());
    }
}
