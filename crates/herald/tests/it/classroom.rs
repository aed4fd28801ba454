//! The classroom API (accounts, courses, enrolment) over real HTTP, with a
//! cookie-keeping client per person, as a browser would.

use serde_json::{json, Value};

use crate::support::*;

/// One person's browser: keeps cookies, and sends the CSRF token it was given.
pub(crate) struct Browser {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) csrf: Option<String>,
}

impl Browser {
    pub(crate) fn new(server: &TestServer) -> Self {
        Self {
            base: format!("{}/classroom/api", server.url),
            http: reqwest::Client::builder().cookie_store(true).build().unwrap(),
            csrf: None,
        }
    }

    pub(crate) async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    /// A state-changing request with this browser's CSRF token.
    pub(crate) async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(&body);
        if let Some(t) = &self.csrf {
            req = req.header("x-csrf-token", t);
        }
        self.send(req).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, body).await
    }

    /// Signs up; on success keeps the CSRF token.
    pub(crate) async fn signup(&mut self, email: &str, name: &str, password: &str) -> (u16, Value) {
        let (status, v) = self
            .post(
                "/auth/signup",
                json!({ "email": email, "name": name, "password": password }),
            )
            .await;
        if status == 201 {
            self.csrf = v["csrf"].as_str().map(String::from);
        }
        (status, v)
    }

    pub(crate) async fn signin(&mut self, email: &str, password: &str) -> (u16, Value) {
        let (status, v) = self
            .post("/auth/signin", json!({ "email": email, "password": password }))
            .await;
        if status == 200 {
            self.csrf = v["csrf"].as_str().map(String::from);
        }
        (status, v)
    }

    /// A new account with a unique email; returns its user id.
    pub(crate) async fn new_account(&mut self, name: &str) -> String {
        let unique = herald_store::credentials::generate_secret("");
        let email = format!("{}.{}@example.org", name.to_lowercase(), &unique[..12]);
        let (status, v) = self.signup(&email, name, "correct horse battery").await;
        assert_eq!(status, 201, "{v}");
        v["user"]["id"].as_str().unwrap().to_owned()
    }
}

pub(crate) fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn sign_up_me_sign_out_me() {
    let server = TestServer::start().await;
    let mut ada = Browser::new(&server);

    let res = ada
        .http
        .post(format!("{}/auth/signup", ada.base))
        .json(&json!({ "email": " Ada@Example.ORG ", "name": "  Ada Lovelace ", "password": "analytical engine" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = cookies.iter().find(|c| c.starts_with("herald_session=")).unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=2592000"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(!session.contains("Secure"), "not Secure by default: {session}");
    let csrf_cookie = cookies.iter().find(|c| c.starts_with("herald_csrf=")).unwrap();
    assert!(csrf_cookie.contains("SameSite=Strict") && !csrf_cookie.contains("HttpOnly"));
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["user"]["email"], "ada@example.org", "trimmed and lower-cased");
    assert_eq!(v["user"]["name"], "Ada Lovelace");
    assert!(v["user"].get("password_hash").is_none());
    let csrf = v["csrf"].as_str().unwrap().to_owned();
    assert!(
        csrf_cookie.starts_with(&format!("herald_csrf={csrf};")),
        "the cookie holds the token"
    );
    ada.csrf = Some(csrf);

    let (status, me) = ada.get("/auth/me").await;
    assert_eq!(status, 200);
    assert_eq!(me["user"], v["user"]);

    let (status, _) = ada.post("/auth/signout", json!({})).await;
    assert_eq!(status, 204);
    let (status, me) = ada.get("/auth/me").await;
    assert_eq!((status, code(&me)), (401, "unauthorized"), "{me}");

    // Signing in again works, in any case of the email.
    let (status, v) = ada.signin("ADA@example.org", "analytical engine").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(ada.get("/auth/me").await.0, 200);

    // A stranger with no cookie is not signed in.
    let stranger = Browser::new(&server);
    let (status, v) = stranger.get("/auth/me").await;
    assert_eq!((status, code(&v)), (401, "unauthorized"));
}

#[tokio::test]
async fn a_stolen_cookie_stops_working_after_sign_out() {
    let server = TestServer::start().await;
    let mut ada = Browser::new(&server);
    ada.new_account("Ada").await;
    // A second sign-in elsewhere; its raw cookie, replayed by another client,
    // stops working once that session signs out.
    let (_, me) = ada.get("/auth/me").await;
    let email = me["user"]["email"].as_str().unwrap().to_owned();
    let res = reqwest::Client::new()
        .post(format!("{}/auth/signin", ada.base))
        .json(&json!({ "email": email, "password": "correct horse battery" }))
        .send()
        .await
        .unwrap();
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("herald_session="))
        .unwrap();
    let csrf: Value = res.json().await.unwrap();
    let thief = reqwest::Client::new();
    let me = |c: &str| {
        thief
            .get(format!("{}/auth/me", ada.base))
            .header("cookie", c.to_owned())
            .send()
    };
    assert_eq!(me(&cookie).await.unwrap().status(), 200);
    let out = thief
        .post(format!("{}/auth/signout", ada.base))
        .header("cookie", cookie.clone())
        .header("x-csrf-token", csrf["csrf"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(me(&cookie).await.unwrap().status(), 401);
    // The other session (the browser's own) is still signed in.
    assert_eq!(ada.get("/auth/me").await.0, 200);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let server = TestServer::start().await;
    let mut ada = Browser::new(&server);
    ada.signup("ada@example.org", "Ada", "analytical engine").await;

    let mut eve = Browser::new(&server);
    let (s1, wrong_password) = eve.signin("ada@example.org", "difference engine").await;
    let (s2, unknown_email) = eve.signin("bob@example.org", "analytical engine").await;
    assert_eq!((s1, code(&wrong_password)), (401, "bad_credentials"));
    assert_eq!(s2, 401);
    assert_eq!(wrong_password, unknown_email, "one answer for both");
    assert_eq!(eve.get("/auth/me").await.0, 401, "no session was started");
}

#[tokio::test]
async fn an_email_has_one_account() {
    let server = TestServer::start().await;
    let mut a = Browser::new(&server);
    assert_eq!(
        a.signup("ada@example.org", "Ada", "analytical engine").await.0,
        201
    );
    let mut b = Browser::new(&server);
    let (status, v) = b.signup("ADA@example.org", "Other Ada", "other password").await;
    assert_eq!((status, code(&v)), (409, "email_taken"), "{v}");
    assert_eq!(b.get("/auth/me").await.0, 401);
    // The first account's password still works.
    assert_eq!(b.signin("ada@example.org", "analytical engine").await.0, 200);
}

#[tokio::test]
async fn bad_sign_up_inputs_are_refused_with_their_code() {
    let server = TestServer::start().await;
    let mut b = Browser::new(&server);
    let long_name = "n".repeat(81);
    for (email, name, password, expected) in [
        ("ada@example.org", "Ada", "", "invalid_password"),
        ("ada@example.org", "Ada", "short", "invalid_password"),
        ("ada@example.org", "Ada", &"p".repeat(1025), "invalid_password"),
        ("ada.example.org", "Ada", "long enough", "invalid_email"),
        ("ada@example", "Ada", "long enough", "invalid_email"),
        ("a@b@example.org", "Ada", "long enough", "invalid_email"),
        ("ada@example.org", "   ", "long enough", "invalid_name"),
        (
            "ada@example.org",
            long_name.as_str(),
            "long enough",
            "invalid_name",
        ),
    ] {
        let (status, v) = b.signup(email, name, password).await;
        assert_eq!(
            (status, code(&v)),
            (400, expected),
            "{email} {name} {password}: {v}"
        );
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    // Not JSON, a missing field, an unknown field.
    let raw = |body: &'static str| {
        b.http
            .post(format!("{}/auth/signup", b.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in [
        "email=ada",
        "{\"email\":\"ada@example.org\"}",
        "{\"email\":\"a@b.co\",\"name\":\"A\",\"password\":\"long enough\",\"admin\":true}",
        "",
    ] {
        let res = raw(body).await.unwrap();
        assert_eq!(res.status(), 400, "{body}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(code(&v), "invalid_json", "{body}: {v}");
    }
    // Nothing was created along the way.
    assert_eq!(b.signin("ada@example.org", "long enough").await.0, 401);
}

#[tokio::test]
async fn courses_join_codes_roles_and_the_roster() {
    let server = TestServer::start().await;
    let mut trainer = Browser::new(&server);
    let trainer_id = trainer.new_account("Tess").await;
    let mut student = Browser::new(&server);
    let student_id = student.new_account("Sam").await;
    let mut outsider = Browser::new(&server);
    outsider.new_account("Olga").await;

    // The trainer creates a course and sees its join code.
    let (status, v) = trainer.post("/courses", json!({ "title": "  Algebra I " })).await;
    assert_eq!(status, 201, "{v}");
    let course = &v["course"];
    assert_eq!(
        (course["title"].as_str(), course["role"].as_str()),
        (Some("Algebra I"), Some("trainer"))
    );
    assert_eq!(course["guests_allowed"], false);
    let id = course["id"].as_str().unwrap().to_owned();
    let join_code = course["join_code"].as_str().unwrap().to_owned();
    let (_, mine) = trainer.get("/courses").await;
    assert_eq!(mine["courses"][0]["id"], id.as_str());
    assert_eq!(mine["courses"][0]["role"], "trainer");

    // A bad code is refused; the real one (any case, with a dash) enrols a student.
    let (status, v) = student
        .post("/courses/join", json!({ "code": "NOPE-NOPE" }))
        .await;
    assert_eq!((status, code(&v)), (404, "course_not_found"));
    let typed = format!("{}-{}", &join_code[..4], &join_code[4..]).to_lowercase();
    let (status, v) = student.post("/courses/join", json!({ "code": typed })).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["course"]["role"], "student");
    assert!(
        v["course"].get("join_code").is_none(),
        "students do not see the code: {v}"
    );
    // Joining again changes nothing; the trainer joining stays trainer.
    let (status, v) = student.post("/courses/join", json!({ "code": join_code })).await;
    assert_eq!((status, v["course"]["role"].as_str()), (200, Some("student")));
    let (_, v) = trainer.post("/courses/join", json!({ "code": join_code })).await;
    assert_eq!(v["course"]["role"], "trainer");

    let (status, v) = student.get(&format!("/courses/{id}")).await;
    assert_eq!((status, v["course"]["role"].as_str()), (200, Some("student")));
    assert!(v["course"].get("join_code").is_none(), "{v}");
    let (_, theirs) = student.get("/courses").await;
    assert_eq!(theirs["courses"][0]["role"], "student");
    assert!(theirs["courses"][0].get("join_code").is_none());

    // The roster lists both with their roles; emails only for the trainer.
    let (status, roster) = trainer.get(&format!("/courses/{id}/roster")).await;
    assert_eq!(status, 200);
    let lines: Vec<_> = roster["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["user_id"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        lines,
        vec![(trainer_id.as_str(), "trainer"), (student_id.as_str(), "student")]
    );
    assert!(roster["members"][1]["email"]
        .as_str()
        .unwrap()
        .starts_with("sam."));
    let (status, seen_by_student) = student.get(&format!("/courses/{id}/roster")).await;
    assert_eq!(status, 200);
    assert_eq!(seen_by_student["members"][0]["name"], "Tess");
    assert!(seen_by_student["members"][0].get("email").is_none());

    // The student may not change roles, the code, or the settings.
    let (status, v) = student
        .post(
            &format!("/courses/{id}/roster/{student_id}"),
            json!({ "role": "trainer" }),
        )
        .await;
    assert_eq!((status, code(&v)), (403, "forbidden"), "{v}");
    let (status, v) = student.post(&format!("/courses/{id}/code"), json!({})).await;
    assert_eq!((status, code(&v)), (403, "forbidden"));
    let (status, v) = student
        .call(
            reqwest::Method::PATCH,
            &format!("/courses/{id}"),
            json!({ "guests_allowed": true }),
        )
        .await;
    assert_eq!((status, code(&v)), (403, "forbidden"));

    // A non-member sees nothing of the course; an unknown course is 404.
    for path in [format!("/courses/{id}"), format!("/courses/{id}/roster")] {
        let (status, v) = outsider.get(&path).await;
        assert_eq!((status, code(&v)), (403, "forbidden"), "{path}");
    }
    let (status, v) = outsider.get("/courses/c_nope").await;
    assert_eq!((status, code(&v)), (404, "course_not_found"));
    let (_, v) = outsider.get("/courses").await;
    assert_eq!(v["courses"], json!([]));

    // The last trainer cannot be demoted.
    let (status, v) = trainer
        .post(
            &format!("/courses/{id}/roster/{trainer_id}"),
            json!({ "role": "student" }),
        )
        .await;
    assert_eq!((status, code(&v)), (409, "last_trainer"), "{v}");
    let (status, v) = trainer
        .post(
            &format!("/courses/{id}/roster/{student_id}"),
            json!({ "role": "chief" }),
        )
        .await;
    assert_eq!((status, code(&v)), (400, "invalid_parameter"));
    let (status, v) = trainer
        .post(
            &format!("/courses/{id}/roster/u_nobody"),
            json!({ "role": "student" }),
        )
        .await;
    assert_eq!((status, code(&v)), (404, "member_not_found"));

    // Promoted to co-trainer, the student now sees the code.
    let (status, v) = trainer
        .post(
            &format!("/courses/{id}/roster/{student_id}"),
            json!({ "role": "co_trainer" }),
        )
        .await;
    assert_eq!((status, v["role"].as_str()), (200, Some("co_trainer")));
    let (_, v) = student.get(&format!("/courses/{id}")).await;
    assert_eq!(v["course"]["join_code"], join_code.as_str());

    // A new code: the old one stops working, the new one works.
    let (status, v) = trainer.post(&format!("/courses/{id}/code"), json!({})).await;
    assert_eq!(status, 200);
    let new_code = v["join_code"].as_str().unwrap().to_owned();
    assert_ne!(new_code, join_code);
    let (status, _) = outsider.post("/courses/join", json!({ "code": join_code })).await;
    assert_eq!(status, 404);
    let (status, v) = outsider.post("/courses/join", json!({ "code": new_code })).await;
    assert_eq!((status, v["course"]["role"].as_str()), (200, Some("student")));

    // The trainer's settings.
    let (status, v) = trainer
        .call(
            reqwest::Method::PATCH,
            &format!("/courses/{id}"),
            json!({ "guests_allowed": true, "title": "Algebra II" }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["course"]["title"].as_str(),
            v["course"]["guests_allowed"].as_bool()
        ),
        (Some("Algebra II"), Some(true))
    );
    let (status, v) = trainer
        .call(
            reqwest::Method::PATCH,
            &format!("/courses/{id}"),
            json!({ "title": "" }),
        )
        .await;
    assert_eq!((status, code(&v)), (400, "invalid_name"));
}

#[tokio::test]
async fn the_classroom_api_needs_a_session() {
    let server = TestServer::start().await;
    let anonymous = Browser::new(&server);
    for (status, v) in [
        anonymous.get("/courses").await,
        anonymous.post("/courses", json!({ "title": "x" })).await,
        anonymous
            .post("/courses/join", json!({ "code": "ABCDEFGH" }))
            .await,
        anonymous.post("/auth/signout", json!({})).await,
    ] {
        assert_eq!((status, code(&v)), (401, "unauthorized"), "{v}");
    }
}

#[tokio::test]
async fn secure_cookies_when_configured() {
    let server = TestServer::start_with(|c| c.classroom.secure_cookies = true).await;
    let res = reqwest::Client::new()
        .post(format!("{}/classroom/api/auth/signup", server.url))
        .json(&json!({ "email": "ada@example.org", "name": "Ada", "password": "analytical engine" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let cookies: Vec<_> = res.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies.len(), 2);
    for c in cookies {
        assert!(c.to_str().unwrap().ends_with("; Secure"), "{c:?}");
    }
}

/// Two nodes on one PostgreSQL database: an account made on one signs in on the
/// other, and a session started on one is valid on the other.
#[tokio::test]
async fn accounts_and_sessions_are_shared_by_the_nodes_of_a_cluster() {
    let url = std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let a = TestServer::start_with(|c| c.database = url.clone()).await;
    let b = TestServer::start_with(|c| c.database = url.clone()).await;
    let mut on_a = Browser::new(&a);
    on_a.new_account("Nia").await;
    let (_, me) = on_a.get("/auth/me").await;
    let (status, v) = on_a.post("/courses", json!({ "title": "Shared" })).await;
    assert_eq!(status, 201, "{v}");
    let id = v["course"]["id"].as_str().unwrap();

    // The same browser (same cookies) talking to node b.
    on_a.base = format!("{}/classroom/api", b.url);
    let (status, v) = on_a.get(&format!("/courses/{id}")).await;
    assert_eq!(
        (status, v["course"]["role"].as_str()),
        (200, Some("trainer")),
        "{v}"
    );
    let mut on_b = Browser::new(&b);
    let (status, _) = on_b
        .signin(me["user"]["email"].as_str().unwrap(), "correct horse battery")
        .await;
    assert_eq!(status, 200);
    a.stop().await;
    b.stop().await;
}

/// Signs in with a wrong or right password from `address` (sent as
/// `X-Forwarded-For`, which the server below trusts).
async fn sign_in_from(
    server: &TestServer,
    address: &str,
    email: &str,
    password: &str,
) -> (u16, Value, Option<u64>) {
    let res = reqwest::Client::new()
        .post(format!("{}/classroom/api/auth/signin", server.url))
        .header("x-forwarded-for", format!("198.51.100.1, {address}"))
        .json(&json!({ "email": email, "password": password }))
        .timeout(REQUEST_WAIT)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, res.json().await.unwrap(), retry)
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_account_and_per_address() {
    use herald_classroom::throttle::{ACCOUNT_TRIES, ADDRESS_TRIES};
    let server = TestServer::start_with(|c| {
        c.classroom.client_ip_header = Some("x-forwarded-for".parse().unwrap());
    })
    .await;
    let mut ada = Browser::new(&server);
    ada.signup("ada@example.org", "Ada", "the right password").await;
    let mut bob = Browser::new(&server);
    bob.signup("bob@example.org", "Bob", "bob's own password").await;

    // One account, guessed at from many addresses: its tries, then 429 with
    // Retry-After, even for the right password; an unknown email alike.
    for email in ["ada@example.org", "nobody@example.org"] {
        for i in 0..ACCOUNT_TRIES {
            let (status, v, _) = sign_in_from(&server, &format!("192.0.2.{i}"), email, "a wrong guess").await;
            assert_eq!(
                (status, code(&v)),
                (401, "bad_credentials"),
                "{email} try {i}: {v}"
            );
        }
        for password in ["another guess", "the right password"] {
            let (status, v, retry) = sign_in_from(&server, "192.0.2.200", email, password).await;
            assert_eq!((status, code(&v)), (429, "rate_limited"), "{email}: {v}");
            assert!(
                retry.is_some_and(|s| (1..=60).contains(&s)),
                "Retry-After {retry:?}"
            );
        }
    }
    // Other accounts are not held up.
    let (status, v, _) = sign_in_from(&server, "192.0.2.201", "bob@example.org", "bob's own password").await;
    assert_eq!(status, 200, "{v}");

    // One address guessing across accounts: its tries (a few at a time),
    // then 429 for any account; another address is not held up.
    let guesses = (0..ADDRESS_TRIES).map(|i| {
        let server = &server;
        async move {
            sign_in_from(
                server,
                "203.0.113.9",
                &format!("user{i}@example.org"),
                "a wrong guess",
            )
            .await
        }
    });
    let mut answers = Vec::new();
    let mut guesses = guesses.collect::<Vec<_>>().into_iter();
    loop {
        let batch: Vec<_> = guesses.by_ref().take(8).collect();
        if batch.is_empty() {
            break;
        }
        answers.extend(futures_util::future::join_all(batch).await);
    }
    assert!(
        answers
            .iter()
            .all(|(s, v, _)| (*s, code(v)) == (401, "bad_credentials")),
        "{answers:?}"
    );
    let (status, v, _) = sign_in_from(&server, "203.0.113.9", "bob@example.org", "bob's own password").await;
    assert_eq!((status, code(&v)), (429, "rate_limited"), "{v}");
    let (status, v, _) = sign_in_from(&server, "203.0.113.10", "bob@example.org", "bob's own password").await;
    assert_eq!(status, 200, "{v}");
    // Successes count for nothing: bob signs in again and again.
    for _ in 0..ACCOUNT_TRIES + 2 {
        let (status, v, _) =
            sign_in_from(&server, "203.0.113.10", "bob@example.org", "bob's own password").await;
        assert_eq!(status, 200, "{v}");
    }

    // Without client_ip_header, a client's X-Forwarded-For is not believed:
    // its own address is held up whatever it claims.
    let direct = TestServer::start().await;
    let mut answers = Vec::new();
    for chunk in (0..ADDRESS_TRIES).collect::<Vec<_>>().chunks(8) {
        let batch = chunk.iter().map(|i| {
            let direct = &direct;
            async move {
                sign_in_from(
                    direct,
                    &format!("192.0.2.{i}"),
                    &format!("u{i}@example.org"),
                    "guess",
                )
                .await
            }
        });
        answers.extend(futures_util::future::join_all(batch).await);
    }
    assert!(answers.iter().all(|(s, _, _)| *s == 401), "{answers:?}");
    let (status, v, _) = sign_in_from(&direct, "192.0.2.250", "someone@example.org", "guess").await;
    assert_eq!((status, code(&v)), (429, "rate_limited"), "{v}");
}

#[tokio::test]
async fn expired_web_sessions_are_swept() {
    let server = TestServer::start_with(|c| {
        c.classroom.session_ttl = std::time::Duration::from_secs(1);
        c.classroom.session_sweep = std::time::Duration::from_millis(200);
    })
    .await;
    // A guest never signs in again: nothing but the sweep removes its session.
    let mut trainer = Browser::new(&server);
    trainer.new_account("Tess").await;
    let (_, v) = trainer.post("/courses", json!({ "title": "Physics" })).await;
    let course = v["course"]["id"].as_str().unwrap().to_owned();
    let join_code = v["course"]["join_code"].as_str().unwrap().to_owned();
    let (status, _) = trainer
        .call(
            reqwest::Method::PATCH,
            &format!("/courses/{course}"),
            json!({ "guests_allowed": true }),
        )
        .await;
    assert_eq!(status, 200);
    let res = reqwest::Client::new()
        .post(format!("{}/classroom/api/auth/guest", server.url))
        .json(&json!({ "code": join_code, "name": "Gus" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let token = session_cookie(&res);
    let id = herald_classroom::auth::session_id(&token);
    let store = herald_store::sqlite::SqliteStore::open(&server.data_dir().join("herald.db"))
        .await
        .unwrap();
    use herald_store::ClassroomStore;
    assert!(
        store.web_session(&id).await.unwrap().is_some(),
        "the guest's session is stored"
    );
    eventually("the expired session is swept", WAIT * 2, || async {
        store.web_session(&id).await.unwrap().is_none().then_some(())
    })
    .await;
}
