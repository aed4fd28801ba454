//! The first thing a user does: publish, and see it arrive on every transport.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_published_message_reaches_sse_websocket_and_longpoll() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");

    let mut sse = Sse::connect(
        &server.app_url(&app, &format!("/events?channel=news&token={tok}")),
        None,
    )
    .await;
    assert_eq!(sse.status, 200);
    let mut ws = Ws::connect(&server.app_url(&app, &format!("/ws?token={tok}")))
        .await
        .unwrap();
    let r = ws.request(json!({"op":"subscribe","channel":"news"})).await;
    assert!(r.get("ok").is_some(), "{r}");
    let poll_url = server.app_url(&app, &format!("/poll?channel=news&timeout=5&token={tok}"));
    let poll = tokio::spawn({
        let http = server.http.clone();
        async move {
            http.get(poll_url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let p = server.publish(&app, "news", json!({"hello": "world"})).await;
    assert_eq!(p["offset"], 1);

    let m = sse.messages(1).await;
    assert_eq!(m[0]["data"], json!({"hello":"world"}));
    assert_eq!(m[0]["channel"], "news");
    let m = ws.messages(1).await;
    assert_eq!(m[0]["data"], json!({"hello":"world"}));
    assert_eq!(m[0]["offset"], 1);
    let body = poll.await.unwrap();
    assert_eq!(body["messages"][0]["data"], json!({"hello":"world"}), "{body}");
}
