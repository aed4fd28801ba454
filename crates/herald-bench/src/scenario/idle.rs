//! `idle`: N subscriber connections opened (the session does it) and, with
//! `--hold`, kept open a while: the server's memory per connection and the
//! connect rate.

use std::sync::atomic::Ordering;

use crate::proc::proc_sample;
use crate::session::Session;

/// Holds the connections for `--hold` (when given), then notes what the server holds.
pub(crate) async fn run(s: &mut Session) {
    let a = s.a.clone();
    if !a.hold.is_zero() {
        let open = s.sh.tally.opened.load(Ordering::Relaxed);
        // Always said, even with --quiet: scripts wait for this line.
        s.progress
            .println(&format!("idle: holding {open} connections for {:?}", a.hold));
        tokio::time::sleep(a.hold.min(a.deadline)).await;
        if let Some(m) = proc_sample(&s.pids) {
            s.report["server_pss_kb_after_hold"] = m.pss_kb.into();
            s.report["server_rss_kb_after_hold"] = m.rss_kb.into();
        }
        s.report["held_seconds"] = a.hold.as_secs_f64().into();
    }
    s.report["closed_early"] = s.sh.tally.closed_early.load(Ordering::Relaxed).into();
}
