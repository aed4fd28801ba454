//! Where channels live: offsets, bounded history, fan-out between nodes, presence.
//!
//! Two small traits, each with its contract in its own file:
//! - [`Broker`] (broker.rs): publish assigns the offset and appends to bounded
//!   history atomically per channel; history since an offset; the node's interest in
//!   channels; delivery of every publish to the node's [`BrokerHandler`].
//! - [`Presence`] (presence.rs): who is on a channel, with expiry.
//!
//! Engines: [`memory`] (one node, the default; history in memory, kept across
//! restarts by a journal in a directory when opened with
//! [`memory::MemoryBroker::open`]) and [`redis`] (a cluster of nodes sharing one or
//! more Redis servers). All pass the same [`conformance`] suite.

mod broker;
pub mod conformance;
mod journal;
pub mod memory;
mod presence;
pub mod redis;

pub use broker::{
    Broker, BrokerError, BrokerHandler, ChannelKey, HistoryPolicy, HistoryRead, Idempotency, Publication,
    Published,
};
pub use journal::JournalOptions;
pub use presence::{Member, Presence, PresenceEntry, PresenceEvent};

/// Unix time in milliseconds.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A fresh epoch: 12 random characters of `A-Z a-z 0-9`.
pub fn new_epoch() -> std::sync::Arc<str> {
    use rand::distributions::{Alphanumeric, DistString};
    std::sync::Arc::from(Alphanumeric.sample_string(&mut rand::thread_rng(), 12))
}
