//! Long-poll: answers at once when something follows the cursor, else waits;
//! every answer's cursor resumes exactly.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

/// The cursor of a channel "now", from a poll that does not wait.
async fn cursor_now(server: &TestServer, app: &App, channel: &str, tok: &str) -> String {
    let (status, body) = server
        .longpoll(app, &format!("channel={}&timeout=0&token={tok}", enc(channel)))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"], json!([]), "{body}");
    body["cursor"].as_str().unwrap().to_owned()
}

fn messages(body: &Value) -> Vec<Value> {
    body["messages"].as_array().expect("a messages list").clone()
}

/// Waits until the server holds `n` pending long-polls.
async fn wait_pending(server: &TestServer, n: f64) {
    server
        .wait_metric(WAIT, "herald_connections", "transport=\"longpoll\"", |v| v == n)
        .await;
}

#[tokio::test]
async fn answers_at_once_when_messages_follow_the_cursor() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let cursor = cursor_now(&server, &app, "room", &tok).await;
    server.publish_seq(&app, "room", 1..=3).await;

    let started = Instant::now();
    let (status, body) = server
        .longpoll(
            &app,
            &format!("channel=room&cursor={}&timeout=30&token={tok}", enc(&cursor)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "answered at once");
    let got = messages(&body);
    assert_eq!(offsets(&got), vec![1, 2, 3]);
    assert_eq!(got[0]["data"], json!({"n": 1}));
    assert_eq!(got[0]["channel"], "room");
    assert_eq!(body["resets"], json!([]));

    // The answer's cursor is after the last message: polling again waits for new ones.
    let next = body["cursor"].as_str().unwrap().to_owned();
    server.publish(&app, "room", json!("four")).await;
    let (_, body) = server
        .longpoll(
            &app,
            &format!("channel=room&cursor={}&timeout=30&token={tok}", enc(&next)),
        )
        .await;
    assert_eq!(offsets(&messages(&body)), vec![4], "nothing twice");
}

#[tokio::test]
async fn waits_and_returns_as_soon_as_a_message_is_published() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let cursor = cursor_now(&server, &app, "room", &tok).await;

    let url = server.app_url(
        &app,
        &format!(
            "/poll?channel=room&cursor={}&timeout=30&token={tok}",
            enc(&cursor)
        ),
    );
    let http = server.http.clone();
    let poll = tokio::spawn(async move {
        let started = Instant::now();
        let body: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        (body, started.elapsed())
    });
    wait_pending(&server, 1.0).await;
    server.publish(&app, "room", json!("wake up")).await;

    let (body, took) = tokio::time::timeout(LONG_WAIT, poll).await.unwrap().unwrap();
    assert_eq!(offsets(&messages(&body)), vec![1]);
    assert_eq!(body["messages"][0]["data"], "wake up");
    assert!(
        took < Duration::from_secs(15),
        "returned on publish, not at the timeout: {took:?}"
    );
}

#[tokio::test]
async fn an_empty_answer_after_the_timeout_still_resumes_exactly() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    server.publish_seq(&app, "room", 1..=2).await;
    let cursor = cursor_now(&server, &app, "room", &tok).await;

    let started = Instant::now();
    let (status, body) = server
        .longpoll(
            &app,
            &format!("channel=room&cursor={}&timeout=1&token={tok}", enc(&cursor)),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"], json!([]));
    assert!(
        took >= Duration::from_millis(900),
        "waited for the timeout: {took:?}"
    );
    let cursor = body["cursor"].as_str().expect("a cursor").to_owned();

    server.publish(&app, "room", json!("late")).await;
    let (_, body) = server
        .longpoll(
            &app,
            &format!("channel=room&cursor={}&timeout=30&token={tok}", enc(&cursor)),
        )
        .await;
    let got = messages(&body);
    assert_eq!(offsets(&got), vec![3]);
    assert_eq!(got[0]["data"], "late");
}

#[tokio::test]
async fn a_timeout_over_the_maximum_is_refused() {
    let server = TestServer::start_with(|c| c.server.longpoll_max_timeout = Duration::from_secs(30)).await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let (status, body) = server
        .longpoll(&app, &format!("channel=room&timeout=31&token={tok}"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_parameter");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("30"),
        "names the maximum: {body}"
    );
    let (status, body) = server
        .longpoll(&app, &format!("channel=room&timeout=soon&token={tok}"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_parameter");
}

#[tokio::test]
async fn without_a_cursor_the_wait_starts_from_now() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    server.publish_seq(&app, "room", 1..=2).await;

    // Nothing old is replayed, and the cursor marks "now".
    let started = Instant::now();
    let (_, body) = server
        .longpoll(&app, &format!("channel=room&timeout=0&token={tok}"))
        .await;
    assert_eq!(
        body["messages"],
        json!([]),
        "older messages are not replayed: {body}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let cursor = body["cursor"].as_str().unwrap().to_owned();
    server.publish(&app, "room", json!("three")).await;
    let (_, body) = server
        .longpoll(
            &app,
            &format!("channel=room&cursor={}&timeout=30&token={tok}", enc(&cursor)),
        )
        .await;
    assert_eq!(offsets(&messages(&body)), vec![3]);

    // A waiting poll without a cursor returns with what is published while it
    // waits ("now" is when it subscribed, so publish until it answers).
    let url = server.app_url(&app, &format!("/poll?channel=room&timeout=30&token={tok}"));
    let http = server.http.clone();
    let mut poll =
        tokio::spawn(async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() });
    wait_pending(&server, 1.0).await;
    let mut body = None;
    for n in 4..104 {
        server.publish(&app, "room", json!({ "n": n })).await;
        if let Ok(b) = tokio::time::timeout(Duration::from_millis(100), &mut poll).await {
            body = Some(b.unwrap());
            break;
        }
    }
    let body = body.expect("the poll answered while messages were published");
    let got = offsets(&messages(&body));
    assert!(!got.is_empty(), "{body}");
    assert!(got[0] > 3, "nothing from before the poll: {body}");
    assert_eq!(got, (got[0]..got[0] + got.len() as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn messages_of_several_channels_come_in_one_answer() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let (_, body) = server
        .longpoll(&app, &format!("channel=a&channel=b&timeout=0&token={tok}"))
        .await;
    let cursor = body["cursor"].as_str().unwrap().to_owned();
    server.publish(&app, "a", json!("a1")).await;
    server.publish(&app, "b", json!("b1")).await;
    server.publish(&app, "a", json!("a2")).await;
    let (_, body) = server
        .longpoll(
            &app,
            &format!(
                "channel=a&channel=b&cursor={}&timeout=30&token={tok}",
                enc(&cursor)
            ),
        )
        .await;
    let mut got: Vec<(String, Value)> = messages(&body)
        .iter()
        .map(|m| (m["channel"].as_str().unwrap().to_owned(), m["data"].clone()))
        .collect();
    got.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        got,
        vec![
            ("a".into(), json!("a1")),
            ("a".into(), json!("a2")),
            ("b".into(), json!("b1"))
        ]
    );
}

#[tokio::test]
async fn resets_are_listed_when_history_no_longer_reaches_back() {
    let server = TestServer::start_with(|c| c.node.default_namespace.history_size = 3).await;
    let app = server.create_app("acme").await;
    let tok = user_token(&app, "alice");
    let cursor = cursor_now(&server, &app, "room", &tok).await;
    let last = server.publish_seq(&app, "room", 1..=10).await;

    let started = Instant::now();
    let (status, body) = server
        .longpoll(
            &app,
            &format!("channel=room&cursor={}&timeout=30&token={tok}", enc(&cursor)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a reset answers at once"
    );
    let resets = body["resets"].as_array().expect("a resets list");
    assert_eq!(resets.len(), 1, "{body}");
    assert_eq!(resets[0]["channel"], "room");
    assert_eq!(resets[0]["epoch"], last["epoch"]);
    assert_eq!(resets[0]["reason"], "history_gone");

    // From the answer's cursor, the next message comes exactly once.
    let cursor = body["cursor"].as_str().unwrap().to_owned();
    server.publish(&app, "room", json!("after")).await;
    let (_, body) = server
        .longpoll(
            &app,
            &format!("channel=room&cursor={}&timeout=30&token={tok}", enc(&cursor)),
        )
        .await;
    assert_eq!(offsets(&messages(&body)), vec![11], "{body}");
    assert_eq!(body["resets"], json!([]));
}
