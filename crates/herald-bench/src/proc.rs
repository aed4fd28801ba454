//! The server's CPU time and memory, and this process's own, read from `/proc`
//! (Linux); the open-file limit.

/// CPU time and memory of a set of processes, summed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProcSample {
    pub(crate) cpu_seconds: f64,
    pub(crate) rss_kb: u64,
    pub(crate) pss_kb: Option<u64>,
    /// The peak resident set since the process started (`VmHWM`); summed over
    /// processes, the sum of their peaks (an upper bound of the peak of the sum).
    pub(crate) hwm_kb: u64,
}

pub(crate) fn status_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub(crate) fn proc_one(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status_kb(&status, "VmRSS:")?;
    let hwm_kb = status_kb(&status, "VmHWM:").unwrap_or(rss_kb);
    let pss_kb = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| status_kb(&s, "Pss:"));
    // USER_HZ is 100 on Linux.
    Some(ProcSample {
        cpu_seconds: ticks as f64 / 100.0,
        rss_kb,
        pss_kb,
        hwm_kb,
    })
}

/// The sum over `pids`; `None` when there are none or one cannot be read.
pub(crate) fn proc_sample(pids: &[u32]) -> Option<ProcSample> {
    if pids.is_empty() {
        return None;
    }
    let mut sum = ProcSample {
        cpu_seconds: 0.0,
        rss_kb: 0,
        pss_kb: Some(0),
        hwm_kb: 0,
    };
    for pid in pids {
        let s = proc_one(&pid.to_string())?;
        sum.cpu_seconds += s.cpu_seconds;
        sum.rss_kb += s.rss_kb;
        sum.hwm_kb += s.hwm_kb;
        sum.pss_kb = sum.pss_kb.zip(s.pss_kb).map(|(a, b)| a + b);
    }
    Some(sum)
}

pub(crate) fn own_cpu_seconds() -> Option<f64> {
    proc_one("self").map(|s| s.cpu_seconds)
}

/// Every process whose command name (`/proc/PID/comm`) is `name`.
pub fn pids_of(name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Raises this process's soft limit on open files to its hard limit and
/// returns the soft limit in force.
pub fn raise_file_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
        .unwrap_or(1024)
}
