//! What the subscribers saw: the run's counters ([`Tally`]), the deliveries over
//! time ([`Timeline`]), and each subscriber's bookkeeping ([`Track`]): duplicates,
//! order, losses, its resume position, whether it caught up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::args::WsFrames;
use crate::conn::Dialer;
use crate::wire::{herald_ws_frame, now_micros, parse_payload, WsPush};

/// The throughput timeline: bucket width and at most this many buckets (an hour).
pub(crate) const BUCKET_MS: u64 = 100;

pub(crate) const MAX_BUCKETS: usize = 36_000;

/// Latency samples one subscriber keeps at most. Past it, every other sample
/// is dropped and from then on only every other message is sampled, so a long
/// run keeps an even sample over its whole length (a run of up to this many
/// messages keeps every one).
pub(crate) const LATENCY_KEEP: usize = 2048;

#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) opened: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) closed_early: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) last_delivery_us: AtomicU64,
    /// Churn and resume: reconnections that succeeded, attempts that failed, and
    /// subscribers that gave up (every attempt failed, or the server closed them).
    pub(crate) reconnects: AtomicU64,
    pub(crate) reconnect_failed: AtomicU64,
    pub(crate) gave_up: AtomicU64,
    /// Resume: connections down for the storm.
    pub(crate) dropped: AtomicU64,
    /// Subscribers caught up. Churn: connected and holding their channel's last
    /// message (or subscribed after it). Resume: reconnected and holding the newest
    /// message published before the reconnect (or a later one).
    pub(crate) caught_up: AtomicU64,
    /// Subscribers that have had their channel's last message (or whose channel gets none).
    pub(crate) finished: AtomicU64,
    pub(crate) first_error: Mutex<Option<String>>,
}

impl Tally {
    pub(crate) fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.note(why);
    }

    pub(crate) fn note(&self, why: String) {
        self.first_error
            .lock()
            .get_or_insert_with(|| crate::report::redact_tokens(&why));
    }
}

/// Deliveries per [`BUCKET_MS`] since the first publish, for the chart.
pub(crate) struct Timeline {
    pub(crate) origin_us: AtomicU64,
    pub(crate) buckets: Vec<AtomicU64>,
}

impl Timeline {
    pub(crate) fn new(deadline: Duration) -> Self {
        let n = usize::try_from(deadline.as_millis() / u128::from(BUCKET_MS))
            .unwrap_or(MAX_BUCKETS)
            .saturating_add(2)
            .min(MAX_BUCKETS);
        Self {
            origin_us: AtomicU64::new(0),
            buckets: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Marks the first publish; returns its time in microseconds.
    pub(crate) fn start(&self) -> u64 {
        let now = now_micros();
        self.origin_us.store(now, Ordering::Relaxed);
        now
    }

    pub(crate) fn add(&self, now_us: u64, n: u64) {
        let origin = self.origin_us.load(Ordering::Relaxed);
        let i = if origin == 0 {
            0
        } else {
            usize::try_from(now_us.saturating_sub(origin) / (BUCKET_MS * 1000)).unwrap_or(usize::MAX)
        };
        if let Some(b) = self.buckets.get(i.min(self.buckets.len().saturating_sub(1))) {
            b.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Seconds from the first publish to `at`.
    pub(crate) fn seconds(&self, at: u64) -> f64 {
        at.saturating_sub(self.origin_us.load(Ordering::Relaxed)) as f64 / 1e6
    }

    /// The counts up to the last non-empty bucket.
    pub(crate) fn series(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        while v.last() == Some(&0) {
            v.pop();
        }
        v
    }
}

/// What the subscribers do besides reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Connect once and read until the end (idle, fanout).
    Plain,
    /// Reconnect afresh when kicked.
    Churn,
    /// Drop at the signal, reconnect with the last position at the next one.
    Resume,
}

/// What every subscriber shares with the run.
pub(crate) struct Shared {
    pub(crate) tally: Arc<Tally>,
    pub(crate) gate: Semaphore,
    pub(crate) stop: CancellationToken,
    pub(crate) dialer: Dialer,
    pub(crate) frames: WsFrames,
    pub(crate) mode: Mode,
    pub(crate) timeline: Timeline,
    /// Churn and resume, per channel: the highest sequence number whose publish started.
    pub(crate) started: Vec<AtomicU64>,
    /// Resume, per channel: `started` when the reconnect signal went out.
    pub(crate) targets: Vec<AtomicU64>,
    /// Publishes answered (churn, resume).
    pub(crate) published: AtomicU64,
    /// Why the background publisher stopped early.
    pub(crate) publish_error: Mutex<Option<String>>,
    /// Resume: the drop signal, then the reconnect signal.
    pub(crate) drop_all: CancellationToken,
    pub(crate) reconnect_all: CancellationToken,
}

impl Shared {
    pub(crate) fn started(&self, channel: u64) -> u64 {
        usize::try_from(channel)
            .ok()
            .and_then(|c| self.started.get(c))
            .map_or(0, |s| s.load(Ordering::SeqCst))
    }
}

/// What one subscriber saw.
#[derive(Default)]
pub(crate) struct SubStats {
    pub(crate) received: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
    pub(crate) foreign: u64,
    /// Churn: messages a connection should have had (published after it subscribed,
    /// before its last receipt or the end) but did not get.
    pub(crate) lost: u64,
    /// Resets (SSE `event: reset`, WebSocket push of type `reset`).
    pub(crate) resets: u64,
    pub(crate) latencies_us: Vec<u32>,
}

pub(crate) struct SubSpec {
    /// The filled subscriber URL (`ws://…` for WebSocket).
    pub(crate) url: String,
    /// The channel's name, for Herald's WebSocket subscribe frame.
    pub(crate) channel_name: String,
    /// This subscriber's channel index.
    pub(crate) channel: u64,
    /// Messages its channel gets: sequence numbers 1..=expect.
    pub(crate) expect: u64,
    /// Which client or source address to use.
    pub(crate) src: usize,
    /// Churn: the signal to drop this connection and open a new one.
    pub(crate) kick: Option<Arc<Notify>>,
}

/// One subscriber's bookkeeping across its connections.
pub(crate) struct Track {
    pub(crate) channel: u64,
    pub(crate) expect: u64,
    /// Churn: every connection starts afresh (duplicates, order and losses are per
    /// connection). Otherwise they count across connections (resume).
    pub(crate) per_connection: bool,
    pub(crate) seen: Vec<u64>,
    pub(crate) max_seq: u64,
    /// Sequence numbers up to this one were published (started) before the current
    /// connection subscribed: not owed to it (churn).
    pub(crate) floor: u64,
    /// The last position (SSE `id:`, WebSocket `cursor`), kept for the resume scenario.
    pub(crate) cursor: Option<String>,
    pub(crate) keep_cursor: bool,
    /// Caught up when connected and `max_seq` (or `floor`) reaches this.
    pub(crate) target: Option<u64>,
    pub(crate) connected: bool,
    pub(crate) marked: bool,
    pub(crate) finished: bool,
    /// Latency is sampled for sequence numbers that are multiples of this.
    pub(crate) lat_every: u64,
    pub(crate) st: SubStats,
}

impl Track {
    pub(crate) fn new(spec: &SubSpec, mode: Mode) -> Self {
        Self {
            channel: spec.channel,
            expect: spec.expect,
            per_connection: mode == Mode::Churn,
            seen: vec![0u64; usize::try_from(spec.expect / 64 + 1).unwrap_or(1)],
            max_seq: 0,
            floor: 0,
            cursor: None,
            keep_cursor: mode == Mode::Resume,
            target: (mode == Mode::Churn).then_some(spec.expect),
            connected: false,
            marked: false,
            finished: false,
            lat_every: 1,
            st: SubStats::default(),
        }
    }

    /// Counts one payload; 1 when it is a new delivery of this subscriber's channel.
    pub(crate) fn payload(&mut self, (seq, channel, t): (u64, u64, u64), now: u64) -> u64 {
        if channel != self.channel || seq == 0 || seq > self.expect {
            self.st.foreign += 1;
            return 0;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        let Some(w) = self.seen.get_mut(word) else {
            self.st.foreign += 1;
            return 0;
        };
        if *w & bit != 0 {
            self.st.duplicates += 1;
            return 0;
        }
        *w |= bit;
        if seq < self.max_seq {
            self.st.reordered += 1;
        }
        self.max_seq = self.max_seq.max(seq);
        if seq % self.lat_every == 0 {
            let lat = &mut self.st.latencies_us;
            lat.push(u32::try_from(now.saturating_sub(t)).unwrap_or(u32::MAX));
            if lat.len() >= LATENCY_KEEP {
                // Keep the samples of multiples of twice the step (in order of
                // arrival, every other one).
                let mut i = 0;
                lat.retain(|_| {
                    i += 1;
                    i % 2 == 0
                });
                self.lat_every *= 2;
            }
        }
        1
    }

    pub(crate) fn set_cursor(&mut self, c: Option<&[u8]>) {
        if !self.keep_cursor {
            return;
        }
        if let Some(text) = c.and_then(|c| std::str::from_utf8(c).ok()) {
            let s = self.cursor.get_or_insert_with(String::new);
            s.clear();
            s.push_str(text);
        }
    }

    /// Reads one Herald or raw WebSocket frame; returns the new deliveries (0 or 1).
    pub(crate) fn ws_frame(&mut self, f: &[u8], frames: WsFrames, now: u64) -> u64 {
        match frames {
            WsFrames::Raw => parse_payload(f).map_or(0, |p| self.payload(p, now)),
            WsFrames::Herald => match herald_ws_frame(f) {
                WsPush::Message(cursor, payload) => {
                    self.set_cursor(cursor);
                    payload.map_or(0, |p| self.payload(p, now))
                }
                WsPush::Reset(cursor) => {
                    self.set_cursor(cursor);
                    self.st.resets += 1;
                    0
                }
                WsPush::Reply(..) | WsPush::Other => 0,
            },
        }
    }

    /// Books `got` new deliveries received at `now`.
    pub(crate) fn delivered(&mut self, sh: &Shared, got: u64, now: u64) {
        if got > 0 {
            self.st.received += got;
            sh.tally.received.fetch_add(got, Ordering::Relaxed);
            sh.tally.last_delivery_us.fetch_max(now, Ordering::Relaxed);
            sh.timeline.add(now, got);
            self.update_mark(sh);
        }
    }

    /// Keeps [`Tally::caught_up`] and [`Tally::finished`] in step with this subscriber.
    pub(crate) fn update_mark(&mut self, sh: &Shared) {
        if !self.finished && self.max_seq >= self.expect {
            self.finished = true;
            sh.tally.finished.fetch_add(1, Ordering::Relaxed);
        }
        let want = self.connected && self.target.is_some_and(|t| self.max_seq >= t || self.floor >= t);
        if want != self.marked {
            if want {
                sh.tally.caught_up.fetch_add(1, Ordering::Relaxed);
            } else {
                sh.tally.caught_up.fetch_sub(1, Ordering::Relaxed);
            }
            self.marked = want;
        }
    }

    /// Before a connection opens.
    pub(crate) fn reset_connection(&mut self) {
        if self.per_connection {
            self.seen.fill(0);
            self.max_seq = 0;
        }
    }

    /// Once it is subscribed.
    pub(crate) fn connected(&mut self, sh: &Shared) {
        self.floor = if self.per_connection {
            sh.started(self.channel)
        } else {
            0
        };
        self.connected = true;
        self.update_mark(sh);
    }

    /// When it is gone. Churn: what it was owed up to `upto` and did not get is lost.
    pub(crate) fn disconnected(&mut self, sh: &Shared, upto: u64) {
        if self.per_connection {
            for seq in self.floor + 1..=upto.min(self.expect) {
                let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
                if self.seen.get(word).is_some_and(|w| w & bit == 0) {
                    self.st.lost += 1;
                }
            }
        }
        self.connected = false;
        self.update_mark(sh);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::conn::Dialer;

    fn shared(mode: Mode, channels: usize) -> Shared {
        Shared {
            tally: Arc::new(Tally::default()),
            gate: Semaphore::new(1),
            stop: CancellationToken::new(),
            dialer: Dialer::Sse(Vec::new()),
            frames: WsFrames::Herald,
            mode,
            timeline: Timeline::new(Duration::from_secs(1)),
            started: (0..channels).map(|_| AtomicU64::new(0)).collect(),
            targets: (0..channels).map(|_| AtomicU64::new(0)).collect(),
            published: AtomicU64::new(0),
            publish_error: Mutex::new(None),
            drop_all: CancellationToken::new(),
            reconnect_all: CancellationToken::new(),
        }
    }

    /// A long run keeps an even sample of latencies within the bound; a short
    /// one keeps every latency.
    #[test]
    fn latencies_are_sampled_evenly_within_a_bound() {
        let spec = |expect| SubSpec {
            url: String::new(),
            channel_name: String::new(),
            channel: 0,
            expect,
            src: 0,
            kick: None,
        };
        let mut short = Track::new(&spec(500), Mode::Plain);
        for seq in 1..=500 {
            short.payload((seq, 0, 0), seq);
        }
        assert_eq!(short.st.latencies_us.len(), 500);
        let n = 100_000u64;
        let mut long = Track::new(&spec(n), Mode::Plain);
        for seq in 1..=n {
            // Latency = seq µs: the samples tell which messages were kept.
            assert_eq!(long.payload((seq, 0, 0), seq), 1);
        }
        let lat = &long.st.latencies_us;
        assert!(
            lat.len() < LATENCY_KEEP && lat.len() >= LATENCY_KEEP / 2,
            "{}",
            lat.len()
        );
        assert_eq!(long.st.received, 0, "payload() only reads; delivered() counts");
        let step = long.lat_every as u32;
        assert!(lat.iter().all(|&l| l % step == 0), "multiples of the step");
        assert_eq!(lat.first(), Some(&step));
        assert!(*lat.last().unwrap() > (n as u32) - step, "up to the end");
        assert!(lat.windows(2).all(|w| w[1] - w[0] == step), "evenly spaced");
    }

    #[test]
    fn churned_connections_owe_what_was_published_while_subscribed() {
        let sh = shared(Mode::Churn, 1);
        let spec = SubSpec {
            url: String::new(),
            channel_name: String::new(),
            channel: 0,
            expect: 10,
            src: 0,
            kick: None,
        };
        let mut t = Track::new(&spec, Mode::Churn);
        // First connection: subscribed before anything; gets 1, 2, 4 (3 is missing).
        t.reset_connection();
        t.connected(&sh);
        for seq in [1, 2, 4] {
            let got = t.payload((seq, 0, now_micros()), now_micros());
            t.delivered(&sh, got, now_micros());
        }
        t.disconnected(&sh, t.max_seq);
        assert_eq!(t.st.lost, 1);
        // Second connection subscribes once 6 was published: 5 and 6 are not owed;
        // it gets 6 (old news, fine), 7, 8 and 10; 9 is lost at the end.
        sh.started[0].store(6, Ordering::SeqCst);
        t.reset_connection();
        t.connected(&sh);
        for seq in [6, 7, 8, 10] {
            let got = t.payload((seq, 0, now_micros()), now_micros());
            t.delivered(&sh, got, now_micros());
        }
        assert_eq!(sh.tally.caught_up.load(Ordering::Relaxed), 1);
        sh.started[0].store(10, Ordering::SeqCst);
        t.disconnected(&sh, sh.started(0));
        assert_eq!(t.st.lost, 2);
        assert_eq!((t.st.received, t.st.duplicates, t.st.reordered), (7, 0, 0));
        assert_eq!(sh.tally.caught_up.load(Ordering::Relaxed), 0);
        assert_eq!(sh.tally.received.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn the_timeline_buckets_deliveries_from_the_first_publish() {
        let tl = Timeline::new(Duration::from_secs(1));
        assert_eq!(tl.buckets.len(), 12);
        tl.add(5, 3); // before the first publish: bucket 0
        let t0 = tl.start();
        tl.add(t0 + 50_000, 1);
        tl.add(t0 + 250_000, 2);
        tl.add(t0 + 60_000_000, 4); // past the end: the last bucket
        let s = tl.series();
        assert_eq!(s.len(), 12);
        assert_eq!((s[0], s[2], s[11]), (4, 2, 4));
    }
}
