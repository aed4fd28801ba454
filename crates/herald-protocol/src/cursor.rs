//! Cursors: opaque strings that name a position in one or more channels.
//!
//! A cursor is a list of positions `(channel, epoch, offset)`: "I have seen every
//! message of `channel`'s life `epoch` up to and including `offset`". On the wire
//! each position is `base64url(channel "|" epoch "|" offset)` without padding, and
//! a multi-channel cursor is those strings joined by `.` (a byte base64url never
//! uses). So the cursor of one channel is a valid cursor, and cursors can be
//! concatenated; when a channel appears twice, the later position wins.
//!
//! Clients must treat cursors as opaque; this layout is documented only so that
//! servers in other languages can interoperate.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::channel::ChannelName;

/// The longest cursor string accepted, in bytes.
pub const MAX_CURSOR_LEN: usize = 128 * 1024;

/// One channel's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The channel.
    pub channel: ChannelName,
    /// The life of the channel's history the offset belongs to.
    pub epoch: String,
    /// The last offset seen (0: nothing seen yet in this epoch).
    pub offset: u64,
}

/// A set of positions, at most one per channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    positions: Vec<Position>,
}

/// Why a string is not a cursor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Longer than [`MAX_CURSOR_LEN`].
    #[error("the cursor is too long")]
    TooLong,
    /// Not made of base64url parts of `channel|epoch|offset`.
    #[error("the cursor is malformed; use a cursor the server gave you, or none")]
    Malformed,
}

/// True when `s` may be an epoch: 1 to 64 of `A-Z a-z 0-9 _ -`.
pub fn is_valid_epoch(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Position {
    /// This position alone, encoded as a cursor string.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut String) {
        let mut raw = String::with_capacity(self.channel.as_str().len() + self.epoch.len() + 22);
        raw.push_str(self.channel.as_str());
        raw.push('|');
        raw.push_str(&self.epoch);
        raw.push('|');
        let _ = write!(raw, "{}", self.offset);
        URL_SAFE_NO_PAD.encode_string(raw.as_bytes(), out);
    }

    fn decode(part: &str) -> Result<Self, CursorError> {
        let raw = URL_SAFE_NO_PAD.decode(part).map_err(|_| CursorError::Malformed)?;
        let raw = std::str::from_utf8(&raw).map_err(|_| CursorError::Malformed)?;
        let mut it = raw.rsplitn(3, '|');
        let offset = it.next().ok_or(CursorError::Malformed)?;
        let epoch = it.next().ok_or(CursorError::Malformed)?;
        let channel = it.next().ok_or(CursorError::Malformed)?;
        if offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CursorError::Malformed);
        }
        let offset = offset.parse::<u64>().map_err(|_| CursorError::Malformed)?;
        if !is_valid_epoch(epoch) {
            return Err(CursorError::Malformed);
        }
        let channel = ChannelName::parse(channel).map_err(|_| CursorError::Malformed)?;
        Ok(Position {
            channel,
            epoch: epoch.to_owned(),
            offset,
        })
    }
}

impl Cursor {
    /// An empty cursor (no positions).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a cursor string. The empty string is the empty cursor.
    ///
    /// # Errors
    /// [`CursorError`] when the string is too long or not a cursor.
    pub fn parse(s: &str) -> Result<Self, CursorError> {
        if s.len() > MAX_CURSOR_LEN {
            return Err(CursorError::TooLong);
        }
        let mut cursor = Cursor::new();
        if s.is_empty() {
            return Ok(cursor);
        }
        // An index of the channels seen: a cursor at its limit holds some
        // 10 000 positions, and finding each one's channel by a scan (as `set`
        // does) took 0.7 s of CPU per cursor, before any authentication.
        let mut index: HashMap<ChannelName, usize> = HashMap::new();
        for part in s.split('.') {
            let pos = Position::decode(part)?;
            match index.get(&pos.channel) {
                Some(&i) => cursor.positions[i] = pos,
                None => {
                    index.insert(pos.channel.clone(), cursor.positions.len());
                    cursor.positions.push(pos);
                }
            }
        }
        Ok(cursor)
    }

    /// Sets the position of a channel, replacing any earlier one.
    pub fn set(&mut self, pos: Position) {
        match self.positions.iter_mut().find(|p| p.channel == pos.channel) {
            Some(p) => *p = pos,
            None => self.positions.push(pos),
        }
    }

    /// The position of `channel`, if the cursor has one.
    pub fn get(&self, channel: &ChannelName) -> Option<&Position> {
        self.positions.iter().find(|p| &p.channel == channel)
    }

    /// Every position, in insertion order.
    pub fn positions(&self) -> &[Position] {
        &self.positions
    }

    /// True when the cursor has no position.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for (i, p) in self.positions.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            p.encode_into(&mut out);
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos(c: &str, e: &str, o: u64) -> Position {
        Position {
            channel: ChannelName::parse(c).unwrap(),
            epoch: e.into(),
            offset: o,
        }
    }

    #[test]
    fn concatenation_is_a_cursor() {
        let a = pos("chat:a", "E1", 4).encode();
        let b = pos("im#x,y", "E2", 0).encode();
        let c = Cursor::parse(&format!("{a}.{b}")).unwrap();
        assert_eq!(c.positions().len(), 2);
        assert_eq!(c.get(&ChannelName::parse("chat:a").unwrap()).unwrap().offset, 4);
        // later wins
        let a2 = pos("chat:a", "E1", 9).encode();
        let c = Cursor::parse(&format!("{a}.{b}.{a2}")).unwrap();
        assert_eq!(c.positions().len(), 2);
        assert_eq!(c.get(&ChannelName::parse("chat:a").unwrap()).unwrap().offset, 9);
    }

    #[test]
    fn cursor_is_url_safe() {
        let s = Cursor {
            positions: vec![pos("a:b#c,d", "xyz", 123), pos("q", "e", 1)],
        }
        .to_string();
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
    }

    #[test]
    fn malformed() {
        for bad in [
            "%%%",
            "abc",
            ".",
            "a..b",
            &URL_SAFE_NO_PAD.encode("c|e|x"),
            &URL_SAFE_NO_PAD.encode("c|e|"),
            &URL_SAFE_NO_PAD.encode("c d|e|1"),
            &URL_SAFE_NO_PAD.encode("c|e e|1"),
            &URL_SAFE_NO_PAD.encode("c|e|99999999999999999999999"),
        ] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Cursor::parse(&"a".repeat(MAX_CURSOR_LEN + 1)),
            Err(CursorError::TooLong)
        );
        assert!(Cursor::parse("").unwrap().is_empty());
    }

    /// Found by running the cursor fuzz target on a cursor at its limit: parsing
    /// took time quadratic in the number of positions (2 s for 10 000 in a
    /// release build), and cursors are parsed before the token is checked.
    #[test]
    fn a_cursor_at_its_limit_parses_in_linear_time() {
        let mut parts = Vec::new();
        let mut len = 0;
        for i in 0.. {
            let p = pos(&format!("c{i:x}"), "e", 0).encode();
            if len + p.len() + 1 > MAX_CURSOR_LEN {
                break;
            }
            len += p.len() + 1;
            parts.push(p);
        }
        let n = parts.len();
        assert!(n > 10_000, "{n}");
        // The first channel again at the end: the later position wins, in the first one's place.
        parts.pop();
        parts.push(pos("c0", "e", 77).encode());
        let s = parts.join(".");
        let started = std::time::Instant::now();
        for _ in 0..3 {
            let c = Cursor::parse(&s).unwrap();
            assert_eq!(c.positions().len(), n - 1);
            assert_eq!(c.positions()[0].offset, 77);
            assert_eq!(c.positions()[1].channel.as_str(), "c1");
        }
        // Linear: well under a second even unoptimised; quadratic took seconds.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    fn arb_position() -> impl Strategy<Value = Position> {
        ("[A-Za-z0-9_:.@=,#-]{1,255}", "[A-Za-z0-9_-]{1,64}", any::<u64>())
            .prop_map(|(c, e, o)| pos(&c, &e, o))
    }

    proptest! {
        #[test]
        fn parse_format_round_trip(ps in proptest::collection::vec(arb_position(), 0..8)) {
            let mut c = Cursor::new();
            for p in ps { c.set(p); }
            let s = c.to_string();
            prop_assert_eq!(Cursor::parse(&s).unwrap(), c);
        }

        #[test]
        fn garbage_never_panics(s in any::<String>()) {
            let _ = Cursor::parse(&s);
        }

        #[test]
        fn base64_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Cursor::parse(&URL_SAFE_NO_PAD.encode(&bytes));
        }
    }
}
