//! Headers every answer of the router carries, unless its handler set its own:
//! a Content-Security-Policy for Herald's pages (scripts and styles only from
//! files of this origin, never inline; no framing by any site), no referrer to
//! other sites (join links hold codes), and no content sniffing.

use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The policy of Herald's pages. Connections go to this origin (`'self'`
/// covers `ws:`/`wss:` of the same host); images may come as `data:` or
/// `blob:` URLs, and a Markdown slide may show an image from any `http:` or
/// `https:` address (as its sanitiser allows; fetched with no referrer);
/// `frame-ancestors 'none'` keeps every page out of frames (clickjacking).
pub const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data: blob: http: https:; connect-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The policy of the demo page (`/demo/`): the same, but it may connect
/// anywhere. It is the SDK's playground, where a page asks its own backend
/// (another origin) for tokens; it holds nothing but demo tokens.
pub const DEMO_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data: blob:; connect-src 'self' http: https: ws: wss:; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Middleware: adds the headers above where the answer has none of its own.
pub async fn headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let defaults: [(HeaderName, &'static str); 4] = [
        (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in defaults {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    res
}
