//! Coalesced events: changes applied at once (and in the log), whose event
//! goes out with the others of the next [`COALESCE_WINDOW`] (upvotes, new
//! questions, poll answers: thousands of students act within seconds, and a
//! screen needs the sum of their changes, not each one).
//!
//! A feature says it has changes waiting ([`Feature::pending`]); after every
//! load and commit the sequencer schedules a flush for it, unless one waits
//! already; the flush takes the lock and commits the feature's
//! [`Feature::flush`] steps. The kind of a coalesced change is its feature.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use herald_server::error::ApiError;
use parking_lot::Mutex;

use super::{Feature, Live};

/// How long changes wait to be published together: at most 4 events a second
/// per session and feature, whatever the audience.
pub const COALESCE_WINDOW: Duration = Duration::from_millis(250);
/// A flush that fails is tried again this many times, a second apart.
const COALESCE_RETRIES: u32 = 20;
/// Steps one flush commits at most (each is one event of at most
/// `MAX_EVENT_BYTES`).
const MAX_FLUSH_STEPS: usize = 1000;

/// Sessions x features with a flush waiting.
#[derive(Default)]
pub(crate) struct Waiting(Mutex<HashSet<(String, usize)>>);

impl Live {
    /// Schedules a flush of feature `F`'s waiting changes in session `sid`
    /// (the sequencer does it after every commit; call it only for changes
    /// made outside a commit).
    pub fn coalesce<F: Feature>(self: &Arc<Self>, sid: &str) {
        if let Some(i) = self.index_of(F::KEY) {
            self.coalesce_index(sid, i);
        }
    }

    /// Runs the flush of feature `i` for session `sid` [`COALESCE_WINDOW`]
    /// from now, unless one is waiting already. The mark is taken off before
    /// the flush takes the lock, so a change after that schedules the next
    /// flush; a failed flush is tried again a second later.
    pub(crate) fn coalesce_index(self: &Arc<Self>, sid: &str, i: usize) {
        let key = (sid.to_owned(), i);
        if !self.waiting.0.lock().insert(key.clone()) {
            return;
        }
        let live = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(COALESCE_WINDOW).await;
            for attempt in 0..=COALESCE_RETRIES {
                live.waiting.0.lock().remove(&key);
                match live.flush(&key.0, key.1).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(session = %key.0, attempt, error = ?e, "coalesced changes not published yet; trying again");
                    }
                }
                if !live.waiting.0.lock().insert(key.clone()) {
                    return; // a newer change scheduled its own flush
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            live.waiting.0.lock().remove(&key);
            tracing::error!(session = %key.0, "coalesced changes given up on; the next change publishes them");
        });
    }

    async fn flush(&self, sid: &str, i: usize) -> Result<(), ApiError> {
        let Some(r) = self.features.get(i) else {
            return Ok(());
        };
        let mut locked = self.lock(sid).await?;
        // On a cluster a commit gives the lease back, and a further step
        // would first have to take it again and read what other nodes
        // appended: one step per flush there, the next one in the next
        // window (its commit schedules it), so at most 4 coalesced events a
        // second per node and feature.
        let steps = if self.store.shared() { 1 } else { MAX_FLUSH_STEPS };
        for _ in 0..steps {
            if !(r.flush)(&mut locked)? {
                return Ok(());
            }
            locked.commit().await?;
        }
        Ok(())
    }

    /// Appends the pending entries of session `sid` (the store failed under a
    /// change that published its events) a second from now, again until it
    /// works or a change does it, a bounded number of times.
    pub(crate) fn retry_pending(self: &Arc<Self>, sid: &str) {
        let live = self.clone();
        let sid = sid.to_owned();
        // Tracked I/O: a shutdown waits for it (bounded) before it exits.
        self.node.spawn_io("live session log append", async move {
            let (every, times) = super::PENDING_RETRY;
            for _ in 0..times {
                tokio::time::sleep(every).await;
                // Taking the lock to change appends what is pending first.
                match live.lock(&sid).await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::debug!(session = %sid, error = ?e, "pending log entries not appended yet");
                    }
                }
            }
            tracing::error!(session = %sid, "pending log entries given up on: they are lost if this node stops");
        });
    }
}
