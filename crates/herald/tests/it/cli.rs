//! The `herald` binary as a user runs it: app management, tokens, `serve`,
//! `publish`, and a sentence on stderr with a non-zero exit for bad input.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

/// How long one CLI verb may take.
const CLI_WAIT: Duration = Duration::from_secs(60);

pub(crate) fn herald(dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    // The developer's own HERALD_* settings must not leak into the test.
    for (k, _) in std::env::vars() {
        if k.starts_with("HERALD_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .env("HERALD_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs `herald ARGS` in `dir` and returns its output.
pub(crate) async fn run(dir: &Path, args: &[&str]) -> Output {
    let out = tokio::time::timeout(CLI_WAIT, herald(dir).args(args).output())
        .await
        .unwrap_or_else(|_| panic!("herald {args:?} did not finish within {CLI_WAIT:?}"))
        .unwrap();
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `herald ARGS`, asserts success, returns stdout.
async fn ok(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args).await;
    assert!(
        o.status.success(),
        "herald {args:?} failed ({}): {}",
        o.status,
        stderr(&o)
    );
    stdout(&o)
}

/// Runs `herald ARGS`, asserts a non-zero exit and a sentence on stderr that
/// mentions `hint`; returns stderr.
pub(crate) async fn fails(dir: &Path, args: &[&str], hint: &str) -> String {
    let o = run(dir, args).await;
    let err = stderr(&o);
    assert!(!o.status.success(), "herald {args:?} should fail: {}", stdout(&o));
    assert!(
        err.split_whitespace().count() >= 4,
        "herald {args:?}: stderr is a sentence: {err:?}"
    );
    assert!(
        err.to_lowercase().contains(&hint.to_lowercase()),
        "herald {args:?}: stderr mentions {hint:?}: {err}"
    );
    assert!(!err.contains("panicked"), "herald {args:?} panicked: {err}");
    err
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `herald serve` on a free port with its data in `dir`, its output in
/// `dir/NAME.out` and `dir/NAME.err`; waits until it answers `/healthz`.
/// Returns the child and the base URL.
async fn serve(dir: &Path, name: &str) -> (tokio::process::Child, String) {
    serve_with(dir, name, &[]).await
}

/// [`serve`] with more arguments (`--config FILE`, `--broker memory`, ...).
pub(crate) async fn serve_with(dir: &Path, name: &str, extra: &[&str]) -> (tokio::process::Child, String) {
    serve_with_env(dir, name, extra, &[]).await
}

/// [`serve_with`] with environment variables (`HERALD_LOG`, ...).
pub(crate) async fn serve_with_env(
    dir: &Path,
    name: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    let d = dir.to_str().unwrap();
    let log = |ext: &str| std::fs::read_to_string(dir.join(format!("{name}.{ext}"))).unwrap_or_default();
    let http = reqwest::Client::new();
    // The free port may be taken by someone else before the server binds it: retry.
    for _ in 0..3 {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut child = herald(dir)
            .envs(env.iter().copied())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir", d])
            .args(extra)
            .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap())
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let up = http
                .get(format!("{url}/healthz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if up {
                return (child, url);
            }
            if let Ok(Some(status)) = child.try_wait() {
                let err = log("err");
                assert!(
                    err.contains("cannot listen"),
                    "herald serve exited with {status}: {err}"
                );
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "herald serve did not answer /healthz within 30 s: {}",
                log("err")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("herald serve found no free port in 3 tries");
}

/// Sends SIGTERM to `child` and asserts it exits 0 within 15 s.
pub(crate) async fn terminate(child: &mut tokio::process::Child) {
    let pid = child.id().expect("the child is running");
    let killed = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap_or_else(|_| panic!("herald serve did not exit within 15 s of SIGTERM"))
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn app_create_list_rotate_and_a_token_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_owned();

    let created: Value = serde_json::from_str(
        ok(dir.path(), &["app", "create", "acme", "--json", "--data-dir", &d])
            .await
            .trim(),
    )
    .unwrap();
    assert_eq!(created["app"], "acme");
    let key = created["key"].as_str().unwrap().to_owned();
    let secret = created["token_secret"].as_str().unwrap().to_owned();
    assert!(key.len() >= 32 && secret.len() >= 32, "{created}");
    assert_ne!(key, secret);
    // Plain output shows them too.
    let plain = ok(dir.path(), &["app", "create", "other", "--data-dir", &d]).await;
    assert!(plain.contains("other") && plain.contains("key"), "{plain}");
    // The same name again is refused.
    fails(dir.path(), &["app", "create", "acme", "--data-dir", &d], "exists").await;

    let list = ok(dir.path(), &["app", "list", "--data-dir", &d]).await;
    let names: Vec<&str> = list.lines().map(str::trim).collect();
    assert_eq!(names, ["acme", "other"], "{list}");
    let list: Value =
        serde_json::from_str(&ok(dir.path(), &["app", "list", "--json", "--data-dir", &d]).await).unwrap();
    assert_eq!(list[0]["name"], "acme", "{list}");

    let rotated: Value = serde_json::from_str(
        ok(dir.path(), &["app", "rotate", "acme", "--json", "--data-dir", &d])
            .await
            .trim(),
    )
    .unwrap();
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    fails(dir.path(), &["app", "rotate", "nope", "--data-dir", &d], "nope").await;
    fails(
        dir.path(),
        &["app", "rotate", "acme", "--grace", "soon", "--data-dir", &d],
        "--grace",
    )
    .await;

    let tok = ok(
        dir.path(),
        &[
            "token",
            "--app",
            "acme",
            "--sub",
            "alice",
            "--channel",
            "news",
            "--channel",
            "chat:*",
            "--publish",
            "chat:*",
            "--info",
            r#"{"name":"Alice"}"#,
            "--ttl",
            "10m",
            "--data-dir",
            &d,
        ],
    )
    .await
    .trim()
    .to_owned();
    assert_eq!(tok.split('.').count(), 3, "a JWT: {tok}");

    // A server on the same data dir accepts the CLI's key and token.
    let server = TestServer::start_in(dir, |_| {}).await;
    let app = App {
        name: "acme".into(),
        key: new_key,
        token_secret: String::new(),
    };
    let mut sse = server.subscribe_sse(&app, "news", &tok).await;
    let (status, body) = server
        .post(
            "/v1/apps/acme/publish",
            Some(&tok),
            &json!({"channel": "chat:1", "data": 1}),
        )
        .await;
    assert_eq!(status, 200, "the token's publish grant: {body}");
    assert_refused(
        &server
            .get_within(&format!("/v1/apps/acme/events?channel=sports&token={tok}"), None)
            .await,
        403,
        "forbidden",
    );
    server.publish(&app, "news", json!("hello")).await;
    assert_eq!(sse.messages(1).await[0]["data"], "hello");
    let p = server.presence(&app, "news").await;
    assert_eq!(p["members"][0]["info"], json!({"name": "Alice"}), "{p}");
    // The key from before the rotation no longer works.
    assert_refused(
        &server.get_within("/v1/apps/acme/stats", Some(&key)).await,
        401,
        "invalid_key",
    );
}

#[tokio::test]
async fn serve_publish_and_an_sse_client_the_acceptance_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_owned();
    let (mut child, url) = serve(dir.path(), "serve").await;
    let log = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    // The first start created the demo app and said so.
    let banner = log("serve.out");
    assert!(
        banner.contains("demo") && banner.contains("token secret"),
        "{banner}"
    );
    assert!(dir.path().join("admin.key").exists());

    let tok = ok(
        dir.path(),
        &[
            "token",
            "--app",
            "demo",
            "--sub",
            "alice",
            "--channel",
            "*",
            "--data-dir",
            &d,
        ],
    )
    .await
    .trim()
    .to_owned();
    let mut sse = Sse::connect(
        &format!("{url}/v1/apps/demo/events?channel=news&token={tok}"),
        None,
    )
    .await;
    assert_eq!(sse.status, 200);

    let published = ok(
        dir.path(),
        &[
            "publish",
            "--url",
            &url,
            "--app",
            "demo",
            "--channel",
            "news",
            "--data",
            r#"{"hello":"world"}"#,
            "--data-dir",
            &d,
        ],
    )
    .await;
    let published: Value = serde_json::from_str(published.trim()).unwrap();
    assert_eq!(published["channel"], "news");
    assert_eq!(published["offset"], 1);

    let m = sse.messages(1).await;
    assert_eq!(m[0]["data"], json!({"hello": "world"}));
    assert_eq!(m[0]["channel"], "news");
    assert_eq!(m[0]["event"], "message");

    // A named event through the CLI, and a refusal relayed as a sentence.
    ok(
        dir.path(),
        &[
            "publish",
            "--url",
            &url,
            "--app",
            "demo",
            "--channel",
            "news",
            "--event",
            "alert",
            "--data",
            "\"hi\"",
            "--data-dir",
            &d,
        ],
    )
    .await;
    let ev = sse.next().await.unwrap();
    assert_eq!(ev.event, "alert");
    let e = fails(
        dir.path(),
        &[
            "publish",
            "--url",
            &url,
            "--app",
            "demo",
            "--channel",
            "news",
            "--data",
            "1",
            "--key",
            "hk_wrong",
            "--data-dir",
            &d,
        ],
        "401",
    )
    .await;
    assert!(e.contains("invalid_key"), "{e}");
    fails(
        dir.path(),
        &[
            "publish",
            "--url",
            &url,
            "--app",
            "nope",
            "--channel",
            "news",
            "--data",
            "1",
            "--data-dir",
            &d,
        ],
        "app_not_found",
    )
    .await;

    // SIGTERM: the server tells the client to reconnect and exits 0.
    terminate(&mut child).await;
    // The open stream was told why it ends, then ended.
    let mut saw_disconnect = false;
    while let Ok(Some(ev)) = sse.next_within(WAIT).await {
        saw_disconnect |= ev.event == "disconnect";
    }
    assert!(saw_disconnect, "the SSE client got a disconnect event");

    // A second start keeps the demo app and does not print new credentials.
    let (mut child, _) = serve(dir.path(), "serve2").await;
    let banner = log("serve2.out");
    assert!(!banner.contains("token secret:"), "{banner}");
    terminate(&mut child).await;
}

#[tokio::test]
async fn bad_input_exits_non_zero_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_owned();
    ok(dir.path(), &["app", "create", "demo", "--data-dir", &d]).await;

    let o = run(dir.path(), &["app", "list", "--frobnicate", "--data-dir", &d]).await;
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
    assert!(stderr(&o).contains("--frobnicate"), "{}", stderr(&o));
    fails(dir.path(), &["launch"], "launch").await;

    fails(
        dir.path(),
        &[
            "token",
            "--app",
            "demo",
            "--channel",
            "*",
            "--ttl",
            "nope",
            "--data-dir",
            &d,
        ],
        "--ttl",
    )
    .await;
    fails(
        dir.path(),
        &["token", "--app", "demo", "--channel", "a b", "--data-dir", &d],
        "pattern",
    )
    .await;
    fails(
        dir.path(),
        &["token", "--app", "demo", "--info", "{name}", "--data-dir", &d],
        "--info",
    )
    .await;
    fails(
        dir.path(),
        &["token", "--app", "ghost", "--channel", "*", "--data-dir", &d],
        "ghost",
    )
    .await;
    fails(
        dir.path(),
        &[
            "publish",
            "--app",
            "demo",
            "--channel",
            "news",
            "--data",
            "not json",
            "--data-dir",
            &d,
        ],
        "--data",
    )
    .await;
    fails(
        dir.path(),
        &["app", "create", "Bad Name", "--data-dir", &d],
        "app name",
    )
    .await;
    fails(
        dir.path(),
        &["serve", "--listen", "nope", "--data-dir", &d],
        "nope",
    )
    .await;

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let e = fails(
        dir.path(),
        &[
            "app",
            "list",
            "--config",
            unknown.to_str().unwrap(),
            "--data-dir",
            &d,
        ],
        "unknown.toml",
    )
    .await;
    assert!(e.contains("lisen"), "names the unknown key: {e}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[defaults]\nhistory_ttl = \"ten minutes\"\n").unwrap();
    fails(
        dir.path(),
        &["serve", "--config", bad.to_str().unwrap(), "--data-dir", &d],
        "history_ttl",
    )
    .await;
    fails(
        dir.path(),
        &[
            "app",
            "list",
            "--config",
            "/nonexistent/herald.toml",
            "--data-dir",
            &d,
        ],
        "/nonexistent/herald.toml",
    )
    .await;

    let short = dir.path().join("short.toml");
    std::fs::write(&short, "admin_key = \"short\"\n").unwrap();
    fails(
        dir.path(),
        &[
            "app",
            "list",
            "--config",
            short.to_str().unwrap(),
            "--data-dir",
            &d,
        ],
        "at least 16",
    )
    .await;
    // A port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    fails(
        dir.path(),
        &["serve", "--listen", &addr, "--data-dir", &d],
        "cannot listen",
    )
    .await;
    drop(taken);

    // A server that is not running.
    let port = free_port();
    fails(
        dir.path(),
        &[
            "publish",
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--app",
            "demo",
            "--channel",
            "news",
            "--data",
            "1",
            "--key",
            "hk_x",
            "--data-dir",
            &d,
        ],
        "cannot reach",
    )
    .await;
    // No key and no admin.key in the data dir.
    fails(
        dir.path(),
        &[
            "publish",
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--app",
            "demo",
            "--channel",
            "news",
            "--data",
            "1",
            "--data-dir",
            &d,
        ],
        "--key",
    )
    .await;
}
