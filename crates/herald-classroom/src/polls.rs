//! Live polls and quizzes during a live session (in progress).

use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::live::Doc;
use crate::sessions::Viewer;
use crate::ClassroomState;

/// What a live session's document keeps of its polls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollsState {}

/// The routes of polls, merged into [`crate::routes`].
pub fn routes() -> Router<ClassroomState> {
    Router::new()
}

/// The polls fields of a snapshot for `viewer`.
pub(crate) fn snapshot_fields(doc: &Doc, viewer: &Viewer, out: &mut Map<String, Value>) {
    let _ = (doc, viewer, out);
}

/// Brings a document loaded from the store up to date with the poll answers
/// saved after it (answers are rows first, the document is saved coalesced).
///
/// # Errors
/// `store_unavailable`.
pub(crate) async fn on_load(
    store: &dyn herald_store::ClassroomStore,
    row: &herald_store::LiveSession,
    doc: &mut Doc,
) -> Result<(), herald_server::error::ApiError> {
    let _ = (store, row, doc);
    Ok(())
}
