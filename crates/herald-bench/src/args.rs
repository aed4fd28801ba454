//! What a run measures: [`BenchArgs`] and its typed values, the URL templates,
//! and the checks that do not depend on the machine.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

/// Herald's SSE endpoint: the default `--sub-url`.
pub const HERALD_SUB_URL: &str = "{url}/v1/apps/{app}/events?channel={channel}&token={token}";

/// Herald's WebSocket endpoint: the default `--sub-url` with `--transport ws`.
pub const HERALD_WS_URL: &str = "{url}/v1/apps/{app}/ws?token={token}";

/// Herald's publish endpoint: the default `--pub-url` with `--pub-format herald`.
pub const HERALD_PUB_URL: &str = "{url}/v1/apps/{app}/publish";

/// Nchan's publish endpoint: the default `--pub-url` with `--pub-format raw`.
pub const RAW_PUB_URL: &str = "{url}/pub?id={channel}";

/// At most this many reconnections per second in the churn scenario.
pub(crate) const MAX_CHURN_RATE: f64 = 1_000_000.0;

/// How a publish request carries the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PubFormat {
    /// Herald's API: `{"channel": …, "data": PAYLOAD}` as JSON, the app key as bearer.
    Herald,
    /// The payload itself is the body (Nchan's `POST /pub?id=CHANNEL`, the floor).
    Raw,
}

/// How subscribers connect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Server-Sent Events: a `GET` answered with `text/event-stream`.
    #[default]
    Sse,
    /// WebSocket (see [`WsFrames`]).
    #[value(alias = "websocket")]
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

/// What a WebSocket subscriber sends and how it reads what arrives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WsFrames {
    /// Herald's protocol: one `subscribe` frame per connection (with the `cursor` when
    /// resuming); the payload is the `data` of pushes of type `message`.
    #[default]
    Herald,
    /// No subscribe frame (the URL names the channel) and every text frame is the
    /// payload itself, as Nchan's WebSocket subscriber sends it. No resume.
    #[value(name = "none", alias = "raw")]
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

/// The scenarios that connect subscribers or publish to the messaging API
/// (the classroom has its own arguments: `scenario::classroom::ClassroomArgs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scenario {
    /// Memory per connection, connect rate.
    Idle,
    /// CPU per delivery, latency, losses.
    #[default]
    Fanout,
    /// The publish endpoint's throughput, no subscribers.
    Publish,
    /// Connections replaced while publishing.
    Churn,
    /// All dropped at once, all resuming at once.
    Resume,
    /// One publisher as fast as it can for a duration: latency, CPU, peak memory.
    Sustained,
}

impl Scenario {
    /// The name, as in the command line and the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Fanout => "fanout",
            Self::Publish => "publish",
            Self::Churn => "churn",
            Self::Resume => "resume",
            Self::Sustained => "sustained",
        }
    }

    /// Whether the scenario delivers messages to subscribers (and can draw a chart).
    pub fn delivers(self) -> bool {
        matches!(self, Self::Fanout | Self::Churn | Self::Resume | Self::Sustained)
    }
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchArgs {
    /// What to run.
    pub scenario: Scenario,
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
    /// Messages to publish (fanout; sustained: at most).
    pub messages: usize,
    /// Sustained: publish for this long (or until `messages`).
    pub duration: Option<Duration>,
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

impl BenchArgs {
    /// Checks the arguments that do not depend on the machine.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        let a = self;
        let s = a.scenario;
        if s == Scenario::Publish && a.transport == Transport::Ws {
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
            if s != Scenario::Churn {
                bail!("--churn-rate is for the churn scenario only");
            }
            if !(r.is_finite() && r > 0.0 && r <= MAX_CHURN_RATE) {
                bail!("--churn-rate must be a number of connections per second above 0 and at most 1000000");
            }
        }
        if a.duration.is_some() != (s == Scenario::Sustained) {
            bail!("--duration is for the sustained scenario, which needs it");
        }
        if s == Scenario::Sustained && a.messages == 0 {
            bail!("--max-messages must be at least 1");
        }
        if s == Scenario::Churn && a.messages == 0 {
            bail!("--messages must be at least 1 for churn (the churn lasts as long as the publishing)");
        }
        if s == Scenario::Resume && a.messages < 3 {
            bail!(
                "--messages must be at least 3 for resume (a third before the drop, a third while \
                 the subscribers are down, a third after)"
            );
        }
        if let Some(path) = &a.svg {
            if !s.delivers() {
                bail!("--svg needs a scenario that delivers messages: fanout, sustained, churn or resume");
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
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            scenario: Scenario::Fanout,
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
            duration: None,
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

pub(crate) fn fill(template: &str, a: &BenchArgs, channel: &str) -> String {
    template
        .replace("{url}", &a.url)
        .replace("{app}", &a.app)
        .replace("{channel}", channel)
        .replace("{token}", &a.token)
}

pub(crate) fn sub_template(a: &BenchArgs) -> &str {
    match (&a.sub_url, a.transport) {
        (Some(t), _) => t,
        (None, Transport::Sse) => HERALD_SUB_URL,
        (None, Transport::Ws) => HERALD_WS_URL,
    }
}

pub(crate) fn pub_template(a: &BenchArgs) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
