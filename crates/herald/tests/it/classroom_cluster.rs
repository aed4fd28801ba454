//! The classroom on two nodes sharing Redis and PostgreSQL, behind an imagined
//! load balancer: every change of a live session, made on either node, is in
//! the document and the channel of both, once, in one order.
//!
//! These tests need Redis (127.0.0.1:6379) and PostgreSQL (`HERALD_TEST_POSTGRES_URL`,
//! or the `test` database on 127.0.0.1:5432), like the other cluster tests.

use std::time::Duration;

use serde_json::{json, Value};

use crate::classroom::Browser;
use crate::classroom_live::{subscribe, Class};
use crate::classroom_qa::votes_in;
use crate::support::*;

const REDIS: &str = "redis://127.0.0.1:6379";

/// The PostgreSQL URL (`HERALD_TEST_POSTGRES_URL`, or the machine's `test`
/// database, like the other cluster tests); fails with how to start a service
/// that is down: the cluster tests never skip.
fn services() -> Option<String> {
    for (port, start) in [
        (
            6379,
            "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no",
        ),
        (
            5432,
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
        ),
    ] {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            panic!("nothing listens on 127.0.0.1:{port}; start it with: {start}");
        }
    }
    Some(
        std::env::var("HERALD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
    )
}

/// A node of the cluster, in this process.
async fn node(url: &str) -> TestServer {
    let url = url.to_owned();
    TestServer::start_with(move |c| {
        c.broker = REDIS.to_owned();
        c.database = url;
    })
    .await
}

/// Points `b` at `server` (the same cookies: a load balancer's choice).
fn on(b: &mut Browser, server: &TestServer) {
    b.base = format!("{}/classroom/api", server.url);
}

/// The snapshot without what each node keeps for itself (who is here, activity).
fn shared(mut v: Value) -> Value {
    if let Some(snap) = v["snapshot"].as_object_mut() {
        for key in ["here", "here_count", "activity"] {
            snap.remove(key);
        }
    }
    v
}

/// The trainer's snapshot from node `a` and from node `b` once they are the
/// same (coalesced changes are out, no who-is-here event in between).
async fn same_on_both(trainer: &mut Browser, a: &TestServer, b: &TestServer, sid: &str) -> Value {
    let mut last = (Value::Null, Value::Null);
    for _ in 0..100 {
        on(trainer, a);
        let from_a = shared(trainer.snapshot(sid).await);
        on(trainer, b);
        let from_b = shared(trainer.snapshot(sid).await);
        if from_a == from_b {
            on(trainer, a);
            return from_a;
        }
        last = (from_a, from_b);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the snapshots of the two nodes differ:\nA: {}\nB: {}",
        last.0, last.1
    );
}

/// The events of the session's channel after `cursor`, on `server`, up to
/// (and with) the one whose id is `until`; asserts offsets follow one another.
async fn events_until(server: &TestServer, token: &Value, cursor: &str, until: &str) -> Vec<SseEvent> {
    let mut sse = subscribe(server, token, Some(cursor)).await;
    let mut out: Vec<SseEvent> = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), sse.next_event())
            .await
            .unwrap_or_else(|_| panic!("no event with id {until} after {} events", out.len()));
        let done = ev.id.as_deref() == Some(until);
        out.push(ev);
        if done {
            break;
        }
    }
    let offsets: Vec<u64> = out.iter().map(|e| e.json()["offset"].as_u64().unwrap()).collect();
    for w in offsets.windows(2) {
        assert_eq!(w[1], w[0] + 1, "one channel, one order, no gap: {offsets:?}");
    }
    out
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| h["user_id"].as_str().unwrap().to_owned())
        .collect()
}

/// A trainer on node A, students on node B (and A): a hand raised on B, a
/// question asked on A, a vote on B, a poll answered on both. Both nodes then
/// hand out the same snapshot, with every change, and the channel has each
/// change once.
#[tokio::test]
async fn changes_on_two_nodes_make_one_session() {
    let Some(url) = services() else { return };
    let a = node(&url).await;
    let b = node(&url).await;
    let mut class = Class::new(&a).await;
    let (mut ana, ana_id) = class.another_student(&a, "Ana").await;
    on(&mut ana, &a);
    on(&mut class.student, &b);
    let sid = class.session("Two nodes").await;
    assert_eq!(class.trainer.act(&sid, "start").await.0, 200);
    let first = class.trainer.snapshot(&sid).await;
    let cursor0 = first["cursor"].as_str().unwrap().to_owned();

    // A hand raised on B: A's next snapshot has it (A had the session cached).
    let (status, v) = class
        .student
        .post(&format!("/sessions/{sid}/hand"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let on_a = class.trainer.snapshot(&sid).await;
    assert_eq!(ids(&on_a["snapshot"]["hands"]), [class.student_id.clone()]);
    assert_eq!(on_a["snapshot"]["state"], "live");

    // A question asked on A, upvoted on B.
    let (status, v) = ana
        .post(
            &format!("/sessions/{sid}/questions"),
            json!({ "text": "Why two nodes?" }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let qid = v["question"]["id"].as_str().unwrap().to_owned();
    let (status, v) = class
        .student
        .post(&format!("/sessions/{sid}/questions/{qid}/vote"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["question"]["votes"], 1, "B sees the question asked on A: {v}");

    // A poll made and opened on A, answered on B and on A.
    let (status, v) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/polls"),
            json!({ "kind": "single", "question": "Where?", "options": ["A", "B", "C"] }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let pid = v["poll"]["id"].as_str().unwrap().to_owned();
    let (status, v) = class
        .trainer
        .post(&format!("/sessions/{sid}/polls/{pid}/open"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    for (who, answer) in [(&class.student, 0), (&ana, 2)] {
        let (status, v) = who
            .post(
                &format!("/sessions/{sid}/polls/{pid}/answer"),
                json!({ "answer": answer }),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
    // The trainer raises nothing; Ana's hand on A joins the queue after Sam's.
    let (status, _) = ana.post(&format!("/sessions/{sid}/hand"), json!({})).await;
    assert_eq!(status, 200);

    // Asks, votes and poll answers are coalesced: let their events go out
    // (a quarter second each) before the snapshot whose cursor must cover them.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let snap = same_on_both(&mut class.trainer, &a, &b, &sid).await;
    let s = &snap["snapshot"];
    assert_eq!(
        ids(&s["hands"]),
        [class.student_id.clone(), ana_id.clone()],
        "{snap}"
    );
    assert_eq!(s["questions"][&qid]["text"], "Why two nodes?", "{snap}");
    assert_eq!(s["questions"][&qid]["votes"], 1, "{snap}");
    assert_eq!(s["polls"][&pid]["answers"], 2, "{snap}");
    assert_eq!(
        s["polls"][&pid]["results"],
        json!({ "counts": [1, 0, 1] }),
        "{snap}"
    );

    // The channel, read on B: each change once, in one order, the last one
    // being the snapshot's cursor.
    on(&mut class.trainer, &b);
    let token = class.trainer.live_token(&sid).await;
    let cursor = snap["cursor"].as_str().unwrap();
    let events = events_until(&b, &token, &cursor0, cursor).await;
    let names: Vec<&str> = events
        .iter()
        .map(|e| e.event.as_str())
        .filter(|e| !matches!(*e, "here" | "here.count" | "presence" | "activity"))
        .collect();
    assert_eq!(names.iter().filter(|e| **e == "hands").count(), 2, "{names:?}");
    assert!(names.contains(&"questions"), "{names:?}");
    let last_hands = events.iter().rev().find(|e| e.event == "hands").unwrap();
    assert_eq!(last_hands.json()["data"]["hands"], s["hands"]);
    a.stop().await;
    b.stop().await;
}

/// 20 students, half on each node, raise their hands and upvote one question
/// all at once: every hand and every vote is in the document of both nodes,
/// and each hand is one event of the channel.
#[tokio::test]
async fn concurrent_changes_on_two_nodes_are_all_kept() {
    let Some(url) = services() else { return };
    let a = node(&url).await;
    let b = node(&url).await;
    let mut class = Class::new(&a).await;
    let sid = class.session("Busy").await;
    assert_eq!(class.trainer.act(&sid, "start").await.0, 200);
    let (status, v) = class
        .student
        .post(
            &format!("/sessions/{sid}/questions"),
            json!({ "text": "Vote for me" }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let qid = v["question"]["id"].as_str().unwrap().to_owned();

    let mut students = Vec::new();
    for i in 0..20 {
        let (mut s, id) = class.another_student(&a, &format!("S{i}")).await;
        if i % 2 == 1 {
            on(&mut s, &b);
        }
        students.push((s, id));
    }
    let before = class.trainer.snapshot(&sid).await;
    let cursor0 = before["cursor"].as_str().unwrap().to_owned();

    let hand = format!("/sessions/{sid}/hand");
    let vote = format!("/sessions/{sid}/questions/{qid}/vote");
    let raised = futures_util::future::join_all(students.iter().map(|(s, _)| s.post(&hand, json!({}))));
    let voted = futures_util::future::join_all(students.iter().map(|(s, _)| s.post(&vote, json!({}))));
    let (raised, voted) = tokio::join!(raised, voted);
    for (status, v) in raised.iter().chain(voted.iter()) {
        assert_eq!(*status, 200, "{v}");
    }

    let snap = same_on_both(&mut class.trainer, &a, &b, &sid).await;
    let s = &snap["snapshot"];
    let mut hands = ids(&s["hands"]);
    hands.sort();
    let mut expected: Vec<String> = students.iter().map(|(_, id)| id.clone()).collect();
    expected.sort();
    assert_eq!(hands, expected, "every hand, once: {snap}");
    assert_eq!(s["questions"][&qid]["votes"], 20, "every vote: {snap}");

    let token = class.trainer.live_token(&sid).await;
    let cursor = snap["cursor"].as_str().unwrap();
    let events = events_until(&a, &token, &cursor0, cursor).await;
    let hand_events: Vec<&SseEvent> = events.iter().filter(|e| e.event == "hands").collect();
    assert_eq!(hand_events.len(), 20, "one event per hand");
    for (n, e) in hand_events.iter().enumerate() {
        assert_eq!(
            e.json()["data"]["hands"].as_array().unwrap().len(),
            n + 1,
            "each event adds one hand to the one before"
        );
    }
    assert_eq!(hand_events[19].json()["data"]["hands"], s["hands"]);
    // The votes' event is coalesced: at or after the snapshot, with all 20.
    let mut sse = subscribe(&a, &token, Some(&cursor0)).await;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), sse.next_event())
            .await
            .expect("the votes' coalesced event");
        if ev.event == "questions" && votes_in(&ev.json(), &qid) == 20 {
            break;
        }
    }
    // A node keeps the lease only while its own changes wait: once they are
    // done, changes on either node go through at once (not after the lease
    // timeout), several times over.
    for round in 0..3 {
        let burst = futures_util::future::join_all(students.iter().map(|(s, _)| s.post(&hand, json!({}))));
        let answers = tokio::time::timeout(Duration::from_secs(10), burst)
            .await
            .expect("a burst of changes on both nodes is not held up");
        assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
        for (i, (s, _)) in students.iter().take(2).enumerate() {
            let (status, v) = tokio::time::timeout(
                Duration::from_secs(5),
                s.post(
                    &format!("/sessions/{sid}/questions"),
                    json!({ "text": format!("After burst {round}, node {i}") }),
                ),
            )
            .await
            .expect("a change after a burst does not wait for a kept lease");
            assert_eq!(status, 201, "{v}");
        }
    }
    let snap = same_on_both(&mut class.trainer, &a, &b, &sid).await;
    let asked = snap["snapshot"]["questions"].as_object().map_or(0, |q| q.len());
    assert_eq!(
        asked, 7,
        "the first question and the six asked after the bursts: {snap}"
    );
    a.stop().await;
    b.stop().await;
}
