//! The scenarios, one file each, and [`run`], which checks the arguments and
//! runs one.

pub mod churn;
pub mod classroom;
pub mod fanout;
pub mod idle;
pub mod publish;
pub mod resume;

use std::sync::Arc;

use anyhow::bail;
use serde_json::Value;

use crate::args::{BenchArgs, Scenario};
use crate::proc::{pids_of, raise_file_limit};
use crate::publisher::Publisher;
use crate::session::open_session;
use crate::track::Mode;

/// At most this many subscriber connections in one run.
pub(crate) const MAX_CONNECTIONS: usize = 100_000;

/// Runs a scenario and returns its JSON report (see [`crate::summary`] for a short text).
///
/// # Errors
/// Bad arguments, a failed publish, or the server cannot be reached.
pub async fn run(a: BenchArgs) -> anyhow::Result<Value> {
    a.validate()?;
    let file_limit = raise_file_limit();
    let pids = resolve_pids(&a);
    if a.server_pids_of.is_some() && pids.is_empty() {
        bail!(
            "no process named {:?}",
            a.server_pids_of.as_deref().unwrap_or_default()
        );
    }
    if a.scenario == Scenario::Publish {
        return publish::run(Arc::new(a), &pids).await;
    }
    let max = MAX_CONNECTIONS.min(usize::try_from(file_limit.saturating_sub(100)).unwrap_or(usize::MAX));
    if a.connections == 0 || a.connections > max {
        bail!("--connections must be 1 to {max} (the open-file limit here is {file_limit})");
    }
    if a.channels == 0 || a.channels > a.connections {
        bail!("--channels must be 1 to --connections");
    }
    let a = Arc::new(a);
    let publisher = if a.scenario == Scenario::Idle {
        None
    } else {
        Some(Publisher::new(&a)?)
    };
    let mode = match a.scenario {
        Scenario::Churn => Mode::Churn,
        Scenario::Resume => Mode::Resume,
        _ => Mode::Plain,
    };
    let mut s = open_session(a.clone(), pids, file_limit, mode).await?;
    match (a.scenario, publisher) {
        (Scenario::Fanout | Scenario::Sustained, Some(p)) => fanout::run(&mut s, p).await?,
        (Scenario::Churn, Some(p)) => churn::run(&mut s, p).await?,
        (Scenario::Resume, Some(p)) => resume::run(&mut s, p).await?,
        _ => idle::run(&mut s).await,
    }
    Ok(s.finish().await)
}

/// The `--server-pid`s and the processes named `--server-pids-of`, once each.
pub(crate) fn resolve_pids(a: &BenchArgs) -> Vec<u32> {
    let mut pids = a.server_pids.clone();
    if let Some(name) = &a.server_pids_of {
        pids.extend(pids_of(name));
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}
