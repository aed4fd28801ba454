//! Channel names, app names, event names and permission patterns: every name a
//! client or a token gives. Valid names round-trip, a name matches itself as a
//! pattern, and a user-limited channel admits only its listed users.
#![no_main]

use herald_protocol::{pattern, AppName, ChannelName, EventName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The input is a name, or "pattern\nchannel" for the matcher.
    let (first, second) = text.split_once('\n').unwrap_or((text, text));
    if let Ok(c) = ChannelName::parse(first) {
        assert_eq!(c.as_str(), first);
        assert!(c.as_str().len() <= ChannelName::MAX_LEN);
        assert!(first.starts_with(c.namespace()));
        assert!(!c.namespace().contains(':'));
        // A name is its own pattern when it has no '*' (channel names cannot).
        assert!(pattern::matches(first, first), "{first:?} does not match itself");
        assert!(pattern::matches("*", first));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<ChannelName>(&json).unwrap(), c);
        match c.allowed_users() {
            Some(users) => {
                let users: Vec<&str> = users.collect();
                for u in &users {
                    assert!(c.is_limited_to(u));
                }
                assert!(!c.is_limited_to(""));
                if !users.contains(&second) {
                    assert!(!c.is_limited_to(second));
                }
            }
            None => assert!(!c.is_limited_to(second)),
        }
    }
    let _ = pattern::matches(first, second);
    if let Ok(a) = AppName::parse(first) {
        assert_eq!(a.as_str(), first);
    }
    if let Ok(e) = EventName::parse(first) {
        assert_eq!(e.as_str(), first);
        assert!(!EventName::RESERVED.contains(&first));
    }
});
