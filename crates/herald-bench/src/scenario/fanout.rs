//! `fanout`: N subscribers over K channels, M messages published as fast as one
//! publisher can (or at `--rate`): deliveries, losses, duplicates, reordering,
//! latency, and CPU per delivery (the server's and the generator's).

use std::sync::atomic::Ordering;

use crate::proc::{own_cpu_seconds, proc_sample};
use crate::publisher::{publish_all, Publisher};
use crate::report::{cpu_report, delivery_report, write_chart};
use crate::session::{totals, Session};

pub(crate) async fn run(s: &mut Session, publisher: Publisher) -> anyhow::Result<()> {
    let expected = s.expected_all();
    s.expected_now.store(expected, Ordering::Relaxed);
    let cpu0 = proc_sample(&s.pids);
    let own0 = own_cpu_seconds();
    let t0_us = s.sh.timeline.start();
    let publish_secs = publish_all(&publisher, &s.a, &s.run_id, &s.sh, s.deadline).await?;
    let tally = s.sh.tally.clone();
    s.wait_deliveries(|| tally.received.load(Ordering::Relaxed) >= expected, || true)
        .await;
    let cpu1 = proc_sample(&s.pids);
    let own1 = own_cpu_seconds();
    let t = totals(s.collect().await);
    delivery_report(s, &t, publish_secs, t0_us);
    let r = &mut s.report;
    r["expected_deliveries"] = expected.into();
    r["lost"] = expected.saturating_sub(t.received).into();
    cpu_report(r, (cpu0, cpu1), (own0, own1), t.received);
    write_chart(s, &t.lat, Vec::new());
    Ok(())
}
