//! Per-user rate limits of classroom actions (per node).
//!
//! The map is keyed by who acts, so it is bounded in entries: past
//! [`MAX_RATE_ENTRIES`] the entry used least recently leaves (an LRU; a
//! refused attempt counts as a use, so a user held at their limit stays
//! remembered). An entry whose last action is older than the window holds
//! nothing the limit needs, and it is always among the first to go; only more
//! than that many users acting within one minute on one node would make a
//! limit forget a user who acted.

use std::collections::VecDeque;

use hashlink::LruCache;
use parking_lot::Mutex;

use crate::clock::now_ms;

/// The window of the limits.
const RATE_WINDOW_MS: i64 = 60_000;
/// Users x kinds remembered at most (a few hundred bytes each).
pub(crate) const MAX_RATE_ENTRIES: usize = 65_536;

/// The recent actions of each user and kind.
pub(crate) struct Rates {
    recent: Mutex<LruCache<(String, &'static str), VecDeque<i64>>>,
}

impl Default for Rates {
    fn default() -> Self {
        Self::with_capacity(MAX_RATE_ENTRIES)
    }
}

impl Rates {
    fn with_capacity(entries: usize) -> Self {
        Self {
            recent: Mutex::new(LruCache::new(entries)),
        }
    }

    /// Counts one `kind` action of `user_id` and answers whether it is within
    /// `max` per minute; a refused attempt is not counted.
    pub(crate) fn within(&self, user_id: &str, kind: &'static str, max: usize) -> bool {
        self.within_at(now_ms(), user_id, kind, max)
    }

    fn within_at(&self, now: i64, user_id: &str, kind: &'static str, max: usize) -> bool {
        let mut recent = self.recent.lock();
        let key = (user_id.to_owned(), kind);
        // `get_mut` marks the entry used; `insert` evicts the least recently used.
        if recent.get_mut(&key).is_none() {
            recent.insert(key.clone(), VecDeque::new());
        }
        let Some(times) = recent.get_mut(&key) else {
            return false;
        };
        while times.front().is_some_and(|t| now - t >= RATE_WINDOW_MS) {
            times.pop_front();
        }
        if times.len() >= max {
            return false;
        }
        times.push_back(now);
        true
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.recent.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user at their limit is refused until the window has moved on.
    #[test]
    fn a_user_is_held_to_the_limit_within_the_window() {
        let rates = Rates::default();
        for _ in 0..3 {
            assert!(rates.within_at(1_000, "ada", "vote", 3));
        }
        assert!(!rates.within_at(1_000, "ada", "vote", 3));
        assert!(
            rates.within_at(1_000, "ada", "ask", 3),
            "another kind counts apart"
        );
        assert!(rates.within_at(1_000, "bob", "vote", 3), "another user too");
        assert!(!rates.within_at(60_999, "ada", "vote", 3));
        assert!(rates.within_at(61_000, "ada", "vote", 3), "the window moved on");
    }

    /// A flood of users never grows the map past its bound, and a user held
    /// at the limit meanwhile (still trying) stays held; users who acted and
    /// left are the ones forgotten.
    #[test]
    fn a_flood_of_users_stays_within_the_bound_and_the_limits_hold() {
        const CAP: usize = 1_000;
        let rates = Rates::with_capacity(CAP);
        for _ in 0..5 {
            assert!(rates.within_at(0, "eve", "ask", 5));
        }
        for i in 0..20_000 {
            assert!(rates.within_at(i, &format!("user-{i}"), "ask", 5));
            assert!(rates.len() <= CAP);
            if i % 100 == 0 {
                assert!(
                    !rates.within_at(i, "eve", "ask", 5),
                    "eve stays at her limit ({i})"
                );
            }
        }
        assert_eq!(rates.len(), CAP);
        // The most recent users are still counted; the first ones were forgotten.
        for _ in 0..4 {
            assert!(rates.within_at(20_000, "user-19999", "ask", 5));
        }
        assert!(!rates.within_at(20_000, "user-19999", "ask", 5));
        assert!(
            rates.within_at(20_000, "user-0", "ask", 1),
            "forgotten: counts afresh"
        );
    }
}
