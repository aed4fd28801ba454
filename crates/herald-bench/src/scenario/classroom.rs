//! `herald-bench classroom`: one trainer and N students (guests) in one live
//! session of a running server, as the classroom's own pages drive it: every
//! student joins, loads the snapshot, gets a token and subscribes to the
//! session's channel from the snapshot's cursor over SSE; then
//!
//! 1. **page flips**: the trainer turns pages; each student's arrival time of
//!    the `slides` event naming that page, minus the time the trainer's request
//!    was sent, is one delivery latency (p50, p99, max over all deliveries);
//! 2. **a poll**: the trainer opens a single-choice poll; every student answers
//!    once, at a random moment within `--poll-spread`; answer request latencies,
//!    the tally events the trainer received, and the time until the poll's total
//!    in the trainer's snapshot equals the number of students;
//! 3. **questions**: `--questions` students ask one question each, then
//!    `--upvotes` upvotes by distinct students (one each, never their own);
//!    request latencies and what reached the screens.
//!
//! One process, one clock: latencies include the trainer's request, the
//! sequencer, the fan-out and the client's parsing. Loopback only; every loop is
//! bounded by counts and by `--deadline`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use parking_lot::Mutex;
use rand::Rng;
use reqwest::header::{HeaderMap, COOKIE, SET_COOKIE};
use reqwest::{Client, Method};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::proc::{pids_of, proc_sample, raise_file_limit, ProcSample};
use crate::progress::{Progress, REDRAW};
use crate::report::percentile_ms;
use crate::wire::find;

/// What to run.
#[derive(Clone, Debug)]
pub struct ClassroomArgs {
    /// The server's base URL (the trainer's).
    pub url: String,
    /// The base URLs students are spread over, round robin (several nodes of
    /// a cluster); empty: `url`.
    pub student_urls: Vec<String>,
    /// Simulated students.
    pub students: usize,
    /// Page flips (the deck has one page more).
    pub flips: usize,
    /// Time between two flips.
    pub flip_interval: Duration,
    /// Students answer the poll at random moments within this window.
    pub poll_spread: Duration,
    /// Questions asked (by distinct students).
    pub questions: usize,
    /// Upvotes (by distinct students).
    pub upvotes: usize,
    /// HTTP requests in flight at once (joins, answers, questions, votes).
    pub concurrency: usize,
    /// After the phases: grow the session to this much history first
    /// ([`Fill`]), then measure the cost of single changes in it and in an
    /// empty session ([`CostReport`]); `None`: neither.
    pub fill: Option<Fill>,
    /// Changes of each kind the cost phase makes in each session.
    pub cost_changes: usize,
    /// Write `{url, session, cookie, csrf}` of the trainer here at the end
    /// (to time a cold load of the session after a restart).
    pub save_trainer: Option<std::path::PathBuf>,
    /// The server's process ids: CPU time and memory per phase.
    pub server_pids: Vec<u32>,
    /// Also every process whose command name (/proc/PID/comm) is this.
    pub server_pids_of: Option<String>,
    /// Give up after this long.
    pub deadline: Duration,
    /// A progress bar (on a terminal) and a line per phase on stderr.
    pub progress: bool,
}

impl Default for ClassroomArgs {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8080".into(),
            student_urls: Vec::new(),
            students: 5000,
            flips: 20,
            flip_interval: Duration::from_millis(500),
            poll_spread: Duration::from_secs(5),
            questions: 500,
            upvotes: 5000,
            concurrency: 200,
            fill: None,
            cost_changes: 0,
            save_trainer: None,
            server_pids: Vec::new(),
            server_pids_of: None,
            deadline: Duration::from_secs(600),
            progress: true,
        }
    }
}

/// Latencies of one kind, in milliseconds.
#[derive(Debug, Default, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    fn of(mut micros: Vec<u32>) -> Self {
        micros.sort_unstable();
        Self {
            count: micros.len(),
            p50_ms: percentile_ms(&micros, 0.50),
            p99_ms: percentile_ms(&micros, 0.99),
            max_ms: micros.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
        }
    }
}

/// The server's CPU time and memory over one phase.
#[derive(Debug, Default, Serialize)]
pub struct Cost {
    /// CPU seconds the server used in the phase.
    pub server_cpu_s: Option<f64>,
    /// Its resident memory at the end of the phase, MiB.
    pub server_rss_mib: Option<f64>,
}

/// Joining.
#[derive(Debug, Default, Serialize)]
pub struct JoinReport {
    /// Students subscribed.
    pub subscribed: usize,
    /// Students that failed to join or subscribe.
    pub failed: usize,
    /// Wall time until every student was subscribed, seconds.
    pub seconds: f64,
    /// Guest join + snapshot + token, per student.
    pub join: Latency,
    /// What the server spent.
    pub cost: Cost,
}

/// Page flips.
#[derive(Debug, Default, Serialize)]
pub struct FlipReport {
    /// Flips sent.
    pub flips: usize,
    /// Deliveries expected (flips x subscribed students).
    pub expected: u64,
    /// Deliveries seen.
    pub delivered: u64,
    /// From the trainer's request to each student's arrival.
    pub delivery: Latency,
    /// The trainer's flip request.
    pub request: Latency,
    /// What the server spent.
    pub cost: Cost,
}

/// The poll.
#[derive(Debug, Default, Serialize)]
pub struct PollReport {
    /// Answers accepted.
    pub answered: usize,
    /// Answers refused or failed.
    pub failed: usize,
    /// First answer sent to last answer accepted, seconds.
    pub answering_seconds: f64,
    /// Last answer accepted to the trainer's snapshot counting every answer, seconds.
    pub settled_seconds: f64,
    /// Whether the total in the trainer's snapshot equals `answered`.
    pub tally_exact: bool,
    /// Tally events the trainer's screen received during the phase.
    pub tally_events: u64,
    /// The highest number of tally events in one second.
    pub tally_events_max_per_second: u64,
    /// Tally events one student's screen received, on average.
    pub tally_events_per_student: f64,
    /// The answer request.
    pub request: Latency,
    /// What the server spent.
    pub cost: Cost,
}

/// Questions and upvotes.
#[derive(Debug, Default, Serialize)]
pub struct QuestionsReport {
    /// Questions accepted.
    pub asked: usize,
    /// Upvotes accepted.
    pub upvoted: usize,
    /// Refused or failed.
    pub failed: usize,
    /// The whole burst (asks, then upvotes), seconds.
    pub seconds: f64,
    /// The ask request.
    pub ask: Latency,
    /// The upvote request.
    pub upvote: Latency,
    /// Question events one student's screen received, on average.
    pub events_per_student: f64,
    /// Whether the votes in the trainer's snapshot add up to `upvoted`.
    pub votes_exact: bool,
    /// What the server spent.
    pub cost: Cost,
}

/// Everything measured.
#[derive(Debug, Default, Serialize)]
pub struct ClassroomReport {
    /// Students asked for.
    pub students: usize,
    /// Joining.
    pub join: JoinReport,
    /// Page flips.
    pub flips: FlipReport,
    /// The poll.
    pub poll: PollReport,
    /// Questions and upvotes.
    pub questions: QuestionsReport,
    /// The history added before the cost phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fill: Option<FillReport>,
    /// The cost of single changes in the full session and in an empty one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostReport>,
}

/// History added to the session before the cost phase: what a long lesson
/// leaves (every poll answered by every student, questions, votes, flips).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Fill {
    /// Polls in the session in all (each answered by every student).
    pub polls: usize,
    /// Questions in the session in all (asked by distinct students).
    pub questions: usize,
    /// Upvotes in the session in all.
    pub votes: usize,
    /// Page flips added.
    pub flips: usize,
}

/// What the fill did.
#[derive(Debug, Default, Serialize)]
pub struct FillReport {
    /// What was asked for.
    pub asked: Fill,
    /// Poll answers accepted.
    pub answers: usize,
    /// Questions accepted.
    pub questions: usize,
    /// Upvotes accepted.
    pub votes: usize,
    /// Requests refused or failed.
    pub failed: usize,
    /// Seconds.
    pub seconds: f64,
}

/// The server's cost of one change of a kind, averaged.
#[derive(Debug, Default, Serialize)]
pub struct ChangeCost {
    /// Changes made (one request each, one after the other).
    pub changes: usize,
    /// Server CPU per change, microseconds (every thread, from /proc schedstat).
    pub cpu_us: f64,
    /// Bytes the server caused to be written to storage per change (/proc io
    /// `write_bytes`: the store's files; nothing is subscribed meanwhile).
    pub written_bytes: f64,
    /// The request, milliseconds.
    pub request: Latency,
}

/// The cost of single changes in a full session and in an empty one.
#[derive(Debug, Default, Serialize)]
pub struct CostReport {
    /// A page flip by staff, in the full session.
    pub flip_full: ChangeCost,
    /// The same in an empty session.
    pub flip_empty: ChangeCost,
    /// An upvote, in the full session.
    pub vote_full: ChangeCost,
    /// The same in an empty session.
    pub vote_empty: ChangeCost,
    /// A poll answer, in the full session.
    pub answer_full: ChangeCost,
    /// The same in an empty session.
    pub answer_empty: ChangeCost,
}

/// A signed-in browser: its cookies and CSRF token.
#[derive(Clone, Debug)]
struct Person {
    id: String,
    /// The node this person talks to.
    base: String,
    cookie: String,
    csrf: String,
}

/// The HTTP side: one client (pooled), cookies sent by hand.
struct Api {
    http: Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        who: Option<&Person>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value, HeaderMap)> {
        self.call_with(who, method, path, body, false).await
    }

    /// [`Api::call`], with `Prefer: return=minimal` when `minimal` (a change
    /// then answers no snapshot).
    async fn call_with(
        &self,
        who: Option<&Person>,
        method: Method,
        path: &str,
        body: Option<Value>,
        minimal: bool,
    ) -> anyhow::Result<(u16, Value, HeaderMap)> {
        let base = who.map_or(self.base.as_str(), |p| p.base.as_str());
        let mut req = self.http.request(method, format!("{base}/classroom/api{path}"));
        if minimal {
            req = req.header("prefer", "return=minimal");
        }
        if let Some(p) = who {
            req = req.header(COOKIE, &p.cookie).header("x-csrf-token", &p.csrf);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.with_context(|| format!("{path}: no answer"))?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value, headers))
    }

    /// A call that must answer 2xx: its JSON.
    async fn ok(
        &self,
        who: Option<&Person>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, v, _) = self.call(who, method.clone(), path, body).await?;
        if !(200..300).contains(&status) {
            bail!("{method} {path}: {status} {v}");
        }
        Ok(v)
    }

    /// Signs in from an answer that set the cookies, on node `base`.
    /// Signs up a new account named `name` (a fresh address under
    /// `bench.{who}.…`) and answers it signed in.
    async fn sign_up(&self, who: &str, name: &str) -> anyhow::Result<Person> {
        let suffix = hex::encode(rand::random::<[u8; 6]>());
        let (status, v, headers) = self
            .call(
                None,
                Method::POST,
                "/auth/signup",
                Some(json!({
                    "email": format!("bench.{who}.{suffix}@example.org"),
                    "name": name,
                    "password": format!("bench-password-{suffix}"),
                })),
            )
            .await?;
        if status != 201 {
            bail!("the sign-up of {name} failed: {status} {v}");
        }
        Api::person(&v, &headers, &self.base)
    }

    fn person(v: &Value, headers: &HeaderMap, base: &str) -> anyhow::Result<Person> {
        let cookie = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok()?.split(';').next())
            .collect::<Vec<_>>()
            .join("; ");
        Ok(Person {
            id: v["user"]["id"].as_str().context("no user id")?.to_owned(),
            base: base.to_owned(),
            cookie,
            csrf: v["csrf"].as_str().context("no csrf")?.to_owned(),
        })
    }
}

/// What every student's reader shares with the phases.
#[derive(Default)]
struct Shared {
    /// page -> when the trainer's request for it was sent, micros since `t0`.
    flip_sent: Mutex<HashMap<u64, u64>>,
    /// Delivery latencies of flips, micros.
    flip_latency: Mutex<Vec<u32>>,
    /// Tally events seen by students.
    student_tallies: AtomicU64,
    /// Question events seen by students.
    student_questions: AtomicU64,
    /// Tally events seen by the trainer, by second since `t0`.
    trainer_tallies: Mutex<Vec<u64>>,
}

/// Runs the scenario.
///
/// # Errors
/// When the server cannot be reached, or refuses the setup (sign-up, course,
/// session, deck, poll).
pub async fn run(mut a: ClassroomArgs) -> anyhow::Result<ClassroomReport> {
    if let Some(name) = a.server_pids_of.take() {
        let found = pids_of(&name);
        if found.is_empty() {
            bail!("no process named {name:?}");
        }
        a.server_pids.extend(found);
    }
    if a.students == 0 || a.flips == 0 {
        bail!("--connections (students) and --messages (flips) must be at least 1");
    }
    if a.questions > a.students {
        bail!(
            "--questions ({}) cannot exceed the students ({})",
            a.questions,
            a.students
        );
    }
    if a.upvotes > a.students {
        bail!(
            "--upvotes ({}) cannot exceed the students ({}): one each",
            a.upvotes,
            a.students
        );
    }
    let limit = raise_file_limit();
    if (a.students as u64) + 200 > limit {
        bail!(
            "{} students need about {} open files; this process may open {limit} (run several generators)",
            a.students,
            a.students + 200
        );
    }
    let t0 = Instant::now();
    let deadline = t0 + a.deadline;
    let http = Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the HTTP client")?;
    let api = Arc::new(Api {
        http: http.clone(),
        base: a.url.trim_end_matches('/').to_owned(),
    });
    let mut report = ClassroomReport {
        students: a.students,
        ..Default::default()
    };

    // Setup: the trainer, a course open to guests, a live session, a deck on screen.
    let trainer = api.sign_up("trainer", "Bench Trainer").await?;
    let course = api
        .ok(
            Some(&trainer),
            Method::POST,
            "/courses",
            Some(json!({ "title": "Bench course" })),
        )
        .await?;
    let course_id = course["course"]["id"]
        .as_str()
        .context("no course id")?
        .to_owned();
    let code = course["course"]["join_code"]
        .as_str()
        .context("no join code")?
        .to_owned();
    api.ok(
        Some(&trainer),
        Method::PATCH,
        &format!("/courses/{course_id}"),
        Some(json!({ "guests_allowed": true })),
    )
    .await?;
    let session = api
        .ok(
            Some(&trainer),
            Method::POST,
            &format!("/courses/{course_id}/sessions"),
            Some(json!({ "title": "Bench session" })),
        )
        .await?;
    let sid = session["session"]["id"]
        .as_str()
        .context("no session id")?
        .to_owned();
    api.ok(
        Some(&trainer),
        Method::POST,
        &format!("/sessions/{sid}/start"),
        Some(json!({})),
    )
    .await?;
    let markdown: String = (0..=a.flips)
        .map(|i| format!("# Page {}\n\nText of page {}.\n\n", i + 1, i + 1))
        .collect();
    let deck = api
        .ok(
            Some(&trainer),
            Method::POST,
            &format!("/courses/{course_id}/decks"),
            Some(json!({ "title": "Bench deck", "markdown": markdown })),
        )
        .await?;
    let deck_id = deck["deck"]["id"].as_str().context("no deck id")?.to_owned();
    api.ok(
        Some(&trainer),
        Method::POST,
        &format!("/sessions/{sid}/slides"),
        Some(json!({ "deck_id": deck_id })),
    )
    .await?;

    let shared = Arc::new(Shared::default());
    let stop = CancellationToken::new();

    // The trainer's screen: counts the tally events of the staff channel (the
    // real tallies while the results are hidden from students).
    let trainer_snap = api
        .ok(Some(&trainer), Method::GET, &format!("/sessions/{sid}"), None)
        .await?;
    let trainer_token = api
        .ok(
            Some(&trainer),
            Method::GET,
            &format!("/sessions/{sid}/token"),
            None,
        )
        .await?;
    let (Some(channel), Some(cursor)) = (
        trainer_token["staff_channel"].as_str(),
        trainer_snap["staff_cursor"].as_str(),
    ) else {
        bail!("the trainer got no staff channel: {trainer_token}");
    };
    let res = http
        .get(sse_url(&api.base, channel, &trainer_token, cursor)?)
        .send()
        .await
        .context("the trainer's subscription")?;
    if res.status() != 200 {
        bail!("the trainer's subscription answered {}", res.status());
    }
    tokio::spawn(read_events(
        res,
        shared.clone(),
        stop.clone(),
        t0,
        Reader::Trainer,
    ));

    // 1. Join: every student a guest, snapshot, token, SSE from the cursor.
    let before = proc_sample(&a.server_pids);
    let gate = Arc::new(Semaphore::new(a.concurrency));
    let join_latency = Arc::new(Mutex::new(Vec::with_capacity(a.students)));
    let joined = Arc::new(AtomicU64::new(0));
    let bar = Progress::new(a.progress, "classroom: joined", a.students as u64);
    let progress = spawn_progress(bar.clone(), joined.clone(), a.students as u64, stop.clone());
    let started = Instant::now();
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..a.students {
        let (api, gate, code, sid, shared, stop, lat, joined) = (
            api.clone(),
            gate.clone(),
            code.clone(),
            sid.clone(),
            shared.clone(),
            stop.clone(),
            join_latency.clone(),
            joined.clone(),
        );
        let base = if a.student_urls.is_empty() {
            api.base.clone()
        } else {
            a.student_urls[i % a.student_urls.len()]
                .trim_end_matches('/')
                .to_owned()
        };
        joins.spawn(async move {
            let permit = gate.acquire_owned().await.ok()?;
            let t = Instant::now();
            let student = join(&api, &base, &code, &sid, i, &shared, &stop, t0).await;
            drop(permit);
            match student {
                Ok(p) => {
                    lat.lock().push(micros(t.elapsed()));
                    joined.fetch_add(1, Ordering::Relaxed);
                    Some(p)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a student failed to join");
                    None
                }
            }
        });
    }
    let mut students = Vec::with_capacity(a.students);
    while let Some(done) = tokio::time::timeout_at(deadline.into(), joins.join_next())
        .await
        .map_err(|_| anyhow!("the deadline passed while students joined"))?
    {
        if let Ok(Some(p)) = done {
            students.push(p);
        }
    }
    progress.abort();
    bar.finish();
    report.join = JoinReport {
        subscribed: students.len(),
        failed: a.students - students.len(),
        seconds: started.elapsed().as_secs_f64(),
        join: Latency::of(std::mem::take(&mut *join_latency.lock())),
        cost: cost(&a.server_pids, before),
    };
    bar.note(&format!(
        "bench classroom: {} students subscribed in {:.1}s ({} failed)",
        report.join.subscribed, report.join.seconds, report.join.failed
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 2. Page flips.
    let before = proc_sample(&a.server_pids);
    let mut flip_requests = Vec::with_capacity(a.flips);
    for page in 1..=a.flips as u64 {
        if Instant::now() > deadline {
            bail!("the deadline passed during the page flips");
        }
        let sent = Instant::now();
        shared.flip_sent.lock().insert(page, micros(sent - t0).into());
        api.ok(
            Some(&trainer),
            Method::POST,
            &format!("/sessions/{sid}/slides/page"),
            Some(json!({ "page": page })),
        )
        .await?;
        flip_requests.push(micros(sent.elapsed()));
        tokio::time::sleep(a.flip_interval).await;
    }
    let expected = (a.flips * students.len()) as u64;
    let settle = Instant::now() + Duration::from_secs(10);
    while (shared.flip_latency.lock().len() as u64) < expected && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = std::mem::take(&mut *shared.flip_latency.lock());
    report.flips = FlipReport {
        flips: a.flips,
        expected,
        delivered: delivered.len() as u64,
        delivery: Latency::of(delivered),
        request: Latency::of(flip_requests),
        cost: cost(&a.server_pids, before),
    };
    bar.note(&format!(
        "bench classroom: flips delivered {}/{} p50 {:.1} ms p99 {:.1} ms",
        report.flips.delivered,
        report.flips.expected,
        report.flips.delivery.p50_ms,
        report.flips.delivery.p99_ms
    ));

    // 3. A poll answered by everyone within the spread.
    let before = proc_sample(&a.server_pids);
    let poll = api
        .ok(
            Some(&trainer),
            Method::POST,
            &format!("/sessions/{sid}/polls"),
            Some(json!({ "kind": "single", "question": "Which option?", "options": ["A", "B", "C", "D"] })),
        )
        .await?;
    let pid = poll["poll"]["id"].as_str().context("no poll id")?.to_owned();
    api.ok(
        Some(&trainer),
        Method::POST,
        &format!("/sessions/{sid}/polls/{pid}/open"),
        Some(json!({})),
    )
    .await?;
    let tallies_before = shared.student_tallies.load(Ordering::Relaxed);
    let trainer_before: u64 = shared.trainer_tallies.lock().iter().sum();
    let answer_latency = Arc::new(Mutex::new(Vec::with_capacity(students.len())));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut answers = tokio::task::JoinSet::new();
    for p in &students {
        let delay = a.poll_spread.mul_f64(rand::thread_rng().gen::<f64>());
        let choice = rand::thread_rng().gen_range(0..4);
        let (api, gate, p, path, lat, failed) = (
            api.clone(),
            gate.clone(),
            p.clone(),
            format!("/sessions/{sid}/polls/{pid}/answer"),
            answer_latency.clone(),
            failed.clone(),
        );
        answers.spawn(async move {
            tokio::time::sleep(delay).await;
            let _permit = gate.acquire_owned().await.ok()?;
            let t = Instant::now();
            match api
                .call(Some(&p), Method::POST, &path, Some(json!({ "answer": choice })))
                .await
            {
                Ok((200..=299, _, _)) => {
                    lat.lock().push(micros(t.elapsed()));
                    Some(())
                }
                other => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        tracing::warn!(answer = ?other.map(|(s, v, _)| (s, v)), "an answer failed");
                    }
                    None
                }
            }
        });
    }
    while let Some(_done) = tokio::time::timeout_at(deadline.into(), answers.join_next())
        .await
        .map_err(|_| anyhow!("the deadline passed while students answered"))?
    {}
    let answering = started.elapsed();
    let answered = answer_latency.lock().len();
    let settled = Instant::now();
    let mut exact = false;
    while settled.elapsed() < Duration::from_secs(10) {
        let snap = api
            .ok(Some(&trainer), Method::GET, &format!("/sessions/{sid}"), None)
            .await?;
        if poll_total(&snap, &pid) == Some(answered as u64) {
            exact = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled_seconds = settled.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let per_second = shared.trainer_tallies.lock().clone();
    report.poll = PollReport {
        answered,
        failed: failed.load(Ordering::Relaxed) as usize,
        answering_seconds: answering.as_secs_f64(),
        settled_seconds,
        tally_exact: exact,
        tally_events: per_second.iter().sum::<u64>() - trainer_before,
        tally_events_max_per_second: per_second.iter().copied().max().unwrap_or(0),
        tally_events_per_student: (shared.student_tallies.load(Ordering::Relaxed) - tallies_before) as f64
            / students.len().max(1) as f64,
        request: Latency::of(std::mem::take(&mut *answer_latency.lock())),
        cost: cost(&a.server_pids, before),
    };
    bar.note(&format!(
        "bench classroom: poll answered by {} in {:.1}s, exact tally: {}",
        report.poll.answered, report.poll.answering_seconds, report.poll.tally_exact
    ));

    // 4. Questions, then upvotes.
    let before = proc_sample(&a.server_pids);
    let questions_before = shared.student_questions.load(Ordering::Relaxed);
    let started = Instant::now();
    let ask_latency = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let mut asks = tokio::task::JoinSet::new();
    for (i, p) in students.iter().take(a.questions).enumerate() {
        let (api, gate, p, path, lat, failed) = (
            api.clone(),
            gate.clone(),
            p.clone(),
            format!("/sessions/{sid}/questions"),
            ask_latency.clone(),
            failed.clone(),
        );
        asks.spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            let t = Instant::now();
            let body = json!({ "text": format!("Question number {i}: why does it work?") });
            match api.call(Some(&p), Method::POST, &path, Some(body)).await {
                Ok((201, v, _)) => {
                    lat.lock().push(micros(t.elapsed()));
                    Some((p.id.clone(), v["question"]["id"].as_str()?.to_owned()))
                }
                other => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        tracing::warn!(ask = ?other.map(|(s, v, _)| (s, v)), "a question failed");
                    }
                    None
                }
            }
        });
    }
    let mut asked = Vec::new();
    while let Some(done) = tokio::time::timeout_at(deadline.into(), asks.join_next())
        .await
        .map_err(|_| anyhow!("the deadline passed while students asked"))?
    {
        if let Ok(Some(q)) = done {
            asked.push(q);
        }
    }
    let vote_latency = Arc::new(Mutex::new(Vec::new()));
    let mut votes = tokio::task::JoinSet::new();
    if !asked.is_empty() {
        for p in students.iter().rev().take(a.upvotes) {
            let (author, qid) = asked[rand::thread_rng().gen_range(0..asked.len())].clone();
            let qid = if author == p.id {
                asked[(asked.iter().position(|(a, _)| *a == author).unwrap_or(0) + 1) % asked.len()]
                    .1
                    .clone()
            } else {
                qid
            };
            let (api, gate, p, path, lat, failed) = (
                api.clone(),
                gate.clone(),
                p.clone(),
                format!("/sessions/{sid}/questions/{qid}/vote"),
                vote_latency.clone(),
                failed.clone(),
            );
            votes.spawn(async move {
                let _permit = gate.acquire_owned().await.ok()?;
                let t = Instant::now();
                match api.call(Some(&p), Method::POST, &path, Some(json!({}))).await {
                    Ok((200..=299, _, _)) => {
                        lat.lock().push(micros(t.elapsed()));
                        Some(())
                    }
                    other => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            tracing::warn!(vote = ?other.map(|(s, v, _)| (s, v)), "an upvote failed");
                        }
                        None
                    }
                }
            });
        }
    }
    while let Some(_done) = tokio::time::timeout_at(deadline.into(), votes.join_next())
        .await
        .map_err(|_| anyhow!("the deadline passed while students upvoted"))?
    {}
    let seconds = started.elapsed().as_secs_f64();
    let upvoted = vote_latency.lock().len();
    let mut votes_exact = false;
    let check = Instant::now();
    while check.elapsed() < Duration::from_secs(10) {
        let snap = api
            .ok(Some(&trainer), Method::GET, &format!("/sessions/{sid}"), None)
            .await?;
        let total: u64 = snap["snapshot"]["questions"]
            .as_object()
            .map(|qs| qs.values().filter_map(|q| q["votes"].as_u64()).sum())
            .unwrap_or(0);
        if total == upvoted as u64 {
            votes_exact = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    report.questions = QuestionsReport {
        asked: asked.len(),
        upvoted,
        failed: failed.load(Ordering::Relaxed) as usize,
        seconds,
        ask: Latency::of(std::mem::take(&mut *ask_latency.lock())),
        upvote: Latency::of(std::mem::take(&mut *vote_latency.lock())),
        events_per_student: (shared.student_questions.load(Ordering::Relaxed) - questions_before) as f64
            / students.len().max(1) as f64,
        votes_exact,
        cost: cost(&a.server_pids, before),
    };
    stop.cancel();
    if let Some(fill) = a.fill {
        // Nobody subscribed from here on: a change costs what the session's
        // size makes it cost, not its fan-out.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let ctx = Ctx {
            api: &api,
            gate: &gate,
            trainer: &trainer,
            students: &students,
            course_id: &course_id,
            code: &code,
            deadline,
        };
        report.fill = Some(self::fill(&ctx, &sid, fill, a.flips).await?);
        bar.note("bench classroom: session filled; measuring single changes");
        if a.cost_changes > 0 {
            report.cost = Some(costs(&ctx, &sid, a.cost_changes, &a.server_pids).await?);
        }
    }
    if let Some(path) = &a.save_trainer {
        let saved =
            json!({ "url": api.base, "session": sid, "cookie": trainer.cookie, "csrf": trainer.csrf });
        std::fs::write(path, saved.to_string())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(report)
}

/// What the fill and cost phases work with.
struct Ctx<'a> {
    api: &'a Arc<Api>,
    gate: &'a Arc<Semaphore>,
    trainer: &'a Person,
    students: &'a [Person],
    course_id: &'a str,
    code: &'a str,
    deadline: Instant,
}

/// Runs `calls` (person, method, path, body) with the gate's concurrency;
/// answers (accepted, failed).
async fn many(ctx: &Ctx<'_>, calls: Vec<(Person, Method, String, Value)>) -> anyhow::Result<(usize, usize)> {
    let mut set = tokio::task::JoinSet::new();
    for (p, method, path, body) in calls {
        let (api, gate) = (ctx.api.clone(), ctx.gate.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            match api.call(Some(&p), method, &path, Some(body)).await {
                Ok((200..=299, _, _)) => Some(()),
                other => {
                    tracing::debug!(call = %path, answer = ?other.map(|(s, v, _)| (s, v)), "a fill request failed");
                    None
                }
            }
        });
    }
    let (mut ok, mut failed) = (0, 0);
    while let Some(done) = tokio::time::timeout_at(ctx.deadline.into(), set.join_next())
        .await
        .map_err(|_| anyhow!("the deadline passed while filling the session"))?
    {
        match done {
            Ok(Some(())) => ok += 1,
            _ => failed += 1,
        }
    }
    Ok((ok, failed))
}

/// Grows session `sid` to `fill`: polls answered by every student, questions,
/// votes spread over them, page flips.
async fn fill(ctx: &Ctx<'_>, sid: &str, fill: Fill, flipped: usize) -> anyhow::Result<FillReport> {
    let started = Instant::now();
    let mut report = FillReport {
        asked: fill,
        ..FillReport::default()
    };
    let snap = ctx
        .api
        .ok(Some(ctx.trainer), Method::GET, &format!("/sessions/{sid}"), None)
        .await?;
    let polls_now = snap["snapshot"]["polls"].as_object().map_or(0, |p| p.len());
    for n in polls_now..fill.polls {
        let poll = ctx
            .api
            .ok(
                Some(ctx.trainer),
                Method::POST,
                &format!("/sessions/{sid}/polls"),
                Some(json!({ "kind": "multiple", "question": format!("Poll {n}?"), "options": ["A", "B", "C", "D", "E"] })),
            )
            .await?;
        let pid = poll["poll"]["id"].as_str().context("no poll id")?.to_owned();
        ctx.api
            .ok(
                Some(ctx.trainer),
                Method::POST,
                &format!("/sessions/{sid}/polls/{pid}/open"),
                Some(json!({})),
            )
            .await?;
        let calls = ctx
            .students
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let answer: Vec<usize> = (0..5).filter(|o| (i + o + n) % 3 == 0).collect();
                let answer = if answer.is_empty() { vec![i % 5] } else { answer };
                (
                    p.clone(),
                    Method::POST,
                    format!("/sessions/{sid}/polls/{pid}/answer"),
                    json!({ "answer": answer }),
                )
            })
            .collect();
        let (ok, failed) = many(ctx, calls).await?;
        report.answers += ok;
        report.failed += failed;
        ctx.api
            .ok(
                Some(ctx.trainer),
                Method::POST,
                &format!("/sessions/{sid}/polls/{pid}/close"),
                Some(json!({})),
            )
            .await?;
    }
    let questions_now = snap["snapshot"]["questions"].as_object().map_or(0, |q| q.len());
    let askers: Vec<Person> = ctx
        .students
        .iter()
        .skip(questions_now)
        .take(fill.questions.saturating_sub(questions_now))
        .cloned()
        .collect();
    let calls = askers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let text = format!("Filled question {i}: how does this part work, and why?");
            (
                p.clone(),
                Method::POST,
                format!("/sessions/{sid}/questions"),
                json!({ "text": text }),
            )
        })
        .collect();
    let (ok, failed) = many(ctx, calls).await?;
    report.questions = ok;
    report.failed += failed;
    // Votes: student i votes for questions i+1, i+2, … (never their own: ids
    // are read back from the snapshot with their authors unknown, so skip the
    // refusals).
    let snap = ctx
        .api
        .ok(Some(ctx.trainer), Method::GET, &format!("/sessions/{sid}"), None)
        .await?;
    let qids: Vec<String> = snap["snapshot"]["questions"]
        .as_object()
        .map(|q| q.keys().cloned().collect())
        .unwrap_or_default();
    let voted_now: usize = snap["snapshot"]["questions"].as_object().map_or(0, |q| {
        q.values().filter_map(|v| v["votes"].as_u64()).sum::<u64>() as usize
    });
    let wanted = fill.votes.saturating_sub(voted_now);
    if !qids.is_empty() && !ctx.students.is_empty() {
        let per_student = wanted.div_ceil(ctx.students.len()).min(qids.len());
        let mut calls = Vec::with_capacity(wanted);
        'outer: for k in 1..=per_student {
            for (i, p) in ctx.students.iter().enumerate() {
                if calls.len() >= wanted {
                    break 'outer;
                }
                let q = &qids[(i * 7 + k * 13) % qids.len()];
                calls.push((
                    p.clone(),
                    Method::POST,
                    format!("/sessions/{sid}/questions/{q}/vote"),
                    json!({}),
                ));
            }
        }
        // Votes are limited to 60 a minute per student: send them in rounds.
        for round in calls.chunks(ctx.students.len().max(1) * 50) {
            let (ok, failed) = many(ctx, round.to_vec()).await?;
            report.votes += ok;
            report.failed += failed;
        }
    }
    for k in 0..fill.flips {
        let page = (flipped + 1 + k) % (flipped + 1);
        ctx.api
            .ok(
                Some(ctx.trainer),
                Method::POST,
                &format!("/sessions/{sid}/slides/page"),
                Some(json!({ "page": page })),
            )
            .await?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// CPU nanoseconds of every thread of `pids` (schedstat) and the bytes they
/// caused to be written to storage (io write_bytes).
fn usage(pids: &[u32]) -> (u64, u64) {
    let mut cpu = 0u64;
    let mut written = 0u64;
    for pid in pids {
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
                cpu += stat
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
        written += io
            .lines()
            .find_map(|l| l.strip_prefix("write_bytes:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    (cpu, written)
}

/// What a change of one kind cost so far.
#[derive(Default)]
struct Tally {
    cpu_ns: u64,
    written: u64,
    latency: Vec<u32>,
}

impl Tally {
    fn report(self) -> ChangeCost {
        let n = self.latency.len().max(1) as f64;
        ChangeCost {
            changes: self.latency.len(),
            cpu_us: self.cpu_ns as f64 / 1000.0 / n,
            written_bytes: self.written as f64 / n,
            request: Latency::of(self.latency),
        }
    }
}

/// Makes `calls` one after the other (asking for minimal answers), waits for
/// their coalesced events, and adds what the server spent meanwhile to `into`.
async fn measure(
    ctx: &Ctx<'_>,
    pids: &[u32],
    calls: &[(Person, Method, String, Value)],
    into: &mut Tally,
) -> anyhow::Result<()> {
    let (cpu0, w0) = usage(pids);
    for (p, method, path, body) in calls {
        let t = Instant::now();
        let (status, v, _) = ctx
            .api
            .call_with(Some(p), method.clone(), path, Some(body.clone()), true)
            .await?;
        if !(200..300).contains(&status) {
            bail!("{path}: {status} {v}");
        }
        into.latency.push(micros(t.elapsed()));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (cpu1, w1) = usage(pids);
    into.cpu_ns += cpu1.saturating_sub(cpu0);
    into.written += w1.saturating_sub(w0);
    Ok(())
}

/// A second staff member (co-trainer) of the course: page turns are limited
/// per staff member and minute.
async fn co_trainer(ctx: &Ctx<'_>) -> anyhow::Result<Person> {
    let co = ctx.api.sign_up("co", "Bench Co-trainer").await?;
    ctx.api
        .ok(
            Some(&co),
            Method::POST,
            "/courses/join",
            Some(json!({ "code": ctx.code })),
        )
        .await?;
    ctx.api
        .ok(
            Some(ctx.trainer),
            Method::POST,
            &format!("/courses/{}/roster/{}", ctx.course_id, co.id),
            Some(json!({ "role": "co_trainer" })),
        )
        .await?;
    Ok(co)
}

/// The cost of `k` flips, upvotes and poll answers in session `full` and in
/// a new, empty session of the same course, measured in alternating batches
/// so that whatever the server does meanwhile falls on both alike.
async fn costs(ctx: &Ctx<'_>, full: &str, k: usize, pids: &[u32]) -> anyhow::Result<CostReport> {
    let empty = ctx
        .api
        .ok(
            Some(ctx.trainer),
            Method::POST,
            &format!("/courses/{}/sessions", ctx.course_id),
            Some(json!({ "title": "Empty session" })),
        )
        .await?;
    let empty = empty["session"]["id"]
        .as_str()
        .context("no session id")?
        .to_owned();
    ctx.api
        .ok(
            Some(ctx.trainer),
            Method::POST,
            &format!("/sessions/{empty}/start"),
            Some(json!({})),
        )
        .await?;
    let full_snap = ctx
        .api
        .ok(Some(ctx.trainer), Method::GET, &format!("/sessions/{full}"), None)
        .await?;
    let deck = full_snap["snapshot"]["slides"]["deck_id"]
        .as_str()
        .context("no deck shown")?;
    let pages = full_snap["snapshot"]["slides"]["count"]
        .as_u64()
        .unwrap_or(2)
        .max(2) as usize;
    ctx.api
        .ok(
            Some(ctx.trainer),
            Method::POST,
            &format!("/sessions/{empty}/slides"),
            Some(json!({ "deck_id": deck })),
        )
        .await?;
    let co = co_trainer(ctx).await?;
    let k = k.min(ctx.students.len().saturating_sub(1)).max(1);
    // Per session: its flips (by its own staff member), votes and answers.
    let mut work = Vec::new();
    for (sid, staff) in [(full, ctx.trainer), (empty.as_str(), &co)] {
        // A question and a poll of their own, so that every vote and answer is new.
        let q = ctx
            .api
            .ok(
                Some(&ctx.students[0]),
                Method::POST,
                &format!("/sessions/{sid}/questions"),
                Some(json!({ "text": "The cost question?" })),
            )
            .await?;
        let qid = q["question"]["id"].as_str().context("no question id")?.to_owned();
        let poll = ctx
            .api
            .ok(
                Some(ctx.trainer),
                Method::POST,
                &format!("/sessions/{sid}/polls"),
                Some(json!({ "kind": "single", "question": "The cost poll?", "options": ["A", "B"] })),
            )
            .await?;
        let pid = poll["poll"]["id"].as_str().context("no poll id")?.to_owned();
        ctx.api
            .ok(
                Some(ctx.trainer),
                Method::POST,
                &format!("/sessions/{sid}/polls/{pid}/open"),
                Some(json!({})),
            )
            .await?;
        // Page turns are limited to 300 a minute per staff member: at most 250.
        let flips: Vec<_> = (0..k.min(250))
            .map(|i| {
                let body = json!({ "page": (i + 1) % pages });
                (
                    staff.clone(),
                    Method::POST,
                    format!("/sessions/{sid}/slides/page"),
                    body,
                )
            })
            .collect();
        let votes: Vec<_> = ctx.students[1..=k]
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    Method::POST,
                    format!("/sessions/{sid}/questions/{qid}/vote"),
                    json!({}),
                )
            })
            .collect();
        let answers: Vec<_> = ctx.students[1..=k]
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let body = json!({ "answer": i % 2 });
                (
                    p.clone(),
                    Method::POST,
                    format!("/sessions/{sid}/polls/{pid}/answer"),
                    body,
                )
            })
            .collect();
        work.push([flips, votes, answers]);
    }
    const BATCH: usize = 25;
    let mut tallies: Vec<[Tally; 3]> = vec![Default::default(), Default::default()];
    for kind in 0..3 {
        let longest = work.iter().map(|w| w[kind].len()).max().unwrap_or(0);
        for start in (0..longest).step_by(BATCH) {
            for (s, w) in work.iter().enumerate() {
                let batch = &w[kind][start.min(w[kind].len())..(start + BATCH).min(w[kind].len())];
                measure(ctx, pids, batch, &mut tallies[s][kind]).await?;
            }
        }
    }
    let [[flip_full, vote_full, answer_full], [flip_empty, vote_empty, answer_empty]] =
        <[[Tally; 3]; 2]>::try_from(tallies).map_err(|_| anyhow!("two sessions"))?;
    Ok(CostReport {
        flip_full: flip_full.report(),
        flip_empty: flip_empty.report(),
        vote_full: vote_full.report(),
        vote_empty: vote_empty.report(),
        answer_full: answer_full.report(),
        answer_empty: answer_empty.report(),
    })
}

/// One line per phase, for people.
pub fn summary(r: &ClassroomReport) -> String {
    let mut out = phases(r);
    if let Some(f) = &r.fill {
        out.push_str(&format!(
            "; filled in {:.0}s: {} poll answers, {} questions, {} upvotes ({} refused)",
            f.seconds, f.answers, f.questions, f.votes, f.failed
        ));
    }
    if let Some(c) = &r.cost {
        for (what, full, empty) in [
            ("flip", &c.flip_full, &c.flip_empty),
            ("upvote", &c.vote_full, &c.vote_empty),
            ("poll answer", &c.answer_full, &c.answer_empty),
        ] {
            out.push_str(&format!(
                "; {what}: {:.0} µs CPU, {:.0} B written in the full session vs {:.0} µs, {:.0} B in an empty one ({:.2}x CPU)",
                full.cpu_us,
                full.written_bytes,
                empty.cpu_us,
                empty.written_bytes,
                full.cpu_us / empty.cpu_us.max(1.0)
            ));
        }
    }
    out
}

fn phases(r: &ClassroomReport) -> String {
    format!(
        "classroom, {} students: joined {} in {:.1}s (p99 {:.0} ms); page flips delivered {}/{}, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         poll answered by {} in {:.1}s (answer p99 {:.0} ms), tally exact {} after {:.2}s, {} tally events to the trainer (max {}/s); \
         {} questions + {} upvotes in {:.1}s (upvote p99 {:.0} ms), {:.0} question events per student, votes exact {}",
        r.students,
        r.join.subscribed,
        r.join.seconds,
        r.join.join.p99_ms,
        r.flips.delivered,
        r.flips.expected,
        r.flips.delivery.p50_ms,
        r.flips.delivery.p99_ms,
        r.flips.delivery.max_ms,
        r.poll.answered,
        r.poll.answering_seconds,
        r.poll.request.p99_ms,
        r.poll.tally_exact,
        r.poll.settled_seconds,
        r.poll.tally_events,
        r.poll.tally_events_max_per_second,
        r.questions.asked,
        r.questions.upvoted,
        r.questions.seconds,
        r.questions.upvote.p99_ms,
        r.questions.events_per_student,
        r.questions.votes_exact,
    )
}

/// A student joins as a guest, loads the snapshot and a token, and subscribes.
#[allow(clippy::too_many_arguments)]
async fn join(
    api: &Api,
    base: &str,
    code: &str,
    sid: &str,
    i: usize,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
    t0: Instant,
) -> anyhow::Result<Person> {
    let res = api
        .http
        .post(format!("{base}/classroom/api/auth/guest"))
        .json(&json!({ "code": code, "name": format!("Student {i}") }))
        .send()
        .await
        .context("guest join: no answer")?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    if status != 201 {
        bail!("guest join: {status} {v}");
    }
    let p = Api::person(&v, &headers, base)?;
    let snap = api
        .ok(Some(&p), Method::GET, &format!("/sessions/{sid}"), None)
        .await?;
    let token = api
        .ok(Some(&p), Method::GET, &format!("/sessions/{sid}/token"), None)
        .await?;
    let channel = token["channel"].as_str().context("no channel")?;
    let cursor = snap["cursor"].as_str().context("no cursor")?;
    let res = api
        .http
        .get(sse_url(base, channel, &token, cursor)?)
        .send()
        .await
        .context("subscribe")?;
    if res.status() != 200 {
        bail!("subscribe: {}", res.status());
    }
    tokio::spawn(read_events(
        res,
        shared.clone(),
        stop.clone(),
        t0,
        Reader::Student,
    ));
    Ok(p)
}

fn sse_url(base: &str, channel: &str, token: &Value, cursor: &str) -> anyhow::Result<reqwest::Url> {
    let mut url =
        reqwest::Url::parse(&format!("{base}/v1/apps/classroom/events")).context("the server URL")?;
    url.query_pairs_mut()
        .append_pair("channel", channel)
        .append_pair("token", token["token"].as_str().context("no token")?)
        .append_pair("cursor", cursor);
    Ok(url)
}

#[derive(Clone, Copy)]
enum Reader {
    Student,
    Trainer,
}

/// Reads one SSE stream until stopped: records flip arrivals and counts events.
async fn read_events(
    mut res: reqwest::Response,
    shared: Arc<Shared>,
    stop: CancellationToken,
    t0: Instant,
    who: Reader,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let chunk = tokio::select! {
            _ = stop.cancelled() => return,
            c = res.chunk() => c,
        };
        let Ok(Some(chunk)) = chunk else { return };
        let now = micros(t0.elapsed());
        buf.extend_from_slice(&chunk);
        while let Some(end) = find(&buf, b"\n\n") {
            let block: Vec<u8> = buf.drain(..end + 2).collect();
            on_block(&block, &shared, now, who);
        }
    }
}

fn on_block(block: &[u8], shared: &Shared, now: u32, who: Reader) {
    let mut event: &[u8] = b"message";
    let mut data: &[u8] = b"";
    for line in block.split(|b| *b == b'\n') {
        if let Some(v) = line.strip_prefix(b"event:") {
            event = v.strip_prefix(b" ").unwrap_or(v);
        } else if let Some(v) = line.strip_prefix(b"data:") {
            data = v.strip_prefix(b" ").unwrap_or(v);
        }
    }
    // The event name is inside the data's envelope (the SSE event is `message`).
    let name = if event == b"message" {
        string_field(data, b"\"event\":\"").unwrap_or(b"")
    } else {
        event
    };
    match (name, who) {
        (b"slides", Reader::Student) => {
            let Ok(v) = serde_json::from_slice::<Value>(data) else {
                return;
            };
            let d = &v["data"];
            let page = d["page"].as_u64().or_else(|| d["slides"]["page"].as_u64());
            let Some(page) = page else { return };
            let sent = shared.flip_sent.lock().get(&page).copied();
            if let Some(sent) = sent {
                let lat = u64::from(now).saturating_sub(sent);
                shared
                    .flip_latency
                    .lock()
                    .push(u32::try_from(lat).unwrap_or(u32::MAX));
            }
        }
        (b"poll.tally", Reader::Student) => {
            shared.student_tallies.fetch_add(1, Ordering::Relaxed);
        }
        (b"poll.tally", Reader::Trainer) => {
            let second = (now / 1_000_000) as usize;
            let mut per = shared.trainer_tallies.lock();
            if per.len() <= second {
                per.resize(second + 1, 0);
            }
            per[second] += 1;
        }
        (b"questions", Reader::Student) => {
            shared.student_questions.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// The total answers of poll `pid` in a snapshot, wherever the poll keeps it.
fn poll_total(snap: &Value, pid: &str) -> Option<u64> {
    let polls = &snap["snapshot"]["polls"];
    let poll = polls
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["id"] == pid))
        .or_else(|| polls.get(pid))
        .or_else(|| {
            polls["polls"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["id"] == pid))
        })?;
    poll["total"]
        .as_u64()
        .or_else(|| poll["answers"].as_u64())
        .or_else(|| poll["tally"]["total"].as_u64())
}

fn string_field<'a>(hay: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let start = find(hay, key)? + key.len();
    let len = hay[start..].iter().position(|b| *b == b'"')?;
    Some(&hay[start..start + len])
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn cost(pids: &[u32], before: Option<ProcSample>) -> Cost {
    let after = proc_sample(pids);
    Cost {
        server_cpu_s: before
            .zip(after.as_ref())
            .map(|(b, a)| a.cpu_seconds - b.cpu_seconds),
        server_rss_mib: after.map(|a| a.rss_kb as f64 / 1024.0),
    }
}

/// Moves the join bar every [`REDRAW`] until aborted or `stop`.
fn spawn_progress(
    bar: Progress,
    count: Arc<AtomicU64>,
    of: u64,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REDRAW);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            bar.set(count.load(Ordering::Relaxed), of, String::new());
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn blocks_are_read_for_flips_and_counts() {
        let shared = Shared::default();
        shared.flip_sent.lock().insert(3, 1_000);
        let block = br#"id: x
data: {"channel":"class:s_1","offset":4,"event":"slides","data":{"page":3,"mode":"teacher"}}

"#;
        on_block(block, &shared, 1_500, Reader::Student);
        assert_eq!(*shared.flip_latency.lock(), vec![500]);
        let tally = b"data: {\"event\":\"poll.tally\",\"data\":{}}\n\n";
        on_block(tally, &shared, 2_000_000, Reader::Trainer);
        on_block(tally, &shared, 2_100_000, Reader::Trainer);
        on_block(tally, &shared, 2_200_000, Reader::Student);
        assert_eq!(*shared.trainer_tallies.lock(), vec![0, 0, 2]);
        assert_eq!(shared.student_tallies.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn latencies_in_milliseconds() {
        let l = Latency::of(vec![3000, 1000, 2000]);
        assert_eq!((l.count, l.p50_ms, l.max_ms), (3, 2.0, 3.0));
    }
}
