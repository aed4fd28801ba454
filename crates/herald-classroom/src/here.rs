//! Who is here: Herald presence on `class:{sid}`, turned into coalesced events.
//!
//! Herald's own join/leave events go to every subscriber of a channel: with N
//! students joining, that is N events to each of N screens (N² deliveries, and
//! N² redraws of a list in every browser: 12.5 million for 5 000 students,
//! ~9 ms of server CPU per join as measured by `herald bench classroom`). So the
//! `class` namespace keeps presence (who is connected, with `{name, role}` from
//! the token) but sends no join/leave events, and a **watcher** per live
//! session reads the presence list once a second and, when it changed, under
//! the session's lock:
//!
//! - stores it in the document ([`Doc::here`], not saved: it describes the
//!   connections of now), so a snapshot carries it, consistent with its cursors;
//! - publishes `here` on the staff channel with what changed
//!   (`{joined:{user_id:{name,role}}, left:[user_id], count}`): staff screens
//!   keep the live list;
//! - publishes `here.count` `{count}` on the session's channel when the number
//!   changed: every screen shows how many are here.
//!
//! At most one event of each a second per session, whatever the audience. The
//! watcher starts when someone loads the session (snapshot or token) and stops
//! when the session has ended, or nobody has been here nor loaded it for
//! [`IDLE_STOP`]. Each node runs its own watchers; in a cluster, two nodes
//! watching one session publish the same changes twice, which replace the same
//! entries (harmless).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use herald_protocol::AppName;
use herald_store::LiveState;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::live::{self, Doc, Live};

/// How often a watcher reads the presence list.
pub const TICK: Duration = Duration::from_secs(1);
/// A watcher stops after this long with nobody here and no snapshot loaded.
pub const IDLE_STOP: Duration = Duration::from_secs(120);

/// Someone present on the session's channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Present {
    /// Their name (from their token).
    pub name: String,
    /// Their role (from their token; `roles` in the snapshot wins).
    pub role: String,
}

/// The watchers of this node: session id -> when it was last asked for.
#[derive(Default)]
pub struct Watchers {
    running: Mutex<HashMap<String, Arc<Mutex<i64>>>>,
}

impl Watchers {
    /// Makes sure session `sid` has a watcher, and marks it as used now.
    pub fn ensure(&self, live: &Arc<Live>, sid: &str) {
        let now = live::now_ms();
        let mut running = self.running.lock();
        if let Some(seen) = running.get(sid) {
            *seen.lock() = now;
            return;
        }
        let seen = Arc::new(Mutex::new(now));
        running.insert(sid.to_owned(), seen.clone());
        drop(running);
        let live = live.clone();
        let sid = sid.to_owned();
        tokio::spawn(async move {
            watch(&live, &sid, &seen).await;
            live.here.running.lock().remove(&sid);
        });
    }
}

async fn watch(live: &Arc<Live>, sid: &str, seen: &Mutex<i64>) {
    let Ok(app) = AppName::parse(live::APP) else {
        return;
    };
    let Ok(channel) = live::channel_of(sid) else {
        return;
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut empty_since = live::now_ms();
    // The session's one background task on this node: also arm the timers of
    // timed polls loaded from the store (a restart loses the sleeping tasks).
    if let Err(e) = crate::polls::rearm_timers(live, sid).await {
        tracing::debug!(session = %sid, error = ?e, "poll timers not re-armed");
    }
    loop {
        tick.tick().await;
        let members = match live.node().presence(&app, &channel).await {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(session = %sid, error = %e, "presence not readable; trying again");
                continue;
            }
        };
        let now: BTreeMap<String, Present> = members
            .into_iter()
            .map(|m| {
                let text = |k: &str| m.info.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                let present = Present {
                    name: text("name").unwrap_or_else(|| m.user.clone()),
                    role: text("role").unwrap_or_default(),
                };
                (m.user, present)
            })
            .collect();
        if !now.is_empty() {
            empty_since = live::now_ms();
        }
        match apply(live, sid, now).await {
            Ok(true) => {}
            Ok(false) => return, // ended
            Err(e) => tracing::debug!(session = %sid, error = ?e, "who is here not published; trying again"),
        }
        let idle = live::now_ms() - empty_since.max(*seen.lock());
        if idle > i64::try_from(IDLE_STOP.as_millis()).unwrap_or(i64::MAX) {
            // Nobody here and nobody looking: forget them and stop.
            let _ = apply(live, sid, BTreeMap::new()).await;
            return;
        }
    }
}

/// Publishes what changed between the document's list and `now`; answers
/// whether to keep watching (not once the session has ended).
async fn apply(
    live: &Live,
    sid: &str,
    now: BTreeMap<String, Present>,
) -> Result<bool, herald_server::error::ApiError> {
    let mut locked = live.lock(sid).await?;
    if locked.doc().state == LiveState::Ended {
        return Ok(false);
    }
    let before = &*locked.doc().here;
    if *before == now {
        return Ok(true);
    }
    let mut joined = serde_json::Map::new();
    for (id, p) in &now {
        if before.get(id) != Some(p) {
            joined.insert(id.clone(), json!(p));
        }
    }
    let left: Vec<&String> = before.keys().filter(|id| !now.contains_key(*id)).collect();
    let changes = json!({ "joined": joined, "left": left, "count": now.len() });
    let count_changed = before.len() != now.len();
    // Staff first: if it fails the document keeps the old list and the next
    // tick sends the same changes again (they replace, so twice is harmless).
    locked.notify(&live::staff_channel(sid)?, "here", changes).await?;
    let mut next: Doc = locked.doc().clone();
    next.here = Arc::new(now);
    let count = next.here.len();
    if count_changed {
        locked
            .publish_unsaved(next, "here.count", json!({ "count": count }))
            .await?;
    } else {
        locked.stage(next);
    }
    Ok(true)
}
