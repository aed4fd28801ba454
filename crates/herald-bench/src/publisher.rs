//! Publishing: one request per message in the configured format, and the
//! publishing loop of the delivering scenarios.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::task::JoinHandle;

use crate::args::{fill, pub_template, BenchArgs, PubFormat};
use crate::session::Session;
use crate::track::Shared;
use crate::wire::{channel_name, payload};

/// Sends publishes in the configured format.
#[derive(Clone)]
pub(crate) struct Publisher {
    pub(crate) client: reqwest::Client,
    pub(crate) template: Arc<str>,
    pub(crate) args: Arc<BenchArgs>,
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
        })
    }

    pub(crate) async fn send(&self, channel: &str, payload: String) -> anyhow::Result<()> {
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

/// Publishes `a.messages` round robin over the channels, at `a.rate`; returns the seconds taken.
pub(crate) async fn publish_all(
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
