//! Idempotent publish: a retried publish with the same `idempotency_key` appends
//! once and answers the first result.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn the_same_key_twice_appends_once_and_answers_the_same() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut sse = server.subscribe_sse(&app, "orders", &tok).await;
    server.publish(&app, "orders", json!("before")).await;

    let body = json!({"channel": "orders", "data": {"id": 7}, "idempotency_key": "order-7"});
    let first = server.publish_body(&app, body.clone()).await;
    let second = server.publish_body(&app, body.clone()).await;
    assert_eq!(first, second);
    assert_eq!(first["offset"], 2);

    assert_eq!(server.history_offsets(&app, "orders").await, [1, 2]);
    let got = sse.messages(2).await;
    assert_eq!(got[1]["data"], json!({"id": 7}));
    sse.assert_quiet(Duration::from_millis(300)).await;

    // A new key appends.
    let third = server
        .publish_body(
            &app,
            json!({"channel": "orders", "data": {"id": 7}, "idempotency_key": "order-7b"}),
        )
        .await;
    assert_eq!(third["offset"], 3);
    // The retried multi-channel publish too.
    let multi = json!({"channels": ["a", "b"], "data": 1, "idempotency_key": "fanout-1"});
    let m1 = server.publish_body(&app, multi.clone()).await;
    let m2 = server.publish_body(&app, multi).await;
    assert_eq!(m1, m2);
    assert_eq!(server.history_offsets(&app, "a").await, [1]);
    assert_eq!(server.history_offsets(&app, "b").await, [1]);
}

#[tokio::test]
async fn the_same_key_with_a_different_request_is_409_idempotency_conflict() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    server
        .publish_body(
            &app,
            json!({"channel": "orders", "data": 1, "idempotency_key": "k"}),
        )
        .await;
    for other in [
        json!({"channel": "orders", "data": 2, "idempotency_key": "k"}),
        json!({"channel": "orders", "event": "other", "data": 1, "idempotency_key": "k"}),
        json!({"channel": "elsewhere", "data": 1, "idempotency_key": "k"}),
        json!({"channels": ["orders", "elsewhere"], "data": 1, "idempotency_key": "k"}),
    ] {
        assert_refused(
            &server.post("/v1/apps/acme/publish", Some(&app.key), &other).await,
            409,
            "idempotency_conflict",
        );
    }
    assert_eq!(server.history_offsets(&app, "orders").await, [1]);
    assert_eq!(server.history_offsets(&app, "elsewhere").await, Vec::<u64>::new());
}

#[tokio::test]
async fn ten_concurrent_retries_append_once() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let body = json!({"channel": "orders", "data": {"id": 9}, "idempotency_key": "order-9"});
    let url = server.app_url(&app, "/publish");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let http = server.http.clone();
            let url = url.clone();
            let key = app.key.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let res = http
                    .post(url)
                    .bearer_auth(key)
                    .json(&body)
                    .timeout(REQUEST_WAIT)
                    .send()
                    .await
                    .unwrap();
                (
                    res.status().as_u16(),
                    res.json::<serde_json::Value>().await.unwrap(),
                )
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        let (status, v) = t.await.unwrap();
        assert_eq!(status, 200, "{v}");
        answers.push(v);
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0]["offset"], 1);
    assert_eq!(server.history_offsets(&app, "orders").await, [1]);
}

#[tokio::test]
async fn apps_with_the_same_key_are_independent() {
    let server = TestServer::start().await;
    let a = server.create_app("app-a").await;
    let b = server.create_app("app-b").await;
    server.publish(&b, "orders", json!("b0")).await;
    let ra = server
        .publish_body(
            &a,
            json!({"channel": "orders", "data": "a", "idempotency_key": "same"}),
        )
        .await;
    // Not a conflict, and not a's answer: b's own append.
    let rb = server
        .publish_body(
            &b,
            json!({"channel": "orders", "data": "b", "idempotency_key": "same"}),
        )
        .await;
    assert_eq!(ra["offset"], 1);
    assert_eq!(rb["offset"], 2);
    assert_ne!(ra["epoch"], rb["epoch"]);
    assert_eq!(server.history_offsets(&a, "orders").await, [1]);
    assert_eq!(server.history_offsets(&b, "orders").await, [1, 2]);
    assert_eq!(server.history(&b, "orders", "").await["messages"][1]["data"], "b");
}

#[tokio::test]
async fn a_refused_publish_does_not_use_up_its_key() {
    let server = TestServer::start_with(|c| c.node.limits.max_message_size = 100).await;
    let app = server.create_app("acme").await;
    let big = json!({"channel": "orders", "data": "x".repeat(200), "idempotency_key": "k"});
    assert_refused(
        &server.post("/v1/apps/acme/publish", Some(&app.key), &big).await,
        413,
        "message_too_large",
    );
    let ok = server
        .publish_body(
            &app,
            json!({"channel": "orders", "data": 1, "idempotency_key": "k"}),
        )
        .await;
    assert_eq!(ok["offset"], 1);
    // Keys must be 1 to 256 characters.
    for k in [String::new(), "k".repeat(257)] {
        assert_refused(
            &server
                .post(
                    "/v1/apps/acme/publish",
                    Some(&app.key),
                    &json!({"channel": "orders", "data": 1, "idempotency_key": k}),
                )
                .await,
            400,
            "invalid_parameter",
        );
    }
    assert_eq!(server.history_offsets(&app, "orders").await, [1]);
}

#[tokio::test]
async fn a_key_is_remembered_for_its_window_only() {
    let server = TestServer::start_with(|c| c.node.idempotency_window = Duration::from_millis(300)).await;
    let app = server.create_app("acme").await;
    let body = json!({"channel": "orders", "data": 1, "idempotency_key": "k"});
    assert_eq!(server.publish_body(&app, body.clone()).await["offset"], 1);
    assert_eq!(server.publish_body(&app, body.clone()).await["offset"], 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Past the window the key is new again (and a different body is no conflict).
    assert_eq!(server.publish_body(&app, body).await["offset"], 2);
    let other = json!({"channel": "orders", "data": 2, "idempotency_key": "k"});
    assert_refused(
        &server.post("/v1/apps/acme/publish", Some(&app.key), &other).await,
        409,
        "idempotency_conflict",
    );
    assert_eq!(server.history_offsets(&app, "orders").await, [1, 2]);
}
