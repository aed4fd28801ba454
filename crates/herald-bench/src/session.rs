//! A run's subscribers, connected: [`open_session`] opens them and starts the
//! report (connect rate, memory); [`Session`] waits for deliveries and gathers
//! what the subscribers saw.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::args::{fill, sub_template, BenchArgs, Scenario, Transport};
use crate::conn::{dialer, subscriber};
use crate::proc::proc_sample;
use crate::progress::{Progress, REDRAW};
use crate::track::{Mode, Shared, SubSpec, SubStats, Tally, Timeline};
use crate::wire::{channel_name, new_run_id, ws_url};

/// After the last publish, stop waiting when nothing arrived for this long.
pub(crate) const QUIET: Duration = Duration::from_secs(5);

/// Messages of `total` that go to channel `c` of `channels` (round robin).
pub(crate) fn share(total: usize, channels: usize, c: usize) -> u64 {
    (total / channels + usize::from(c < total % channels)) as u64
}

/// N subscribers connected, and what the run needs to go on.
pub(crate) struct Session {
    pub(crate) a: Arc<BenchArgs>,
    pub(crate) pids: Vec<u32>,
    pub(crate) sh: Arc<Shared>,
    pub(crate) tasks: Vec<JoinHandle<SubStats>>,
    pub(crate) kicks: Vec<Arc<Notify>>,
    pub(crate) run_id: Arc<str>,
    pub(crate) deadline: Instant,
    pub(crate) report: Value,
    pub(crate) expected_now: Arc<AtomicU64>,
    /// The bar on stderr, and the task that moves it.
    pub(crate) progress: Progress,
    pub(crate) progress_task: JoinHandle<()>,
    pub(crate) opened: u64,
    /// Whatever happens, the subscribers and the progress task end with the run.
    pub(crate) _stop_all: tokio_util::sync::DropGuard,
}

/// Connects the subscribers and starts the report (connect rate, memory).
pub(crate) async fn open_session(
    a: Arc<BenchArgs>,
    pids: Vec<u32>,
    file_limit: u64,
    mode: Mode,
) -> anyhow::Result<Session> {
    let dialer = dialer(&a).await?;
    let channels = if mode == Mode::Plain { 0 } else { a.channels };
    let stop = CancellationToken::new();
    let sh = Arc::new(Shared {
        tally: Arc::new(Tally::default()),
        gate: Semaphore::new(a.connect_concurrency.max(1)),
        stop: stop.clone(),
        dialer,
        frames: a.ws_frames,
        mode,
        timeline: Timeline::new(a.deadline),
        started: (0..channels).map(|_| AtomicU64::new(0)).collect(),
        targets: (0..channels).map(|_| AtomicU64::new(0)).collect(),
        published: AtomicU64::new(0),
        publish_error: Mutex::new(None),
        drop_all: CancellationToken::new(),
        reconnect_all: CancellationToken::new(),
    });
    let stop_all = stop.clone().drop_guard();
    let expected_now = Arc::new(AtomicU64::new(0));
    let progress = Progress::new(a.progress, a.scenario.name(), a.connections as u64);
    let progress_task = if a.progress {
        spawn_progress(
            progress.clone(),
            a.scenario.name(),
            sh.tally.clone(),
            a.connections as u64,
            expected_now.clone(),
            stop.clone(),
        )
    } else {
        tokio::spawn(async {})
    };
    let before = proc_sample(&pids);
    let started = Instant::now();
    // Fresh channels per run, so sequences start at 1 and runs never mix.
    let run_id = new_run_id();
    let messages = if a.scenario == Scenario::Idle {
        0
    } else {
        a.messages
    };
    let template = sub_template(&a);
    let sources = sh.dialer.sources();
    let mut tasks = Vec::with_capacity(a.connections);
    let mut kicks = Vec::new();
    for i in 0..a.connections {
        let c = i % a.channels;
        let name = channel_name(&run_id, c);
        let filled = fill(template, &a, &name);
        let kick = (mode == Mode::Churn).then(|| Arc::new(Notify::new()));
        kicks.extend(kick.clone());
        let spec = SubSpec {
            url: match a.transport {
                Transport::Sse => filled,
                Transport::Ws => ws_url(&filled)?,
            },
            channel_name: name,
            channel: c as u64,
            expect: share(messages, a.channels, c),
            src: i % sources,
            kick,
        };
        tasks.push(tokio::spawn(subscriber(spec, sh.clone())));
    }
    let deadline = started + a.deadline;
    let tally = &sh.tally;
    let settled = |t: &Tally| t.opened.load(Ordering::Relaxed) + t.failed.load(Ordering::Relaxed);
    while settled(tally) < a.connections as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} connections opened before the deadline",
                tally.opened.load(Ordering::Relaxed),
                a.connections
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let opened = tally.opened.load(Ordering::Relaxed);
    // Let the server settle (buffers allocated, first events written).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let connected = proc_sample(&pids);
    let mut report = json!({
        "scenario": a.scenario.name(),
        "transport": a.transport.name(),
        "sub_url": template,
        "connections": a.connections,
        "channels": a.channels,
        "source_addresses": sources,
        "file_limit": file_limit,
        "opened": opened,
        "failed": tally.failed.load(Ordering::Relaxed),
        "connect_seconds": connect_secs,
        "connects_per_second": opened as f64 / connect_secs.max(1e-9),
        "server_pids": pids,
    });
    if a.transport == Transport::Ws {
        report["ws_subscribe_frame"] = a.ws_frames.name().into();
    }
    if let Some(e) = tally.first_error.lock().clone() {
        report["first_error"] = e.into();
    }
    if let (Some(b), Some(c)) = (before, connected) {
        let per = |x: u64, y: u64| (y as f64 - x as f64) / opened.max(1) as f64;
        report["server_rss_kb_before"] = b.rss_kb.into();
        report["server_rss_kb_connected"] = c.rss_kb.into();
        report["server_rss_kb_per_connection"] = per(b.rss_kb, c.rss_kb).into();
        report["server_kb_per_connection"] = per(b.rss_kb, c.rss_kb).into();
        if let (Some(bp), Some(cp)) = (b.pss_kb, c.pss_kb) {
            report["server_pss_kb_before"] = bp.into();
            report["server_pss_kb_connected"] = cp.into();
            report["server_pss_kb_per_connection"] = per(bp, cp).into();
            report["server_kb_per_connection"] = per(bp, cp).into();
        }
    }
    Ok(Session {
        a,
        pids,
        sh,
        tasks,
        kicks,
        run_id,
        deadline,
        report,
        expected_now,
        progress,
        progress_task,
        opened,
        _stop_all: stop_all,
    })
}

impl Session {
    /// Stops the subscribers and gathers what they saw.
    pub(crate) async fn collect(&mut self) -> Vec<SubStats> {
        self.sh.stop.cancel();
        let mut subs = Vec::with_capacity(self.tasks.len());
        for t in self.tasks.drain(..) {
            subs.push(t.await.unwrap_or_default());
        }
        subs
    }

    /// Stops everything that still runs and returns the report.
    pub(crate) async fn finish(mut self) -> Value {
        self.sh.stop.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        let _ = (&mut self.progress_task).await;
        self.progress.finish();
        std::mem::take(&mut self.report)
    }

    /// Every subscriber expects every message of its channel.
    pub(crate) fn expected_all(&self) -> u64 {
        let a = &self.a;
        (0..a.connections)
            .map(|i| share(a.messages, a.channels, i % a.channels))
            .sum()
    }

    /// Waits until `done`, the deadline, or (once `publishing_done`) no delivery for [`QUIET`].
    pub(crate) async fn wait_deliveries(&self, done: impl Fn() -> bool, publishing_done: impl Fn() -> bool) {
        let tally = &self.sh.tally;
        let mut last = (tally.received.load(Ordering::Relaxed), Instant::now());
        loop {
            let now = Instant::now();
            let got = tally.received.load(Ordering::Relaxed);
            if done() || now > self.deadline || (publishing_done() && now - last.1 > QUIET) {
                return;
            }
            if got != last.0 || !publishing_done() {
                last = (got, now);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The publisher's error, if it stopped early.
    pub(crate) fn publish_failed(&self) -> anyhow::Result<()> {
        match self.sh.publish_error.lock().clone() {
            Some(e) => Err(anyhow!(e)),
            None => Ok(()),
        }
    }
}

/// Deliveries, duplicates, … summed over the subscribers; latencies sorted.
pub(crate) struct Totals {
    pub(crate) received: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
    pub(crate) foreign: u64,
    pub(crate) lost: u64,
    pub(crate) resets: u64,
    pub(crate) lat: Vec<u32>,
}

pub(crate) fn totals(mut subs: Vec<SubStats>) -> Totals {
    let sum = |f: fn(&SubStats) -> u64| subs.iter().map(f).sum::<u64>();
    let received = sum(|s| s.received);
    let mut t = Totals {
        received,
        duplicates: sum(|s| s.duplicates),
        reordered: sum(|s| s.reordered),
        foreign: sum(|s| s.foreign),
        lost: sum(|s| s.lost),
        resets: sum(|s| s.resets),
        lat: Vec::with_capacity(usize::try_from(received).unwrap_or(0)),
    };
    for s in &mut subs {
        t.lat.append(&mut s.latencies_us);
    }
    t.lat.sort_unstable();
    t
}

/// Moves the bar every [`REDRAW`] until `stop`: the connections opened of all,
/// then, once every connection is settled and deliveries are expected, the
/// deliveries of those expected.
fn spawn_progress(
    progress: Progress,
    scenario: &'static str,
    tally: Arc<Tally>,
    connections: u64,
    expected: Arc<AtomicU64>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REDRAW);
        let mut delivering = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
            let (opened, failed, closed) = (
                load(&tally.opened),
                load(&tally.failed),
                load(&tally.closed_early),
            );
            let exp = load(&expected);
            let reconnects = load(&tally.reconnects);
            let reconnects = if reconnects > 0 {
                format!(", reconnects {reconnects}")
            } else {
                String::new()
            };
            if exp > 0 && opened + failed >= connections {
                if !delivering {
                    progress.phase(&format!("{scenario}: delivered"), exp);
                    delivering = true;
                }
                let msg = format!(
                    "(connections {opened}/{connections}, failed {failed}, closed {closed}{reconnects})"
                );
                progress.set(load(&tally.received), exp, msg);
            } else {
                progress.set(
                    opened,
                    connections,
                    format!("connections (failed {failed}, closed {closed}{reconnects})"),
                );
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_share_channels_round_robin() {
        assert_eq!(share(10, 3, 0), 4);
        assert_eq!(share(10, 3, 2), 3);
        assert_eq!((0..3).map(|c| share(10, 3, c)).sum::<u64>(), 10);
    }
}
