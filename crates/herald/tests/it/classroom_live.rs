//! Live sessions over real HTTP and SSE: the snapshot + cursor model, state
//! transitions, raised hands, promotion, refusals, a restart, presence.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::classroom::{code, Browser};
use crate::support::*;

/// A course with a trainer and a student in it, on `server`.
pub(crate) struct Class {
    pub(crate) trainer: Browser,
    pub(crate) trainer_id: String,
    pub(crate) student: Browser,
    pub(crate) student_id: String,
    pub(crate) course_id: String,
    pub(crate) join_code: String,
}

impl Class {
    pub(crate) async fn new(server: &TestServer) -> Class {
        let mut trainer = Browser::new(server);
        let trainer_id = trainer.new_account("Tess").await;
        let (status, v) = trainer.post("/courses", json!({ "title": "Physics" })).await;
        assert_eq!(status, 201, "{v}");
        let course_id = v["course"]["id"].as_str().unwrap().to_owned();
        let join_code = v["course"]["join_code"].as_str().unwrap().to_owned();
        let mut student = Browser::new(server);
        let student_id = student.new_account("Sam").await;
        join(&student, &join_code).await;
        Class {
            trainer,
            trainer_id,
            student,
            student_id,
            course_id,
            join_code,
        }
    }

    /// Creates a session as the trainer; returns its id.
    pub(crate) async fn session(&self, title: &str) -> String {
        let (status, v) = self
            .trainer
            .post(
                &format!("/courses/{}/sessions", self.course_id),
                json!({ "title": title }),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["session"]["state"], "scheduled");
        v["session"]["id"].as_str().unwrap().to_owned()
    }

    /// Another member of the course, as a student.
    pub(crate) async fn another_student(&self, server: &TestServer, name: &str) -> (Browser, String) {
        let mut b = Browser::new(server);
        let id = b.new_account(name).await;
        join(&b, &self.join_code).await;
        (b, id)
    }
}

async fn join(b: &Browser, join_code: &str) {
    let (status, v) = b.post("/courses/join", json!({ "code": join_code })).await;
    assert_eq!(status, 200, "{v}");
}

impl Browser {
    pub(crate) async fn act(&self, sid: &str, action: &str) -> (u16, Value) {
        self.post(&format!("/sessions/{sid}/{action}"), json!({})).await
    }

    pub(crate) async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, json!({})).await
    }

    /// `GET sessions/{sid}`, asserted 200.
    pub(crate) async fn snapshot(&self, sid: &str) -> Value {
        let (status, v) = self.get(&format!("/sessions/{sid}")).await;
        assert_eq!(status, 200, "{v}");
        v
    }

    /// `GET sessions/{sid}/token`, asserted 200.
    pub(crate) async fn live_token(&self, sid: &str) -> Value {
        let (status, v) = self.get(&format!("/sessions/{sid}/token")).await;
        assert_eq!(status, 200, "{v}");
        v
    }
}

/// An SSE stream on the session's channel with a token from `token`, from `cursor`.
pub(crate) async fn subscribe(server: &TestServer, token: &Value, cursor: Option<&str>) -> Sse {
    let mut url = format!(
        "{}/v1/apps/classroom/events?channel={}&token={}",
        server.url,
        enc(token["channel"].as_str().unwrap()),
        token["token"].as_str().unwrap()
    );
    if let Some(c) = cursor {
        url.push_str(&format!("&cursor={}", enc(c)));
    }
    let sse = Sse::connect(&url, None).await;
    assert_eq!(sse.status, 200, "SSE on the session's channel");
    sse
}

/// Who-is-here events: they come on their own, once a second at most, as
/// people connect and leave (crate `here`).
pub(crate) fn is_presence(event: &str) -> bool {
    matches!(event, "presence" | "here" | "here.count")
}

/// The next event that is not about who is here.
pub(crate) async fn next_change(sse: &mut Sse) -> SseEvent {
    loop {
        let ev = sse.next_event().await;
        if !is_presence(&ev.event) {
            return ev;
        }
    }
}

/// The offset a single-channel cursor names (decoded for the test only: clients
/// treat cursors as opaque).
fn cursor_offset(cursor: &str) -> u64 {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    raw.rsplit('|').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_late_joiner_loads_the_snapshot_and_gets_the_next_change_only() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let sid = class.session("Week 1").await;

    let (status, v) = class
        .student
        .get(&format!("/courses/{}/sessions", class.course_id))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["sessions"][0]["id"], sid.as_str());
    assert_eq!(v["sessions"][0]["channel"], format!("class:{sid}"));

    let (status, v) = class.trainer.act(&sid, "start").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["snapshot"]["state"], "live");
    assert!(v["snapshot"]["started_at"].as_i64().unwrap() > 0);

    let (status, v) = class
        .student
        .post(&format!("/sessions/{sid}/hand"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let hands = v["snapshot"]["hands"].clone();
    assert_eq!(hands.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(hands[0]["user_id"], class.student_id.as_str());
    assert_eq!(hands[0]["name"], "Sam");
    // Raising again changes nothing (no new event: the cursor stays).
    let (status, again) = class
        .student
        .post(&format!("/sessions/{sid}/hand"), json!({}))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["snapshot"]["hands"], hands);
    assert_eq!(again["cursor"], v["cursor"]);

    // A second student raises later: the queue is ordered by time of raise.
    let (other, other_id) = class.another_student(&server, "Olga").await;
    let (status, _) = other.post(&format!("/sessions/{sid}/hand"), json!({})).await;
    assert_eq!(status, 200);

    // The late joiner: one round trip gives state, hands and the cursor.
    let (late, _) = class.another_student(&server, "Lea").await;
    let snap = late.snapshot(&sid).await;
    assert_eq!(snap["role"], "student");
    assert_eq!(snap["session"]["id"], sid.as_str());
    assert_eq!(snap["snapshot"]["state"], "live");
    let queue: Vec<&str> = snap["snapshot"]["hands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(queue, [class.student_id.as_str(), other_id.as_str()]);
    let cursor = snap["cursor"].as_str().unwrap().to_owned();
    // start, two raises: three events on the channel.
    assert_eq!(cursor_offset(&cursor), 3);

    let token = late.live_token(&sid).await;
    assert_eq!(token["app"], "classroom");
    assert_eq!(token["channel"], format!("class:{sid}"));
    let mut sse = subscribe(&server, &token, Some(&cursor)).await;

    // The trainer lowers the first hand: the late joiner gets exactly that.
    let (status, v) = class
        .trainer
        .delete(&format!("/sessions/{sid}/hands/{}", class.student_id))
        .await;
    assert_eq!(status, 200, "{v}");
    let ev = next_change(&mut sse).await;
    assert_eq!(ev.event, "hands", "{ev:?}");
    let env = ev.json();
    assert_eq!(env["offset"], 4, "the next change, nothing before it: {env}");
    let left: Vec<&str> = env["data"]["hands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(left, [other_id.as_str()], "the whole new queue: {env}");
    assert_eq!(
        ev.id.as_deref(),
        v["cursor"].as_str(),
        "the event's cursor is the new snapshot's"
    );
    sse.assert_quiet_but_presence(Duration::from_millis(300)).await;

    // Olga lowers her own hand; then the trainer lowers all (nothing left: no event).
    let (status, _) = other.delete(&format!("/sessions/{sid}/hand")).await;
    assert_eq!(status, 200);
    let ev = next_change(&mut sse).await;
    assert_eq!(
        (ev.event.as_str(), ev.json()["data"].clone()),
        ("hands", json!({ "hands": [] }))
    );
    let (status, v) = class.trainer.delete(&format!("/sessions/{sid}/hands")).await;
    assert_eq!(status, 200, "{v}");
    sse.assert_quiet_but_presence(Duration::from_millis(300)).await;

    // Lower all with hands up: one event with the empty queue.
    for b in [&class.student, &other] {
        assert_eq!(b.post(&format!("/sessions/{sid}/hand"), json!({})).await.0, 200);
    }
    assert_eq!(
        next_change(&mut sse).await.json()["data"]["hands"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        next_change(&mut sse).await.json()["data"]["hands"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (status, _) = class.trainer.delete(&format!("/sessions/{sid}/hands")).await;
    assert_eq!(status, 200);
    let ev = next_change(&mut sse).await;
    assert_eq!(ev.json()["data"], json!({ "hands": [] }));
}

#[tokio::test]
async fn states_move_forward_and_refuse_what_does_not_fit() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let sid = class.session("Week 2").await;
    let token = class.student.live_token(&sid).await;
    let snap = class.student.snapshot(&sid).await;
    assert_eq!(snap["snapshot"]["state"], "scheduled");
    let mut sse = subscribe(&server, &token, snap["cursor"].as_str()).await;

    for action in ["pause", "resume"] {
        assert_refused(&class.trainer.act(&sid, action).await, 409, "invalid_state");
    }
    assert_refused(
        &class
            .student
            .post(&format!("/sessions/{sid}/hand"), json!({}))
            .await,
        409,
        "invalid_state",
    );
    let expect_state = |ev: SseEvent, state: &str| {
        assert_eq!(ev.event, "session.state", "{ev:?}");
        assert_eq!(ev.json()["data"]["state"], state, "{ev:?}");
    };

    assert_eq!(class.trainer.act(&sid, "start").await.0, 200);
    expect_state(next_change(&mut sse).await, "live");
    assert_refused(&class.trainer.act(&sid, "start").await, 409, "invalid_state");
    assert_refused(&class.trainer.act(&sid, "resume").await, 409, "invalid_state");

    assert_eq!(class.trainer.act(&sid, "pause").await.0, 200);
    expect_state(next_change(&mut sse).await, "paused");
    assert_refused(
        &class
            .student
            .post(&format!("/sessions/{sid}/hand"), json!({}))
            .await,
        409,
        "invalid_state",
    );
    assert_refused(&class.trainer.act(&sid, "pause").await, 409, "invalid_state");

    assert_eq!(class.trainer.act(&sid, "resume").await.0, 200);
    expect_state(next_change(&mut sse).await, "live");

    let (status, v) = class.trainer.act(&sid, "end").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["session"]["state"], "ended");
    assert!(v["snapshot"]["ended_at"].as_i64().unwrap() >= v["snapshot"]["started_at"].as_i64().unwrap());
    let ev = next_change(&mut sse).await;
    expect_state(ev.clone(), "ended");
    assert!(ev.json()["data"]["ended_at"].as_i64().is_some());

    // Ended is final.
    for action in ["start", "pause", "resume", "end"] {
        assert_refused(&class.trainer.act(&sid, action).await, 409, "invalid_state");
    }
    assert_refused(
        &class
            .student
            .post(&format!("/sessions/{sid}/hand"), json!({}))
            .await,
        409,
        "invalid_state",
    );
    assert_refused(
        &class
            .trainer
            .post(
                &format!("/sessions/{sid}/roster/{}", class.student_id),
                json!({ "role": "observer" }),
            )
            .await,
        409,
        "invalid_state",
    );
    sse.assert_quiet_but_presence(Duration::from_millis(300)).await;
    // Still readable.
    assert_eq!(class.student.snapshot(&sid).await["snapshot"]["state"], "ended");

    // A scheduled session may be ended without starting.
    let other = class.session("Cancelled").await;
    assert_eq!(class.trainer.act(&other, "end").await.0, 200);
    let (_, list) = class
        .trainer
        .get(&format!("/courses/{}/sessions", class.course_id))
        .await;
    let states: Vec<(&str, &str)> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["title"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("Cancelled", "ended"), ("Week 2", "ended")],
        "newest first"
    );
}

#[tokio::test]
async fn forged_and_foreign_requests_are_refused() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let sid = class.session("Week 3").await;
    assert_eq!(class.trainer.act(&sid, "start").await.0, 200);
    let (olga, olga_id) = class.another_student(&server, "Olga").await;
    assert_eq!(
        olga.post(&format!("/sessions/{sid}/hand"), json!({})).await.0,
        200
    );
    let before = class.trainer.snapshot(&sid).await;

    // A student forging staff actions.
    let s = &class.student;
    assert_refused(
        &s.post(
            &format!("/courses/{}/sessions", class.course_id),
            json!({ "title": "Mine" }),
        )
        .await,
        403,
        "forbidden",
    );
    for action in ["start", "pause", "resume", "end"] {
        assert_refused(&s.act(&sid, action).await, 403, "forbidden");
    }
    assert_refused(
        &s.delete(&format!("/sessions/{sid}/hands/{olga_id}")).await,
        403,
        "forbidden",
    );
    assert_refused(
        &s.delete(&format!("/sessions/{sid}/hands")).await,
        403,
        "forbidden",
    );
    assert_refused(
        &s.post(
            &format!("/sessions/{sid}/roster/{}", class.student_id),
            json!({ "role": "trainer" }),
        )
        .await,
        403,
        "forbidden",
    );
    // Lowering your own hand does not lower anyone else's.
    assert_eq!(s.delete(&format!("/sessions/{sid}/hand")).await.0, 200);
    // Without the CSRF header, nothing happens either.
    let mut no_csrf = Browser::new(&server);
    no_csrf.http = s.http.clone();
    assert_refused(&no_csrf.act(&sid, "end").await, 403, "csrf_failed");
    // Trainers do not raise hands.
    assert_refused(
        &class
            .trainer
            .post(&format!("/sessions/{sid}/hand"), json!({}))
            .await,
        403,
        "forbidden",
    );
    assert_eq!(
        class.trainer.snapshot(&sid).await["snapshot"],
        before["snapshot"],
        "nothing changed"
    );
    assert_eq!(class.trainer.snapshot(&sid).await["cursor"], before["cursor"]);

    // Someone who is not in the course.
    let mut stranger = Browser::new(&server);
    stranger.new_account("Stan").await;
    assert_refused(&stranger.get(&format!("/sessions/{sid}")).await, 403, "forbidden");
    assert_refused(
        &stranger.get(&format!("/sessions/{sid}/token")).await,
        403,
        "forbidden",
    );
    assert_refused(
        &stranger.post(&format!("/sessions/{sid}/hand"), json!({})).await,
        403,
        "forbidden",
    );
    assert_refused(
        &stranger
            .get(&format!("/courses/{}/sessions", class.course_id))
            .await,
        403,
        "forbidden",
    );
    // Not signed in at all.
    let anonymous = Browser::new(&server);
    assert_refused(
        &anonymous.get(&format!("/sessions/{sid}")).await,
        401,
        "unauthorized",
    );
    // Unknown sessions, and ids no session can have.
    for bad in ["s_0000", "nope", "s_a%23b"] {
        assert_refused(
            &class.trainer.get(&format!("/sessions/{bad}")).await,
            404,
            "session_not_found",
        );
        assert_refused(&class.trainer.act(bad, "start").await, 404, "session_not_found");
    }
    // Bad input.
    assert_refused(
        &class
            .trainer
            .post(
                &format!("/courses/{}/sessions", class.course_id),
                json!({ "title": " " }),
            )
            .await,
        400,
        "invalid_name",
    );
    assert_refused(
        &class
            .trainer
            .post(
                &format!("/sessions/{sid}/roster/{olga_id}"),
                json!({ "role": "boss" }),
            )
            .await,
        400,
        "invalid_parameter",
    );
    assert_refused(
        &class
            .trainer
            .post(
                &format!("/sessions/{sid}/roster/u_nobody"),
                json!({ "role": "student" }),
            )
            .await,
        404,
        "member_not_found",
    );
    assert_refused(
        &class
            .trainer
            .post(
                &format!("/sessions/{sid}/roster/{}", class.trainer_id),
                json!({ "role": "student" }),
            )
            .await,
        409,
        "last_trainer",
    );

    // The token is for this channel only, and cannot publish.
    let token = class.student.live_token(&sid).await;
    let other_channel = format!(
        "{}/v1/apps/classroom/events?channel=class:s_other&token={}",
        server.url,
        token["token"].as_str().unwrap()
    );
    assert_eq!(Sse::connect(&other_channel, None).await.status, 403);
    let (status, v) = server
        .call(
            Method::POST,
            "/v1/apps/classroom/publish",
            token["token"].as_str(),
            Some(json!({ "channel": token["channel"], "event": "hands", "data": {"hands": []} }).to_string()),
        )
        .await;
    assert!(
        status == 403 || status == 401,
        "a client token cannot publish: {status} {v}"
    );

    // Promotion during the session: the course role changes, the channel says so,
    // and the new co-trainer may run the session.
    let snap = olga.snapshot(&sid).await;
    let mut sse = subscribe(&server, &olga.live_token(&sid).await, snap["cursor"].as_str()).await;
    let (status, v) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/roster/{olga_id}"),
            json!({ "role": "co_trainer" }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["snapshot"]["roles"][&olga_id], "co_trainer");
    let ev = next_change(&mut sse).await;
    assert_eq!(ev.event, "roster.role");
    assert_eq!(
        ev.json()["data"],
        json!({ "roles": { olga_id.clone(): "co_trainer" } })
    );
    let (_, roster) = olga.get(&format!("/courses/{}/roster", class.course_id)).await;
    let role = roster["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == olga_id.as_str())
        .map(|m| m["role"].clone());
    assert_eq!(role, Some(json!("co_trainer")));
    assert_eq!(olga.snapshot(&sid).await["role"], "co_trainer");
    let (status, v) = olga.delete(&format!("/sessions/{sid}/hands")).await;
    assert_eq!(status, 200, "the new co-trainer lowers hands: {v}");
    assert_eq!(olga.act(&sid, "pause").await.0, 200);
    assert_eq!(code(&olga.act(&sid, "pause").await.1), "invalid_state");
}

#[tokio::test]
async fn after_a_restart_the_snapshot_is_the_same_and_its_cursor_works() {
    restart_and_resume(herald::config::EMBEDDED).await;
}

#[tokio::test]
async fn after_a_restart_in_memory_the_snapshot_is_re_anchored_and_its_cursor_works() {
    restart_and_resume(herald::config::MEMORY).await;
}

/// A live session across a restart of its node on `broker`: the embedded
/// default keeps the channel, so the cursor held before carries on; in memory
/// only the channel starts anew, the snapshot's cursor is re-anchored on it and
/// the old one gets a reset.
async fn restart_and_resume(broker: &str) {
    let on = |c: &mut herald::Config| c.broker = broker.to_owned();
    let server = TestServer::start_with(on).await;
    let mut class = Class::new(&server).await;
    let sid = class.session("Week 4").await;
    assert_eq!(class.trainer.act(&sid, "start").await.0, 200);
    assert_eq!(
        class
            .student
            .post(&format!("/sessions/{sid}/hand"), json!({}))
            .await
            .0,
        200
    );
    let before = class.student.snapshot(&sid).await;

    let dir = server.stop().await;
    let server = TestServer::start_in(dir, on).await;
    // Same browsers (cookies), new address.
    for b in [&mut class.trainer, &mut class.student] {
        b.base = format!("{}/classroom/api", server.url);
    }
    let after = class.student.snapshot(&sid).await;
    assert_eq!(
        after["snapshot"], before["snapshot"],
        "the document outlives the process"
    );
    assert_eq!(after["session"], before["session"]);
    let cursor = after["cursor"].as_str().unwrap().to_owned();

    let token = class.student.live_token(&sid).await;
    if broker == herald::config::MEMORY {
        // The channel was lost: the old cursor is a reset, the new snapshot's
        // cursor carries on.
        let mut old = subscribe(&server, &token, before["cursor"].as_str()).await;
        let ev = next_change(&mut old).await;
        assert_eq!(ev.event, "reset", "{ev:?}");
    } else {
        assert_eq!(
            after["cursor"], before["cursor"],
            "the channel kept its epoch and offset"
        );
    }

    let mut sse = subscribe(&server, &token, Some(&cursor)).await;
    let (status, _) = class
        .trainer
        .delete(&format!("/sessions/{sid}/hands/{}", class.student_id))
        .await;
    assert_eq!(status, 200);
    let ev = next_change(&mut sse).await;
    assert_eq!(ev.event, "hands", "{ev:?}");
    assert_eq!(ev.json()["data"], json!({ "hands": [] }));
    assert_eq!(ev.json()["offset"], cursor_offset(&cursor) + 1);

    // The saved cursor is the one of that change.
    let latest = class.student.snapshot(&sid).await;
    assert_eq!(latest["cursor"].as_str(), ev.id.as_deref());
    server.stop().await;
}

/// Who is here: no join/leave event per connection on the session's channel
/// (N students would make N² deliveries); the staff channel gets `here` with
/// names and roles, coalesced; every screen gets `here.count`; staff
/// snapshots list who is here, students' carry the count only.
#[tokio::test]
async fn who_is_here_is_coalesced_for_staff_and_counted_for_all() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let sid = class.session("Week 5").await;
    assert_eq!(class.trainer.act(&sid, "start").await.0, 200);

    let trainer_token = class.trainer.live_token(&sid).await;
    let mut staff_token = trainer_token.clone();
    staff_token["channel"] = trainer_token["staff_channel"].clone();
    let mut staff_sse = subscribe(&server, &staff_token, trainer_token["staff_cursor"].as_str()).await;
    let _trainer_sse = subscribe(&server, &trainer_token, None).await;
    let student_token = class.student.live_token(&sid).await;
    let student_snap = class.student.snapshot(&sid).await;
    let mut student_sse = subscribe(&server, &student_token, student_snap["cursor"].as_str()).await;

    // Staff see the student arrive, with name and role (within the watcher's second).
    let mut here = serde_json::Map::new();
    while !here.contains_key(&class.student_id) {
        let ev = tokio::time::timeout(Duration::from_secs(5), staff_sse.next_event())
            .await
            .expect("a here event within the watcher's tick");
        assert_ne!(ev.event, "presence", "no per-connection presence events");
        if ev.event == "here" {
            let d = ev.json()["data"].clone();
            for (id, p) in d["joined"].as_object().unwrap() {
                here.insert(id.clone(), p.clone());
            }
        }
    }
    assert_eq!(
        here[&class.student_id],
        json!({ "name": "Sam", "role": "student" })
    );
    assert_eq!(
        here[&class.trainer_id],
        json!({ "name": "Tess", "role": "trainer" })
    );

    // The student's screen gets counts only, never names.
    let count = loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), student_sse.next_event())
            .await
            .expect("a here.count event");
        assert_ne!(ev.event, "presence");
        assert_ne!(ev.event, "here", "the list is for staff");
        if ev.event == "here.count" && ev.json()["data"]["count"] == 2 {
            break 2;
        }
    };
    assert_eq!(count, 2);
    let staff_snap = class.trainer.snapshot(&sid).await;
    assert_eq!(staff_snap["snapshot"]["here_count"], 2);
    assert_eq!(staff_snap["snapshot"]["here"][&class.student_id]["name"], "Sam");
    let student_snap = class.student.snapshot(&sid).await;
    assert_eq!(student_snap["snapshot"]["here_count"], 2);
    assert!(student_snap["snapshot"].get("here").is_none());

    // The presence API lists both, with the info of their tokens.
    let path = format!(
        "/v1/apps/classroom/channels/{}/presence",
        enc(&format!("class:{sid}"))
    );
    let (status, v) = server.get_within(&path, Some(&server.admin_key)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["members"].as_array().unwrap().len(), 2);

    // The student leaves: staff get `left`, the count goes down.
    drop(student_sse);
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), staff_sse.next_event())
            .await
            .expect("a here event when the student leaves");
        if ev.event == "here" {
            let d = ev.json()["data"].clone();
            if d["left"].as_array().unwrap().contains(&json!(class.student_id)) {
                assert_eq!(d["count"], 1);
                break;
            }
        }
    }
}

impl Sse {
    /// Asserts that nothing but presence events arrives within `d`.
    async fn assert_quiet_but_presence(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Err(()) => return,
                Ok(Some(ev)) if is_presence(&ev.event) => continue,
                Ok(other) => panic!("expected nothing, got {other:?}"),
            }
        }
    }
}

/// A guest joins by name with the course's code where the trainer allows it,
/// is a student of the course, can open its live session, and cannot sign in
/// anywhere else; refused (403) where guests are not allowed, 404 for a wrong
/// code, 400 for a bad name.
#[tokio::test]
async fn guests_join_by_name_where_allowed() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let sid = class.session("Open day").await;
    let guest = Browser::new(&server);
    let (status, v) = guest
        .post("/auth/guest", json!({ "code": class.join_code, "name": "Gus" }))
        .await;
    assert_eq!((status, code(&v)), (403, "forbidden"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("guests"));

    let (status, v) = class
        .trainer
        .call(
            Method::PATCH,
            &format!("/courses/{}", class.course_id),
            json!({ "guests_allowed": true }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    for (body, want) in [
        (
            json!({ "code": "NOPE-NOPE", "name": "Gus" }),
            (404, "course_not_found"),
        ),
        (
            json!({ "code": class.join_code, "name": "   " }),
            (400, "invalid_name"),
        ),
        (json!({ "code": class.join_code }), (400, "invalid_json")),
    ] {
        let (status, v) = guest.post("/auth/guest", body).await;
        assert_eq!((status, code(&v)), want, "{v}");
    }

    let mut guest = Browser::new(&server);
    let typed = class.join_code.to_lowercase();
    let (status, v) = guest
        .post("/auth/guest", json!({ "code": typed, "name": " Gus Guest " }))
        .await;
    assert_eq!(status, 201, "{v}");
    guest.csrf = v["csrf"].as_str().map(String::from);
    assert_eq!(v["user"]["name"], "Gus Guest");
    assert_eq!(v["user"]["guest"], true);
    assert_eq!(v["course"]["id"], class.course_id.as_str());
    assert_eq!(v["course"]["role"], "student");
    let (status, me) = guest.get("/auth/me").await;
    assert_eq!(status, 200);
    assert_eq!(me["user"]["guest"], true);
    let (_, me) = class.student.get("/auth/me").await;
    assert_eq!(me["user"]["guest"], false);

    // A student of the course: the roster lists them, the live session opens.
    let (_, roster) = class
        .trainer
        .get(&format!("/courses/{}/roster", class.course_id))
        .await;
    assert!(roster["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "Gus Guest" && m["role"] == "student"));
    assert_eq!(class.trainer.act(&sid, "start").await.0, 200);
    let snap = guest.snapshot(&sid).await;
    assert_eq!(snap["role"], "student");
    let (status, v) = guest.post(&format!("/sessions/{sid}/hand"), json!({})).await;
    assert_eq!(status, 200, "{v}");

    // Their made-up email cannot be signed in with.
    let email = me_email(&guest).await;
    assert!(email.ends_with("@guests.invalid"), "{email}");
    let mut other = Browser::new(&server);
    let (status, v) = other.signin(&email, "").await;
    assert_eq!((status, code(&v)), (401, "bad_credentials"));
}

async fn me_email(b: &Browser) -> String {
    let (_, me) = b.get("/auth/me").await;
    me["user"]["email"].as_str().unwrap().to_owned()
}

/// A screen reports idle or away: one `activity` event when it changes, none
/// when it does not; the snapshot lists it; `active` removes it; bad values and
/// non-members are refused; nothing once the session has ended.
#[tokio::test]
async fn activity_idle_and_away() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let sid = class.session("Activity").await;
    assert_eq!(class.trainer.act(&sid, "start").await.0, 200);
    let token = class.trainer.live_token(&sid).await;
    let snap = class.trainer.snapshot(&sid).await;
    let mut sse = subscribe(&server, &token, snap["cursor"].as_str()).await;
    let path = format!("/sessions/{sid}/activity");

    let (status, v) = class.student.post(&path, json!({ "activity": "away" })).await;
    assert_eq!(status, 204, "{v}");
    let ev = next_change(&mut sse).await;
    assert_eq!(ev.event, "activity");
    let data: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(data["data"]["activity"][&class.student_id], "away");
    // The same again: no event; then idle, then active.
    assert_eq!(
        class.student.post(&path, json!({ "activity": "away" })).await.0,
        204
    );
    assert_eq!(
        class.student.post(&path, json!({ "activity": "idle" })).await.0,
        204
    );
    let ev = next_change(&mut sse).await;
    let data: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(
        data["data"]["activity"][&class.student_id], "idle",
        "the repeated away sent nothing"
    );
    let snap = class.trainer.snapshot(&sid).await;
    assert_eq!(snap["snapshot"]["activity"][&class.student_id], "idle");
    assert_eq!(
        class.student.post(&path, json!({ "activity": "active" })).await.0,
        204
    );
    let ev = next_change(&mut sse).await;
    let data: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(data["data"]["activity"][&class.student_id], "active");
    let snap = class.trainer.snapshot(&sid).await;
    assert_eq!(snap["snapshot"]["activity"], json!({}));

    for body in [
        json!({ "activity": "asleep" }),
        json!({ "activity": 1 }),
        json!({}),
    ] {
        let (status, v) = class.student.post(&path, body).await;
        assert_eq!(status, 400, "{v}");
    }
    let mut stranger = Browser::new(&server);
    stranger.new_account("Stranger").await;
    let (status, v) = stranger.post(&path, json!({ "activity": "idle" })).await;
    assert_eq!((status, code(&v)), (403, "forbidden"));
    assert_eq!(class.trainer.act(&sid, "end").await.0, 200);
    let (status, v) = class.student.post(&path, json!({ "activity": "idle" })).await;
    assert_eq!((status, code(&v)), (409, "invalid_state"));
}

/// Staff tokens name the staff channel and staff snapshots carry its cursor;
/// a student's do not, and a student cannot subscribe to it.
#[tokio::test]
async fn the_staff_channel_is_for_staff_only() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let sid = class.session("Staff").await;
    let staff = class.trainer.live_token(&sid).await;
    assert_eq!(staff["staff_channel"], format!("class:{sid}.staff"));
    assert!(staff["staff_cursor"].is_string());
    assert!(class.trainer.snapshot(&sid).await["staff_cursor"].is_string());
    let student = class.student.live_token(&sid).await;
    assert!(student.get("staff_channel").is_none(), "{student}");
    assert!(class.student.snapshot(&sid).await.get("staff_channel").is_none());
    let url = format!(
        "{}/v1/apps/classroom/events?channel={}&token={}",
        server.url,
        enc(&format!("class:{sid}.staff")),
        student["token"].as_str().unwrap()
    );
    let sse = Sse::connect(&url, None).await;
    assert_eq!(
        sse.status, 403,
        "a student's token does not name the staff channel"
    );
    let mut as_staff = staff.clone();
    as_staff["channel"] = staff["staff_channel"].clone();
    let sse = subscribe(&server, &as_staff, staff["staff_cursor"].as_str()).await;
    assert_eq!(sse.status, 200);
}

/// The demo course: one call makes the caller the trainer of a course open to
/// guests, with a live session showing a deck and two polls ready (a quiz among
/// them); a guest joins it with the code and lands on the same page.
#[tokio::test]
async fn a_demo_lesson_is_ready_in_one_call() {
    let server = TestServer::start().await;
    let mut tess = Browser::new(&server);
    tess.new_account("Tess").await;
    let (status, v) = tess.post("/demo", json!({})).await;
    assert_eq!(status, 201, "{v}");
    let course_id = v["course"]["id"].as_str().unwrap().to_owned();
    let sid = v["session"]["id"].as_str().unwrap().to_owned();
    let (_, course) = tess.get(&format!("/courses/{course_id}")).await;
    assert_eq!(course["course"]["role"], "trainer");
    assert_eq!(course["course"]["guests_allowed"], true);
    let join_code = course["course"]["join_code"].as_str().unwrap().to_owned();

    let snap = tess.snapshot(&sid).await;
    let s = &snap["snapshot"];
    assert_eq!(s["state"], "live");
    assert_eq!(s["slides"]["page"], 0);
    assert!(s["slides"]["count"].as_u64().unwrap() >= 5, "{}", s["slides"]);
    assert!(s["deck"]["slides"][0]["html"]
        .as_str()
        .unwrap()
        .contains("Welcome"));
    let polls = s["polls"].as_object().unwrap();
    assert_eq!(polls.len(), 2);
    assert!(polls.values().all(|p| p["state"] == "draft"));
    assert!(polls.values().any(|p| p["quiz"] == true));

    let mut guest = Browser::new(&server);
    let (status, v) = guest
        .post("/auth/guest", json!({ "code": join_code, "name": "Gia" }))
        .await;
    assert_eq!(status, 201, "{v}");
    guest.csrf = v["csrf"].as_str().map(String::from);
    let theirs = guest.snapshot(&sid).await;
    assert_eq!(theirs["snapshot"]["slides"], s["slides"]);
    assert_eq!(theirs["snapshot"]["deck"], s["deck"]);
    assert!(
        theirs["snapshot"]["polls"].as_object().unwrap().is_empty(),
        "drafts are the trainer's"
    );

    // Not signed in: 401; a second demo is another course.
    let (status, v) = Browser::new(&server).post("/demo", json!({})).await;
    assert_eq!((status, code(&v)), (401, "unauthorized"));
    let (status, again) = tess.post("/demo", json!({})).await;
    assert_eq!(status, 201);
    assert_ne!(again["course"]["id"], course_id.as_str());
}

/// A change too large for one event (a deck of ~100 KB shown) goes out as
/// `reload`, and the snapshot has it; a burst of questions larger than one
/// event goes out in several `questions` events, each within the limit, that
/// together carry every question.
#[tokio::test]
async fn large_changes_stay_within_the_message_limit() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let sid = class.session("Big").await;
    assert_eq!(class.trainer.act(&sid, "start").await.0, 200);
    let (status, v) = class
        .trainer
        .call(
            Method::PATCH,
            &format!("/courses/{}", class.course_id),
            json!({ "guests_allowed": true }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let snap = class.student.snapshot(&sid).await;
    let token = class.student.live_token(&sid).await;
    let mut sse = subscribe(&server, &token, snap["cursor"].as_str()).await;

    // A deck of 120 slides of ~900 bytes each.
    let markdown: String = (0..120)
        .map(|i| format!("# Slide {i}\n\n{}\n\n", "Lorem ipsum dolor sit amet. ".repeat(32)))
        .collect();
    let (status, deck) = class
        .trainer
        .post(
            &format!("/courses/{}/decks", class.course_id),
            json!({ "title": "Long", "markdown": markdown }),
        )
        .await;
    assert_eq!(status, 201, "{deck}");
    let (status, v) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/slides"),
            json!({ "deck_id": deck["deck"]["id"] }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let ev = next_change(&mut sse).await;
    assert_eq!(ev.event, "reload", "{}", ev.data);
    assert_eq!(ev.json()["data"]["reload"], "slides");
    let snap = class.student.snapshot(&sid).await;
    assert_eq!(snap["snapshot"]["deck"]["slides"].as_array().unwrap().len(), 120);

    // 150 questions of 480 characters, asked at once by 30 guests.
    let mut guests = Vec::new();
    for i in 0..30 {
        let mut g = Browser::new(&server);
        let (status, v) = g
            .post(
                "/auth/guest",
                json!({ "code": class.join_code, "name": format!("Guest {i}") }),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        g.csrf = v["csrf"].as_str().map(String::from);
        guests.push(g);
    }
    let path = format!("/sessions/{sid}/questions");
    let path = path.as_str();
    let asks = guests.iter().flat_map(|g| {
        (0..5).map(move |k| g.post(path, json!({ "text": format!("{k} {}", "why ".repeat(119)) })))
    });
    for (status, v) in futures_util::future::join_all(asks).await {
        assert_eq!(status, 201, "{v}");
    }
    let mut seen = std::collections::HashSet::new();
    let mut events = 0;
    while seen.len() < 150 {
        let ev = tokio::time::timeout(Duration::from_secs(5), next_change(&mut sse))
            .await
            .expect("every question arrives");
        assert_eq!(ev.event, "questions");
        assert!(ev.data.len() < 64 * 1024, "{} bytes", ev.data.len());
        events += 1;
        for id in ev.json()["data"]["questions"].as_object().unwrap().keys() {
            seen.insert(id.clone());
        }
    }
    assert!(events >= 2, "150 long questions need more than one event");
}
