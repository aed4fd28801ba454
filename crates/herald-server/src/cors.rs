//! Which pages may call Herald: one policy over `cors_origins`, used by the
//! tower-http layer (the routes), the native SSE path (listener.rs), the
//! WebSocket upgrade on both paths, and the classroom's cookie-authenticated API.
//!
//! - **CORS** (`Access-Control-Allow-Origin`): the listed origins, or any with `*`.
//!   No credentials are ever allowed: tokens travel in URLs and headers.
//! - **WebSocket upgrades**: browsers send cookies and no CORS check applies to a
//!   WebSocket, so a page elsewhere could open one in its visitor's name
//!   (cross-site WebSocket hijacking). With a list of origins, an upgrade whose
//!   `Origin` is neither listed nor this server's own is refused (403
//!   `origin_not_allowed`); with `*`, any page may (the token says who it is).
//! - **Cookie-authenticated requests** (the classroom): an `Origin` that is
//!   neither this server's own nor listed is refused, whatever `*` allows, beside
//!   the CSRF token.
//!
//! Origins compare exactly (scheme, host and port; ASCII case ignored): a
//! look-alike host, another scheme or port, and `null` (sandboxed frames, files)
//! are foreign. "This server's own" is an `Origin` whose host and port are the
//! request's `Host` (a reverse proxy must pass `Host` through, docs/operations.md).
//! A request without `Origin` is not from a page of another site (browsers send
//! it on every cross-site request of these kinds), so it passes.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use herald_protocol::ErrorCode;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;

/// The origins whose pages may call Herald (`cors_origins`).
#[derive(Debug, Clone, Copy)]
pub struct CorsPolicy<'a> {
    origins: &'a [String],
}

impl<'a> CorsPolicy<'a> {
    /// The policy of `origins` (`*`: any page).
    pub fn new(origins: &'a [String]) -> Self {
        Self { origins }
    }

    fn any(&self) -> bool {
        self.origins.iter().any(|o| o == "*")
    }

    fn listed(&self, origin: &str) -> bool {
        self.origins
            .iter()
            .any(|o| o != "*" && o.eq_ignore_ascii_case(origin))
    }

    /// The tower-http layer for the routes.
    pub fn layer(&self) -> CorsLayer {
        let allow = if self.any() {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(self.origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
            ])
            .max_age(Duration::from_secs(3600))
    }

    /// The CORS header lines for a native response (the same grant as the layer).
    pub(crate) fn header_lines(&self, headers: &HeaderMap) -> String {
        let Some(origin) = origin(headers) else {
            return String::new();
        };
        if self.any() {
            return "access-control-allow-origin: *\r\n".to_owned();
        }
        if self.listed(origin) {
            return format!("access-control-allow-origin: {origin}\r\nvary: origin\r\n");
        }
        String::new()
    }

    /// Checks the `Origin` of a WebSocket upgrade.
    ///
    /// # Errors
    /// `origin_not_allowed` for a page of an origin not listed.
    pub fn check_websocket(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.any() {
            return Ok(());
        }
        self.check(headers, "open a WebSocket")
    }

    /// Checks the `Origin` of a cookie-authenticated request: `*` does not
    /// count, only this server's own origin and the listed ones.
    ///
    /// # Errors
    /// `origin_not_allowed` for a page of another origin.
    pub fn check_credentialed(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        self.check(headers, "call this API with your cookies")
    }

    fn check(&self, headers: &HeaderMap, what: &str) -> Result<(), ApiError> {
        let Some(sent) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = sent.to_str().unwrap_or("");
        if self.listed(origin) || same_origin(origin, headers) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::OriginNotAllowed,
            format!(
                "pages of origin {:?} may not {what} here; add it to cors_origins",
                origin.chars().take(100).collect::<String>()
            ),
        ))
    }
}

fn origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|o| o.to_str().ok())
}

/// True when `origin` (`scheme://host[:port]`) names the host and port of the
/// request's `Host`.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| !a.is_empty() && a.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn only_listed_or_own_origins_pass() {
        let list = vec!["https://app.example".to_owned()];
        let p = CorsPolicy::new(&list);
        let host = "herald.example:8080";
        for ok in [
            None,
            Some("https://app.example"),
            Some("HTTPS://APP.EXAMPLE"),
            Some("http://herald.example:8080"),
            Some("https://herald.example:8080"),
        ] {
            assert!(p.check_websocket(&headers(ok, host)).is_ok(), "{ok:?}");
        }
        for no in [
            "https://evil.example",
            "null",
            "http://app.example",
            "https://app.example:444",
            "https://app.example.evil.example",
            "https://herald.example",
            "https://herald.example:8080.evil",
            "",
        ] {
            let e = p.check_websocket(&headers(Some(no), host)).unwrap_err();
            assert_eq!(e.0.code, ErrorCode::OriginNotAllowed, "{no}");
        }
    }

    #[test]
    fn any_opens_websockets_but_not_cookies() {
        let list = vec!["*".to_owned()];
        let p = CorsPolicy::new(&list);
        let h = headers(Some("https://evil.example"), "herald.example");
        assert!(p.check_websocket(&h).is_ok());
        assert!(p.check_credentialed(&h).is_err());
        assert_eq!(p.header_lines(&h), "access-control-allow-origin: *\r\n");
    }
}
