//! `publish`: M messages over K channels from `--concurrency` publishers, no
//! subscribers: the publish endpoint's throughput and CPU per publish.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::args::{pub_template, BenchArgs};
use crate::proc::{own_cpu_seconds, proc_sample};
use crate::publisher::Publisher;
use crate::wire::{channel_name, new_run_id, payload};

pub(crate) async fn run(a: Arc<BenchArgs>, pids: &[u32]) -> anyhow::Result<Value> {
    if a.concurrency == 0 || a.concurrency > 1000 {
        bail!("--concurrency must be 1 to 1000");
    }
    let publisher = Publisher::new(&a)?;
    let run_id = new_run_id();
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let cpu0 = proc_sample(pids);
    let own0 = own_cpu_seconds();
    let t0 = Instant::now();
    let deadline = t0 + a.deadline;
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (publisher, next, errors, first_error, run_id, a) = (
            publisher.clone(),
            next.clone(),
            errors.clone(),
            first_error.clone(),
            run_id.clone(),
            a.clone(),
        );
        let (total, channels) = (a.messages as u64, a.channels.max(1));
        tasks.push(tokio::spawn(async move {
            loop {
                let m = next.fetch_add(1, Ordering::Relaxed);
                if m >= total || Instant::now() > deadline {
                    return;
                }
                let c = (m % channels as u64) as usize;
                let seq = m / channels as u64 + 1;
                let sent = publisher
                    .send(&channel_name(&run_id, c), payload(seq, c, a.size))
                    .await;
                if let Err(e) = sent {
                    errors.fetch_add(1, Ordering::Relaxed);
                    first_error
                        .lock()
                        .get_or_insert_with(|| crate::report::redact_tokens(&format!("{e:#}")));
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let done = next.load(Ordering::Relaxed).min(a.messages as u64);
    let mut report = json!({
        "scenario": "publish",
        "pub_url": pub_template(&a),
        "pub_format": format!("{:?}", a.pub_format).to_lowercase(),
        "messages": done,
        "channels": a.channels,
        "concurrency": a.concurrency,
        "errors": errors.load(Ordering::Relaxed),
        "seconds": secs,
        "publishes_per_second": done as f64 / secs,
        "server_pids": pids,
    });
    if let Some(e) = first_error.lock().clone() {
        report["first_error"] = e.into();
    }
    publisher.retries.report(&mut report);
    if let (Some(c0), Some(c1)) = (cpu0, proc_sample(pids)) {
        report["server_cpu_seconds"] = (c1.cpu_seconds - c0.cpu_seconds).into();
        report["server_us_per_publish"] =
            ((c1.cpu_seconds - c0.cpu_seconds) * 1e6 / done.max(1) as f64).into();
    }
    if let (Some(o0), Some(o1)) = (own0, own_cpu_seconds()) {
        report["bench_cpu_seconds"] = (o1 - o0).into();
    }
    Ok(report)
}
