//! `fanout`: N subscribers over K channels, M messages published as fast as one
//! publisher can (or at `--rate`): deliveries, losses, duplicates, reordering,
//! latency, and CPU per delivery (the server's and the generator's).
//!
//! `sustained` is the same run with the publishing bounded in time instead of
//! count: one publisher as fast as it can for `--duration` (at most
//! `--max-messages`), the deliveries expected of what it published; the report
//! adds the publish rate achieved and the server's peak memory.

use std::sync::atomic::Ordering;

use crate::proc::{own_cpu_seconds, proc_sample};
use crate::publisher::{publish_all, Publisher};
use crate::report::{cpu_report, delivery_report, write_chart};
use crate::session::{share, totals, Session};

pub(crate) async fn run(s: &mut Session, publisher: Publisher) -> anyhow::Result<()> {
    let sustained = s.a.duration.is_some();
    let expected = s.expected_all();
    s.expected_now.store(expected, Ordering::Relaxed);
    let cpu0 = proc_sample(&s.pids);
    let own0 = own_cpu_seconds();
    let t0_us = s.sh.timeline.start();
    let publish_secs = publish_all(&publisher, &s.a, &s.run_id, &s.sh, s.deadline).await?;
    let published = s.sh.published.load(Ordering::SeqCst);
    let expected = if sustained {
        // What was published in the time, round robin over the channels.
        let a = &s.a;
        let total = usize::try_from(published).unwrap_or(usize::MAX);
        let e = (0..a.connections)
            .map(|i| share(total, a.channels, i % a.channels))
            .sum();
        s.expected_now.store(e, Ordering::Relaxed);
        e
    } else {
        expected
    };
    let tally = s.sh.tally.clone();
    s.wait_deliveries(|| tally.received.load(Ordering::Relaxed) >= expected, || true)
        .await;
    let cpu1 = proc_sample(&s.pids);
    let own1 = own_cpu_seconds();
    let t = totals(s.collect().await);
    delivery_report(s, &t, publish_secs, t0_us);
    let r = &mut s.report;
    if sustained {
        r["messages"] = published.into();
        r["max_messages"] = s.a.messages.into();
        r["duration_seconds"] = s.a.duration.map_or(0.0, |d| d.as_secs_f64()).into();
        r["publishes_per_second"] = (published as f64 / publish_secs.max(1e-9)).into();
    }
    r["expected_deliveries"] = expected.into();
    r["lost"] = expected.saturating_sub(t.received).into();
    publisher.retries.report(r);
    cpu_report(r, (cpu0, cpu1), (own0, own1), t.received);
    write_chart(s, &t.lat, Vec::new());
    Ok(())
}
