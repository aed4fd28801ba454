//! Two servers on one PostgreSQL database (`--database postgres://...`): an app
//! created on one works on the other, and a key rotation on one reaches the
//! other within the app cache TTL.
//!
//! The server is `postgres://postgres@127.0.0.1:5432/test` unless
//! `HERALD_TEST_POSTGRES_URL` names another. These tests fail (never skip) when
//! it cannot be reached; start it with
//! `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`.

use std::time::{Duration, Instant};

use herald_store::postgres::PgStore;
use serde_json::json;

use crate::support::*;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test database's URL, once it answered (and its schema is migrated, so the
/// servers start without waiting for each other).
async fn postgres_url() -> String {
    let url = std::env::var("HERALD_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let why = match tokio::time::timeout(Duration::from_secs(30), PgStore::connect(&url)).await {
        Ok(Ok(store)) => {
            store.close().await;
            return url;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 30 s".to_owned(),
    };
    panic!(
        "PostgreSQL is not reachable at {url} ({why}). Start it with \
         `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
         or point HERALD_TEST_POSTGRES_URL at another server."
    )
}

/// An app name no other run uses (the database is shared and kept).
fn unique_app() -> String {
    let random = herald_store::credentials::generate_secret("");
    format!("pg-it-{}", &random[..16])
}

/// Two servers on the database at `url`.
async fn two_servers(url: &str) -> (TestServer, TestServer) {
    let a = TestServer::start_with(|c| c.database = url.to_owned()).await;
    let b = TestServer::start_with(|c| c.database = url.to_owned()).await;
    (a, b)
}

/// The status of an SSE request on `channel` with `tok`.
async fn sse_status(server: &TestServer, app: &App, tok: &str) -> u16 {
    server
        .sse(app, &format!("channel=news&token={}", enc(tok)))
        .await
        .status
}

/// `POST /v1/admin/apps/{app}/rotate` on `server`; the new credentials.
async fn rotate(server: &TestServer, app: &App, grace_seconds: u64) -> App {
    let (status, v) = server
        .post(
            &format!("/v1/admin/apps/{}/rotate", app.name),
            Some(&server.admin_key),
            &json!({ "grace_seconds": grace_seconds }),
        )
        .await;
    assert_eq!(status, 200, "rotate answered {v}");
    App {
        name: app.name.clone(),
        key: v["key"].as_str().unwrap().into(),
        token_secret: v["token_secret"].as_str().unwrap().into(),
    }
}

/// The status of a publish with `key` on `server`.
async fn publish_status(server: &TestServer, app: &App, key: &str) -> u16 {
    let body = json!({ "channel": "news", "data": "x" });
    server
        .post(&format!("/v1/apps/{}/publish", app.name), Some(key), &body)
        .await
        .0
}

#[tokio::test]
async fn an_app_created_on_one_server_works_on_the_other() {
    let url = postgres_url().await;
    let (a, b) = two_servers(&url).await;

    let app = a.create_app(&unique_app()).await;

    // The key works on B at once (B has never looked the app up).
    let answer = b.publish(&app, "news", json!({"from": "b"})).await;
    assert_eq!(answer["offset"], 1, "{answer}");
    // So do tokens signed with the app's token secret; others are refused.
    assert_eq!(sse_status(&b, &app, &user_token(&app, "alice")).await, 200);
    let stranger = App {
        token_secret: "hs_not-the-secret".into(),
        ..app.clone()
    };
    assert_eq!(sse_status(&b, &app, &user_token(&stranger, "alice")).await, 401);
    assert_refused(
        &b.post(
            &format!("/v1/apps/{}/publish", app.name),
            Some("hk_000000000000000000000000000000000000000000000000"),
            &json!({"channel": "news", "data": 1}),
        )
        .await,
        401,
        "invalid_key",
    );
    // B's admin API lists it, and refuses to create it again.
    let (status, list) = b.get_within("/v1/admin/apps", Some(&b.admin_key)).await;
    assert_eq!(status, 200, "{list}");
    assert!(
        list["apps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == app.name.as_str()),
        "{list}"
    );
    let (status, body) = b
        .post("/v1/admin/apps", Some(&b.admin_key), &json!({ "name": app.name }))
        .await;
    assert_eq!(status, 409, "{body}");

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_rotation_on_one_server_reaches_the_other_within_the_cache_ttl() {
    let url = postgres_url().await;
    let (a, b) = two_servers(&url).await;
    let ttl = herald_node::NodeConfig::default().app_cache_ttl;

    let old = a.create_app(&unique_app()).await;
    let old_tok = user_token(&old, "alice");
    // Warm B's app cache with the old credentials.
    b.publish(&old, "news", json!(1)).await;
    assert_eq!(sse_status(&b, &old, &old_tok).await, 200);

    let new = rotate(&a, &old, 0).await;
    let rotated = Instant::now();
    let new_tok = user_token(&new, "alice");

    // A knows at once (its admin API forgets its cached record).
    assert_eq!(publish_status(&a, &old, &old.key).await, 401);
    assert_eq!(publish_status(&a, &new, &new.key).await, 200);

    // B, once its cached record (fetched before the rotation) is older than the
    // TTL: the old key is refused, the new one works. Polled, bounded; and no
    // probe that starts a TTL after the rotation may still see the old state
    // (timed by when a probe starts, so a slow machine does not matter).
    eventually("B refuses the old key and takes the new one", WAIT, || async {
        let probe_started = rotated.elapsed();
        let old_refused = publish_status(&b, &old, &old.key).await == 401;
        let new_works = publish_status(&b, &new, &new.key).await == 200;
        if old_refused && new_works {
            return Some(());
        }
        assert!(
            probe_started < ttl + Duration::from_millis(20),
            "B still had the old credentials {probe_started:?} after the rotation \
             (cache TTL {ttl:?}): old key refused: {old_refused}, new key works: {new_works}"
        );
        None
    })
    .await;
    assert_eq!(sse_status(&b, &new, &new_tok).await, 200);
    assert_eq!(sse_status(&b, &old, &old_tok).await, 401);

    // A rotation with grace on B: both keys work on A (once its cache expired).
    let newest = rotate(&b, &new, 3600).await;
    eventually("A takes the newest key", WAIT, || async {
        (publish_status(&a, &newest, &newest.key).await == 200).then_some(())
    })
    .await;
    assert_eq!(publish_status(&a, &new, &new.key).await, 200);
    assert_eq!(publish_status(&a, &old, &old.key).await, 401);

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn an_unreachable_database_stops_the_start_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = herald::Config::with_data_dir(dir.path());
    config.database = "postgres://herald:s3cret@127.0.0.1:1/herald".into();
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(15), herald::open_store(&config))
        .await
        .expect("open_store gives up by itself");
    let Err(e) = result else {
        panic!("a closed port opened a store");
    };
    let message = format!("{e:#}");
    assert!(
        message.contains("PostgreSQL") && message.contains("127.0.0.1:1"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(6));
}
