//! Classroom request bodies: JSON into every request type, through the real
//! routes and handlers (axum router, cookie and CSRF checks, the live session's
//! sequencer, SQLite), in one process without sockets. A world is set up once
//! (a trainer, the demo course with its live session, deck and polls, a guest
//! student and a third member, a question, two breakout groups); each input picks an endpoint and
//! who calls it (first byte) and is the body. Every answer is a success or a
//! refusal `{"error":{"code","message"}}` with a 4xx/503 status; never a 500,
//! never a panic, and a student never succeeds at a trainer's action.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::Router;
use herald_broker::memory::MemoryBroker;
use herald_classroom::{ClassroomOptions, ClassroomState};
use herald_node::{Node, NodeConfig};
use herald_server::{AppState, ServerOptions};
use herald_store::sqlite::SqliteStore;
use herald_store::Store;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tower::ServiceExt;

/// Who calls.
#[derive(Clone)]
struct Caller {
    cookie: String,
    csrf: String,
}

struct World {
    router: Router,
    trainer: Caller,
    student: Caller,
    /// Placeholders in paths: {cid} {sid} {pid} {qid} {gid} {uid} {did}.
    ids: Vec<(&'static str, String)>,
    _dir: tempfile::TempDir,
}

/// (method, path, only staff may succeed).
const ENDPOINTS: &[(&str, &str, bool)] = &[
    ("POST", "/classroom/api/auth/guest", false),
    ("POST", "/classroom/api/courses", false),
    ("POST", "/classroom/api/courses/join", false),
    ("PATCH", "/classroom/api/courses/{cid}", true),
    ("POST", "/classroom/api/courses/{cid}/roster/{uid}", true),
    ("POST", "/classroom/api/courses/{cid}/sessions", true),
    ("POST", "/classroom/api/courses/{cid}/decks", true),
    ("POST", "/classroom/api/sessions/{sid}/slides", true),
    ("PATCH", "/classroom/api/sessions/{sid}/slides", true),
    ("POST", "/classroom/api/sessions/{sid}/slides/page", true),
    ("POST", "/classroom/api/sessions/{sid}/polls", true),
    ("POST", "/classroom/api/sessions/{sid}/polls/{pid}/reveal", true),
    ("POST", "/classroom/api/sessions/{sid}/polls/{pid}/answer", false),
    ("PATCH", "/classroom/api/sessions/{sid}/qa", true),
    ("POST", "/classroom/api/sessions/{sid}/questions", false),
    ("PATCH", "/classroom/api/sessions/{sid}/questions/{qid}", false),
    (
        "POST",
        "/classroom/api/sessions/{sid}/questions/{qid}/state",
        true,
    ),
    (
        "POST",
        "/classroom/api/sessions/{sid}/questions/{qid}/answer",
        true,
    ),
    ("PUT", "/classroom/api/sessions/{sid}/groups", true),
    ("PATCH", "/classroom/api/sessions/{sid}/groups", true),
    ("POST", "/classroom/api/sessions/{sid}/groups/split", true),
    ("POST", "/classroom/api/sessions/{sid}/groups/timer", true),
    ("POST", "/classroom/api/sessions/{sid}/groups/broadcast", true),
    ("PATCH", "/classroom/api/sessions/{sid}/groups/{gid}", true),
    ("POST", "/classroom/api/sessions/{sid}/groups/{gid}/members", true),
    ("POST", "/classroom/api/sessions/{sid}/roster/{uid}", true),
    ("POST", "/classroom/api/sessions/{sid}/activity", false),
    ("POST", "/classroom/api/sessions/{sid}/hand", false),
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

async fn call(
    router: &Router,
    method: &str,
    path: &str,
    who: Option<&Caller>,
    body: Vec<u8>,
) -> (u16, Vec<u8>, Vec<String>) {
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("a method"))
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(w) = who {
        req = req
            .header(header::COOKIE, &w.cookie)
            .header("x-csrf-token", &w.csrf);
    }
    let res = router
        .clone()
        .oneshot(req.body(Body::from(body)).expect("a request"))
        .await
        .expect("the router answers");
    let status = res.status().as_u16();
    let cookies = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_owned)
        .collect();
    let bytes = res
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes()
        .to_vec();
    (status, bytes, cookies)
}

async fn json_call(
    router: &Router,
    method: &str,
    path: &str,
    who: Option<&Caller>,
    body: Value,
) -> (Value, Vec<String>) {
    let (status, bytes, cookies) = call(router, method, path, who, body.to_string().into_bytes()).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(
        (200..300).contains(&status),
        "setup {method} {path}: {status} {v}"
    );
    (v, cookies)
}

fn caller(v: &Value, cookies: Vec<String>) -> Caller {
    Caller {
        cookie: cookies.join("; "),
        csrf: v["csrf"].as_str().expect("a csrf token").to_owned(),
    }
}

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = SqliteStore::open(&dir.path().join("herald.db"))
        .await
        .expect("a store");
    store
        .create_app(herald_classroom::live::APP)
        .await
        .expect("the classroom app");
    let mut config = NodeConfig::default();
    config.namespaces.insert(
        herald_classroom::live::NAMESPACE.to_owned(),
        herald_classroom::live::namespace_options(),
    );
    let broker = Arc::new(MemoryBroker::new());
    let node = Node::new(config, broker.clone(), broker, Arc::new(store.clone()));
    let classroom =
        ClassroomState::new(Arc::new(store), ClassroomOptions::default(), node.clone()).expect("a classroom");
    let state = AppState {
        node,
        options: Arc::new(ServerOptions::default()),
    };
    let router = herald_server::router(state, herald_classroom::routes(classroom));

    let (v, c) = json_call(
        &router,
        "POST",
        "/classroom/api/auth/signup",
        None,
        json!({"email": "trainer@example.org", "name": "Trainer", "password": "correct horse battery staple"}),
    )
    .await;
    let trainer = caller(&v, c);
    let (demo, _) = json_call(&router, "POST", "/classroom/api/demo", Some(&trainer), json!({})).await;
    let cid = id(&demo["course"]);
    let sid = id(&demo["session"]);
    let code = demo["course"]["join_code"]
        .as_str()
        .expect("a join code")
        .to_owned();
    let (v, c) = json_call(
        &router,
        "POST",
        "/classroom/api/auth/guest",
        None,
        json!({"code": code, "name": "Student"}),
    )
    .await;
    let student = caller(&v, c);
    // Role changes go to a third member: the student stays a student, so that
    // "a student never succeeds at a trainer's action" holds across runs.
    let (v, _) = json_call(
        &router,
        "POST",
        "/classroom/api/auth/guest",
        None,
        json!({"code": code, "name": "Bystander"}),
    )
    .await;
    let uid = id(&v["user"]);
    let path = format!("/classroom/api/sessions/{sid}/questions");
    let (q, _) = json_call(
        &router,
        "POST",
        &path,
        Some(&student),
        json!({"text": "Why is the sky blue?"}),
    )
    .await;
    let qid = q["question"]["id"]
        .as_str()
        .or(q["id"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no question id in {q}"));
    let path = format!("/classroom/api/sessions/{sid}/groups");
    let (g, _) = json_call(
        &router,
        "PUT",
        &path,
        Some(&trainer),
        json!({"groups": [{"name": "A"}, {"name": "B"}]}),
    )
    .await;
    let gid = find_id(&g["snapshot"]["groups"]["groups"]).unwrap_or_else(|| panic!("no group id in {g}"));
    let path = format!("/classroom/api/sessions/{sid}");
    let (snap, _) = json_call(&router, "GET", &path, Some(&trainer), Value::Null).await;
    let snap = &snap["snapshot"];
    let pid = find_id(&snap["polls"]).unwrap_or_else(|| panic!("no poll in {snap}"));
    let did = find_id(&snap["deck"]).unwrap_or_else(|| panic!("no deck in {snap}"));
    World {
        router,
        trainer,
        student,
        ids: vec![
            ("{cid}", cid),
            ("{sid}", sid),
            ("{pid}", pid),
            ("{qid}", qid),
            ("{gid}", gid),
            ("{uid}", uid),
            ("{did}", did),
        ],
        _dir: dir,
    }
}

/// The first `id` found in `v` (an object, or the first of an array).
fn find_id(v: &Value) -> Option<String> {
    match v {
        Value::Object(m) => m
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| m.values().find_map(find_id)),
        Value::Array(a) => a.iter().find_map(find_id),
        _ => None,
    }
}

/// The world, rebuilt every so many runs so that what the inputs pile up
/// (questions, decks, courses, guests) does not slow the runs down for good.
fn the_world() -> Arc<World> {
    static WORLD: Mutex<Option<(Arc<World>, u32)>> = Mutex::new(None);
    let mut w = WORLD.lock().expect("the world");
    match w.as_mut() {
        Some((world, runs)) if *runs < 20_000 => {
            *runs += 1;
            world.clone()
        }
        _ => {
            let world = Arc::new(runtime().block_on(world()));
            *w = Some((world.clone(), 0));
            world
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let world = the_world();
    let (method, template, staff_only) = ENDPOINTS[usize::from(pick & 0x7F) % ENDPOINTS.len()];
    let as_student = pick & 0x80 != 0;
    let mut path = template.to_owned();
    for (k, v) in &world.ids {
        path = path.replace(k, v);
    }
    let who = if as_student {
        &world.student
    } else {
        &world.trainer
    };
    let (status, bytes, _) = runtime().block_on(call(&world.router, method, &path, Some(who), body.to_vec()));
    let text = String::from_utf8_lossy(&bytes);
    assert_ne!(status, 500, "{method} {path} answered 500: {text}");
    if status >= 400 {
        let v: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("{method} {path}: {status} not JSON: {text}"));
        assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{method} {path}: {status} {v}"
        );
    } else if as_student && staff_only {
        panic!("a student succeeded at {method} {path}: {status} {text}");
    }
});
