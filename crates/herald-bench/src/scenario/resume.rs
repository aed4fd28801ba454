//! `resume`: after a third of the messages every connection is dropped at once;
//! after two thirds all reconnect at once from their last position: the time
//! until all are back and caught up, losses, and the server's CPU in the storm.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::conn::{read_until, reconnect, Conn, End, OPEN_TIMEOUT};
use crate::proc::{own_cpu_seconds, proc_sample};
use crate::publisher::{spawn_publisher, Publisher};
use crate::report::{cpu_report, delivery_report, write_chart};
use crate::session::{totals, Session, QUIET};
use crate::track::{Shared, SubSpec, Track};
use crate::wire::now_micros;

/// Reads until the drop signal, drops the connection, waits for the reconnect
/// signal, then reconnects from its last position and reads to the end.
pub(crate) async fn resume_subscriber(mut conn: Conn, spec: &SubSpec, sh: &Shared, track: &mut Track) {
    match read_until(&mut conn, track, sh, sh.drop_all.cancelled()).await {
        End::Stopped => return,
        End::Closed => {
            sh.tally.closed_early.fetch_add(1, Ordering::Relaxed);
        }
        End::Interrupted => {}
    }
    drop(conn);
    track.disconnected(sh, 0);
    sh.tally.dropped.fetch_add(1, Ordering::Relaxed);
    tokio::select! {
        _ = sh.stop.cancelled() => return,
        _ = sh.reconnect_all.cancelled() => {}
    }
    track.target = Some(
        usize::try_from(track.channel)
            .ok()
            .and_then(|c| sh.targets.get(c))
            .map_or(0, |t| t.load(Ordering::SeqCst)),
    );
    let Some(mut conn) = reconnect(spec, sh, track).await else {
        return;
    };
    if let End::Closed = read_until(&mut conn, track, sh, std::future::pending()).await {
        sh.tally.closed_early.fetch_add(1, Ordering::Relaxed);
    }
}

/// Polls `cond` every 5 ms until it holds (true) or `until` passes (false).
pub(crate) async fn wait_for(cond: impl Fn() -> bool, until: Instant) -> bool {
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) async fn run(s: &mut Session, publisher: Publisher) -> anyhow::Result<()> {
    let a = s.a.clone();
    let sh = s.sh.clone();
    let tally = sh.tally.clone();
    let expected = s.expected_all();
    s.expected_now.store(expected, Ordering::Relaxed);
    let (drop_at, back_at) = ((a.messages / 3) as u64, (2 * a.messages / 3) as u64);
    let cpu0 = proc_sample(&s.pids);
    let own0 = own_cpu_seconds();
    let t0_us = sh.timeline.start();
    let retries = publisher.retries.clone();
    let task = spawn_publisher(publisher, s);
    let published = || sh.published.load(Ordering::SeqCst);
    let failed = || sh.publish_error.lock().is_some();
    wait_for(|| published() >= drop_at || failed(), s.deadline).await;
    s.publish_failed()?;
    if published() < drop_at {
        bail!(
            "the deadline passed before the drop ({} of {drop_at} published)",
            published()
        );
    }
    // Everyone down at once.
    let participants = tally.opened.load(Ordering::Relaxed);
    let drop_us = now_micros();
    sh.drop_all.cancel();
    let all_down = wait_for(
        || tally.dropped.load(Ordering::Relaxed) >= participants,
        Instant::now() + OPEN_TIMEOUT,
    )
    .await;
    let down = tally.dropped.load(Ordering::Relaxed);
    wait_for(|| published() >= back_at || failed(), s.deadline).await;
    s.publish_failed()?;
    if published() < back_at {
        bail!("the deadline passed while the subscribers were down");
    }
    // Everyone back at once, from their last position.
    for (target, started) in sh.targets.iter().zip(&sh.started) {
        target.store(started.load(Ordering::SeqCst), Ordering::SeqCst);
    }
    let storm0 = proc_sample(&s.pids);
    let go = Instant::now();
    let go_us = now_micros();
    sh.reconnect_all.cancel();
    let gave_up = || tally.gave_up.load(Ordering::Relaxed);
    let back = || tally.reconnects.load(Ordering::Relaxed);
    let mut back_secs = None;
    let mut caught_up_secs = None;
    // Until all are back and caught up; at most until the deadline, or QUIET
    // without a delivery once the publisher is done (a peer that cannot resume
    // may never catch up).
    let mut last = (tally.received.load(Ordering::Relaxed), Instant::now());
    let mut quiet = false;
    loop {
        let now = Instant::now();
        if back_secs.is_none() && back() + gave_up() >= down {
            back_secs = Some(go.elapsed().as_secs_f64());
        }
        if caught_up_secs.is_none() && tally.caught_up.load(Ordering::Relaxed) + gave_up() >= down {
            caught_up_secs = Some(go.elapsed().as_secs_f64());
        }
        if (back_secs.is_some() && caught_up_secs.is_some()) || now > s.deadline {
            break;
        }
        let got = tally.received.load(Ordering::Relaxed);
        if got != last.0 || !task.is_finished() {
            last = (got, now);
        } else if now - last.1 > QUIET {
            quiet = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let storm1 = proc_sample(&s.pids);
    let storm_secs = go.elapsed().as_secs_f64();
    let publish_secs = task.await.ok().flatten();
    s.publish_failed()?;
    let publish_secs = publish_secs.context("the publisher ended without an answer")?;
    if !quiet {
        // Done when everything arrived or every subscriber has its channel's last
        // message (a peer that cannot resume never delivers the rest).
        let finished = || tally.finished.load(Ordering::Relaxed) + gave_up() >= participants;
        s.wait_deliveries(
            || tally.received.load(Ordering::Relaxed) >= expected || finished(),
            || true,
        )
        .await;
    }
    let cpu1 = proc_sample(&s.pids);
    let own1 = own_cpu_seconds();
    let t = totals(s.collect().await);
    delivery_report(s, &t, publish_secs, t0_us);
    let r = &mut s.report;
    r["expected_deliveries"] = expected.into();
    r["lost"] = expected.saturating_sub(t.received).into();
    r["resets"] = t.resets.into();
    r["resume_dropped"] = down.into();
    r["resume_all_dropped"] = all_down.into();
    r["resume_reconnected"] = back().into();
    r["resume_failed"] = tally.reconnect_failed.load(Ordering::Relaxed).into();
    r["resume_gave_up"] = gave_up().into();
    r["resume_messages_before_drop"] = drop_at.into();
    r["resume_messages_before_reconnect"] = back_at.into();
    r["resume_down_seconds"] = ((go_us.saturating_sub(drop_us)) as f64 / 1e6).into();
    r["resume_back_seconds"] = back_secs.into();
    r["resume_caught_up_seconds"] = caught_up_secs.into();
    r["storm_seconds"] = storm_secs.into();
    if let (Some(c0), Some(c1)) = (storm0, storm1) {
        let cpu = c1.cpu_seconds - c0.cpu_seconds;
        r["storm_server_cpu_seconds"] = cpu.into();
        r["storm_server_cpu_percent"] = (cpu * 100.0 / storm_secs.max(1e-9)).into();
    }
    if let Some(e) = tally.first_error.lock().clone() {
        r["first_error"] = e.into();
    }
    retries.report(r);
    cpu_report(r, (cpu0, cpu1), (own0, own1), t.received);
    let timeline = &sh.timeline;
    let mut markers = vec![
        (timeline.seconds(drop_us), "drop".to_owned()),
        (timeline.seconds(go_us), "reconnect".to_owned()),
    ];
    if let Some(b) = back_secs {
        markers.push((timeline.seconds(go_us) + b, "all back".to_owned()));
    }
    write_chart(s, &t.lat, markers);
    Ok(())
}
