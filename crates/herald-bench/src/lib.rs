//! `herald-bench`: a load generator for Herald and for any other SSE or WebSocket server
//! (`cargo run --release -p herald-bench -- SCENARIO [flags]`; docs/benchmarks.md).
//!
//! The server is named by URL templates, so the same tool measures the peers
//! (Nchan, the floor program in `crates/herald-floor`):
//! `--sub-url` is the subscriber's EventSource (or WebSocket) URL and `--pub-url` the
//! publish endpoint, with the placeholders `{url}`, `{app}`, `{channel}` and `{token}`.
//! Publishes are either Herald's JSON body (`--pub-format herald`, with the app key
//! as bearer) or the payload itself as the body (`--pub-format raw`, as Nchan wants).
//!
//! Every payload carries its own per-channel sequence number, channel index and
//! send time (`{"seq":N,"c":K,"t":MICROS,"p":"xxx…"}`), and subscribers read
//! them back from whatever the server delivers in the SSE `data:` line (Herald
//! wraps the payload in its envelope's `data`; Nchan and the floor deliver it as
//! is). One parser serves every server.
//!
//! Subscribers speak SSE (`--transport sse`, the default) or WebSocket
//! (`--transport ws`). Over WebSocket, by default, each connection opens Herald's
//! `{url}/v1/apps/{app}/ws?token={token}`, sends `{"id":1,"op":"subscribe","channel":…}`
//! and reads the payload from the `data` of pushes of type `message`; with
//! `--ws-subscribe-frame none` (and a `--sub-url` naming the channel) it sends nothing
//! and every text frame is the payload itself (Nchan's WebSocket subscriber).
//!
//! Scenarios:
//! - `idle`: open N subscriber connections and report the server's memory per
//!   connection (from /proc of every `--server-pid`, summed; PSS where the kernel
//!   has smaps_rollup, so that memory shared between a master and its workers
//!   counts once) and the connect rate.
//! - `fanout`: N subscribers of one channel (or spread over K channels), M messages
//!   published as fast as one publisher can (or at `--rate`); reports deliveries,
//!   losses, duplicates, reordering, publish-to-receipt latency percentiles, the
//!   server's CPU time per delivered message (from /proc/PID/stat) and the
//!   generator's own CPU time separately.
//! - `publish`: M messages over K channels with no subscribers, from
//!   `--concurrency` publishers: the publish endpoint's throughput.
//! - `churn`: N subscribers over K channels; while M messages are published at
//!   `--rate`, `--churn-rate` connections per second (default a tenth of N) are
//!   dropped and replaced by a fresh connection (a new subscription, no resume).
//!   Reports the reconnect rate achieved, failures, deliveries, the messages a
//!   connection missed while it was subscribed, latency, and the server's CPU and
//!   memory (PSS at the start, with N connected, and at the end).
//! - `resume`: N subscribers over K channels; M messages published at `--rate`;
//!   after a third of them every connection is dropped at once, and after two thirds
//!   all reconnect at once resuming from their last position (SSE `Last-Event-ID`,
//!   Herald WebSocket subscribe `cursor`). Reports the time until all are back and
//!   caught up, losses, duplicates, reordering and the server's CPU in the storm.
//! - `sustained`: one publisher as fast as it can for `--duration` to N
//!   subscribers (one channel by default): the fanout's report plus the publish
//!   rate achieved and the server's peak memory (`VmHWM`). In every scenario a
//!   publish answered `429` is sent again after its `Retry-After`, and the report
//!   counts the retries (`publish_retries`, `publish_retry_seconds`).
//! - `classroom`: one trainer and N students in a live session of Herald's classroom
//!   (`scenario/classroom.rs`).
//!
//! `--svg PATH` draws the latency distribution and the deliveries per 100 ms of a
//! run that delivers messages (fanout, churn, resume).
//!
//! Subscriber connections are spread over the source addresses 127.0.0.2…
//! 127.0.0.254 when the target is an IPv4 loopback address (so more than the
//! ~28 000 ephemeral ports of one source address are usable), and the process
//! raises its own soft file limit to the hard limit first.
//!
//! Every run is bounded: connections, messages, reconnections and a deadline.
//!
//! Layout: `cli` (the command line: one subcommand per scenario), `args` (what a run
//! measures), `proc` (`/proc` sampling), `wire` (payloads, URL templates, SSE and
//! WebSocket parsing), `conn` (dialing, connecting, reconnecting), `track` (what
//! each subscriber saw), `session` (N subscribers connected), `publisher`,
//! `scenario/*` (one file each), `report` (JSON and the summary), `svg` (charts) and
//! `progress` (the bar on stderr, only when it is a terminal).

pub mod args;
pub mod cli;
pub(crate) mod conn;
pub(crate) mod proc;
pub mod progress;
pub(crate) mod publisher;
pub mod report;
pub mod scenario;
pub(crate) mod session;
pub(crate) mod svg;
pub(crate) mod track;
pub(crate) mod wire;

pub use args::{BenchArgs, PubFormat, Scenario, Transport, WsFrames};
pub use report::summary;
pub use scenario::run;
