//! The server API as a backend uses it: publish, history, channels, stats.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn publish_answers_channel_offset_and_epoch_with_offsets_1_2_3() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;

    let mut answers = Vec::new();
    for i in 0..3 {
        answers.push(server.publish(&app, "news", json!({ "n": i })).await);
    }
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(keys(a), ["channel", "epoch", "offset"], "{a}");
        assert_eq!(a["channel"], "news");
        assert_eq!(a["offset"], i as u64 + 1, "{a}");
        assert!(!a["epoch"].as_str().unwrap().is_empty(), "{a}");
        assert_eq!(a["epoch"], answers[0]["epoch"], "one unbroken history");
    }
    // Another channel counts on its own.
    let other = server.publish(&app, "sports", json!(1)).await;
    assert_eq!(other["offset"], 1);
}

#[tokio::test]
async fn publish_to_a_channels_list_answers_a_results_list() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    server.publish(&app, "a", json!("first")).await;

    let body = server
        .publish_body(
            &app,
            json!({"channels": ["a", "b", "chat:room-1"], "data": {"x": 1}}),
        )
        .await;
    assert_eq!(keys(&body), ["results"], "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{body}");
    assert_eq!(results[0]["channel"], "a");
    assert_eq!(results[0]["offset"], 2);
    assert_eq!(results[1]["channel"], "b");
    assert_eq!(results[1]["offset"], 1);
    assert_eq!(results[2]["channel"], "chat:room-1");
    assert_eq!(results[2]["offset"], 1);
    for r in results {
        assert_eq!(keys(r), ["channel", "epoch", "offset"], "{r}");
    }
    // Every channel got the message.
    for c in ["a", "b", "chat:room-1"] {
        let h = server.history(&app, c, "").await;
        let last = h["messages"].as_array().unwrap().last().cloned().unwrap();
        assert_eq!(last["data"], json!({"x": 1}), "{c}: {h}");
    }
}

#[tokio::test]
async fn event_defaults_to_message_and_a_named_event_is_kept_on_every_path() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut sse = server.subscribe_sse(&app, "news", &tok).await;
    let mut ws = server.ws(&app, Some(&tok)).await.unwrap();
    assert!(ws.subscribe("news").await.get("ok").is_some());

    server.publish(&app, "news", json!(1)).await;
    server
        .publish_body(
            &app,
            json!({"channel": "news", "event": "score.update", "data": 2}),
        )
        .await;

    let first = sse.next().await.unwrap();
    assert_eq!(first.event, "message");
    assert_eq!(first.json()["event"], "message");
    let second = sse.next().await.unwrap();
    assert_eq!(
        second.event, "score.update",
        "the SSE event: line is the event name"
    );
    assert_eq!(second.json()["event"], "score.update");

    let m = ws.messages(2).await;
    assert_eq!(m[0]["event"], "message");
    assert_eq!(m[1]["event"], "score.update");

    let h = server.history(&app, "news", "").await;
    assert_eq!(h["messages"][0]["event"], "message");
    assert_eq!(h["messages"][1]["event"], "score.update");
}

#[tokio::test]
async fn data_of_every_json_kind_arrives_as_sent() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut sse = server.subscribe_sse(&app, "kinds", &tok).await;

    let values = [
        json!({"a": {"b": [1, 2, {"c": null}]}, "s": "x"}),
        json!([1, "two", 3.5, false, null, {"k": []}]),
        json!("a string with \"quotes\", a\nnewline, unicode é ✓ and a tab\t"),
        json!(42),
        json!(-0.125),
        json!(12345678901234u64),
        json!(null),
        json!(true),
        json!(false),
        json!({}),
        json!([]),
        json!(""),
    ];
    for v in &values {
        server.publish(&app, "kinds", v.clone()).await;
    }
    // Data left out is null.
    server.publish_body(&app, json!({"channel": "kinds"})).await;

    let got = sse.messages(values.len() + 1).await;
    for (i, v) in values.iter().enumerate() {
        assert_eq!(&got[i]["data"], v, "SSE message {i}");
    }
    assert_eq!(got[values.len()]["data"], Value::Null);

    let h = server.history(&app, "kinds", "").await;
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), values.len() + 1);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(&msgs[i]["data"], v, "history message {i}");
    }
    assert!(msgs[values.len()]["data"].is_null());
}

#[tokio::test]
async fn pretty_printed_data_comes_out_compact_on_one_line() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut sse = server.subscribe_sse(&app, "pretty", &tok).await;

    let body = "{\n  \"channel\": \"pretty\",\n  \"data\": {\n    \"list\": [\n      1,\n      2\n    ],\n    \"name\": \"Ada\"\n  }\n}\n";
    let (status, answer) = server.publish_raw(&app, Some(&app.key), body).await;
    assert_eq!(status, 200, "{answer}");

    let ev = sse.next().await.unwrap();
    assert!(!ev.data.contains('\n'), "one data: line: {:?}", ev.data);
    assert!(
        ev.data.contains(r#""data":{"list":[1,2],"name":"Ada"}"#),
        "compact data: {}",
        ev.data
    );

    // History keeps the compact form too.
    let res = server
        .http
        .get(server.app_url(&app, "/channels/pretty/history"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    assert!(text.contains(r#""data":{"list":[1,2],"name":"Ada"}"#), "{text}");
}

#[tokio::test]
async fn history_since_is_exclusive_and_limit_bounds_the_page() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let before = herald_broker::now_millis();
    let mut epoch = Value::Null;
    for i in 1..=5 {
        epoch = server.publish(&app, "news", json!({ "n": i })).await["epoch"].clone();
    }
    let after = herald_broker::now_millis();

    let offsets = |h: &Value| -> Vec<u64> {
        h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["offset"].as_u64().unwrap())
            .collect()
    };

    let all = server.history(&app, "news", "").await;
    assert_eq!(all["epoch"], epoch);
    assert_eq!(offsets(&all), [1, 2, 3, 4, 5]);
    for (i, m) in all["messages"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            keys(m),
            ["channel", "data", "epoch", "event", "offset", "ts"],
            "{m}"
        );
        assert_eq!(m["channel"], "news");
        assert_eq!(m["epoch"], epoch);
        assert_eq!(m["event"], "message");
        assert_eq!(m["data"], json!({ "n": i + 1 }));
        let ts = m["ts"].as_i64().unwrap();
        assert!(ts >= before && ts <= after, "ts {ts} is the publish time");
    }

    assert_eq!(offsets(&server.history(&app, "news", "since=2").await), [3, 4, 5]);
    assert_eq!(
        offsets(&server.history(&app, "news", "since=0").await),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        offsets(&server.history(&app, "news", "since=2&limit=2").await),
        [3, 4]
    );
    assert_eq!(
        offsets(&server.history(&app, "news", "since=5").await),
        Vec::<u64>::new()
    );
    // Without since: the newest `limit` messages, oldest first.
    assert_eq!(offsets(&server.history(&app, "news", "limit=2").await), [4, 5]);
    assert_eq!(offsets(&server.history(&app, "news", "limit=1").await), [5]);
    assert_eq!(
        offsets(&server.history(&app, "news", "limit=50").await),
        [1, 2, 3, 4, 5]
    );
}

#[tokio::test]
async fn history_of_a_quiet_channel_is_empty() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let h = server.history(&app, "never-used", "").await;
    assert_eq!(h["messages"], json!([]), "{h}");
    assert!(h["epoch"].is_string(), "{h}");
}

#[tokio::test]
async fn history_of_a_user_limited_channel_is_addressed_percent_encoded() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    server.publish(&app, "im#alice,bob", json!("hi bob")).await;
    let h = server.history(&app, "im#alice,bob", "").await;
    assert_eq!(h["messages"][0]["channel"], "im#alice,bob");
    assert_eq!(h["messages"][0]["data"], "hi bob");
}

#[tokio::test]
async fn channels_lists_subscriber_counts_that_fall_when_connections_close() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    assert_eq!(server.channel_counts(&app).await, []);
    let tok = user_token(&app, "alice");

    let news1 = server.subscribe_sse(&app, "news", &tok).await;
    let news2 = server.subscribe_sse(&app, "news", &tok).await;
    let sports = server.subscribe_sse(&app, "sports", &tok).await;
    let both = server
        .sse(&app, &format!("channel=news&channel=chat:1&token={tok}"))
        .await;
    assert_eq!(both.status, 200);

    assert_eq!(
        server.channel_counts(&app).await,
        [
            ("chat:1".to_owned(), 1),
            ("news".to_owned(), 3),
            ("sports".to_owned(), 1)
        ]
    );

    drop(news1);
    drop(both);
    eventually("news falls to 1, chat:1 disappears", WAIT * 3, || async {
        let c = server.channel_counts(&app).await;
        (c == [("news".to_owned(), 1), ("sports".to_owned(), 1)]).then_some(())
    })
    .await;

    drop(news2);
    drop(sports);
    eventually("every channel disappears", WAIT * 3, || async {
        server.channel_counts(&app).await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn stats_count_connections_published_and_delivered() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");

    let s = server.stats(&app).await;
    assert_eq!(s["app"], "acme");
    assert_eq!(s["connections"], 0, "{s}");

    let mut a = server.subscribe_sse(&app, "news", &tok).await;
    let mut b = server.subscribe_sse(&app, "news", &tok).await;
    let mut ws = server.ws(&app, Some(&tok)).await.unwrap();
    assert!(ws.subscribe("news").await.get("ok").is_some());
    assert_eq!(server.stats(&app).await["connections"], 3);

    for i in 0..3 {
        server.publish(&app, "news", json!({ "i": i })).await;
    }
    a.messages(3).await;
    b.messages(3).await;
    ws.messages(3).await;

    let today = eventually("9 deliveries are counted", WAIT * 2, || async {
        let s = server.stats(&app).await;
        let day = s["days"][0].clone();
        (day["delivered"] == 9).then_some(day)
    })
    .await;
    assert_eq!(today["published"], 3, "{today}");
    assert!(today["bytes_in"].as_u64().unwrap() > 0, "{today}");
    assert!(today["bytes_out"].as_u64().unwrap() > 0, "{today}");
    assert!(today["peak_connections"].as_u64().unwrap() >= 3, "{today}");
    assert_eq!(
        today["day"].as_str().unwrap().len(),
        "YYYY-MM-DD".len(),
        "{today}"
    );

    drop(a);
    drop(b);
    drop(ws);
    eventually("connections fall to 0", WAIT * 3, || async {
        (server.stats(&app).await["connections"] == 0).then_some(())
    })
    .await;
    // The counts of the day stay.
    assert_eq!(server.stats(&app).await["days"][0]["published"], 3);
}

#[tokio::test]
async fn stats_neither_lose_nor_double_counts_across_usage_flushes() {
    // Flush to the store all the time: every read must still see each count once.
    let server = TestServer::start_with(|c| c.node.usage_flush_interval = Duration::from_millis(5)).await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let mut sse = server.subscribe_sse(&app, "news", &tok).await;
    server.publish(&app, "news", json!(1)).await;
    server.publish(&app, "news", json!(2)).await;
    sse.messages(2).await;
    eventually("2 deliveries are counted", WAIT, || async {
        (server.stats(&app).await["days"][0]["delivered"] == 2).then_some(())
    })
    .await;
    for _ in 0..200 {
        let s = server.stats(&app).await;
        assert_eq!(s["days"].as_array().unwrap().len(), 1, "{s}");
        assert_eq!(s["days"][0]["published"], 2, "{s}");
        assert_eq!(s["days"][0]["delivered"], 2, "{s}");
        assert_eq!(s["connections"], 1, "{s}");
    }
}
