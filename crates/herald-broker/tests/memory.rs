//! The conformance suite against the in-memory engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use herald_broker::conformance::{run_all, Recorder};
use herald_broker::memory::MemoryBroker;
use herald_broker::Broker;

#[tokio::test]
async fn memory_engine_conforms() {
    run_all(|rec: Arc<Recorder>| async move {
        let b = Arc::new(MemoryBroker::new());
        b.set_handler(rec);
        b
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn quiet_channels_keep_their_epoch_until_idle_for_long() {
    use herald_broker::conformance::{app, key, publication};
    use herald_broker::HistoryPolicy;
    use std::time::Duration;

    let b = MemoryBroker::new();
    let k = key(&app(), "quiet");
    let policy = HistoryPolicy {
        size: 10,
        ttl: Duration::from_secs(1),
    };
    let first = b.publish(publication(&k, "1", policy)).await.unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    b.evict_idle(|_| policy, Duration::from_secs(60));
    assert_eq!(
        b.channel_count(),
        1,
        "history expired, but the channel was used recently"
    );
    let h = b.history(&k, policy, 1, 10).await.unwrap();
    assert_eq!(
        h.epoch, first[0].epoch,
        "a client that saw everything resumes without a reset"
    );
    assert!(h.complete);
    tokio::time::advance(Duration::from_secs(120)).await;
    b.evict_idle(|_| policy, Duration::from_secs(60));
    assert_eq!(b.channel_count(), 0, "forgotten after the idle period");
}
