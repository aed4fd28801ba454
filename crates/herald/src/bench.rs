//! `herald bench`: a load generator for Herald and for any other SSE or WebSocket server.
//!
//! The server is named by URL templates, so the same tool measures the peers
//! (Nchan, the floor program in `crates/herald-floor`):
//! `--sub-url` is the subscriber's EventSource (or WebSocket) URL and `--pub-url` the
//! publish endpoint, with the placeholders `{url}`, `{app}`, `{channel}` and `{token}`.
//! Publishes are either Herald's JSON body (`--pub-format herald`, with the app key
//! as bearer) or the payload itself as the body (`--pub-format raw`, as Nchan wants).
//!
//! Every payload carries its own per-channel sequence number, channel index and
//! send time (`{"seq":N,"c":K,"t":MICROS,"p":"xxx…"}`), and subscribers read
//! them back from whatever the server delivers in the SSE `data:` line (Herald
//! wraps the payload in its envelope's `data`; Nchan and the floor deliver it as
//! is). One parser serves every server.
//!
//! Subscribers speak SSE (`--transport sse`, the default) or WebSocket
//! (`--transport ws`). Over WebSocket, by default, each connection opens Herald's
//! `{url}/v1/apps/{app}/ws?token={token}`, sends `{"id":1,"op":"subscribe","channel":…}`
//! and reads the payload from the `data` of pushes of type `message`; with
//! `--ws-subscribe-frame none` (and a `--sub-url` naming the channel) it sends nothing
//! and every text frame is the payload itself (Nchan's WebSocket subscriber).
//!
//! Scenarios:
//! - `idle`: open N subscriber connections and report the server's memory per
//!   connection (from /proc of every `--server-pid`, summed; PSS where the kernel
//!   has smaps_rollup, so that memory shared between a master and its workers
//!   counts once) and the connect rate.
//! - `fanout`: N subscribers of one channel (or spread over K channels), M messages
//!   published as fast as one publisher can (or at `--rate`); reports deliveries,
//!   losses, duplicates, reordering, publish-to-receipt latency percentiles, the
//!   server's CPU time per delivered message (from /proc/PID/stat) and the
//!   generator's own CPU time separately.
//! - `publish`: M messages over K channels with no subscribers, from
//!   `--concurrency` publishers: the publish endpoint's throughput.
//! - `churn`: N subscribers over K channels; while M messages are published at
//!   `--rate`, `--churn-rate` connections per second (default a tenth of N) are
//!   dropped and replaced by a fresh connection (a new subscription, no resume).
//!   Reports the reconnect rate achieved, failures, deliveries, the messages a
//!   connection missed while it was subscribed, latency, and the server's CPU and
//!   memory (PSS at the start, with N connected, and at the end).
//! - `resume`: N subscribers over K channels; M messages published at `--rate`;
//!   after a third of them every connection is dropped at once, and after two thirds
//!   all reconnect at once resuming from their last position (SSE `Last-Event-ID`,
//!   Herald WebSocket subscribe `cursor`). Reports the time until all are back and
//!   caught up, losses, duplicates, reordering and the server's CPU in the storm.
//!
//! `--svg PATH` draws the latency distribution and the deliveries per 100 ms of a
//! run that delivers messages (fanout, churn, resume).
//!
//! Subscriber connections are spread over the source addresses 127.0.0.2…
//! 127.0.0.254 when the target is an IPv4 loopback address (so more than the
//! ~28 000 ephemeral ports of one source address are usable), and the process
//! raises its own soft file limit to the hard limit first.
//!
//! Every run is bounded: connections, messages, reconnections and a deadline.

pub mod classroom;
mod svg;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

/// Herald's SSE endpoint: the default `--sub-url`.
pub const HERALD_SUB_URL: &str = "{url}/v1/apps/{app}/events?channel={channel}&token={token}";
/// Herald's WebSocket endpoint: the default `--sub-url` with `--transport ws`.
pub const HERALD_WS_URL: &str = "{url}/v1/apps/{app}/ws?token={token}";
/// Herald's publish endpoint: the default `--pub-url` with `--pub-format herald`.
pub const HERALD_PUB_URL: &str = "{url}/v1/apps/{app}/publish";
/// Nchan's publish endpoint: the default `--pub-url` with `--pub-format raw`.
pub const RAW_PUB_URL: &str = "{url}/pub?id={channel}";

/// At most this many subscriber connections in one run.
const MAX_CONNECTIONS: usize = 100_000;
/// After the last publish, stop waiting when nothing arrived for this long.
const QUIET: Duration = Duration::from_secs(5);
/// A WebSocket connection (TCP connect, handshake, subscribe reply) gives up after this.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The read buffer of a WebSocket subscriber (tungstenite's default is 128 KiB).
const WS_READ_BUFFER: usize = 4096;
/// Churn and resume: attempts per reconnection, and the pause between two.
const RECONNECT_ATTEMPTS: u32 = 3;
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// The throughput timeline: bucket width and at most this many buckets (an hour).
const BUCKET_MS: u64 = 100;
const MAX_BUCKETS: usize = 36_000;
/// At most this many reconnections per second in the churn scenario.
const MAX_CHURN_RATE: f64 = 1_000_000.0;

/// How a publish request carries the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PubFormat {
    /// Herald's API: `{"channel": …, "data": PAYLOAD}` as JSON, the app key as bearer.
    Herald,
    /// The payload itself is the body (Nchan's `POST /pub?id=CHANNEL`, the floor).
    Raw,
}

/// How subscribers connect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// Server-Sent Events: a `GET` answered with `text/event-stream`.
    #[default]
    Sse,
    /// WebSocket (see [`WsFrames`]).
    Ws,
}

impl Transport {
    /// `sse` or `ws`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sse => "sse",
            Self::Ws => "ws",
        }
    }
}

impl FromStr for Transport {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "sse" => Ok(Self::Sse),
            "ws" | "websocket" => Ok(Self::Ws),
            _ => bail!("unknown transport {s:?}: use sse or ws"),
        }
    }
}

/// What a WebSocket subscriber sends and how it reads what arrives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WsFrames {
    /// Herald's protocol: one `subscribe` frame per connection (with the `cursor` when
    /// resuming); the payload is the `data` of pushes of type `message`.
    #[default]
    Herald,
    /// No subscribe frame (the URL names the channel) and every text frame is the
    /// payload itself, as Nchan's WebSocket subscriber sends it. No resume.
    Raw,
}

impl WsFrames {
    /// `herald` or `none` (the `--ws-subscribe-frame` values).
    pub fn name(self) -> &'static str {
        match self {
            Self::Herald => "herald",
            Self::Raw => "none",
        }
    }
}

impl FromStr for WsFrames {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "herald" => Ok(Self::Herald),
            "none" | "raw" => Ok(Self::Raw),
            _ => bail!("unknown --ws-subscribe-frame {s:?}: use herald or none"),
        }
    }
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchArgs {
    /// `idle`, `fanout`, `publish`, `churn` or `resume`.
    pub scenario: String,
    /// The server's base URL (`{url}` in the templates).
    pub url: String,
    /// The app (`{app}` in the templates).
    pub app: String,
    /// A client token allowed to subscribe to the bench channels (`{token}`).
    pub token: String,
    /// The app key, sent as bearer with every publish when given.
    pub key: Option<String>,
    /// Subscriber URL template (default [`HERALD_SUB_URL`], or [`HERALD_WS_URL`]
    /// with the WebSocket transport).
    pub sub_url: Option<String>,
    /// Publish URL template (default [`HERALD_PUB_URL`] or [`RAW_PUB_URL`] by
    /// format). A bare base URL (no placeholder, no path) with the Herald format
    /// means Herald's publish endpoint there, e.g. another node of a cluster.
    pub pub_url: Option<String>,
    /// How publishes carry the message.
    pub pub_format: PubFormat,
    /// Extra headers sent with every publish.
    pub headers: Vec<(String, String)>,
    /// Concurrent publishers (`publish` scenario).
    pub concurrency: usize,
    /// Subscriber connections.
    pub connections: usize,
    /// At most this many connection attempts in flight at once.
    pub connect_concurrency: usize,
    /// Channels the subscribers are spread over (fanout).
    pub channels: usize,
    /// Messages to publish (fanout).
    pub messages: usize,
    /// Payload size in bytes.
    pub size: usize,
    /// Messages per second (0: as fast as possible).
    pub rate: u64,
    /// The server's process ids: their CPU time and memory are summed.
    pub server_pids: Vec<u32>,
    /// Also every process whose command name (/proc/PID/comm) is this, e.g. `nginx`.
    pub server_pids_of: Option<String>,
    /// Spread subscriber connections over this many source addresses
    /// 127.0.0.2… (at most 253; 0: let the system choose). Only for IPv4
    /// loopback targets.
    pub source_addresses: usize,
    /// Print progress lines to stderr on runs longer than a few seconds.
    pub progress: bool,
    /// Give up after this long.
    pub deadline: Duration,
    /// `idle`: keep the connections open this long after measuring (several
    /// generators then hold theirs at the same time).
    pub hold: Duration,
    /// How subscribers connect.
    pub transport: Transport,
    /// WebSocket subscribers: Herald's subscribe frames, or none (raw payload frames).
    pub ws_frames: WsFrames,
    /// Churn: connections replaced per second (default: a tenth of `connections`).
    pub churn_rate: Option<f64>,
    /// Write an SVG chart (latency distribution, throughput over time) here.
    pub svg: Option<PathBuf>,
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            scenario: "fanout".into(),
            url: "http://127.0.0.1:8080".into(),
            app: "demo".into(),
            token: String::new(),
            key: None,
            sub_url: None,
            pub_url: None,
            pub_format: PubFormat::Herald,
            headers: Vec::new(),
            concurrency: 16,
            connections: 1000,
            connect_concurrency: 500,
            channels: 1,
            messages: 100,
            size: 100,
            rate: 0,
            server_pids: Vec::new(),
            server_pids_of: None,
            source_addresses: 253,
            progress: true,
            deadline: Duration::from_secs(120),
            hold: Duration::ZERO,
            transport: Transport::Sse,
            ws_frames: WsFrames::Herald,
            churn_rate: None,
            svg: None,
        }
    }
}

// ---------------------------------------------------------------------------
// /proc

/// CPU time and memory of a set of processes, summed.
#[derive(Clone, Copy, Debug)]
struct ProcSample {
    cpu_seconds: f64,
    rss_kb: u64,
    pss_kb: Option<u64>,
}

fn status_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn proc_one(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status_kb(&status, "VmRSS:")?;
    let pss_kb = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| status_kb(&s, "Pss:"));
    // USER_HZ is 100 on Linux.
    Some(ProcSample {
        cpu_seconds: ticks as f64 / 100.0,
        rss_kb,
        pss_kb,
    })
}

/// The sum over `pids`; `None` when there are none or one cannot be read.
fn proc_sample(pids: &[u32]) -> Option<ProcSample> {
    if pids.is_empty() {
        return None;
    }
    let mut sum = ProcSample {
        cpu_seconds: 0.0,
        rss_kb: 0,
        pss_kb: Some(0),
    };
    for pid in pids {
        let s = proc_one(&pid.to_string())?;
        sum.cpu_seconds += s.cpu_seconds;
        sum.rss_kb += s.rss_kb;
        sum.pss_kb = sum.pss_kb.zip(s.pss_kb).map(|(a, b)| a + b);
    }
    Some(sum)
}

fn own_cpu_seconds() -> Option<f64> {
    proc_one("self").map(|s| s.cpu_seconds)
}

/// Every process whose command name (`/proc/PID/comm`) is `name`.
pub fn pids_of(name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Raises this process's soft limit on open files to its hard limit and
/// returns the soft limit in force.
pub fn raise_file_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
        .unwrap_or(1024)
}

// ---------------------------------------------------------------------------
// Payloads and templates

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `{"seq":SEQ,"c":CHANNEL,"t":MICROS,"p":"xxx…"}`, padded to about `size` bytes.
fn payload(seq: u64, channel: usize, size: usize) -> String {
    let mut s = format!("{{\"seq\":{seq},\"c\":{channel},\"t\":{},\"p\":\"", now_micros());
    let pad = size.saturating_sub(s.len() + 2).max(1);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}");
    s
}

fn fill(template: &str, a: &BenchArgs, channel: &str) -> String {
    template
        .replace("{url}", &a.url)
        .replace("{app}", &a.app)
        .replace("{channel}", channel)
        .replace("{token}", &a.token)
}

fn sub_template(a: &BenchArgs) -> &str {
    match (&a.sub_url, a.transport) {
        (Some(t), _) => t,
        (None, Transport::Sse) => HERALD_SUB_URL,
        (None, Transport::Ws) => HERALD_WS_URL,
    }
}

/// A filled WebSocket URL: `http://` becomes `ws://`.
fn ws_url(filled: &str) -> anyhow::Result<String> {
    if let Some(rest) = filled.strip_prefix("http://") {
        return Ok(format!("ws://{rest}"));
    }
    if filled.starts_with("ws://") {
        return Ok(filled.to_owned());
    }
    bail!("the WebSocket URL {filled:?} must start with ws:// or http:// (the bench has no TLS)")
}

fn pub_template(a: &BenchArgs) -> String {
    match (&a.pub_url, a.pub_format) {
        (Some(t), PubFormat::Herald) if !t.contains('{') => {
            // A bare base URL (the cluster runs' `--pub-url http://node-b`).
            let bare = reqwest::Url::parse(t).is_ok_and(|u| u.path() == "/" && u.query().is_none());
            if bare {
                format!("{}/v1/apps/{{app}}/publish", t.trim_end_matches('/'))
            } else {
                t.clone()
            }
        }
        (Some(t), _) => t.clone(),
        (None, PubFormat::Herald) => HERALD_PUB_URL.into(),
        (None, PubFormat::Raw) => RAW_PUB_URL.into(),
    }
}

fn channel_name(run_id: &str, c: usize) -> String {
    format!("bench:{run_id}:{c}")
}

/// Sends publishes in the configured format.
#[derive(Clone)]
struct Publisher {
    client: reqwest::Client,
    template: Arc<str>,
    args: Arc<BenchArgs>,
}

impl Publisher {
    fn new(a: &Arc<BenchArgs>) -> anyhow::Result<Self> {
        if a.pub_format == PubFormat::Herald && a.key.is_none() {
            bail!("publishing to Herald needs --key (the app key)");
        }
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            client,
            template: pub_template(a).into(),
            args: a.clone(),
        })
    }

    async fn send(&self, channel: &str, payload: String) -> anyhow::Result<()> {
        let a = &*self.args;
        let url = fill(&self.template, a, channel);
        let mut req = self.client.post(&url);
        req = match a.pub_format {
            PubFormat::Herald => {
                let channel = serde_json::to_string(channel)?;
                req.header("content-type", "application/json")
                    .body(format!("{{\"channel\":{channel},\"data\":{payload}}}"))
            }
            PubFormat::Raw => req.body(payload),
        };
        if let Some(key) = &a.key {
            req = req.bearer_auth(key);
        }
        for (name, value) in &a.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("publish to {url} failed"))?;
        if !res.status().is_success() {
            let status = res.status();
            let body = res.text().await.unwrap_or_default();
            bail!(
                "publish to {url} answered {status}: {}",
                body.chars().take(300).collect::<String>()
            );
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Subscribers

#[derive(Default)]
struct Tally {
    opened: AtomicU64,
    failed: AtomicU64,
    closed_early: AtomicU64,
    received: AtomicU64,
    last_delivery_us: AtomicU64,
    /// Churn and resume: reconnections that succeeded, attempts that failed, and
    /// subscribers that gave up (every attempt failed, or the server closed them).
    reconnects: AtomicU64,
    reconnect_failed: AtomicU64,
    gave_up: AtomicU64,
    /// Resume: connections down for the storm.
    dropped: AtomicU64,
    /// Subscribers caught up. Churn: connected and holding their channel's last
    /// message (or subscribed after it). Resume: reconnected and holding the newest
    /// message published before the reconnect (or a later one).
    caught_up: AtomicU64,
    /// Subscribers that have had their channel's last message (or whose channel gets none).
    finished: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.note(why);
    }

    fn note(&self, why: String) {
        self.first_error.lock().get_or_insert(why);
    }
}

/// Deliveries per [`BUCKET_MS`] since the first publish, for the chart.
struct Timeline {
    origin_us: AtomicU64,
    buckets: Vec<AtomicU64>,
}

impl Timeline {
    fn new(deadline: Duration) -> Self {
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
    fn start(&self) -> u64 {
        let now = now_micros();
        self.origin_us.store(now, Ordering::Relaxed);
        now
    }

    fn add(&self, now_us: u64, n: u64) {
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
    fn seconds(&self, at: u64) -> f64 {
        at.saturating_sub(self.origin_us.load(Ordering::Relaxed)) as f64 / 1e6
    }

    /// The counts up to the last non-empty bucket.
    fn series(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        while v.last() == Some(&0) {
            v.pop();
        }
        v
    }
}

/// What the subscribers do besides reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Connect once and read until the end (idle, fanout).
    Plain,
    /// Reconnect afresh when kicked.
    Churn,
    /// Drop at the signal, reconnect with the last position at the next one.
    Resume,
}

/// How subscriber connections are made: one HTTP client per source address, or the
/// WebSocket target and the source addresses to bind.
enum Dialer {
    Sse(Vec<reqwest::Client>),
    Ws {
        target: SocketAddr,
        sources: Vec<Option<IpAddr>>,
    },
}

impl Dialer {
    fn sources(&self) -> usize {
        match self {
            Self::Sse(clients) => clients.len(),
            Self::Ws { sources, .. } => sources.len(),
        }
    }
}

/// What every subscriber shares with the run.
struct Shared {
    tally: Arc<Tally>,
    gate: Semaphore,
    stop: CancellationToken,
    dialer: Dialer,
    frames: WsFrames,
    mode: Mode,
    timeline: Timeline,
    /// Churn and resume, per channel: the highest sequence number whose publish started.
    started: Vec<AtomicU64>,
    /// Resume, per channel: `started` when the reconnect signal went out.
    targets: Vec<AtomicU64>,
    /// Publishes answered (churn, resume).
    published: AtomicU64,
    /// Why the background publisher stopped early.
    publish_error: Mutex<Option<String>>,
    /// Resume: the drop signal, then the reconnect signal.
    drop_all: CancellationToken,
    reconnect_all: CancellationToken,
}

impl Shared {
    fn started(&self, channel: u64) -> u64 {
        usize::try_from(channel)
            .ok()
            .and_then(|c| self.started.get(c))
            .map_or(0, |s| s.load(Ordering::SeqCst))
    }
}

/// What one subscriber saw.
#[derive(Default)]
struct SubStats {
    received: u64,
    duplicates: u64,
    reordered: u64,
    foreign: u64,
    /// Churn: messages a connection should have had (published after it subscribed,
    /// before its last receipt or the end) but did not get.
    lost: u64,
    /// Resets (SSE `event: reset`, WebSocket push of type `reset`).
    resets: u64,
    latencies_us: Vec<u32>,
}

struct SubSpec {
    /// The filled subscriber URL (`ws://…` for WebSocket).
    url: String,
    /// The channel's name, for Herald's WebSocket subscribe frame.
    channel_name: String,
    /// This subscriber's channel index.
    channel: u64,
    /// Messages its channel gets: sequence numbers 1..=expect.
    expect: u64,
    /// Which client or source address to use.
    src: usize,
    /// Churn: the signal to drop this connection and open a new one.
    kick: Option<Arc<Notify>>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn number_after(hay: &[u8], name: &[u8]) -> Option<u64> {
    let i = find(hay, name)? + name.len();
    let digits = hay.get(i..)?.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(hay.get(i..i + digits)?).ok()?.parse().ok()
}

/// The first JSON string value after `key` (which ends with the opening quote).
/// Enough for the cursors, which have no escapes.
fn string_after<'a>(hay: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let rest = hay.get(find(hay, key)? + key.len()..)?;
    rest.get(..rest.iter().position(|&b| b == b'"')?)
}

/// `(seq, channel, sent_us)` from text that starts with (or wraps) a bench payload.
fn parse_payload(data: &[u8]) -> Option<(u64, u64, u64)> {
    let seq = number_after(data, b"\"seq\":")?;
    let channel = number_after(data, b"\"c\":")?;
    let t = number_after(data, b"\"t\":")?;
    Some((seq, channel, t))
}

/// Reads one SSE block; `Some((seq, channel, sent_us))` when it carries a bench payload.
fn parse_block(block: &[u8]) -> Option<(u64, u64, u64)> {
    parse_payload(block.get(find(block, b"data:")?..)?)
}

/// The value of the last `name` field (e.g. `id:`) of an SSE block.
fn sse_field<'a>(block: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    block.rsplit(|&b| b == b'\n').find_map(|line| {
        let v = line.strip_prefix(name)?;
        Some(v.strip_prefix(b" ").unwrap_or(v))
    })
}

/// One Herald WebSocket frame, as far as the bench cares.
#[derive(Debug, PartialEq, Eq)]
enum WsPush<'a> {
    /// A push of type `message`: its cursor and its payload, when it is a bench payload.
    Message(Option<&'a [u8]>, Option<(u64, u64, u64)>),
    /// A push of type `reset`, with its cursor.
    Reset(Option<&'a [u8]>),
    /// A reply: ok (with the subscribe's cursor) or not.
    Reply(bool, Option<&'a [u8]>),
    Other,
}

fn herald_ws_frame(f: &[u8]) -> WsPush<'_> {
    let cursor = || string_after(f, b"\"cursor\":\"");
    if f.starts_with(b"{\"id\":") || f.starts_with(b"{\"error\":") {
        let ok = f.starts_with(b"{\"id\":") && find(f, b"\"ok\":").is_some();
        return WsPush::Reply(ok, cursor());
    }
    if find(f, b"\"type\":\"message\"").is_some() {
        let payload = find(f, b"\"data\":").and_then(|i| parse_payload(f.get(i..)?));
        return WsPush::Message(cursor(), payload);
    }
    if find(f, b"\"type\":\"reset\"").is_some() {
        return WsPush::Reset(cursor());
    }
    WsPush::Other
}

/// One subscriber's bookkeeping across its connections.
struct Track {
    channel: u64,
    expect: u64,
    /// Churn: every connection starts afresh (duplicates, order and losses are per
    /// connection). Otherwise they count across connections (resume).
    per_connection: bool,
    seen: Vec<u64>,
    max_seq: u64,
    /// Sequence numbers up to this one were published (started) before the current
    /// connection subscribed: not owed to it (churn).
    floor: u64,
    /// The last position (SSE `id:`, WebSocket `cursor`), kept for the resume scenario.
    cursor: Option<String>,
    keep_cursor: bool,
    /// Caught up when connected and `max_seq` (or `floor`) reaches this.
    target: Option<u64>,
    connected: bool,
    marked: bool,
    finished: bool,
    st: SubStats,
}

impl Track {
    fn new(spec: &SubSpec, mode: Mode) -> Self {
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
            st: SubStats::default(),
        }
    }

    /// Counts one payload; 1 when it is a new delivery of this subscriber's channel.
    fn payload(&mut self, (seq, channel, t): (u64, u64, u64), now: u64) -> u64 {
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
        self.st
            .latencies_us
            .push(u32::try_from(now.saturating_sub(t)).unwrap_or(u32::MAX));
        1
    }

    fn set_cursor(&mut self, c: Option<&[u8]>) {
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
    fn ws_frame(&mut self, f: &[u8], frames: WsFrames, now: u64) -> u64 {
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
    fn delivered(&mut self, sh: &Shared, got: u64, now: u64) {
        if got > 0 {
            self.st.received += got;
            sh.tally.received.fetch_add(got, Ordering::Relaxed);
            sh.tally.last_delivery_us.fetch_max(now, Ordering::Relaxed);
            sh.timeline.add(now, got);
            self.update_mark(sh);
        }
    }

    /// Keeps [`Tally::caught_up`] and [`Tally::finished`] in step with this subscriber.
    fn update_mark(&mut self, sh: &Shared) {
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
    fn reset_connection(&mut self) {
        if self.per_connection {
            self.seen.fill(0);
            self.max_seq = 0;
        }
    }

    /// Once it is subscribed.
    fn connected(&mut self, sh: &Shared) {
        self.floor = if self.per_connection {
            sh.started(self.channel)
        } else {
            0
        };
        self.connected = true;
        self.update_mark(sh);
    }

    /// When it is gone. Churn: what it was owed up to `upto` and did not get is lost.
    fn disconnected(&mut self, sh: &Shared, upto: u64) {
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

type WsStream = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// One open subscriber connection.
enum Conn {
    Sse { res: reqwest::Response, buf: Vec<u8> },
    Ws(Box<WsStream>),
}

impl Conn {
    /// Waits for input and books what it carries; false when the connection ended.
    async fn pump(&mut self, track: &mut Track, sh: &Shared) -> bool {
        match self {
            Self::Sse { res, buf } => {
                let Ok(Some(chunk)) = res.chunk().await else {
                    return false;
                };
                buf.extend_from_slice(&chunk);
                let now = now_micros();
                let mut start = 0;
                let mut got = 0u64;
                while let Some(end) = find(&buf[start..], b"\n\n") {
                    let block = &buf[start..start + end];
                    start += end + 2;
                    if track.keep_cursor {
                        track.set_cursor(sse_field(block, b"id:"));
                    }
                    match parse_block(block) {
                        Some(p) => got += track.payload(p, now),
                        None => {
                            if find(block, b"event: reset").is_some() {
                                track.st.resets += 1;
                            }
                        }
                    }
                }
                buf.drain(..start);
                track.delivered(sh, got, now);
                true
            }
            Self::Ws(ws) => {
                let Some(Ok(msg)) = ws.next().await else {
                    return false;
                };
                let frame: &[u8] = match &msg {
                    Message::Text(t) => t.as_bytes(),
                    Message::Binary(b) => b,
                    Message::Close(_) => return false,
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return true,
                };
                let now = now_micros();
                let got = track.ws_frame(frame, sh.frames, now);
                track.delivered(sh, got, now);
                true
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut why = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        why = format!("{why}: {s}");
        src = s.source();
    }
    why
}

/// A TCP connection from `source` (when given), then the WebSocket handshake.
async fn ws_connect(target: SocketAddr, source: Option<IpAddr>, url: &str) -> Result<WsStream, String> {
    let socket = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| format!("cannot create a socket: {e}"))?;
    // Churned connections leave TIME_WAIT sockets behind on this side.
    let _ = socket.set_reuseaddr(true);
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("cannot bind {ip}: {e}"))?;
    }
    let stream = match tokio::time::timeout(OPEN_TIMEOUT, socket.connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect to {target}: {e}")),
        Err(_) => return Err(format!("connect to {target} timed out")),
    };
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20));
    let handshake = tokio_tungstenite::client_async_with_config(url, stream, Some(config));
    match tokio::time::timeout(OPEN_TIMEOUT, handshake).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(res))) => Err(format!("subscribe answered {}", res.status())),
        Ok(Err(e)) => Err(format!("WebSocket handshake with {url}: {e}")),
        Err(_) => Err(format!("WebSocket handshake with {url} timed out")),
    }
}

/// Sends Herald's subscribe frame (with the cursor when resuming) and waits for its reply.
async fn herald_subscribe(
    ws: &mut WsStream,
    spec: &SubSpec,
    sh: &Shared,
    track: &mut Track,
) -> Result<(), String> {
    let mut frame = json!({"id": 1, "op": "subscribe", "channel": spec.channel_name});
    if let Some(c) = &track.cursor {
        frame["cursor"] = c.as_str().into();
    }
    ws.send(Message::text(frame.to_string()))
        .await
        .map_err(|e| format!("cannot send the subscribe frame: {e}"))?;
    let until = tokio::time::Instant::now() + OPEN_TIMEOUT;
    loop {
        let msg = match tokio::time::timeout_at(until, ws.next()).await {
            Err(_) => return Err("no reply to the subscribe frame".into()),
            Ok(None) => return Err("the connection ended before the subscribe reply".into()),
            Ok(Some(Err(e))) => return Err(format!("before the subscribe reply: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(c) => {
                return Err(format!(
                    "closed before the subscribe reply: {}",
                    c.map_or_else(String::new, |c| format!("{} {}", c.code, c.reason))
                ))
            }
            _ => continue,
        };
        let f = text.as_bytes();
        if let WsPush::Reply(ok, cursor) = herald_ws_frame(f) {
            if ok {
                track.set_cursor(cursor);
                return Ok(());
            }
            return Err(format!(
                "subscribe refused: {}",
                text.chars().take(300).collect::<String>()
            ));
        }
        let now = now_micros();
        let got = track.ws_frame(f, WsFrames::Herald, now);
        track.delivered(sh, got, now);
    }
}

/// Opens and subscribes one connection (resuming from the track's cursor, if any).
async fn open(spec: &SubSpec, sh: &Shared, track: &mut Track) -> Result<Conn, String> {
    match &sh.dialer {
        Dialer::Sse(clients) => {
            let client = clients.get(spec.src).ok_or("no HTTP client")?;
            let mut req = client.get(&spec.url).header("accept", "text/event-stream");
            if let Some(c) = &track.cursor {
                req = req.header("last-event-id", c.as_str());
            }
            match req.send().await {
                Ok(r) if r.status() == 200 => Ok(Conn::Sse {
                    res: r,
                    buf: Vec::with_capacity(512),
                }),
                Ok(r) => Err(format!("subscribe answered {}", r.status())),
                Err(e) => Err(error_chain(&e)),
            }
        }
        Dialer::Ws { target, sources } => {
            let source = sources.get(spec.src).copied().flatten();
            let mut ws = ws_connect(*target, source, &spec.url).await?;
            if sh.frames == WsFrames::Herald {
                herald_subscribe(&mut ws, spec, sh, track).await?;
            }
            Ok(Conn::Ws(Box::new(ws)))
        }
    }
}

/// Opens a connection behind the gate. `Err(None)`: the run stopped first.
async fn connect(spec: &SubSpec, sh: &Shared, track: &mut Track) -> Result<Conn, Option<String>> {
    let permit = tokio::select! {
        _ = sh.stop.cancelled() => return Err(None),
        p = sh.gate.acquire() => p,
    };
    track.reset_connection();
    let opened = tokio::select! {
        _ = sh.stop.cancelled() => return Err(None),
        // Boxed: the handshake's state lives only while connecting.
        r = Box::pin(open(spec, sh, track)) => r,
    };
    drop(permit);
    let conn = opened.map_err(Some)?;
    track.connected(sh);
    Ok(conn)
}

/// Up to [`RECONNECT_ATTEMPTS`] attempts; `None` when all failed or the run stopped.
async fn reconnect(spec: &SubSpec, sh: &Shared, track: &mut Track) -> Option<Conn> {
    for attempt in 0..RECONNECT_ATTEMPTS {
        if attempt > 0 {
            tokio::select! {
                _ = sh.stop.cancelled() => return None,
                _ = tokio::time::sleep(RECONNECT_BACKOFF) => {}
            }
        }
        match connect(spec, sh, track).await {
            Ok(c) => {
                sh.tally.reconnects.fetch_add(1, Ordering::Relaxed);
                return Some(c);
            }
            Err(None) => return None,
            Err(Some(why)) => {
                sh.tally.reconnect_failed.fetch_add(1, Ordering::Relaxed);
                sh.tally.note(format!("reconnect: {why}"));
            }
        }
    }
    sh.tally.gave_up.fetch_add(1, Ordering::Relaxed);
    None
}

enum End {
    Stopped,
    Closed,
    Interrupted,
}

/// Reads until the run stops, the connection ends or `interrupt` fires.
async fn read_until(
    conn: &mut Conn,
    track: &mut Track,
    sh: &Shared,
    interrupt: impl Future<Output = ()>,
) -> End {
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
            _ = sh.stop.cancelled() => return End::Stopped,
            _ = &mut interrupt => return End::Interrupted,
            open = conn.pump(track, sh) => if !open {
                return End::Closed;
            },
        }
    }
}

async fn subscriber(spec: SubSpec, sh: Arc<Shared>) -> SubStats {
    let mut track = Track::new(&spec, sh.mode);
    let conn = match connect(&spec, &sh, &mut track).await {
        Ok(c) => c,
        Err(None) => return track.st,
        Err(Some(why)) => {
            sh.tally.fail(why);
            return track.st;
        }
    };
    sh.tally.opened.fetch_add(1, Ordering::Relaxed);
    match sh.mode {
        Mode::Plain => {
            let mut conn = conn;
            if let End::Closed = read_until(&mut conn, &mut track, &sh, std::future::pending()).await {
                sh.tally.closed_early.fetch_add(1, Ordering::Relaxed);
            }
        }
        Mode::Churn => churn_subscriber(conn, &spec, &sh, &mut track).await,
        Mode::Resume => resume_subscriber(conn, &spec, &sh, &mut track).await,
    }
    track.st
}

/// Reads; at each kick drops the connection and opens a fresh one. The kicks are
/// bounded by the run, each reconnection by [`RECONNECT_ATTEMPTS`].
async fn churn_subscriber(mut conn: Conn, spec: &SubSpec, sh: &Shared, track: &mut Track) {
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

/// Reads until the drop signal, drops the connection, waits for the reconnect
/// signal, then reconnects from its last position and reads to the end.
async fn resume_subscriber(mut conn: Conn, spec: &SubSpec, sh: &Shared, track: &mut Track) {
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

/// The source addresses 127.0.0.2… for an IPv4 loopback target, else one unbound.
fn source_ips(a: &BenchArgs, url: &str) -> Vec<Option<IpAddr>> {
    let loopback_v4 = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str()?.parse::<Ipv4Addr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    let n = if loopback_v4 {
        a.source_addresses.min(253)
    } else {
        0
    };
    if n == 0 {
        return vec![None];
    }
    (0..n)
        .map(|i| Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8))))
        .collect()
}

/// One HTTP client per source address (SSE), or the WebSocket target.
async fn dialer(a: &BenchArgs) -> anyhow::Result<Dialer> {
    let example = fill(sub_template(a), a, "x");
    match a.transport {
        Transport::Sse => {
            let build = |local: Option<IpAddr>| {
                reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .tcp_nodelay(true)
                    .connect_timeout(Duration::from_secs(10))
                    .local_address(local)
                    .build()
                    .context("cannot build the HTTP client")
            };
            let clients = source_ips(a, &example)
                .into_iter()
                .map(build)
                .collect::<anyhow::Result<_>>()?;
            Ok(Dialer::Sse(clients))
        }
        Transport::Ws => {
            let url = ws_url(&example)?;
            let parsed = reqwest::Url::parse(&url)
                .with_context(|| format!("the subscriber URL {url:?} is not a URL"))?;
            let host = parsed
                .host_str()
                .with_context(|| format!("the subscriber URL {url:?} has no host"))?;
            let port = parsed.port_or_known_default().unwrap_or(80);
            let target = match host.trim_matches(['[', ']']).parse::<IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, port),
                Err(_) => tokio::net::lookup_host((host, port))
                    .await
                    .with_context(|| format!("cannot resolve {host}"))?
                    .next()
                    .with_context(|| format!("{host} has no address"))?,
            };
            let sources = if target.is_ipv4() {
                source_ips(a, &url)
            } else {
                vec![None]
            };
            Ok(Dialer::Ws { target, sources })
        }
    }
}

fn spawn_progress(
    tally: Arc<Tally>,
    connections: u64,
    expected: Arc<AtomicU64>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let t0 = Instant::now();
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(3),
            Duration::from_secs(1),
        );
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let exp = expected.load(Ordering::Relaxed);
            let delivered = if exp > 0 {
                format!(", delivered {}/{exp}", tally.received.load(Ordering::Relaxed))
            } else {
                String::new()
            };
            let reconnects = tally.reconnects.load(Ordering::Relaxed);
            let reconnects = if reconnects > 0 {
                format!(", reconnects {reconnects}")
            } else {
                String::new()
            };
            eprintln!(
                "bench {:>4.0}s: connections {}/{connections} (failed {}, closed {}){delivered}{reconnects}",
                t0.elapsed().as_secs_f64(),
                tally.opened.load(Ordering::Relaxed),
                tally.failed.load(Ordering::Relaxed),
                tally.closed_early.load(Ordering::Relaxed),
            );
        }
    })
}

fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

/// Messages of `total` that go to channel `c` of `channels` (round robin).
fn share(total: usize, channels: usize, c: usize) -> u64 {
    (total / channels + usize::from(c < total % channels)) as u64
}

fn resolve_pids(a: &BenchArgs) -> Vec<u32> {
    let mut pids = a.server_pids.clone();
    if let Some(name) = &a.server_pids_of {
        pids.extend(pids_of(name));
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

// ---------------------------------------------------------------------------
// Scenarios

/// Checks the arguments that do not depend on the machine.
fn validate(a: &BenchArgs) -> anyhow::Result<()> {
    let s = a.scenario.as_str();
    if !matches!(s, "idle" | "fanout" | "publish" | "churn" | "resume") {
        bail!("unknown scenario {s:?}: idle, fanout, publish, churn or resume");
    }
    if s == "publish" && a.transport == Transport::Ws {
        bail!("--transport is for subscribers, and the publish scenario has none");
    }
    if a.ws_frames == WsFrames::Raw {
        if a.transport != Transport::Ws {
            bail!("--ws-subscribe-frame none needs --transport ws");
        }
        if a.sub_url.is_none() {
            bail!(
                "--ws-subscribe-frame none needs --sub-url, the peer's WebSocket URL for a channel \
                 (e.g. ws://127.0.0.1:8080/ws/{{channel}})"
            );
        }
    }
    if let Some(r) = a.churn_rate {
        if s != "churn" {
            bail!("--churn-rate is for the churn scenario only");
        }
        if !(r.is_finite() && r > 0.0 && r <= MAX_CHURN_RATE) {
            bail!("--churn-rate must be a number of connections per second above 0 and at most 1000000");
        }
    }
    if s == "churn" && a.messages == 0 {
        bail!("--messages must be at least 1 for churn (the churn lasts as long as the publishing)");
    }
    if s == "resume" && a.messages < 3 {
        bail!(
            "--messages must be at least 3 for resume (a third before the drop, a third while \
             the subscribers are down, a third after)"
        );
    }
    if let Some(path) = &a.svg {
        if matches!(s, "idle" | "publish") {
            bail!("--svg needs a scenario that delivers messages: fanout, churn or resume");
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir.filter(|d| !d.is_dir()) {
            bail!(
                "--svg {}: the directory {} does not exist",
                path.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// N subscribers connected, and what the run needs to go on.
struct Session {
    a: Arc<BenchArgs>,
    pids: Vec<u32>,
    sh: Arc<Shared>,
    tasks: Vec<JoinHandle<SubStats>>,
    kicks: Vec<Arc<Notify>>,
    run_id: Arc<str>,
    deadline: Instant,
    report: Value,
    expected_now: Arc<AtomicU64>,
    progress: Option<JoinHandle<()>>,
    opened: u64,
    /// Whatever happens, the subscribers and the progress task end with the run.
    _stop_all: tokio_util::sync::DropGuard,
}

/// Connects the subscribers and starts the report (connect rate, memory).
async fn open_session(
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
    let progress = a.progress.then(|| {
        spawn_progress(
            sh.tally.clone(),
            a.connections as u64,
            expected_now.clone(),
            stop.clone(),
        )
    });
    let before = proc_sample(&pids);
    let started = Instant::now();
    // Fresh channels per run, so sequences start at 1 and runs never mix.
    let run_id = herald_broker::new_epoch();
    let messages = if a.scenario == "idle" { 0 } else { a.messages };
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
        "scenario": a.scenario,
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
        opened,
        _stop_all: stop_all,
    })
}

impl Session {
    /// Stops the subscribers and gathers what they saw.
    async fn collect(&mut self) -> Vec<SubStats> {
        self.sh.stop.cancel();
        let mut subs = Vec::with_capacity(self.tasks.len());
        for t in self.tasks.drain(..) {
            subs.push(t.await.unwrap_or_default());
        }
        subs
    }

    /// Stops everything that still runs and returns the report.
    async fn finish(mut self) -> Value {
        self.sh.stop.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        if let Some(p) = self.progress.take() {
            let _ = p.await;
        }
        std::mem::take(&mut self.report)
    }

    /// Every subscriber expects every message of its channel.
    fn expected_all(&self) -> u64 {
        let a = &self.a;
        (0..a.connections)
            .map(|i| share(a.messages, a.channels, i % a.channels))
            .sum()
    }

    /// Waits until `done`, the deadline, or (once `publishing_done`) no delivery for [`QUIET`].
    async fn wait_deliveries(&self, done: impl Fn() -> bool, publishing_done: impl Fn() -> bool) {
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
    fn publish_failed(&self) -> anyhow::Result<()> {
        match self.sh.publish_error.lock().clone() {
            Some(e) => Err(anyhow!(e)),
            None => Ok(()),
        }
    }
}

/// Publishes `a.messages` round robin over the channels, at `a.rate`; returns the seconds taken.
async fn publish_all(
    publisher: &Publisher,
    a: &BenchArgs,
    run_id: &str,
    sh: &Shared,
    deadline: Instant,
) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let interval = (a.rate > 0).then(|| Duration::from_secs_f64(1.0 / a.rate as f64));
    for m in 0..a.messages {
        if Instant::now() > deadline {
            bail!("the deadline passed after {m} of {} publishes", a.messages);
        }
        if sh.stop.is_cancelled() {
            bail!("the run stopped after {m} of {} publishes", a.messages);
        }
        let c = m % a.channels;
        let seq = (m / a.channels) as u64 + 1;
        if let Some(s) = sh.started.get(c) {
            s.store(seq, Ordering::SeqCst);
        }
        publisher
            .send(&channel_name(run_id, c), payload(seq, c, a.size))
            .await?;
        sh.published.fetch_add(1, Ordering::SeqCst);
        if let Some(iv) = interval {
            let next = t0 + iv * (m as u32 + 1);
            tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        }
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// Publishes in the background; an error lands in [`Shared::publish_error`].
fn spawn_publisher(publisher: Publisher, s: &Session) -> JoinHandle<Option<f64>> {
    let (a, sh, run_id, deadline) = (s.a.clone(), s.sh.clone(), s.run_id.clone(), s.deadline);
    tokio::spawn(async move {
        match publish_all(&publisher, &a, &run_id, &sh, deadline).await {
            Ok(secs) => Some(secs),
            Err(e) => {
                sh.publish_error.lock().get_or_insert(format!("{e:#}"));
                None
            }
        }
    })
}

/// Deliveries, duplicates, … summed over the subscribers; latencies sorted.
struct Totals {
    received: u64,
    duplicates: u64,
    reordered: u64,
    foreign: u64,
    lost: u64,
    resets: u64,
    lat: Vec<u32>,
}

fn totals(mut subs: Vec<SubStats>) -> Totals {
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

/// The fields every delivering scenario reports.
fn delivery_report(s: &mut Session, t: &Totals, publish_secs: f64, t0_us: u64) {
    let (a, r) = (&s.a, &mut s.report);
    let last_us = s.sh.tally.last_delivery_us.load(Ordering::Relaxed);
    let deliver_secs = (last_us.saturating_sub(t0_us) as f64 / 1e6).max(publish_secs);
    r["messages"] = a.messages.into();
    r["size"] = a.size.into();
    r["rate"] = a.rate.into();
    r["pub_url"] = pub_template(a).into();
    r["pub_format"] = format!("{:?}", a.pub_format).to_lowercase().into();
    r["delivered"] = t.received.into();
    r["duplicates"] = t.duplicates.into();
    r["reordered"] = t.reordered.into();
    r["foreign"] = t.foreign.into();
    r["closed_early"] = s.sh.tally.closed_early.load(Ordering::Relaxed).into();
    r["publish_seconds"] = publish_secs.into();
    r["deliver_seconds"] = deliver_secs.into();
    r["deliveries_per_second"] = (t.received as f64 / deliver_secs.max(1e-9)).into();
    let lat = &t.lat;
    r["latency_ms"] = json!({
        "p50": percentile_ms(lat, 0.5), "p90": percentile_ms(lat, 0.9),
        "p99": percentile_ms(lat, 0.99), "p999": percentile_ms(lat, 0.999),
        "max": lat.last().map_or(0.0, |&m| f64::from(m) / 1000.0),
    });
}

/// Server and generator CPU over a span, per delivery.
fn cpu_report(
    r: &mut Value,
    server: (Option<ProcSample>, Option<ProcSample>),
    own: (Option<f64>, Option<f64>),
    received: u64,
) {
    if let (Some(c0), Some(c1)) = server {
        let cpu = c1.cpu_seconds - c0.cpu_seconds;
        r["server_cpu_seconds"] = cpu.into();
        r["server_us_per_delivery"] = (cpu * 1e6 / received.max(1) as f64).into();
    }
    if let (Some(o0), Some(o1)) = own {
        r["bench_cpu_seconds"] = (o1 - o0).into();
        r["bench_us_per_delivery"] = ((o1 - o0) * 1e6 / received.max(1) as f64).into();
    }
}

/// Memory now, with every connection still open, against the start (churn).
fn memory_end_report(r: &mut Value, end: Option<ProcSample>) {
    let Some(e) = end else {
        return;
    };
    r["server_rss_kb_end"] = e.rss_kb.into();
    if let Some(c) = r["server_rss_kb_connected"].as_u64() {
        r["server_rss_kb_growth"] = (e.rss_kb as i64 - c as i64).into();
    }
    if let Some(ep) = e.pss_kb {
        r["server_pss_kb_end"] = ep.into();
        if let Some(c) = r["server_pss_kb_connected"].as_u64() {
            r["server_pss_kb_growth"] = (ep as i64 - c as i64).into();
        }
    }
}

/// Writes the chart when `--svg` asked for one; a failure lands in the report.
fn write_chart(s: &mut Session, lat: &[u32], markers: Vec<(f64, String)>) {
    let Some(path) = s.a.svg.clone() else {
        return;
    };
    let a = &s.a;
    let series = s.sh.timeline.series();
    let chart = svg::Chart {
        title: format!(
            "herald bench {} over {}: {} connections, {} channel{}, {} messages",
            a.scenario,
            a.transport.name(),
            a.connections,
            a.channels,
            if a.channels == 1 { "" } else { "s" },
            a.messages
        ),
        latencies_us: lat,
        per_bucket: &series,
        bucket_ms: BUCKET_MS,
        markers,
    };
    let text = svg::render(&chart);
    s.report["svg"] = path.display().to_string().into();
    s.report["deliveries_per_100ms"] = series.into();
    if let Err(e) = std::fs::write(&path, text) {
        s.report["svg_error"] = format!("cannot write {}: {e}", path.display()).into();
    }
}

async fn fanout(s: &mut Session, publisher: Publisher) -> anyhow::Result<()> {
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

async fn churn(s: &mut Session, publisher: Publisher) -> anyhow::Result<()> {
    let a = s.a.clone();
    let rate = a.churn_rate.unwrap_or(a.connections as f64 / 10.0);
    let cpu0 = proc_sample(&s.pids);
    let own0 = own_cpu_seconds();
    let t0_us = s.sh.timeline.start();
    let t0 = Instant::now();
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
    cpu_report(r, (cpu0, cpu1), (own0, own1), t.received);
    if let (Some(c0), Some(c1)) = (cpu0, cpu1) {
        r["server_cpu_percent"] = ((c1.cpu_seconds - c0.cpu_seconds) * 100.0 / window.max(1e-9)).into();
    }
    memory_end_report(r, end);
    write_chart(s, &t.lat, Vec::new());
    Ok(())
}

/// Polls `cond` every 5 ms until it holds (true) or `until` passes (false).
async fn wait_for(cond: impl Fn() -> bool, until: Instant) -> bool {
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

async fn resume(s: &mut Session, publisher: Publisher) -> anyhow::Result<()> {
    let a = s.a.clone();
    let sh = s.sh.clone();
    let tally = sh.tally.clone();
    let expected = s.expected_all();
    s.expected_now.store(expected, Ordering::Relaxed);
    let (drop_at, back_at) = ((a.messages / 3) as u64, (2 * a.messages / 3) as u64);
    let cpu0 = proc_sample(&s.pids);
    let own0 = own_cpu_seconds();
    let t0_us = sh.timeline.start();
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

/// Runs a scenario and returns its JSON report (see [`summary`] for a short text).
///
/// # Errors
/// Bad arguments, a failed publish, or the server cannot be reached.
pub async fn run(a: BenchArgs) -> anyhow::Result<Value> {
    validate(&a)?;
    let file_limit = raise_file_limit();
    let pids = resolve_pids(&a);
    if a.server_pids_of.is_some() && pids.is_empty() {
        bail!(
            "no process named {:?}",
            a.server_pids_of.as_deref().unwrap_or_default()
        );
    }
    if a.scenario == "publish" {
        return publish_throughput(Arc::new(a), &pids).await;
    }
    let max = MAX_CONNECTIONS.min(usize::try_from(file_limit.saturating_sub(100)).unwrap_or(usize::MAX));
    if a.connections == 0 || a.connections > max {
        bail!("--connections must be 1 to {max} (the open-file limit here is {file_limit})");
    }
    if a.channels == 0 || a.channels > a.connections {
        bail!("--channels must be 1 to --connections");
    }
    let a = Arc::new(a);
    let publisher = if a.scenario == "idle" {
        None
    } else {
        Some(Publisher::new(&a)?)
    };
    let mode = match a.scenario.as_str() {
        "churn" => Mode::Churn,
        "resume" => Mode::Resume,
        _ => Mode::Plain,
    };
    let mut s = open_session(a.clone(), pids, file_limit, mode).await?;
    match (a.scenario.as_str(), publisher) {
        ("fanout", Some(p)) => fanout(&mut s, p).await?,
        ("churn", Some(p)) => churn(&mut s, p).await?,
        ("resume", Some(p)) => resume(&mut s, p).await?,
        _ => {
            if !a.hold.is_zero() {
                let open = s.sh.tally.opened.load(Ordering::Relaxed);
                // Always said, even with --quiet: scripts wait for this line.
                eprintln!("idle: holding {open} connections for {:?}", a.hold);
                tokio::time::sleep(a.hold.min(a.deadline)).await;
                if let Some(m) = proc_sample(&s.pids) {
                    s.report["server_pss_kb_after_hold"] = m.pss_kb.into();
                    s.report["server_rss_kb_after_hold"] = m.rss_kb.into();
                }
                s.report["held_seconds"] = a.hold.as_secs_f64().into();
            }
            s.report["closed_early"] = s.sh.tally.closed_early.load(Ordering::Relaxed).into();
        }
    }
    Ok(s.finish().await)
}

async fn publish_throughput(a: Arc<BenchArgs>, pids: &[u32]) -> anyhow::Result<Value> {
    if a.concurrency == 0 || a.concurrency > 1000 {
        bail!("--concurrency must be 1 to 1000");
    }
    let publisher = Publisher::new(&a)?;
    let run_id = herald_broker::new_epoch();
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
                    first_error.lock().get_or_insert(format!("{e:#}"));
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

/// A few human lines summarizing a report from [`run`].
pub fn summary(r: &Value) -> String {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let u = |k: &str| r[k].as_u64().unwrap_or(0);
    let mut out = Vec::new();
    if r["scenario"] == "publish" {
        out.push(format!(
            "publish: {} messages in {:.2} s = {:.0}/s, {} errors",
            u("messages"),
            f("seconds"),
            f("publishes_per_second"),
            u("errors")
        ));
        if r.get("server_us_per_publish").is_some() {
            out.push(format!(
                "server CPU {:.1} µs per publish",
                f("server_us_per_publish")
            ));
        }
        return out.join("\n");
    }
    let transport = match r["transport"].as_str() {
        Some("ws") => " over WebSocket",
        _ => "",
    };
    out.push(format!(
        "{}: {}/{} connections opened{transport} ({} failed) in {:.2} s = {:.0}/s, {} source addresses",
        r["scenario"].as_str().unwrap_or("?"),
        u("opened"),
        u("connections"),
        u("failed"),
        f("connect_seconds"),
        f("connects_per_second"),
        u("source_addresses"),
    ));
    if let Some(e) = r["first_error"].as_str() {
        out.push(format!("first error: {e}"));
    }
    if r.get("server_kb_per_connection").is_some() {
        out.push(format!(
            "server memory {:.1} KB per connection (RSS {:.1} KB)",
            f("server_kb_per_connection"),
            f("server_rss_kb_per_connection"),
        ));
    }
    if r.get("churn_connects").is_some() {
        out.push(format!(
            "churn: {} disconnects in {:.2} s (asked {:.0}/s); {} reconnects = {:.0}/s, {} failed attempts, {} gave up",
            u("churn_disconnects"),
            f("churn_seconds"),
            f("churn_rate"),
            u("churn_connects"),
            f("churn_connects_per_second"),
            u("churn_failed"),
            u("churn_gave_up"),
        ));
    }
    if r.get("server_rss_kb_end").is_some() {
        let (key, what) = if r.get("server_pss_kb_end").is_some() {
            ("pss", "PSS")
        } else {
            ("rss", "RSS")
        };
        let growth = r[format!("server_{key}_kb_growth")].as_i64().unwrap_or(0);
        out.push(format!(
            "server {what}: {} KB at the start, {} KB with the connections open, {} KB at the end ({growth:+} KB)",
            u(&format!("server_{key}_kb_before")),
            u(&format!("server_{key}_kb_connected")),
            u(&format!("server_{key}_kb_end")),
        ));
    }
    if r.get("resume_dropped").is_some() {
        let secs = |k: &str| {
            r[k].as_f64()
                .map_or_else(|| "never".to_owned(), |s| format!("{s:.2} s"))
        };
        let cpu = if r.get("storm_server_cpu_seconds").is_some() {
            format!(
                "; server CPU {:.2} s in the storm ({:.0} %)",
                f("storm_server_cpu_seconds"),
                f("storm_server_cpu_percent")
            )
        } else {
            String::new()
        };
        out.push(format!(
            "resume: {} dropped at once, down {:.2} s; {} back in {}, caught up in {} \
             ({} failed attempts, {} gave up, {} resets){cpu}",
            u("resume_dropped"),
            f("resume_down_seconds"),
            u("resume_reconnected"),
            secs("resume_back_seconds"),
            secs("resume_caught_up_seconds"),
            u("resume_failed"),
            u("resume_gave_up"),
            u("resets"),
        ));
    }
    if r.get("delivered").is_some() {
        let of = if r.get("expected_deliveries").is_some() {
            format!("/{}", u("expected_deliveries"))
        } else {
            String::new()
        };
        out.push(format!(
            "delivered {}{of} in {:.2} s = {:.0}/s; lost {}, duplicates {}, reordered {}, foreign {}, closed early {}",
            u("delivered"),
            f("deliver_seconds"),
            f("deliveries_per_second"),
            u("lost"),
            u("duplicates"),
            u("reordered"),
            u("foreign"),
            u("closed_early"),
        ));
        let l = &r["latency_ms"];
        let g = |k: &str| l[k].as_f64().unwrap_or(f64::NAN);
        out.push(format!(
            "latency ms: p50 {:.1}, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}",
            g("p50"),
            g("p90"),
            g("p99"),
            g("p999"),
            g("max")
        ));
        let server = if r.get("server_us_per_delivery").is_some() {
            format!("server CPU {:.2} µs per delivery; ", f("server_us_per_delivery"))
        } else {
            String::new()
        };
        out.push(format!(
            "{server}bench CPU {:.2} µs per delivery",
            f("bench_us_per_delivery")
        ));
    }
    if let Some(p) = r["svg"].as_str() {
        match r["svg_error"].as_str() {
            Some(e) => out.push(format!("chart not written: {e}")),
            None => out.push(format!("chart: {p}")),
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_back_from_herald_and_raw_frames() {
        let p = payload(7, 3, 100);
        assert!((99..=101).contains(&p.len()), "{} bytes: {p}", p.len());
        let raw = format!("id: 12:0\ndata: {p}");
        let (seq, c, t) = parse_block(raw.as_bytes()).unwrap();
        assert_eq!((seq, c), (7, 3));
        assert!(t > 1_600_000_000_000_000);
        let herald = format!(
            "id: abc\nevent: message\ndata: {{\"channel\":\"bench:x:3\",\"offset\":9,\"epoch\":\"e\",\"event\":\"message\",\"data\":{p},\"ts\":17}}"
        );
        assert_eq!(parse_block(herald.as_bytes()).unwrap().0, 7);
        assert!(parse_block(b"event: open\ndata: {\"cursor\":\"x\"}").is_none());
        assert!(parse_block(b": heartbeat").is_none());
    }

    #[test]
    fn templates_fill_and_bare_pub_urls_mean_herald() {
        let a = BenchArgs {
            url: "http://127.0.0.1:1".into(),
            app: "demo".into(),
            token: "tok".into(),
            ..BenchArgs::default()
        };
        assert_eq!(
            fill(sub_template(&a), &a, "c"),
            "http://127.0.0.1:1/v1/apps/demo/events?channel=c&token=tok"
        );
        let b = BenchArgs {
            pub_url: Some("http://127.0.0.1:2".into()),
            ..a.clone()
        };
        assert_eq!(
            fill(&pub_template(&b), &b, "c"),
            "http://127.0.0.1:2/v1/apps/demo/publish"
        );
        let c = BenchArgs {
            pub_format: PubFormat::Raw,
            ..a
        };
        assert_eq!(fill(&pub_template(&c), &c, "c"), "http://127.0.0.1:1/pub?id=c");
    }

    #[test]
    fn herald_websocket_frames_and_sse_ids_are_read() {
        let p = payload(4, 1, 100);
        let push = format!(
            "{{\"type\":\"message\",\"cursor\":\"Y3Vy\",\"channel\":\"bench:x:1\",\"offset\":4,\
             \"epoch\":\"e\",\"event\":\"message\",\"data\":{p},\"ts\":17}}"
        );
        match herald_ws_frame(push.as_bytes()) {
            WsPush::Message(Some(c), Some((4, 1, _))) => assert_eq!(c, b"Y3Vy"),
            other => panic!("{other:?}"),
        }
        let reset = br#"{"type":"reset","channel":"a","epoch":"e","offset":12,"reason":"history_gone","cursor":"Ng"}"#;
        assert_eq!(herald_ws_frame(reset), WsPush::Reset(Some(&b"Ng"[..])));
        let ok = br#"{"id":1,"ok":{"channel":"a","cursor":"QQ"}}"#;
        assert_eq!(herald_ws_frame(ok), WsPush::Reply(true, Some(&b"QQ"[..])));
        let refused = br#"{"id":1,"error":{"code":"forbidden","message":"no"}}"#;
        assert_eq!(herald_ws_frame(refused), WsPush::Reply(false, None));
        assert_eq!(herald_ws_frame(br#"{"type":"presence"}"#), WsPush::Other);
        // Raw frames are the payload itself.
        assert_eq!(parse_payload(p.as_bytes()).map(|(s, c, _)| (s, c)), Some((4, 1)));
        assert_eq!(
            sse_field(b"id: abc\nevent: open\ndata: {}", b"id:"),
            Some(&b"abc"[..])
        );
        assert_eq!(sse_field(b"id:x\nid: y", b"id:"), Some(&b"y"[..]));
        assert_eq!(sse_field(b": hb", b"id:"), None);
        assert_eq!("ws".parse::<Transport>().unwrap(), Transport::Ws);
        assert!("tcp"
            .parse::<Transport>()
            .unwrap_err()
            .to_string()
            .contains("sse or ws"));
        assert_eq!("none".parse::<WsFrames>().unwrap(), WsFrames::Raw);
        assert_eq!(ws_url("http://h:1/x").unwrap(), "ws://h:1/x");
        assert!(ws_url("https://h/x").is_err());
    }

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

    #[test]
    fn messages_share_channels_round_robin() {
        assert_eq!(share(10, 3, 0), 4);
        assert_eq!(share(10, 3, 2), 3);
        assert_eq!((0..3).map(|c| share(10, 3, c)).sum::<u64>(), 10);
    }
}
