//! Slide decks and page flips during a live session (in progress).

use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::live::Doc;
use crate::sessions::Viewer;
use crate::ClassroomState;

/// What a live session's document keeps of its slides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlidesState {}

/// The routes of slides, merged into [`crate::routes`].
pub fn routes() -> Router<ClassroomState> {
    Router::new()
}

/// The slides fields of a snapshot for `viewer`.
pub(crate) fn snapshot_fields(doc: &Doc, viewer: &Viewer, out: &mut Map<String, Value>) {
    let _ = (doc, viewer, out);
}
