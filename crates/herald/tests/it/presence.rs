//! Presence: who is on a channel (by token `sub`), with info and connection
//! counts; join/leave events where the namespace asks for them.

use std::time::Duration;

use herald_node::NamespaceOptions;
use serde_json::{json, Value};

use crate::support::*;

fn with_info(app: &App, sub: &str, name: &str) -> String {
    let mut c = claims(Some(sub), &["*"], &[]);
    c.info = Some(json!({ "name": name }));
    token(app, &c)
}

/// A server whose namespace `room` has join/leave events, `quiet` has no presence.
async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.node.namespaces.insert(
            "room".into(),
            NamespaceOptions {
                join_leave: true,
                anonymous_subscribe: true,
                ..Default::default()
            },
        );
        c.node.namespaces.insert(
            "quiet".into(),
            NamespaceOptions {
                presence: false,
                ..Default::default()
            },
        );
    })
    .await
}

fn members(v: &Value) -> Vec<(String, Value, u64)> {
    v["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members list: {v}"))
        .iter()
        .map(|m| {
            (
                m["user"].as_str().unwrap().to_owned(),
                m["info"].clone(),
                m["connections"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn presence_lists_users_with_info_and_connection_counts() {
    let server = server().await;
    let app = server.create_app("acme").await;
    assert_eq!(members(&server.presence(&app, "lobby").await), []);

    let alice = with_info(&app, "alice", "Alice");
    let a1 = server.subscribe_sse(&app, "lobby", &alice).await;
    let mut a2 = server.ws(&app, Some(&alice)).await.unwrap();
    assert!(a2.subscribe("lobby").await.get("ok").is_some());
    let a3 = server.subscribe_sse(&app, "lobby", &alice).await;
    let bob = server
        .subscribe_sse(&app, "lobby", &user_token(&app, "bob"))
        .await;

    let p = server.presence(&app, "lobby").await;
    assert_eq!(
        members(&p),
        [
            ("alice".to_owned(), json!({"name": "Alice"}), 3),
            ("bob".to_owned(), Value::Null, 1)
        ],
        "{p}"
    );
    // Every member has exactly user, info and connections.
    for m in p["members"].as_array().unwrap() {
        let mut keys: Vec<&String> = m.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["connections", "info", "user"], "{m}");
    }
    // Another channel has its own members.
    assert_eq!(members(&server.presence(&app, "other").await), []);

    // Leaving: bob disappears, alice counts down.
    drop(bob);
    drop(a1);
    eventually("bob leaves and alice has 2 connections", WAIT * 3, || async {
        let m = members(&server.presence(&app, "lobby").await);
        (m == [("alice".to_owned(), json!({"name": "Alice"}), 2)]).then_some(())
    })
    .await;
    let r = a2.request(json!({"op": "unsubscribe", "channel": "lobby"})).await;
    assert!(r.get("ok").is_some(), "{r}");
    drop(a3);
    eventually("alice leaves", WAIT * 3, || async {
        members(&server.presence(&app, "lobby").await)
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn anonymous_connections_are_not_listed() {
    let server = server().await;
    let app = server.create_app("acme").await;
    let no_token = server.sse(&app, "channel=room:1").await;
    assert_eq!(no_token.status, 200);
    let anon_token = token(&app, &claims(None, &["*"], &[]));
    let _anon = server.subscribe_sse(&app, "room:1", &anon_token).await;
    let mut ws = server.ws(&app, None).await.unwrap();
    assert!(ws.subscribe("room:1").await.get("ok").is_some());
    assert_eq!(members(&server.presence(&app, "room:1").await), []);
    let _carol = server
        .subscribe_sse(&app, "room:1", &user_token(&app, "carol"))
        .await;
    assert_eq!(
        members(&server.presence(&app, "room:1").await),
        [("carol".to_owned(), Value::Null, 1)]
    );
}

#[tokio::test]
async fn a_namespace_without_presence_lists_nobody() {
    let server = server().await;
    let app = server.create_app("acme").await;
    let _a = server
        .subscribe_sse(&app, "quiet:1", &user_token(&app, "alice"))
        .await;
    assert_eq!(members(&server.presence(&app, "quiet:1").await), []);
}

#[tokio::test]
async fn join_and_leave_events_reach_sse_subscribers_where_configured() {
    let server = server().await;
    let app = server.create_app("acme").await;
    let mut alice = server
        .subscribe_sse(&app, "room:1", &with_info(&app, "alice", "Alice"))
        .await;
    // Alice sees her own arrival first.
    let ev = alice.next().await.unwrap();
    assert_eq!(ev.event, "presence");
    assert_eq!(ev.json()["action"], "join");
    assert_eq!(ev.json()["user"], "alice");

    let bob = server
        .subscribe_sse(&app, "room:1", &with_info(&app, "bob", "Bob"))
        .await;
    let ev = alice.next().await.unwrap();
    assert_eq!(ev.event, "presence", "{ev:?}");
    assert_eq!(
        ev.json(),
        json!({"channel": "room:1", "action": "join", "user": "bob", "info": {"name": "Bob"}})
    );
    // A second tab of bob is no new arrival.
    let bob2 = server
        .subscribe_sse(&app, "room:1", &with_info(&app, "bob", "Bob"))
        .await;
    drop(bob2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(bob);
    let ev = alice.next_within(WAIT * 2).await.unwrap().unwrap();
    assert_eq!(ev.event, "presence", "{ev:?}");
    assert_eq!(ev.json()["action"], "leave", "{ev:?}");
    assert_eq!(ev.json()["user"], "bob");
    // Anonymous visitors come and go silently.
    let anon = server.sse(&app, "channel=room:1").await;
    assert_eq!(anon.status, 200);
    drop(anon);
    server.publish(&app, "room:1", json!("next")).await;
    let ev = alice.next().await.unwrap();
    assert_eq!(ev.event, "message", "{ev:?}");
}

#[tokio::test]
async fn join_and_leave_events_reach_websocket_subscribers() {
    let server = server().await;
    let app = server.create_app("acme").await;
    let mut alice = server.ws(&app, Some(&user_token(&app, "alice"))).await.unwrap();
    assert!(alice.subscribe("room:1").await.get("ok").is_some());
    let own = alice.push().await;
    assert_eq!(own["type"], "presence", "{own}");
    assert_eq!(own["user"], "alice");

    let mut bob = server
        .ws(&app, Some(&with_info(&app, "bob", "Bob")))
        .await
        .unwrap();
    assert!(bob.subscribe("room:1").await.get("ok").is_some());
    let ev = alice.push().await;
    assert_eq!(
        ev,
        json!({"type": "presence", "channel": "room:1", "action": "join", "user": "bob", "info": {"name": "Bob"}})
    );
    let r = bob
        .request(json!({"op": "unsubscribe", "channel": "room:1"}))
        .await;
    assert!(r.get("ok").is_some());
    let ev = alice.push().await;
    assert_eq!(ev["type"], "presence");
    assert_eq!(ev["action"], "leave");
    assert_eq!(ev["user"], "bob");
}

#[tokio::test]
async fn no_join_or_leave_events_where_the_namespace_does_not_ask() {
    let server = server().await;
    let app = server.create_app("acme").await;
    let mut alice = server
        .subscribe_sse(&app, "lobby", &user_token(&app, "alice"))
        .await;
    let mut alice_ws = server.ws(&app, Some(&user_token(&app, "alice"))).await.unwrap();
    assert!(alice_ws.subscribe("lobby").await.get("ok").is_some());

    let bob = server
        .subscribe_sse(&app, "lobby", &user_token(&app, "bob"))
        .await;
    // Bob is listed all the same.
    assert_eq!(members(&server.presence(&app, "lobby").await).len(), 2);
    drop(bob);
    eventually("bob leaves", WAIT * 3, || async {
        (members(&server.presence(&app, "lobby").await).len() == 1).then_some(())
    })
    .await;
    server.publish(&app, "lobby", json!("only this")).await;
    let ev = alice.next().await.unwrap();
    assert_eq!(
        ev.event, "message",
        "no presence event before the message: {ev:?}"
    );
    let push = alice_ws.push().await;
    assert_eq!(
        push["type"], "message",
        "no presence push before the message: {push}"
    );
}

#[tokio::test]
async fn the_websocket_presence_op_lists_members() {
    let server = server().await;
    let app = server.create_app("acme").await;
    let _alice = server
        .subscribe_sse(&app, "lobby", &with_info(&app, "alice", "Alice"))
        .await;
    let mut bob = server.ws(&app, Some(&user_token(&app, "bob"))).await.unwrap();
    // Without subscribing first (the token allows the channel).
    let r = bob.request(json!({"op": "presence", "channel": "lobby"})).await;
    assert_eq!(
        r["ok"]["members"],
        json!([{"user": "alice", "info": {"name": "Alice"}, "connections": 1}]),
        "{r}"
    );
    assert!(bob.subscribe("lobby").await.get("ok").is_some());
    let r = bob.request(json!({"op": "presence", "channel": "lobby"})).await;
    let users: Vec<&str> = r["ok"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["alice", "bob"], "{r}");

    // Not for a channel the token may not read.
    let mut carol = server
        .ws(&app, Some(&token(&app, &claims(Some("carol"), &["chat:*"], &[]))))
        .await
        .unwrap();
    let r = carol.request(json!({"op": "presence", "channel": "lobby"})).await;
    assert_ws_refused(&r, "forbidden");
    let r = carol
        .request(json!({"op": "presence", "channel": "bad name"}))
        .await;
    assert_ws_refused(&r, "invalid_channel");
}

#[tokio::test]
async fn a_refused_connection_raises_no_join_or_leave() {
    let server = server().await;
    let app = server.create_app("acme").await;
    let mut alice = server
        .subscribe_sse(&app, "room:1", &user_token(&app, "alice"))
        .await;
    assert_eq!(alice.next().await.unwrap().json()["user"], "alice");
    // Bob may read room:* but not news: the whole connection is refused, and
    // nobody sees him come and go.
    let bob = token(&app, &claims(Some("bob"), &["room:*"], &[]));
    assert_refused(
        &server
            .get_within(
                &format!("/v1/apps/acme/events?channel=room:1&channel=news&token={bob}"),
                None,
            )
            .await,
        403,
        "forbidden",
    );
    assert_refused(
        &server
            .get_within(
                &format!("/v1/apps/acme/poll?channel=room:1&channel=news&timeout=0&token={bob}"),
                None,
            )
            .await,
        403,
        "forbidden",
    );
    alice.assert_quiet(Duration::from_millis(500)).await;
    assert_eq!(
        members(&server.presence(&app, "room:1").await),
        [("alice".to_owned(), Value::Null, 1)]
    );
    assert_eq!(server.channel_counts(&app).await, [("room:1".to_owned(), 1)]);
}
