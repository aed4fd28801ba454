//! The `Presence` trait: who is subscribed to a channel.
//!
//! Contract: entries are per connection (`client` id) and expire after their TTL
//! unless refreshed by calling `join` again; members are aggregated per user with a
//! connection count. `join` tells whether the user just appeared and `leave` whether
//! they just disappeared, so join/leave events are raised once per user, not once
//! per tab. Anonymous connections (empty user) are never listed.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::broker::{BrokerError, ChannelKey};

/// What a connection tells about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceEntry {
    /// The user id (token `sub`).
    pub user: String,
    /// The token's `info` claim as compact JSON (`null` when absent).
    pub info: std::sync::Arc<str>,
}

/// A user present on a channel.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Member {
    /// The user id.
    pub user: String,
    /// Presence info of the user's newest connection.
    pub info: serde_json::Value,
    /// How many connections the user has on the channel.
    pub connections: u32,
}

/// A user appearing on or leaving a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceEvent {
    /// The channel.
    pub key: ChannelKey,
    /// The entry of the user.
    pub entry: PresenceEntry,
}

/// Presence with expiry. See the module doc.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Adds or refreshes `client`'s entry; returns true when its user was not on the
    /// channel before.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`].
    async fn join(
        &self,
        key: &ChannelKey,
        client: &str,
        entry: PresenceEntry,
        ttl: Duration,
    ) -> Result<bool, BrokerError>;

    /// Removes `client`'s entry; returns its entry when that was the user's last
    /// connection on the channel.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`].
    async fn leave(&self, key: &ChannelKey, client: &str) -> Result<Option<PresenceEntry>, BrokerError>;

    /// The users on the channel, sorted by user id.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`].
    async fn members(&self, key: &ChannelKey) -> Result<Vec<Member>, BrokerError>;

    /// Drops expired entries; returns the users that left the channel by it.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`].
    async fn sweep(&self) -> Result<Vec<PresenceEvent>, BrokerError>;
}
