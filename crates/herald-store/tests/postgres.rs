//! The PostgreSQL engine against the conformance suite, on a real server.
//!
//! The server is `postgres://postgres@127.0.0.1:5432/test` unless
//! `HERALD_TEST_POSTGRES_URL` names another. These tests fail (never skip) when
//! it cannot be reached; start it with
//! `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`.
//!
//! The suite uses unique app names, so it runs against the shared database as
//! often as one likes. The tests that need an empty database (concurrent first
//! migrations, a database with another default collation) create a scratch
//! database of their own and drop it afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use herald_store::postgres::PgStore;
use herald_store::{conformance, Store, StoreError, UsageDelta};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Bound on connecting (and migrating) in a test.
const CONNECT_WAIT: Duration = Duration::from_secs(30);
/// Bound on a whole conformance run.
const SUITE_WAIT: Duration = Duration::from_secs(120);

fn url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

fn not_reachable(url: &str, why: &str) -> ! {
    panic!(
        "PostgreSQL is not reachable at {url} ({why}). Start it with \
         `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
         or point HERALD_TEST_POSTGRES_URL at another server."
    )
}

/// A store on `url`, or a failure that says how to start PostgreSQL.
async fn connect(url: &str) -> PgStore {
    match tokio::time::timeout(CONNECT_WAIT, PgStore::connect(url)).await {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => not_reachable(url, &e.to_string()),
        Err(_) => not_reachable(url, &format!("no answer within {CONNECT_WAIT:?}")),
    }
}

/// A plain connection to the test server (to create and drop scratch databases).
async fn admin_connection() -> PgConnection {
    let url = url();
    match tokio::time::timeout(CONNECT_WAIT, PgConnection::connect(&url)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => not_reachable(&url, &e.to_string()),
        Err(_) => not_reachable(&url, &format!("no answer within {CONNECT_WAIT:?}")),
    }
}

/// `url` with its database replaced by `db` (the rest, query included, kept).
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    let mut out = format!("{}/{db}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Runs `body` with the URL of a fresh, empty database (created with `create`'s
/// extra clauses), and drops that database afterwards, even when `body` panics.
async fn with_scratch_database<F, Fut>(create: &str, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = format!("herald_scratch_{:016x}", rand::random::<u64>());
    let mut admin = admin_connection().await;
    sqlx::query(&format!("CREATE DATABASE {name} {create}"))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create the scratch database {name}: {e}"));
    let scratch_url = with_database(&url(), &name);
    let outcome = tokio::time::timeout(SUITE_WAIT, tokio::spawn(body(scratch_url))).await;
    // FORCE: end any connection a failed body left open.
    let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
    let _ = admin.close().await;
    match outcome {
        Err(_) => panic!("the test on the scratch database did not finish within {SUITE_WAIT:?}"),
        Ok(Err(join)) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Ok(Err(join)) => panic!("the test on the scratch database was cancelled: {join}"),
        Ok(Ok(())) => {}
    }
    dropped.unwrap_or_else(|e| panic!("cannot drop the scratch database {name}: {e}"));
}

fn unique(prefix: &str) -> String {
    format!("pgtest-{prefix}-{:016x}", rand::random::<u64>())
}

#[tokio::test]
async fn conformance() {
    let store = connect(&url()).await;
    tokio::time::timeout(SUITE_WAIT, conformance::run_all(&store))
        .await
        .expect("the conformance suite finishes in time");
    // Twice on the same database: the suite's names never collide.
    tokio::time::timeout(SUITE_WAIT, conformance::run_all(&store))
        .await
        .expect("the conformance suite finishes in time");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_multi_thread() {
    let store = connect(&url()).await;
    tokio::time::timeout(SUITE_WAIT, conformance::run_all(&store))
        .await
        .expect("the conformance suite finishes in time");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn classroom_conformance() {
    let store = connect(&url()).await;
    tokio::time::timeout(SUITE_WAIT, conformance::classroom::run_all(&store))
        .await
        .expect("the classroom conformance suite finishes in time");
    // Twice on the same database: the suite's emails never collide.
    tokio::time::timeout(SUITE_WAIT, conformance::classroom::run_all(&store))
        .await
        .expect("the classroom conformance suite finishes in time");
    store.close().await;
}

/// A database whose default collation is not byte order (ICU `en-US` puts `a`
/// before `B`): the store still lists apps in byte order.
#[tokio::test]
async fn conformance_on_a_database_with_a_linguistic_collation() {
    with_scratch_database(
        "TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'",
        |url| async move {
            let store = PgStore::connect(&url).await.unwrap();
            conformance::run_all(&store).await;
            store.close().await;
        },
    )
    .await;
}

/// Two nodes on one database: what one writes, the other reads.
#[tokio::test]
async fn two_stores_share_the_database() {
    let url = url();
    let a = connect(&url).await;
    let b = connect(&url).await;

    let name = unique("shared");
    let first = a.create_app(&name).await.unwrap();
    let on_b = b.app(&name).await.unwrap().expect("b sees the app a created");
    assert!(on_b.verify_key(&first.key));
    assert_eq!(on_b.token_secrets, vec![first.token_secret.clone()]);
    assert!(b.list_apps().await.unwrap().iter().any(|s| s.name == name));
    assert!(matches!(
        b.create_app(&name).await,
        Err(StoreError::AppExists(n)) if n == name
    ));

    let second = b.rotate_app(&name, Duration::ZERO).await.unwrap();
    let on_a = a.app(&name).await.unwrap().expect("a still sees the app");
    assert!(on_a.verify_key(&second.key));
    assert!(
        !on_a.verify_key(&first.key),
        "a rotation on b ends the old key on a"
    );
    assert_eq!(on_a.token_secrets, vec![second.token_secret]);

    let delta = UsageDelta {
        published: 2,
        peak_connections: 4,
        ..UsageDelta::default()
    };
    a.add_usage(&name, "2024-06-01", delta).await.unwrap();
    b.add_usage(&name, "2024-06-01", delta).await.unwrap();
    let usage = a.usage(&name, 7).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!((usage[0].published, usage[0].peak_connections), (4, 4));

    a.close().await;
    b.close().await;
}

/// Several nodes starting at once on an empty database: the migrator's advisory
/// lock makes them migrate one after the other, and every one of them succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_migrations() {
    with_scratch_database("", |url| async move {
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { PgStore::connect(&url).await })
            })
            .collect();
        let mut stores = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(store) => stores.push(store),
                Err(e) => panic!("a concurrent connect failed: {e}"),
            }
        }
        // One schema, migrated once, used by all three.
        let mut conn = PgConnection::connect(&url).await.unwrap();
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sql"))
            .count();
        assert_eq!(applied as usize, migrations, "each migration is recorded once");
        let name = unique("migr");
        stores[0].create_app(&name).await.unwrap();
        for store in &stores {
            assert!(store.app(&name).await.unwrap().is_some());
        }
        // The migrator released its lock: a later node starts without waiting.
        let started = Instant::now();
        let late = PgStore::connect(&url).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        late.close().await;
        for store in &stores {
            store.close().await;
        }
        let _ = conn.close().await;
    })
    .await;
}

/// Concurrent `connect`s on the shared (already migrated) database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_connects() {
    let url = url();
    // Fails with the how-to-start message when the server is down.
    connect(&url).await.close().await;
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { tokio::time::timeout(CONNECT_WAIT, PgStore::connect(&url)).await })
        })
        .collect();
    for task in tasks {
        let store = task
            .await
            .unwrap()
            .expect("connect finishes in time")
            .expect("concurrent connect");
        store.ping().await.unwrap();
        store.close().await;
    }
}

/// Nothing listens on port 1: `connect` fails at once, with `Unavailable`, and
/// says where it tried without showing the password.
#[tokio::test]
async fn closed_port_is_unavailable() {
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        PgStore::connect("postgres://herald:s3cret@127.0.0.1:1/test"),
    )
    .await
    .expect("connect gives up by itself");
    let elapsed = started.elapsed();
    match result {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("127.0.0.1:1"), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
}

/// Counters beyond `i64::MAX` are clamped, and sums saturate there.
#[tokio::test]
async fn usage_saturates() {
    let store = connect(&url()).await;
    let app = unique("sat");
    let big = UsageDelta {
        published: u64::MAX,
        bytes_in: u64::MAX / 2 + 10,
        peak_connections: 3,
        ..UsageDelta::default()
    };
    store.add_usage(&app, "2024-01-01", big).await.unwrap();
    store.add_usage(&app, "2024-01-01", big).await.unwrap();
    let u = store.usage(&app, 1).await.unwrap();
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].published, i64::MAX as u64);
    assert_eq!(u[0].bytes_in, i64::MAX as u64);
    assert_eq!(u[0].delivered, 0);
    assert_eq!(u[0].peak_connections, 3);
    store.close().await;
}

/// A grace period too long to add to the clock is clamped, not an error.
#[tokio::test]
async fn huge_grace_is_clamped() {
    let store = connect(&url()).await;
    let name = unique("grace");
    let first = store.create_app(&name).await.unwrap();
    let second = store.rotate_app(&name, Duration::MAX).await.unwrap();
    let record = store.app(&name).await.unwrap().unwrap();
    assert!(record.verify_key(&first.key) && record.verify_key(&second.key));
    store.close().await;
}

/// A closed store answers `Unavailable`.
#[tokio::test]
async fn closed_store_is_unavailable() {
    let store = connect(&url()).await;
    store.close().await;
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
}

#[test]
fn scratch_urls_keep_everything_but_the_database() {
    assert_eq!(
        with_database("postgres://u:p@h:1/test?sslmode=disable", "x"),
        "postgres://u:p@h:1/x?sslmode=disable"
    );
    assert_eq!(with_database("postgresql://h", "x"), "postgresql://h/x");
    let o = PgConnectOptions::from_str(&with_database(DEFAULT_URL, "other")).unwrap();
    assert_eq!(o.get_database(), Some("other"));
}
