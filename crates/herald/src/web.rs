//! Static pages served by the binary (no build step).

use axum::response::Html;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../../web/index.html");

/// The static routes.
pub fn routes() -> Router {
    Router::new().route("/", get(|| async { Html(INDEX) }))
}
