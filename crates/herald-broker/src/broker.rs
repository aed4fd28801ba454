//! The `Broker` trait: the one place where a channel's order is decided.
//!
//! Contract every engine keeps:
//! - **Offsets**: within an epoch a channel's offsets are 1, 2, 3, ... with no hole
//!   and no repeat, whatever the number of concurrent publishers or nodes.
//! - **Atomic publish**: assigning the offset and appending to history happen as one
//!   step; `publish` returns once both are done, and never waits for the fan-out.
//!   On `Err` nothing was appended to any channel that the error names (a
//!   multi-channel publish is atomic per channel, not across channels).
//! - **Bounded history**: a channel keeps at most `HistoryPolicy::size` messages,
//!   none older than `HistoryPolicy::ttl`. When a channel's history is lost (engine
//!   restarted, state evicted) its epoch changes, so old cursors are detected.
//! - **Delivery**: every published message is handed to the [`BrokerHandler`] of
//!   every node that subscribed to its channel, in offset order per channel. A
//!   node may miss messages (a network blink); it detects that by offset and reads
//!   the hole from history.
//! - **Idempotency**: a publish carrying an [`Idempotency`] key that was seen in its
//!   window returns the first result and appends nothing; the same key with a
//!   different request is refused with [`BrokerError::IdempotencyConflict`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_protocol::{AppName, ChannelName, Envelope, EventName};

/// A channel of one app: the unit of order, history and presence.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelKey {
    /// The app (tenant).
    pub app: AppName,
    /// The channel.
    pub channel: ChannelName,
}

impl ChannelKey {
    /// Builds a key.
    pub fn new(app: AppName, channel: ChannelName) -> Self {
        Self { app, channel }
    }
}

/// How much history a channel keeps (from its namespace's options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryPolicy {
    /// At most this many messages (0: no history).
    pub size: usize,
    /// None older than this.
    pub ttl: Duration,
}

impl Default for HistoryPolicy {
    fn default() -> Self {
        Self {
            size: 1000,
            ttl: Duration::from_secs(600),
        }
    }
}

/// An idempotency key with a fingerprint of the request it was first used with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    /// The publisher's key (unique per app).
    pub key: String,
    /// A hash of the request; the same key with another fingerprint is a conflict.
    pub fingerprint: u64,
    /// How long the key is remembered.
    pub window: Duration,
}

/// One publish request: the same event to one or more channels of one app.
#[derive(Clone, Debug)]
pub struct Publication {
    /// The app.
    pub app: AppName,
    /// The channels and their history policy, in request order.
    pub targets: Vec<(ChannelName, HistoryPolicy)>,
    /// The event name.
    pub event: EventName,
    /// Compact JSON data.
    pub data: Arc<str>,
    /// The idempotency key, if the publisher sent one.
    pub idempotency: Option<Idempotency>,
}

/// Where a published message landed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Published {
    /// The channel.
    pub channel: ChannelName,
    /// Its offset.
    pub offset: u64,
    /// The channel's epoch.
    pub epoch: Arc<str>,
}

/// The result of a history read.
#[derive(Clone, Debug)]
pub struct HistoryRead {
    /// The channel's current epoch.
    pub epoch: Arc<str>,
    /// The newest offset of the epoch (0: nothing published yet).
    pub top: u64,
    /// Messages with offsets greater than `since`, ascending, at most `limit`.
    pub messages: Vec<Arc<Envelope>>,
    /// True when history reaches back to `since + 1` (or `since >= top`): the
    /// messages are exactly the ones after `since`. False when some were lost.
    pub complete: bool,
}

/// Why a broker operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The engine's backend cannot be reached; nothing was appended.
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    /// The idempotency key was used before with a different request.
    #[error("the idempotency key was already used with a different request")]
    IdempotencyConflict,
}

/// Receives what the broker delivers to this node. Called in offset order per
/// channel; implementations must not block (queue and return).
pub trait BrokerHandler: Send + Sync + 'static {
    /// A message published on a channel this node subscribed to.
    fn on_message(&self, app: &AppName, msg: Arc<Envelope>);
    /// A control payload (presence join/leave) broadcast on a channel; not stored.
    fn on_control(&self, key: &ChannelKey, payload: Arc<str>);
    /// The engine lost messages it could not deliver (e.g. reconnected to its
    /// backend): every channel's subscribers should check their position.
    fn on_disruption(&self) {}
}

/// Channels: offsets, history, fan-out between nodes. See the module doc.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Installs the handler that receives deliveries. Called once, before use.
    fn set_handler(&self, handler: Arc<dyn BrokerHandler>);

    /// Appends the message to every target channel and returns where it landed,
    /// in the order of `targets`.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`]: nothing was appended to the failed channels.
    /// [`BrokerError::IdempotencyConflict`]: nothing was appended.
    async fn publish(&self, publication: Publication) -> Result<Vec<Published>, BrokerError>;

    /// Messages after `since` in the current epoch, at most `limit`.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`].
    async fn history(
        &self,
        key: &ChannelKey,
        policy: HistoryPolicy,
        since: u64,
        limit: usize,
    ) -> Result<HistoryRead, BrokerError>;

    /// Starts delivering `key`'s messages to this node's handler. Counted: as many
    /// `unsubscribe` calls undo it.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`].
    async fn subscribe(&self, key: &ChannelKey) -> Result<(), BrokerError>;

    /// Undoes one `subscribe`.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`].
    async fn unsubscribe(&self, key: &ChannelKey) -> Result<(), BrokerError>;

    /// Hands `payload` to the handler of every node subscribed to `key` (not stored).
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`].
    async fn broadcast(&self, key: &ChannelKey, payload: Arc<str>) -> Result<(), BrokerError>;

    /// Checks that the backend answers (for `/readyz`).
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`].
    async fn ping(&self) -> Result<(), BrokerError>;
}
