//! The behaviour every [`Store`] engine must have, as a test suite.
//!
//! Each function checks one behaviour and panics (`assert!`) when the engine gets
//! it wrong; [`run_all`] runs them all. Every check uses app names with a random
//! suffix, so the suite can run against a shared database (PostgreSQL) that holds
//! other rows, and more than once.
//!
//! ```text
//! #[tokio::test]
//! async fn conformance() {
//!     let store = MyStore::connect(..).await.unwrap();
//!     herald_store::conformance::run_all(&store).await;
//! }
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod classroom;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::{Store, StoreError, UsageDelta};

/// A grace period that will not end while the suite runs.
const LONG_GRACE: Duration = Duration::from_secs(3600);

/// Runs every check of the suite, one after the other.
pub async fn run_all(store: &dyn Store) {
    ping(store).await;
    create_and_get(store).await;
    create_duplicate(store).await;
    create_concurrently(store).await;
    unknown_app(store).await;
    list_apps_sorted(store).await;
    rotate_without_grace(store).await;
    rotate_with_grace(store).await;
    rotate_ends_earlier_grace(store).await;
    rotate_unknown(store).await;
    usage_sums(store).await;
    usage_concurrent(store).await;
    usage_newest_first_and_limited(store).await;
    usage_none(store).await;
}

/// `ping` answers `Ok`.
pub async fn ping(store: &dyn Store) {
    store.ping().await.expect("ping");
}

/// A created app can be read back: its key verifies, its token secret is the one
/// returned, its creation time is now.
pub async fn create_and_get(store: &dyn Store) {
    let name = unique("create");
    let before = now_ms();
    let creds = store.create_app(&name).await.expect("create_app");
    let after = now_ms();
    assert_eq!(creds.app, name);
    assert!(creds.key.starts_with("hk_"), "key {:?}", creds.key);
    assert!(creds.token_secret.starts_with("hs_"));
    assert_ne!(creds.key, creds.token_secret);

    let record = store.app(&name).await.expect("app").expect("app exists");
    assert_eq!(record.name, name);
    assert!(record.verify_key(&creds.key));
    assert!(!record.verify_key(&creds.token_secret));
    assert!(!record.verify_key("hk_000000000000000000000000000000000000000000000000"));
    assert!(!record.verify_key(""));
    assert_eq!(record.key_hashes.len(), 1);
    assert_eq!(record.token_secrets, vec![creds.token_secret.clone()]);
    // Generous bounds: an engine may take the time from the database's clock.
    let slack = 60_000;
    assert!(
        record.created_at >= before - slack && record.created_at <= after + slack,
        "created_at {} not within [{before}, {after}]",
        record.created_at
    );

    // Two apps never share credentials.
    let other = store.create_app(&unique("create")).await.expect("create_app");
    assert_ne!(other.key, creds.key);
    assert_ne!(other.token_secret, creds.token_secret);
    assert!(!record.verify_key(&other.key));
}

/// Creating an app whose name is taken fails with `AppExists` and changes nothing.
pub async fn create_duplicate(store: &dyn Store) {
    let name = unique("dup");
    let creds = store.create_app(&name).await.expect("create_app");
    match store.create_app(&name).await {
        Err(StoreError::AppExists(n)) => assert_eq!(n, name),
        other => panic!("second create_app: expected AppExists, got {other:?}"),
    }
    let record = store.app(&name).await.expect("app").expect("app exists");
    assert!(record.verify_key(&creds.key));
    assert_eq!(record.token_secrets, vec![creds.token_secret]);
}

/// Of several concurrent creations of one name, exactly one succeeds, and its
/// credentials are the ones stored.
pub async fn create_concurrently(store: &dyn Store) {
    let name = unique("race");
    let (a, b, c, d) = tokio::join!(
        store.create_app(&name),
        store.create_app(&name),
        store.create_app(&name),
        store.create_app(&name),
    );
    let mut winner = None;
    for result in [a, b, c, d] {
        match result {
            Ok(creds) => {
                assert!(winner.is_none(), "two concurrent create_app succeeded");
                winner = Some(creds);
            }
            Err(StoreError::AppExists(n)) => assert_eq!(n, name),
            Err(e) => panic!("concurrent create_app: expected AppExists, got {e:?}"),
        }
    }
    let winner = winner.expect("one concurrent create_app succeeds");
    let record = store.app(&name).await.expect("app").expect("app exists");
    assert!(record.verify_key(&winner.key));
    assert_eq!(record.token_secrets, vec![winner.token_secret]);
}

/// An unknown app is `None`, not an error.
pub async fn unknown_app(store: &dyn Store) {
    let record = store.app(&unique("missing")).await.expect("app");
    assert!(record.is_none(), "{record:?}");
}

/// `list_apps` holds the created apps, with their creation times, sorted by name
/// (byte order: on PostgreSQL, `ORDER BY name COLLATE "C"`).
pub async fn list_apps_sorted(store: &dyn Store) {
    let suffix = suffix();
    // Created out of order, with names whose order depends on the collation.
    let names = [
        format!("conformance-list-b-{suffix}"),
        format!("conformance-list-B-{suffix}"),
        format!("conformance-list-a-{suffix}"),
        format!("conformance-list-a_{suffix}"),
    ];
    for name in &names {
        store.create_app(name).await.expect("create_app");
    }
    let apps = store.list_apps().await.expect("list_apps");
    assert!(
        apps.windows(2).all(|w| w[0].name < w[1].name),
        "list_apps is not sorted by name, or has duplicates"
    );
    for name in &names {
        let summary = apps
            .iter()
            .find(|a| &a.name == name)
            .unwrap_or_else(|| panic!("{name} missing from list_apps"));
        let record = store.app(name).await.expect("app").expect("app exists");
        assert_eq!(summary.created_at, record.created_at);
    }
}

/// Rotating with no grace: the old key and token secret stop at once, the new
/// ones work.
pub async fn rotate_without_grace(store: &dyn Store) {
    let name = unique("rot0");
    let old = store.create_app(&name).await.expect("create_app");
    let new = store.rotate_app(&name, Duration::ZERO).await.expect("rotate_app");
    assert_eq!(new.app, name);
    assert_ne!(new.key, old.key);
    assert_ne!(new.token_secret, old.token_secret);

    let record = store.app(&name).await.expect("app").expect("app exists");
    assert!(record.verify_key(&new.key));
    assert!(!record.verify_key(&old.key), "old key still valid");
    assert_eq!(record.token_secrets, vec![new.token_secret]);
    assert_eq!(record.key_hashes.len(), 1);
}

/// Rotating with a grace period: old and new keys both verify, both token
/// secrets are there, newest first. A second rotation keeps all three.
pub async fn rotate_with_grace(store: &dyn Store) {
    let name = unique("rotg");
    let first = store.create_app(&name).await.expect("create_app");
    let second = store.rotate_app(&name, LONG_GRACE).await.expect("rotate_app");

    let record = store.app(&name).await.expect("app").expect("app exists");
    assert!(record.verify_key(&first.key));
    assert!(record.verify_key(&second.key));
    assert_eq!(
        record.token_secrets,
        vec![second.token_secret.clone(), first.token_secret.clone()]
    );

    let third = store.rotate_app(&name, LONG_GRACE).await.expect("rotate_app");
    let record = store.app(&name).await.expect("app").expect("app exists");
    for key in [&first.key, &second.key, &third.key] {
        assert!(record.verify_key(key));
    }
    assert_eq!(
        record.token_secrets,
        vec![third.token_secret, second.token_secret, first.token_secret]
    );
}

/// A rotation without grace also ends the credentials still in an earlier
/// rotation's grace period.
pub async fn rotate_ends_earlier_grace(store: &dyn Store) {
    let name = unique("rotend");
    let first = store.create_app(&name).await.expect("create_app");
    let second = store.rotate_app(&name, LONG_GRACE).await.expect("rotate_app");
    let third = store.rotate_app(&name, Duration::ZERO).await.expect("rotate_app");

    let record = store.app(&name).await.expect("app").expect("app exists");
    assert!(!record.verify_key(&first.key), "first key still valid");
    assert!(!record.verify_key(&second.key), "second key still valid");
    assert!(record.verify_key(&third.key));
    assert_eq!(record.token_secrets, vec![third.token_secret]);
}

/// Rotating an unknown app fails with `AppNotFound` and creates nothing.
pub async fn rotate_unknown(store: &dyn Store) {
    let name = unique("rotmissing");
    match store.rotate_app(&name, LONG_GRACE).await {
        Err(StoreError::AppNotFound(n)) => assert_eq!(n, name),
        other => panic!("rotate_app of an unknown app: expected AppNotFound, got {other:?}"),
    }
    assert!(store.app(&name).await.expect("app").is_none());
    let apps = store.list_apps().await.expect("list_apps");
    assert!(!apps.iter().any(|a| a.name == name));
}

/// Adding usage twice to one day sums the counters and keeps the highest peak;
/// other days and other apps are apart.
pub async fn usage_sums(store: &dyn Store) {
    let app = unique("usage");
    let other = unique("usage");
    let day = "2024-03-01";
    store
        .add_usage(
            &app,
            day,
            UsageDelta {
                published: 1,
                delivered: 2,
                bytes_in: 30,
                bytes_out: 40,
                peak_connections: 7,
            },
        )
        .await
        .expect("add_usage");
    store
        .add_usage(
            &app,
            day,
            UsageDelta {
                published: 10,
                delivered: 20,
                bytes_in: 300,
                bytes_out: 400,
                peak_connections: 5,
            },
        )
        .await
        .expect("add_usage");
    store
        .add_usage(
            &other,
            day,
            UsageDelta {
                published: 1000,
                peak_connections: 1000,
                ..UsageDelta::default()
            },
        )
        .await
        .expect("add_usage");

    let usage = store.usage(&app, 30).await.expect("usage");
    assert_eq!(usage.len(), 1, "{usage:?}");
    let u = &usage[0];
    assert_eq!(u.day, day);
    assert_eq!(u.published, 11);
    assert_eq!(u.delivered, 22);
    assert_eq!(u.bytes_in, 330);
    assert_eq!(u.bytes_out, 440);
    assert_eq!(u.peak_connections, 7);

    store
        .add_usage(
            &app,
            day,
            UsageDelta {
                peak_connections: 9,
                ..UsageDelta::default()
            },
        )
        .await
        .expect("add_usage");
    let usage = store.usage(&app, 30).await.expect("usage");
    assert_eq!(usage[0].peak_connections, 9);
    assert_eq!(usage[0].published, 11);
}

/// Concurrent additions to one day are all counted.
pub async fn usage_concurrent(store: &dyn Store) {
    let app = unique("usagec");
    let day = "2024-03-02";
    let delta = |peak| UsageDelta {
        published: 1,
        delivered: 2,
        bytes_in: 3,
        bytes_out: 4,
        peak_connections: peak,
    };
    let (a, b, c, d) = tokio::join!(
        store.add_usage(&app, day, delta(3)),
        store.add_usage(&app, day, delta(8)),
        store.add_usage(&app, day, delta(1)),
        store.add_usage(&app, day, delta(5)),
    );
    for result in [a, b, c, d] {
        result.expect("concurrent add_usage");
    }
    let usage = store.usage(&app, 1).await.expect("usage");
    assert_eq!(usage.len(), 1);
    let u = &usage[0];
    assert_eq!(
        (
            u.published,
            u.delivered,
            u.bytes_in,
            u.bytes_out,
            u.peak_connections
        ),
        (4, 8, 12, 16, 8)
    );
}

/// `usage` returns the newest days first, at most `days` of them.
pub async fn usage_newest_first_and_limited(store: &dyn Store) {
    let app = unique("usaged");
    // Added out of order, across a month and a year boundary.
    let days = ["2024-01-31", "2023-12-31", "2024-02-01", "2024-01-01"];
    for (i, day) in days.iter().enumerate() {
        let n = u64::try_from(i).unwrap() + 1;
        store
            .add_usage(
                &app,
                day,
                UsageDelta {
                    published: n,
                    ..UsageDelta::default()
                },
            )
            .await
            .expect("add_usage");
    }

    let all = store.usage(&app, 30).await.expect("usage");
    let got: Vec<(&str, u64)> = all.iter().map(|u| (u.day.as_str(), u.published)).collect();
    assert_eq!(
        got,
        vec![
            ("2024-02-01", 3),
            ("2024-01-31", 1),
            ("2024-01-01", 4),
            ("2023-12-31", 2)
        ]
    );

    let two = store.usage(&app, 2).await.expect("usage");
    let got: Vec<&str> = two.iter().map(|u| u.day.as_str()).collect();
    assert_eq!(got, vec!["2024-02-01", "2024-01-31"]);

    let one = store.usage(&app, 1).await.expect("usage");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].day, "2024-02-01");

    assert!(store.usage(&app, 0).await.expect("usage").is_empty());
}

/// An app with no usage (or no app at all) has an empty usage list.
pub async fn usage_none(store: &dyn Store) {
    let name = unique("usagen");
    assert!(store.usage(&name, 30).await.expect("usage").is_empty());
    store.create_app(&name).await.expect("create_app");
    assert!(store.usage(&name, 30).await.expect("usage").is_empty());
}

/// A random suffix that makes names unique across runs and databases.
fn suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `prefix-<random>`.
fn unique(prefix: &str) -> String {
    format!("conformance-{prefix}-{}", suffix())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
