//! Deadlines of features (a timed quiz closing by itself): every node holding
//! a session arms a timer for each ([`super::Feature::deadlines`]) after every
//! load and commit, and at the time calls the feature's
//! [`super::Feature::due`] under the session's lock. Several nodes firing the
//! same deadline is harmless: the first one's change makes it no longer hold.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use herald_server::error::ApiError;
use parking_lot::Mutex;

use super::Live;
use crate::clock::now_ms;

/// Timers a node arms at most (across sessions); past it, a deadline waits
/// for the next change or load of its session.
const MAX_ARMED: usize = 10_000;

/// The timers armed on this node: (session, feature, key, time).
#[derive(Default)]
pub(crate) struct Armed(Mutex<HashSet<(String, usize, String, i64)>>);

impl Live {
    /// Arms deadline `key` at `at` of feature `i` in session `sid`, unless
    /// it is armed already.
    pub(crate) fn arm(self: &Arc<Self>, sid: &str, i: usize, feature: &'static str, key: String, at: i64) {
        let id = (sid.to_owned(), i, key, at);
        {
            let mut armed = self.timers.0.lock();
            if armed.contains(&id) {
                return;
            }
            if armed.len() >= MAX_ARMED {
                tracing::warn!(session = %sid, feature, "too many deadlines armed on this node; this one waits for the next change");
                return;
            }
            armed.insert(id.clone());
        }
        let live = self.clone();
        tokio::spawn(async move {
            let wait = u64::try_from(id.3 - now_ms()).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            live.timers.0.lock().remove(&id);
            if let Err(e) = live.fire(&id.0, id.1, &id.2, id.3).await {
                tracing::warn!(session = %id.0, feature, key = %id.2, error = ?e, "a deadline could not be applied on time; the next change of the session tries again");
            }
        });
    }

    async fn fire(&self, sid: &str, i: usize, key: &str, at: i64) -> Result<(), ApiError> {
        let Some(r) = self.features.get(i) else {
            return Ok(());
        };
        let mut locked = self.lock(sid).await?;
        (r.due)(&mut locked, key, at)?;
        locked.commit().await
    }
}
