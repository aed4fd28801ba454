//! CORS is never granted with credentials (issue 12, 2.5): on every kind of
//! answer (preflights, the server API, the transports on both paths, the
//! classroom's cookie-authenticated API, refusals, unknown routes), with
//! `cors_origins = ["*"]` and with a list, for a foreign page, a sandboxed
//! one (`null`), the listed one, this server's own and none. No answer
//! carries `Access-Control-Allow-Credentials`; `Access-Control-Allow-Origin`
//! is `*` under `*` (never a reflected origin) and, under a list, exactly the
//! listed origin the request came from, or absent.

use reqwest::Method;

use crate::support::*;

/// One request: method, path (`{tok}` and `{key}` filled in), a preflight's
/// method to ask for.
type Request<'a> = (Method, &'a str, Option<&'a str>);

const REQUESTS: &[Request] = &[
    (Method::OPTIONS, "/v1/apps/acme/publish", Some("POST")),
    (Method::OPTIONS, "/v1/apps/acme/events?channel=a", Some("GET")),
    (Method::OPTIONS, "/v1/apps/acme/poll", Some("POST")),
    (Method::OPTIONS, "/v1/apps/acme/channels/a/history", Some("GET")),
    (Method::OPTIONS, "/v1/admin/apps", Some("POST")),
    (Method::OPTIONS, "/classroom/api/auth/signin", Some("POST")),
    (Method::OPTIONS, "/classroom/api/courses", Some("POST")),
    (Method::GET, "/healthz", None),
    (Method::GET, "/v1/apps/acme/events?channel=a&token={tok}", None),
    (
        Method::GET,
        "/v1/apps/acme/events?channel=a&token=not-a-token",
        None,
    ),
    (
        Method::GET,
        "/v1/apps/acme/poll?channel=a&timeout=0&token={tok}",
        None,
    ),
    (Method::GET, "/v1/apps/acme/poll?channel=a&timeout=0", None),
    (Method::POST, "/v1/apps/acme/publish", None),
    (Method::GET, "/v1/apps/acme/channels/a/history", None),
    (Method::GET, "/v1/apps/acme/stats", None),
    (Method::GET, "/v1/admin/apps", None),
    (Method::GET, "/classroom/api/auth/me", None),
    (Method::POST, "/classroom/api/auth/signin", None),
    (Method::GET, "/classroom/api/courses", None),
    (Method::GET, "/v1/nope", None),
];

#[tokio::test]
async fn cors_is_never_granted_with_credentials_nor_reflected_to_a_foreign_page() {
    let mut tally = Tally::default();
    for listed in [false, true] {
        let server = TestServer::start_with(|c| {
            if listed {
                c.server.cors_origins = vec!["https://good.example".into()];
            }
        })
        .await;
        let app = server.create_app("acme").await;
        let tok = user_token(&app, "alice");
        // A signed-in classroom user: its cookies go with the requests.
        let mut ada = crate::classroom::Browser::new(&server);
        ada.new_account("Ada").await;
        let own = server.url.clone();
        let origins = [
            Some("https://evil.example"),
            Some("null"),
            Some("https://good.example"),
            Some(own.as_str()),
            None,
        ];
        for &(ref method, path, preflight) in REQUESTS {
            let path = path.replace("{tok}", &tok);
            for origin in origins {
                // A fresh connection each time: SSE takes the native path.
                let http = if path.starts_with("/classroom") {
                    ada.http.clone()
                } else {
                    reqwest::Client::new()
                };
                let mut req = http
                    .request(method.clone(), format!("{}{path}", server.url))
                    .timeout(REQUEST_WAIT);
                if let Some(o) = origin {
                    req = req.header("origin", o);
                }
                if let Some(m) = preflight {
                    req = req.header("access-control-request-method", m).header(
                        "access-control-request-headers",
                        "authorization, content-type, x-csrf-token, last-event-id",
                    );
                }
                if path.contains("/publish") || path.contains("/history") || path.contains("/stats") {
                    req = req.bearer_auth(&app.key);
                }
                if *method == Method::POST {
                    req = req.header("content-type", "application/json").body("{}");
                }
                let res = req.send().await.unwrap();
                let h = res.headers().clone();
                let status = res.status().as_u16();
                drop(res); // an SSE stream is not read
                let what = format!(
                    "{method} {path} from {origin:?} (cors_origins {}) -> {status}",
                    if listed { "listed" } else { "*" }
                );
                let credentials = h.get("access-control-allow-credentials");
                let granted = h
                    .get("access-control-allow-origin")
                    .map(|v| v.to_str().unwrap().to_owned());
                let outcome = match (&granted, listed, origin) {
                    _ if credentials.is_some() => Err(format!("credentials allowed: {credentials:?}")),
                    (None, _, _) => Ok(()),
                    (Some(g), false, _) if g == "*" => Ok(()),
                    (Some(g), true, Some("https://good.example")) if g == "https://good.example" => {
                        let vary = h
                            .get_all("vary")
                            .iter()
                            .any(|v| v.to_str().unwrap().to_ascii_lowercase().contains("origin"));
                        if vary {
                            Ok(())
                        } else {
                            Err("a listed origin granted without Vary: Origin".into())
                        }
                    }
                    (Some(g), _, _) => Err(format!("granted to {g:?}")),
                };
                tally.check(what, outcome);
            }
        }
    }
    tally.assert_clean();
    assert_eq!(tally.tries, 2 * REQUESTS.len() * 5);
}
