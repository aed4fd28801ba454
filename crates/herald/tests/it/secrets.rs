//! Tokens, keys, passwords and cookies never reach the log, the metrics or
//! an error message (issue 12, 2.5). The real binary runs with everything
//! logged (`HERALD_LOG=trace`); every credential is used the way clients use
//! it (a token in `?token=` on every transport, keys as bearers, a key where
//! it does not belong, wrong and expired ones, a rotation, the classroom's
//! password, cookie and CSRF token), then the log, `/metrics` and every answer
//! are searched for each secret.

use std::time::Duration;

use serde_json::{json, Value};

use crate::classroom::Browser;
use crate::cli::{serve_with_env, terminate};
use crate::support::*;

/// The signature of a JWT (what makes it a credential).
fn signature(token: &str) -> &str {
    token.rsplit('.').next().unwrap()
}

#[tokio::test]
async fn no_secret_reaches_the_log_the_metrics_or_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let admin = "admin-secret-5b1f0c2e9d7a4e31";
    let (mut child, url) = serve_with_env(
        dir.path(),
        "secrets",
        &["--admin-key", admin],
        &[("HERALD_LOG", "trace")],
    )
    .await;
    let server = TestServer::attach(&url, admin);
    let mut secrets: Vec<(String, String)> = vec![("the admin key".into(), admin.into())];
    let mut answers: Vec<String> = Vec::new();
    let keep = |answers: &mut Vec<String>, got: (u16, Value)| {
        answers.push(got.1.to_string());
        got
    };

    // An app, used by its backend and its clients.
    let app = server.create_app("acme").await;
    secrets.push(("the app key".into(), app.key.clone()));
    secrets.push(("the token secret".into(), app.token_secret.clone()));
    server.publish(&app, "news", json!("hello")).await;
    for path in [
        "channels/news/history",
        "channels/news/presence",
        "channels",
        "stats",
    ] {
        keep(
            &mut answers,
            server
                .get_within(&format!("/v1/apps/acme/{path}"), Some(&app.key))
                .await,
        );
    }
    let alice = token(&app, &claims(Some("alice"), &["news", "chat:*"], &["chat:*"]));
    secrets.push(("a client token".into(), signature(&alice).to_owned()));
    // SSE on both paths (a fresh connection, and one that served a request).
    let sse = server.subscribe_sse(&app, "news", &alice).await;
    let res = server
        .http
        .get(server.app_url(&app, &format!("/events?channel=news&token={alice}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    let (status, v) = keep(
        &mut answers,
        server
            .get_within(
                &format!("/v1/apps/acme/poll?channel=news&timeout=0&token={alice}"),
                None,
            )
            .await,
    );
    assert_eq!(status, 200, "{v}");
    let mut ws = server.ws(&app, Some(&alice)).await.unwrap();
    ws.subscribe_ok("chat:1", None).await;
    let r = ws
        .request(json!({"op": "publish", "channel": "chat:1", "data": "hi"}))
        .await;
    answers.push(r.to_string());
    // Refusals that carry a credential.
    let forbidden = ws.subscribe("secret-room").await;
    answers.push(forbidden.to_string());
    let r = ws
        .request(json!({"op": "refresh", "token": format!("{alice}x")}))
        .await;
    answers.push(r.to_string());
    let wrong_key = "hk_0f3a9c1d2e4b5a6978877665544332211ffeeddccbbaa99";
    secrets.push(("a wrong key".into(), wrong_key.into()));
    keep(
        &mut answers,
        server.get_within("/v1/apps/acme/stats", Some(wrong_key)).await,
    );
    let forged =
        herald_node::sign_token("hs_forged-secret-8c1e", &claims(Some("eve"), &["*"], &["*"])).unwrap();
    secrets.push(("a forged token".into(), signature(&forged).to_owned()));
    let mut expired_claims = claims(Some("bob"), &["*"], &[]);
    expired_claims.exp -= 7200;
    let expired = token(&app, &expired_claims);
    secrets.push(("an expired token".into(), signature(&expired).to_owned()));
    for tok in [&forged, &expired, &alice] {
        for q in ["events?channel=secret-room", "poll?channel=secret-room&timeout=0"] {
            keep(
                &mut answers,
                server
                    .get_within(&format!("/v1/apps/acme/{q}&token={tok}"), None)
                    .await,
            );
        }
        if let Err(got) = server.ws(&app, Some(tok)).await {
            keep(&mut answers, got);
        }
        keep(
            &mut answers,
            server
                .post(
                    &format!("/v1/apps/acme/publish?token={tok}"),
                    None,
                    &json!({"channel": "x", "data": 1}),
                )
                .await,
        );
    }
    // The key where it must never go: a URL.
    let (status, v) = keep(
        &mut answers,
        server
            .post(
                &format!("/v1/apps/acme/publish?token={}", app.key),
                None,
                &json!({"channel": "x", "data": 1}),
            )
            .await,
    );
    assert_eq!(status, 401, "{v}");
    // The admin key used on an app, and a rotation.
    keep(
        &mut answers,
        server.get_within("/v1/apps/acme/stats", Some(admin)).await,
    );
    let (status, rotated) = keep(
        &mut answers,
        server
            .post(
                "/v1/admin/apps/acme/rotate",
                Some(admin),
                &json!({"grace_seconds": 60}),
            )
            .await,
    );
    assert_eq!(status, 200, "{rotated}");
    // The answer of a rotation is where the new credentials are meant to be.
    answers.pop();
    secrets.push((
        "the rotated key".into(),
        rotated["key"].as_str().unwrap().to_owned(),
    ));
    secrets.push((
        "the rotated token secret".into(),
        rotated["token_secret"].as_str().unwrap().to_owned(),
    ));

    // The classroom: a password, a session cookie, a CSRF token, a guest, and
    // the tokens it hands out.
    let password = "correct horse battery staple 42";
    secrets.push(("a password".into(), password.into()));
    let mut ada = Browser::new(&server);
    let (status, v) = ada.signup("ada@example.org", "Ada", password).await;
    assert_eq!(status, 201, "{v}");
    secrets.push(("a CSRF token".into(), ada.csrf.clone().unwrap()));
    let (status, v) = ada.signin("ada@example.org", "wrong password, surely").await;
    answers.push(v.to_string());
    assert_eq!(status, 401);
    let res = reqwest::Client::new()
        .post(format!("{url}/classroom/api/auth/signin"))
        .json(&json!({"email": "ada@example.org", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let session = session_cookie(&res);
    secrets.push(("a session cookie".into(), session.clone()));
    let (status, v) = ada.signin("ada@example.org", password).await;
    assert_eq!(status, 200, "{v}");
    secrets.push(("another CSRF token".into(), ada.csrf.clone().unwrap()));
    let (status, v) = keep(
        &mut answers,
        ada.post("/courses", json!({"title": "Physics"})).await,
    );
    assert_eq!(status, 201, "{v}");
    let course = v["course"]["id"].as_str().unwrap().to_owned();
    let join_code = v["course"]["join_code"].as_str().unwrap().to_owned();
    keep(
        &mut answers,
        ada.call(
            reqwest::Method::PATCH,
            &format!("/courses/{course}"),
            json!({"guests_allowed": true}),
        )
        .await,
    );
    let (status, v) = keep(
        &mut answers,
        ada.post(&format!("/courses/{course}/sessions"), json!({"title": "One"}))
            .await,
    );
    assert_eq!(status, 201, "{v}");
    let sid = v["session"]["id"].as_str().unwrap().to_owned();
    keep(&mut answers, ada.act(&sid, "start").await);
    let live = ada.live_token(&sid).await;
    secrets.push((
        "a classroom token".into(),
        signature(live["token"].as_str().unwrap()).to_owned(),
    ));
    let mut class_sse = crate::classroom_live::subscribe(&server, &live, None).await;
    let _ = class_sse.next_within(Duration::from_millis(300)).await;
    let guest = Browser::new(&server);
    let (status, v) = guest
        .post("/auth/guest", json!({"code": join_code, "name": "Gus"}))
        .await;
    assert_eq!(status, 201, "{v}");
    secrets.push((
        "a guest's CSRF token".into(),
        v["csrf"].as_str().unwrap().to_owned(),
    ));
    // A stolen cookie with a forged CSRF token, and signing out.
    let (status, v) = keep(
        &mut answers,
        ada.send(
            reqwest::Client::new()
                .post(format!("{url}/classroom/api/courses"))
                .header("cookie", format!("herald_session={session}"))
                .header("x-csrf-token", "forged-csrf-token-77a1")
                .json(&json!({"title": "Forged"})),
        )
        .await,
    );
    assert_eq!(status, 403, "{v}");
    keep(&mut answers, ada.post("/auth/signout", json!({})).await);

    // What an operator scrapes.
    let (status, metrics) = server.get("/metrics", None).await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_owned();

    drop(sse);
    drop(ws);
    drop(class_sse);
    terminate(&mut child).await;
    let log = ["out", "err"]
        .iter()
        .map(|ext| std::fs::read_to_string(dir.path().join(format!("secrets.{ext}"))).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    // Everything was logged, connections included.
    assert!(
        log.contains("herald listening") && log.contains("connected"),
        "the log: {log}"
    );
    assert!(
        log.lines().count() > 50,
        "a trace log: {} lines",
        log.lines().count()
    );

    let mut found = Vec::new();
    for (what, secret) in &secrets {
        for (place, text) in [("the log", &log), ("the metrics", &metrics)] {
            if text.contains(secret.as_str()) {
                found.push(format!("{what} in {place}"));
            }
        }
        for a in &answers {
            if a.contains(secret.as_str()) {
                found.push(format!("{what} in the answer {a}"));
            }
        }
    }
    // No URL with a credential was recorded either (the start-up hint's
    // `token=$TOKEN` is a placeholder).
    for line in log.lines() {
        let recorded = line
            .match_indices("token=")
            .any(|(i, _)| !line[i + 6..].starts_with('$') && !line[i + 6..].starts_with("[redacted]"));
        if recorded {
            found.push(format!("a token= in the log: {line}"));
        }
    }
    assert!(found.is_empty(), "secrets found:\n{}", found.join("\n"));
}
