//! Publishing: one request per message in the configured format, and the
//! publishing loop of the delivering scenarios.
//!
//! A publish answered `429` is sent again, the same message (its send time
//! unchanged, so its latency counts the wait), after the answer's `Retry-After`
//! seconds (1 when it has none; at most [`MAX_RETRY_AFTER`]), as Herald asks of
//! publishers when its fan-out lags (docs/reliability.md). The retries and the
//! time spent waiting are counted in the report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::args::{fill, pub_template, BenchArgs, PubFormat};
use crate::session::Session;
use crate::track::Shared;
use crate::wire::{channel_name, payload};

/// The longest `Retry-After` honoured; a longer one is waited for this long.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Publishes sent again after a `429`, and the time spent waiting for it.
#[derive(Default)]
pub(crate) struct Retries {
    pub(crate) count: AtomicU64,
    pub(crate) waited_ms: AtomicU64,
}

impl Retries {
    /// Adds `publish_retries` and `publish_retry_seconds` to a report.
    pub(crate) fn report(&self, r: &mut Value) {
        r["publish_retries"] = self.count.load(Ordering::Relaxed).into();
        r["publish_retry_seconds"] = (self.waited_ms.load(Ordering::Relaxed) as f64 / 1000.0).into();
    }
}

/// Sends publishes in the configured format.
#[derive(Clone)]
pub(crate) struct Publisher {
    pub(crate) client: reqwest::Client,
    pub(crate) template: Arc<str>,
    pub(crate) args: Arc<BenchArgs>,
    pub(crate) retries: Arc<Retries>,
}

/// How long a `429` asks to wait: its `Retry-After` in seconds (an HTTP date or
/// nothing: 1 s), at most [`MAX_RETRY_AFTER`].
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), Duration::from_secs)
        .min(MAX_RETRY_AFTER)
}

impl Publisher {
    pub(crate) fn new(a: &Arc<BenchArgs>) -> anyhow::Result<Self> {
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
            retries: Arc::default(),
        })
    }

    /// Publishes `payload` to `channel`, sent again after each `429` until the
    /// run's deadline.
    pub(crate) async fn send(&self, channel: &str, payload: String) -> anyhow::Result<()> {
        let a = &*self.args;
        let url = fill(&self.template, a, channel);
        let body = match a.pub_format {
            PubFormat::Herald => {
                let channel = serde_json::to_string(channel)?;
                format!("{{\"channel\":{channel},\"data\":{payload}}}")
            }
            PubFormat::Raw => payload,
        };
        let give_up = Instant::now() + a.deadline;
        let res = loop {
            let mut req = self.client.post(&url).body(body.clone());
            if a.pub_format == PubFormat::Herald {
                req = req.header("content-type", "application/json");
            }
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
            if res.status() != reqwest::StatusCode::TOO_MANY_REQUESTS {
                break res;
            }
            let wait = retry_after(res.headers());
            if Instant::now() + wait > give_up {
                bail!("publish to {url} still answered 429 when the deadline came");
            }
            self.retries.count.fetch_add(1, Ordering::Relaxed);
            self.retries.waited_ms.fetch_add(
                u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            tokio::time::sleep(wait).await;
        };
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

/// Publishes `a.messages` round robin over the channels, at `a.rate` (with
/// `a.duration`, only for that long); returns the seconds taken.
pub(crate) async fn publish_all(
    publisher: &Publisher,
    a: &BenchArgs,
    run_id: &str,
    sh: &Shared,
    deadline: Instant,
) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let until = a.duration.map(|d| t0 + d);
    let interval = (a.rate > 0).then(|| Duration::from_secs_f64(1.0 / a.rate as f64));
    for m in 0..a.messages {
        if until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
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
pub(crate) fn spawn_publisher(publisher: Publisher, s: &Session) -> JoinHandle<Option<f64>> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    use super::*;

    /// A peer that answers `429` with `Retry-After: 0` to the first `refuse`
    /// requests, then `200`; returns its URL and how many requests it got.
    async fn refusing_peer(refuse: usize) -> (String, Arc<AtomicU64>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(AtomicU64::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as many body bytes as it announces.
                let body_at = loop {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0);
                    req.extend_from_slice(&buf[..n]);
                    if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&req[..body_at]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while req.len() < body_at + len {
                    let n = s.read(&mut buf).await.unwrap();
                    req.extend_from_slice(&buf[..n]);
                }
                let n = count.fetch_add(1, Ordering::SeqCst) as usize;
                let answer = if n < refuse {
                    "HTTP/1.1 429 Too Many Requests\r\nretry-after: 0\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
                };
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        (url, seen)
    }

    /// A publish refused with `429` is sent again, the same message, and the
    /// retries are counted; then it succeeds.
    #[tokio::test]
    async fn a_refused_publish_is_sent_again_after_retry_after() {
        let (url, seen) = refusing_peer(3).await;
        let a = Arc::new(BenchArgs {
            url,
            pub_format: PubFormat::Raw,
            deadline: Duration::from_secs(10),
            ..BenchArgs::default()
        });
        let p = Publisher::new(&a).unwrap();
        p.send("c", "{\"seq\":1}".to_owned()).await.unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 4, "three refusals, then the publish");
        assert_eq!(p.retries.count.load(Ordering::Relaxed), 3);
        let mut r = serde_json::json!({});
        p.retries.report(&mut r);
        assert_eq!(r["publish_retries"], 3);
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_bounded() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            retry_after(&h)
        };
        assert_eq!(with("3"), Duration::from_secs(3));
        assert_eq!(with("0"), Duration::ZERO);
        assert_eq!(with("86400"), MAX_RETRY_AFTER);
        assert_eq!(with("Wed, 21 Oct 2015 07:28:00 GMT"), Duration::from_secs(1));
        assert_eq!(retry_after(&HeaderMap::new()), Duration::from_secs(1));
    }
}
