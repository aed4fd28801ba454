//! The envelope: what every subscriber receives for a message, on every transport.
//!
//! ```json
//! {"channel":"chat:room-1","offset":42,"epoch":"k3J9","event":"message","data":{},"ts":1764379200123}
//! ```
//!
//! Every field but `data` is made of bytes that need no JSON escaping (channel
//! names, epochs and event names are validated), so the envelope is written by
//! hand in one pass, and `data` is the publisher's JSON, kept compact and verbatim.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Deserialize;

use crate::channel::ChannelName;

/// A validated event name: 1 to 64 of `A-Z a-z 0-9 _ - . :`. Defaults to `message`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventName(Arc<str>);

/// Why a string is not an event name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventNameError {
    /// Empty, too long, or a forbidden byte.
    #[error("an event name must be 1 to 64 of A-Z a-z 0-9 _ - . :")]
    Invalid,
    /// A name the transports use for their own control events.
    #[error(
        "the event names reset, presence, error, disconnect, open and heartbeat are reserved for control events"
    )]
    Reserved,
}

impl EventName {
    /// Names of control events that publishers may not use.
    pub const RESERVED: [&'static str; 6] = ["reset", "presence", "error", "disconnect", "open", "heartbeat"];

    /// Checks `s` and wraps it.
    ///
    /// # Errors
    /// [`EventNameError`] when `s` is not a valid, unreserved event name.
    pub fn parse(s: &str) -> Result<Self, EventNameError> {
        if s.is_empty()
            || s.len() > 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
        {
            return Err(EventNameError::Invalid);
        }
        if Self::RESERVED.contains(&s) {
            return Err(EventNameError::Reserved);
        }
        Ok(Self(Arc::from(s)))
    }

    /// The default event name, `message`.
    pub fn message() -> Self {
        Self(Arc::from("message"))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message as delivered: the channel, its offset and epoch, the event name, the
/// publisher's data and the server's publish time.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// The channel the message was published to.
    pub channel: ChannelName,
    /// Its position in the channel: 1, 2, 3, ... without holes within an epoch.
    pub offset: u64,
    /// The life of the channel's history this offset belongs to.
    pub epoch: Arc<str>,
    /// The event name.
    pub event: EventName,
    /// The publisher's data, compact JSON.
    pub data: Arc<str>,
    /// Publish time, Unix milliseconds.
    pub ts: i64,
}

/// Why publisher data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data must be a JSON value")]
pub struct DataError;

/// Turns a JSON text into the compact form kept in envelopes (no line breaks, so an
/// SSE `data:` line holds it).
///
/// # Errors
/// [`DataError`] when `raw` is not one JSON value.
pub fn compact_data(raw: &str) -> Result<Arc<str>, DataError> {
    let trimmed = raw.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\n' || c == '\r');
    if trimmed.contains(['\n', '\r']) {
        let v: serde_json::Value = serde_json::from_str(trimmed).map_err(|_| DataError)?;
        return Ok(Arc::from(v.to_string()));
    }
    // Valid JSON check without building a tree.
    let _: &serde_json::value::RawValue = serde_json::from_str(trimmed).map_err(|_| DataError)?;
    Ok(Arc::from(trimmed))
}

impl Envelope {
    /// Appends the envelope's JSON object (without a trailing newline) to `out`.
    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"channel\":\"");
        out.push_str(self.channel.as_str());
        self.write_fields_after_channel(out);
    }

    /// Appends `,"channel":...` .. `}`: the envelope's fields as the tail of an
    /// object the caller opened (WebSocket pushes put `"type"` and `"cursor"` first).
    pub fn write_json_tail(&self, out: &mut String) {
        out.push_str(",\"channel\":\"");
        out.push_str(self.channel.as_str());
        self.write_fields_after_channel(out);
    }

    fn write_fields_after_channel(&self, out: &mut String) {
        let _ = write!(
            out,
            "\",\"offset\":{},\"epoch\":\"{}\",\"event\":\"{}\",\"data\":{},\"ts\":{}}}",
            self.offset,
            self.epoch,
            self.event.as_str(),
            self.data,
            self.ts
        );
    }

    /// The envelope as a JSON string.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(96 + self.data.len());
        self.write_json(&mut s);
        s
    }

    /// The envelope's size on the wire as JSON, in bytes (approximate for usage counts).
    pub fn json_len(&self) -> usize {
        80 + self.channel.as_str().len() + self.epoch.len() + self.event.as_str().len() + self.data.len()
    }
}

/// An envelope as a client reads it (used by tests and the CLI).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct EnvelopeView {
    /// Channel name.
    pub channel: String,
    /// Offset.
    pub offset: u64,
    /// Epoch.
    pub epoch: String,
    /// Event name.
    pub event: String,
    /// Data.
    pub data: serde_json::Value,
    /// Publish time, Unix milliseconds.
    pub ts: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_the_contract() {
        let e = Envelope {
            channel: ChannelName::parse("chat:room-1").unwrap(),
            offset: 42,
            epoch: Arc::from("k3J9"),
            event: EventName::message(),
            data: compact_data("{}").unwrap(),
            ts: 1764379200123,
        };
        assert_eq!(
            e.to_json(),
            r#"{"channel":"chat:room-1","offset":42,"epoch":"k3J9","event":"message","data":{},"ts":1764379200123}"#
        );
        let v: EnvelopeView = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v.offset, 42);
    }

    #[test]
    fn data_is_compacted() {
        assert_eq!(
            &*compact_data(" {\n \"a\": [1,\n2] }\n").unwrap(),
            r#"{"a":[1,2]}"#
        );
        assert_eq!(&*compact_data("\"x\"").unwrap(), "\"x\"");
        assert!(compact_data("{").is_err());
        assert!(compact_data("1 2").is_err());
        assert!(compact_data("").is_err());
    }

    #[test]
    fn event_names() {
        assert!(EventName::parse("chat.message:v2").is_ok());
        assert_eq!(EventName::parse("reset"), Err(EventNameError::Reserved));
        assert_eq!(EventName::parse("a b"), Err(EventNameError::Invalid));
        assert_eq!(EventName::parse("a\nb"), Err(EventNameError::Invalid));
        assert_eq!(EventName::parse(""), Err(EventNameError::Invalid));
    }
}
