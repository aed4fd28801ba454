//! The features of a live session: the one list the sequencer is given, and
//! the routes each adds. Adding a feature is one module (its state
//! implementing [`Feature`], its handlers) and one line here; the sequencer
//! ([`crate::live`]) never names a feature.
//!
//! The order is the order of the parts in a snapshot's JSON and of their
//! fields in a screen's snapshot; keys never change once used.

use axum::Router;

use crate::live::{register, Registration};
use crate::ClassroomState;

/// A feature: how the sequencer knows it, and its routes.
pub struct Entry {
    /// What the sequencer gets.
    pub registration: Registration,
    /// Its HTTP routes.
    pub routes: fn() -> Router<ClassroomState>,
}

/// Every feature of a live session.
pub static ALL: &[Entry] = &[
    Entry {
        registration: register::<crate::hands::Hands>(),
        routes: crate::hands::routes,
    },
    Entry {
        registration: register::<crate::roles::Roles>(),
        routes: crate::roles::routes,
    },
    Entry {
        registration: register::<crate::here::Here>(),
        routes: crate::here::routes,
    },
    Entry {
        registration: register::<crate::questions::Questions>(),
        routes: crate::questions::routes,
    },
    Entry {
        registration: register::<crate::slides::SlidesState>(),
        routes: crate::slides::routes,
    },
    Entry {
        registration: register::<crate::polls::PollsState>(),
        routes: crate::polls::routes,
    },
    Entry {
        registration: register::<crate::groups::GroupsState>(),
        routes: crate::groups::routes,
    },
];

/// What the sequencer is given.
pub fn registrations() -> impl Iterator<Item = &'static Registration> {
    ALL.iter().map(|e| &e.registration)
}

/// Every feature's routes.
pub fn routes() -> Router<ClassroomState> {
    ALL.iter().fold(Router::new(), |r, e| r.merge((e.routes)()))
}
