//! Herald's wire vocabulary: everything that parses or formats what crosses the
//! network, with no I/O and no runtime, so it can be property-tested and fuzzed alone.
//!
//! - [`app`]: app names (tenant ids).
//! - [`channel`]: channel names, namespaces, user-limited channels.
//! - [`pattern`]: permission patterns of tokens (`chat:*`).
//! - [`cursor`]: opaque resume positions over one or more channels.
//! - [`envelope`]: the delivered message, identical on every transport.
//! - [`frame`]: WebSocket client frames.
//! - [`sse`]: Server-Sent Events framing.
//! - [`error`]: the one table of error codes, HTTP statuses and close codes.

pub mod app;
pub mod channel;
pub mod cursor;
pub mod envelope;
pub mod error;
pub mod frame;
pub mod pattern;
pub mod sse;

pub use app::AppName;
pub use channel::ChannelName;
pub use cursor::{Cursor, Position};
pub use envelope::{Envelope, EventName};
pub use error::{ErrorBody, ErrorCode};
