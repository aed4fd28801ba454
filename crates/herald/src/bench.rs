//! `herald bench`: a load generator for Herald (and, later, any SSE server).
//!
//! Scenarios (SSE for now):
//! - `idle`: open N subscriber connections and report the server's memory per
//!   connection (from /proc/PID/status of `--server-pid`).
//! - `fanout`: N subscribers of one channel (or spread over K channels), M messages
//!   published as fast as one publisher can; reports deliveries, losses, duplicates,
//!   reordering, publish-to-receipt latency percentiles, and the server's CPU time
//!   per delivered message (from /proc/PID/stat) beside the generator's own.
//!
//! - `publish`: M messages over K channels with no subscribers, from `--concurrency`
//!   publishers: the server API's publish throughput.
//!
//! Every run is bounded: connections, messages and a deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use parking_lot::Mutex;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchArgs {
    /// `idle` or `fanout`.
    pub scenario: String,
    /// Herald's base URL.
    pub url: String,
    /// The app.
    pub app: String,
    /// A client token allowed to subscribe to the bench channels.
    pub token: String,
    /// The app key, to publish.
    pub key: Option<String>,
    /// Where to publish (default: `url`), e.g. another node of a cluster.
    pub pub_url: Option<String>,
    /// Concurrent publishers (`publish` scenario).
    pub concurrency: usize,
    /// Subscriber connections.
    pub connections: usize,
    /// Channels the subscribers are spread over (fanout).
    pub channels: usize,
    /// Messages to publish (fanout).
    pub messages: usize,
    /// Payload size in bytes.
    pub size: usize,
    /// Messages per second (0: as fast as possible).
    pub rate: u64,
    /// The server's process id, for its memory and CPU.
    pub server_pid: Option<u32>,
    /// Give up after this long.
    pub deadline: Duration,
}

fn proc_stat(pid: &str) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()?;
    // USER_HZ is 100 on Linux.
    Some((ticks as f64 / 100.0, rss_kb))
}

#[derive(Default)]
struct Tally {
    received: AtomicU64,
    lost: AtomicU64,
    duplicates: AtomicU64,
    reordered: AtomicU64,
    opened: AtomicU64,
    failed: AtomicU64,
    latencies_ms: Mutex<Vec<u32>>,
}

fn field(line: &str, name: &str) -> Option<u64> {
    let i = line.find(name)? + name.len();
    let digits: String = line[i..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

async fn subscriber(
    client: reqwest::Client,
    url: String,
    tally: Arc<Tally>,
    stop: tokio_util::sync::CancellationToken,
) {
    let res = match client.get(&url).send().await {
        Ok(r) if r.status() == 200 => r,
        _ => {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut stream = res.bytes_stream();
    let mut buf = String::new();
    let mut last: Option<u64> = None;
    let mut opened = false;
    loop {
        let chunk = tokio::select! {
            _ = stop.cancelled() => return,
            c = stream.next() => c,
        };
        let Some(Ok(chunk)) = chunk else { return };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if block.contains("event: open") && !opened {
                opened = true;
                tally.opened.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let (Some(offset), Some(ts)) = (field(data, "\"offset\":"), field(data, "\"ts\":")) else {
                continue;
            };
            match last {
                Some(l) if offset <= l => {
                    tally.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Some(l) if offset > l + 1 => {
                    tally.lost.fetch_add(offset - l - 1, Ordering::Relaxed);
                    tally.reordered.fetch_add(1, Ordering::Relaxed);
                }
                _ => {} // the first message sets the baseline: the stream starts from now
            }
            last = Some(offset);
            tally.received.fetch_add(1, Ordering::Relaxed);
            let now = herald_broker::now_millis() as u64;
            tally.latencies_ms.lock().push(now.saturating_sub(ts) as u32);
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs a scenario and prints a JSON report and a summary.
///
/// # Errors
/// Bad arguments, or the server cannot be reached.
pub async fn run(a: BenchArgs) -> anyhow::Result<serde_json::Value> {
    if a.scenario == "publish" {
        return publish_throughput(&a).await;
    }
    if a.connections == 0 || a.connections > 15_000 {
        bail!("--connections must be 1 to 15000 in one process (the file limit here is 20000)");
    }
    if a.channels == 0 {
        bail!("--channels must be at least 1");
    }
    let pid = a.server_pid.map(|p| p.to_string());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .context("cannot build the HTTP client")?;
    let stop = tokio_util::sync::CancellationToken::new();
    let tally = Arc::new(Tally::default());
    let before = pid.as_deref().and_then(proc_stat);
    let started = Instant::now();
    // Fresh channels per run, so offsets start at 1 and runs never mix.
    let run_id = herald_broker::new_epoch();
    let mut tasks = Vec::with_capacity(a.connections);
    for i in 0..a.connections {
        let channel = format!("bench:{run_id}:{}", i % a.channels);
        let url = format!(
            "{}/v1/apps/{}/events?channel={channel}&token={}",
            a.url, a.app, a.token
        );
        tasks.push(tokio::spawn(subscriber(
            client.clone(),
            url,
            tally.clone(),
            stop.clone(),
        )));
    }
    let deadline = Instant::now() + a.deadline;
    while tally.opened.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed) < a.connections as u64 {
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
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = pid.as_deref().and_then(proc_stat);
    let mut report = serde_json::json!({
        "scenario": a.scenario,
        "connections": a.connections,
        "opened": tally.opened.load(Ordering::Relaxed),
        "failed": tally.failed.load(Ordering::Relaxed),
        "connect_seconds": connect_secs,
    });
    if let (Some(b), Some(i)) = (before, idle) {
        report["server_rss_kb_before"] = i64::try_from(b.1).unwrap_or(0).into();
        report["server_rss_kb_connected"] = i64::try_from(i.1).unwrap_or(0).into();
        report["server_kb_per_connection"] =
            serde_json::json!((i.1 as f64 - b.1 as f64) / a.connections as f64);
    }
    if a.scenario == "fanout" {
        let key = a.key.clone().context("fanout needs --key to publish")?;
        let payload = "x".repeat(a.size.saturating_sub(20).max(1));
        let cpu0 = pid.as_deref().and_then(proc_stat);
        let own0 = proc_stat("self");
        let t0 = Instant::now();
        let interval = (a.rate > 0).then(|| Duration::from_secs_f64(1.0 / a.rate as f64));
        for m in 0..a.messages {
            let channel = format!("bench:{run_id}:{}", m % a.channels);
            let res = client
                .post(format!(
                    "{}/v1/apps/{}/publish",
                    a.pub_url.as_deref().unwrap_or(&a.url),
                    a.app
                ))
                .bearer_auth(&key)
                .json(&serde_json::json!({"channel": channel, "data": {"p": payload}}))
                .send()
                .await
                .context("publish failed")?;
            if !res.status().is_success() {
                bail!("publish answered {}", res.status());
            }
            if let Some(iv) = interval {
                let next = t0 + iv * (m as u32 + 1);
                tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
            }
        }
        let publish_secs = t0.elapsed().as_secs_f64();
        let per = |n: usize, c: usize| (n / a.channels + usize::from(c < n % a.channels)) as u64;
        let expected: u64 = (0..a.channels)
            .map(|c| per(a.connections, c) * per(a.messages, c))
            .sum();
        while tally.received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let total_secs = t0.elapsed().as_secs_f64();
        let cpu1 = pid.as_deref().and_then(proc_stat);
        let own1 = proc_stat("self");
        let received = tally.received.load(Ordering::Relaxed);
        let mut lat = std::mem::take(&mut *tally.latencies_ms.lock());
        lat.sort_unstable();
        report["messages"] = a.messages.into();
        report["expected_deliveries"] = expected.into();
        report["delivered"] = received.into();
        report["lost"] = tally.lost.load(Ordering::Relaxed).into();
        report["duplicates"] = tally.duplicates.load(Ordering::Relaxed).into();
        report["reordered"] = tally.reordered.load(Ordering::Relaxed).into();
        report["publish_seconds"] = publish_secs.into();
        report["deliver_seconds"] = total_secs.into();
        report["deliveries_per_second"] = (received as f64 / total_secs).into();
        report["latency_ms"] = serde_json::json!({
            "p50": percentile(&lat, 0.5), "p90": percentile(&lat, 0.9), "p99": percentile(&lat, 0.99),
            "p999": percentile(&lat, 0.999), "max": lat.last().copied().unwrap_or(0),
        });
        if let (Some(c0), Some(c1)) = (cpu0, cpu1) {
            report["server_cpu_seconds"] = (c1.0 - c0.0).into();
            report["server_us_per_delivery"] = ((c1.0 - c0.0) * 1e6 / received.max(1) as f64).into();
        }
        if let (Some(o0), Some(o1)) = (own0, own1) {
            report["bench_cpu_seconds"] = (o1.0 - o0.0).into();
        }
    }
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    Ok(report)
}

async fn publish_throughput(a: &BenchArgs) -> anyhow::Result<serde_json::Value> {
    let key = a.key.clone().context("publish needs --key")?;
    if a.concurrency == 0 || a.concurrency > 1000 {
        bail!("--concurrency must be 1 to 1000");
    }
    let base = a.pub_url.clone().unwrap_or_else(|| a.url.clone());
    let client = reqwest::Client::new();
    let run_id = herald_broker::new_epoch();
    let payload = "x".repeat(a.size.saturating_sub(20).max(1));
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let pid = a.server_pid.map(|p| p.to_string());
    let cpu0 = pid.as_deref().and_then(proc_stat);
    let t0 = Instant::now();
    let deadline = t0 + a.deadline;
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (client, key, base, next, errors, payload, run_id) = (
            client.clone(),
            key.clone(),
            base.clone(),
            next.clone(),
            errors.clone(),
            payload.clone(),
            run_id.clone(),
        );
        let (total, channels, app) = (a.messages as u64, a.channels.max(1) as u64, a.app.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let m = next.fetch_add(1, Ordering::Relaxed);
                if m >= total || Instant::now() > deadline {
                    return;
                }
                let res = client
                    .post(format!("{base}/v1/apps/{app}/publish"))
                    .bearer_auth(&key)
                    .json(&serde_json::json!({"channel": format!("bench:{run_id}:{}", m % channels), "data": {"p": payload}}))
                    .send()
                    .await;
                if !res.is_ok_and(|r| r.status().is_success()) {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let done = next.load(Ordering::Relaxed).min(a.messages as u64);
    let mut report = serde_json::json!({
        "scenario": "publish",
        "messages": done,
        "channels": a.channels,
        "concurrency": a.concurrency,
        "errors": errors.load(Ordering::Relaxed),
        "seconds": secs,
        "publishes_per_second": done as f64 / secs,
    });
    if let (Some(c0), Some(c1)) = (cpu0, pid.as_deref().and_then(proc_stat)) {
        report["server_cpu_seconds"] = (c1.0 - c0.0).into();
        report["server_us_per_publish"] = ((c1.0 - c0.0) * 1e6 / done.max(1) as f64).into();
    }
    Ok(report)
}
