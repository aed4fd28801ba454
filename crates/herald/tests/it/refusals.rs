//! Every refusal: the right status and `{"error":{"code","message"}}`, on every
//! endpoint and transport, and nothing changed by a refused request.

use std::time::Duration;

use herald_node::NamespaceOptions;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn server_api_without_credentials_is_401_unauthorized() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let body = json!({"channel": "news", "data": 1});
    assert_refused(
        &server.post("/v1/apps/acme/publish", None, &body).await,
        401,
        "unauthorized",
    );
    for path in [
        "/v1/apps/acme/channels/news/history",
        "/v1/apps/acme/channels/news/presence",
        "/v1/apps/acme/channels",
        "/v1/apps/acme/stats",
    ] {
        assert_refused(&server.get_within(path, None).await, 401, "unauthorized");
    }
    // A scheme other than Bearer is no credential either.
    let res = server
        .http
        .get(server.app_url(&app, "/stats"))
        .header("authorization", format!("Basic {}", app.key))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    assert_refused(&(status, res.json().await.unwrap()), 401, "unauthorized");
    assert_eq!(server.history_offsets(&app, "news").await, Vec::<u64>::new());
}

#[tokio::test]
async fn a_wrong_key_is_401_invalid_key() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let wrong = "hk_000000000000000000000000000000000000000000000000";
    let body = json!({"channel": "news", "data": 1});
    assert_refused(
        &server.post("/v1/apps/acme/publish", Some(wrong), &body).await,
        401,
        "invalid_key",
    );
    for path in [
        "/v1/apps/acme/channels/news/history",
        "/v1/apps/acme/channels/news/presence",
        "/v1/apps/acme/channels",
        "/v1/apps/acme/stats",
    ] {
        assert_refused(&server.get_within(path, Some(wrong)).await, 401, "invalid_key");
    }
    // The token secret is not a key.
    assert_refused(
        &server
            .post("/v1/apps/acme/publish", Some(&app.token_secret), &body)
            .await,
        401,
        "invalid_key",
    );
    assert_eq!(server.history_offsets(&app, "news").await, Vec::<u64>::new());
}

#[tokio::test]
async fn an_unknown_app_is_404_app_not_found_everywhere() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let body = json!({"channel": "news", "data": 1});
    assert_refused(
        &server.post("/v1/apps/nope/publish", Some(&app.key), &body).await,
        404,
        "app_not_found",
    );
    for path in [
        "/v1/apps/nope/channels/news/history".to_owned(),
        "/v1/apps/nope/channels/news/presence".to_owned(),
        "/v1/apps/nope/channels".to_owned(),
        "/v1/apps/nope/stats".to_owned(),
        format!("/v1/apps/nope/events?channel=news&token={tok}"),
        format!("/v1/apps/nope/poll?channel=news&timeout=0&token={tok}"),
    ] {
        assert_refused(
            &server.get_within(&path, Some(&app.key)).await,
            404,
            "app_not_found",
        );
    }
    let (status, body) = Ws::connect(&format!("{}/v1/apps/nope/ws?token={tok}", server.url))
        .await
        .err()
        .expect("the upgrade is refused");
    assert_refused(&(status, body), 404, "app_not_found");
}

#[tokio::test]
async fn an_invalid_app_name_is_400_invalid_app_name() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let body = json!({"channel": "news", "data": 1});
    for name in ["Acme", "ac_me", "a.b", &"a".repeat(64)] {
        assert_refused(
            &server
                .post(&format!("/v1/apps/{name}/publish"), Some(&app.key), &body)
                .await,
            400,
            "invalid_app_name",
        );
        assert_refused(
            &server
                .get_within(&format!("/v1/apps/{name}/events?channel=news"), None)
                .await,
            400,
            "invalid_app_name",
        );
    }
    assert_refused(
        &server
            .post(
                "/v1/admin/apps",
                Some(&server.admin_key),
                &json!({"name": "Bad Name"}),
            )
            .await,
        400,
        "invalid_app_name",
    );
}

#[tokio::test]
async fn an_invalid_channel_name_is_400_invalid_channel_in_body_path_and_query() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let long = "a".repeat(256);
    for bad in ["a b", "a/b", "é", "", long.as_str(), "a*"] {
        let body = json!({"channel": bad, "data": 1});
        assert_refused(
            &server.post("/v1/apps/acme/publish", Some(&app.key), &body).await,
            400,
            "invalid_channel",
        );
        let body = json!({"channels": ["ok", bad], "data": 1});
        assert_refused(
            &server.post("/v1/apps/acme/publish", Some(&app.key), &body).await,
            400,
            "invalid_channel",
        );
        assert_refused(
            &server
                .get_within(
                    &format!("/v1/apps/acme/events?channel={}&token={tok}", enc(bad)),
                    None,
                )
                .await,
            400,
            "invalid_channel",
        );
        assert_refused(
            &server
                .get_within(
                    &format!(
                        "/v1/apps/acme/poll?channel=ok&channel={}&timeout=0&token={tok}",
                        enc(bad)
                    ),
                    None,
                )
                .await,
            400,
            "invalid_channel",
        );
        if !bad.is_empty() {
            assert_refused(
                &server
                    .get_within(
                        &format!("/v1/apps/acme/channels/{}/history", enc(bad)),
                        Some(&app.key),
                    )
                    .await,
                400,
                "invalid_channel",
            );
        }
    }
    let mut ws = server.ws(&app, Some(&tok)).await.unwrap();
    let r = ws.subscribe("a b").await;
    assert_ws_refused(&r, "invalid_channel");
    // Nothing was published to the valid channel of the refused lists.
    assert_eq!(server.history_offsets(&app, "ok").await, Vec::<u64>::new());
}

#[tokio::test]
async fn a_reserved_or_malformed_event_name_is_400_invalid_event() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    for ev in [
        "reset",
        "presence",
        "error",
        "disconnect",
        "open",
        "a b",
        "",
        "x\ny",
    ] {
        let body = json!({"channel": "news", "event": ev, "data": 1});
        assert_refused(
            &server.post("/v1/apps/acme/publish", Some(&app.key), &body).await,
            400,
            "invalid_event",
        );
    }
    assert_eq!(server.history_offsets(&app, "news").await, Vec::<u64>::new());
}

#[tokio::test]
async fn a_malformed_body_is_400() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let key = Some(app.key.as_str());
    for body in [
        "{\"channel\": \"news\", \"data\": ",
        "not json",
        "",
        "[1, 2]",
        "\"news\"",
        "{\"channel\": \"news\", \"data\": 1} trailing",
        "{\"channel\": 7, \"data\": 1}",
    ] {
        assert_refused(&server.publish_raw(&app, key, body).await, 400, "invalid_json");
    }
    // An unknown field (a typo) is refused, not ignored.
    let (status, v) = server
        .publish_raw(&app, key, r#"{"channel":"news","dta":1}"#)
        .await;
    assert_eq!(status, 400, "{v}");
    assert_refused(&(status, v.clone()), 400, v["error"]["code"].as_str().unwrap());
    assert!(v["error"]["message"].as_str().unwrap().contains("dta"), "{v}");
    // Both channel and channels.
    assert_refused(
        &server
            .publish_raw(&app, key, r#"{"channel":"a","channels":["b"],"data":1}"#)
            .await,
        400,
        "bad_request",
    );
    // No channel at all, or an empty list.
    assert_refused(
        &server.publish_raw(&app, key, r#"{"data":1}"#).await,
        400,
        "missing_parameter",
    );
    assert_refused(
        &server.publish_raw(&app, key, r#"{"channels":[],"data":1}"#).await,
        400,
        "missing_parameter",
    );
    // SSE and long-poll without a channel.
    let tok = user_token(&app, "alice");
    assert_refused(
        &server
            .get_within(&format!("/v1/apps/acme/events?token={tok}"), None)
            .await,
        400,
        "missing_parameter",
    );
    assert_refused(
        &server
            .get_within(&format!("/v1/apps/acme/poll?timeout=0&token={tok}"), None)
            .await,
        400,
        "missing_parameter",
    );
    for c in ["news", "a", "b"] {
        assert_eq!(server.history_offsets(&app, c).await, Vec::<u64>::new());
    }
}

#[tokio::test]
async fn data_over_the_limit_is_413_message_too_large_and_appends_nothing() {
    let server = TestServer::start_with(|c| c.node.limits.max_message_size = 1024).await;
    let app = server.create_app("acme").await;
    server.publish(&app, "news", json!("small")).await;

    let big = "x".repeat(1100);
    let body = json!({"channel": "news", "data": big}).to_string();
    let refused = server.publish_raw(&app, Some(&app.key), &body).await;
    assert_refused(&refused, 413, "message_too_large");
    // A multi-channel publish is refused as a whole.
    let body = json!({"channels": ["news", "other"], "data": big}).to_string();
    assert_refused(
        &server.publish_raw(&app, Some(&app.key), &body).await,
        413,
        "message_too_large",
    );

    assert_eq!(server.history_offsets(&app, "news").await, [1]);
    assert_eq!(server.history_offsets(&app, "other").await, Vec::<u64>::new());
    // Exactly at the limit is fine, and the offsets have no hole.
    let exact = "y".repeat(1022); // plus two quotes = 1024 bytes of JSON
    assert_eq!(server.publish(&app, "news", json!(exact)).await["offset"], 2);
}

#[tokio::test]
async fn a_body_far_over_the_limit_is_413_body_too_large() {
    let server = TestServer::start_with(|c| c.node.limits.max_message_size = 1024).await;
    let app = server.create_app("acme").await;
    let huge = "z".repeat(300 * 1024);
    let body = json!({"channel": "news", "data": huge}).to_string();
    assert_refused(
        &server.publish_raw(&app, Some(&app.key), &body).await,
        413,
        "body_too_large",
    );
    assert_eq!(server.history_offsets(&app, "news").await, Vec::<u64>::new());
    // The admin API bounds its bodies too.
    let body = json!({"name": "x".repeat(10_000)}).to_string();
    assert_refused(
        &server
            .call(
                Method::POST,
                "/v1/admin/apps",
                Some(&server.admin_key),
                Some(body),
            )
            .await,
        413,
        "body_too_large",
    );
}

#[tokio::test]
async fn an_unknown_route_is_404_not_found_in_json() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    for path in [
        "/v1/nope",
        "/v1/apps/acme/nope",
        "/v2/apps/acme/publish",
        "/healthz/x",
    ] {
        assert_refused(&server.get_within(path, Some(&app.key)).await, 404, "not_found");
    }
    assert_refused(
        &server
            .call(
                Method::POST,
                "/v1/apps/acme/pub",
                Some(&app.key),
                Some("{}".into()),
            )
            .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn a_wrong_method_is_405_method_not_allowed_in_json_with_allow() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let cases = [
        (Method::GET, "/v1/apps/acme/publish", "POST"),
        (Method::DELETE, "/v1/apps/acme/publish", "POST"),
        (Method::POST, "/v1/apps/acme/stats", "GET"),
        (Method::PUT, "/v1/apps/acme/channels/news/history", "GET"),
        (Method::POST, "/healthz", "GET"),
        (Method::GET, "/v1/admin/apps/acme/rotate", "POST"),
    ];
    for (method, path, allow) in cases {
        let res = server
            .http
            .request(method.clone(), format!("{}{path}", server.url))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let allowed = res
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert_refused(&(status, res.json().await.unwrap()), 405, "method_not_allowed");
        let mut got: Vec<&str> = allowed.split(',').map(str::trim).collect();
        got.retain(|m| *m != "HEAD");
        assert_eq!(got, [allow], "Allow of {method} {path}: {allowed:?}");
    }
}

#[tokio::test]
async fn too_many_channels_on_one_connection_is_429() {
    let server = TestServer::start_with(|c| c.node.limits.max_channels_per_connection = 2).await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    assert_refused(
        &server
            .get_within(
                &format!("/v1/apps/acme/events?channel=a&channel=b&channel=c&token={tok}"),
                None,
            )
            .await,
        429,
        "too_many_channels",
    );
    assert_refused(
        &server
            .get_within(
                &format!("/v1/apps/acme/poll?channel=a&channel=b&channel=c&timeout=0&token={tok}"),
                None,
            )
            .await,
        429,
        "too_many_channels",
    );
    // Two are fine, and the same channel twice counts once.
    let ok = server
        .sse(&app, &format!("channel=a&channel=b&channel=a&token={tok}"))
        .await;
    assert_eq!(ok.status, 200);

    let mut ws = server.ws(&app, Some(&tok)).await.unwrap();
    assert!(ws.subscribe("a").await.get("ok").is_some());
    assert!(ws.subscribe("b").await.get("ok").is_some());
    assert_ws_refused(&ws.subscribe("c").await, "too_many_channels");
    // After an unsubscribe there is room again.
    let r = ws.request(json!({"op": "unsubscribe", "channel": "a"})).await;
    assert!(r.get("ok").is_some(), "{r}");
    assert!(ws.subscribe("c").await.get("ok").is_some());
}

#[tokio::test]
async fn connections_over_the_app_quota_are_429_too_many_connections() {
    let server = TestServer::start_with(|c| c.node.limits.max_connections_per_app = 2).await;
    let app = server.create_app("acme").await;
    let other = server.create_app("other").await;
    let tok = user_token(&app, "alice");

    let first = server.subscribe_sse(&app, "news", &tok).await;
    let _second = server.ws(&app, Some(&tok)).await.unwrap();
    let third = server
        .get_within(&format!("/v1/apps/acme/events?channel=news&token={tok}"), None)
        .await;
    assert_refused(&third, 429, "too_many_connections");
    let (status, body) = server.ws(&app, Some(&tok)).await.err().expect("refused");
    assert_refused(&(status, body), 429, "too_many_connections");
    assert_refused(
        &server
            .get_within(
                &format!("/v1/apps/acme/poll?channel=news&timeout=0&token={tok}"),
                None,
            )
            .await,
        429,
        "too_many_connections",
    );
    // Another app has its own quota.
    let other_tok = user_token(&other, "bob");
    let _o = server.subscribe_sse(&other, "news", &other_tok).await;

    // A closed connection frees its place.
    drop(first);
    let again = eventually("a place is free again", WAIT * 3, || async {
        let s = server.sse(&app, &format!("channel=news&token={tok}")).await;
        (s.status == 200).then_some(s)
    })
    .await;
    assert_eq!(again.status, 200);
}

#[tokio::test]
async fn an_invalid_cursor_is_400_invalid_cursor() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    for bad in ["garbage!", "%%%", "a.b.c"] {
        assert_refused(
            &server
                .get_within(
                    &format!(
                        "/v1/apps/acme/events?channel=news&cursor={}&token={tok}",
                        enc(bad)
                    ),
                    None,
                )
                .await,
            400,
            "invalid_cursor",
        );
        assert_refused(
            &server
                .get_within(
                    &format!(
                        "/v1/apps/acme/poll?channel=news&cursor={}&timeout=0&token={tok}",
                        enc(bad)
                    ),
                    None,
                )
                .await,
            400,
            "invalid_cursor",
        );
    }
    // The Last-Event-ID header that EventSource sends.
    let res = server
        .http
        .get(server.app_url(&app, &format!("/events?channel=news&token={tok}")))
        .header("last-event-id", "garbage!")
        .timeout(REQUEST_WAIT)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    assert_refused(&(status, res.json().await.unwrap()), 400, "invalid_cursor");
    // And over WebSocket.
    let mut ws = server.ws(&app, Some(&tok)).await.unwrap();
    let r = ws
        .request(json!({"op": "subscribe", "channel": "news", "cursor": "garbage!"}))
        .await;
    assert_ws_refused(&r, "invalid_cursor");
}

#[tokio::test]
async fn a_long_poll_timeout_out_of_range_is_400() {
    let server = TestServer::start_with(|c| {
        c.server.longpoll_max_timeout = Duration::from_secs(30);
    })
    .await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    for t in ["31", "1000", "-1", "abc", "1.5"] {
        assert_refused(
            &server
                .get_within(
                    &format!("/v1/apps/acme/poll?channel=news&timeout={t}&token={tok}"),
                    None,
                )
                .await,
            400,
            "invalid_parameter",
        );
    }
    let (status, body) = server
        .get_within(
            &format!("/v1/apps/acme/poll?channel=news&timeout=0&token={tok}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_history_limit_of_0_or_over_the_maximum_is_400() {
    let server = TestServer::start_with(|c| c.node.limits.max_history_page = 50).await;
    let app = server.create_app("acme").await;
    for q in [
        "limit=0",
        "limit=51",
        "limit=-1",
        "limit=ten",
        "since=x",
        "since=-3",
    ] {
        assert_refused(
            &server
                .get_within(
                    &format!("/v1/apps/acme/channels/news/history?{q}"),
                    Some(&app.key),
                )
                .await,
            400,
            "invalid_parameter",
        );
    }
    server.history(&app, "news", "limit=50").await;
    // Without a limit, the default page fits the configured maximum.
    for i in 0..60 {
        server.publish(&app, "news", json!(i)).await;
    }
    let h = server.history(&app, "news", "").await;
    let offsets: Vec<u64> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, (11..=60).collect::<Vec<u64>>());
}

#[tokio::test]
async fn too_many_channels_in_one_publish_is_400() {
    let server = TestServer::start_with(|c| c.node.limits.max_channels_per_publish = 2).await;
    let app = server.create_app("acme").await;
    assert_refused(
        &server
            .post(
                "/v1/apps/acme/publish",
                Some(&app.key),
                &json!({"channels": ["a", "b", "c"], "data": 1}),
            )
            .await,
        400,
        "bad_request",
    );
    for c in ["a", "b", "c"] {
        assert_eq!(server.history_offsets(&app, c).await, Vec::<u64>::new());
    }
    let ok = server
        .publish_body(&app, json!({"channels": ["a", "b"], "data": 1}))
        .await;
    assert_eq!(ok["results"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_admin_key_acts_as_any_apps_key_whatever_its_shape() {
    // An admin key with dots, as a person might choose it.
    let server = TestServer::start_with(|c| {
        c.node.admin_key = Some("ops.team.admin-key-2024".into());
    })
    .await;
    let app = server.create_app("acme").await;
    let admin = server.admin_key.clone();
    let (status, body) = server
        .post(
            "/v1/apps/acme/publish",
            Some(&admin),
            &json!({"channel": "news", "data": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .get_within("/v1/apps/acme/channels/news/history", Some(&admin))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.history_offsets(&app, "news").await, [1]);
}

#[tokio::test]
async fn a_client_token_on_a_key_only_endpoint_is_403() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = token(&app, &claims(Some("alice"), &["*"], &["*"]));
    for path in [
        "/v1/apps/acme/channels/news/history",
        "/v1/apps/acme/channels/news/presence",
        "/v1/apps/acme/channels",
        "/v1/apps/acme/stats",
    ] {
        assert_refused(&server.get_within(path, Some(&tok)).await, 403, "forbidden");
    }
}

#[tokio::test]
async fn the_admin_api_without_or_with_a_wrong_admin_key_is_401() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let body = json!({"name": "newapp"});
    assert_refused(
        &server.post("/v1/admin/apps", None, &body).await,
        401,
        "unauthorized",
    );
    assert_refused(
        &server
            .post("/v1/admin/apps", Some("not-the-admin-key"), &body)
            .await,
        401,
        "invalid_key",
    );
    // An app key is not the admin key.
    assert_refused(
        &server.post("/v1/admin/apps", Some(&app.key), &body).await,
        401,
        "invalid_key",
    );
    assert_refused(
        &server.get_within("/v1/admin/apps", None).await,
        401,
        "unauthorized",
    );
    assert_refused(
        &server.get_within("/v1/admin/apps", Some(&app.key)).await,
        401,
        "invalid_key",
    );
    assert_refused(
        &server.post("/v1/admin/apps/acme/rotate", None, &json!({})).await,
        401,
        "unauthorized",
    );
    assert_refused(
        &server
            .post("/v1/admin/apps/acme/rotate", Some(&app.key), &json!({}))
            .await,
        401,
        "invalid_key",
    );
    // Nothing was created or rotated.
    let (status, list) = server.get_within("/v1/admin/apps", Some(&server.admin_key)).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    // `classroom` is Herald's internal app, made at startup.
    assert_eq!(names, ["acme", "classroom"]);
    server.publish(&app, "news", json!(1)).await;
}

#[tokio::test]
async fn creating_an_existing_app_is_409_and_rotating_an_unknown_one_404() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    assert_refused(
        &server
            .post(
                "/v1/admin/apps",
                Some(&server.admin_key),
                &json!({"name": "acme"}),
            )
            .await,
        409,
        "app_exists",
    );
    // The existing app's credentials still work.
    server.publish(&app, "news", json!(1)).await;
    assert_refused(
        &server
            .post("/v1/admin/apps/nope/rotate", Some(&server.admin_key), &json!({}))
            .await,
        404,
        "app_not_found",
    );
    assert_refused(
        &server
            .post(
                "/v1/admin/apps/Bad%20Name/rotate",
                Some(&server.admin_key),
                &json!({}),
            )
            .await,
        400,
        "invalid_app_name",
    );
    assert_refused(
        &server
            .post("/v1/admin/apps", Some(&server.admin_key), &json!({"nam": "x"}))
            .await,
        400,
        "invalid_json",
    );
}

#[tokio::test]
async fn websocket_refusals_before_the_upgrade_are_http_errors_in_json() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let (status, body) = server.ws(&app, Some("not.a.token")).await.err().expect("refused");
    assert_refused(&(status, body), 401, "invalid_token");
    let (status, body) = server.ws(&app, Some("garbage")).await.err().expect("refused");
    assert_refused(&(status, body), 401, "invalid_token");
    let mut expired = claims(Some("alice"), &["*"], &[]);
    expired.exp = herald_broker::now_millis() / 1000 - 3600;
    let (status, body) = server
        .ws(&app, Some(&token(&app, &expired)))
        .await
        .err()
        .expect("refused");
    assert_refused(&(status, body), 401, "token_expired");
    // A plain GET on the WebSocket route is not an upgrade: 400 saying so.
    let got = server.get_within("/v1/apps/acme/ws", None).await;
    assert_refused(&got, 400, "bad_request");
    let message = got.1["error"]["message"].as_str().unwrap();
    assert!(message.contains("WebSocket"), "{message}");
}

#[tokio::test]
async fn websocket_frames_that_are_refused_get_an_error_reply_and_keep_the_connection() {
    let server = TestServer::start_with(|c| {
        c.node.namespaces.insert(
            "locked".into(),
            NamespaceOptions {
                client_publish: false,
                ..Default::default()
            },
        );
    })
    .await;
    let app = server.create_app("acme").await;
    let tok = token(&app, &claims(Some("alice"), &["chat:*"], &["*"]));
    let mut ws = server.ws(&app, Some(&tok)).await.unwrap();
    assert_ws_refused(&ws.subscribe("news").await, "forbidden");
    assert_ws_refused(&ws.request(json!({"op": "fly"})).await, "bad_frame");
    assert_ws_refused(&ws.request(json!({"op": "subscribe"})).await, "missing_parameter");
    assert_ws_refused(
        &ws.request(json!({"op": "publish", "channel": "news", "event": "reset", "data": 1}))
            .await,
        "invalid_event",
    );
    assert_ws_refused(
        &ws.request(json!({"op": "publish", "channel": "locked:x", "data": 1}))
            .await,
        "forbidden",
    );
    // A frame that is not JSON gets an error without an id.
    ws.send_text("not json").await;
    let r = ws.recv().await.unwrap();
    assert_eq!(r["error"]["code"], "bad_frame", "{r}");
    // The connection still works.
    assert!(ws.request(json!({"op": "ping"})).await.get("ok").is_some());
    assert!(ws.subscribe("chat:1").await.get("ok").is_some());
    assert_eq!(server.history_offsets(&app, "locked:x").await, Vec::<u64>::new());
}
