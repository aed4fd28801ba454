//! Apps never see each other: another app's key and tokens read and write
//! nothing, and the same channel name in two apps are two streams.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn another_apps_key_reads_and_writes_nothing() {
    let server = TestServer::start().await;
    let a = server.create_app("app-a").await;
    let b = server.create_app("app-b").await;
    server.publish(&a, "news", json!("secret of a")).await;
    let a_tok = user_token(&a, "alice");
    let _listener = server.subscribe_sse(&a, "news", &a_tok).await;

    assert_refused(
        &server
            .post(
                "/v1/apps/app-a/publish",
                Some(&b.key),
                &json!({"channel": "news", "data": "from b"}),
            )
            .await,
        401,
        "invalid_key",
    );
    for path in [
        "/v1/apps/app-a/channels/news/history",
        "/v1/apps/app-a/channels/news/presence",
        "/v1/apps/app-a/channels",
        "/v1/apps/app-a/stats",
    ] {
        assert_refused(&server.get_within(path, Some(&b.key)).await, 401, "invalid_key");
    }
    assert_eq!(server.history_offsets(&a, "news").await, [1]);
}

#[tokio::test]
async fn another_apps_tokens_subscribe_and_publish_to_nothing() {
    let server = TestServer::start().await;
    let a = server.create_app("app-a").await;
    let b = server.create_app("app-b").await;
    let mut c = claims(Some("mallory"), &["*"], &["*"]);
    let b_tok = token(&b, &c);
    c.app = Some("app-a".into());
    let b_tok_naming_a = token(&b, &c);

    for tok in [&b_tok, &b_tok_naming_a] {
        for path in [
            format!("/v1/apps/app-a/events?channel=news&token={tok}"),
            format!("/v1/apps/app-a/poll?channel=news&timeout=0&token={tok}"),
        ] {
            assert_refused(&server.get_within(&path, None).await, 401, "invalid_token");
        }
        let (status, body) = server.ws(&a, Some(tok)).await.err().expect("refused");
        assert_refused(&(status, body), 401, "invalid_token");
        assert_refused(
            &server
                .post(
                    "/v1/apps/app-a/publish",
                    Some(tok),
                    &json!({"channel": "news", "data": "from b"}),
                )
                .await,
            401,
            "invalid_token",
        );
        // A client token never reads the server API of its own app either.
        assert_refused(
            &server
                .get_within("/v1/apps/app-a/channels/news/history", Some(tok))
                .await,
            403,
            "forbidden",
        );
    }
    assert_eq!(server.history_offsets(&a, "news").await, Vec::<u64>::new());
}

#[tokio::test]
async fn the_same_channel_name_in_two_apps_is_two_independent_streams() {
    let server = TestServer::start().await;
    let a = server.create_app("app-a").await;
    let b = server.create_app("app-b").await;
    let a_tok = token(&a, &claims(Some("alice"), &["*"], &["*"]));
    let b_tok = token(&b, &claims(Some("alice"), &["*"], &["*"]));

    let mut a_sse = server.subscribe_sse(&a, "news", &a_tok).await;
    let mut b_sse = server.subscribe_sse(&b, "news", &b_tok).await;
    let mut b_ws = server.ws(&b, Some(&b_tok)).await.unwrap();
    assert!(b_ws.subscribe("news").await.get("ok").is_some());
    let _b_lobby = server.subscribe_sse(&b, "lobby", &b_tok).await;

    assert_eq!(server.publish(&a, "news", json!("a1")).await["offset"], 1);
    assert_eq!(server.publish(&a, "news", json!("a2")).await["offset"], 2);
    assert_eq!(server.publish(&b, "news", json!("b1")).await["offset"], 1);
    // A client of b publishing over WebSocket stays in b.
    let r = b_ws
        .request(json!({"op": "publish", "channel": "news", "data": "b2"}))
        .await;
    assert_eq!(r["ok"]["offset"], 2, "{r}");

    let got: Vec<_> = a_sse
        .messages(2)
        .await
        .iter()
        .map(|m| m["data"].clone())
        .collect();
    assert_eq!(got, [json!("a1"), json!("a2")]);
    a_sse.assert_quiet(Duration::from_millis(300)).await;
    let got: Vec<_> = b_sse
        .messages(2)
        .await
        .iter()
        .map(|m| m["data"].clone())
        .collect();
    assert_eq!(got, [json!("b1"), json!("b2")]);
    let got: Vec<_> = b_ws.messages(2).await.iter().map(|m| m["data"].clone()).collect();
    assert_eq!(got, [json!("b1"), json!("b2")]);

    let ha = server.history(&a, "news", "").await;
    let hb = server.history(&b, "news", "").await;
    assert_eq!(ha["messages"][0]["data"], "a1");
    assert_eq!(ha["messages"].as_array().unwrap().len(), 2);
    assert_eq!(hb["messages"][0]["data"], "b1");
    assert_eq!(hb["messages"].as_array().unwrap().len(), 2);

    // Presence, channel lists and stats are per app.
    let pa = server.presence(&a, "news").await;
    assert_eq!(pa["members"][0]["connections"], 1, "{pa}");
    let pb = server.presence(&b, "news").await;
    assert_eq!(pb["members"][0]["connections"], 2, "{pb}");
    assert_eq!(server.channel_counts(&a).await, [("news".to_owned(), 1)]);
    assert_eq!(
        server.channel_counts(&b).await,
        [("lobby".to_owned(), 1), ("news".to_owned(), 2)]
    );
    assert_eq!(server.stats(&a).await["connections"], 1);
    assert_eq!(server.stats(&b).await["connections"], 3);
    assert_eq!(server.stats(&a).await["days"][0]["published"], 2);
    assert_eq!(server.stats(&b).await["days"][0]["published"], 2);
}

#[tokio::test]
async fn a_cursor_from_one_app_does_not_replay_anothers_history() {
    let server = TestServer::start().await;
    let a = server.create_app("app-a").await;
    let b = server.create_app("app-b").await;
    for i in 0..3 {
        server.publish(&a, "news", json!(i)).await;
    }
    server.publish(&b, "news", json!("b")).await;
    // A cursor of a's channel at offset 0 in a's epoch.
    let epoch = server.history(&a, "news", "").await["epoch"].clone();
    let (status, body) = server
        .get_within(
            &format!(
                "/v1/apps/app-a/poll?channel=news&timeout=0&token={}",
                user_token(&a, "alice")
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let a_cursor = body["cursor"].as_str().unwrap().to_owned();
    // Used on b, it names an epoch b's channel never had: a reset, not a's messages.
    let (status, body) = server
        .get_within(
            &format!(
                "/v1/apps/app-b/poll?channel=news&timeout=0&cursor={}&token={}",
                enc(&a_cursor),
                user_token(&b, "bob")
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for m in body["messages"].as_array().unwrap() {
        assert_ne!(m["epoch"], epoch, "a's message leaked into b: {body}");
    }
    assert_eq!(body["resets"].as_array().unwrap().len(), 1, "{body}");
}
