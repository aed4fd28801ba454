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
