//! The PostgreSQL engine of [`Store`], for clusters: every node connects to the
//! same database, so an app created or rotated on one node is seen by the others
//! (within their app cache TTL).
//!
//! - **Schema.** `migrations/postgres`, embedded at compile time and run by
//!   [`PgStore::connect`]. sqlx's migrator takes a session advisory lock (keyed by
//!   the database name) before it creates `_sqlx_migrations` and holds it until it
//!   is done, and it applies each migration together with its bookkeeping row in
//!   one transaction; so nodes that start together migrate one after the other,
//!   and the later ones find nothing left to do. The wait for that lock is
//!   bounded by `lock_timeout`; a failed migration closes the pool, which ends the
//!   session and releases the lock. (Session locks need a direct connection or a
//!   session-pooling proxy: not a transaction-pooling one.)
//! - **Time.** Creation times and credential expiry come from the database's
//!   clock, never a node's, so the nodes of a cluster agree on when a rotated key
//!   stops working even when their clocks drift apart.
//! - **Concurrency.** Statements run at `READ COMMITTED`. `create_app` is one
//!   statement (the primary key decides between concurrent creators); a rotation
//!   locks the app's row first, so concurrent rotations of one app run one after
//!   the other; usage is one `INSERT .. ON CONFLICT DO UPDATE` (atomic).
//! - **Counters.** `u64` in Rust, `BIGINT` (i64) in PostgreSQL: values are
//!   clamped to `i64::MAX` on the way in and sums saturate there.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row};

mod classroom;

use crate::credentials::{self, AppRecord, NewCredentials};
use crate::sql::{is_foreign_key_violation, is_unique_violation, now_ms, unavailable};
use crate::store::{AppSummary, DailyUsage, Store, StoreError, UsageDelta};

crate::sql::store_sql!(Postgres, PgRow);

/// The schema, embedded at compile time from `migrations/postgres`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long opening a connection may take (the first one, and each later one
/// through the pool's acquire timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for a free connection of the pool (or a new one).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// PostgreSQL's `lock_timeout` on every connection (unless the URL sets one):
/// bounds the migrator's wait for the lock that another starting node holds,
/// and a statement's wait for a row that another call holds.
const LOCK_TIMEOUT: &str = "60s";
/// The bound on the whole migration, lock wait included.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(90);
/// Connections per node. A node's store traffic is light (app lookups are
/// cached, usage is flushed in batches), so a few are plenty, and a cluster of
/// many nodes stays well under PostgreSQL's default `max_connections` (100).
const POOL_MAX: u32 = 8;
/// Idle connections are closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Connections are replaced after this long (lets a failover or a config change
/// on the server side take effect).
const MAX_LIFETIME: Duration = Duration::from_secs(1800);

/// Now, in Unix milliseconds, from the database's clock (the start of the
/// current transaction: for a single statement, the statement's start).
const NOW_MS: &str = "FLOOR(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT";

/// The PostgreSQL [`Store`]. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`,
    /// or `postgresql://...`, with any libpq-style parameters sqlx accepts), brings
    /// its schema up to date and opens a pool of connections.
    ///
    /// Connecting is bounded (about 5 s); error messages name the host, port and
    /// database, never the user or the password.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the URL is not valid, the server cannot
    /// be reached or refuses the login, or a migration fails.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("the PostgreSQL URL is not valid: {e}")))?;
        if options.get_application_name().is_none() {
            options = options.application_name("herald");
        }
        // Settings of every session, unless the URL sets them: a bound on lock
        // waits, and no NOTICEs (sqlx would log "relation _sqlx_migrations already
        // exists, skipping" at every start).
        for (setting, value) in [("lock_timeout", LOCK_TIMEOUT), ("client_min_messages", "warning")] {
            if !options.get_options().is_some_and(|o| o.contains(setting)) {
                options = options.options([(setting, value)]);
            }
        }
        let target = describe(&options);
        // One plain connection first: it fails at once, with the cause, where the
        // pool would retry a refused connection until its acquire timeout and
        // then only say that it timed out.
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => {
                let _ = tokio::time::timeout(CONNECT_TIMEOUT, conn.close()).await;
            }
            Ok(Err(e)) => return Err(connect_failed(&target, &e)),
            Err(_) => return Err(timed_out(&target)),
        }
        let pool = PgPoolOptions::new()
            .max_connections(POOL_MAX)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(IDLE_TIMEOUT)
            .max_lifetime(MAX_LIFETIME)
            .connect_with(options);
        let pool = match tokio::time::timeout(CONNECT_TIMEOUT, pool).await {
            Ok(Ok(pool)) => pool,
            Ok(Err(e)) => return Err(connect_failed(&target, &e)),
            Err(_) => return Err(timed_out(&target)),
        };
        // The migrator runs on one connection of the pool, and unlocks when done.
        // On failure that connection may still hold the lock: closing the pool
        // ends its session, and the lock with it.
        let failure = match tokio::time::timeout(MIGRATION_TIMEOUT, MIGRATOR.run(&pool)).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("the migration of PostgreSQL at {target} failed: {e}")),
            Err(_) => Some(format!(
                "the migration of PostgreSQL at {target} did not finish within {MIGRATION_TIMEOUT:?}"
            )),
        };
        if let Some(message) = failure {
            let _ = tokio::time::timeout(CONNECT_TIMEOUT, pool.close()).await;
            return Err(StoreError::Unavailable(message));
        }
        tracing::debug!(target = %target, "postgres store opened");
        Ok(Self { pool })
    }

    /// Closes every connection, waiting for calls in flight. Later calls fail
    /// with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A transaction for a write that reads first (at `READ COMMITTED`: the
    /// statements that must not race lock what they need).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool.begin().await.map_err(unavailable)
    }
}

/// `host:port/database` (or the socket directory), without user or password.
fn describe(options: &PgConnectOptions) -> String {
    let place = match options.get_socket() {
        Some(dir) => format!("{}:{}", dir.display(), options.get_port()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    match options.get_database() {
        Some(db) => format!("{place}/{db}"),
        None => place,
    }
}

fn connect_failed(target: &str, e: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot connect to PostgreSQL at {target}: {e}"))
}

fn timed_out(target: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "PostgreSQL at {target} did not answer within {CONNECT_TIMEOUT:?}"
    ))
}

#[async_trait]
impl Store for PgStore {
    async fn create_app(&self, name: &str) -> Result<NewCredentials, StoreError> {
        let creds = credentials::generate(name);
        let hash = credentials::hash_key(&creds.key);
        // One statement: atomic, and the primary key decides between concurrent
        // creators (the later ones wait for the first to commit, then fail).
        let sql = format!(
            "WITH app AS ( \
               INSERT INTO apps (name, created_at) VALUES ($1, {NOW_MS}) \
               RETURNING name, created_at \
             ) \
             INSERT INTO app_credentials (app, key_hash, token_secret, created_at, expires_at) \
             SELECT name, $2, $3, created_at, NULL FROM app"
        );
        let inserted = sqlx::query(&sql)
            .bind(name)
            .bind(&hash[..])
            .bind(&creds.token_secret)
            .execute(&self.pool)
            .await;
        match inserted {
            Ok(_) => Ok(creds),
            Err(e) if is_unique_violation(&e) => Err(StoreError::AppExists(name.to_owned())),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn app(&self, name: &str) -> Result<Option<AppRecord>, StoreError> {
        let sql = format!(
            "SELECT a.created_at AS app_created_at, c.key_hash, c.token_secret \
             FROM apps a \
             LEFT JOIN app_credentials c \
               ON c.app = a.name AND (c.expires_at IS NULL OR c.expires_at > {NOW_MS}) \
             WHERE a.name = $1 \
             ORDER BY c.id DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        app_record(name, &rows)
    }

    async fn list_apps(&self) -> Result<Vec<AppSummary>, StoreError> {
        let rows = sqlx::query(r#"SELECT name, created_at FROM apps ORDER BY name COLLATE "C""#)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        app_summaries(&rows)
    }

    async fn rotate_app(&self, name: &str, grace: Duration) -> Result<NewCredentials, StoreError> {
        let creds = credentials::generate(name);
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let mut tx = self.begin_write().await?;
        // Lock the app's row: a concurrent rotation of the same app waits here
        // until this one commits, then sees (and expires) this one's credential.
        let now: Option<i64> = sqlx::query_scalar(
            "SELECT FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT \
             FROM apps WHERE name = $1 FOR UPDATE",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(now) = now else {
            // Dropping `tx` rolls it back; nothing was written anyway.
            return Err(StoreError::AppNotFound(name.to_owned()));
        };
        let deadline = now.saturating_add(grace_ms);
        // Forget the credentials that have expired already.
        sqlx::query(
            "DELETE FROM app_credentials \
             WHERE app = $1 AND expires_at IS NOT NULL AND expires_at <= $2",
        )
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        // The others stop at the deadline, or earlier if they were due to already.
        sqlx::query(
            "UPDATE app_credentials SET expires_at = $2 \
             WHERE app = $1 AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(name)
        .bind(deadline)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let hash = credentials::hash_key(&creds.key);
        sqlx::query(
            "INSERT INTO app_credentials (app, key_hash, token_secret, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(name)
        .bind(&hash[..])
        .bind(&creds.token_secret)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn describe_hides_credentials() {
        let o = PgConnectOptions::from_str("postgres://alice:s3cret@db.example:6543/herald").unwrap();
        let d = describe(&o);
        assert_eq!(d, "db.example:6543/herald");
        assert!(!d.contains("s3cret") && !d.contains("alice"));
    }

    #[tokio::test]
    async fn invalid_url_is_unavailable() {
        let err = PgStore::connect("postgres://[nope").await.unwrap_err();
        assert!(
            matches!(err, StoreError::Unavailable(ref m) if m.contains("not valid")),
            "{err:?}"
        );
    }
}
