//! Apps never see each other: another app's key and tokens read and write
//! nothing, and the same channel name in two apps are two streams.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// Five apps, each with a message in `secret`, a subscriber on it (its
/// presence), a key and a token; every app's credentials tried on every
/// other app's (and the internal `classroom` app's) endpoints and
/// transports: every try refused, and afterwards each app still holds
/// exactly its own.
#[tokio::test]
async fn five_apps_never_reach_each_other_on_any_endpoint_or_transport() {
    let server = TestServer::start().await;
    let mut apps = Vec::new();
    let mut listeners = Vec::new();
    for i in 1..=5 {
        let app = server.create_app(&format!("tenant-{i}")).await;
        server
            .publish(&app, "secret", json!(format!("secret of {}", app.name)))
            .await;
        let tok = token(&app, &claims(Some(&format!("user-{i}")), &["*"], &["*"]));
        listeners.push(server.subscribe_sse(&app, "secret", &tok).await);
        apps.push((app, tok));
    }
    // A cursor of each app (after its message), to try on the others.
    let mut cursors = Vec::new();
    for (app, tok) in &apps {
        let (status, v) = server
            .get_within(
                &format!("/v1/apps/{}/poll?channel=secret&timeout=0&token={tok}", app.name),
                None,
            )
            .await;
        assert_eq!(status, 200, "{v}");
        cursors.push(v["cursor"].as_str().unwrap().to_owned());
    }

    let mut tally = Tally::default();
    let publish = json!({"channel": "secret", "data": "planted"});
    for (i, (a, a_tok)) in apps.iter().enumerate() {
        let mut naming = claims(Some("mallory"), &["*"], &["*"]);
        let mut targets: Vec<&str> = apps.iter().map(|(b, _)| b.name.as_str()).collect();
        targets.push("classroom");
        for b in targets.into_iter().filter(|b| *b != a.name) {
            let who = format!("{} on {b}", a.name);
            // The server API with a's key.
            let key = Some(a.key.as_str());
            tally.refused(
                format!("{who}: publish with the key"),
                &server.post(&format!("/v1/apps/{b}/publish"), key, &publish).await,
                401,
                "invalid_key",
            );
            for path in [
                "channels/secret/history",
                "channels/secret/presence",
                "channels",
                "stats",
            ] {
                tally.refused(
                    format!("{who}: {path} with the key"),
                    &server.get_within(&format!("/v1/apps/{b}/{path}"), key).await,
                    401,
                    "invalid_key",
                );
            }
            // The transports with a's token, and with a's token naming b.
            naming.app = Some(b.to_owned());
            let a_naming_b = token(a, &naming);
            for (which, tok) in [
                ("token", a_tok.as_str()),
                ("token naming it", a_naming_b.as_str()),
            ] {
                tally.refused(
                    format!("{who}: SSE with the {which}"),
                    &server
                        .get_within(&format!("/v1/apps/{b}/events?channel=secret&token={tok}"), None)
                        .await,
                    401,
                    "invalid_token",
                );
                tally.refused(
                    format!("{who}: long-poll with the {which}"),
                    &server
                        .get_within(
                            &format!("/v1/apps/{b}/poll?channel=secret&timeout=0&token={tok}"),
                            None,
                        )
                        .await,
                    401,
                    "invalid_token",
                );
                tally.refused(
                    format!("{who}: long-poll by POST with the {which}"),
                    &server
                        .post(
                            &format!("/v1/apps/{b}/poll?token={tok}"),
                            None,
                            &json!({"channels": ["secret"], "timeout": 0}),
                        )
                        .await,
                    401,
                    "invalid_token",
                );
                let ws = Ws::connect(&format!("{}/v1/apps/{b}/ws?token={tok}", server.url)).await;
                tally.refused(
                    format!("{who}: WebSocket with the {which}"),
                    &ws.err().unwrap_or((101, json!("let in"))),
                    401,
                    "invalid_token",
                );
                tally.refused(
                    format!("{who}: client publish with the {which}"),
                    &server
                        .post(&format!("/v1/apps/{b}/publish"), Some(tok), &publish)
                        .await,
                    401,
                    "invalid_token",
                );
                tally.refused(
                    format!("{who}: history with the {which}"),
                    &server
                        .get_within(&format!("/v1/apps/{b}/channels/secret/history"), Some(tok))
                        .await,
                    403,
                    "forbidden",
                );
            }
        }
        // a's key is no admin key either.
        tally.refused(
            format!("{}: the admin API with the key", a.name),
            &server.get_within("/v1/admin/apps", Some(&a.key)).await,
            401,
            "invalid_key",
        );
        // A cursor of a, on every other app with that app's own token: a
        // reset, never a's message.
        for (j, (b, b_tok)) in apps.iter().enumerate().filter(|(j, _)| *j != i) {
            let (status, v) = server
                .get_within(
                    &format!(
                        "/v1/apps/{}/poll?channel=secret&cursor={}&timeout=0&token={b_tok}",
                        b.name,
                        enc(&cursors[i])
                    ),
                    None,
                )
                .await;
            let leaked = v["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["data"] == format!("secret of {}", a.name)));
            let ok = status == 200 && !leaked && v["resets"].as_array().map(Vec::len) == Some(1);
            tally.check(
                format!("{}'s cursor on {} (app {j})", a.name, b.name),
                if ok { Ok(()) } else { Err(format!("{status} {v}")) },
            );
        }
    }
    tally.assert_clean();
    assert!(tally.tries >= 250, "{} tries", tally.tries);

    // Each app holds exactly its own: history, presence, channels, stats.
    for (app, _) in &apps {
        let data = server.history_data(app, "secret").await;
        assert_eq!(data, [json!(format!("secret of {}", app.name))], "{}", app.name);
        let p = server.presence(app, "secret").await;
        let members: Vec<&str> = p["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user"].as_str().unwrap_or(""))
            .collect();
        let i = app.name.trim_start_matches("tenant-");
        assert_eq!(members, [format!("user-{i}")], "{}: {p}", app.name);
        assert_eq!(
            server.channel_counts(app).await,
            [("secret".to_owned(), 1)],
            "{}",
            app.name
        );
        assert_eq!(server.stats(app).await["connections"], 1, "{}", app.name);
    }
    // And the listeners heard nothing planted.
    for l in &mut listeners {
        l.assert_quiet(Duration::from_millis(100)).await;
    }
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
