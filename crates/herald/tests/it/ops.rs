//! Operations: liveness, readiness and Prometheus metrics.

use serde_json::json;

use crate::support::*;

/// The value of the sample `name` (with its labels, as written) in a Prometheus
/// text exposition; 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == name).then(|| v.parse::<f64>().unwrap())
        })
        .unwrap_or(0.0)
}

async fn metrics(server: &TestServer) -> String {
    let res = server
        .http
        .get(format!("{}/metrics", server.url))
        .timeout(REQUEST_WAIT)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        ct.starts_with("text/plain") || ct.starts_with("application/openmetrics-text"),
        "a Prometheus text content type: {ct}"
    );
    res.text().await.unwrap()
}

#[tokio::test]
async fn healthz_and_readyz_answer_200() {
    let server = TestServer::start().await;
    let (status, body) = server.get_within("/healthz", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get_within("/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": "ready"}));
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_move_with_publish_and_delivery() {
    let server = TestServer::start().await;
    let app = server.create_app("acme").await;
    let text = metrics(&server).await;
    for name in [
        "herald_connections",
        "herald_messages_published",
        "herald_messages_delivered",
        "herald_publish_to_write_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name}")),
            "{name} is exposed:\n{text}"
        );
    }
    let published_before = sample(&text, "herald_messages_published_total");
    let latency_before = sample(&text, "herald_publish_to_write_seconds_count");

    let tok = user_token(&app, "alice");
    let mut sse = server.subscribe_sse(&app, "news", &tok).await;
    let mut ws = server.ws(&app, Some(&tok)).await.unwrap();
    assert!(ws.subscribe("news").await.get("ok").is_some());
    let text = metrics(&server).await;
    assert_eq!(
        sample(&text, r#"herald_connections{transport="sse"}"#),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"herald_connections{transport="websocket"}"#),
        1.0,
        "{text}"
    );

    server.publish(&app, "news", json!(1)).await;
    server.publish(&app, "news", json!(2)).await;
    sse.messages(2).await;
    ws.messages(2).await;

    let text = eventually("deliveries are counted", WAIT, || async {
        let text = metrics(&server).await;
        (sample(&text, r#"herald_messages_delivered_total{transport="sse"}"#) >= 2.0
            && sample(&text, r#"herald_messages_delivered_total{transport="websocket"}"#) >= 2.0)
            .then_some(text)
    })
    .await;
    assert_eq!(
        sample(&text, "herald_messages_published_total") - published_before,
        2.0,
        "{text}"
    );
    assert!(
        sample(&text, "herald_publish_to_write_seconds_count") - latency_before >= 2.0,
        "live writes observe their latency (the first of every 8 per connection):\n{text}"
    );

    drop(sse);
    drop(ws);
    eventually("connections fall back to 0", WAIT * 3, || async {
        let text = metrics(&server).await;
        (sample(&text, r#"herald_connections{transport="sse"}"#) == 0.0
            && sample(&text, r#"herald_connections{transport="websocket"}"#) == 0.0)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn ops_endpoints_need_no_credentials() {
    let server = TestServer::start().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, _) = server.get_within(path, None).await;
        assert_eq!(status, 200, "{path}");
    }
}
