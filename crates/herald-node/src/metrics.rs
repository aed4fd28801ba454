//! Prometheus metrics of one node, in a registry owned by the node (no globals, so
//! several servers can run in one test process).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    published: Counter,
    bytes_in: Counter,
    resets: Counter,
    lagged: Counter,
    latency: Histogram,
    direct: Counter,
    handed_back: Counter,
    hub_overflows: Counter,
    overloaded: Counter,
    hub_backlog: Gauge,
    hub_backlog_peak: Gauge,
    hub_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Handles of the per-transport series, resolved once (no label lookup or
    /// allocation on the delivery path).
    per_transport: [TransportSeries; 3],
}

#[derive(Clone)]
struct TransportSeries {
    connections: Gauge,
    delivered: Counter,
    bytes_out: Counter,
}

const TRANSPORTS: [&str; 3] = ["sse", "websocket", "longpoll"];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let connections = Family::<Labels, Gauge>::default();
        let delivered = Family::<Labels, Counter>::default();
        let bytes_out = Family::<Labels, Counter>::default();
        let published = Counter::default();
        let bytes_in = Counter::default();
        let resets = Counter::default();
        let lagged = Counter::default();
        let latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let direct = Counter::default();
        let handed_back = Counter::default();
        let hub_overflows = Counter::default();
        let overloaded = Counter::default();
        let hub_backlog = Gauge::default();
        let hub_backlog_peak = Gauge::default();
        let hub_lag = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "herald_publish_overloaded",
            "Publishes refused with 429 overloaded (no room in the hub within limits.publish_wait)",
            overloaded.clone(),
        );
        registry.register(
            "herald_hub_backlog",
            "Messages waiting in the hub's shard inboxes for fan-out (at the time of the scrape)",
            hub_backlog.clone(),
        );
        registry.register(
            "herald_hub_backlog_peak",
            "The most messages one hub shard's inbox held at once since the start (at most limits.hub_backlog)",
            hub_backlog_peak.clone(),
        );
        registry.register(
            "herald_hub_lag_seconds",
            "How far behind the most lagging hub shard's fan-out is (age of its oldest undelivered message)",
            hub_lag.clone(),
        );
        registry.register(
            "herald_hub_overflows",
            "Messages not queued in a full hub shard inbox (their subscribers caught up from history)",
            hub_overflows.clone(),
        );
        registry.register(
            "herald_direct_writes",
            "Writes the hub made straight to a sleeping connection's socket",
            direct.clone(),
        );
        registry.register(
            "herald_direct_handed_back",
            "Times the hub woke a connection's task instead (gap, control event, full socket)",
            handed_back.clone(),
        );
        registry.register(
            "herald_connections",
            "Open client connections by transport",
            connections.clone(),
        );
        registry.register(
            "herald_messages_delivered",
            "Messages written to clients by transport",
            delivered.clone(),
        );
        registry.register(
            "herald_bytes_delivered",
            "Bytes written to clients by transport",
            bytes_out.clone(),
        );
        registry.register(
            "herald_messages_published",
            "Messages appended to channels",
            published.clone(),
        );
        registry.register(
            "herald_bytes_published",
            "Bytes of message data published",
            bytes_in.clone(),
        );
        registry.register(
            "herald_resets",
            "Reset events sent (history no longer reached back)",
            resets.clone(),
        );
        registry.register(
            "herald_lagged_catchups",
            "Times a slow connection's queue overflowed and it caught up from history",
            lagged.clone(),
        );
        registry.register(
            "herald_publish_to_write_seconds",
            "Time from publish to the write of a live message to a client",
            latency.clone(),
        );
        let per_transport = TRANSPORTS.map(|t| {
            let l = vec![("transport", t)];
            TransportSeries {
                connections: connections.get_or_create(&l).clone(),
                delivered: delivered.get_or_create(&l).clone(),
                bytes_out: bytes_out.get_or_create(&l).clone(),
            }
        });
        Self {
            per_transport,
            registry,
            published,
            bytes_in,
            resets,
            lagged,
            latency,
            direct,
            handed_back,
            hub_overflows,
            overloaded,
            hub_backlog,
            hub_backlog_peak,
            hub_lag,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }

    fn series(&self, transport: &str) -> &TransportSeries {
        let i = TRANSPORTS.iter().position(|t| *t == transport).unwrap_or(0);
        &self.per_transport[i]
    }

    pub(crate) fn connection_opened(&self, transport: &'static str) {
        self.series(transport).connections.inc();
    }

    pub(crate) fn connection_closed(&self, transport: &'static str) {
        self.series(transport).connections.dec();
    }

    pub(crate) fn published(&self, messages: u64, bytes: u64) {
        self.published.inc_by(messages);
        self.bytes_in.inc_by(bytes);
    }

    pub(crate) fn delivered(&self, transport: &'static str, messages: u64, bytes: u64) {
        let series = self.series(transport);
        series.delivered.inc_by(messages);
        series.bytes_out.inc_by(bytes);
    }

    pub(crate) fn latency(&self, seconds: f64) {
        self.latency.observe(seconds);
    }

    /// Sets the hub's gauges (read at scrape time rather than kept up to date
    /// on the delivery path).
    pub(crate) fn hub_state(&self, backlog: usize, peak: usize, lag: std::time::Duration) {
        self.hub_backlog.set(i64::try_from(backlog).unwrap_or(i64::MAX));
        self.hub_backlog_peak.set(i64::try_from(peak).unwrap_or(i64::MAX));
        self.hub_lag.set(lag.as_secs_f64());
    }

    pub(crate) fn overloaded(&self) {
        self.overloaded.inc();
    }

    /// The counter the hub increments when its inbox overflows.
    pub(crate) fn hub_overflow_counter(&self) -> Counter {
        self.hub_overflows.clone()
    }

    pub(crate) fn direct_write(&self) {
        self.direct.inc();
    }

    pub(crate) fn handed_back(&self) {
        self.handed_back.inc();
    }

    pub(crate) fn reset(&self) {
        self.resets.inc();
    }

    pub(crate) fn lagged(&self) {
        self.lagged.inc();
    }
}
