//! The node's typed configuration: namespaces and limits. Built and validated by
//! the binary; nothing here reads files or the environment.

use std::collections::HashMap;
use std::time::Duration;

use herald_broker::HistoryPolicy;

/// Options of a channel namespace (the part of a channel name before the first `:`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceOptions {
    /// Messages kept in history per channel (0: none).
    pub history_size: usize,
    /// Age after which history messages are dropped.
    pub history_ttl: Duration,
    /// Whether presence (who is subscribed) is kept.
    pub presence: bool,
    /// Whether join/leave events are pushed to subscribers.
    pub join_leave: bool,
    /// Whether clients may publish (with a token whose `publish` claim allows it).
    pub client_publish: bool,
    /// Whether anyone, even without a token or grant, may subscribe.
    pub anonymous_subscribe: bool,
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        Self {
            history_size: 1000,
            history_ttl: Duration::from_secs(600),
            presence: true,
            join_leave: false,
            client_publish: true,
            anonymous_subscribe: false,
        }
    }
}

impl NamespaceOptions {
    /// The history policy handed to the broker.
    pub fn history(&self) -> HistoryPolicy {
        HistoryPolicy {
            size: self.history_size,
            ttl: self.history_ttl,
        }
    }
}

/// Every bound the node enforces; each is documented in docs/protocol.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message `data`, in bytes (413 above).
    pub max_message_size: usize,
    /// Channels one connection may subscribe to (429 above).
    pub max_channels_per_connection: usize,
    /// Channels one publish request may name (400 above).
    pub max_channels_per_publish: usize,
    /// Simultaneous connections per app (429 above).
    pub max_connections_per_app: usize,
    /// Messages queued for one connection before it is treated as lagging and
    /// caught up from history.
    pub queue_len: usize,
    /// Largest page of a history read.
    pub max_history_page: usize,
    /// Messages one hub shard's inbox may hold. A publish waits for room below
    /// it (see `publish_wait`); what arrives without room (another node's
    /// publish, a presence event) past it is not queued but left to history:
    /// the channel's local subscribers catch up from there (nothing lost).
    pub hub_backlog: usize,
    /// How far behind a hub shard's fan-out may be (the age of the oldest
    /// message it has not finished delivering) for a publish to go ahead;
    /// beyond it publishes wait (see `publish_wait`). Zero: no bound in time.
    pub hub_lag: Duration,
    /// How long a publish waits for room in the hub (`hub_backlog`, `hub_lag`)
    /// before it is refused with `429 overloaded` and `Retry-After` (nothing
    /// appended). Zero: refused at once.
    pub publish_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024,
            max_channels_per_connection: 128,
            max_channels_per_publish: 100,
            max_connections_per_app: 100_000,
            queue_len: 1024,
            max_history_page: 1000,
            hub_backlog: 4096,
            hub_lag: Duration::from_millis(50),
            publish_wait: Duration::from_secs(1),
        }
    }
}

/// The node's configuration.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Options of channels in namespaces not listed in `namespaces`.
    pub default_namespace: NamespaceOptions,
    /// Options per namespace name (`""` is the namespace of names without `:`).
    pub namespaces: HashMap<String, NamespaceOptions>,
    /// Limits.
    pub limits: Limits,
    /// How long an idempotency key is remembered.
    pub idempotency_window: Duration,
    /// Presence entry lifetime; refreshed by live connections at a third of it.
    pub presence_ttl: Duration,
    /// Clock leeway when checking token `exp`, `nbf` and `iat`.
    pub token_leeway: Duration,
    /// How long app records are cached (CLI changes take effect within it).
    pub app_cache_ttl: Duration,
    /// The admin key, which also acts as any app's key. None: admin API disabled.
    pub admin_key: Option<String>,
    /// How often usage counters are written to the store.
    pub usage_flush_interval: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            default_namespace: NamespaceOptions::default(),
            namespaces: HashMap::new(),
            limits: Limits::default(),
            idempotency_window: Duration::from_secs(600),
            presence_ttl: Duration::from_secs(60),
            token_leeway: Duration::from_secs(10),
            app_cache_ttl: Duration::from_secs(1),
            admin_key: None,
            usage_flush_interval: Duration::from_secs(10),
        }
    }
}

impl NodeConfig {
    /// The options of namespace `ns`.
    pub fn namespace(&self, ns: &str) -> &NamespaceOptions {
        self.namespaces.get(ns).unwrap_or(&self.default_namespace)
    }
}
