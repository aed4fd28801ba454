//! Who may call which classroom route (issue 12, 2.5): one table of every
//! route of herald-classroom (checked against its source, so a new route
//! cannot be left out), and three matrices over it, each refusal checked to
//! change nothing:
//! - every state-changing route refuses the session cookie without its CSRF
//!   token, or with another session's (`403 csrf_failed`);
//! - every route refuses a page of a foreign origin, whatever it sends
//!   (`403 origin_not_allowed`);
//! - every staff route refuses a student and a guest, and every
//!   trainer-only route a co-trainer too (`403 forbidden`).

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::classroom::Browser;
use crate::classroom_live::Class;
use crate::classroom_slides::tiny_png;
use crate::support::*;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Anyone: no session yet (signing up or in, joining as a guest).
    Anyone,
    /// Any signed-in member (the handler may narrow it to the author, ...).
    Member,
    /// Trainers and co-trainers.
    Staff,
    /// Trainers only.
    Trainer,
}
use Who::*;

/// Every route of the classroom API, and who may call it.
const ROUTES: &[(&str, &str, Who)] = &[
    ("POST", "/classroom/api/auth/signup", Anyone),
    ("POST", "/classroom/api/auth/signin", Anyone),
    ("POST", "/classroom/api/auth/guest", Anyone),
    ("POST", "/classroom/api/auth/signout", Member),
    ("GET", "/classroom/api/auth/me", Member),
    ("GET", "/classroom/api/courses", Member),
    ("POST", "/classroom/api/courses", Member),
    ("POST", "/classroom/api/courses/join", Member),
    ("POST", "/classroom/api/demo", Member),
    ("GET", "/classroom/api/courses/{id}", Member),
    ("PATCH", "/classroom/api/courses/{id}", Trainer),
    ("GET", "/classroom/api/courses/{id}/roster", Member),
    ("POST", "/classroom/api/courses/{id}/roster/{user_id}", Trainer),
    ("POST", "/classroom/api/courses/{id}/code", Trainer),
    ("GET", "/classroom/api/courses/{id}/sessions", Member),
    ("POST", "/classroom/api/courses/{id}/sessions", Staff),
    ("GET", "/classroom/api/sessions/{sid}", Member),
    ("POST", "/classroom/api/sessions/{sid}/start", Staff),
    ("POST", "/classroom/api/sessions/{sid}/pause", Staff),
    ("POST", "/classroom/api/sessions/{sid}/resume", Staff),
    ("POST", "/classroom/api/sessions/{sid}/end", Staff),
    ("GET", "/classroom/api/sessions/{sid}/token", Member),
    ("GET", "/classroom/api/sessions/{sid}/log", Member),
    ("POST", "/classroom/api/sessions/{sid}/hand", Member),
    ("DELETE", "/classroom/api/sessions/{sid}/hand", Member),
    ("DELETE", "/classroom/api/sessions/{sid}/hands", Staff),
    ("DELETE", "/classroom/api/sessions/{sid}/hands/{user_id}", Staff),
    ("POST", "/classroom/api/sessions/{sid}/roster/{user_id}", Trainer),
    ("POST", "/classroom/api/sessions/{sid}/activity", Member),
    ("PATCH", "/classroom/api/sessions/{sid}/qa", Staff),
    ("POST", "/classroom/api/sessions/{sid}/questions", Member),
    ("GET", "/classroom/api/sessions/{sid}/questions.csv", Staff),
    ("GET", "/classroom/api/sessions/{sid}/questions.md", Staff),
    ("PATCH", "/classroom/api/sessions/{sid}/questions/{qid}", Member),
    ("DELETE", "/classroom/api/sessions/{sid}/questions/{qid}", Member),
    (
        "POST",
        "/classroom/api/sessions/{sid}/questions/{qid}/vote",
        Member,
    ),
    (
        "DELETE",
        "/classroom/api/sessions/{sid}/questions/{qid}/vote",
        Member,
    ),
    (
        "POST",
        "/classroom/api/sessions/{sid}/questions/{qid}/state",
        Staff,
    ),
    (
        "POST",
        "/classroom/api/sessions/{sid}/questions/{qid}/answer",
        Staff,
    ),
    ("GET", "/classroom/api/courses/{id}/decks", Member),
    ("POST", "/classroom/api/courses/{id}/decks", Staff),
    ("POST", "/classroom/api/courses/{id}/decks/upload", Staff),
    ("GET", "/classroom/api/decks/{did}", Member),
    ("DELETE", "/classroom/api/decks/{did}", Staff),
    ("GET", "/classroom/api/files/{fid}", Member),
    ("POST", "/classroom/api/sessions/{sid}/slides", Staff),
    ("PATCH", "/classroom/api/sessions/{sid}/slides", Staff),
    ("POST", "/classroom/api/sessions/{sid}/slides/page", Staff),
    ("POST", "/classroom/api/sessions/{sid}/polls", Staff),
    ("GET", "/classroom/api/sessions/{sid}/polls/{pid}", Member),
    ("DELETE", "/classroom/api/sessions/{sid}/polls/{pid}", Staff),
    ("POST", "/classroom/api/sessions/{sid}/polls/{pid}/open", Staff),
    ("POST", "/classroom/api/sessions/{sid}/polls/{pid}/close", Staff),
    ("POST", "/classroom/api/sessions/{sid}/polls/{pid}/reveal", Staff),
    ("POST", "/classroom/api/sessions/{sid}/polls/{pid}/reset", Staff),
    ("POST", "/classroom/api/sessions/{sid}/polls/{pid}/answer", Member),
    ("PUT", "/classroom/api/sessions/{sid}/groups", Staff),
    ("PATCH", "/classroom/api/sessions/{sid}/groups", Staff),
    ("DELETE", "/classroom/api/sessions/{sid}/groups", Staff),
    ("POST", "/classroom/api/sessions/{sid}/groups/split", Staff),
    ("POST", "/classroom/api/sessions/{sid}/groups/leave", Member),
    ("POST", "/classroom/api/sessions/{sid}/groups/timer", Staff),
    ("POST", "/classroom/api/sessions/{sid}/groups/broadcast", Staff),
    ("PATCH", "/classroom/api/sessions/{sid}/groups/{gid}", Staff),
    (
        "POST",
        "/classroom/api/sessions/{sid}/groups/{gid}/members",
        Staff,
    ),
    (
        "DELETE",
        "/classroom/api/sessions/{sid}/groups/{gid}/members/{user_id}",
        Staff,
    ),
    ("POST", "/classroom/api/sessions/{sid}/groups/{gid}/join", Member),
];

/// The routes herald-classroom's source declares: each `.route("PATH",
/// get(..).post(..))` as (METHOD, PATH).
fn routes_in_source() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../herald-classroom/src");
    let mut files = vec![dir];
    let mut found = BTreeSet::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            // The call's text, up to its closing parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .unwrap();
            let call = &rest[..end];
            let Some(path) = call.split('"').nth(1) else {
                continue; // a `.route(` in a comment or a string
            };
            if !path.starts_with("/classroom/api/") {
                continue;
            }
            for method in ["get", "post", "put", "patch", "delete"] {
                let token = format!("{method}(");
                let declared = call.match_indices(&token).any(|(i, _)| {
                    i == 0
                        || !call.as_bytes()[i - 1].is_ascii_alphanumeric() && call.as_bytes()[i - 1] != b'_'
                });
                if declared {
                    found.insert((method.to_ascii_uppercase(), path.to_owned()));
                }
            }
        }
    }
    found
}

#[test]
fn the_table_names_every_route_of_the_classroom() {
    let source = routes_in_source();
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(table.len(), ROUTES.len(), "a route is in the table twice");
    let missing: Vec<_> = source.difference(&table).collect();
    let gone: Vec<_> = table.difference(&source).collect();
    assert!(
        missing.is_empty() && gone.is_empty(),
        "routes not in the table (say who may call them): {missing:?}; in the table but not in the source: {gone:?}"
    );
}

/// A live session with something of every kind in it, and its people.
struct Fixture {
    class: Class,
    co_trainer: Browser,
    guest: Browser,
    /// Substitutes of the path parameters.
    ids: Vec<(&'static str, String)>,
    sid: String,
}

impl Fixture {
    async fn new(server: &TestServer) -> Fixture {
        let class = Class::new(server).await;
        let t = &class.trainer;
        let cid = class.course_id.clone();
        let (status, v) = t
            .call(
                Method::PATCH,
                &format!("/courses/{cid}"),
                json!({ "guests_allowed": true }),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        let (co_trainer, co_id) = class.another_student(server, "Cora").await;
        let (status, v) = t
            .post(
                &format!("/courses/{cid}/roster/{co_id}"),
                json!({ "role": "co_trainer" }),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        let mut guest = Browser::new(server);
        let (status, v) = guest
            .post("/auth/guest", json!({ "code": class.join_code, "name": "Gus" }))
            .await;
        assert_eq!(status, 201, "{v}");
        guest.csrf = v["csrf"].as_str().map(String::from);

        let sid = class.session("Access").await;
        assert_eq!(t.act(&sid, "start").await.0, 200);
        let (status, v) = t
            .post(
                &format!("/sessions/{sid}/polls"),
                json!({ "kind": "single", "question": "Which?", "options": ["a", "b"] }),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        let pid = v["poll"]["id"].as_str().unwrap().to_owned();
        let (status, v) = class
            .student
            .post(&format!("/sessions/{sid}/questions"), json!({ "text": "Why?" }))
            .await;
        assert_eq!(status, 201, "{v}");
        let qid = v["question"]["id"].as_str().unwrap().to_owned();
        let (status, v) = t.upload_deck(&cid, "Diagram", "image/png", tiny_png()).await;
        assert_eq!(status, 201, "{v}");
        let did = v["deck"]["id"].as_str().unwrap().to_owned();
        let fid = v["deck"]["slides"][0]["image"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        let (status, v) = t
            .call(
                Method::PUT,
                &format!("/sessions/{sid}/groups"),
                json!({ "groups": [{ "name": "A" }, { "name": "B" }] }),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        let gid = v["snapshot"]["groups"]["groups"][0]["id"]
            .as_str()
            .or_else(|| v["groups"]["groups"][0]["id"].as_str())
            .unwrap_or_else(|| panic!("a group id in {v}"))
            .to_owned();
        let ids = vec![
            ("{id}", cid),
            ("{sid}", sid.clone()),
            ("{pid}", pid),
            ("{qid}", qid),
            ("{did}", did),
            ("{fid}", fid),
            ("{gid}", gid),
            ("{user_id}", class.student_id.clone()),
        ];
        Fixture {
            class,
            co_trainer,
            guest,
            ids,
            sid,
        }
    }

    /// The route's path with the fixture's ids (`{user_id}`: the student).
    fn path(&self, template: &str) -> String {
        let mut p = template.strip_prefix("/classroom/api").unwrap().to_owned();
        for (k, v) in &self.ids {
            p = p.replace(k, v);
        }
        p
    }

    /// [`Fixture::state`] once it stops moving (changes that are coalesced,
    /// as a question's event, reach the log a moment later).
    async fn settled_state(&self) -> Value {
        let mut last = self.state().await;
        for _ in 0..20 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let now = self.state().await;
            if now == last {
                return now;
            }
            last = now;
        }
        panic!("the session kept changing: {last}");
    }

    /// Everything a refused request must have left as it was: the course, its
    /// roster and decks and sessions, and the live session's log.
    async fn state(&self) -> Value {
        let t = &self.class.trainer;
        let cid = &self.class.course_id;
        let mut log = Vec::new();
        let mut after = 0;
        loop {
            let (status, v) = t.get(&format!("/sessions/{}/log?after={after}", self.sid)).await;
            assert_eq!(status, 200, "{v}");
            log.extend(v["entries"].as_array().unwrap().iter().map(|e| {
                let events: Vec<&Value> = e["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|ev| &ev["event"])
                    .collect();
                json!([e["seq"], events])
            }));
            if v["more"] != true {
                break;
            }
            after = v["next"].as_u64().unwrap();
        }
        let mut out = json!({ "log": log });
        for what in ["", "/roster", "/decks", "/sessions"] {
            let (status, v) = t.get(&format!("/courses/{cid}{what}")).await;
            assert_eq!(status, 200, "{v}");
            out[what] = v;
        }
        let (_, courses) = t.get("/courses").await;
        out["courses"] = courses;
        out
    }
}

/// A body a staff member's request of that route would be served with.
fn body_of(method: &str, template: &str, f: &Fixture) -> Value {
    let tail = template.rsplit('/').next().unwrap();
    match (method, tail) {
        ("PATCH", "{id}") => json!({ "title": "Taken over" }),
        ("POST", "{user_id}") => json!({ "role": "trainer" }),
        ("POST", "sessions") => json!({ "title": "Mine" }),
        ("PATCH", "qa") => json!({ "moderation": true }),
        ("POST", "state") => json!({ "state": "dismissed" }),
        ("POST", "answer") if template.contains("questions") => {
            json!({ "mode": "public", "text": "Because." })
        }
        ("POST", "answer") => json!({ "answer": "a" }),
        ("POST", "decks") => json!({ "title": "Mine", "markdown": "# Mine" }),
        ("POST", "slides") => json!({ "deck_id": f.ids[4].1 }),
        ("PATCH", "slides") => json!({ "mode": "free" }),
        ("POST", "page") => json!({ "page": 0 }),
        ("POST", "polls") => json!({ "kind": "single", "question": "Mine", "options": ["a", "b"] }),
        ("POST", "reveal") => json!({ "visible": true }),
        ("PUT", "groups") => json!({ "groups": [{ "name": "X" }] }),
        ("PATCH", "groups") => json!({ "mode": "pick" }),
        ("POST", "split") => json!({ "count": 2 }),
        ("POST", "timer") => json!({ "extend_s": 60 }),
        ("POST", "broadcast") => json!({ "text": "Hello" }),
        ("PATCH", "{gid}") => json!({ "name": "Mine" }),
        ("POST", "members") => json!({ "user_id": f.class.student_id }),
        ("PATCH", "{qid}") => json!({ "text": "Edited" }),
        ("POST", "questions") => json!({ "text": "Another?" }),
        ("POST", "join") if template.contains("courses") => json!({ "code": "ABCDEFGH" }),
        ("POST", "courses") => json!({ "title": "Mine" }),
        ("POST", "signup") => {
            json!({ "email": "eve@example.org", "name": "Eve", "password": "a long password" })
        }
        ("POST", "signin") => json!({ "email": "eve@example.org", "password": "a long password" }),
        ("POST", "guest") => json!({ "code": "ABCDEFGH", "name": "Eve" }),
        _ => json!({}),
    }
}

/// Sends one request of `route` as `who`, with `csrf` as the header (None:
/// no header) and `origin` (None: none, as a same-origin fetch may send).
async fn send(
    b: &Browser,
    f: &Fixture,
    (method, template): (&str, &str),
    csrf: Option<&str>,
    origin: Option<&str>,
) -> (u16, Value) {
    let url = format!("{}{}", b.base, f.path(template));
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = if template.ends_with("/upload") {
        b.http
            .request(method.clone(), format!("{url}?title=Mine"))
            .header("content-type", "image/png")
            .body(tiny_png())
    } else if method == Method::GET {
        b.http.get(url)
    } else {
        b.http
            .request(method.clone(), url)
            .json(&body_of(method.as_str(), template, f))
    };
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    b.send(req.timeout(REQUEST_WAIT)).await
}

#[tokio::test]
async fn every_classroom_route_checks_csrf_origin_and_role() {
    let server = TestServer::start().await;
    let f = Fixture::new(&server).await;
    let before = f.settled_state().await;
    let trainer = &f.class.trainer;
    let mut other = Browser::new(&server);
    other.new_account("Olga").await;
    let foreign_csrf = other.csrf.clone().unwrap();
    let mut tally = Tally::default();

    for &(method, template, who) in ROUTES {
        let route = (method, template);
        let name = format!("{method} {template}");
        // CSRF: the trainer's cookie, without the token or with another
        // session's, on every state-changing route of a signed-in member.
        if method != "GET" && who != Anyone {
            let got = send(trainer, &f, route, None, None).await;
            tally.refused(format!("{name} without a CSRF token"), &got, 403, "csrf_failed");
            let got = send(trainer, &f, route, Some(&foreign_csrf), None).await;
            tally.refused(
                format!("{name} with another session's CSRF token"),
                &got,
                403,
                "csrf_failed",
            );
            let got = send(trainer, &f, route, Some("forged"), None).await;
            tally.refused(
                format!("{name} with a made-up CSRF token"),
                &got,
                403,
                "csrf_failed",
            );
        }
        // Origin: a page elsewhere, even with the right CSRF token.
        for origin in ["https://evil.example", "null"] {
            let got = send(trainer, &f, route, trainer.csrf.as_deref(), Some(origin)).await;
            tally.refused(format!("{name} from {origin}"), &got, 403, "origin_not_allowed");
        }
        // Roles.
        let refused: Vec<(&str, &Browser)> = match who {
            Staff => vec![("a student", &f.class.student), ("a guest", &f.guest)],
            Trainer => vec![
                ("a student", &f.class.student),
                ("a guest", &f.guest),
                ("a co-trainer", &f.co_trainer),
            ],
            _ => Vec::new(),
        };
        for (person, b) in refused {
            let got = send(b, &f, route, b.csrf.as_deref(), None).await;
            tally.refused(format!("{name} by {person}"), &got, 403, "forbidden");
        }
    }
    tally.assert_clean();
    assert!(tally.tries >= 300, "{} tries", tally.tries);
    assert_eq!(
        f.settled_state().await,
        before,
        "a refused request changed something"
    );
    // The trainer's own session and token still work.
    let (status, v) = trainer
        .post(
            &format!("/sessions/{}/polls", f.sid),
            json!({ "kind": "single", "question": "Still?", "options": ["yes", "no"] }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
}
