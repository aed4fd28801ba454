//! The SQLite engine against the conformance suite, in memory and on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_store::sqlite::SqliteStore;
use herald_store::{conformance, Store, StoreError, UsageDelta};

#[tokio::test]
async fn conformance_in_memory() {
    let store = SqliteStore::in_memory().await.unwrap();
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn classroom_conformance_in_memory() {
    let store = SqliteStore::in_memory().await.unwrap();
    conformance::classroom::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn classroom_conformance_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("herald.db")).await.unwrap();
    conformance::classroom::run_all(&store).await;
    // Twice on the same database: the suite's emails never collide.
    conformance::classroom::run_all(&store).await;
    store.close().await;
}

#[tokio::test]
async fn conformance_file() {
    let dir = tempfile::tempdir().unwrap();
    // The parent directories do not exist yet: `open` creates them.
    let store = SqliteStore::open(&dir.path().join("data/store/herald.db"))
        .await
        .unwrap();
    conformance::run_all(&store).await;
    // Twice on the same database: the suite's names never collide.
    conformance::run_all(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_file_multi_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("herald.db")).await.unwrap();
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");

    let store = SqliteStore::open(&path).await.unwrap();
    let first = store.create_app("survivor").await.unwrap();
    let second = store
        .rotate_app("survivor", Duration::from_secs(3600))
        .await
        .unwrap();
    let delta = UsageDelta {
        published: 3,
        delivered: 4,
        bytes_in: 5,
        bytes_out: 6,
        peak_connections: 7,
    };
    store.add_usage("survivor", "2024-05-06", delta).await.unwrap();
    let created_at = store.app("survivor").await.unwrap().unwrap().created_at;
    drop(store);

    // Reopening runs the migrations again: they must be a no-op.
    let store = SqliteStore::open(&path).await.unwrap();
    let record = store.app("survivor").await.unwrap().expect("app survives");
    assert!(record.verify_key(&first.key));
    assert!(record.verify_key(&second.key));
    assert_eq!(
        record.token_secrets,
        vec![second.token_secret, first.token_secret]
    );
    assert_eq!(record.created_at, created_at);
    let usage = store.usage("survivor", 7).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].day, "2024-05-06");
    assert_eq!(usage[0].published, 3);
    assert_eq!(usage[0].peak_connections, 7);
    assert!(matches!(
        store.create_app("survivor").await,
        Err(StoreError::AppExists(_))
    ));
    store.close().await;

    // Still there after a clean close, too.
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(store.app("survivor").await.unwrap().is_some());
}

#[tokio::test]
async fn in_memory_stores_are_separate() {
    let a = SqliteStore::in_memory().await.unwrap();
    let b = SqliteStore::in_memory().await.unwrap();
    a.create_app("only-in-a").await.unwrap();
    assert!(a.app("only-in-a").await.unwrap().is_some());
    assert!(b.app("only-in-a").await.unwrap().is_none());
    assert!(b.list_apps().await.unwrap().is_empty());
}

#[tokio::test]
async fn clones_share_the_database() {
    let a = SqliteStore::in_memory().await.unwrap();
    let b = a.clone();
    a.create_app("shared").await.unwrap();
    assert!(b.app("shared").await.unwrap().is_some());
}

#[tokio::test]
async fn open_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    // The parent "directory" is a file.
    let err = SqliteStore::open(&file.join("herald.db")).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    // A file that is not a database.
    std::fs::write(dir.path().join("garbage.db"), vec![0x42u8; 8192]).unwrap();
    let err = SqliteStore::open(&dir.path().join("garbage.db"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn closed_store_is_unavailable() {
    let store = SqliteStore::in_memory().await.unwrap();
    store.close().await;
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
}
