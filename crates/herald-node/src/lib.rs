//! The node-local engine behind the [`Node`] facade: the hub (channel -> local
//! subscribers, each message serialized once per wire format), the per-connection
//! [`Session`] with its bounded queue and loss-free resume, auth (app keys, client
//! tokens, permission patterns), limits, usage and metrics.
//!
//! Transports (in herald-server) only turn a [`Session`]'s events into bytes; every
//! rule about order, duplicates, gaps and permissions lives here, once.

mod apps;
mod auth;
mod config;
mod error;
mod hub;
mod metrics;
mod node;
mod session;
mod usage;

pub use auth::{looks_like_token, sign_token, verify_token};
pub use auth::{Claims, Identity};
pub use config::{Limits, NamespaceOptions, NodeConfig};
pub use error::NodeError;
pub use hub::{Delivery, Direct, Item, Offered};
pub use metrics::Metrics;
pub use node::{ChannelInfo, Credential, Node, PublishInput, Stats, SHUTDOWN_IO_LIMIT};
pub use session::{ChannelPosition, Event, Reset, Session, Tally, Transport, Waiter};
