//! The session log: a session's log replayed gives exactly the state the live
//! session has (from the first entry, and from the newest snapshot), the state
//! comes back the same after a restart, and `GET sessions/{sid}/log` shows each
//! member only what they could see live.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_classroom::live::Live;
use herald_classroom::ClassroomState;
use reqwest::Method;
use serde_json::{json, Value};

use crate::classroom::Browser;
use crate::classroom_live::Class;
use crate::support::*;

/// A server whose classroom state the test keeps, snapshots written every few
/// KiB of log (so that loading goes through several of them).
async fn server_with_live(dir: tempfile::TempDir) -> (TestServer, ClassroomState) {
    let seen: Arc<Mutex<Option<ClassroomState>>> = Arc::default();
    let keep = seen.clone();
    let hooks = herald::Hooks {
        classroom: Some(Box::new(move |state: &ClassroomState| {
            state.live.set_snapshot_min_bytes(4 * 1024);
            *keep.lock().unwrap() = Some(state.clone());
        })),
        ..herald::Hooks::default()
    };
    let server = TestServer::start_hooked(dir, hooks, |_| {}).await;
    let state = seen.lock().unwrap().take().expect("the classroom hook ran");
    (server, state)
}

async fn ok(b: &Browser, method: Method, path: &str, body: Value) -> Value {
    let (status, v) = b.call(method, path, body).await;
    assert!((200..300).contains(&status), "{path}: {status} {v}");
    v
}

/// The live state equals the log replayed from the first entry and from the
/// newest snapshot, at the same entry and with the same cursor.
async fn assert_replays(live: &Live, sid: &str) {
    for _ in 0..50 {
        let (now, seq, cursor) = live.state_json(sid).await.unwrap();
        let (from_log, log_seq, log_cursor) = live.replayed(sid, true).await.unwrap();
        let (from_snapshot, snap_seq, snap_cursor) = live.replayed(sid, false).await.unwrap();
        if seq != log_seq || seq != snap_seq {
            // A coalesced flush committed in between: look again.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let now: Value = serde_json::from_str(&now).unwrap();
        assert_eq!(
            now,
            serde_json::from_str::<Value>(&from_log).unwrap(),
            "replayed from the first entry"
        );
        assert_eq!(
            now,
            serde_json::from_str::<Value>(&from_snapshot).unwrap(),
            "loaded from the newest snapshot and the log after it"
        );
        assert_eq!((&cursor, &cursor), (&log_cursor, &snap_cursor));
        return;
    }
    panic!("the session never stood still long enough to compare");
}

/// Every kind of change of every feature, by trainer and students; the log
/// replayed gives the same state, also after a restart.
#[tokio::test]
async fn a_sessions_log_replayed_is_its_state() {
    let (server, state) = server_with_live(tempfile::tempdir().unwrap()).await;
    let class = Class::new(&server).await;
    let (ana, ana_id) = class.another_student(&server, "Ana").await;
    let (t, sam) = (&class.trainer, &class.student);
    let sid = class.session("Everything").await;
    let s = |p: &str| format!("/sessions/{sid}{p}");
    ok(t, Method::POST, &s("/start"), json!({})).await;

    // Hands and roles.
    ok(sam, Method::POST, &s("/hand"), json!({})).await;
    ok(&ana, Method::POST, &s("/hand"), json!({})).await;
    ok(
        t,
        Method::DELETE,
        &s(&format!("/hands/{}", class.student_id)),
        json!({}),
    )
    .await;
    ok(sam, Method::POST, &s("/activity"), json!({ "activity": "away" })).await;

    // Q&A: settings, asks (one anonymous, one held back), votes, edits, a
    // withdrawal, states, a private and a public answer.
    ok(t, Method::PATCH, &s("/qa"), json!({ "anonymous": true })).await;
    let q1 = ok(
        sam,
        Method::POST,
        &s("/questions"),
        json!({ "text": "Why?", "anonymous": true }),
    )
    .await;
    let q1 = q1["question"]["id"].as_str().unwrap().to_owned();
    let q2 = ok(&ana, Method::POST, &s("/questions"), json!({ "text": "How?" })).await;
    let q2 = q2["question"]["id"].as_str().unwrap().to_owned();
    ok(
        &ana,
        Method::POST,
        &s(&format!("/questions/{q1}/vote")),
        json!({}),
    )
    .await;
    ok(sam, Method::POST, &s(&format!("/questions/{q2}/vote")), json!({})).await;
    ok(
        sam,
        Method::DELETE,
        &s(&format!("/questions/{q2}/vote")),
        json!({}),
    )
    .await;
    ok(
        &ana,
        Method::PATCH,
        &s(&format!("/questions/{q2}")),
        json!({ "text": "How, exactly?" }),
    )
    .await;
    ok(t, Method::PATCH, &s("/qa"), json!({ "moderation": true })).await;
    let q3 = ok(
        sam,
        Method::POST,
        &s("/questions"),
        json!({ "text": "Held back" }),
    )
    .await;
    let q3 = q3["question"]["id"].as_str().unwrap().to_owned();
    let q4 = ok(
        &ana,
        Method::POST,
        &s("/questions"),
        json!({ "text": "Gone soon" }),
    )
    .await;
    let q4 = q4["question"]["id"].as_str().unwrap().to_owned();
    ok(&ana, Method::DELETE, &s(&format!("/questions/{q4}")), json!({})).await;
    ok(
        t,
        Method::POST,
        &s(&format!("/questions/{q3}/state")),
        json!({ "state": "published" }),
    )
    .await;
    ok(
        t,
        Method::POST,
        &s(&format!("/questions/{q1}/state")),
        json!({ "state": "answering" }),
    )
    .await;
    ok(
        t,
        Method::POST,
        &s(&format!("/questions/{q2}/state")),
        json!({ "state": "answering" }),
    )
    .await;
    ok(
        t,
        Method::POST,
        &s(&format!("/questions/{q1}/answer")),
        json!({ "mode": "private", "text": "Because." }),
    )
    .await;
    ok(
        t,
        Method::POST,
        &s(&format!("/questions/{q2}/answer")),
        json!({ "mode": "public", "text": "Like this." }),
    )
    .await;

    // Slides.
    let deck = ok(
        t,
        Method::POST,
        &format!("/courses/{}/decks", class.course_id),
        json!({ "title": "Deck", "markdown": "# One\n\n# Two\n\n# Three" }),
    )
    .await;
    let deck_id = deck["deck"]["id"].as_str().unwrap().to_owned();
    ok(t, Method::POST, &s("/slides"), json!({ "deck_id": deck_id })).await;
    ok(t, Method::POST, &s("/slides/page"), json!({ "page": 2 })).await;
    ok(t, Method::POST, &s("/slides/page"), json!({ "page": 1 })).await;
    ok(t, Method::PATCH, &s("/slides"), json!({ "mode": "student" })).await;

    // Polls: a quiz on a timer that closes by itself, a poll answered,
    // changed, shown, reset, answered again and deleted.
    let quiz = ok(
        t,
        Method::POST,
        &s("/polls"),
        json!({ "kind": "single", "question": "2+2?", "options": ["3", "4"], "correct": [1], "duration_s": 5 }),
    )
    .await;
    let quiz = quiz["poll"]["id"].as_str().unwrap().to_owned();
    ok(t, Method::POST, &s(&format!("/polls/{quiz}/open")), json!({})).await;
    ok(
        sam,
        Method::POST,
        &s(&format!("/polls/{quiz}/answer")),
        json!({ "answer": 1 }),
    )
    .await;
    ok(
        &ana,
        Method::POST,
        &s(&format!("/polls/{quiz}/answer")),
        json!({ "answer": 0 }),
    )
    .await;
    let poll = ok(
        t,
        Method::POST,
        &s("/polls"),
        json!({ "kind": "word_cloud", "question": "One word?" }),
    )
    .await;
    let poll = poll["poll"]["id"].as_str().unwrap().to_owned();
    let draft = ok(
        t,
        Method::POST,
        &s("/polls"),
        json!({ "kind": "yes_no", "question": "Never opened" }),
    )
    .await;
    let draft = draft["poll"]["id"].as_str().unwrap().to_owned();
    // Opening the word cloud closes the quiz early; open the quiz again for its timer.
    ok(t, Method::POST, &s(&format!("/polls/{poll}/open")), json!({})).await;
    ok(
        sam,
        Method::POST,
        &s(&format!("/polls/{poll}/answer")),
        json!({ "answer": "Blue sky" }),
    )
    .await;
    ok(
        sam,
        Method::POST,
        &s(&format!("/polls/{poll}/answer")),
        json!({ "answer": "green" }),
    )
    .await;
    ok(
        t,
        Method::POST,
        &s(&format!("/polls/{poll}/reveal")),
        json!({ "visible": true }),
    )
    .await;
    ok(t, Method::POST, &s(&format!("/polls/{poll}/reset")), json!({})).await;
    ok(
        &ana,
        Method::POST,
        &s(&format!("/polls/{poll}/answer")),
        json!({ "answer": "red" }),
    )
    .await;
    ok(t, Method::POST, &s(&format!("/polls/{quiz}/open")), json!({})).await;
    ok(t, Method::DELETE, &s(&format!("/polls/{draft}")), json!({})).await;

    // Groups.
    ok(
        t,
        Method::POST,
        &s("/groups/split"),
        json!({ "count": 2, "mode": "pick" }),
    )
    .await;
    let snap = t.snapshot(&sid).await;
    let gid = snap["snapshot"]["groups"]["groups"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        t,
        Method::PATCH,
        &s(&format!("/groups/{gid}")),
        json!({ "name": "Blue" }),
    )
    .await;
    ok(&ana, Method::POST, &s(&format!("/groups/{gid}/join")), json!({})).await;
    ok(
        t,
        Method::POST,
        &s("/groups/broadcast"),
        json!({ "text": "Five minutes" }),
    )
    .await;
    ok(t, Method::POST, &s("/groups/timer"), json!({ "extend_s": 60 })).await;

    // The quiz's timer closes it by itself.
    let sid2 = sid.clone();
    eventually("the timed quiz closes by itself", Duration::from_secs(15), || {
        let t = &class.trainer;
        let sid = sid2.clone();
        let quiz = quiz.clone();
        async move {
            let snap = t.snapshot(&sid).await;
            (snap["snapshot"]["polls"][&quiz]["state"] == "closed"
                && snap["snapshot"]["polls"][&quiz]["closes_at"].is_null())
            .then_some(())
        }
    })
    .await;
    ok(
        t,
        Method::POST,
        &format!("/sessions/{sid}/roster/{ana_id}"),
        json!({ "role": "observer" }),
    )
    .await;
    ok(t, Method::POST, &s("/pause"), json!({})).await;
    ok(t, Method::POST, &s("/resume"), json!({})).await;

    assert_replays(&state.live, &sid).await;
    let snapshot = state.store.live_snapshot(&sid, None).await.unwrap();
    assert!(
        snapshot.is_some_and(|s| s.seq > 0),
        "snapshots were written along the way"
    );
    // The newest two are kept, older ones deleted (in the background): the
    // log is the record.
    let store = state.store.clone();
    let sid3 = sid.clone();
    eventually("older snapshots deleted", Duration::from_secs(10), || {
        let store = store.clone();
        let sid = sid3.clone();
        async move {
            let mut kept = 0;
            let mut at_most = None;
            while let Some(s) = store.live_snapshot(&sid, at_most).await.unwrap() {
                kept += 1;
                at_most = Some(s.seq - 1);
            }
            (kept <= 2).then_some(())
        }
    })
    .await;

    // After a restart, the same state (the snapshot a screen loads too; the
    // embedded broker kept the channel, so the cursor stays where it was).
    let before = t.snapshot(&sid).await;
    let dir = server.stop().await;
    let (server, state) = server_with_live(dir).await;
    let mut t = class.trainer;
    t.base = format!("{}/classroom/api", server.url);
    let after = t.snapshot(&sid).await;
    let visible = |v: &Value| {
        let mut v = v["snapshot"].clone();
        // Who is here now is read again from presence.
        for k in ["here", "here_count"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    assert_eq!(
        visible(&after),
        visible(&before),
        "the state outlives the process"
    );
    assert_eq!(after["seq"], before["seq"], "no entry re-anchors the cursor");
    assert_eq!(after["cursor"], before["cursor"]);
    ok(&t, Method::POST, &format!("/sessions/{sid}/end"), json!({})).await;
    assert_replays(&state.live, &sid).await;
    server.stop().await;
}

/// Every event text any entry of `log` shows, as one string.
fn texts(log: &[Value]) -> String {
    log.iter().map(|e| e["events"].to_string()).collect()
}

/// The whole log as `b` may read it, page by page (`limit` per page).
async fn read_log(b: &Browser, sid: &str, limit: u64) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut after = 0;
    loop {
        let page = ok(
            b,
            Method::GET,
            &format!("/sessions/{sid}/log?after={after}&limit={limit}"),
            Value::Null,
        )
        .await;
        let entries = page["entries"].as_array().unwrap();
        for e in entries {
            assert_eq!(e["seq"], out.len() as u64 + 1, "numbers follow one another");
            out.push(e.clone());
        }
        after = page["next"].as_u64().unwrap();
        assert_eq!(after, out.len() as u64);
        if !page["more"].as_bool().unwrap() {
            return out;
        }
    }
}

#[tokio::test]
async fn the_log_shows_each_member_what_they_could_see_live() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let (ana, _) = class.another_student(&server, "Ana").await;
    let (outsider, _) = {
        let mut b = Browser::new(&server);
        let id = b.new_account("Olga").await;
        (b, id)
    };
    let (t, sam) = (&class.trainer, &class.student);
    let sid = class.session("Private things").await;
    let s = |p: &str| format!("/sessions/{sid}{p}");
    ok(t, Method::POST, &s("/start"), json!({})).await;
    // A question held back, never published: its text is in no event.
    ok(t, Method::PATCH, &s("/qa"), json!({ "moderation": true })).await;
    ok(
        sam,
        Method::POST,
        &s("/questions"),
        json!({ "text": "Held back forever" }),
    )
    .await;
    ok(t, Method::PATCH, &s("/qa"), json!({ "moderation": false })).await;
    // A private answer to Ana.
    let q = ok(&ana, Method::POST, &s("/questions"), json!({ "text": "Mine?" })).await;
    let q = q["question"]["id"].as_str().unwrap().to_owned();
    ok(
        t,
        Method::POST,
        &s(&format!("/questions/{q}/answer")),
        json!({ "mode": "private", "text": "Only for Ana" }),
    )
    .await;
    // A poll whose results staff see while the audience sees only a count.
    let p = ok(
        t,
        Method::POST,
        &s("/polls"),
        json!({ "kind": "word_cloud", "question": "Word?" }),
    )
    .await;
    let p = p["poll"]["id"].as_str().unwrap().to_owned();
    ok(t, Method::POST, &s(&format!("/polls/{p}/open")), json!({})).await;
    ok(
        sam,
        Method::POST,
        &s(&format!("/polls/{p}/answer")),
        json!({ "answer": "zebra" }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await; // the coalesced events

    let staff_log = read_log(t, &sid, 3).await;
    let sam_log = read_log(sam, &sid, 1000).await;
    let ana_log = read_log(&ana, &sid, 7).await;
    assert_eq!(
        staff_log.len(),
        sam_log.len(),
        "everyone pages through the same entries"
    );
    assert!(staff_log.len() >= 8, "{}", staff_log.len());
    for log in [&staff_log, &sam_log, &ana_log] {
        assert!(
            !texts(log).contains("Held back forever"),
            "a held-back text is in no event"
        );
    }
    assert!(texts(&staff_log).contains("Only for Ana") && texts(&ana_log).contains("Only for Ana"));
    assert!(
        !texts(&sam_log).contains("Only for Ana"),
        "another's private answer"
    );
    assert!(
        texts(&staff_log).contains("zebra"),
        "staff see results while hidden"
    );
    assert!(!texts(&sam_log).contains("zebra") && !texts(&ana_log).contains("zebra"));
    assert!(
        texts(&sam_log).contains("poll.tally"),
        "the audience sees the count"
    );

    // The session channel's offsets, as clients saw them, end at the snapshot's.
    let offsets: Vec<u64> = sam_log
        .iter()
        .flat_map(|e| e["events"].as_array().unwrap().clone())
        .filter(|ev| ev["to"] == "all")
        .map(|ev| ev["offset"].as_u64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
    let snap = sam.snapshot(&sid).await;
    assert_eq!(offsets.last().copied(), snap["offset"].as_u64());
    assert_eq!(snap["seq"].as_u64(), Some(staff_log.len() as u64));

    // Refusals.
    for query in ["after=abc", "limit=0", "limit=5000", "after=-1"] {
        let (status, v) = sam.get(&format!("/sessions/{sid}/log?{query}")).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("invalid_parameter")),
            "{query}: {v}"
        );
    }
    let (status, v) = outsider.get(&format!("/sessions/{sid}/log")).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    let (status, v) = sam.get("/sessions/s_0123456789abcdef/log").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("session_not_found")),
        "{v}"
    );
}

/// `Prefer: return=minimal` on a change answers no snapshot (and says so);
/// without it, or on a read, the snapshot is there.
#[tokio::test]
async fn a_change_may_answer_without_the_snapshot() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let t = &class.trainer;
    let sid = class.session("Small answers").await;
    let minimal = |method: Method, path: &str| {
        let mut req = t
            .http
            .request(method, format!("{}{path}", t.base))
            .header("prefer", "respond-async, return=minimal")
            .json(&json!({}));
        if let Some(c) = &t.csrf {
            req = req.header("x-csrf-token", c);
        }
        req
    };
    let res = minimal(Method::POST, &format!("/sessions/{sid}/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["preference-applied"], "return=minimal");
    let v: Value = res.json().await.unwrap();
    assert!(v.get("snapshot").is_none(), "{v}");
    assert_eq!(v["session"]["state"], "live");
    assert!(
        v["cursor"].as_str().is_some_and(|c| !c.is_empty()) && v["seq"].as_u64() == Some(1),
        "{v}"
    );

    let res = minimal(Method::GET, &format!("/sessions/{sid}"))
        .send()
        .await
        .unwrap();
    assert!(
        res.headers().get("preference-applied").is_none(),
        "a read ignores it"
    );
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["snapshot"]["state"], "live");

    let v = ok(t, Method::POST, &format!("/sessions/{sid}/pause"), json!({})).await;
    assert_eq!(
        v["snapshot"]["state"], "paused",
        "without the preference: the snapshot"
    );
}
