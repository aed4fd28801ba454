//! Sessions open on this node tick: about once a second each feature's
//! [`super::Feature::tick`] runs (who is here reads the presence list). A
//! session opens when someone loads its snapshot or a token
//! ([`Live::opened`]), and closes when it has ended, or nobody has been here
//! nor loaded it for [`IDLE_STOP`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use herald_protocol::ErrorCode;
use herald_store::LiveState;
use parking_lot::Mutex;

use super::Live;
use crate::clock::now_ms;

/// How often an open session ticks.
pub const TICK: Duration = Duration::from_secs(1);
/// A session stops ticking after this long with nobody here and no snapshot loaded.
pub const IDLE_STOP: Duration = Duration::from_secs(120);

/// The sessions ticking on this node: id -> when it was last loaded.
#[derive(Default)]
pub(crate) struct Open(Mutex<HashMap<String, Arc<Mutex<i64>>>>);

impl Live {
    pub(crate) fn ensure_ticker(self: &Arc<Self>, sid: &str) {
        let now = now_ms();
        let mut open = self.open.0.lock();
        if let Some(seen) = open.get(sid) {
            *seen.lock() = now;
            return;
        }
        let seen = Arc::new(Mutex::new(now));
        open.insert(sid.to_owned(), seen.clone());
        drop(open);
        let live = self.clone();
        let sid = sid.to_owned();
        tokio::spawn(async move {
            live.ticking(&sid, &seen).await;
            live.open.0.lock().remove(&sid);
        });
    }

    async fn ticking(self: &Arc<Self>, sid: &str, seen: &Mutex<i64>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut busy_at = now_ms();
        loop {
            tick.tick().await;
            match self.read(sid).await {
                Ok(locked) if locked.state() == LiveState::Ended => return,
                Err(e) if e.0.code == ErrorCode::SessionNotFound => return,
                _ => {}
            }
            for r in &self.features {
                match (r.tick)(self, sid).await {
                    Ok(true) => busy_at = now_ms(),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::debug!(session = %sid, feature = r.key, error = ?e, "a tick failed; trying again")
                    }
                }
            }
            let idle = now_ms() - busy_at.max(*seen.lock());
            if idle > i64::try_from(IDLE_STOP.as_millis()).unwrap_or(i64::MAX) {
                return;
            }
        }
    }
}
