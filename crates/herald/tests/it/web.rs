//! What the binary serves for browsers: the SDK, the demo page and its tokens, CORS,
//! and the SSE `open` event the SDK relies on.

use crate::support::*;

#[tokio::test]
async fn the_sdk_is_served_as_a_javascript_module() {
    let server = TestServer::start().await;
    let res = server
        .http
        .get(format!("{}/sdk/herald.js", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let body = res.text().await.unwrap();
    assert!(body.contains("export class Herald"));
}

#[tokio::test]
async fn the_demo_page_hands_out_demo_tokens_only_when_the_demo_is_on() {
    let server = TestServer::start_with(|c| c.demo_app = true).await;
    let (status, _) = server.get("/demo/", None).await;
    assert_eq!(status, 200);
    let token = server
        .http
        .get(format!("{}/demo/token?sub=ada", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut sse = Sse::connect(
        &format!("{}/v1/apps/demo/events?channel=demo:x&token={token}", server.url),
        None,
    )
    .await;
    assert_eq!(sse.status, 200, "a demo token subscribes to the demo app");
    let _ = sse.next_within(std::time::Duration::from_millis(300)).await;
    assert_eq!(sse.opens.len(), 1, "the stream starts with an open event");
    let open: serde_json::Value = serde_json::from_str(&sse.opens[0]).unwrap();
    assert_eq!(
        open["cursor"].as_str(),
        sse.last_event_id.as_deref(),
        "open carries the cursor, as its id"
    );

    let (status, body) = server.get("/demo/token?sub=", None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_parameter");

    let off = TestServer::start().await;
    let (status, body) = off.get("/demo/token?sub=ada", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn browsers_on_other_origins_may_call_the_api() {
    let server = TestServer::start().await;
    let app = server.create_app("cors").await;
    let res = server
        .http
        .request(reqwest::Method::OPTIONS, server.app_url(&app, "/publish"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "preflight answered {}", res.status());
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    let allowed = res.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));

    let limited =
        TestServer::start_with(|c| c.server.cors_origins = vec!["https://good.example".into()]).await;
    let app = limited.create_app("cors").await;
    let tok = user_token(&app, "alice");
    let res = limited
        .http
        .get(limited.app_url(&app, &format!("/poll?channel=a&timeout=0&token={tok}")))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        res.headers().get("access-control-allow-origin").is_none(),
        "other origins get no CORS grant"
    );
    let res = limited
        .http
        .get(limited.app_url(&app, &format!("/poll?channel=a&timeout=0&token={tok}")))
        .header("origin", "https://good.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://good.example"
    );
}
