//! The command line: `herald-bench SCENARIO [flags]`, one subcommand per
//! scenario, each with only the flags it reads, typed (durations as `500ms`,
//! `2m`; enumerations checked by clap), turned into [`BenchArgs`] or
//! [`ClassroomArgs`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::args::{BenchArgs, PubFormat, Scenario, Transport, WsFrames};
use crate::scenario::classroom::ClassroomArgs;

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "herald-bench",
    version,
    about = "Load generator for Herald and any other SSE or WebSocket server (see docs/benchmarks.md).",
    long_about = "Load generator for Herald and any other SSE or WebSocket server (see docs/benchmarks.md). \
                  Prints one JSON report on stdout and a short summary on stderr; a progress bar on stderr \
                  when it is a terminal."
)]
pub struct Cli {
    /// What to measure.
    #[command(subcommand)]
    pub scenario: Command,
}

/// One subcommand per scenario.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open --connections subscribers and hold them: server memory per connection, connect rate.
    Idle(Idle),
    /// Subscribers over --channels; --messages published as fast as possible (or at --rate):
    /// deliveries/s, lost / duplicates / reordered, latency, CPU per delivery.
    Fanout(Fanout),
    /// --messages over --channels from --concurrency publishers, no subscribers: publishes/s,
    /// CPU per publish.
    Publish(Publish),
    /// While --messages are published at --rate, --churn-rate connections per second are
    /// dropped and replaced by fresh ones: reconnects/s, losses, CPU, memory growth.
    Churn(Churn),
    /// After a third of the messages every connection is dropped; after two thirds all resume
    /// at once from their last position: time until all are back and caught up, losses.
    Resume(Resume),
    /// One publisher as fast as it can to --connections subscribers (one channel by default)
    /// for --duration: p99 delivery latency, server CPU per delivery, the server's peak memory
    /// (VmHWM), publishes sent again after 429 + Retry-After.
    Sustained(Sustained),
    /// One trainer and --students guests in one live session of Herald's classroom: page
    /// flips, a poll answered by all, questions and upvotes.
    Classroom(Classroom),
}

/// The server and the app.
#[derive(Args, Debug)]
pub struct Server {
    /// The server's base URL ({url} in the templates).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The app ({app} in the templates).
    #[arg(long, default_value = "demo")]
    pub app: String,
    /// A client token that may subscribe to bench:* (herald token --app APP --channel 'bench:*').
    #[arg(long, default_value = "")]
    pub token: String,
}

/// The subscribers.
#[derive(Args, Debug)]
pub struct Subscribers {
    /// Subscriber connections.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 500)]
    pub connect_concurrency: usize,
    /// Channels the subscribers are spread over.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Subscriber URL template; placeholders {url} {app} {channel} {token}.
    /// Default: Herald's {url}/v1/apps/{app}/events?channel={channel}&token={token}
    /// (SSE) or {url}/v1/apps/{app}/ws?token={token} (ws).
    /// Nchan: http://127.0.0.1:8080/sse/{channel}, or ws://127.0.0.1:8080/ws/{channel}
    /// with --transport ws --ws-subscribe-frame none.
    #[arg(long)]
    pub sub_url: Option<String>,
    /// Subscriber transport.
    #[arg(long, value_enum, default_value_t = Transport::Sse)]
    pub transport: Transport,
    /// WebSocket subscribers: herald (send Herald's subscribe frame, read `message` pushes) or
    /// none (send nothing; every text frame is the payload, e.g. Nchan's /ws; needs --sub-url).
    #[arg(long, value_enum, default_value_t = WsFrames::Herald)]
    pub ws_subscribe_frame: WsFrames,
    /// Spread subscriber connections over this many source addresses 127.0.0.2.. (max 253, 0: off).
    #[arg(long, default_value_t = 253)]
    pub source_addresses: usize,
}

/// How messages are published.
#[derive(Args, Debug)]
pub struct Publishing {
    /// The app key, sent as bearer with every publish (needed by Herald).
    #[arg(long, env = "HERALD_APP_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Publish URL template. Default: {url}/v1/apps/{app}/publish (herald format) or
    /// {url}/pub?id={channel} (raw). A bare base URL with the herald format means
    /// Herald's publish endpoint there (e.g. another node of a cluster).
    #[arg(long)]
    pub pub_url: Option<String>,
    /// How publishes carry the message: herald (JSON {channel, data}) or raw (the payload is the body).
    #[arg(long, value_enum, default_value_t = PubFormat::Herald)]
    pub pub_format: PubFormat,
    /// An extra header for publishes, 'Name: value' (repeatable).
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Message size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
}

/// The messages and how they are published.
#[derive(Args, Debug)]
pub struct Messages {
    /// How they are published.
    #[command(flatten)]
    pub publishing: Publishing,
    /// Messages to publish.
    #[arg(long, default_value_t = 100)]
    pub messages: usize,
}

/// What is measured on the server's side, and the run's bounds.
#[derive(Args, Debug)]
pub struct Measure {
    /// A server process id, to read its memory and CPU time from /proc (repeatable: summed).
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Also every process whose command name is NAME (e.g. nginx: master and workers).
    #[arg(long, value_name = "NAME")]
    pub server_pids_of: Option<String>,
    /// Give up after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
    /// No progress bar and no phase lines on stderr (the bar is drawn only on a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
}

/// `idle`.
#[derive(Args, Debug)]
pub struct Idle {
    #[command(flatten)]
    server: Server,
    #[command(flatten)]
    subscribers: Subscribers,
    /// Keep the connections open this long after measuring, e.g. 40s.
    #[arg(long, value_parser = humantime::parse_duration)]
    hold: Option<Duration>,
    #[command(flatten)]
    measure: Measure,
}

/// What the delivering scenarios (fanout, churn, resume) share.
#[derive(Args, Debug)]
pub struct Delivery {
    #[command(flatten)]
    server: Server,
    #[command(flatten)]
    subscribers: Subscribers,
    #[command(flatten)]
    messages: Messages,
    /// Also draw the latency distribution and the throughput over time into this SVG file.
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
    #[command(flatten)]
    measure: Measure,
}

/// `fanout`.
#[derive(Args, Debug)]
pub struct Fanout {
    #[command(flatten)]
    delivery: Delivery,
    /// Publish rate in messages per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

/// `publish`.
#[derive(Args, Debug)]
pub struct Publish {
    #[command(flatten)]
    server: Server,
    #[command(flatten)]
    messages: Messages,
    /// Channels the messages are spread over.
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Concurrent publishers.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[command(flatten)]
    measure: Measure,
}

/// `churn`.
#[derive(Args, Debug)]
pub struct Churn {
    #[command(flatten)]
    delivery: Delivery,
    /// Publish rate in messages per second (0: as fast as possible).
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Connections dropped and replaced per second (default: a tenth of --connections).
    #[arg(long)]
    churn_rate: Option<f64>,
}

/// `resume`.
#[derive(Args, Debug)]
pub struct Resume {
    #[command(flatten)]
    delivery: Delivery,
    /// Publish rate in messages per second (0: as fast as possible).
    #[arg(long, default_value_t = 100)]
    rate: u64,
}

/// `sustained`.
#[derive(Args, Debug)]
pub struct Sustained {
    #[command(flatten)]
    server: Server,
    #[command(flatten)]
    subscribers: Subscribers,
    #[command(flatten)]
    publishing: Publishing,
    /// Publish for this long, e.g. 20s.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Stop earlier after this many messages (each subscriber keeps a bit per message).
    #[arg(long, default_value_t = 100_000)]
    max_messages: usize,
    /// Also draw the latency distribution and the throughput over time into this SVG file.
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
    #[command(flatten)]
    measure: Measure,
}

/// `classroom`.
#[derive(Args, Debug)]
pub struct Classroom {
    /// The server's base URL (the trainer's).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Spread students round robin over these base URLs (the nodes of a
    /// cluster; repeat the flag); default: --url.
    #[arg(long = "student-url")]
    student_urls: Vec<String>,
    /// Students (guests), each with its own SSE connection.
    #[arg(long, visible_alias = "connections", default_value_t = 1000)]
    students: usize,
    /// Page flips (the deck has one page more).
    #[arg(long, visible_alias = "messages", default_value_t = 100)]
    flips: usize,
    /// Time between two page flips.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    flip_interval: Duration,
    /// Students answer the poll at random moments within this window.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    poll_spread: Duration,
    /// Questions asked, by distinct students.
    #[arg(long, default_value_t = 500)]
    questions: usize,
    /// Upvotes, by distinct students.
    #[arg(long, default_value_t = 5000)]
    upvotes: usize,
    /// HTTP requests in flight at once (joins, answers, questions, votes).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// After the phases, add polls until the session has this many, each answered by every student.
    #[arg(long, default_value_t = 0)]
    fill_polls: usize,
    /// After the phases, add questions until the session has this many (distinct askers).
    #[arg(long, default_value_t = 0)]
    fill_questions: usize,
    /// After the phases, add upvotes until the session has this many.
    #[arg(long, default_value_t = 0)]
    fill_votes: usize,
    /// After the phases, this many more page flips.
    #[arg(long, default_value_t = 0)]
    fill_flips: usize,
    /// Then measure the server's cost of this many flips, upvotes and poll answers, one at a time, in the
    /// (filled) session and in an empty one (needs --server-pid).
    #[arg(long, default_value_t = 0)]
    cost_changes: usize,
    /// Write the trainer's {url, session, cookie, csrf} to this file at the end.
    #[arg(long, value_name = "PATH")]
    save_trainer: Option<std::path::PathBuf>,
    #[command(flatten)]
    measure: Measure,
}

/// `Name: value`.
fn parse_header(h: &str) -> Result<(String, String), String> {
    match h.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err("use 'Name: value'".to_owned()),
    }
}

/// A run: the messaging scenarios, or the classroom.
#[derive(Debug)]
pub enum Run {
    /// `idle`, `fanout`, `publish`, `churn` or `resume`.
    Messaging(Box<BenchArgs>),
    /// `classroom`.
    Classroom(Box<ClassroomArgs>),
}

impl Command {
    /// What to run.
    pub fn into_run(self) -> Run {
        let a = match self {
            Command::Idle(c) => {
                let mut a = base(Scenario::Idle, c.server, c.measure);
                subscribe(&mut a, c.subscribers);
                a.hold = c.hold.unwrap_or(Duration::ZERO);
                a
            }
            Command::Fanout(c) => deliver(Scenario::Fanout, c.delivery, c.rate),
            Command::Publish(c) => {
                let mut a = base(Scenario::Publish, c.server, c.measure);
                publish(&mut a, c.messages);
                a.channels = c.channels;
                a.concurrency = c.concurrency;
                a
            }
            Command::Churn(c) => BenchArgs {
                churn_rate: c.churn_rate,
                ..deliver(Scenario::Churn, c.delivery, c.rate)
            },
            Command::Resume(c) => deliver(Scenario::Resume, c.delivery, c.rate),
            Command::Sustained(c) => {
                let mut a = base(Scenario::Sustained, c.server, c.measure);
                subscribe(&mut a, c.subscribers);
                publishing(&mut a, c.publishing);
                a.messages = c.max_messages;
                a.duration = Some(c.duration);
                a.svg = c.svg;
                a
            }
            Command::Classroom(c) => {
                return Run::Classroom(Box::new(ClassroomArgs {
                    url: c.url.trim_end_matches('/').to_owned(),
                    student_urls: c.student_urls,
                    fill: (c.fill_polls + c.fill_questions + c.fill_votes + c.fill_flips + c.cost_changes
                        > 0)
                    .then_some(crate::scenario::classroom::Fill {
                        polls: c.fill_polls,
                        questions: c.fill_questions,
                        votes: c.fill_votes,
                        flips: c.fill_flips,
                    }),
                    cost_changes: c.cost_changes,
                    save_trainer: c.save_trainer,
                    students: c.students,
                    flips: c.flips,
                    flip_interval: c.flip_interval,
                    poll_spread: c.poll_spread,
                    questions: c.questions,
                    upvotes: c.upvotes,
                    concurrency: c.concurrency.max(1),
                    server_pids: c.measure.server_pids,
                    server_pids_of: c.measure.server_pids_of,
                    deadline: c.measure.deadline,
                    progress: !c.measure.quiet,
                }))
            }
        };
        Run::Messaging(Box::new(a))
    }
}

/// The arguments every messaging scenario has.
fn base(scenario: Scenario, server: Server, measure: Measure) -> BenchArgs {
    BenchArgs {
        scenario,
        url: server.url.trim_end_matches('/').to_owned(),
        app: server.app,
        token: server.token,
        server_pids: measure.server_pids,
        server_pids_of: measure.server_pids_of,
        progress: !measure.quiet,
        deadline: measure.deadline,
        ..BenchArgs::default()
    }
}

fn subscribe(a: &mut BenchArgs, s: Subscribers) {
    a.connections = s.connections;
    a.connect_concurrency = s.connect_concurrency;
    a.channels = s.channels;
    a.sub_url = s.sub_url;
    a.transport = s.transport;
    a.ws_frames = s.ws_subscribe_frame;
    a.source_addresses = s.source_addresses;
}

fn publishing(a: &mut BenchArgs, p: Publishing) {
    a.key = p.key;
    a.pub_url = p.pub_url;
    a.pub_format = p.pub_format;
    a.headers = p.headers;
    a.size = p.size;
}

fn publish(a: &mut BenchArgs, m: Messages) {
    publishing(a, m.publishing);
    a.messages = m.messages;
}

/// A delivering scenario: subscribers, messages at `rate`, maybe a chart.
fn deliver(scenario: Scenario, d: Delivery, rate: u64) -> BenchArgs {
    let mut a = base(scenario, d.server, d.measure);
    subscribe(&mut a, d.subscribers);
    publish(&mut a, d.messages);
    a.rate = rate;
    a.svg = d.svg;
    a
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn run(args: &[&str]) -> Run {
        let mut argv = vec!["herald-bench"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().scenario.into_run()
    }

    #[test]
    fn each_scenario_reads_its_own_typed_flags() {
        let Run::Messaging(a) = run(&[
            "churn",
            "--connections",
            "50",
            "--churn-rate",
            "25",
            "--deadline",
            "2m",
        ]) else {
            panic!("not a messaging run");
        };
        assert_eq!(
            (a.scenario, a.connections, a.churn_rate),
            (Scenario::Churn, 50, Some(25.0))
        );
        assert_eq!((a.rate, a.deadline), (100, Duration::from_secs(120)));
        let Run::Messaging(a) = run(&["fanout", "--transport", "websocket", "--header", "X-A: b"]) else {
            panic!("not a messaging run");
        };
        assert_eq!((a.transport, a.rate), (Transport::Ws, 0));
        assert_eq!(a.headers, vec![("X-A".to_owned(), "b".to_owned())]);
        let Run::Messaging(a) = run(&["sustained", "--connections", "10", "--duration", "3s"]) else {
            panic!("not a messaging run");
        };
        assert_eq!(
            (a.scenario, a.duration, a.messages, a.rate, a.channels),
            (Scenario::Sustained, Some(Duration::from_secs(3)), 100_000, 0, 1)
        );
        let Run::Classroom(c) = run(&[
            "classroom",
            "--connections",
            "50",
            "--messages",
            "3",
            "--flip-interval",
            "250ms",
        ]) else {
            panic!("not the classroom");
        };
        assert_eq!(
            (c.students, c.flips, c.flip_interval),
            (50, 3, Duration::from_millis(250))
        );
    }

    #[test]
    fn flags_of_other_scenarios_and_bad_values_are_refused() {
        let refused = |args: &[&str]| {
            let mut argv = vec!["herald-bench"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).unwrap_err().to_string()
        };
        assert!(refused(&["idle", "--churn-rate", "5"]).contains("--churn-rate"));
        assert!(refused(&["publish", "--transport", "ws"]).contains("--transport"));
        assert!(refused(&["fanout", "--deadline", "soon"]).contains("--deadline"));
        assert!(refused(&["fanout", "--transport", "pigeon"]).contains("sse"));
        assert!(refused(&["fanout", "--header", "nocolon"]).contains("Name: value"));
        assert!(refused(&["storm"]).contains("storm"));
        assert!(refused(&["sustained", "--messages", "5"]).contains("--messages"));
        assert!(refused(&["fanout", "--duration", "5s"]).contains("--duration"));
        assert!(refused(&["sustained", "--duration", "soon"]).contains("--duration"));
    }
}
