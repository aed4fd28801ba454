//! App names: a tenant's id in every path, 1 to 63 of `a-z 0-9 -`.

use std::fmt;
use std::sync::Arc;

/// A validated app name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppName(Arc<str>);

/// Why a string is not an app name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppNameError {
    /// Empty or longer than 63 bytes.
    #[error("an app name must be 1 to 63 characters long")]
    Length,
    /// A character outside `a-z 0-9 -`.
    #[error("an app name may contain only a-z, 0-9 and '-'")]
    Character,
}

impl AppName {
    /// The longest app name, in bytes.
    pub const MAX_LEN: usize = 63;

    /// Checks `s` and wraps it.
    ///
    /// # Errors
    /// [`AppNameError`] when `s` is empty, too long or has a forbidden character.
    pub fn parse(s: &str) -> Result<Self, AppNameError> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(AppNameError::Length);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(AppNameError::Character);
        }
        Ok(Self(Arc::from(s)))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppName({:?})", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        assert!(AppName::parse("demo").is_ok());
        assert!(AppName::parse("a-1").is_ok());
        assert_eq!(AppName::parse(""), Err(AppNameError::Length));
        assert_eq!(AppName::parse(&"a".repeat(64)), Err(AppNameError::Length));
        assert_eq!(AppName::parse("Demo"), Err(AppNameError::Character));
        assert_eq!(AppName::parse("a/b"), Err(AppNameError::Character));
    }
}
