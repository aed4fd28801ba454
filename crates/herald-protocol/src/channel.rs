//! Channel names: 1 to 255 bytes of `A-Z a-z 0-9 _ - : . @ = , #`.
//!
//! The part before the first `:` is the namespace (`chat:room-1` is in `chat`; a
//! name without `:` is in the default namespace, `""`). A name containing `#` is
//! user-limited: the comma-separated list after the first `#` names the only users
//! who may subscribe (`im#alice,bob`).

use std::fmt;
use std::sync::Arc;

/// A validated channel name, cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

/// Why a string is not a channel name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    /// Empty or longer than 255 bytes.
    #[error("a channel name must be 1 to 255 bytes long")]
    Length,
    /// A byte outside the allowed set.
    #[error("a channel name may contain only A-Z a-z 0-9 and _ - : . @ = , #")]
    Character,
}

/// True for the bytes a channel name may contain.
pub fn is_channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.' | b'@' | b'=' | b',' | b'#')
}

impl ChannelName {
    /// The longest channel name, in bytes.
    pub const MAX_LEN: usize = 255;

    /// Checks `s` and wraps it.
    ///
    /// # Errors
    /// [`ChannelNameError`] when `s` is empty, too long or has a forbidden byte.
    pub fn parse(s: &str) -> Result<Self, ChannelNameError> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(ChannelNameError::Length);
        }
        if !s.bytes().all(is_channel_byte) {
            return Err(ChannelNameError::Character);
        }
        Ok(Self(Arc::from(s)))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace: the part before the first `:`, or `""` when there is none.
    pub fn namespace(&self) -> &str {
        match self.0.find(':') {
            Some(i) => &self.0[..i],
            None => "",
        }
    }

    /// For a user-limited channel (`im#alice,bob`), the users allowed on it.
    pub fn allowed_users(&self) -> Option<impl Iterator<Item = &str>> {
        let i = self.0.find('#')?;
        Some(self.0[i + 1..].split(',').filter(|u| !u.is_empty()))
    }

    /// True when `user` may use this user-limited channel; false for any other
    /// user and for channels that are not user-limited.
    pub fn is_limited_to(&self, user: &str) -> bool {
        match self.allowed_users() {
            Some(mut users) => !user.is_empty() && users.any(|u| u == user),
            None => false,
        }
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelName({:?})", &*self.0)
    }
}

impl serde::Serialize for ChannelName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ChannelName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ChannelName::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn namespaces() {
        let c = ChannelName::parse("chat:room-1").unwrap();
        assert_eq!(c.namespace(), "chat");
        assert_eq!(ChannelName::parse("news").unwrap().namespace(), "");
        assert_eq!(ChannelName::parse("a:b:c").unwrap().namespace(), "a");
    }

    #[test]
    fn user_limited() {
        let c = ChannelName::parse("im#alice,bob").unwrap();
        assert!(c.is_limited_to("alice"));
        assert!(c.is_limited_to("bob"));
        assert!(!c.is_limited_to("carol"));
        assert!(!c.is_limited_to(""));
        assert!(!ChannelName::parse("im").unwrap().is_limited_to("alice"));
    }

    #[test]
    fn refusals() {
        assert_eq!(ChannelName::parse(""), Err(ChannelNameError::Length));
        assert_eq!(
            ChannelName::parse(&"a".repeat(256)),
            Err(ChannelNameError::Length)
        );
        assert!(ChannelName::parse(&"a".repeat(255)).is_ok());
        for bad in ["a b", "a/b", "é", "a|b", "a\nb", "a*"] {
            assert_eq!(ChannelName::parse(bad), Err(ChannelNameError::Character), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn valid_names_round_trip(s in "[A-Za-z0-9_:.@=,#-]{1,255}") {
            let c = ChannelName::parse(&s).unwrap();
            prop_assert_eq!(c.as_str(), s.as_str());
        }

        #[test]
        fn garbage_never_panics(s in any::<String>()) {
            let _ = ChannelName::parse(&s);
        }
    }
}
