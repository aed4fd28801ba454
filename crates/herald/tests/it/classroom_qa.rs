//! Questions and answers in a live session over real HTTP and SSE: ask, edit,
//! withdraw, upvote once, moderation, anonymity, "answering now", public and
//! private answers, exports, refusals, a restart.

use serde_json::{json, Value};

use crate::classroom::Browser;
use crate::classroom_live::{next_change, subscribe, Class};
use crate::support::*;

impl Browser {
    /// Asks `text` in `sid`; returns the status, the answer and the new id.
    async fn ask(&self, sid: &str, text: &str, anonymous: bool) -> (u16, Value, String) {
        let (status, v) = self
            .post(
                &format!("/sessions/{sid}/questions"),
                json!({ "text": text, "anonymous": anonymous }),
            )
            .await;
        let id = v["question"]["id"].as_str().unwrap_or("").to_owned();
        (status, v, id)
    }

    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, body).await
    }
}

/// A live session with the trainer, Sam (the class's student) and Ben.
async fn live_class(server: &TestServer) -> (Class, String, Browser, String) {
    let class = Class::new(server).await;
    let sid = class.session("Q&A").await;
    assert_eq!(class.trainer.act(&sid, "start").await.0, 200);
    let (ben, ben_id) = class.another_student(server, "Ben").await;
    (class, sid, ben, ben_id)
}

/// An SSE stream for `b` on the session's channel, from their snapshot's cursor.
async fn watch(server: &TestServer, b: &Browser, sid: &str) -> (Value, Sse) {
    let snap = b.snapshot(sid).await;
    let token = b.live_token(sid).await;
    let sse = subscribe(server, &token, snap["cursor"].as_str()).await;
    (snap, sse)
}

#[tokio::test]
async fn ask_edit_vote_once_and_withdraw() {
    let server = TestServer::start().await;
    let (class, sid, ben, ben_id) = live_class(&server).await;
    let (snap, mut ben_sse) = watch(&server, &ben, &sid).await;
    assert_eq!(snap["snapshot"]["questions"], json!({}));
    assert_eq!(snap["snapshot"]["held_back"], 0);

    let (status, v, qid) = class.student.ask(&sid, "  Why is the sky blue?  ", false).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["question"]["text"], "Why is the sky blue?", "trimmed");
    assert_eq!(v["mine"]["my_questions"], json!([qid]));
    assert_eq!(
        v["mine"],
        json!({ "my_questions": [qid], "my_votes": [], "my_answers": {}, "pending": {} })
    );
    assert!(v.get("snapshot").is_none(), "{v}");
    let ev = next_change(&mut ben_sse).await;
    assert_eq!(ev.event, "questions");
    let data = ev.json()["data"].clone();
    let q = &data["questions"][&qid];
    assert_eq!(q["text"], "Why is the sky blue?");
    assert_eq!(
        (q["votes"].clone(), q["state"].clone()),
        (json!(0), json!("published"))
    );
    assert_eq!(q["author"], "Sam");
    assert_eq!(data["held_back"], 0);

    let (status, v) = class
        .student
        .patch(
            &format!("/sessions/{sid}/questions/{qid}"),
            json!({ "text": "Why blue?" }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["question"]["text"], "Why blue?");
    assert_eq!(v["mine"]["my_questions"], json!([qid]));
    let ev = next_change(&mut ben_sse).await;
    assert_eq!(ev.json()["data"]["questions"][&qid]["text"], "Why blue?");
    // The same text again: no change, the same small answer.
    let (status, v) = class
        .student
        .patch(
            &format!("/sessions/{sid}/questions/{qid}"),
            json!({ "text": "Why blue?" }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["question"]["text"], "Why blue?");
    // Someone else's question cannot be edited.
    let r = ben
        .patch(
            &format!("/sessions/{sid}/questions/{qid}"),
            json!({ "text": "Mine now" }),
        )
        .await;
    assert_refused(&r, 403, "forbidden");

    // Upvote once; a second vote is refused; one's own question is refused.
    let (status, v) = ben
        .post(&format!("/sessions/{sid}/questions/{qid}/vote"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["mine"]["my_votes"], json!([qid]));
    assert_eq!(v["mine"]["my_questions"], json!([]));
    assert_eq!(v["question"]["votes"], 1);
    let ev = next_change(&mut ben_sse).await;
    assert_eq!(votes_in(&ev.json(), &qid), 1);
    let r = ben
        .post(&format!("/sessions/{sid}/questions/{qid}/vote"), json!({}))
        .await;
    assert_refused(&r, 409, "already_voted");
    let r = class
        .student
        .post(&format!("/sessions/{sid}/questions/{qid}/vote"), json!({}))
        .await;
    assert_refused(&r, 403, "forbidden");
    // Staff may vote too.
    let (status, _) = class
        .trainer
        .post(&format!("/sessions/{sid}/questions/{qid}/vote"), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(votes_in(&next_change(&mut ben_sse).await.json(), &qid), 2);
    // Taking a vote back.
    let (status, v) = ben.delete(&format!("/sessions/{sid}/questions/{qid}/vote")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["mine"]["my_votes"], json!([]));
    assert_eq!(v["question"]["votes"], 1);
    // No vote to take back: no change, the same small answer.
    let (status, v) = ben.delete(&format!("/sessions/{sid}/questions/{qid}/vote")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["mine"]["my_votes"].clone(), v["question"]["votes"].clone()),
        (json!([]), json!(1))
    );
    assert_eq!(votes_in(&next_change(&mut ben_sse).await.json(), &qid), 1);
    let _ = ben_id;

    // Bad inputs.
    for text in ["", "   ", &"x".repeat(501)] {
        let (status, v, _) = class.student.ask(&sid, text, false).await;
        assert_refused(&(status, v), 400, "invalid_question");
    }
    let (status, _, _) = class.student.ask(&sid, &"é".repeat(500), false).await;
    assert_eq!(status, 201, "500 characters are fine");
    assert_eq!(next_change(&mut ben_sse).await.event, "questions");
    let r = class
        .student
        .post(
            &format!("/sessions/{sid}/questions"),
            json!({ "text": "x", "extra": 1 }),
        )
        .await;
    assert_refused(&r, 400, "invalid_json");
    let r = ben
        .post(&format!("/sessions/{sid}/questions/q_nope/vote"), json!({}))
        .await;
    assert_refused(&r, 404, "question_not_found");
    let (status, v, _) = class.trainer.ask(&sid, "Staff do not ask", false).await;
    assert_refused(&(status, v), 403, "forbidden");

    // Withdraw: the question leaves every screen.
    let (status, v) = class
        .student
        .delete(&format!("/sessions/{sid}/questions/{qid}"))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["question"], Value::Null, "withdrawn");
    assert!(
        !v["mine"]["my_questions"]
            .as_array()
            .unwrap()
            .contains(&json!(qid)),
        "{v}"
    );
    let ev = next_change(&mut ben_sse).await;
    assert_eq!(ev.json()["data"]["questions"][&qid], Value::Null);
    assert!(ben.snapshot(&sid).await["snapshot"]["questions"]
        .get(&qid)
        .is_none());
    let r = class
        .student
        .delete(&format!("/sessions/{sid}/questions/{qid}"))
        .await;
    assert_refused(&r, 404, "question_not_found");
    server.stop().await;
}

#[tokio::test]
async fn asks_are_rate_limited() {
    let server = TestServer::start().await;
    let (class, sid, _ben, _) = live_class(&server).await;
    for n in 0..5 {
        let (status, v, _) = class.student.ask(&sid, &format!("Question {n}"), false).await;
        assert_eq!(status, 201, "{v}");
    }
    let (status, v, _) = class.student.ask(&sid, "One too many", false).await;
    assert_refused(&(status, v), 429, "rate_limited");
    server.stop().await;
}

#[tokio::test]
async fn moderation_holds_questions_back_from_the_audience() {
    let server = TestServer::start().await;
    let (class, sid, ben, _) = live_class(&server).await;
    let r = class
        .student
        .patch(&format!("/sessions/{sid}/qa"), json!({ "moderation": true }))
        .await;
    assert_refused(&r, 403, "forbidden");
    let (status, v) = class
        .trainer
        .patch(&format!("/sessions/{sid}/qa"), json!({ "moderation": true }))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["snapshot"]["qa"],
        json!({ "anonymous": false, "moderation": true })
    );

    let (_, mut ben_sse) = watch(&server, &ben, &sid).await;
    let secret = "Is the exam on chapter 9?";
    let (status, v, qid) = class.student.ask(&sid, secret, false).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["question"]["state"], "pending");
    assert_eq!(v["question"]["text"], secret);
    assert_eq!(v["mine"]["pending"][&qid]["text"], secret, "the author sees it");

    let ev = next_change(&mut ben_sse).await;
    assert!(!ev.data.contains(secret), "{ev:?}");
    let data = ev.json()["data"].clone();
    assert_eq!(data["questions"][&qid], Value::Null);
    assert_eq!(data["held_back"], 1);
    let rev = data["held_back_rev"].clone();
    let snap = ben.snapshot(&sid).await;
    assert!(!snap.to_string().contains(secret), "{snap}");
    assert_eq!(snap["snapshot"]["held_back"], 1);
    assert_eq!(snap["snapshot"]["pending"], json!({}));
    // Nobody but staff and the author may act on it: it does not exist for them.
    let r = ben
        .post(&format!("/sessions/{sid}/questions/{qid}/vote"), json!({}))
        .await;
    assert_refused(&r, 404, "question_not_found");
    // Staff's small answers hold every pending question (taking back a vote
    // never cast changes nothing).
    let (status, v) = class
        .trainer
        .delete(&format!("/sessions/{sid}/questions/{qid}/vote"))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["question"]["text"], secret);
    assert_eq!(v["mine"]["pending"][&qid]["text"], secret);

    // Staff see it (reload on a new held_back_rev), and publish it.
    let staff = class.trainer.snapshot(&sid).await;
    assert_eq!(staff["snapshot"]["pending"][&qid]["text"], secret);
    assert_eq!(staff["snapshot"]["held_back_rev"], rev);
    let r = class
        .student
        .post(
            &format!("/sessions/{sid}/questions/{qid}/state"),
            json!({ "state": "published" }),
        )
        .await;
    assert_refused(&r, 403, "forbidden");
    let (status, v) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/questions/{qid}/state"),
            json!({ "state": "published" }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let ev = next_change(&mut ben_sse).await;
    let data = ev.json()["data"].clone();
    assert_eq!(data["questions"][&qid]["text"], secret);
    assert_eq!(data["held_back"], 0);
    assert_eq!(
        ben.snapshot(&sid).await["snapshot"]["questions"][&qid]["text"],
        secret
    );
    server.stop().await;
}

#[tokio::test]
async fn anonymous_questions_name_nobody() {
    let server = TestServer::start().await;
    let (class, sid, ben, _) = live_class(&server).await;
    let (status, v, _) = class.student.ask(&sid, "Secretly?", true).await;
    assert_refused(&(status, v), 403, "forbidden");
    let (status, _) = class
        .trainer
        .patch(&format!("/sessions/{sid}/qa"), json!({ "anonymous": true }))
        .await;
    assert_eq!(status, 200);

    let (_, mut ben_sse) = watch(&server, &ben, &sid).await;
    let (status, v, qid) = class.student.ask(&sid, "Secretly?", true).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        v["mine"]["my_questions"],
        json!([qid]),
        "the author knows it is theirs"
    );
    assert_eq!(v["question"]["author"], Value::Null);
    assert!(!v.to_string().contains(&class.student_id), "{v}");
    let ev = next_change(&mut ben_sse).await;
    assert_eq!(ev.json()["data"]["questions"][&qid]["author"], Value::Null);
    assert!(!ev.data.contains("Sam") && !ev.data.contains(&class.student_id));
    for b in [&ben, &class.trainer] {
        let snap = b.snapshot(&sid).await;
        assert_eq!(snap["snapshot"]["questions"][&qid]["author"], Value::Null);
        assert!(!snap["snapshot"].to_string().contains(&class.student_id));
    }
    // The author may still edit it.
    let (status, _) = class
        .student
        .patch(
            &format!("/sessions/{sid}/questions/{qid}"),
            json!({ "text": "Secretly!" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, csv) = class.trainer.get(&format!("/sessions/{sid}/questions.csv")).await;
    assert_eq!(status, 200);
    assert!(csv.as_str().unwrap().contains(",anonymous,Secretly!,"), "{csv}");
    server.stop().await;
}

#[tokio::test]
async fn answering_now_is_unique_and_states_go_back() {
    let server = TestServer::start().await;
    let (class, sid, ben, _) = live_class(&server).await;
    let (_, _, q1) = class.student.ask(&sid, "First?", false).await;
    let (_, _, q2) = ben.ask(&sid, "Second?", false).await;
    let (_, mut sse) = watch(&server, &ben, &sid).await;
    let set = |qid: String, state: &'static str| {
        let t = &class.trainer;
        let sid = sid.clone();
        async move {
            t.post(
                &format!("/sessions/{sid}/questions/{qid}/state"),
                json!({ "state": state }),
            )
            .await
        }
    };

    assert_eq!(set(q1.clone(), "starred").await.0, 200);
    assert_eq!(
        next_change(&mut sse).await.json()["data"]["questions"][&q1]["state"],
        "starred"
    );
    assert_eq!(set(q1.clone(), "answering").await.0, 200);
    next_change(&mut sse).await;
    let (status, v) = set(q2.clone(), "answering").await;
    assert_eq!(status, 200, "{v}");
    let data = next_change(&mut sse).await.json()["data"].clone();
    assert_eq!(data["questions"][&q2]["state"], "answering");
    assert_eq!(
        data["questions"][&q1]["state"], "published",
        "the previous one is cleared"
    );
    let states: Vec<_> = v["snapshot"]["questions"]
        .as_object()
        .unwrap()
        .values()
        .filter(|q| q["state"] == "answering")
        .collect();
    assert_eq!(states.len(), 1);

    // A public answer, visible to all; then back to published drops it.
    let (status, v) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/questions/{q2}/answer"),
            json!({ "mode": "public", "text": "Because of Rayleigh scattering." }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let q = next_change(&mut sse).await.json()["data"]["questions"][&q2].clone();
    assert_eq!(
        (q["state"].clone(), q["answer_mode"].clone(), q["answer"].clone()),
        (
            json!("answered"),
            json!("public"),
            json!("Because of Rayleigh scattering.")
        )
    );
    let r = ben
        .patch(
            &format!("/sessions/{sid}/questions/{q2}"),
            json!({ "text": "too late" }),
        )
        .await;
    assert_refused(&r, 409, "invalid_state");
    assert_eq!(set(q2.clone(), "published").await.0, 200);
    let q = next_change(&mut sse).await.json()["data"]["questions"][&q2].clone();
    assert_eq!(
        (q["state"].clone(), q["answer"].clone()),
        (json!("published"), Value::Null)
    );
    // Live answer: no text.
    let (status, _) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/questions/{q1}/answer"),
            json!({ "mode": "live" }),
        )
        .await;
    assert_eq!(status, 200);
    let q = next_change(&mut sse).await.json()["data"]["questions"][&q1].clone();
    assert_eq!(
        (q["state"].clone(), q["answer_mode"].clone()),
        (json!("answered"), json!("live"))
    );
    assert_eq!(set(q1.clone(), "dismissed").await.0, 200);

    // Refusals.
    assert_refused(&set(q1.clone(), "answered").await, 400, "invalid_parameter");
    assert_refused(&set(q1.clone(), "gone").await, 400, "invalid_parameter");
    assert_refused(&set("q_nope".into(), "starred").await, 404, "question_not_found");
    let answer = |body: Value| {
        let t = &class.trainer;
        let path = format!("/sessions/{sid}/questions/{q1}/answer");
        async move { t.post(&path, body).await }
    };
    assert_refused(
        &answer(json!({ "mode": "public" })).await,
        400,
        "invalid_question",
    );
    assert_refused(
        &answer(json!({ "mode": "public", "text": " " })).await,
        400,
        "invalid_question",
    );
    assert_refused(
        &answer(json!({ "mode": "live", "text": "x" })).await,
        400,
        "invalid_question",
    );
    assert_refused(&answer(json!({ "mode": "loud" })).await, 400, "invalid_parameter");
    let r = ben
        .post(
            &format!("/sessions/{sid}/questions/{q1}/answer"),
            json!({ "mode": "public", "text": "forged" }),
        )
        .await;
    assert_refused(&r, 403, "forbidden");
    // Once ended, nothing changes.
    assert_eq!(class.trainer.act(&sid, "end").await.0, 200);
    assert_refused(&set(q1.clone(), "published").await, 409, "invalid_state");
    let (status, v, _) = ben.ask(&sid, "After?", false).await;
    assert_refused(&(status, v), 409, "invalid_state");
    server.stop().await;
}

#[tokio::test]
async fn a_private_answer_reaches_the_asker_only() {
    let server = TestServer::start().await;
    let (class, sid, ben, _) = live_class(&server).await;
    let (_, mut ben_sse) = watch(&server, &ben, &sid).await;
    let (_, _, qid) = class.student.ask(&sid, "Can I get an extension?", false).await;
    // The ask's (coalesced) event, before anything else.
    let ev = next_change(&mut ben_sse).await;
    assert_eq!(ev.json()["data"]["questions"][&qid]["state"], "published");

    // Sam listens on their personal channel, from the snapshot's private cursor.
    let snap = class.student.snapshot(&sid).await;
    let token = class.student.live_token(&sid).await;
    let personal = format!("class:{sid}#{}", class.student_id);
    assert_eq!(token["private_channel"], personal);
    assert_eq!(snap["private_channel"], personal);
    let url = format!(
        "{}/v1/apps/classroom/events?channel={}&token={}&cursor={}",
        server.url,
        enc(&personal),
        token["token"].as_str().unwrap(),
        enc(snap["private_cursor"].as_str().unwrap())
    );
    let mut sam_private = Sse::connect(&url, None).await;
    assert_eq!(sam_private.status, 200);
    // Ben may not listen there.
    let ben_token = ben.live_token(&sid).await;
    let url = format!(
        "{}/v1/apps/classroom/events?channel={}&token={}",
        server.url,
        enc(&personal),
        ben_token["token"].as_str().unwrap()
    );
    assert_eq!(Sse::connect(&url, None).await.status, 403);

    let secret = "Yes, until Friday.";
    let (status, v) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/questions/{qid}/answer"),
            json!({ "mode": "private", "text": secret }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let ev = next_change(&mut ben_sse).await;
    assert!(!ev.data.contains(secret), "{ev:?}");
    let q = ev.json()["data"]["questions"][&qid].clone();
    assert_eq!(
        (q["state"].clone(), q["answer_mode"].clone(), q["answer"].clone()),
        (json!("answered"), json!("private"), Value::Null)
    );
    let ev = next_change(&mut sam_private).await;
    assert_eq!(ev.event, "answer.private");
    assert_eq!(ev.json()["data"], json!({ "my_answers": { &qid: secret } }));

    let ben_snap = ben.snapshot(&sid).await;
    assert!(!ben_snap.to_string().contains(secret), "{ben_snap}");
    assert_eq!(ben_snap["snapshot"]["my_answers"], json!({}));
    let sam_snap = class.student.snapshot(&sid).await;
    assert_eq!(sam_snap["snapshot"]["my_answers"][&qid], secret);
    // A small answer carries the private answer to its asker (taking back a
    // vote never cast changes nothing), and to nobody else.
    let path = format!("/sessions/{sid}/questions/{qid}/vote");
    let (status, v) = class.student.delete(&path).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["mine"]["my_answers"], json!({ &qid: secret }));
    assert_eq!(v["question"]["answer"], Value::Null);
    let (status, v) = ben.delete(&path).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["mine"]["my_answers"], json!({}));
    assert!(!v.to_string().contains(secret), "{v}");
    ben_sse.assert_quiet(std::time::Duration::from_millis(300)).await;
    server.stop().await;
}

#[tokio::test]
async fn exports_quote_csv_and_write_markdown() {
    let server = TestServer::start().await;
    let (class, sid, ben, _) = live_class(&server).await;
    let text = "Commas, \"quotes\"\nand lines?";
    let (_, _, qid) = class.student.ask(&sid, text, false).await;
    assert_eq!(
        ben.post(&format!("/sessions/{sid}/questions/{qid}/vote"), json!({}))
            .await
            .0,
        200
    );
    let (status, _) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/questions/{qid}/answer"),
            json!({ "mode": "public", "text": "Yes, \"always\"." }),
        )
        .await;
    assert_eq!(status, 200);

    let (status, csv) = class.trainer.get(&format!("/sessions/{sid}/questions.csv")).await;
    assert_eq!(status, 200, "{csv}");
    let csv = csv.as_str().unwrap();
    let mut lines = csv.split("\r\n");
    assert_eq!(
        lines.next(),
        Some("id,created_at,state,votes,author,question,answer_mode,answer")
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with(&format!("{qid},")), "{row}");
    assert!(
        row.ends_with(
            ",answered,1,Sam,\"Commas, \"\"quotes\"\"\nand lines?\",public,\"Yes, \"\"always\"\".\""
        ),
        "{row}"
    );
    let (status, md) = class.trainer.get(&format!("/sessions/{sid}/questions.md")).await;
    assert_eq!(status, 200);
    let md = md.as_str().unwrap();
    assert!(md.contains("## 1. Sam (1 votes, answered)"), "{md}");
    assert!(md.contains("> Commas, \"quotes\"\n> and lines?"), "{md}");
    assert!(md.contains("Answer (public):\n\n> Yes, \"always\"."), "{md}");

    for path in ["questions.csv", "questions.md"] {
        let r = ben.get(&format!("/sessions/{sid}/{path}")).await;
        assert_refused(&r, 403, "forbidden");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_questions_and_votes() {
    let server = TestServer::start().await;
    let (mut class, sid, mut ben, _) = live_class(&server).await;
    let (_, _, qid) = class.student.ask(&sid, "Still there?", false).await;
    assert_eq!(
        ben.post(&format!("/sessions/{sid}/questions/{qid}/vote"), json!({}))
            .await
            .0,
        200
    );
    let before = ben.snapshot(&sid).await;

    let dir = server.stop().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    for b in [&mut class.trainer, &mut class.student, &mut ben] {
        b.base = format!("{}/classroom/api", server.url);
    }
    let after = ben.snapshot(&sid).await;
    assert_eq!(after["snapshot"], before["snapshot"]);
    assert_eq!(after["snapshot"]["questions"][&qid]["votes"], 1);
    assert_eq!(after["snapshot"]["my_votes"], json!([qid]));
    let r = ben
        .post(&format!("/sessions/{sid}/questions/{qid}/vote"), json!({}))
        .await;
    assert_refused(&r, 409, "already_voted");
    server.stop().await;
}

/// Upvotes are coalesced: 30 students voting at once produce a handful of
/// `questions` events (at most 4 a second), not 30, each with the count alone
/// (not the question's whole view), and the last one carries the exact count;
/// every voter's own answer shows their vote at once.
#[tokio::test]
async fn upvotes_are_coalesced_into_few_events() {
    let server = TestServer::start().await;
    let (class, sid, _ben, _) = live_class(&server).await;
    let (_, _, qid) = class.student.ask(&sid, "Popular?", false).await;
    let mut voters = Vec::new();
    for i in 0..30 {
        voters.push(class.another_student(&server, &format!("Voter{i}")).await.0);
    }
    let (_, mut sse) = watch(&server, &class.trainer, &sid).await;
    let path = format!("/sessions/{sid}/questions/{qid}/vote");
    let answers = futures_util::future::join_all(voters.iter().map(|b| b.post(&path, json!({})))).await;
    for (status, v) in &answers {
        assert_eq!(*status, 200, "{v}");
        assert!(v["mine"]["my_votes"].as_array().unwrap().contains(&json!(qid)));
        assert!(v["question"]["votes"].as_u64().unwrap() >= 1, "{v}");
    }
    let mut events = 0;
    let mut last = 0;
    while last < 30 {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(5), next_change(&mut sse))
            .await
            .expect("the coalesced event comes within the window");
        assert_eq!(ev.event, "questions");
        assert!(
            ev.json()["data"]["questions"].get(&qid).is_none(),
            "a question that only gained votes travels as its count alone: {}",
            ev.data
        );
        events += 1;
        last = votes_in(&ev.json(), &qid).as_u64().unwrap_or(last);
    }
    assert_eq!(last, 30);
    assert!(events <= 8, "{events} events for 30 votes");
    let snap = class.trainer.snapshot(&sid).await;
    assert_eq!(snap["snapshot"]["questions"][&qid]["votes"], 30);
}

/// A student's action answers only their own data, however many questions the
/// session holds: a vote among 50 questions carries the voted question and
/// the caller's `mine`, no snapshot and none of the other questions.
#[tokio::test]
async fn a_vote_answers_small_among_many_questions() {
    let server = TestServer::start().await;
    let (class, sid, ben, _) = live_class(&server).await;
    let text = |n: usize| format!("Question number {n}, padded to look like a real one?");
    let mut ids = Vec::new();
    for s in 0..10 {
        let (asker, _) = class.another_student(&server, &format!("Asker{s}")).await;
        for k in 0..5 {
            let (status, v, id) = asker.ask(&sid, &text(s * 5 + k), false).await;
            assert_eq!(status, 201, "{v}");
            assert!(v.get("snapshot").is_none(), "{v}");
            assert_eq!(v["mine"]["my_questions"].as_array().unwrap().len(), k + 1);
            ids.push(id);
        }
    }
    let snap = ben.snapshot(&sid).await;
    assert_eq!(snap["snapshot"]["questions"].as_object().unwrap().len(), 50);

    let target = &ids[17];
    let (status, v) = ben
        .post(&format!("/sessions/{sid}/questions/{target}/vote"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v.get("snapshot").is_none(), "{v}");
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["mine", "question"]);
    assert_eq!(v["question"]["id"], json!(target));
    assert_eq!(v["question"]["text"], text(17));
    assert_eq!(v["question"]["votes"], 1);
    assert_eq!(
        v["mine"],
        json!({ "my_questions": [], "my_votes": [target], "my_answers": {}, "pending": {} })
    );
    let body = v.to_string();
    for (n, id) in ids.iter().enumerate().filter(|(_, id)| *id != target) {
        assert!(!body.contains(id.as_str()) && !body.contains(&text(n)), "{body}");
    }
    let whole = snap.to_string().len();
    assert!(
        body.len() < 600 && body.len() * 10 < whole,
        "{} bytes (the snapshot: {whole})",
        body.len()
    );
    server.stop().await;
}

/// An ask is a row first and its event is coalesced: a server stopped right
/// after it (before the quarter second is up) still has the question after a
/// restart, with its author, in every snapshot.
#[tokio::test]
async fn a_question_asked_just_before_a_stop_is_kept() {
    let server = TestServer::start().await;
    let (mut class, sid, _, _) = live_class(&server).await;
    let (status, v, qid) = class.student.ask(&sid, "Right before the stop?", false).await;
    assert_eq!(status, 201, "{v}");
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    for b in [&mut class.trainer, &mut class.student] {
        b.base = format!("{}/classroom/api", server.url);
    }
    let snap = class.trainer.snapshot(&sid).await;
    let q = &snap["snapshot"]["questions"][&qid];
    assert_eq!(q["text"], "Right before the stop?", "{snap}");
    assert_eq!(q["author"], "Sam");
    let mine = class.student.snapshot(&sid).await;
    assert_eq!(mine["snapshot"]["my_questions"], json!([qid]));
    server.stop().await;
}

/// The vote count a `questions` event carries for `qid`: in its view when the
/// question itself changed since the last event, or alone under `votes` when
/// only its count did (`null` when the event says nothing of it).
pub(crate) fn votes_in(event: &Value, qid: &str) -> Value {
    let data = &event["data"];
    match &data["votes"][qid] {
        Value::Null => data["questions"][qid]["votes"].clone(),
        n => n.clone(),
    }
}
