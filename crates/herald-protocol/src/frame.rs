//! WebSocket client frames: JSON text frames with an `id` the reply echoes.
//!
//! ```json
//! {"id":1,"op":"subscribe","channel":"a","cursor":"..."}
//! {"id":2,"op":"unsubscribe","channel":"a"}
//! {"id":3,"op":"publish","channel":"a","event":"e","data":{}}
//! {"id":4,"op":"presence","channel":"a"}
//! {"id":5,"op":"ping"}
//! {"id":6,"op":"refresh","token":"..."}
//! ```

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::channel::ChannelName;
use crate::cursor::Cursor;
use crate::envelope::{compact_data, EventName};
use crate::error::ErrorCode;

/// A parsed, validated client command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start receiving a channel, from a cursor or from now.
    Subscribe {
        /// The channel.
        channel: ChannelName,
        /// Resume position (its entry for `channel`), if any.
        cursor: Option<Cursor>,
    },
    /// Stop receiving a channel.
    Unsubscribe {
        /// The channel.
        channel: ChannelName,
    },
    /// Publish to a channel (needs the token's `publish` grant).
    Publish {
        /// The channel.
        channel: ChannelName,
        /// The event name.
        event: EventName,
        /// Compact JSON data.
        data: std::sync::Arc<str>,
    },
    /// List the channel's presence.
    Presence {
        /// The channel.
        channel: ChannelName,
    },
    /// Liveness check; answered with `{"id":N,"ok":{}}`.
    Ping,
    /// Replace the connection's token (before the old one expires).
    Refresh {
        /// The new token.
        token: String,
    },
}

/// A client frame: the reply id and the command, or why it was refused.
#[derive(Debug)]
pub struct Frame {
    /// The id to echo in the reply (absent: no reply is wanted, errors still come).
    pub id: Option<u64>,
    /// The command, or the error to reply with.
    pub command: Result<Command, (ErrorCode, String)>,
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    id: Option<u64>,
    #[serde(borrow)]
    op: Option<&'a str>,
    channel: Option<String>,
    cursor: Option<String>,
    event: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    token: Option<String>,
}

/// Parses one text frame.
///
/// # Errors
/// `Err` with the error code and message when the frame is not a JSON object of
/// the expected shape (no id can be echoed then).
pub fn parse(text: &str) -> Result<Frame, (ErrorCode, String)> {
    let raw: RawFrame<'_> = serde_json::from_str(text).map_err(|e| {
        (
            ErrorCode::BadFrame,
            format!("a frame must be a JSON object with \"id\" and \"op\": {e}"),
        )
    })?;
    let id = raw.id;
    Ok(Frame {
        id,
        command: command(raw),
    })
}

fn channel(raw: &Option<String>) -> Result<ChannelName, (ErrorCode, String)> {
    let name = raw.as_deref().ok_or((
        ErrorCode::MissingParameter,
        "this op needs a \"channel\"".to_owned(),
    ))?;
    ChannelName::parse(name).map_err(|e| (ErrorCode::InvalidChannel, e.to_string()))
}

fn command(raw: RawFrame<'_>) -> Result<Command, (ErrorCode, String)> {
    let op = raw.op.ok_or((
        ErrorCode::BadFrame,
        "a frame needs an \"op\": subscribe, unsubscribe, publish, presence, ping or refresh".to_owned(),
    ))?;
    match op {
        "subscribe" => {
            let channel = channel(&raw.channel)?;
            let cursor = match raw.cursor.as_deref() {
                None | Some("") => None,
                Some(c) => Some(Cursor::parse(c).map_err(|e| (ErrorCode::InvalidCursor, e.to_string()))?),
            };
            Ok(Command::Subscribe { channel, cursor })
        }
        "unsubscribe" => Ok(Command::Unsubscribe {
            channel: channel(&raw.channel)?,
        }),
        "presence" => Ok(Command::Presence {
            channel: channel(&raw.channel)?,
        }),
        "ping" => Ok(Command::Ping),
        "refresh" => match raw.token {
            Some(token) if !token.is_empty() => Ok(Command::Refresh { token }),
            _ => Err((
                ErrorCode::MissingParameter,
                "refresh needs a \"token\"".to_owned(),
            )),
        },
        "publish" => {
            let channel = channel(&raw.channel)?;
            let event = match raw.event.as_deref() {
                None => EventName::message(),
                Some(e) => EventName::parse(e).map_err(|e| (ErrorCode::InvalidEvent, e.to_string()))?,
            };
            let data = match raw.data {
                None => std::sync::Arc::from("null"),
                Some(d) => compact_data(d.get()).map_err(|e| (ErrorCode::InvalidJson, e.to_string()))?,
            };
            Ok(Command::Publish { channel, event, data })
        }
        other => Err((
            ErrorCode::BadFrame,
            format!("unknown op {other:?}: use subscribe, unsubscribe, publish, presence, ping or refresh"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_op() {
        let f = parse(r#"{"id":1,"op":"subscribe","channel":"a"}"#).unwrap();
        assert_eq!(f.id, Some(1));
        assert!(matches!(f.command, Ok(Command::Subscribe { cursor: None, .. })));
        let f = parse(r#"{"id":3,"op":"publish","channel":"a","event":"e","data":{"x": 1}}"#).unwrap();
        match f.command.unwrap() {
            Command::Publish { data, event, .. } => {
                assert_eq!(&*data, r#"{"x": 1}"#);
                assert_eq!(event.as_str(), "e");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(r#"{"id":5,"op":"ping"}"#).unwrap().command,
            Ok(Command::Ping)
        ));
    }

    #[test]
    fn refusals_keep_the_id() {
        let f = parse(r#"{"id":9,"op":"subscribe","channel":"a b"}"#).unwrap();
        assert_eq!(f.id, Some(9));
        assert_eq!(f.command.unwrap_err().0, ErrorCode::InvalidChannel);
        let f = parse(r#"{"id":9,"op":"fly"}"#).unwrap();
        assert_eq!(f.command.unwrap_err().0, ErrorCode::BadFrame);
        let f = parse(r#"{"id":9,"op":"subscribe","channel":"a","cursor":"!!"}"#).unwrap();
        assert_eq!(f.command.unwrap_err().0, ErrorCode::InvalidCursor);
        assert!(parse("not json").is_err());
        assert!(parse("[1]").is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(s in any::<String>()) {
            let _ = parse(&s);
        }
    }
}
