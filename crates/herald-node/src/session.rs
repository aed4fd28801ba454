//! A client's session: one connection (SSE, WebSocket) or one long-poll request.
//!
//! Every transport drives a `Session` the same way: `subscribe` each channel with
//! the position the client resumes from, then loop on `ready().await` and
//! `drain().await`, writing the returned [`Event`]s. This file is where "nothing
//! lost, nothing twice" is kept, so every function here obeys one rule: **a
//! channel's position only moves forward by exactly the messages handed to the
//! transport, or by an explicit [`Event::Reset`]**.
//!
//! The seam between history and live: `subscribe` registers with the hub *before*
//! it reads history, so a message published meanwhile is both in history and in
//! the queue; `drain` drops what is at or below the position (duplicate), reads
//! history to fill a hole (a message above position + 1), and turns an epoch
//! change or a hole history cannot fill into a reset. A queue that overflowed
//! (slow reader) is caught up from history the same way.

use std::sync::Arc;
use std::time::Duration;

use herald_broker::{ChannelKey, HistoryRead, PresenceEntry};
use herald_protocol::{AppName, ChannelName, ErrorCode, EventName, Position};
use tokio::time::Instant;

use crate::auth::Identity;
use crate::config::NamespaceOptions;
use crate::error::NodeError;
use crate::hub::{Delivery, Item, Queue};
use crate::node::{Node, PublishInput};
use crate::usage::AppUsage;

/// The transport a session serves (for metrics and presence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Server-Sent Events.
    Sse,
    /// WebSocket.
    WebSocket,
    /// One long-poll request.
    LongPoll,
}

impl Transport {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::WebSocket => "websocket",
            Transport::LongPoll => "longpoll",
        }
    }
}

/// Why a channel's history can no longer be followed, and where it stands now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reset {
    /// The channel.
    pub channel: ChannelName,
    /// Its current epoch.
    pub epoch: Arc<str>,
    /// The position the session continues from.
    pub offset: u64,
    /// `epoch_changed`, `history_gone` or `position_ahead`.
    pub reason: &'static str,
    /// The channel's cursor after the reset.
    pub cursor: String,
}

impl Reset {
    /// `{"channel":..,"epoch":..,"offset":..,"reason":..,"cursor":..}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "channel": self.channel.as_str(),
            "epoch": &*self.epoch,
            "offset": self.offset,
            "reason": self.reason,
            "cursor": self.cursor,
        })
        .to_string()
    }
}

/// What a transport writes.
#[derive(Clone)]
pub enum Event {
    /// A message, in order, exactly once.
    Message {
        /// The message and its wire formats.
        delivery: Arc<Delivery>,
        /// True when it came live from the hub (not replayed from history).
        live: bool,
    },
    /// History no longer reaches back: the client should reload its state.
    Reset(Reset),
    /// A presence join or leave: `{"channel","action","user","info"}`.
    Presence(Arc<str>),
    /// Bytes the hub's direct writer could not finish: write them first, as they are.
    Raw(bytes::Bytes),
}

/// Where one channel of a session stands: what a [`crate::hub::Direct`] writer
/// needs to continue it exactly.
#[derive(Clone, Debug)]
pub struct ChannelPosition {
    /// The channel.
    pub channel: ChannelName,
    /// Its epoch.
    pub epoch: Arc<str>,
    /// The offset of the last message handed to the transport.
    pub offset: u64,
    /// The channel's cursor part at that offset.
    pub cursor: Arc<str>,
}

/// A direct writer samples the publish-to-write latency on one write in this
/// many (the histogram is the dearest part of counting a delivery, measured).
pub const LATENCY_SAMPLE: u32 = 8;

/// Counts deliveries made outside the session (by a direct writer) in the usage
/// figures and metrics, as [`Session::delivered`] does.
#[derive(Clone)]
pub struct Tally {
    node: Node,
    usage: Arc<AppUsage>,
    transport: Transport,
    writes: u32,
}

impl Tally {
    /// Records that the direct writer handed a delivery back to the task.
    pub fn handed_back(&self) {
        self.node.metrics().handed_back();
    }

    /// Records that `messages` messages of `bytes` bytes were written, and (for
    /// one write in [`LATENCY_SAMPLE`]) the publish-to-write latency of the newest.
    pub fn delivered(&mut self, messages: u64, bytes: u64, newest: &Delivery) {
        self.usage.delivered(messages, bytes);
        let metrics = self.node.metrics();
        metrics.direct_write();
        metrics.delivered(self.transport.as_str(), messages, bytes);
        self.writes = self.writes.wrapping_add(1);
        if self.writes % LATENCY_SAMPLE == 1 {
            let ms = herald_broker::now_millis() - newest.envelope.ts;
            metrics.latency(ms.max(0) as f64 / 1000.0);
        }
    }
}

struct ChannelState {
    key: ChannelKey,
    ns: NamespaceOptions,
    epoch: Arc<str>,
    offset: u64,
    cursor: Arc<str>,
    presence: bool,
}

impl ChannelState {
    fn set(&mut self, epoch: Arc<str>, offset: u64) {
        self.cursor = Arc::from(
            Position {
                channel: self.key.channel.clone(),
                epoch: epoch.to_string(),
                offset,
            }
            .encode(),
        );
        self.epoch = epoch;
        self.offset = offset;
    }
}

/// A session's channels, in subscription order, looked up by name.
struct Channels(Vec<ChannelState>);

impl Channels {
    fn get(&self, c: &ChannelName) -> Option<&ChannelState> {
        self.0.iter().find(|st| st.key.channel == *c)
    }

    fn get_mut(&mut self, c: &ChannelName) -> Option<&mut ChannelState> {
        self.0.iter_mut().find(|st| st.key.channel == *c)
    }

    fn contains_key(&self, c: &ChannelName) -> bool {
        self.get(c).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn push(&mut self, st: ChannelState) {
        self.0.reserve_exact(1);
        self.0.push(st);
    }

    fn remove(&mut self, c: &ChannelName) -> Option<ChannelState> {
        let i = self.0.iter().position(|st| st.key.channel == *c)?;
        Some(self.0.remove(i))
    }

    fn values(&self) -> impl Iterator<Item = &ChannelState> {
        self.0.iter()
    }

    fn names(&self) -> Vec<ChannelName> {
        self.0.iter().map(|st| st.key.channel.clone()).collect()
    }
}

/// Appends the history messages that continue the channel's position (up to
/// `until` when given) as replayed events, advancing the position with each.
fn replay(
    st: &mut ChannelState,
    messages: Vec<Arc<herald_protocol::Envelope>>,
    until: Option<u64>,
    events: &mut Vec<Event>,
) {
    for m in messages {
        if until.is_some_and(|u| m.offset > u) {
            break;
        }
        if m.offset == st.offset + 1 {
            st.offset = m.offset;
            let d = Arc::new(Delivery::new(m));
            st.cursor = d.cursor.clone();
            events.push(Event::Message {
                delivery: d,
                live: false,
            });
        }
    }
}

/// Waits for a session's queue (see [`Session::waiter`]).
pub struct Waiter(Arc<Queue>);

impl Waiter {
    /// Returns when the session has queued items to drain. Cancel-safe.
    pub async fn ready(&self) {
        self.0.ready().await;
    }
}

/// A client's session. See the module doc.
pub struct Session {
    node: Node,
    id: u64,
    client_id: String,
    app: AppName,
    identity: Identity,
    transport: Transport,
    queue: Arc<Queue>,
    /// In subscription order. A Vec, not a map: a connection has few channels,
    /// and an idle connection's memory is what limits a node (one channel in a
    /// map took 4 buckets, ~530 bytes; here ~140).
    channels: Channels,
    usage: Arc<AppUsage>,
    last_presence_refresh: Instant,
    keep_presence: bool,
}

impl Session {
    pub(crate) fn new(
        node: Node,
        id: u64,
        client_id: String,
        app: AppName,
        identity: Identity,
        transport: Transport,
        usage: Arc<AppUsage>,
    ) -> Self {
        node.metrics().connection_opened(transport.as_str());
        let queue = Arc::new(Queue::new(node.config().limits.queue_len));
        Self {
            node,
            id,
            client_id,
            app,
            identity,
            transport,
            queue,
            channels: Channels(Vec::new()),
            usage,
            last_presence_refresh: Instant::now(),
            keep_presence: transport == Transport::LongPoll,
        }
    }

    /// The app.
    pub fn app(&self) -> &AppName {
        &self.app
    }

    /// The connection's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The session id (unique on this node).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Replaces the identity with a refreshed token's (same user required), and
    /// unsubscribes the channels the new token no longer allows; returns those.
    ///
    /// # Errors
    /// `forbidden` when the new token is for another user (nothing changes then).
    pub async fn refresh(&mut self, identity: Identity) -> Result<Vec<ChannelName>, NodeError> {
        if identity.user != self.identity.user {
            return Err(NodeError::new(
                ErrorCode::Forbidden,
                "a refreshed token must be for the same user; reconnect to change users",
            ));
        }
        self.identity = identity;
        let revoked: Vec<ChannelName> = self
            .channels
            .names()
            .into_iter()
            .filter(|c| {
                let ns = self.node.config().namespace(c.namespace());
                self.identity.check_subscribe(c, ns).is_err()
            })
            .collect();
        for c in &revoked {
            self.unsubscribe(c).await;
        }
        Ok(revoked)
    }

    /// True when subscribed to `channel`.
    pub fn is_subscribed(&self, channel: &ChannelName) -> bool {
        self.channels.contains_key(channel)
    }

    /// The subscribed channels, in subscription order.
    pub fn channels(&self) -> Vec<ChannelName> {
        self.channels.names()
    }

    /// The cursor over every subscribed channel.
    pub fn cursor(&self) -> String {
        let mut out = String::new();
        for (i, st) in self.channels.values().enumerate() {
            if i > 0 {
                out.push('.');
            }
            out.push_str(&st.cursor);
        }
        out
    }

    /// The cursor of one channel.
    pub fn channel_cursor(&self, channel: &ChannelName) -> Option<Arc<str>> {
        self.channels.get(channel).map(|s| s.cursor.clone())
    }

    /// Subscribes to `channel`, resuming after `from` when given (else from now).
    /// Returns what must be written first: the messages after `from`, or a reset.
    ///
    /// # Errors
    /// `forbidden`, `too_many_channels`, `broker_unavailable`; on error the session
    /// is not subscribed to the channel.
    pub async fn subscribe(
        &mut self,
        channel: ChannelName,
        from: Option<&Position>,
    ) -> Result<Vec<Event>, NodeError> {
        if self.channels.contains_key(&channel) {
            return Ok(Vec::new());
        }
        let ns = self.node.config().namespace(channel.namespace()).clone();
        self.identity.check_subscribe(&channel, &ns)?;
        let max = self.node.config().limits.max_channels_per_connection;
        if self.channels.len() >= max {
            return Err(NodeError::new(
                ErrorCode::TooManyChannels,
                format!("a connection may subscribe to at most {max} channels"),
            ));
        }
        let key = ChannelKey::new(self.app.clone(), channel.clone());
        // Listen first, read history second: see the module doc.
        self.node.listen(&key, self.id, self.queue.clone()).await?;
        let since = from.map_or(u64::MAX, |p| p.offset);
        let read = match self.node.history_all(&key, ns.history(), since).await {
            Ok(r) => r,
            Err(e) => {
                self.node.unlisten(&key, self.id);
                return Err(e);
            }
        };
        let mut st = ChannelState {
            key: key.clone(),
            ns: ns.clone(),
            epoch: read.epoch.clone(),
            offset: read.top,
            cursor: Arc::from(""),
            presence: false,
        };
        let mut events = Vec::new();
        match from {
            None => st.set(read.epoch.clone(), read.top),
            Some(p) => {
                let reason = if *p.epoch != *read.epoch {
                    Some("epoch_changed")
                } else if p.offset > read.top {
                    Some("position_ahead")
                } else if !read.complete {
                    Some("history_gone")
                } else {
                    None
                };
                match reason {
                    Some(reason) => {
                        st.set(read.epoch.clone(), read.top);
                        events.push(self.reset_event(&st, reason));
                    }
                    None => {
                        st.set(read.epoch.clone(), p.offset);
                        replay(&mut st, read.messages, None, &mut events);
                    }
                }
            }
        }
        if ns.presence && !self.identity.user.is_empty() {
            st.presence = true;
            self.node
                .presence_join(&key, &self.client_id, self.presence_entry(), &ns)
                .await;
        }
        self.channels.push(st);
        Ok(events)
    }

    fn presence_entry(&self) -> PresenceEntry {
        PresenceEntry {
            user: self.identity.user.clone(),
            info: self.identity.info.clone(),
        }
    }

    fn reset_event(&self, st: &ChannelState, reason: &'static str) -> Event {
        self.node.metrics().reset();
        Event::Reset(Reset {
            channel: st.key.channel.clone(),
            epoch: st.epoch.clone(),
            offset: st.offset,
            reason,
            cursor: st.cursor.to_string(),
        })
    }

    /// Unsubscribes from `channel` (nothing happens when not subscribed).
    pub async fn unsubscribe(&mut self, channel: &ChannelName) {
        if let Some(st) = self.channels.remove(channel) {
            self.node.unlisten(&st.key, self.id);
            if st.presence {
                self.node.presence_leave(&st.key, &self.client_id, &st.ns).await;
            }
        }
    }

    /// Where each channel stands, in subscription order (into `out`, reusing it).
    pub fn positions(&self, out: &mut Vec<ChannelPosition>) {
        out.clear();
        out.reserve_exact(self.channels.len());
        for st in self.channels.values() {
            out.push(ChannelPosition {
                channel: st.key.channel.clone(),
                epoch: st.epoch.clone(),
                offset: st.offset,
                cursor: st.cursor.clone(),
            });
        }
    }

    /// Takes over the positions a direct writer reached (same epoch, further on).
    pub fn advance(&mut self, positions: &[ChannelPosition]) {
        for p in positions {
            if let Some(st) = self.channels.get_mut(&p.channel) {
                if *st.epoch == *p.epoch && p.offset > st.offset {
                    st.offset = p.offset;
                    st.cursor = p.cursor.clone();
                }
            }
        }
    }

    /// The handle a direct writer counts its deliveries with.
    pub fn tally(&self) -> Tally {
        Tally {
            node: self.node.clone(),
            usage: self.usage.clone(),
            transport: self.transport,
            writes: 0,
        }
    }

    /// Installs a direct writer on this session's queue (see [`crate::hub::Direct`]).
    pub fn set_direct(&self, direct: Box<dyn crate::hub::Direct>) {
        self.queue.set_direct(direct);
    }

    /// Lets the hub write live messages through the direct writer, after `load`
    /// brought it up to date; false when something is queued (drain first).
    pub fn park(&self, load: impl FnOnce(&mut dyn crate::hub::Direct)) -> bool {
        self.queue.park(load)
    }

    /// Takes the socket back from the hub; `store` reads what the writer did.
    pub fn unpark(&self, store: impl FnOnce(&mut dyn crate::hub::Direct)) {
        self.queue.unpark(store)
    }

    /// The bytes the direct writer left unfinished, which must be written next
    /// (see [`crate::hub::Queue::take_raw`]).
    pub fn take_raw(&self) -> Option<bytes::Bytes> {
        self.queue.take_raw()
    }

    /// Removes the direct writer.
    pub fn clear_direct(&self) {
        self.queue.clear_direct();
    }

    /// A handle whose `ready().await` returns when `drain` has something to do;
    /// it borrows nothing from the session, so it fits in a `select!` beside it.
    pub fn waiter(&self) -> Waiter {
        Waiter(self.queue.clone())
    }

    /// Takes what the hub queued and turns it into events, deduplicated, holes
    /// filled from history or turned into resets. Not cancel-safe: await it to the
    /// end (outside `select!`).
    pub async fn drain(&mut self) -> Vec<Event> {
        let (items, lagged) = self.queue.take();
        let mut events = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Item::Message(d) => self.accept(d, &mut events).await,
                Item::Control(channel, payload) => {
                    if self.channels.contains_key(&channel) {
                        events.push(Event::Presence(payload));
                    }
                }
                Item::Raw(bytes) => events.push(Event::Raw(bytes)),
            }
        }
        // One latency sample per batch (its newest live message), not one per
        // delivery: the batch is written at once, and the hot path stays lean.
        if let Some(Event::Message { delivery, .. }) = events
            .iter()
            .rev()
            .find(|e| matches!(e, Event::Message { live: true, .. }))
        {
            self.observe_latency(delivery);
        }
        if lagged {
            self.node.metrics().lagged();
            let channels = self.channels.names();
            for c in channels {
                Box::pin(self.catch_up(&c, None, &mut events)).await;
            }
        }
        events
    }

    async fn accept(&mut self, d: Arc<Delivery>, events: &mut Vec<Event>) {
        let channel = d.envelope.channel.clone();
        let Some(st) = self.channels.get_mut(&channel) else {
            return;
        };
        if *d.envelope.epoch != *st.epoch {
            st.set(d.envelope.epoch.clone(), d.envelope.offset.saturating_sub(1));
            let ev = self.reset_event_for(&channel, "epoch_changed");
            events.extend(ev);
        }
        let Some(st) = self.channels.get_mut(&channel) else {
            return;
        };
        if d.envelope.offset <= st.offset {
            return; // already delivered (seam or catch-up)
        }
        if d.envelope.offset > st.offset + 1 {
            Box::pin(self.catch_up(&channel, Some(d.envelope.offset - 1), events)).await;
        }
        let Some(st) = self.channels.get_mut(&channel) else {
            return;
        };
        if d.envelope.offset == st.offset + 1 {
            st.offset = d.envelope.offset;
            st.cursor = d.cursor.clone();
            events.push(Event::Message {
                delivery: d,
                live: true,
            });
        }
    }

    fn reset_event_for(&self, channel: &ChannelName, reason: &'static str) -> Option<Event> {
        self.channels.get(channel).map(|st| self.reset_event(st, reason))
    }

    /// Reads history after the channel's position (up to `until` when given) and
    /// appends it to `events`, or a reset when history cannot fill the hole.
    async fn catch_up(&mut self, channel: &ChannelName, until: Option<u64>, events: &mut Vec<Event>) {
        let Some(st) = self.channels.get(channel) else {
            return;
        };
        let key = st.key.clone();
        let policy = st.ns.history();
        let since = st.offset;
        let epoch = st.epoch.clone();
        let read: Result<HistoryRead, NodeError> = self.node.history_all(&key, policy, since).await;
        let Some(st) = self.channels.get_mut(channel) else {
            return;
        };
        match read {
            Ok(read) if *read.epoch == *epoch && read.complete => {
                replay(st, read.messages, until, events);
            }
            Ok(read) => {
                let reason = if *read.epoch != *epoch {
                    "epoch_changed"
                } else {
                    "history_gone"
                };
                let to = until.unwrap_or(read.top);
                st.set(read.epoch.clone(), to);
                if let Some(ev) = self.reset_event_for(channel, reason) {
                    events.push(ev);
                }
            }
            Err(e) => {
                // The broker is down: we cannot tell what was missed. Say so.
                tracing::warn!(error = %e, channel = %channel, "catch-up failed");
                let to = until.unwrap_or(st.offset);
                let ep = st.epoch.clone();
                st.set(ep, to);
                if let Some(ev) = self.reset_event_for(channel, "broker_unavailable") {
                    events.push(ev);
                }
            }
        }
    }

    /// Publishes from this client (needs the token's `publish` grant).
    ///
    /// # Errors
    /// As [`Node::publish_as_client`].
    pub async fn publish(
        &self,
        channel: ChannelName,
        event: EventName,
        data: Arc<str>,
    ) -> Result<herald_broker::Published, NodeError> {
        let input = PublishInput {
            channels: vec![channel],
            event,
            data,
            idempotency_key: None,
        };
        let mut res = self
            .node
            .publish_as_client(&self.app, &self.identity, input)
            .await?;
        res.pop()
            .ok_or_else(|| NodeError::new(ErrorCode::Internal, "publish returned no result"))
    }

    /// Records that `messages` messages of `bytes` bytes were written.
    pub fn delivered(&self, messages: u64, bytes: u64) {
        self.usage.delivered(messages, bytes);
        self.node
            .metrics()
            .delivered(self.transport.as_str(), messages, bytes);
    }

    /// Records the publish-to-write latency of a live message.
    fn observe_latency(&self, delivery: &Delivery) {
        let ms = herald_broker::now_millis() - delivery.envelope.ts;
        self.node.metrics().latency(ms.max(0) as f64 / 1000.0);
    }

    /// Keeps presence entries alive; call at least every few seconds.
    pub async fn tick(&mut self) {
        let ttl = self.node.config().presence_ttl;
        if self.last_presence_refresh.elapsed() < ttl / 3 {
            return;
        }
        self.last_presence_refresh = Instant::now();
        let entry = self.presence_entry();
        for st in self.channels.values() {
            if st.presence {
                self.node
                    .presence_join(&st.key, &self.client_id, entry.clone(), &st.ns)
                    .await;
            }
        }
    }

    /// How long until the token expires (None: no token).
    pub fn token_remaining(&self) -> Option<Duration> {
        let exp = self.identity.expires?;
        let now = herald_broker::now_millis() / 1000;
        let leeway = self.node.config().token_leeway.as_secs() as i64;
        let left = exp.saturating_add(leeway).saturating_sub(now).max(0) as u64;
        // A token that "never expires" (exp near i64::MAX) must not overflow the
        // deadline the transports compute from this; a century counts as never.
        const CENTURY: u64 = 100 * 366 * 86_400;
        Some(Duration::from_secs(left.min(CENTURY)))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        tracing::debug!(app = %self.app, transport = self.transport.as_str(), id = self.id, "disconnected");
        self.node.metrics().connection_closed(self.transport.as_str());
        self.usage.disconnect();
        let mut leaving = Vec::new();
        for st in self.channels.values() {
            self.node.unlisten(&st.key, self.id);
            if st.presence && !self.keep_presence {
                leaving.push((st.key.clone(), st.ns.clone()));
            }
        }
        if !leaving.is_empty() {
            let node = self.node.clone();
            let client = std::mem::take(&mut self.client_id);
            self.node.spawn_io("presence leave", async move {
                for (key, ns) in leaving {
                    node.presence_leave(&key, &client, &ns).await;
                }
            });
        }
    }
}
