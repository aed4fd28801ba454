//! Permission patterns from tokens' `channels` and `publish` claims.
//!
//! Segments are separated by `:`. A segment that is exactly `*` matches any one
//! segment; a `*` at the very end of a pattern matches the rest of the name (so
//! `*` alone matches every channel, `chat:*` every channel of namespace `chat`,
//! and `room-*` every name that starts with `room-`). Any other character matches
//! itself.

/// True when `pattern` allows `channel`.
pub fn matches(pattern: &str, channel: &str) -> bool {
    let mut pat = pattern.split(':').peekable();
    let mut chan = channel.split(':');
    while let Some(p) = pat.next() {
        let last = pat.peek().is_none();
        if last {
            if let Some(prefix) = p.strip_suffix('*') {
                // Trailing star: this channel segment starts with prefix, the rest is free.
                return match chan.next() {
                    Some(c) => c.starts_with(prefix),
                    None => false,
                };
            }
        }
        match chan.next() {
            Some(c) if p == "*" || p == c => {}
            _ => return false,
        }
    }
    chan.next().is_none()
}

/// True when any of `patterns` allows `channel`.
pub fn any_matches<'a>(patterns: impl IntoIterator<Item = &'a String>, channel: &str) -> bool {
    patterns.into_iter().any(|p| matches(p, channel))
}

#[cfg(test)]
mod tests {
    use super::matches;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let cases = [
            ("*", "anything", true),
            ("*", "a:b:c", true),
            ("chat:*", "chat:room-1", true),
            ("chat:*", "chat:a:b", true),
            ("chat:*", "chat", false),
            ("chat:*", "news:x", false),
            ("chat:room-1", "chat:room-1", true),
            ("chat:room-1", "chat:room-2", false),
            ("chat:room-1", "chat:room-1:x", false),
            ("a:*:c", "a:b:c", true),
            ("a:*:c", "a:b:d", false),
            ("a:*:c", "a:b:c:d", false),
            ("room-*", "room-7", true),
            ("room-*", "roo", false),
            ("news", "news", true),
            ("news", "news:x", false),
        ];
        for (p, c, want) in cases {
            assert_eq!(matches(p, c), want, "{p} vs {c}");
        }
    }

    proptest! {
        #[test]
        fn exact_pattern_matches_itself(s in "[A-Za-z0-9_:.@=,#-]{1,64}") {
            prop_assert!(matches(&s, &s));
            prop_assert!(matches("*", &s));
        }
    }
}
