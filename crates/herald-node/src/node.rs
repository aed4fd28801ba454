//! The `Node` facade: every operation the HTTP faces (and the classroom) use.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use herald_broker::{
    Broker, ChannelKey, HistoryPolicy, HistoryRead, Idempotency, Member, Presence, PresenceEntry,
    Publication, Published,
};
use herald_protocol::{AppName, ChannelName, ErrorCode, EventName};
use herald_store::{AppRecord, AppSummary, DailyUsage, NewCredentials, Store};
use parking_lot::Mutex;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apps::AppCache;
use crate::auth::{self, Identity};
use crate::config::{NamespaceOptions, NodeConfig};
use crate::error::NodeError;
use crate::hub::{Hub, HubHandler, HubLimits, Queue};
use crate::metrics::Metrics;
use crate::session::{Session, Transport};
use crate::usage::{utc_day, Usage};

/// A publish request, validated by the caller's parser.
#[derive(Clone, Debug)]
pub struct PublishInput {
    /// Target channels (one or more).
    pub channels: Vec<ChannelName>,
    /// Event name.
    pub event: EventName,
    /// Compact JSON data.
    pub data: Arc<str>,
    /// Optional idempotency key.
    pub idempotency_key: Option<String>,
}

/// A channel with local subscribers.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelInfo {
    /// The channel name.
    pub channel: ChannelName,
    /// Connections subscribed to it.
    pub subscribers: usize,
}

/// An app's usage figures.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    /// The app.
    pub app: String,
    /// Connections open now (on this node).
    pub connections: u64,
    /// Per UTC day, newest first.
    pub days: Vec<DailyUsage>,
}

/// What a server API request was authorized with.
#[derive(Clone, Debug)]
pub enum Credential {
    /// The app's secret key (or the admin key).
    Key,
    /// A client token.
    Client(Box<Identity>),
}

/// How long shutdown waits, once the connections are closed, for the I/O they
/// and the classroom left running where nothing could await it (a `Drop`):
/// presence leaves, broker unsubscribes, staged saves ([`Node::spawn_io`]).
pub const SHUTDOWN_IO_LIMIT: Duration = Duration::from_secs(5);

/// What an `overloaded` refusal tells the publisher to wait before it tries
/// again (`Retry-After`): the hub's fan-out catches up within about a batch,
/// and a second is the least the HTTP header can say.
pub const OVERLOADED_RETRY_AFTER: Duration = Duration::from_secs(1);

struct Inner {
    config: NodeConfig,
    broker: Arc<dyn Broker>,
    presence: Arc<dyn Presence>,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    metrics: Metrics,
    usage: Usage,
    apps: Mutex<AppCache>,
    /// Held while usage moves from memory to the store, so that `stats` never
    /// sees it in neither place.
    usage_flush: tokio::sync::Mutex<()>,
    shutdown: CancellationToken,
    /// I/O started where nothing can await it; shutdown waits for it.
    io: TaskTracker,
    next_id: AtomicU64,
    node_id: String,
}

/// The node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl Node {
    /// Wires a node and starts its background tasks (usage flush, presence sweep)
    /// on the current tokio runtime; they stop on [`Node::shutdown`].
    pub fn new(
        config: NodeConfig,
        broker: Arc<dyn Broker>,
        presence: Arc<dyn Presence>,
        store: Arc<dyn Store>,
    ) -> Self {
        let metrics = Metrics::new();
        let hub = Hub::new(
            HubLimits {
                backlog: config.limits.hub_backlog,
                lag: config.limits.hub_lag,
            },
            metrics.hub_overflow_counter(),
        );
        broker.set_handler(Arc::new(HubHandler(hub.clone())));
        let node = Node {
            inner: Arc::new(Inner {
                config,
                broker,
                presence,
                store,
                hub,
                metrics,
                usage: Usage::default(),
                apps: Mutex::new(AppCache::default()),
                usage_flush: tokio::sync::Mutex::new(()),
                shutdown: CancellationToken::new(),
                io: TaskTracker::new(),
                next_id: AtomicU64::new(1),
                node_id: herald_broker::new_epoch().to_string(),
            }),
        };
        node.spawn_background();
        node
    }

    fn spawn_background(&self) {
        let weak = Arc::downgrade(&self.inner);
        let stop = self.inner.shutdown.clone();
        let flush_every = self.inner.config.usage_flush_interval;
        tokio::spawn(async move {
            let mut usage_tick = tokio::time::interval(flush_every);
            let mut sweep_tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = usage_tick.tick() => {
                        let Some(inner) = weak.upgrade() else { break };
                        Node { inner }.flush_usage().await;
                    }
                    _ = sweep_tick.tick() => {
                        let Some(inner) = weak.upgrade() else { break };
                        Node { inner }.sweep_presence().await;
                    }
                }
            }
        });
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The Prometheus text of the metrics, with the hub's state as of now.
    pub fn render_metrics(&self) -> String {
        let hub = &self.inner.hub;
        self.inner
            .metrics
            .hub_state(hub.backlog(), hub.backlog_peak(), hub.lag());
        self.inner.metrics.render()
    }

    /// The store (for the admin API and the classroom).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Cancelled when the node shuts down: connections end and clients reconnect.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Starts shutting down: every session is told to end; usage is flushed.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.flush_usage().await;
    }

    /// Runs `io` to its end, for I/O started where nothing can await it (a
    /// `Drop`): it is polled once at once (most such calls finish right there),
    /// and what is left runs as a task that [`Node::drain_io`] waits for at
    /// shutdown. Outside a tokio runtime it cannot run: logged and dropped.
    pub fn spawn_io(&self, what: &'static str, io: impl Future<Output = ()> + Send + 'static) {
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::warn!(what, "no runtime to finish this on; skipped");
            return;
        }
        let mut io = Box::pin(io);
        if io.as_mut().poll(&mut Context::from_waker(Waker::noop())) == Poll::Ready(()) {
            return;
        }
        self.inner.io.spawn(io);
    }

    /// Waits for the I/O handed to [`Node::spawn_io`], at most `limit`; false
    /// (and logged) when some was still running then.
    pub async fn drain_io(&self, limit: Duration) -> bool {
        self.inner.io.close();
        let left = self.inner.io.len();
        if left == 0 {
            return true;
        }
        tracing::info!(tasks = left, "waiting for the I/O of closed connections");
        if tokio::time::timeout(limit, self.inner.io.wait()).await.is_err() {
            tracing::warn!(
                tasks = self.inner.io.len(),
                ?limit,
                "shutdown did not wait longer for the I/O of closed connections"
            );
            return false;
        }
        true
    }

    // ---- apps and credentials ----

    /// The app named `name`, from a cache of `app_cache_ttl` (bounded: apps.rs).
    ///
    /// # Errors
    /// `invalid_app_name`, `app_not_found`, `store_unavailable`.
    pub async fn app(&self, name: &str) -> Result<(AppName, Arc<AppRecord>), NodeError> {
        let app =
            AppName::parse(name).map_err(|e| NodeError::new(ErrorCode::InvalidAppName, e.to_string()))?;
        let ttl = self.inner.config.app_cache_ttl;
        let cached = self.inner.apps.lock().fresh(name, ttl);
        let record = match cached {
            Some(r) => r,
            None => {
                let r = match self.inner.store.app(name).await {
                    Ok(r) => r.map(Arc::new),
                    Err(e) => {
                        // The database is down: keep serving an app we knew (its
                        // keys as of the last read) rather than refuse everyone.
                        let stale = self.inner.apps.lock().stale(name);
                        match stale {
                            Some(rec) => {
                                tracing::warn!(app = name, error = %e, "store unavailable; using the cached app");
                                return Ok((app, rec));
                            }
                            None => return Err(e.into()),
                        }
                    }
                };
                self.inner.apps.lock().put(name, r.clone());
                r
            }
        };
        match record {
            Some(r) => Ok((app, r)),
            None => Err(NodeError::new(
                ErrorCode::AppNotFound,
                format!("there is no app named {name:?}"),
            )),
        }
    }

    /// Forgets cached app records (after the admin API changed one).
    pub fn forget_app(&self, name: &str) {
        self.inner.apps.lock().forget(name);
    }

    /// True when `bearer` is the admin key.
    pub fn is_admin(&self, bearer: &str) -> bool {
        match &self.inner.config.admin_key {
            Some(k) => !bearer.is_empty() && bool::from(k.as_bytes().ct_eq(bearer.as_bytes())),
            None => false,
        }
    }

    /// Checks server API credentials: the app's key, the admin key, or (where
    /// `allow_token`) a client token.
    ///
    /// # Errors
    /// `unauthorized` without credentials, `invalid_key`/`invalid_token`, `app_not_found`.
    pub async fn authorize(
        &self,
        app: &str,
        bearer: Option<&str>,
        allow_token: bool,
    ) -> Result<(AppName, Credential), NodeError> {
        let (name, record) = self.app(app).await?;
        let Some(bearer) = bearer.filter(|b| !b.is_empty()) else {
            return Err(NodeError::new(
                ErrorCode::Unauthorized,
                "send the app's secret key as 'Authorization: Bearer <key>'",
            ));
        };
        // Keys first: an admin key may look like a token (dots are allowed in it).
        if record.verify_key(bearer) || self.is_admin(bearer) {
            return Ok((name, Credential::Key));
        }
        if auth::looks_like_token(bearer) {
            if !allow_token {
                return Err(NodeError::new(
                    ErrorCode::Forbidden,
                    "this endpoint needs the app's secret key, not a client token",
                ));
            }
            let id = auth::verify_token(&record, bearer, self.inner.config.token_leeway)?;
            return Ok((name, Credential::Client(Box::new(id))));
        }
        Err(NodeError::new(
            ErrorCode::InvalidKey,
            format!("the key is not valid for app {app:?}"),
        ))
    }

    /// Authenticates a browser: its token, or anonymous without one.
    ///
    /// # Errors
    /// `app_not_found`, `invalid_token`, `token_expired`.
    pub async fn authenticate_client(
        &self,
        app: &str,
        token: Option<&str>,
    ) -> Result<(AppName, Identity), NodeError> {
        let (name, record) = self.app(app).await?;
        match token.filter(|t| !t.is_empty()) {
            None => Ok((name, Identity::anonymous())),
            Some(t) => Ok((
                name,
                auth::verify_token(&record, t, self.inner.config.token_leeway)?,
            )),
        }
    }

    /// Creates an app (admin).
    ///
    /// # Errors
    /// `app_exists`, `invalid_app_name`, `store_unavailable`.
    pub async fn create_app(&self, name: &str) -> Result<NewCredentials, NodeError> {
        AppName::parse(name).map_err(|e| NodeError::new(ErrorCode::InvalidAppName, e.to_string()))?;
        let c = self.inner.store.create_app(name).await?;
        self.forget_app(name);
        Ok(c)
    }

    /// Every app (admin).
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn list_apps(&self) -> Result<Vec<AppSummary>, NodeError> {
        Ok(self.inner.store.list_apps().await?)
    }

    /// Rotates an app's credentials (admin).
    ///
    /// # Errors
    /// `invalid_app_name`, `app_not_found`, `store_unavailable`.
    pub async fn rotate_app(
        &self,
        name: &str,
        grace: std::time::Duration,
    ) -> Result<NewCredentials, NodeError> {
        AppName::parse(name).map_err(|e| NodeError::new(ErrorCode::InvalidAppName, e.to_string()))?;
        let c = self.inner.store.rotate_app(name, grace).await?;
        self.forget_app(name);
        Ok(c)
    }

    // ---- connections ----

    /// Opens a session for a client (counted against the app's connection quota).
    ///
    /// # Errors
    /// `too_many_connections`, `shutting_down`.
    pub fn connect(
        &self,
        app: &AppName,
        identity: Identity,
        transport: Transport,
        client_id: Option<String>,
    ) -> Result<Session, NodeError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(NodeError::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down; reconnect",
            ));
        }
        let usage = self.inner.usage.of(app);
        let max = self.inner.config.limits.max_connections_per_app;
        if !usage.try_connect(max) {
            return Err(NodeError::new(
                ErrorCode::TooManyConnections,
                format!("app {app} has reached its limit of {max} connections"),
            ));
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let client_id = client_id.unwrap_or_else(|| format!("{}:{id}", self.inner.node_id));
        Ok(Session::new(
            self.clone(),
            id,
            client_id,
            app.clone(),
            identity,
            transport,
            usage,
        ))
    }

    /// Registers connection `id` on `key` and returns once the broker delivers
    /// the channel to this node. Every listener subscribes at the broker (which
    /// counts them): a second one arriving while the first one's subscription
    /// is still being confirmed waits for it too, instead of reading history
    /// before the channel's messages reach the node.
    pub(crate) async fn listen(&self, key: &ChannelKey, id: u64, queue: Arc<Queue>) -> Result<(), NodeError> {
        if self.inner.hub.add(key, id, queue) {
            if let Err(e) = self.inner.broker.subscribe(key).await {
                // The broker counts a failed subscribe too: undo both.
                self.unlisten(key, id);
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Undoes [`Node::listen`] (the broker's part finishes in the background).
    pub(crate) fn unlisten(&self, key: &ChannelKey, id: u64) {
        if self.inner.hub.remove(key, id) {
            let broker = self.inner.broker.clone();
            let key = key.clone();
            self.spawn_io("broker unsubscribe", async move {
                if let Err(e) = broker.unsubscribe(&key).await {
                    tracing::warn!(error = %e, "broker unsubscribe failed");
                }
            });
        }
    }

    /// Reads every message after `since` (`u64::MAX`: only the position).
    pub(crate) async fn history_all(
        &self,
        key: &ChannelKey,
        policy: HistoryPolicy,
        since: u64,
    ) -> Result<HistoryRead, NodeError> {
        let page = self.inner.config.limits.max_history_page.max(1);
        if since == u64::MAX {
            return Ok(self.inner.broker.history(key, policy, u64::MAX, 0).await?);
        }
        let mut read = self.inner.broker.history(key, policy, since, page).await?;
        loop {
            let last = read.messages.last().map(|m| m.offset).unwrap_or(since);
            if read.messages.len() < page || last >= read.top {
                return Ok(read);
            }
            let next = self.inner.broker.history(key, policy, last, page).await?;
            if next.epoch != read.epoch {
                read.complete = false;
                return Ok(read);
            }
            let more = next.messages.len();
            read.top = next.top;
            read.messages.extend(next.messages);
            if more == 0 {
                return Ok(read);
            }
        }
    }

    fn presence_payload(key: &ChannelKey, action: &str, entry: &PresenceEntry) -> Arc<str> {
        let info: serde_json::Value = serde_json::from_str(&entry.info).unwrap_or(serde_json::Value::Null);
        Arc::from(
            serde_json::json!({"channel": key.channel.as_str(), "action": action, "user": entry.user, "info": info}).to_string(),
        )
    }

    pub(crate) async fn presence_join(
        &self,
        key: &ChannelKey,
        client: &str,
        entry: PresenceEntry,
        ns: &NamespaceOptions,
    ) {
        let ttl = self.inner.config.presence_ttl;
        match self.inner.presence.join(key, client, entry.clone(), ttl).await {
            Ok(true) if ns.join_leave => {
                let payload = Self::presence_payload(key, "join", &entry);
                if let Err(e) = self.inner.broker.broadcast(key, payload).await {
                    tracing::warn!(error = %e, "presence join broadcast failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "presence join failed"),
        }
    }

    pub(crate) async fn presence_leave(&self, key: &ChannelKey, client: &str, ns: &NamespaceOptions) {
        match self.inner.presence.leave(key, client).await {
            Ok(Some(entry)) if ns.join_leave => {
                let payload = Self::presence_payload(key, "leave", &entry);
                if let Err(e) = self.inner.broker.broadcast(key, payload).await {
                    tracing::warn!(error = %e, "presence leave broadcast failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "presence leave failed"),
        }
    }

    async fn sweep_presence(&self) {
        match self.inner.presence.sweep().await {
            Ok(left) => {
                for ev in left {
                    let ns = self.inner.config.namespace(ev.key.channel.namespace());
                    if ns.join_leave {
                        let payload = Self::presence_payload(&ev.key, "leave", &ev.entry);
                        let _ = self.inner.broker.broadcast(&ev.key, payload).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "presence sweep failed"),
        }
    }

    // ---- publish, history, presence, channels, stats ----

    /// Publishes from the server API (the app key allows every channel).
    ///
    /// Waits up to `limits.publish_wait` for room in the hub when the fan-out
    /// lags (backpressure: a slower answer).
    ///
    /// # Errors
    /// `message_too_large`, `bad_request` (no or too many channels),
    /// `idempotency_conflict`, `broker_unavailable`, `overloaded` (no room in
    /// time; with a retry delay). Nothing is appended on error.
    pub async fn publish(&self, app: &AppName, input: PublishInput) -> Result<Vec<Published>, NodeError> {
        self.check_publish_input(&input)?;
        self.publish_checked(app, input).await
    }

    async fn publish_checked(&self, app: &AppName, input: PublishInput) -> Result<Vec<Published>, NodeError> {
        let targets = input
            .channels
            .iter()
            .map(|c| (c.clone(), self.inner.config.namespace(c.namespace()).history()))
            .collect();
        let idempotency = input.idempotency_key.as_ref().map(|k| Idempotency {
            key: k.clone(),
            fingerprint: fingerprint(&input),
            window: self.inner.config.idempotency_window,
        });
        let n = input.channels.len() as u64;
        let bytes = input.data.len() as u64 * n;
        // Backpressure: room in the hub for this node's fan-out first, so that a
        // publish that cannot be delivered soon is refused before it is appended.
        let keys: Vec<ChannelKey> = input
            .channels
            .iter()
            .map(|c| ChannelKey::new(app.clone(), c.clone()))
            .collect();
        let wait = self.inner.config.limits.publish_wait;
        let Ok(room) = self.inner.hub.room(&keys, wait).await else {
            self.inner.metrics.overloaded();
            return Err(NodeError::new(
                ErrorCode::Overloaded,
                format!(
                    "messages arrive faster than this server delivers them, and none could go out within {wait:?}; nothing was published: publish it again after the Retry-After delay"
                ),
            )
            .retry_after(OVERLOADED_RETRY_AFTER));
        };
        let publication = Publication {
            app: app.clone(),
            targets,
            event: input.event,
            data: input.data,
            idempotency,
        };
        let res = self.inner.broker.publish(publication).await;
        // The broker has queued the message with the hub (or failed): give the room back.
        drop(room);
        let res = res?;
        self.inner.metrics.published(n, bytes);
        self.inner.usage.of(app).published(n, bytes);
        Ok(res)
    }

    /// Publishes on behalf of a client, after checking its `publish` grants.
    ///
    /// # Errors
    /// `forbidden` plus those of [`Node::publish`].
    pub async fn publish_as_client(
        &self,
        app: &AppName,
        identity: &Identity,
        mut input: PublishInput,
    ) -> Result<Vec<Published>, NodeError> {
        for c in &input.channels {
            identity.check_publish(c, self.inner.config.namespace(c.namespace()))?;
        }
        // A client's idempotency keys live apart from the backend's and from other
        // users', so nobody can claim a key another publisher will use.
        self.check_publish_input(&input)?;
        if let Some(k) = input.idempotency_key.take() {
            input.idempotency_key = Some(format!("client:{}:{k}", identity.user));
        }
        self.publish_checked(app, input).await
    }

    fn check_publish_input(&self, input: &PublishInput) -> Result<(), NodeError> {
        let limits = &self.inner.config.limits;
        if input.channels.is_empty() {
            return Err(NodeError::new(
                ErrorCode::MissingParameter,
                "name a \"channel\" or \"channels\" to publish to",
            ));
        }
        if input.channels.len() > limits.max_channels_per_publish {
            return Err(NodeError::new(
                ErrorCode::BadRequest,
                format!(
                    "a publish may name at most {} channels",
                    limits.max_channels_per_publish
                ),
            ));
        }
        if input.data.len() > limits.max_message_size {
            return Err(NodeError::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "message data is {} bytes; the limit is {} bytes",
                    input.data.len(),
                    limits.max_message_size
                ),
            ));
        }
        if let Some(k) = &input.idempotency_key {
            if k.is_empty() || k.len() > 256 {
                return Err(NodeError::new(
                    ErrorCode::InvalidParameter,
                    "idempotency_key must be 1 to 256 characters",
                ));
            }
            // An id ends up in logs, keys of other stores and other tools'
            // lines: no line breaks, NUL or other control characters.
            if k.chars().any(char::is_control) {
                return Err(NodeError::new(
                    ErrorCode::InvalidParameter,
                    "idempotency_key may not hold control characters (line breaks, NUL, ...)",
                ));
            }
        }
        Ok(())
    }

    /// History of a channel: after `since` (exclusive) or, without it, the newest
    /// `limit` messages.
    ///
    /// # Errors
    /// `broker_unavailable`.
    pub async fn history(
        &self,
        app: &AppName,
        channel: &ChannelName,
        since: Option<u64>,
        limit: usize,
    ) -> Result<HistoryRead, NodeError> {
        let key = ChannelKey::new(app.clone(), channel.clone());
        let policy = self.inner.config.namespace(channel.namespace()).history();
        let limit = limit.min(self.inner.config.limits.max_history_page);
        match since {
            Some(since) => Ok(self.inner.broker.history(&key, policy, since, limit).await?),
            None => {
                let pos = self.inner.broker.history(&key, policy, u64::MAX, 0).await?;
                let since = pos.top.saturating_sub(limit as u64);
                let mut read = self.inner.broker.history(&key, policy, since, limit).await?;
                read.complete = true;
                Ok(read)
            }
        }
    }

    /// Members present on a channel.
    ///
    /// # Errors
    /// `broker_unavailable`.
    pub async fn presence(&self, app: &AppName, channel: &ChannelName) -> Result<Vec<Member>, NodeError> {
        let key = ChannelKey::new(app.clone(), channel.clone());
        Ok(self.inner.presence.members(&key).await?)
    }

    /// Channels of `app` with local subscribers.
    pub fn channels(&self, app: &AppName) -> Vec<ChannelInfo> {
        self.inner
            .hub
            .channels_of(app)
            .into_iter()
            .map(|(channel, subscribers)| ChannelInfo { channel, subscribers })
            .collect()
    }

    /// Usage of `app`: stored days plus what this node has not written yet.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn stats(&self, app: &AppName) -> Result<Stats, NodeError> {
        let usage = self.inner.usage.of(app);
        let (mut days, pending) = {
            let _flush = self.inner.usage_flush.lock().await;
            (self.inner.store.usage(app.as_str(), 31).await?, usage.peek())
        };
        let today = utc_day(herald_broker::now_millis());
        match days.iter_mut().find(|d| d.day == today) {
            Some(d) => {
                d.published += pending.published;
                d.delivered += pending.delivered;
                d.bytes_in += pending.bytes_in;
                d.bytes_out += pending.bytes_out;
                d.peak_connections = d.peak_connections.max(pending.peak_connections);
            }
            None if !pending.is_empty() => days.insert(
                0,
                DailyUsage {
                    day: today,
                    published: pending.published,
                    delivered: pending.delivered,
                    bytes_in: pending.bytes_in,
                    bytes_out: pending.bytes_out,
                    peak_connections: pending.peak_connections,
                },
            ),
            None => {}
        }
        Ok(Stats {
            app: app.to_string(),
            connections: usage.connections.load(Ordering::Relaxed),
            days,
        })
    }

    /// Writes pending usage counters to the store (kept for the next try on failure).
    pub async fn flush_usage(&self) {
        let _flush = self.inner.usage_flush.lock().await;
        let day = utc_day(herald_broker::now_millis());
        for (app, usage) in self.inner.usage.all() {
            let delta = usage.take();
            if delta.is_empty() {
                continue;
            }
            if let Err(e) = self.inner.store.add_usage(app.as_str(), &day, delta).await {
                tracing::warn!(error = %e, app = %app, "usage flush failed; will retry");
                usage.restore(delta);
            }
        }
    }

    /// Checks that the store and the broker answer.
    ///
    /// # Errors
    /// `store_unavailable` or `broker_unavailable`.
    pub async fn ready(&self) -> Result<(), NodeError> {
        self.inner.store.ping().await?;
        self.inner.broker.ping().await?;
        if self.inner.shutdown.is_cancelled() {
            return Err(NodeError::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            ));
        }
        Ok(())
    }
}

fn fingerprint(input: &PublishInput) -> u64 {
    let mut h = Sha256::new();
    for c in &input.channels {
        h.update(c.as_str().as_bytes());
        h.update([0]);
    }
    h.update(input.event.as_str().as_bytes());
    h.update([0]);
    h.update(input.data.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}
