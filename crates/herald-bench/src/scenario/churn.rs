//! `churn`: while M messages are published at `--rate`, `--churn-rate`
//! connections per second are dropped and replaced by fresh ones (a new
//! subscription, no resume): reconnect rate, what each connection missed while
//! subscribed, CPU and memory at the start and at the end.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::conn::{read_until, reconnect, Conn, End};
use crate::proc::{own_cpu_seconds, proc_sample};
use crate::publisher::{spawn_publisher, Publisher};
use crate::report::{cpu_report, delivery_report, memory_end_report, write_chart};
use crate::session::{totals, Session};
use crate::track::{Shared, SubSpec, Track};

/// Reads; at each kick drops the connection and opens a fresh one. The kicks are
/// bounded by the run, each reconnection by [`RECONNECT_ATTEMPTS`].
pub(crate) async fn churn_subscriber(mut conn: Conn, spec: &SubSpec, sh: &Shared, track: &mut Track) {
    let Some(kick) = spec.kick.clone() else {
        return;
    };
    loop {
        match read_until(&mut conn, track, sh, kick.notified()).await {
            End::Stopped => {
                // Whatever was published after it subscribed was owed to it.
                track.disconnected(sh, sh.started(track.channel));
                return;
            }
            End::Closed => {
                sh.tally.closed_early.fetch_add(1, Ordering::Relaxed);
                sh.tally.gave_up.fetch_add(1, Ordering::Relaxed);
                track.disconnected(sh, track.max_seq);
                return;
            }
            End::Interrupted => {}
        }
        drop(conn);
        track.disconnected(sh, track.max_seq);
        conn = match reconnect(spec, sh, track).await {
            Some(c) => c,
            None => return,
        };
    }
}

pub(crate) async fn run(s: &mut Session, publisher: Publisher) -> anyhow::Result<()> {
    let a = s.a.clone();
    let rate = a.churn_rate.unwrap_or(a.connections as f64 / 10.0);
    let cpu0 = proc_sample(&s.pids);
    let own0 = own_cpu_seconds();
    let t0_us = s.sh.timeline.start();
    let t0 = Instant::now();
    let retries = publisher.retries.clone();
    let task = spawn_publisher(publisher, s);
    let tally = s.sh.tally.clone();
    let mut kicked = 0u64;
    // Kick round robin at `rate` per second while the publisher runs: at most
    // deadline × rate kicks, one sleep of 10 ms per round.
    while !task.is_finished() {
        if Instant::now() > s.deadline {
            bail!("the deadline passed during the churn");
        }
        let due = (t0.elapsed().as_secs_f64() * rate) as u64;
        while kicked < due && !s.kicks.is_empty() {
            if let Some(k) = s.kicks.get((kicked % s.kicks.len() as u64) as usize) {
                k.notify_one();
            }
            kicked += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let churn_secs = t0.elapsed().as_secs_f64();
    let reconnects_in_churn = tally.reconnects.load(Ordering::Relaxed);
    let publish_secs = task.await.ok().flatten();
    s.publish_failed()?;
    let publish_secs = publish_secs.context("the publisher ended without an answer")?;
    // Every connection holds its channel's last message (or subscribed after it).
    let opened = s.opened;
    s.wait_deliveries(
        || tally.caught_up.load(Ordering::Relaxed) + tally.gave_up.load(Ordering::Relaxed) >= opened,
        || true,
    )
    .await;
    let cpu1 = proc_sample(&s.pids);
    let own1 = own_cpu_seconds();
    let window = t0.elapsed().as_secs_f64();
    // Memory with the same N connections as at the start of the churn.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let end = proc_sample(&s.pids);
    let t = totals(s.collect().await);
    delivery_report(s, &t, publish_secs, t0_us);
    let r = &mut s.report;
    r["lost"] = t.lost.into();
    r["resets"] = t.resets.into();
    r["churn_rate"] = rate.into();
    r["churn_seconds"] = churn_secs.into();
    r["churn_disconnects"] = kicked.into();
    r["churn_connects"] = tally.reconnects.load(Ordering::Relaxed).into();
    r["churn_failed"] = tally.reconnect_failed.load(Ordering::Relaxed).into();
    r["churn_gave_up"] = tally.gave_up.load(Ordering::Relaxed).into();
    r["churn_connects_per_second"] = (reconnects_in_churn as f64 / churn_secs.max(1e-9)).into();
    if let Some(e) = tally.first_error.lock().clone() {
        r["first_error"] = e.into();
    }
    retries.report(r);
    cpu_report(r, (cpu0, cpu1), (own0, own1), t.received);
    if let (Some(c0), Some(c1)) = (cpu0, cpu1) {
        r["server_cpu_percent"] = ((c1.cpu_seconds - c0.cpu_seconds) * 100.0 / window.max(1e-9)).into();
    }
    memory_end_report(r, end);
    write_chart(s, &t.lat, Vec::new());
    Ok(())
}
