//! Per-user rate limits of classroom actions (per node).

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

use crate::clock::now_ms;

/// The window of the limits.
const RATE_WINDOW_MS: i64 = 60_000;
/// Users x kinds tracked before idle entries are dropped.
const MAX_RATE_ENTRIES: usize = 10_000;

/// The recent actions of each user and kind.
#[derive(Default)]
pub(crate) struct Rates {
    recent: Mutex<HashMap<(String, &'static str), VecDeque<i64>>>,
}

impl Rates {
    /// Counts one `kind` action of `user_id` and answers whether it is within
    /// `max` per minute; a refused attempt is not counted.
    pub(crate) fn within(&self, user_id: &str, kind: &'static str, max: usize) -> bool {
        let now = now_ms();
        let mut recent = self.recent.lock();
        if recent.len() >= MAX_RATE_ENTRIES {
            recent.retain(|_, times| times.back().is_some_and(|t| now - t < RATE_WINDOW_MS));
        }
        let times = recent.entry((user_id.to_owned(), kind)).or_default();
        while times.front().is_some_and(|t| now - t >= RATE_WINDOW_MS) {
            times.pop_front();
        }
        if times.len() >= max {
            return false;
        }
        times.push_back(now);
        true
    }
}
