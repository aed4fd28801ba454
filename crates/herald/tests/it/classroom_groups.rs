//! Breakout groups over real HTTP and SSE: set up, split at random, move
//! people live, pick mode, the timer, broadcasts, end; a late snapshot equals
//! the state the events built; refusals.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::classroom::Browser;
use crate::classroom_live::{next_change, subscribe, Class};
use crate::support::*;

/// A live session with the trainer and four students: Sam (the class's), Ben,
/// Olga and Lea. Answers the students as `(browser, id)`.
async fn live_class(server: &TestServer) -> (Class, String, Vec<(Browser, String)>) {
    let class = Class::new(server).await;
    let sid = class.session("Breakouts").await;
    assert_eq!(class.trainer.act(&sid, "start").await.0, 200);
    let mut others = Vec::new();
    for name in ["Ben", "Olga", "Lea"] {
        others.push(class.another_student(server, name).await);
    }
    (class, sid, others)
}

/// An SSE stream for `b` on the session's channel, from their snapshot's cursor.
async fn watch(server: &TestServer, b: &Browser, sid: &str) -> Sse {
    let snap = b.snapshot(sid).await;
    let token = b.live_token(sid).await;
    subscribe(server, &token, snap["cursor"].as_str()).await
}

/// The next `groups` event's state (`data.groups`).
async fn next_groups(sse: &mut Sse) -> Value {
    let ev = next_change(sse).await;
    assert_eq!(ev.event, "groups", "{}", ev.data);
    let data = ev.json()["data"].clone();
    assert_eq!(data.as_object().unwrap().len(), 1, "only groups: {data}");
    data["groups"].clone()
}

async fn put_groups(b: &Browser, sid: &str, body: Value) -> (u16, Value) {
    b.call(Method::PUT, &format!("/sessions/{sid}/groups"), body)
        .await
}

async fn patch(b: &Browser, path: &str, body: Value) -> (u16, Value) {
    b.call(Method::PATCH, path, body).await
}

/// The group `user_id` is in (its index), asserting they are in one at most.
fn group_of(state: &Value, user_id: &str) -> Option<usize> {
    let found: Vec<usize> = groups(state)
        .iter()
        .enumerate()
        .filter(|(_, g)| {
            g["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["user_id"] == user_id)
        })
        .map(|(i, _)| i)
        .collect();
    assert!(found.len() <= 1, "{user_id} in two groups: {state}");
    found.first().copied()
}

fn groups(state: &Value) -> &Vec<Value> {
    state["groups"].as_array().unwrap()
}

fn gid(state: &Value, i: usize) -> String {
    state["groups"][i]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn split_move_live_and_a_late_snapshot_agrees() {
    let server = TestServer::start().await;
    let (class, sid, others) = live_class(&server).await;
    let (ben, _) = &others[0];
    let mut students: Vec<String> = others.iter().map(|(_, id)| id.clone()).collect();
    students.push(class.student_id.clone());
    let mut trainer_sse = watch(&server, &class.trainer, &sid).await;
    let mut ben_sse = watch(&server, ben, &sid).await;

    let snap = class.student.snapshot(&sid).await;
    assert_eq!(
        snap["snapshot"]["groups"],
        json!({"mode":"assigned","groups":[],"ends_at":null,"broadcasts":[]}),
        "no breakouts yet"
    );

    // Split into 3 groups: everyone placed exactly once, sizes within one.
    let (status, v) = class
        .trainer
        .post(&format!("/sessions/{sid}/groups/split"), json!({ "count": 3 }))
        .await;
    assert_eq!(status, 200, "{v}");
    let state = v["snapshot"]["groups"].clone();
    let names: Vec<&str> = groups(&state)
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Group 1", "Group 2", "Group 3"]);
    let sizes: Vec<usize> = groups(&state)
        .iter()
        .map(|g| g["members"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 4, "{state}");
    assert!(
        sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
        "{sizes:?}"
    );
    for id in &students {
        assert!(group_of(&state, id).is_some(), "{id} placed: {state}");
    }
    assert!(
        group_of(&state, &class.trainer_id).is_none(),
        "staff are not split"
    );
    for g in groups(&state) {
        assert!(g["id"].as_str().unwrap().starts_with("g_"));
        for m in g["members"].as_array().unwrap() {
            assert!(
                ["Sam", "Ben", "Olga", "Lea"].contains(&m["name"].as_str().unwrap()),
                "names from the roster: {m}"
            );
        }
    }
    assert_eq!(next_groups(&mut trainer_sse).await, state);
    assert_eq!(next_groups(&mut ben_sse).await, state);

    // Split again by size, with names: two groups of two.
    let (status, v) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/groups/split"),
            json!({ "size": 2, "names": ["Red", "Blue"] }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let state = v["snapshot"]["groups"].clone();
    assert_eq!(groups(&state).len(), 2);
    assert_eq!(
        (
            state["groups"][0]["name"].clone(),
            state["groups"][1]["name"].clone()
        ),
        (json!("Red"), json!("Blue"))
    );
    for g in groups(&state) {
        assert_eq!(g["members"].as_array().unwrap().len(), 2, "{state}");
    }
    assert_eq!(next_groups(&mut ben_sse).await, state);
    next_groups(&mut trainer_sse).await;

    // Move Sam live into the other group: out of the old one, in the new one.
    let from = group_of(&state, &class.student_id).unwrap();
    let to = 1 - from;
    let (status, v) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/groups/{}/members", gid(&state, to)),
            json!({ "user_id": class.student_id }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let moved = next_groups(&mut ben_sse).await;
    assert_eq!(group_of(&moved, &class.student_id), Some(to));
    assert_eq!(moved["groups"][from]["members"].as_array().unwrap().len(), 1);
    assert_eq!(moved["groups"][to]["members"].as_array().unwrap().len(), 3);
    assert_eq!(moved, v["snapshot"]["groups"]);
    next_groups(&mut trainer_sse).await;
    // Moving them where they are changes nothing: no event, the same cursor.
    let (status, again) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/groups/{}/members", gid(&state, to)),
            json!({ "user_id": class.student_id }),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["cursor"], v["cursor"]);

    // Take Ben out of his group; rename a group.
    let ben_id = &others[0].1;
    let ben_group = group_of(&moved, ben_id).unwrap();
    let (status, v) = class
        .trainer
        .delete(&format!(
            "/sessions/{sid}/groups/{}/members/{ben_id}",
            gid(&moved, ben_group)
        ))
        .await;
    assert_eq!(status, 200, "{v}");
    let out = next_groups(&mut ben_sse).await;
    assert_eq!(group_of(&out, ben_id), None, "Ben is in no group");
    let (status, v) = patch(
        &class.trainer,
        &format!("/sessions/{sid}/groups/{}", gid(&out, 0)),
        json!({ "name": "  Crimson  " }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let renamed = next_groups(&mut ben_sse).await;
    assert_eq!(renamed["groups"][0]["name"], "Crimson");
    assert_eq!(renamed["groups"][0]["id"], out["groups"][0]["id"], "same group");
    let r = patch(
        &class.trainer,
        &format!("/sessions/{sid}/groups/{}", gid(&out, 0)),
        json!({ "name": "blue" }),
    )
    .await;
    assert_refused(&r, 400, "invalid_groups");

    // A late joiner's snapshot equals the state the events built.
    let (late, _) = class.another_student(&server, "Nora").await;
    let snap = late.snapshot(&sid).await;
    assert_eq!(snap["snapshot"]["groups"], renamed);
    let staff_snap = class.trainer.snapshot(&sid).await;
    assert_eq!(staff_snap["snapshot"]["groups"], renamed, "staff see the same");
}

#[tokio::test]
async fn students_pick_their_group_only_in_pick_mode() {
    let server = TestServer::start().await;
    let (class, sid, others) = live_class(&server).await;
    let (ben, ben_id) = &others[0];
    let mut trainer_sse = watch(&server, &class.trainer, &sid).await;

    let (status, v) = put_groups(
        &class.trainer,
        &sid,
        json!({ "groups": [{ "name": "Theory", "members": [ben_id] }, { "name": "Practice" }] }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let state = v["snapshot"]["groups"].clone();
    assert_eq!(state["mode"], "assigned");
    assert_eq!(
        state["groups"][0]["members"],
        json!([{ "user_id": ben_id, "name": "Ben" }])
    );
    assert_eq!(next_groups(&mut trainer_sse).await, state);
    let (theory, practice) = (gid(&state, 0), gid(&state, 1));

    // Assigned mode: students cannot move themselves.
    let r = class
        .student
        .post(&format!("/sessions/{sid}/groups/{practice}/join"), json!({}))
        .await;
    assert_refused(&r, 409, "invalid_state");
    let r = ben
        .post(&format!("/sessions/{sid}/groups/leave"), json!({}))
        .await;
    assert_refused(&r, 409, "invalid_state");

    // Pick mode: join, switch, leave; every change is one event.
    let (status, v) = patch(
        &class.trainer,
        &format!("/sessions/{sid}/groups"),
        json!({ "mode": "pick" }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(next_groups(&mut trainer_sse).await["mode"], "pick");
    let (status, v) = class
        .student
        .post(&format!("/sessions/{sid}/groups/{practice}/join"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let s = next_groups(&mut trainer_sse).await;
    assert_eq!(group_of(&s, &class.student_id), Some(1));
    assert_eq!(
        s["groups"][1]["members"],
        json!([{ "user_id": class.student_id, "name": "Sam" }])
    );
    let (status, _) = ben
        .post(&format!("/sessions/{sid}/groups/{practice}/join"), json!({}))
        .await;
    assert_eq!(status, 200);
    let s = next_groups(&mut trainer_sse).await;
    assert_eq!(group_of(&s, ben_id), Some(1), "Ben switched");
    assert_eq!(s["groups"][0]["members"], json!([]));
    let (status, _) = ben
        .post(&format!("/sessions/{sid}/groups/leave"), json!({}))
        .await;
    assert_eq!(status, 200);
    let s = next_groups(&mut trainer_sse).await;
    assert_eq!(group_of(&s, ben_id), None);
    // Leaving again changes nothing.
    let (status, v) = ben
        .post(&format!("/sessions/{sid}/groups/leave"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["snapshot"]["groups"], s);

    // Staff do not join; they move people.
    let r = class
        .trainer
        .post(&format!("/sessions/{sid}/groups/{theory}/join"), json!({}))
        .await;
    assert_refused(&r, 403, "forbidden");
    let r = class
        .student
        .post(&format!("/sessions/{sid}/groups/g_0123/join"), json!({}))
        .await;
    assert_refused(&r, 404, "group_not_found");

    // While paused students cannot pick; staff still may change groups.
    assert_eq!(class.trainer.act(&sid, "pause").await.0, 200);
    let r = class
        .student
        .post(&format!("/sessions/{sid}/groups/{theory}/join"), json!({}))
        .await;
    assert_refused(&r, 409, "invalid_state");
    let (status, _) = patch(
        &class.trainer,
        &format!("/sessions/{sid}/groups"),
        json!({ "mode": "assigned" }),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_timer_extends_broadcasts_reach_everyone_and_breakouts_end() {
    let server = TestServer::start().await;
    let (class, sid, _others) = live_class(&server).await;
    let mut sam_sse = watch(&server, &class.student, &sid).await;

    // No breakouts: no timer, no broadcast.
    let r = class
        .trainer
        .post(
            &format!("/sessions/{sid}/groups/timer"),
            json!({ "extend_s": 60 }),
        )
        .await;
    assert_refused(&r, 409, "invalid_state");
    let r = class
        .trainer
        .post(
            &format!("/sessions/{sid}/groups/broadcast"),
            json!({ "text": "hi" }),
        )
        .await;
    assert_refused(&r, 409, "invalid_state");

    let before = now_ms();
    let (status, v) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/groups/split"),
            json!({ "count": 2, "duration_s": 600 }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let ends_at = v["snapshot"]["groups"]["ends_at"].as_i64().unwrap();
    assert!((before + 600_000..=now_ms() + 600_000).contains(&ends_at));
    next_groups(&mut sam_sse).await;

    let (status, v) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/groups/timer"),
            json!({ "extend_s": 60 }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["snapshot"]["groups"]["ends_at"], ends_at + 60_000);
    assert_eq!(next_groups(&mut sam_sse).await["ends_at"], ends_at + 60_000);

    // From an expired timer, the extension counts from now.
    let (status, v) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/groups/split"),
            json!({ "count": 2, "duration_s": 1 }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    next_groups(&mut sam_sse).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = now_ms();
    let (status, v) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/groups/timer"),
            json!({ "extend_s": 120 }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let ends_at = v["snapshot"]["groups"]["ends_at"].as_i64().unwrap();
    assert!(
        (before + 120_000..=now_ms() + 120_000).contains(&ends_at),
        "{ends_at}"
    );
    next_groups(&mut sam_sse).await;
    for bad in [
        json!({ "extend_s": 0 }),
        json!({ "extend_s": -5 }),
        json!({ "extend_s": 3601 }),
    ] {
        let r = class
            .trainer
            .post(&format!("/sessions/{sid}/groups/timer"), bad)
            .await;
        assert_refused(&r, 400, "invalid_groups");
    }

    // Broadcasts: everyone gets them; the newest five stay for late joiners.
    let (status, v) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/groups/broadcast"),
            json!({ "text": "  Two minutes left  " }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let s = next_groups(&mut sam_sse).await;
    let b = &s["broadcasts"][0];
    assert_eq!(
        (b["text"].clone(), b["by"].clone()),
        (json!("Two minutes left"), json!("Tess"))
    );
    assert!(b["id"].as_str().unwrap().starts_with("b_"));
    for i in 1..=5 {
        let (status, _) = class
            .trainer
            .post(
                &format!("/sessions/{sid}/groups/broadcast"),
                json!({ "text": format!("note {i}") }),
            )
            .await;
        assert_eq!(status, 200);
        next_groups(&mut sam_sse).await;
    }
    let snap = class.student.snapshot(&sid).await;
    let texts: Vec<&str> = snap["snapshot"]["groups"]["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["note 1", "note 2", "note 3", "note 4", "note 5"]);
    for text in ["", "   ", &"x".repeat(501)] {
        let r = class
            .trainer
            .post(
                &format!("/sessions/{sid}/groups/broadcast"),
                json!({ "text": text }),
            )
            .await;
        assert_refused(&r, 400, "invalid_groups");
    }

    // End: everyone back together; ending again changes nothing.
    let (status, v) = class.trainer.delete(&format!("/sessions/{sid}/groups")).await;
    assert_eq!(status, 200, "{v}");
    let ended = json!({"mode":"assigned","groups":[],"ends_at":null,"broadcasts":[]});
    assert_eq!(v["snapshot"]["groups"], ended);
    assert_eq!(next_groups(&mut sam_sse).await, ended);
    let (status, again) = class.trainer.delete(&format!("/sessions/{sid}/groups")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["cursor"], v["cursor"]);
}

#[tokio::test]
async fn only_students_here_now_can_be_split() {
    let server = TestServer::start().await;
    let (class, sid, _others) = live_class(&server).await;
    // Only Sam has the session open.
    let token = class.student.live_token(&sid).await;
    let _sam_sse = subscribe(&server, &token, None).await;
    let path = format!(
        "/v1/apps/classroom/channels/{}/presence",
        enc(&format!("class:{sid}"))
    );
    eventually("Sam is present", WAIT, || async {
        let (_, v) = server.get_within(&path, Some(&server.admin_key)).await;
        (v["members"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    let r = class
        .trainer
        .post(
            &format!("/sessions/{sid}/groups/split"),
            json!({ "count": 2, "online_only": true }),
        )
        .await;
    assert_refused(&r, 400, "invalid_groups");
    let (status, v) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/groups/split"),
            json!({ "count": 1, "online_only": true, "mode": "pick" }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let state = &v["snapshot"]["groups"];
    assert_eq!(state["mode"], "pick");
    assert_eq!(
        state["groups"][0]["members"],
        json!([{ "user_id": class.student_id, "name": "Sam" }])
    );
}

#[tokio::test]
async fn students_cannot_run_breakouts_and_bad_inputs_are_refused() {
    let server = TestServer::start().await;
    let (class, sid, others) = live_class(&server).await;
    let (status, v) = put_groups(
        &class.trainer,
        &sid,
        json!({ "groups": [{ "name": "A" }, { "name": "B" }], "mode": "pick" }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let a = gid(&v["snapshot"]["groups"], 0);
    let sam = &class.student_id;

    // Every staff route, forged by a student.
    let g = format!("/sessions/{sid}/groups");
    let forged: Vec<(Method, String, Value)> = vec![
        (Method::PUT, g.clone(), json!({ "groups": [{ "name": "Mine" }] })),
        (Method::POST, format!("{g}/split"), json!({ "count": 2 })),
        (Method::PATCH, g.clone(), json!({ "mode": "assigned" })),
        (Method::DELETE, g.clone(), json!({})),
        (Method::PATCH, format!("{g}/{a}"), json!({ "name": "Mine" })),
        (
            Method::POST,
            format!("{g}/{a}/members"),
            json!({ "user_id": sam }),
        ),
        (Method::DELETE, format!("{g}/{a}/members/{sam}"), json!({})),
        (Method::POST, format!("{g}/timer"), json!({ "extend_s": 60 })),
        (
            Method::POST,
            format!("{g}/broadcast"),
            json!({ "text": "hi all" }),
        ),
    ];
    for (method, path, body) in &forged {
        let r = class.student.call(method.clone(), path, body.clone()).await;
        assert_refused(&r, 403, "forbidden");
    }
    let snap = class.student.snapshot(&sid).await;
    assert_eq!(
        snap["snapshot"]["groups"], v["snapshot"]["groups"],
        "nothing changed"
    );

    // Bad set-ups.
    let ben = &others[0].1;
    for body in [
        json!({ "groups": [] }),
        json!({ "groups": [{ "name": "" }] }),
        json!({ "groups": [{ "name": "   " }] }),
        json!({ "groups": [{ "name": "x".repeat(61) }] }),
        json!({ "groups": [{ "name": "Team" }, { "name": "TEAM" }] }),
        json!({ "groups": [{ "name": "A", "members": ["u_nobody"] }] }),
        json!({ "groups": [{ "name": "A", "members": [class.trainer_id] }] }),
        json!({ "groups": [{ "name": "A", "members": [ben] }, { "name": "B", "members": [ben] }] }),
        json!({ "groups": [{ "name": "A", "members": [ben, ben] }] }),
        json!({ "groups": [{ "name": "A" }], "mode": "random" }),
        json!({ "groups": [{ "name": "A" }], "duration_s": 0 }),
        json!({ "groups": (0..51).map(|i| json!({ "name": format!("G{i}") })).collect::<Vec<_>>() }),
    ] {
        let r = put_groups(&class.trainer, &sid, body.clone()).await;
        assert_refused(&r, 400, "invalid_groups");
    }
    let r = put_groups(
        &class.trainer,
        &sid,
        json!({ "groups": [{ "name": "A" }], "extra": 1 }),
    )
    .await;
    assert_refused(&r, 400, "invalid_json");

    // Bad splits: 4 students.
    for body in [
        json!({ "count": 0 }),
        json!({ "count": 5 }),
        json!({ "count": -1 }),
        json!({ "size": 0 }),
        json!({ "size": 5 }),
        json!({}),
        json!({ "count": 2, "size": 2 }),
        json!({ "count": 2, "names": ["Only one"] }),
        json!({ "count": 2, "names": ["Same", "same"] }),
    ] {
        let r = class.trainer.post(&format!("{g}/split"), body.clone()).await;
        assert_refused(&r, 400, "invalid_groups");
    }

    // Unknown groups and people.
    let r = class
        .trainer
        .post(&format!("{g}/g_0123/members"), json!({ "user_id": sam }))
        .await;
    assert_refused(&r, 404, "group_not_found");
    let r = class.trainer.delete(&format!("{g}/g_0123/members/{sam}")).await;
    assert_refused(&r, 404, "group_not_found");
    let r = patch(&class.trainer, &format!("{g}/g_0123"), json!({ "name": "X" })).await;
    assert_refused(&r, 404, "group_not_found");
    let r = class
        .trainer
        .post(&format!("{g}/{a}/members"), json!({ "user_id": "u_nobody" }))
        .await;
    assert_refused(&r, 400, "invalid_groups");
    let r = patch(&class.trainer, &format!("{g}/{a}"), json!({ "name": "" })).await;
    assert_refused(&r, 400, "invalid_groups");
    let r = patch(&class.trainer, &g, json!({ "mode": "chaos" })).await;
    assert_refused(&r, 400, "invalid_groups");

    // Once the session has ended, nothing changes any more.
    assert_eq!(class.trainer.act(&sid, "end").await.0, 200);
    for (method, path, body) in &forged {
        let r = class.trainer.call(method.clone(), path, body.clone()).await;
        assert_refused(&r, 409, "invalid_state");
    }
    let r = class.student.post(&format!("{g}/{a}/join"), json!({})).await;
    assert_refused(&r, 409, "invalid_state");
    let r = class.student.post(&format!("{g}/leave"), json!({})).await;
    assert_refused(&r, 409, "invalid_state");
}

#[tokio::test]
async fn breakouts_can_be_prepared_before_the_session_starts() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let sid = class.session("Later").await;
    let (status, v) = put_groups(
        &class.trainer,
        &sid,
        json!({ "groups": [{ "name": "Early birds", "members": [class.student_id] }], "mode": "pick" }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let a = gid(&v["snapshot"]["groups"], 0);
    // Students pick only while live.
    let r = class
        .student
        .post(&format!("/sessions/{sid}/groups/leave"), json!({}))
        .await;
    assert_refused(&r, 409, "invalid_state");
    assert_eq!(class.trainer.act(&sid, "start").await.0, 200);
    let snap = class.student.snapshot(&sid).await;
    assert_eq!(snap["snapshot"]["groups"]["groups"][0]["name"], "Early birds");
    let (status, _) = class
        .student
        .post(&format!("/sessions/{sid}/groups/{a}/join"), json!({}))
        .await;
    assert_eq!(status, 200, "already there: no change");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
