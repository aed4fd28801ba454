//! What both engines share of the [`Store`](crate::Store): the helpers, and
//! (through [`store_sql!`]) the statements that read the same in both dialects,
//! written once with `$N` placeholders (sqlx's SQLite driver binds `$N` by
//! number, as PostgreSQL does). The rest of `Store` stays per engine because
//! it really differs: PostgreSQL takes creation and expiry times from the
//! database's clock (one clock for the cluster), sorts names by byte
//! (`COLLATE "C"`) and locks the app's row for a rotation.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::store::StoreError;

/// Now, in Unix milliseconds, from this node's clock (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A counter as stored: clamped to `i64::MAX`.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A counter as read: a negative one (never written) reads as 0.
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}

pub(crate) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_foreign_key_violation())
}

pub(crate) fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The `Store` statements both dialects share, as free functions on the
/// engine's pool (the module brings `sqlx::Row` into scope): `store_sql!(Sqlite, SqliteRow)` in the engine's module.
macro_rules! store_sql {
    ($db:ty, $row:ty) => {
        /// Adds `delta` to one app's usage of one day; sums saturate at
        /// `i64::MAX`, `peak_connections` is merged with the larger.
        async fn add_usage(
            pool: &sqlx::Pool<$db>,
            app: &str,
            day: &str,
            delta: $crate::store::UsageDelta,
        ) -> Result<(), $crate::StoreError> {
            sqlx::query(
                "INSERT INTO usage_daily \
                   (app, day, published, delivered, bytes_in, bytes_out, peak_connections) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (app, day) DO UPDATE SET \
                   published = CASE \
                     WHEN usage_daily.published > 9223372036854775807 - excluded.published \
                     THEN 9223372036854775807 \
                     ELSE usage_daily.published + excluded.published END, \
                   delivered = CASE \
                     WHEN usage_daily.delivered > 9223372036854775807 - excluded.delivered \
                     THEN 9223372036854775807 \
                     ELSE usage_daily.delivered + excluded.delivered END, \
                   bytes_in = CASE \
                     WHEN usage_daily.bytes_in > 9223372036854775807 - excluded.bytes_in \
                     THEN 9223372036854775807 \
                     ELSE usage_daily.bytes_in + excluded.bytes_in END, \
                   bytes_out = CASE \
                     WHEN usage_daily.bytes_out > 9223372036854775807 - excluded.bytes_out \
                     THEN 9223372036854775807 \
                     ELSE usage_daily.bytes_out + excluded.bytes_out END, \
                   peak_connections = CASE \
                     WHEN usage_daily.peak_connections > excluded.peak_connections \
                     THEN usage_daily.peak_connections \
                     ELSE excluded.peak_connections END",
            )
            .bind(app)
            .bind(day)
            .bind($crate::sql::to_i64(delta.published))
            .bind($crate::sql::to_i64(delta.delivered))
            .bind($crate::sql::to_i64(delta.bytes_in))
            .bind($crate::sql::to_i64(delta.bytes_out))
            .bind($crate::sql::to_i64(delta.peak_connections))
            .execute(pool)
            .await
            .map_err($crate::sql::unavailable)?;
            Ok(())
        }

        /// One app's usage of its last `days` days with any, newest first.
        async fn usage(
            pool: &sqlx::Pool<$db>,
            app: &str,
            days: u32,
        ) -> Result<Vec<$crate::store::DailyUsage>, $crate::StoreError> {
            let rows = sqlx::query(
                "SELECT day, published, delivered, bytes_in, bytes_out, peak_connections \
                 FROM usage_daily WHERE app = $1 ORDER BY day DESC LIMIT $2",
            )
            .bind(app)
            .bind(i64::from(days))
            .fetch_all(pool)
            .await
            .map_err($crate::sql::unavailable)?;
            rows.iter()
                .map(|row: &$row| {
                    let count = |column: &str| row.try_get::<i64, _>(column).map($crate::sql::to_u64);
                    Ok($crate::store::DailyUsage {
                        day: row.try_get("day")?,
                        published: count("published")?,
                        delivered: count("delivered")?,
                        bytes_in: count("bytes_in")?,
                        bytes_out: count("bytes_out")?,
                        peak_connections: count("peak_connections")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err($crate::sql::unavailable)
        }

        async fn ping(pool: &sqlx::Pool<$db>) -> Result<(), $crate::StoreError> {
            sqlx::query("SELECT 1")
                .execute(pool)
                .await
                .map_err($crate::sql::unavailable)?;
            Ok(())
        }

        /// The app `name` from its rows (`app_created_at`, and `key_hash` and
        /// `token_secret` of each valid credential, NULL when it has none),
        /// or `None` when there is no row.
        fn app_record(
            name: &str,
            rows: &[$row],
        ) -> Result<Option<$crate::credentials::AppRecord>, $crate::StoreError> {
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let mut record = $crate::credentials::AppRecord {
                name: name.to_owned(),
                key_hashes: Vec::with_capacity(rows.len()),
                token_secrets: Vec::with_capacity(rows.len()),
                created_at: first
                    .try_get("app_created_at")
                    .map_err($crate::sql::unavailable)?,
            };
            for row in rows {
                let hash: Option<Vec<u8>> = row.try_get("key_hash").map_err($crate::sql::unavailable)?;
                let secret: Option<String> = row
                    .try_get("token_secret")
                    .map_err($crate::sql::unavailable)?;
                // Both are NULL only when the app has no valid credential left.
                let (Some(hash), Some(secret)) = (hash, secret) else {
                    continue;
                };
                let hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
                    $crate::StoreError::Unavailable(format!("corrupt key hash for app {name:?}"))
                })?;
                record.key_hashes.push(hash);
                record.token_secrets.push(secret);
            }
            Ok(Some(record))
        }

        /// Apps from rows of `name, created_at`.
        fn app_summaries(rows: &[$row]) -> Result<Vec<$crate::store::AppSummary>, $crate::StoreError> {
            rows.iter()
                .map(|row| {
                    Ok($crate::store::AppSummary {
                        name: row.try_get("name")?,
                        created_at: row.try_get("created_at")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err($crate::sql::unavailable)
        }
    };
}
pub(crate) use store_sql;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_clamp() {
        assert_eq!(to_i64(u64::MAX), i64::MAX);
        assert_eq!(to_i64(7), 7);
        assert_eq!(to_u64(-1), 0);
        assert_eq!(to_u64(i64::MAX), i64::MAX as u64);
    }
}
