//! Client tokens that work, permission patterns, user-limited channels,
//! anonymous access, client publish, and key rotation (tokens that must not
//! work are the table of tokens.rs).

use std::time::Duration;

use herald_node::NamespaceOptions;
use serde_json::{json, Value};

use crate::support::*;

/// The status and body of an SSE request on `channel` with `tok` (None: none).
async fn sse_status(server: &TestServer, app: &App, channel: &str, tok: Option<&str>) -> (u16, Value) {
    let t = tok.map(|t| format!("&token={t}")).unwrap_or_default();
    let sse = server.sse(app, &format!("channel={}{t}", enc(channel))).await;
    if sse.status == 200 {
        return (200, Value::Null);
    }
    // A refusal: read it again as a plain request to get the body.
    server
        .get_within(
            &format!("/v1/apps/{}/events?channel={}{t}", app.name, enc(channel)),
            None,
        )
        .await
}

#[tokio::test]
async fn a_valid_hs256_token_works_on_every_transport_and_in_the_header() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");

    let mut by_query = server.subscribe_sse(&app, "news", &tok).await;
    let res = server
        .http
        .get(server.app_url(&app, "/events?channel=news"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "SSE takes the token as a bearer too");
    drop(res);
    let mut ws = server.ws(&app, Some(&tok)).await.unwrap();
    assert!(ws.subscribe("news").await.get("ok").is_some());

    // The app claim naming this app is fine.
    let mut c = claims(Some("alice"), &["*"], &[]);
    c.app = Some("acme".into());
    let (status, _) = sse_status(&server, &app, "news", Some(&token(&app, &c))).await;
    assert_eq!(status, 200);

    server.publish(&app, "news", json!("hi")).await;
    assert_eq!(by_query.messages(1).await[0]["data"], "hi");
    assert_eq!(ws.messages(1).await[0]["data"], "hi");
    let (status, body) = server
        .get_within(
            &format!("/v1/apps/acme/poll?channel=news&timeout=0&cursor=&token={tok}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn channel_patterns_allow_what_they_match_and_nothing_else() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = token(
        &app,
        &claims(Some("alice"), &["chat:*", "org:*:public", "room-*"], &[]),
    );
    for ok in ["chat:room", "chat:a:b", "org:acme:public", "room-7"] {
        assert_eq!(sse_status(&server, &app, ok, Some(&tok)).await.0, 200, "{ok}");
    }
    for no in [
        "news",
        "chat",
        "org:acme:private",
        "org:acme:public:x",
        "roo",
        "other:chat",
    ] {
        assert_refused(&sse_status(&server, &app, no, Some(&tok)).await, 403, "forbidden");
    }
    // One forbidden channel among allowed ones refuses the connection.
    assert_refused(
        &server
            .get_within(
                &format!("/v1/apps/acme/events?channel=chat:room&channel=news&token={tok}"),
                None,
            )
            .await,
        403,
        "forbidden",
    );
    assert_refused(
        &server
            .get_within(
                &format!("/v1/apps/acme/poll?channel=news&timeout=0&token={tok}"),
                None,
            )
            .await,
        403,
        "forbidden",
    );
    let mut ws = server.ws(&app, Some(&tok)).await.unwrap();
    assert_ws_refused(&ws.subscribe("news").await, "forbidden");
    assert!(ws.subscribe("chat:room").await.get("ok").is_some());

    // A token without channel grants subscribes to nothing.
    let none = token(&app, &claims(Some("bob"), &[], &[]));
    assert_refused(
        &sse_status(&server, &app, "chat:room", Some(&none)).await,
        403,
        "forbidden",
    );
}

#[tokio::test]
async fn a_user_limited_channel_admits_exactly_its_users() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let ch = "im#alice,bob";
    // No grant needed for the listed users.
    let alice = token(&app, &claims(Some("alice"), &[], &[]));
    let bob = token(&app, &claims(Some("bob"), &[], &[]));
    let mut a = server.subscribe_sse(&app, ch, &alice).await;
    let mut b = server.subscribe_sse(&app, ch, &bob).await;
    // Anyone else is refused, even with `*`.
    let carol = user_token(&app, "carol");
    assert_refused(
        &sse_status(&server, &app, ch, Some(&carol)).await,
        403,
        "forbidden",
    );
    let alicex = user_token(&app, "alicex");
    assert_refused(
        &sse_status(&server, &app, ch, Some(&alicex)).await,
        403,
        "forbidden",
    );
    // No token at all: no credentials (the SDK then asks for a token).
    assert_refused(&sse_status(&server, &app, ch, None).await, 401, "unauthorized");
    let anon_all = token(&app, &claims(None, &["*"], &[]));
    assert_refused(
        &sse_status(&server, &app, ch, Some(&anon_all)).await,
        403,
        "forbidden",
    );
    let mut ws = server.ws(&app, Some(&carol)).await.unwrap();
    assert_ws_refused(&ws.subscribe(ch).await, "forbidden");

    server.publish(&app, ch, json!("hi")).await;
    assert_eq!(a.messages(1).await[0]["data"], "hi");
    assert_eq!(b.messages(1).await[0]["data"], "hi");
}

#[tokio::test]
async fn anonymous_subscribe_is_refused_by_default_and_allowed_where_configured() {
    let server = TestServer::start_with(|c| {
        c.node.namespaces.insert(
            "public".into(),
            NamespaceOptions {
                anonymous_subscribe: true,
                ..Default::default()
            },
        );
    })
    .await;
    let app = server.create_app("acme").await;
    // Without a token (none, or an empty `?token=`) it is "no credentials": 401
    // `unauthorized`, on which the SDK fetches a token; 403 would tell it to give up.
    for tok in [None, Some("")] {
        assert_refused(&sse_status(&server, &app, "news", tok).await, 401, "unauthorized");
        assert_refused(
            &sse_status(&server, &app, "chat:1", tok).await,
            401,
            "unauthorized",
        );
        let t = tok.map(|t| format!("&token={t}")).unwrap_or_default();
        assert_refused(
            &server
                .get_within(&format!("/v1/apps/acme/poll?channel=news&timeout=0{t}"), None)
                .await,
            401,
            "unauthorized",
        );
        let mut ws = server.ws(&app, tok).await.unwrap();
        assert_ws_refused(&ws.subscribe("news").await, "unauthorized");
    }
    let mut ws = server.ws(&app, None).await.unwrap();

    // In the open namespace: no token needed.
    let mut sse = server.sse(&app, "channel=public:lobby").await;
    assert_eq!(sse.status, 200);
    assert!(ws.subscribe("public:lobby").await.get("ok").is_some());
    server.publish(&app, "public:lobby", json!("welcome")).await;
    assert_eq!(sse.messages(1).await[0]["data"], "welcome");
    assert_eq!(ws.messages(1).await[0]["data"], "welcome");
    // A token without grants may also read it.
    let none = token(&app, &claims(Some("bob"), &[], &[]));
    assert_eq!(sse_status(&server, &app, "public:x", Some(&none)).await.0, 200);
}

#[tokio::test]
async fn client_publish_needs_a_publish_grant_and_an_open_namespace() {
    let server = TestServer::start_with(|c| {
        c.node.namespaces.insert(
            "announce".into(),
            NamespaceOptions {
                client_publish: false,
                ..Default::default()
            },
        );
    })
    .await;
    let app = server.create_app("acme").await;
    let writer = token(&app, &claims(Some("alice"), &["*"], &["chat:*", "announce:*"]));
    let reader = user_token(&app, "bob");
    let mut sse = server.subscribe_sse(&app, "chat:room", &reader).await;

    let body = json!({"channel": "chat:room", "event": "said", "data": {"text": "hi"}});
    let (status, answer) = server.post("/v1/apps/acme/publish", Some(&writer), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["offset"], 1);
    assert_eq!(answer["channel"], "chat:room");
    // The token in the query works too.
    let (status, answer) = server
        .post(&format!("/v1/apps/acme/publish?token={writer}"), None, &body)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["offset"], 2);
    let got = sse.messages(2).await;
    assert_eq!(got[0]["data"], json!({"text": "hi"}));
    assert_eq!(got[0]["event"], "said");

    // Without a grant for the channel.
    for (tok, channel) in [(&writer, "news"), (&reader, "chat:room")] {
        assert_refused(
            &server
                .post(
                    "/v1/apps/acme/publish",
                    Some(tok),
                    &json!({"channel": channel, "data": 1}),
                )
                .await,
            403,
            "forbidden",
        );
    }
    // One forbidden channel in a list refuses the whole publish.
    assert_refused(
        &server
            .post(
                "/v1/apps/acme/publish",
                Some(&writer),
                &json!({"channels": ["chat:other", "news"], "data": 1}),
            )
            .await,
        403,
        "forbidden",
    );
    // A namespace closed to client publishing, whatever the grant.
    assert_refused(
        &server
            .post(
                "/v1/apps/acme/publish",
                Some(&writer),
                &json!({"channel": "announce:all", "data": 1}),
            )
            .await,
        403,
        "forbidden",
    );
    // Over WebSocket, the same rules.
    let mut ws = server.ws(&app, Some(&writer)).await.unwrap();
    let r = ws
        .request(json!({"op": "publish", "channel": "chat:room", "data": 3}))
        .await;
    assert_eq!(r["ok"]["offset"], 3, "{r}");
    assert_ws_refused(
        &ws.request(json!({"op": "publish", "channel": "news", "data": 1}))
            .await,
        "forbidden",
    );
    assert_ws_refused(
        &ws.request(json!({"op": "publish", "channel": "announce:all", "data": 1}))
            .await,
        "forbidden",
    );

    assert_eq!(server.history_offsets(&app, "chat:room").await, [1, 2, 3]);
    for c in ["news", "chat:other", "announce:all"] {
        assert_eq!(server.history_offsets(&app, c).await, Vec::<u64>::new(), "{c}");
    }
    // The app key publishes to the closed namespace.
    server
        .publish(&app, "announce:all", json!("from the backend"))
        .await;
}

async fn rotate(server: &TestServer, app: &App, body: Option<Value>) -> App {
    let (status, v) = server
        .call(
            reqwest::Method::POST,
            &format!("/v1/admin/apps/{}/rotate", app.name),
            Some(&server.admin_key),
            body.map(|b| b.to_string()),
        )
        .await;
    assert_eq!(status, 200, "rotate answered {v}");
    assert_eq!(v["app"], app.name.as_str());
    let new = App {
        name: app.name.clone(),
        key: v["key"].as_str().unwrap().into(),
        token_secret: v["token_secret"].as_str().unwrap().into(),
    };
    assert_ne!(new.key, app.key);
    assert_ne!(new.token_secret, app.token_secret);
    new
}

#[tokio::test]
async fn rotating_without_grace_stops_the_old_credentials_at_once() {
    let server = TestServer::start().await;
    let old = server.create_app("acme").await;
    let old_tok = user_token(&old, "alice");
    // Warm the app cache with the old credentials.
    server.publish(&old, "news", json!(1)).await;
    assert_eq!(sse_status(&server, &old, "news", Some(&old_tok)).await.0, 200);

    let new = rotate(&server, &old, None).await;

    assert_refused(
        &server
            .post(
                "/v1/apps/acme/publish",
                Some(&old.key),
                &json!({"channel": "news", "data": 2}),
            )
            .await,
        401,
        "invalid_key",
    );
    assert_refused(
        &sse_status(&server, &old, "news", Some(&old_tok)).await,
        401,
        "invalid_token",
    );
    server.publish(&new, "news", json!(3)).await;
    let new_tok = user_token(&new, "alice");
    assert_eq!(sse_status(&server, &new, "news", Some(&new_tok)).await.0, 200);
    // Still refused after the cache would have expired.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_refused(
        &server.get_within("/v1/apps/acme/stats", Some(&old.key)).await,
        401,
        "invalid_key",
    );
    assert_eq!(server.history_offsets(&new, "news").await, [1, 2]);
}

#[tokio::test]
async fn rotating_with_grace_keeps_both_credentials_working() {
    let server = TestServer::start().await;
    let old = server.create_app("acme").await;
    let old_tok = user_token(&old, "alice");
    let new = rotate(&server, &old, Some(json!({"grace_seconds": 3600}))).await;
    let new_tok = user_token(&new, "alice");

    server.publish(&old, "news", json!("old key")).await;
    server.publish(&new, "news", json!("new key")).await;
    assert_eq!(sse_status(&server, &old, "news", Some(&old_tok)).await.0, 200);
    assert_eq!(sse_status(&server, &new, "news", Some(&new_tok)).await.0, 200);

    // A second rotation without grace ends both earlier credentials.
    let newest = rotate(&server, &new, Some(json!({"grace_seconds": 0}))).await;
    for key in [&old.key, &new.key] {
        assert_refused(
            &server.get_within("/v1/apps/acme/stats", Some(key)).await,
            401,
            "invalid_key",
        );
    }
    for tok in [&old_tok, &new_tok] {
        assert_refused(
            &sse_status(&server, &old, "news", Some(tok)).await,
            401,
            "invalid_token",
        );
    }
    server.publish(&newest, "news", json!("newest key")).await;
    // A bad rotate body is refused and rotates nothing.
    let (status, v) = server
        .call(
            reqwest::Method::POST,
            "/v1/admin/apps/acme/rotate",
            Some(&server.admin_key),
            Some(r#"{"grace":"1h"}"#.into()),
        )
        .await;
    assert_refused(&(status, v), 400, "invalid_json");
    server.publish(&newest, "news", json!("still")).await;
}

#[tokio::test]
async fn a_token_that_never_expires_keeps_its_connection() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    for exp in [i64::MAX, 4_000_000_000_000_000_000, 253_402_300_799] {
        let mut c = claims(Some("alice"), &["*"], &[]);
        c.exp = exp;
        let tok = token(&app, &c);
        let mut sse = server.subscribe_sse(&app, "news", &tok).await;
        let mut ws = server.ws(&app, Some(&tok)).await.unwrap();
        assert!(ws.subscribe("news").await.get("ok").is_some(), "exp {exp}");
        let data = json!({ "exp": exp });
        server.publish(&app, "news", data.clone()).await;
        assert_eq!(sse.messages(1).await[0]["data"], data, "exp {exp}");
        assert_eq!(ws.messages(1).await[0]["data"], data, "exp {exp}");
    }
}
