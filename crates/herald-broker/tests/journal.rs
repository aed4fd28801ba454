//! The embedded engine with its journal: the conformance suite, and what a
//! restart keeps (epochs, offsets, history within its bounds, idempotency keys).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use herald_broker::conformance::{app, key, publication, run_all, Recorder};
use herald_broker::memory::MemoryBroker;
use herald_broker::{Broker, BrokerError, HistoryPolicy, Idempotency, JournalOptions};
use parking_lot::Mutex;

fn open_with(dir: &std::path::Path, policy: HistoryPolicy, options: JournalOptions) -> MemoryBroker {
    MemoryBroker::open(dir, &move |_| policy, options).unwrap()
}

fn open(dir: &std::path::Path, policy: HistoryPolicy) -> MemoryBroker {
    open_with(dir, policy, JournalOptions::default())
}

fn offsets(h: &herald_broker::HistoryRead) -> Vec<u64> {
    h.messages.iter().map(|m| m.offset).collect()
}

#[tokio::test]
async fn journal_engine_conforms() {
    let dirs = Arc::new(Mutex::new(Vec::new()));
    run_all(|rec: Arc<Recorder>| {
        let dirs = dirs.clone();
        async move {
            let dir = tempfile::tempdir().unwrap();
            let b = Arc::new(open(dir.path(), HistoryPolicy::default()));
            dirs.lock().push(dir);
            b.set_handler(rec);
            b
        }
    })
    .await;
}

#[tokio::test]
async fn a_restart_keeps_epochs_offsets_history_and_idempotency_keys() {
    let dir = tempfile::tempdir().unwrap();
    let policy = HistoryPolicy::default();
    let a = app();
    let k = key(&a, "chat:room");
    let quiet = key(&a, "quiet");
    let idem = Idempotency {
        key: "order-42".into(),
        fingerprint: 7,
        window: Duration::from_secs(300),
    };

    let b = open(dir.path(), policy);
    for i in 1..=5 {
        b.publish(publication(&k, &format!("{{\"n\":{i}}}"), policy))
            .await
            .unwrap();
    }
    let before = b.history(&k, policy, 0, 100).await.unwrap();
    let quiet_before = b.history(&quiet, policy, 0, 100).await.unwrap();
    let mut p = publication(&k, "\"once\"", policy);
    p.idempotency = Some(idem.clone());
    let first = b.publish(p.clone()).await.unwrap();
    assert_eq!(first[0].offset, 6);
    b.close().await.unwrap();
    assert!(
        matches!(
            b.publish(publication(&k, "1", policy)).await,
            Err(BrokerError::Unavailable(_))
        ),
        "a closed broker refuses publishes"
    );
    assert!(b.ping().await.is_err());
    drop(b);

    let b = open(dir.path(), policy);
    let rec = Arc::new(Recorder::default());
    b.set_handler(rec.clone());
    let h = b.history(&k, policy, 2, 100).await.unwrap();
    assert_eq!(h.epoch, before.epoch, "the epoch survived");
    assert_eq!(h.top, 6);
    assert!(h.complete);
    assert_eq!(offsets(&h), vec![3, 4, 5, 6]);
    assert_eq!(&*h.messages[0].data, "{\"n\":3}");
    assert_eq!(h.messages[0].ts, before.messages[2].ts, "publish times kept");
    assert_eq!(h.messages[0].event.as_str(), "message");
    let q = b.history(&quiet, policy, 0, 100).await.unwrap();
    assert_eq!(
        (q.epoch.clone(), q.top),
        (quiet_before.epoch, 0),
        "a channel that was only read keeps the epoch its readers hold"
    );
    assert_eq!(
        b.publish(p.clone()).await.unwrap(),
        first,
        "the retried publish gets the first result"
    );
    let mut conflicting = p.clone();
    conflicting.idempotency = Some(Idempotency {
        fingerprint: 8,
        ..idem
    });
    assert!(matches!(
        b.publish(conflicting).await,
        Err(BrokerError::IdempotencyConflict)
    ));
    let next = b.publish(publication(&k, "7", policy)).await.unwrap();
    assert_eq!(
        (next[0].offset, &next[0].epoch),
        (7, &before.epoch),
        "offsets continue"
    );
    assert_eq!(rec.offsets(&k), vec![7], "only the new publish is delivered");
    b.close().await.unwrap();
}

#[tokio::test]
async fn history_bounds_hold_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let a = app();
    let sized = key(&a, "sized");
    let aging = key(&a, "aging");
    let none = key(&a, "none");
    let three = HistoryPolicy {
        size: 3,
        ttl: Duration::from_secs(600),
    };
    let short = HistoryPolicy {
        size: 100,
        ttl: Duration::from_millis(800),
    };
    let zero = HistoryPolicy {
        size: 0,
        ttl: Duration::from_secs(600),
    };
    let b = open(dir.path(), HistoryPolicy::default());
    for i in 1..=5 {
        b.publish(publication(&sized, &i.to_string(), three))
            .await
            .unwrap();
        b.publish(publication(&aging, &i.to_string(), short))
            .await
            .unwrap();
        b.publish(publication(&none, &i.to_string(), zero)).await.unwrap();
    }
    b.close().await.unwrap();
    drop(b);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let b = open(dir.path(), HistoryPolicy::default());
    let h = b.history(&sized, three, 0, 100).await.unwrap();
    assert_eq!(offsets(&h), vec![3, 4, 5], "the size bound holds");
    assert!(!h.complete, "1 and 2 are gone");
    assert!(b.history(&sized, three, 2, 100).await.unwrap().complete);
    let h = b.history(&aging, short, 0, 100).await.unwrap();
    assert!(
        h.messages.is_empty(),
        "publish times count across the restart: expired"
    );
    assert_eq!(h.top, 5, "the epoch and its offsets stay");
    assert!(!h.complete);
    assert!(b.history(&aging, short, 5, 100).await.unwrap().complete);
    let h = b.history(&none, zero, 5, 100).await.unwrap();
    assert_eq!(h.top, 5, "a channel without history keeps its offsets");
    let p = b.publish(publication(&none, "6", zero)).await.unwrap();
    assert_eq!(p[0].offset, 6);
    b.close().await.unwrap();
    drop(b);

    // A smaller bound in the new configuration applies from the start.
    let two = HistoryPolicy {
        size: 2,
        ttl: Duration::from_secs(600),
    };
    let b = open(dir.path(), two);
    let h = b.history(&sized, two, 0, 100).await.unwrap();
    assert_eq!(offsets(&h), vec![4, 5]);
    b.close().await.unwrap();
}

#[tokio::test]
async fn a_torn_or_damaged_tail_is_dropped_whole() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let policy = HistoryPolicy::default();
    let k = key(&app(), "torn");
    let b = open(dir.path(), policy);
    for i in 1..=3 {
        b.publish(publication(&k, &i.to_string(), policy)).await.unwrap();
    }
    let epoch = b.history(&k, policy, 0, 10).await.unwrap().epoch;
    b.close().await.unwrap();
    drop(b);
    let journal = dir.path().join("journal");
    let whole = std::fs::read(&journal).unwrap();

    // The end of a write cut short: a frame head that promises more than follows.
    let mut f = std::fs::OpenOptions::new().append(true).open(&journal).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9]).unwrap();
    drop(f);
    let b = open(dir.path(), policy);
    let h = b.history(&k, policy, 0, 10).await.unwrap();
    assert_eq!((offsets(&h), h.epoch.clone()), (vec![1, 2, 3], epoch.clone()));
    assert_eq!(
        b.publish(publication(&k, "4", policy)).await.unwrap()[0].offset,
        4
    );
    b.close().await.unwrap();
    drop(b);

    // A whole frame whose checksum fails (a damaged last write): it and what
    // follows are dropped, what precedes it is kept.
    let mut damaged = std::fs::read(&journal).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    std::fs::write(&journal, &damaged).unwrap();
    let b = open(dir.path(), policy);
    let h = b.history(&k, policy, 0, 10).await.unwrap();
    assert_eq!(h.epoch, epoch);
    assert!(h.top >= 3, "the earlier frames are read: {h:?}");
    b.close().await.unwrap();
    drop(b);

    // Not a journal at all: refused with a sentence, never overwritten.
    std::fs::write(&journal, b"hello").unwrap();
    let err = MemoryBroker::open(dir.path(), &|_| policy, JournalOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("not a history journal"), "{err}");
    assert_eq!(std::fs::read(&journal).unwrap(), b"hello");
    assert!(whole.starts_with(b"HERALD-HISTORY-1\n"));
}

#[tokio::test]
async fn an_unclean_end_is_trusted_on_the_same_boot_only() {
    let dir = tempfile::tempdir().unwrap();
    let policy = HistoryPolicy::default();
    let k = key(&app(), "boot");
    let b = open(dir.path(), policy);
    b.publish(publication(&k, "1", policy)).await.unwrap();
    let epoch = b.history(&k, policy, 0, 10).await.unwrap().epoch;
    b.close().await.unwrap();
    drop(b);
    let state = dir.path().join("state");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "clean\n");

    // What a process killed on this boot leaves: its pages are in the kernel.
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    std::fs::write(&state, format!("running {}\n", boot.trim())).unwrap();
    let b = open(dir.path(), policy);
    let h = b.history(&k, policy, 0, 10).await.unwrap();
    assert_eq!((h.epoch.clone(), h.top), (epoch.clone(), 1), "kept");
    assert!(
        std::fs::read_to_string(&state).unwrap().starts_with("running "),
        "a running process says so"
    );
    b.close().await.unwrap();
    drop(b);

    // What a machine that stopped while Herald ran leaves: another boot.
    std::fs::write(&state, "running 00000000-0000-0000-0000-000000000000\n").unwrap();
    let b = open(dir.path(), policy);
    let h = b.history(&k, policy, 0, 10).await.unwrap();
    assert_ne!(
        h.epoch, epoch,
        "a new epoch: clients get a reset, never a silent gap"
    );
    assert_eq!(h.top, 0);
    b.close().await.unwrap();
}

#[tokio::test]
async fn a_second_process_on_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), HistoryPolicy::default());
    let err = MemoryBroker::open(
        dir.path(),
        &|_| HistoryPolicy::default(),
        JournalOptions::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("another Herald process"), "{err}");
    b.close().await.unwrap();
    drop(b);
    // The lock goes with the writer.
    for _ in 0..100 {
        if let Ok(b) = MemoryBroker::open(
            dir.path(),
            &|_| HistoryPolicy::default(),
            JournalOptions::default(),
        ) {
            b.close().await.unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the directory stayed locked after close");
}

#[tokio::test]
async fn rewrites_keep_the_journal_as_small_as_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let ten = HistoryPolicy {
        size: 10,
        ttl: Duration::from_secs(600),
    };
    let options = JournalOptions {
        compact_min: 64 << 10,
        ..JournalOptions::default()
    };
    let k = key(&app(), "busy");
    let b = open_with(dir.path(), ten, options.clone());
    let data = format!("\"{}\"", "x".repeat(100));
    let mut largest = 0;
    for _ in 0..20_000 {
        b.publish(publication(&k, &data, ten)).await.unwrap();
        largest = largest.max(std::fs::metadata(dir.path().join("journal")).unwrap().len());
    }
    // Rewrites run beside the publishes (on the journal's thread), so the file
    // overshoots its 64 KiB threshold by what arrives meanwhile, and comes back.
    assert!(
        largest < 2 << 20,
        "20 000 publishes of 100 bytes (2.6 MB of records) with 10 kept: the journal peaked at {largest} bytes"
    );
    let journal = dir.path().join("journal");
    for _ in 0..500 {
        if std::fs::metadata(&journal).unwrap().len() < 128 << 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let settled = std::fs::metadata(&journal).unwrap().len();
    assert!(settled < 128 << 10, "the journal settled at {settled} bytes");
    b.close().await.unwrap();
    drop(b);
    let b = open_with(dir.path(), ten, options);
    let h = b.history(&k, ten, 0, 100).await.unwrap();
    assert_eq!(offsets(&h), (19_991..=20_000).collect::<Vec<_>>());
    b.close().await.unwrap();
}

#[tokio::test]
async fn publishes_beyond_the_unwritten_limit_wait_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let options = JournalOptions {
        max_unwritten: 2,
        ..JournalOptions::default()
    };
    let b = Arc::new(open_with(dir.path(), HistoryPolicy::default(), options));
    let rec = Arc::new(Recorder::default());
    b.set_handler(rec.clone());
    let k = key(&app(), "narrow");
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (b, k) = (b.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                b.publish(publication(&k, &format!("[{t},{i}]"), HistoryPolicy::default()))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        rec.offsets(&k),
        (1..=400).collect::<Vec<u64>>(),
        "delivered once each, in order"
    );
    b.close().await.unwrap();
}

/// Publishers on several threads take turns writing the queue: none is left
/// waiting (a unit queued while another publisher held the file is written by
/// that one), and each channel is delivered in offset order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_on_threads_are_all_written_and_delivered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(open(dir.path(), HistoryPolicy::default()));
    let rec = Arc::new(Recorder::default());
    b.set_handler(rec.clone());
    let a = app();
    let keys: Vec<_> = (0..4).map(|i| key(&a, &format!("c{i}"))).collect();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let (b, keys) = (b.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..300 {
                let k = &keys[(t + i) % keys.len()];
                b.publish(publication(k, &format!("[{t},{i}]"), HistoryPolicy::default()))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("every publish is answered")
            .unwrap();
    }
    for k in &keys {
        assert_eq!(rec.offsets(k), (1..=1200).collect::<Vec<u64>>(), "{k:?}");
    }
    b.close().await.unwrap();
    drop(b);
    let b = open(dir.path(), HistoryPolicy::default());
    for k in &keys {
        let h = b.history(k, HistoryPolicy::default(), 200, 1000).await.unwrap();
        assert_eq!(offsets(&h), (201..=1200).collect::<Vec<u64>>());
    }
    b.close().await.unwrap();
}
