//! Breakout groups during a live session (in progress).

use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::live::Doc;
use crate::sessions::Viewer;
use crate::ClassroomState;

/// What a live session's document keeps of its groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsState {}

/// The routes of groups, merged into [`crate::routes`].
pub fn routes() -> Router<ClassroomState> {
    Router::new()
}

/// The groups fields of a snapshot for `viewer`.
pub(crate) fn snapshot_fields(doc: &Doc, viewer: &Viewer, out: &mut Map<String, Value>) {
    let _ = (doc, viewer, out);
}
