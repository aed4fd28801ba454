//! Test helpers that read like sentences: `TestServer::start().await`,
//! `server.create_app("acme")`, `Sse::connect(url)`, `Ws::connect(url)`.
#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald::Config;
use herald_node::Claims;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(5);

/// A running Herald on 127.0.0.1:0 with its own data dir.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The admin key.
    pub admin_key: String,
    /// An HTTP client.
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    dir: tempfile::TempDir,
}

/// An app's credentials.
#[derive(Clone, Debug)]
pub struct App {
    pub name: String,
    pub key: String,
    pub token_secret: String,
}

impl TestServer {
    /// Starts a server with the default configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `f` adjusted the configuration.
    pub async fn start_with(f: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, f).await
    }

    /// Starts a server on an existing data dir (to test restarts).
    pub async fn start_in(dir: tempfile::TempDir, f: impl FnOnce(&mut Config)) -> Self {
        Self::start_hooked(dir, herald::Hooks::default(), f).await
    }

    /// Starts a server whose engines `hooks` wraps (a broker that delays, ...).
    pub async fn start_hooked(
        dir: tempfile::TempDir,
        hooks: herald::Hooks,
        f: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config::with_data_dir(dir.path());
        config.demo_app = false;
        config.node.admin_key = Some("test-admin-key-0123456789".into());
        f(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let admin_key = config.node.admin_key.clone().unwrap();
        let task = tokio::spawn(herald::run_with(
            config,
            listener,
            async {
                let _ = stopped.await;
            },
            |_| {},
            hooks,
        ));
        let server = Self {
            url: format!("http://{addr}"),
            admin_key,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            dir,
        };
        // Wait until it answers.
        for _ in 0..100 {
            if server
                .http
                .get(format!("{}/healthz", server.url))
                .send()
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server did not start");
    }

    /// The helpers of this type for a server started elsewhere (a `herald serve`
    /// child process); `stop` does nothing to it.
    pub fn attach(url: &str, admin_key: &str) -> Self {
        Self {
            url: url.to_owned(),
            admin_key: admin_key.to_owned(),
            http: reqwest::Client::new(),
            stop: None,
            task: None,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The server's data dir.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Shuts the server down gracefully and waits for it; returns the data dir.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("server stops within 20 s")
                .unwrap()
                .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    /// Creates an app through the admin API.
    pub async fn create_app(&self, name: &str) -> App {
        let res = self
            .http
            .post(format!("{}/v1/admin/apps", self.url))
            .bearer_auth(&self.admin_key)
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "create app {name}");
        let v: Value = res.json().await.unwrap();
        App {
            name: v["app"].as_str().unwrap().into(),
            key: v["key"].as_str().unwrap().into(),
            token_secret: v["token_secret"].as_str().unwrap().into(),
        }
    }

    /// `{url}/v1/apps/{app}{path}`.
    pub fn app_url(&self, app: &App, path: &str) -> String {
        format!("{}/v1/apps/{}{}", self.url, app.name, path)
    }

    /// Publishes `data` to `channel` with the app key; returns the JSON answer.
    pub async fn publish(&self, app: &App, channel: &str, data: Value) -> Value {
        self.publish_body(app, json!({ "channel": channel, "data": data }))
            .await
    }

    /// Publishes a whole body with the app key; asserts 200.
    pub async fn publish_body(&self, app: &App, body: Value) -> Value {
        let res = self
            .http
            .post(self.app_url(app, "/publish"))
            .bearer_auth(&app.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let v: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "publish answered {v}");
        v
    }

    /// `GET {url}{path}` with a bearer, returning status and JSON.
    pub async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{}", self.url, path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Claims for a token valid for an hour.
pub fn claims(sub: Option<&str>, channels: &[&str], publish: &[&str]) -> Claims {
    let now = herald_broker::now_millis() / 1000;
    Claims {
        sub: sub.map(Into::into),
        exp: now + 3600,
        nbf: None,
        iat: Some(now),
        app: None,
        channels: channels.iter().map(|s| s.to_string()).collect(),
        publish: publish.iter().map(|s| s.to_string()).collect(),
        info: None,
    }
}

/// Signs claims with the app's token secret.
pub fn token(app: &App, claims: &Claims) -> String {
    herald_node::sign_token(&app.token_secret, claims).unwrap()
}

/// A token for user `sub` that may subscribe to everything and publish nothing.
pub fn user_token(app: &App, sub: &str) -> String {
    token(app, &claims(Some(sub), &["*"], &[]))
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// A minimal EventSource: parses the stream the way a browser does, remembers
/// the last event id (including id-only blocks), counts comments.
pub struct Sse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub last_event_id: Option<String>,
    pub comments: usize,
    /// `heartbeat` events seen (kept apart, like `open`).
    pub heartbeats: usize,
    pub retry: Option<u64>,
    /// Data of the `open` events seen (one per stream).
    pub opens: Vec<String>,
    stream: Option<futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>>,
    buf: String,
    pending: Vec<SseEvent>,
}

impl Sse {
    /// Connects to `url` (optionally with a Last-Event-ID header).
    pub async fn connect(url: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = reqwest::Client::new()
            .get(url)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        Sse {
            status,
            headers,
            last_event_id: last_event_id.map(Into::into),
            comments: 0,
            heartbeats: 0,
            retry: None,
            opens: Vec::new(),
            stream: Some(res.bytes_stream().boxed()),
            buf: String::new(),
            pending: Vec::new(),
        }
    }

    /// The next dispatched event within `WAIT`, or None when the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        self.next_within(WAIT)
            .await
            .expect("an SSE event within the wait")
    }

    /// The next event within `d`: Err on timeout, Ok(None) when the stream ended.
    pub async fn next_within(&mut self, d: Duration) -> Result<Option<SseEvent>, ()> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if !self.pending.is_empty() {
                return Ok(Some(self.pending.remove(0)));
            }
            let Some(stream) = self.stream.as_mut() else {
                return Ok(None);
            };
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => return Err(()),
                Ok(None) | Ok(Some(Err(_))) => {
                    self.stream = None;
                    return Ok(None);
                }
                Ok(Some(Ok(chunk))) => {
                    self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
                    self.parse();
                }
            }
        }
    }

    /// Reads events until `n` messages (event other than control events) arrived.
    pub async fn messages(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let ev = self.next().await.expect("stream ended early");
            if !["open", "reset", "presence", "disconnect", "error"].contains(&ev.event.as_str()) {
                out.push(ev.json());
            }
        }
        out
    }

    fn parse(&mut self) {
        while let Some(end) = self.buf.find("\n\n") {
            let block: String = self.buf[..end].to_string();
            self.buf.drain(..end + 2);
            let mut id = None;
            let mut event = String::from("message");
            let mut data: Vec<&str> = Vec::new();
            let mut only_comment = true;
            for line in block.lines() {
                if let Some(c) = line.strip_prefix(':') {
                    let _ = c;
                    continue;
                }
                only_comment = false;
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                match field {
                    "id" => id = Some(value.to_string()),
                    "event" => event = value.to_string(),
                    "data" => data.push(value),
                    "retry" => self.retry = value.parse().ok(),
                    _ => {}
                }
            }
            if only_comment {
                self.comments += 1;
                continue;
            }
            if let Some(id) = &id {
                self.last_event_id = Some(id.clone());
            }
            if data.is_empty() {
                continue; // id-only or retry-only block: no event is dispatched
            }
            if event == "heartbeat" {
                self.heartbeats += 1;
                continue;
            }
            if event == "open" {
                // The stream's first event: kept aside, like most apps ignore it.
                self.opens.push(data.join("\n"));
                continue;
            }
            self.pending.push(SseEvent {
                id: id.or_else(|| self.last_event_id.clone()),
                event,
                data: data.join("\n"),
            });
        }
    }
}

/// A WebSocket client speaking Herald's JSON frames.
pub struct Ws {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
    /// Pushes received while waiting for a reply.
    pub pushes: Vec<Value>,
}

/// How a WebSocket ended.
#[derive(Debug, PartialEq)]
pub enum WsEnd {
    Closed(u16, String),
    Dropped,
}

impl Ws {
    /// Upgrades an open connection (one that may have served other requests).
    pub async fn upgrade(url: &str, stream: tokio::net::TcpStream) -> Ws {
        let ws_url = url.replacen("http://", "ws://", 1);
        let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
        let (socket, _) = tokio_tungstenite::client_async(ws_url, stream)
            .await
            .expect("the upgrade succeeds");
        Ws {
            socket,
            next_id: 1,
            pushes: Vec::new(),
        }
    }

    /// Connects (the URL is http://..., turned into ws://...).
    pub async fn connect(url: &str) -> Result<Ws, (u16, Value)> {
        let ws_url = url.replacen("http://", "ws://", 1);
        match tokio_tungstenite::connect_async(ws_url).await {
            Ok((socket, _)) => Ok(Ws {
                socket,
                next_id: 1,
                pushes: Vec::new(),
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                let status = res.status().as_u16();
                let body = res.body().clone().unwrap_or_default();
                Err((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
            }
            Err(e) => panic!("websocket connect failed: {e}"),
        }
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .unwrap();
    }

    /// Sends `{"id":N, ...frame}` and returns the reply with that id (pushes
    /// received meanwhile are kept in `pushes`).
    pub async fn request(&mut self, mut frame: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        frame["id"] = json!(id);
        self.send_text(&frame.to_string()).await;
        loop {
            let v = self.recv().await.expect("a reply");
            if v.get("id") == Some(&json!(id)) {
                return v;
            }
            self.pushes.push(v);
        }
    }

    /// The next JSON frame within `WAIT` (None when the socket closed).
    pub async fn recv(&mut self) -> Option<Value> {
        self.recv_within(WAIT).await.expect("a frame within the wait")
    }

    /// The next JSON frame within `d`: Err on timeout.
    pub async fn recv_within(&mut self, d: Duration) -> Result<Option<Value>, ()> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Err(()),
                Ok(None) | Ok(Some(Err(_))) => return Ok(None),
                Ok(Some(Ok(m))) => match m {
                    tokio_tungstenite::tungstenite::Message::Text(t) => {
                        return Ok(Some(serde_json::from_str(t.as_str()).unwrap()))
                    }
                    tokio_tungstenite::tungstenite::Message::Close(_) => return Ok(None),
                    _ => continue,
                },
            }
        }
    }

    /// The next push: first those kept by `request`, then from the socket.
    pub async fn push(&mut self) -> Value {
        if !self.pushes.is_empty() {
            return self.pushes.remove(0);
        }
        self.recv().await.expect("a push")
    }

    /// Like [`Ws::push`], waiting up to `d` (a test that loads the server on
    /// purpose, on a machine that may be busy).
    pub async fn push_within(&mut self, d: Duration) -> Value {
        if !self.pushes.is_empty() {
            return self.pushes.remove(0);
        }
        self.recv_within(d)
            .await
            .expect("a frame within the wait")
            .expect("a push")
    }

    /// Reads until `n` message pushes arrived.
    pub async fn messages(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let v = self.push().await;
            if v["type"] == "message" {
                out.push(v);
            }
        }
        out
    }

    /// Waits for the server to close; returns the close code and reason.
    pub async fn closed(&mut self) -> WsEnd {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await {
                Err(_) => panic!("the socket did not close within the wait"),
                Ok(None) | Ok(Some(Err(_))) => return WsEnd::Dropped,
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame)))) => {
                    return match frame {
                        Some(f) => WsEnd::Closed(f.code.into(), f.reason.to_string()),
                        None => WsEnd::Closed(1005, String::new()),
                    }
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

// ---- Raw requests, refusals and bounded waits (api, refusals, auth, ...) ----

/// How long a plain HTTP request may take before the test fails (bounds a
/// request that was wrongly accepted as a never-ending stream, too).
pub const REQUEST_WAIT: Duration = Duration::from_secs(15);

/// Asserts a refusal: `status`, and the body exactly
/// `{"error":{"code":CODE,"message":"<a sentence>"}}`.
#[track_caller]
pub fn assert_refused(got: &(u16, Value), status: u16, code: &str) {
    let (s, body) = got;
    assert_eq!(*s, status, "expected {status} {code}, got {s}: {body}");
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("the error body is not a JSON object: {body}"));
    assert_eq!(obj.len(), 1, "the error body has only \"error\": {body}");
    let err = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("\"error\" is not an object: {body}"));
    assert_eq!(err.len(), 2, "\"error\" has exactly code and message: {body}");
    assert_eq!(body["error"]["code"], code, "error code: {body}");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("the message is not a string: {body}"));
    assert!(
        message.split_whitespace().count() >= 3,
        "the message is a sentence a person can act on: {body}"
    );
}

/// Asserts a WebSocket reply is the error `code` with a sentence.
#[track_caller]
pub fn assert_ws_refused(reply: &Value, code: &str) {
    assert!(reply.get("ok").is_none(), "expected an error reply: {reply}");
    assert_eq!(reply["error"]["code"], code, "error code: {reply}");
    let message = reply["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.split_whitespace().count() >= 3,
        "the message is a sentence: {reply}"
    );
}

impl TestServer {
    /// `method {url}{path}` with an optional bearer and raw body (sent as JSON);
    /// returns the status and the JSON answer (or its text as a JSON string).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<String>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .timeout(REQUEST_WAIT);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `GET {url}{path}`, bounded by [`REQUEST_WAIT`].
    pub async fn get_within(&self, path: &str, bearer: Option<&str>) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, bearer, None).await
    }

    /// `POST {url}{path}` with a JSON body.
    pub async fn post(&self, path: &str, bearer: Option<&str>, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, bearer, Some(body.to_string()))
            .await
    }

    /// `POST /v1/apps/{app}/publish` with `bearer` and a raw body.
    pub async fn publish_raw(&self, app: &App, bearer: Option<&str>, body: &str) -> (u16, Value) {
        let path = format!("/v1/apps/{}/publish", app.name);
        self.call(reqwest::Method::POST, &path, bearer, Some(body.to_owned()))
            .await
    }

    /// The history answer of `channel` with the app key (`query` without `?`); asserts 200.
    pub async fn history(&self, app: &App, channel: &str, query: &str) -> Value {
        let path = format!("/v1/apps/{}/channels/{}/history?{query}", app.name, enc(channel));
        let (status, body) = self.get_within(&path, Some(&app.key)).await;
        assert_eq!(status, 200, "history answered {body}");
        body
    }

    /// The `data` of each message in `channel`'s history (newest 100).
    pub async fn history_data(&self, app: &App, channel: &str) -> Vec<Value> {
        self.history(app, channel, "").await["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["data"].clone())
            .collect()
    }

    /// The offsets in `channel`'s history (newest 1000).
    pub async fn history_offsets(&self, app: &App, channel: &str) -> Vec<u64> {
        self.history(app, channel, "limit=1000").await["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["offset"].as_u64().unwrap())
            .collect()
    }

    /// Opens an SSE stream on `app` with `query` (e.g. `channel=a&token=T`).
    pub async fn sse(&self, app: &App, query: &str) -> Sse {
        Sse::connect(&self.app_url(app, &format!("/events?{query}")), None).await
    }

    /// Opens an SSE stream on `channel` with `token`; asserts 200.
    pub async fn subscribe_sse(&self, app: &App, channel: &str, token: &str) -> Sse {
        let sse = self
            .sse(app, &format!("channel={}&token={token}", enc(channel)))
            .await;
        assert_eq!(sse.status, 200, "SSE on {channel} refused");
        sse
    }

    /// Opens a WebSocket on `app` with `token` (None: anonymous).
    pub async fn ws(&self, app: &App, token: Option<&str>) -> Result<Ws, (u16, Value)> {
        let q = token.map(|t| format!("?token={t}")).unwrap_or_default();
        Ws::connect(&self.app_url(app, &format!("/ws{q}"))).await
    }

    /// The app's `GET /channels` answer as `[(channel, subscribers)]`.
    pub async fn channel_counts(&self, app: &App) -> Vec<(String, u64)> {
        let (status, body) = self
            .get_within(&format!("/v1/apps/{}/channels", app.name), Some(&app.key))
            .await;
        assert_eq!(status, 200, "channels answered {body}");
        body["channels"]
            .as_array()
            .unwrap_or_else(|| panic!("no channels list: {body}"))
            .iter()
            .map(|c| {
                (
                    c["channel"].as_str().unwrap().to_owned(),
                    c["subscribers"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// The app's presence answer for `channel` with the app key.
    pub async fn presence(&self, app: &App, channel: &str) -> Value {
        let path = format!("/v1/apps/{}/channels/{}/presence", app.name, enc(channel));
        let (status, body) = self.get_within(&path, Some(&app.key)).await;
        assert_eq!(status, 200, "presence answered {body}");
        body
    }

    /// The app's stats with the app key.
    pub async fn stats(&self, app: &App) -> Value {
        let (status, body) = self
            .get_within(&format!("/v1/apps/{}/stats", app.name), Some(&app.key))
            .await;
        assert_eq!(status, 200, "stats answered {body}");
        body
    }
}

/// Calls `probe` until it returns `Some`, for at most `within`; panics naming
/// `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Sse {
    /// Asserts that no message (nor any other event) arrives within `d`.
    pub async fn assert_quiet(&mut self, d: Duration) {
        match self.next_within(d).await {
            Err(()) => {}
            Ok(Some(ev)) => panic!("expected nothing, got {ev:?}"),
            Ok(None) => panic!("expected nothing, but the stream ended"),
        }
    }
}

impl Ws {
    /// Sends a subscribe for `channel` and returns the reply.
    pub async fn subscribe(&mut self, channel: &str) -> Value {
        self.request(json!({"op": "subscribe", "channel": channel})).await
    }
}

// ---- Helpers of the transport, resume and shutdown tests ----

/// How long a test waits for a whole burst or a resume loop under load.
pub const LONG_WAIT: Duration = Duration::from_secs(60);

/// The `offset` of each envelope.
pub fn offsets(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["offset"].as_u64().expect("an envelope has an offset"))
        .collect()
}

/// A token for `sub` (subscribe to everything, publish nothing) that expires in `secs` seconds.
pub fn token_expiring_in(app: &App, sub: &str, secs: i64) -> String {
    let mut c = claims(Some(sub), &["*"], &[]);
    c.exp = herald_broker::now_millis() / 1000 + secs;
    token(app, &c)
}

impl TestServer {
    /// The SSE URL of `channels` with `?token=`.
    pub fn events_url(&self, app: &App, channels: &[&str], tok: &str) -> String {
        let mut q = String::new();
        for c in channels {
            q.push_str(&format!("channel={}&", enc(c)));
        }
        self.app_url(app, &format!("/events?{q}token={tok}"))
    }

    /// The WebSocket URL with `?token=`.
    pub fn ws_url(&self, app: &App, tok: &str) -> String {
        self.app_url(app, &format!("/ws?token={tok}"))
    }

    /// Publishes `{"n": i}` to `channel` for each `i`, one after the other;
    /// returns the last answer (Null when there was none).
    pub async fn publish_seq(&self, app: &App, channel: &str, ns: impl IntoIterator<Item = u64>) -> Value {
        let mut last = Value::Null;
        for n in ns {
            last = self.publish(app, channel, json!({ "n": n })).await;
        }
        last
    }

    /// `GET /v1/apps/{app}/poll?{query}`: status and JSON body.
    pub async fn longpoll(&self, app: &App, query: &str) -> (u16, Value) {
        let res = self
            .http
            .get(self.app_url(app, &format!("/poll?{query}")))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    }

    /// The sum of the samples of metric `name` whose labels contain `label`
    /// (`""`: every sample), from `/metrics`.
    pub async fn metric(&self, name: &str, label: &str) -> f64 {
        let (status, text) = self.get("/metrics", None).await;
        assert_eq!(status, 200);
        let text = text.as_str().expect("metrics are text").to_owned();
        let mut sum = 0.0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (n, labels) = series.split_once('{').unwrap_or((series, ""));
            if n == name && labels.contains(label) {
                sum += value.parse::<f64>().unwrap_or(0.0);
            }
        }
        sum
    }

    /// Waits (at most `within`) until `metric(name, label)` satisfies `ok`; returns it.
    pub async fn wait_metric(
        &self,
        within: Duration,
        name: &str,
        label: &str,
        ok: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let v = self.metric(name, label).await;
            if ok(v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "metric {name}{{{label}}} stayed at {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Sse {
    /// Reads the stream until `done` holds, within `WAIT`; events read meanwhile
    /// stay queued for `next`. Panics when the stream ends first.
    pub async fn read_until(&mut self, done: impl Fn(&Sse) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(self) {
            let stream = self
                .stream
                .as_mut()
                .expect("the stream ended before the awaited condition");
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => panic!("the SSE stream did not reach the awaited condition within the wait"),
                Ok(None) | Ok(Some(Err(_))) => {
                    self.stream = None;
                    panic!("the SSE stream ended before the awaited condition");
                }
                Ok(Some(Ok(chunk))) => {
                    self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
                    self.parse();
                }
            }
        }
    }

    /// The starting cursor of a connection opened without `Last-Event-ID`: the
    /// first `id:` the server sends, even when nothing was published.
    pub async fn first_id(&mut self) -> String {
        self.read_until(|s| s.last_event_id.is_some()).await;
        self.last_event_id.clone().unwrap()
    }

    /// The next message event (control events are returned too: check `event`).
    pub async fn next_event(&mut self) -> SseEvent {
        self.next().await.expect("the SSE stream ended early")
    }
}

impl Ws {
    /// Subscribes to `channel` (from `cursor` when given); asserts the reply is
    /// ok and returns its `ok` object.
    pub async fn subscribe_ok(&mut self, channel: &str, cursor: Option<&str>) -> Value {
        let mut frame = json!({"op": "subscribe", "channel": channel});
        if let Some(c) = cursor {
            frame["cursor"] = json!(c);
        }
        let r = self.request(frame).await;
        assert!(r.get("ok").is_some(), "subscribe {channel}: {r}");
        r["ok"].clone()
    }
}

impl Ws {
    /// Closes from the client side with `code`; returns how the server answered
    /// (a clean close echoes a Close frame).
    pub async fn close_with(&mut self, code: u16) -> WsEnd {
        use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "bye".into(),
            })))
            .await
            .unwrap();
        self.closed().await
    }
}

// ---- Tables of cases (the negative matrices) ----

/// The tally of a table of cases: how many were tried, and which answered
/// wrongly, so that a table reports every wrong row at once.
#[derive(Default)]
pub struct Tally {
    pub tries: usize,
    pub wrong: Vec<String>,
}

impl Tally {
    /// Counts one try that must have been refused with `status` and `code`.
    pub fn refused(&mut self, what: impl std::fmt::Display, got: &(u16, Value), status: u16, code: &str) {
        self.tries += 1;
        if got.0 != status || got.1["error"]["code"] != code {
            self.wrong.push(format!(
                "{what}: expected {status} {code}, got {} {}",
                got.0, got.1
            ));
        }
    }

    /// Counts one try: `Err(why)` when it answered wrongly.
    pub fn check(&mut self, what: impl std::fmt::Display, outcome: Result<(), String>) {
        self.tries += 1;
        if let Err(why) = outcome {
            self.wrong.push(format!("{what}: {why}"));
        }
    }

    /// Panics with every wrong row, if any.
    #[track_caller]
    pub fn assert_clean(&self) {
        assert!(
            self.wrong.is_empty(),
            "{} of {} tries answered wrongly:\n{}",
            self.wrong.len(),
            self.tries,
            self.wrong.join("\n")
        );
    }
}

/// The value of the `herald_session` cookie a classroom answer sets.
pub fn session_cookie(res: &reqwest::Response) -> String {
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("herald_session="))
        .expect("a herald_session cookie");
    cookie["herald_session=".len()..cookie.find(';').unwrap()].to_owned()
}
