//! What a publish costs the embedded engine alone, in memory only and with its
//! journal (docs/benchmarks.md, "History that survives a restart"):
//!
//! ```sh
//! cargo run --release -p herald-broker --example publish_cost
//! ```
//!
//! 100 000 publishes of 110 bytes over 1 000 channels, by 1 publisher and by 32
//! concurrent ones, on a Tokio runtime of 2 workers, twice each; no subscribers.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use herald_broker::conformance::{app, key, publication};
use herald_broker::memory::MemoryBroker;
use herald_broker::{Broker, HistoryPolicy, JournalOptions};

const PUBLISHES: usize = 100_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let policy = HistoryPolicy::default();
    let data = format!("{{\"p\":\"{}\"}}", "x".repeat(100));
    for round in 1..=2 {
        let journal = dir.path().join(round.to_string());
        let engines = [
            ("memory", MemoryBroker::new()),
            (
                "journal",
                MemoryBroker::open(&journal, &|_| policy, JournalOptions::default()).unwrap(),
            ),
        ];
        for (name, b) in engines {
            let b = Arc::new(b);
            let a = app();
            for publishers in [1usize, 32] {
                let each = PUBLISHES / publishers;
                let t0 = Instant::now();
                let mut tasks = Vec::new();
                for t in 0..publishers {
                    let (b, a, data) = (b.clone(), a.clone(), data.clone());
                    tasks.push(tokio::spawn(async move {
                        for i in 0..each {
                            let k = key(&a, &format!("c{}", (t * 7 + i) % 1000));
                            b.publish(publication(&k, &data, policy)).await.unwrap();
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                let secs = t0.elapsed().as_secs_f64();
                let n = (each * publishers) as f64;
                println!(
                    "round {round} {name:7} {publishers:2} publisher(s): {:7.0} publishes/s, {:5.2} µs each",
                    n / secs,
                    secs * 1e6 / n
                );
            }
            b.close().await.unwrap();
        }
    }
}
