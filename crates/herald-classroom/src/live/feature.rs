//! What a feature of a live session is to the sequencer: [`Feature`], and the
//! [`Registration`] the sequencer gets of each one from the crate's list
//! (`crate::features`).
//!
//! A feature owns a part of the session's state (its type implements
//! [`Feature`]), the changes of that part ([`Feature::Change`], kept in the
//! session log), how a change applies ([`Feature::apply`], the same on the live
//! state and when the log is replayed), what it shows each viewer in a snapshot,
//! and optionally: coalesced events ([`Feature::pending`], [`Feature::flush`]),
//! deadlines ([`Feature::deadlines`], [`Feature::due`]), a tick while the
//! session is open ([`Feature::tick`]), and how it loads from a document written
//! before the session log ([`Feature::from_legacy`], [`Feature::restore`]).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use herald_server::error::ApiError;
use herald_store::{ClassroomStore, LiveSession, Role};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Live, Locked};

/// A boxed future, for the few hooks that wait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who is looking: what a snapshot (and the log) shows depends on it.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The caller.
    pub user_id: String,
    /// Their role in the course.
    pub role: Role,
    /// Trainer or co-trainer.
    pub staff: bool,
}

impl Viewer {
    /// The viewer `user_id` with `role`.
    pub fn new(user_id: &str, role: Role) -> Self {
        Self {
            user_id: user_id.to_owned(),
            role,
            staff: role.is_staff(),
        }
    }
}

/// What a feature's snapshot is made for.
pub struct View<'a> {
    /// Who looks.
    pub viewer: &'a Viewer,
    /// Now, Unix milliseconds (a timed poll shows closed once its time is up).
    pub now: i64,
}

/// One feature's part of a live session's state.
///
/// The state is a value: the sequencer keeps one copy per session and node,
/// changes it only through [`Feature::apply`], and never clones it. Its JSON
/// (serde) is what snapshots in the store hold, under [`Feature::KEY`]; every
/// field should have a default, so that a later version adds fields and older
/// snapshots still load.
pub trait Feature: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Its key in snapshots and in the log. Never change it once used.
    const KEY: &'static str;

    /// A change of this state, as the session log keeps it: everything
    /// [`Feature::apply`] needs (ids, times and names chosen by the handler).
    type Change: Serialize + DeserializeOwned + Send;

    /// Applies `change`. A pure function of the state and the change: no
    /// clock, no randomness, no I/O, so that replaying the log rebuilds exactly
    /// the state the session had. A change that no longer fits (an id gone) is
    /// ignored.
    fn apply(&mut self, change: Self::Change);

    /// Adds this feature's fields to a snapshot for `view.viewer`: only what
    /// that viewer may see.
    fn snapshot(&self, view: &View<'_>, out: &mut Map<String, Value>);

    /// This state from a document written before the session log existed (its
    /// top-level fields); the default state if it has none of its own.
    fn from_legacy(old: &Map<String, Value>) -> Self {
        let _ = old;
        Self::default()
    }

    /// Brings a state from an old document up to date with the rows written
    /// beside it before the session log existed (run once, on a legacy load).
    fn restore<'a>(
        &'a mut self,
        store: &'a dyn ClassroomStore,
        session: &'a LiveSession,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        let _ = (store, session);
        Box::pin(async { Ok(()) })
    }

    /// Changes wait for a coalesced event ([`Live::coalesce`]); after a load,
    /// the sequencer schedules a flush for a feature that says so.
    fn pending(&self) -> bool {
        false
    }

    /// One step of a coalesced flush, under the session's lock: applies a
    /// change and queues the events that publish what was waiting, then
    /// answers `true`; `false` when nothing waits. The sequencer commits each
    /// step and calls again until `false`.
    ///
    /// # Errors
    /// Those of [`Locked::apply`]: the flush is tried again later.
    fn flush(tx: &mut Locked<'_>) -> Result<bool, ApiError> {
        let _ = tx;
        Ok(false)
    }

    /// The deadlines of this state (key, Unix milliseconds): the sequencer
    /// arms a timer for each on every node that holds the session, and calls
    /// [`Feature::due`] when one passes.
    fn deadlines(&self, out: &mut Vec<(String, i64)>) {
        let _ = out;
    }

    /// Deadline `key` at `at` has passed: under the session's lock, apply and
    /// queue what follows (nothing if it no longer holds); the sequencer
    /// commits.
    ///
    /// # Errors
    /// Those of [`Locked::apply`].
    fn due(tx: &mut Locked<'_>, key: &str, at: i64) -> Result<(), ApiError> {
        let _ = (tx, key, at);
        Ok(())
    }

    /// Runs about once a second while the session is open on this node
    /// (someone loaded its snapshot or a token lately); answers whether
    /// someone is here (the session stays open while anyone is).
    fn tick<'a>(live: &'a Arc<Live>, sid: &'a str) -> BoxFuture<'a, Result<bool, ApiError>> {
        let _ = (live, sid);
        Box::pin(async { Ok(false) })
    }
}

/// A feature's state behind a trait object: what the sequencer calls without
/// knowing the type.
pub(crate) trait Part: Any + Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Applies a change read from the log.
    fn apply_raw(&mut self, change: &RawValue) -> Result<(), serde_json::Error>;
    fn to_json(&self) -> Result<Box<RawValue>, serde_json::Error>;
    fn snapshot(&self, view: &View<'_>, out: &mut Map<String, Value>);
    fn pending(&self) -> bool;
    fn deadlines(&self, out: &mut Vec<(String, i64)>);
}

impl<F: Feature> Part for F {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn apply_raw(&mut self, change: &RawValue) -> Result<(), serde_json::Error> {
        let change: F::Change = serde_json::from_str(change.get())?;
        self.apply(change);
        Ok(())
    }
    fn to_json(&self) -> Result<Box<RawValue>, serde_json::Error> {
        serde_json::value::to_raw_value(self)
    }
    fn snapshot(&self, view: &View<'_>, out: &mut Map<String, Value>) {
        Feature::snapshot(self, view, out);
    }
    fn pending(&self) -> bool {
        Feature::pending(self)
    }
    fn deadlines(&self, out: &mut Vec<(String, i64)>) {
        Feature::deadlines(self, out);
    }
}

/// [`Feature::restore`] behind a trait object.
pub(crate) type RestoreFn = for<'a> fn(
    &'a mut dyn Part,
    &'a dyn ClassroomStore,
    &'a LiveSession,
) -> BoxFuture<'a, Result<(), ApiError>>;
/// [`Feature::tick`].
pub(crate) type TickFn = for<'a> fn(&'a Arc<Live>, &'a str) -> BoxFuture<'a, Result<bool, ApiError>>;

/// A feature as the sequencer knows it: its key and its hooks, made by
/// [`register`]. The crate's list of them is `crate::features::ALL`.
pub struct Registration {
    pub(crate) key: &'static str,
    pub(crate) new: fn() -> Box<dyn Part>,
    pub(crate) load: fn(&RawValue) -> Result<Box<dyn Part>, serde_json::Error>,
    pub(crate) legacy: fn(&Map<String, Value>) -> Box<dyn Part>,
    pub(crate) restore: RestoreFn,
    pub(crate) flush: for<'a, 'b> fn(&'a mut Locked<'b>) -> Result<bool, ApiError>,
    pub(crate) due: for<'a, 'b, 'c> fn(&'a mut Locked<'b>, &'c str, i64) -> Result<(), ApiError>,
    pub(crate) tick: TickFn,
}

/// The registration of feature `F`.
pub const fn register<F: Feature>() -> Registration {
    Registration {
        key: F::KEY,
        new: new_part::<F>,
        load: load_part::<F>,
        legacy: legacy_part::<F>,
        restore: restore_part::<F>,
        flush: F::flush,
        due: F::due,
        tick: F::tick,
    }
}

fn new_part<F: Feature>() -> Box<dyn Part> {
    Box::new(F::default())
}

fn load_part<F: Feature>(json: &RawValue) -> Result<Box<dyn Part>, serde_json::Error> {
    Ok(Box::new(serde_json::from_str::<F>(json.get())?))
}

fn legacy_part<F: Feature>(old: &Map<String, Value>) -> Box<dyn Part> {
    Box::new(F::from_legacy(old))
}

fn restore_part<'a, F: Feature>(
    part: &'a mut dyn Part,
    store: &'a dyn ClassroomStore,
    session: &'a LiveSession,
) -> BoxFuture<'a, Result<(), ApiError>> {
    match part.as_any_mut().downcast_mut::<F>() {
        Some(state) => state.restore(store, session),
        None => Box::pin(async { Ok(()) }),
    }
}
