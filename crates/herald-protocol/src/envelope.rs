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

/// The deepest nesting of arrays and objects publisher data may have: half
/// the limit of common JSON decoders (serde_json's default of 128), leaving
/// room for the envelope and whatever wraps it, so that no message one
/// subscriber's decoder refuses is delivered to everyone.
pub const MAX_DATA_DEPTH: usize = 64;

/// Why publisher data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// Not one JSON value.
    #[error("data must be a JSON value")]
    NotJson,
    /// Arrays and objects nested deeper than [`MAX_DATA_DEPTH`].
    #[error("data may nest arrays and objects at most {MAX_DATA_DEPTH} deep")]
    TooDeep,
}

/// Turns a JSON text into the compact form kept in envelopes (no line breaks, so an
/// SSE `data:` line holds it).
///
/// # Errors
/// [`DataError`] when `raw` is not one JSON value, or nests deeper than
/// [`MAX_DATA_DEPTH`].
pub fn compact_data(raw: &str) -> Result<Arc<str>, DataError> {
    let trimmed = raw.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\n' || c == '\r');
    if depth_over_limit(trimmed) {
        return Err(DataError::TooDeep);
    }
    if trimmed.contains(['\n', '\r']) {
        let v: serde_json::Value = serde_json::from_str(trimmed).map_err(|_| DataError::NotJson)?;
        return Ok(Arc::from(v.to_string()));
    }
    // Valid JSON check without building a tree.
    let _: &serde_json::value::RawValue = serde_json::from_str(trimmed).map_err(|_| DataError::NotJson)?;
    Ok(Arc::from(trimmed))
}

/// Whether the JSON text `json` nests arrays and objects deeper than
/// [`MAX_DATA_DEPTH`] (brackets inside strings do not count).
fn depth_over_limit(json: &str) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in json.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DATA_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
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
    fn data_nests_at_most_max_data_depth() {
        let nested = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(compact_data(&nested(MAX_DATA_DEPTH)).is_ok());
        assert_eq!(compact_data(&nested(MAX_DATA_DEPTH + 1)), Err(DataError::TooDeep));
        assert_eq!(compact_data(&nested(100_000)), Err(DataError::TooDeep));
        // With line breaks (the tree path) the same.
        let broken = format!(
            "{}\n1{}",
            "[".repeat(MAX_DATA_DEPTH + 1),
            "]".repeat(MAX_DATA_DEPTH + 1)
        );
        assert_eq!(compact_data(&broken), Err(DataError::TooDeep));
        let broken = format!(
            "{}\n1{}",
            "{\"a\":".repeat(MAX_DATA_DEPTH),
            "}".repeat(MAX_DATA_DEPTH)
        );
        assert!(compact_data(&broken).is_ok());
        // Brackets in strings are text.
        let text = format!("\"{}\\\"{}\"", "[".repeat(500), "{".repeat(500));
        assert!(compact_data(&text).is_ok(), "{text}");
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
