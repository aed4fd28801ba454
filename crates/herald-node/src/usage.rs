//! Per-app usage counters, added up in memory and written to the store per UTC day.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use herald_protocol::AppName;
use herald_store::UsageDelta;
use parking_lot::Mutex;

/// Live counters of one app.
#[derive(Default)]
pub struct AppUsage {
    /// Connections open now.
    pub connections: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    peak: AtomicU64,
}

impl AppUsage {
    pub(crate) fn published(&self, messages: u64, bytes: u64) {
        self.published.fetch_add(messages, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn delivered(&self, messages: u64, bytes: u64) {
        self.delivered.fetch_add(messages, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts a new connection unless the app is at `max`; false when refused.
    pub(crate) fn try_connect(&self, max: usize) -> bool {
        let mut now = self.connections.load(Ordering::Relaxed);
        loop {
            if now as usize >= max {
                return false;
            }
            match self
                .connections
                .compare_exchange_weak(now, now + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.peak.fetch_max(now + 1, Ordering::Relaxed);
                    return true;
                }
                Err(actual) => now = actual,
            }
        }
    }

    pub(crate) fn disconnect(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// Takes the counters since the last call (peak restarts at the current count).
    pub(crate) fn take(&self) -> UsageDelta {
        let current = self.connections.load(Ordering::Relaxed);
        UsageDelta {
            published: self.published.swap(0, Ordering::Relaxed),
            delivered: self.delivered.swap(0, Ordering::Relaxed),
            bytes_in: self.bytes_in.swap(0, Ordering::Relaxed),
            bytes_out: self.bytes_out.swap(0, Ordering::Relaxed),
            peak_connections: self.peak.swap(current, Ordering::Relaxed),
        }
    }

    /// The counters since the last `take`, without taking them.
    pub(crate) fn peek(&self) -> UsageDelta {
        UsageDelta {
            published: self.published.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            peak_connections: self.peak.load(Ordering::Relaxed),
        }
    }
}

/// Usage of every app seen by this node.
#[derive(Default)]
pub struct Usage {
    apps: Mutex<HashMap<AppName, Arc<AppUsage>>>,
}

impl Usage {
    /// The counters of `app`.
    pub fn of(&self, app: &AppName) -> Arc<AppUsage> {
        self.apps.lock().entry(app.clone()).or_default().clone()
    }

    /// Every app's counters.
    pub fn all(&self) -> Vec<(AppName, Arc<AppUsage>)> {
        self.apps
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Today's date in UTC, `YYYY-MM-DD`.
pub fn utc_day(unix_millis: i64) -> String {
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date crate for one line.
    let days = unix_millis.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

impl AppUsage {
    /// Puts back counters that could not be written.
    pub(crate) fn restore(&self, d: UsageDelta) {
        self.published.fetch_add(d.published, Ordering::Relaxed);
        self.delivered.fetch_add(d.delivered, Ordering::Relaxed);
        self.bytes_in.fetch_add(d.bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(d.bytes_out, Ordering::Relaxed);
        self.peak.fetch_max(d.peak_connections, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::utc_day;

    #[test]
    fn days() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(1_764_379_200_123), "2025-11-29");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29");
    }
}
