//! `herald bench`: a load generator for Herald and for any other SSE server.
//!
//! The server is named by URL templates, so the same tool measures the peers
//! (Nchan, the floor program in `crates/herald-floor`):
//! `--sub-url` is the subscriber's EventSource URL and `--pub-url` the publish
//! endpoint, with the placeholders `{url}`, `{app}`, `{channel}` and `{token}`.
//! Publishes are either Herald's JSON body (`--pub-format herald`, with the app key
//! as bearer) or the payload itself as the body (`--pub-format raw`, as Nchan wants).
//!
//! Every payload carries its own per-channel sequence number, channel index and
//! send time (`{"seq":N,"c":K,"t":MICROS,"p":"xxx…"}`), and subscribers read
//! them back from whatever the server delivers in the SSE `data:` line (Herald
//! wraps the payload in its envelope's `data`; Nchan and the floor deliver it as
//! is). One parser serves every server.
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
//!
//! Subscriber connections are spread over the source addresses 127.0.0.2…
//! 127.0.0.254 when the target is an IPv4 loopback address (so more than the
//! ~28 000 ephemeral ports of one source address are usable), and the process
//! raises its own soft file limit to the hard limit first.
//!
//! Every run is bounded: connections, messages and a deadline.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Herald's SSE endpoint: the default `--sub-url`.
pub const HERALD_SUB_URL: &str = "{url}/v1/apps/{app}/events?channel={channel}&token={token}";
/// Herald's publish endpoint: the default `--pub-url` with `--pub-format herald`.
pub const HERALD_PUB_URL: &str = "{url}/v1/apps/{app}/publish";
/// Nchan's publish endpoint: the default `--pub-url` with `--pub-format raw`.
pub const RAW_PUB_URL: &str = "{url}/pub?id={channel}";

/// At most this many subscriber connections in one run.
const MAX_CONNECTIONS: usize = 100_000;
/// After the last publish, stop waiting when nothing arrived for this long.
const QUIET: Duration = Duration::from_secs(5);

/// How a publish request carries the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PubFormat {
    /// Herald's API: `{"channel": …, "data": PAYLOAD}` as JSON, the app key as bearer.
    Herald,
    /// The payload itself is the body (Nchan's `POST /pub?id=CHANNEL`, the floor).
    Raw,
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchArgs {
    /// `idle`, `fanout` or `publish`.
    pub scenario: String,
    /// The server's base URL (`{url}` in the templates).
    pub url: String,
    /// The app (`{app}` in the templates).
    pub app: String,
    /// A client token allowed to subscribe to the bench channels (`{token}`).
    pub token: String,
    /// The app key, sent as bearer with every publish when given.
    pub key: Option<String>,
    /// Subscriber URL template (default [`HERALD_SUB_URL`]).
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
    a.sub_url.as_deref().unwrap_or(HERALD_SUB_URL)
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
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().get_or_insert(why);
    }
}

/// What one subscriber saw.
#[derive(Default)]
struct SubStats {
    received: u64,
    duplicates: u64,
    reordered: u64,
    foreign: u64,
    latencies_us: Vec<u32>,
}

struct SubSpec {
    client: reqwest::Client,
    url: String,
    /// This subscriber's channel index.
    channel: u64,
    /// Messages its channel gets: sequence numbers 1..=expect.
    expect: u64,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn number_after(hay: &[u8], name: &[u8]) -> Option<u64> {
    let i = find(hay, name)? + name.len();
    let digits = hay.get(i..)?.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(hay.get(i..i + digits)?).ok()?.parse().ok()
}

/// Reads one SSE block; `Some((seq, channel, sent_us))` when it carries a bench payload.
fn parse_block(block: &[u8]) -> Option<(u64, u64, u64)> {
    let data = block.get(find(block, b"data:")?..)?;
    let seq = number_after(data, b"\"seq\":")?;
    let channel = number_after(data, b"\"c\":")?;
    let t = number_after(data, b"\"t\":")?;
    Some((seq, channel, t))
}

async fn subscriber(
    spec: SubSpec,
    tally: Arc<Tally>,
    gate: Arc<tokio::sync::Semaphore>,
    stop: CancellationToken,
) -> SubStats {
    let mut st = SubStats::default();
    let permit = tokio::select! {
        _ = stop.cancelled() => return st,
        p = gate.acquire() => p,
    };
    let req = spec
        .client
        .get(&spec.url)
        .header("accept", "text/event-stream")
        .send();
    let res = tokio::select! {
        _ = stop.cancelled() => return st,
        r = req => r,
    };
    drop(permit);
    let res = match res {
        Ok(r) if r.status() == 200 => r,
        Ok(r) => {
            tally.fail(format!("subscribe answered {}", r.status()));
            return st;
        }
        Err(e) => {
            let mut why = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                why = format!("{why}: {s}");
                src = s.source();
            }
            tally.fail(why);
            return st;
        }
    };
    tally.opened.fetch_add(1, Ordering::Relaxed);
    let mut stream = res.bytes_stream();
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut seen = vec![0u64; (spec.expect as usize) / 64 + 1];
    let mut max_seq = 0u64;
    loop {
        let chunk = tokio::select! {
            _ = stop.cancelled() => return st,
            c = stream.next() => c,
        };
        let Some(Ok(chunk)) = chunk else {
            tally.closed_early.fetch_add(1, Ordering::Relaxed);
            return st;
        };
        buf.extend_from_slice(&chunk);
        let now = now_micros();
        let mut start = 0;
        let mut got = 0u64;
        while let Some(end) = find(&buf[start..], b"\n\n") {
            let block = &buf[start..start + end];
            start += end + 2;
            let Some((seq, channel, t)) = parse_block(block) else {
                continue;
            };
            if channel != spec.channel || seq == 0 || seq > spec.expect {
                st.foreign += 1;
                continue;
            }
            let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
            if seen[word] & bit != 0 {
                st.duplicates += 1;
                continue;
            }
            seen[word] |= bit;
            if seq < max_seq {
                st.reordered += 1;
            }
            max_seq = max_seq.max(seq);
            got += 1;
            st.latencies_us
                .push(u32::try_from(now.saturating_sub(t)).unwrap_or(u32::MAX));
        }
        buf.drain(..start);
        if got > 0 {
            st.received += got;
            tally.received.fetch_add(got, Ordering::Relaxed);
            tally.last_delivery_us.fetch_max(now, Ordering::Relaxed);
        }
    }
}

/// One client per source address (127.0.0.2…), or one unbound client.
fn subscriber_clients(a: &BenchArgs) -> anyhow::Result<Vec<reqwest::Client>> {
    let example = fill(sub_template(a), a, "x");
    let loopback_v4 = reqwest::Url::parse(&example)
        .ok()
        .and_then(|u| u.host_str()?.parse::<Ipv4Addr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    let n = if loopback_v4 {
        a.source_addresses.min(253)
    } else {
        0
    };
    let build = |local: Option<IpAddr>| {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .local_address(local)
            .build()
            .context("cannot build the HTTP client")
    };
    if n == 0 {
        return Ok(vec![build(None)?]);
    }
    (0..n)
        .map(|i| build(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)))))
        .collect()
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
            eprintln!(
                "bench {:>4.0}s: connections {}/{connections} (failed {}, closed {}){delivered}",
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

/// Runs a scenario and returns its JSON report (see [`summary`] for a short text).
///
/// # Errors
/// Bad arguments, a failed publish, or the server cannot be reached.
pub async fn run(a: BenchArgs) -> anyhow::Result<Value> {
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
    if !matches!(a.scenario.as_str(), "idle" | "fanout") {
        bail!("unknown scenario {:?}: idle, fanout or publish", a.scenario);
    }
    let max = MAX_CONNECTIONS.min(usize::try_from(file_limit.saturating_sub(100)).unwrap_or(usize::MAX));
    if a.connections == 0 || a.connections > max {
        bail!("--connections must be 1 to {max} (the open-file limit here is {file_limit})");
    }
    if a.channels == 0 || a.channels > a.connections {
        bail!("--channels must be 1 to --connections");
    }
    let a = Arc::new(a);
    let clients = subscriber_clients(&a)?;
    let publisher = if a.scenario == "fanout" {
        Some(Publisher::new(&a)?)
    } else {
        None
    };
    let stop = CancellationToken::new();
    // Whatever happens, the subscribers and the progress task end with the run.
    let _stop_all = stop.clone().drop_guard();
    let tally = Arc::new(Tally::default());
    let expected_now = Arc::new(AtomicU64::new(0));
    let progress = a.progress.then(|| {
        spawn_progress(
            tally.clone(),
            a.connections as u64,
            expected_now.clone(),
            stop.clone(),
        )
    });
    let before = proc_sample(&pids);
    let started = Instant::now();
    // Fresh channels per run, so sequences start at 1 and runs never mix.
    let run_id = herald_broker::new_epoch();
    let messages = if a.scenario == "fanout" { a.messages } else { 0 };
    let gate = Arc::new(tokio::sync::Semaphore::new(a.connect_concurrency.max(1)));
    let template = sub_template(&a);
    let mut tasks = Vec::with_capacity(a.connections);
    for i in 0..a.connections {
        let c = i % a.channels;
        let spec = SubSpec {
            client: clients[i % clients.len()].clone(),
            url: fill(template, &a, &channel_name(&run_id, c)),
            channel: c as u64,
            expect: share(messages, a.channels, c),
        };
        tasks.push(tokio::spawn(subscriber(
            spec,
            tally.clone(),
            gate.clone(),
            stop.clone(),
        )));
    }
    let deadline = started + a.deadline;
    let settled = |t: &Tally| t.opened.load(Ordering::Relaxed) + t.failed.load(Ordering::Relaxed);
    while settled(&tally) < a.connections as u64 {
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
        "sub_url": template,
        "connections": a.connections,
        "channels": a.channels,
        "source_addresses": clients.len(),
        "file_limit": file_limit,
        "opened": opened,
        "failed": tally.failed.load(Ordering::Relaxed),
        "connect_seconds": connect_secs,
        "connects_per_second": opened as f64 / connect_secs.max(1e-9),
        "server_pids": pids,
    });
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
    if let Some(publisher) = publisher {
        let expected: u64 = (0..a.connections)
            .map(|i| share(a.messages, a.channels, i % a.channels))
            .sum();
        expected_now.store(expected, Ordering::Relaxed);
        let cpu0 = proc_sample(&pids);
        let own0 = own_cpu_seconds();
        let t0 = Instant::now();
        let t0_us = now_micros();
        let interval = (a.rate > 0).then(|| Duration::from_secs_f64(1.0 / a.rate as f64));
        for m in 0..a.messages {
            if Instant::now() > deadline {
                bail!("the deadline passed after {m} of {} publishes", a.messages);
            }
            let c = m % a.channels;
            let seq = (m / a.channels) as u64 + 1;
            publisher
                .send(&channel_name(&run_id, c), payload(seq, c, a.size))
                .await?;
            if let Some(iv) = interval {
                let next = t0 + iv * (m as u32 + 1);
                tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
            }
        }
        let publish_secs = t0.elapsed().as_secs_f64();
        let mut last = (tally.received.load(Ordering::Relaxed), Instant::now());
        loop {
            let now = Instant::now();
            let got = tally.received.load(Ordering::Relaxed);
            if got >= expected || now > deadline || now - last.1 > QUIET {
                break;
            }
            if got != last.0 {
                last = (got, now);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let cpu1 = proc_sample(&pids);
        let own1 = own_cpu_seconds();
        stop.cancel();
        let mut subs = Vec::with_capacity(tasks.len());
        for t in tasks.drain(..) {
            subs.push(t.await.unwrap_or_default());
        }
        let received: u64 = subs.iter().map(|s| s.received).sum();
        let sum = |f: fn(&SubStats) -> u64| subs.iter().map(f).sum::<u64>();
        let (duplicates, reordered, foreign) =
            (sum(|s| s.duplicates), sum(|s| s.reordered), sum(|s| s.foreign));
        let mut lat: Vec<u32> = Vec::with_capacity(received as usize);
        for s in &mut subs {
            lat.append(&mut s.latencies_us);
        }
        lat.sort_unstable();
        let last_us = tally.last_delivery_us.load(Ordering::Relaxed);
        let deliver_secs = (last_us.saturating_sub(t0_us) as f64 / 1e6).max(publish_secs);
        report["messages"] = a.messages.into();
        report["size"] = a.size.into();
        report["rate"] = a.rate.into();
        report["pub_url"] = pub_template(&a).into();
        report["pub_format"] = format!("{:?}", a.pub_format).to_lowercase().into();
        report["expected_deliveries"] = expected.into();
        report["delivered"] = received.into();
        report["lost"] = expected.saturating_sub(received).into();
        report["duplicates"] = duplicates.into();
        report["reordered"] = reordered.into();
        report["foreign"] = foreign.into();
        report["closed_early"] = tally.closed_early.load(Ordering::Relaxed).into();
        report["publish_seconds"] = publish_secs.into();
        report["deliver_seconds"] = deliver_secs.into();
        report["deliveries_per_second"] = (received as f64 / deliver_secs.max(1e-9)).into();
        report["latency_ms"] = json!({
            "p50": percentile_ms(&lat, 0.5), "p90": percentile_ms(&lat, 0.9),
            "p99": percentile_ms(&lat, 0.99), "p999": percentile_ms(&lat, 0.999),
            "max": lat.last().map_or(0.0, |&m| f64::from(m) / 1000.0),
        });
        if let (Some(c0), Some(c1)) = (cpu0, cpu1) {
            let cpu = c1.cpu_seconds - c0.cpu_seconds;
            report["server_cpu_seconds"] = cpu.into();
            report["server_us_per_delivery"] = (cpu * 1e6 / received.max(1) as f64).into();
        }
        if let (Some(o0), Some(o1)) = (own0, own1) {
            report["bench_cpu_seconds"] = (o1 - o0).into();
            report["bench_us_per_delivery"] = ((o1 - o0) * 1e6 / received.max(1) as f64).into();
        }
    } else {
        report["closed_early"] = tally.closed_early.load(Ordering::Relaxed).into();
    }
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    if let Some(p) = progress {
        let _ = p.await;
    }
    Ok(report)
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
    out.push(format!(
        "{}: {}/{} connections opened ({} failed) in {:.2} s = {:.0}/s, {} source addresses",
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
    if r.get("delivered").is_some() {
        out.push(format!(
            "delivered {}/{} in {:.2} s = {:.0}/s; lost {}, duplicates {}, reordered {}, foreign {}, closed early {}",
            u("delivered"),
            u("expected_deliveries"),
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
    fn messages_share_channels_round_robin() {
        assert_eq!(share(10, 3, 0), 4);
        assert_eq!(share(10, 3, 2), 3);
        assert_eq!((0..3).map(|c| share(10, 3, c)).sum::<u64>(), 10);
    }
}
