//! Herald's HTTP face: one module per transport ([`sse`], [`ws`], [`longpoll`]),
//! the server API ([`api`]), the admin API ([`admin`]), operations ([`ops`]), and
//! the one place that turns errors into responses ([`error`]).
//!
//! Handlers only parse, call [`herald_node::Node`], and format; every rule lives
//! in the node.

pub mod admin;
pub mod api;
pub mod cors;
mod direct;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod listener;
pub mod longpoll;
pub mod ops;
pub mod request;
pub mod security;
mod socket;
pub mod sse;
mod subscribe;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use herald_node::Node;
use tokio::net::TcpListener;

/// Transport timings and other knobs of the HTTP face.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// SSE comment heartbeat period (at most 25 s, so proxies keep the stream).
    pub sse_heartbeat: Duration,
    /// The `retry:` hint sent to EventSource clients.
    pub sse_retry: Duration,
    /// WebSocket ping period.
    pub ws_ping: Duration,
    /// A WebSocket that sends nothing (not even a pong) for this long is closed.
    pub ws_idle_timeout: Duration,
    /// The longest long-poll wait a client may ask for.
    pub longpoll_max_timeout: Duration,
    /// After shutdown starts, how long connections may take to drain.
    pub shutdown_deadline: Duration,
    /// Origins whose pages may call Herald from the browser (`*`: any). Tokens
    /// travel in the URL or a header, never in cookies, so `*` exposes nothing;
    /// a list also limits WebSocket upgrades (see [`cors`]).
    pub cors_origins: Vec<String>,
    /// The longest a client may take to send a whole request head.
    pub request_head_timeout: Duration,
    /// The longest a client may take to send a whole request body.
    pub request_body_timeout: Duration,
    /// The slowest a request body may arrive (bytes per second, averaged).
    pub request_body_min_rate: u64,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            sse_heartbeat: Duration::from_secs(15),
            sse_retry: Duration::from_millis(2000),
            ws_ping: Duration::from_secs(25),
            ws_idle_timeout: Duration::from_secs(60),
            longpoll_max_timeout: Duration::from_secs(60),
            shutdown_deadline: Duration::from_secs(10),
            cors_origins: vec!["*".to_owned()],
            request_head_timeout: Duration::from_secs(30),
            request_body_timeout: Duration::from_secs(120),
            request_body_min_rate: 1024,
        }
    }
}

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// The node.
    pub node: Node,
    /// The HTTP options.
    pub options: Arc<ServerOptions>,
}

/// The whole router. `extra` is merged in (the binary adds static pages).
pub fn router(state: AppState, extra: Router) -> Router {
    let cors = cors::CorsPolicy::new(&state.options.cors_origins).layer();
    let clock = request::BodyClock {
        timeout: state.options.request_body_timeout,
        min_rate: state.options.request_body_min_rate,
    };
    let api = Router::new()
        .route("/v1/apps/{app}/publish", post(api::publish))
        .route("/v1/apps/{app}/channels", get(api::channels))
        .route("/v1/apps/{app}/channels/{channel}/history", get(api::history))
        .route("/v1/apps/{app}/channels/{channel}/presence", get(api::presence))
        .route("/v1/apps/{app}/stats", get(api::stats))
        .route("/v1/apps/{app}/events", get(sse::events))
        .route(
            "/v1/apps/{app}/poll",
            get(longpoll::poll).post(longpoll::poll_body),
        )
        .route("/v1/apps/{app}/ws", get(ws::upgrade))
        .route("/v1/admin/apps", post(admin::create_app).get(admin::list_apps))
        .route("/v1/admin/apps/{app}/rotate", post(admin::rotate_app))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .with_state(state);
    api.merge(extra)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn(request::checked_head))
        .layer(axum::middleware::from_fn(error::framework_errors))
        .layer(axum::middleware::from_fn(security::headers))
        .layer(axum::middleware::from_fn_with_state(clock, request::timed_body))
        .layer(cors)
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains: the node
/// tells every connection to end (clients reconnect elsewhere with their cursor),
/// and the server waits at most `options.shutdown_deadline` for them. Fresh SSE
/// requests are served natively, everything else by hyper (see listener.rs).
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener::run(listener, router, state, shutdown).await
}
