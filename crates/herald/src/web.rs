//! What the binary serves besides the API: the classroom's pages at `/`, the
//! developers' page (`/developers`, with its script and style sheet: the pages'
//! policy allows no inline script or style), the browser SDK (`/sdk/herald.js`),
//! and the demo page with its token endpoint. Plain files, no build step, embedded at
//! compile time.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use herald_node::{Claims, Node};
use herald_protocol::ErrorCode;
use herald_server::error::ApiError;

const DEVELOPERS: &str = include_str!("../../../web/developers.html");
const DEVELOPERS_JS: &str = include_str!("../../../web/developers.js");
const DEVELOPERS_CSS: &str = include_str!("../../../web/developers.css");
const CLASS_HTML: &str = include_str!("../../../web/classroom/index.html");
/// The classroom's modules and style sheet, served under `/classroom/`.
const CLASS_ASSETS: &[(&str, &str)] = &[
    ("app.js", include_str!("../../../web/classroom/app.js")),
    ("api.js", include_str!("../../../web/classroom/api.js")),
    ("dom.js", include_str!("../../../web/classroom/dom.js")),
    ("session.js", include_str!("../../../web/classroom/session.js")),
    ("slides.js", include_str!("../../../web/classroom/slides.js")),
    ("polls.js", include_str!("../../../web/classroom/polls.js")),
    ("groups.js", include_str!("../../../web/classroom/groups.js")),
    ("style.css", include_str!("../../../web/classroom/style.css")),
];
const SDK: &str = include_str!("../../../web/sdk/herald.js");
const DEMO_HTML: &str = include_str!("../../../web/demo/index.html");
const DEMO_JS: &str = include_str!("../../../web/demo/demo.js");
const DEMO_CSS: &str = include_str!("../../../web/demo/demo.css");

/// How long a demo token lives.
const DEMO_TOKEN_TTL_SECS: i64 = 3600;

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files, changed by upgrades: revalidate rather than cache blindly.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// The static routes; the demo ones only when `demo` is on.
pub fn routes(node: Node, demo: bool) -> Router {
    let mut r = Router::new()
        .route(
            "/",
            get(|| async { asset(CLASS_HTML, "text/html; charset=utf-8") }),
        )
        .route("/developers", get(|| async { Html(DEVELOPERS) }))
        .route(
            "/developers.js",
            get(|| async { asset(DEVELOPERS_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/developers.css",
            get(|| async { asset(DEVELOPERS_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/sdk/herald.js",
            get(|| async { asset(SDK, "text/javascript; charset=utf-8") }),
        );
    for &(name, body) in CLASS_ASSETS {
        let content_type = if name.ends_with(".css") {
            "text/css; charset=utf-8"
        } else {
            "text/javascript; charset=utf-8"
        };
        r = r.route(
            &format!("/classroom/{name}"),
            get(move || async move { asset(body, content_type) }),
        );
    }
    if demo {
        r = r
            .route(
                "/demo",
                get(|| async { axum::response::Redirect::permanent("/demo/") }),
            )
            .route(
                "/demo/",
                get(|| async {
                    let mut res = asset(DEMO_HTML, "text/html; charset=utf-8");
                    res.headers_mut().insert(
                        header::CONTENT_SECURITY_POLICY,
                        HeaderValue::from_static(herald_server::security::DEMO_POLICY),
                    );
                    res
                }),
            )
            .route(
                "/demo/demo.js",
                get(|| async { asset(DEMO_JS, "text/javascript; charset=utf-8") }),
            )
            .route(
                "/demo/demo.css",
                get(|| async { asset(DEMO_CSS, "text/css; charset=utf-8") }),
            )
            .route("/demo/token", get(demo_token).with_state(node));
    }
    r
}

/// `GET /demo/token?sub=NAME`: a one-hour token of the `demo` app for anyone, so
/// the demo page works without a backend. Off with `demo_app = false`.
async fn demo_token(State(node): State<Node>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let sub = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "sub")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| "guest".to_owned());
    if sub.is_empty() || sub.len() > 64 || sub.chars().any(|c| c.is_control()) {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "sub must be 1 to 64 printable characters",
        ));
    }
    let (_, record) = node.app("demo").await?;
    let secret = record.token_secrets.first().ok_or_else(|| {
        ApiError::new(
            ErrorCode::AppNotFound,
            "the demo app has no token secret; run `herald app rotate demo`",
        )
    })?;
    let now = herald_broker::now_millis() / 1000;
    let claims = Claims {
        sub: Some(sub.clone()),
        exp: now + DEMO_TOKEN_TTL_SECS,
        nbf: None,
        iat: Some(now),
        app: Some("demo".to_owned()),
        channels: vec!["*".to_owned()],
        publish: vec!["*".to_owned()],
        info: Some(serde_json::json!({ "name": sub })),
    };
    let token = herald_node::sign_token(secret, &claims)?;
    let mut res = token.into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
