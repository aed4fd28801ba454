//! The node's cache of app records, read from the store at most once per
//! `app_cache_ttl` per app.
//!
//! Every request names its app in the URL, so the names come from outside:
//! the cache is bounded in entries, whatever names are asked for. Apps that
//! exist and names that do not are kept apart, each in its own LRU, so that a
//! flood of made-up names evicts only other made-up names, never a real app (a
//! real app's entry is also what keeps it served while the store is down).

use std::sync::Arc;

use hashlink::LruCache;
use herald_store::AppRecord;
use tokio::time::{Duration, Instant};

/// Apps that exist, cached at most (an app evicted is read again on its next request).
pub(crate) const MAX_CACHED_APPS: usize = 10_000;
/// Names found to be no app, cached at most (against a flood of 404s reaching the store).
pub(crate) const MAX_CACHED_MISSING: usize = 1_024;

/// See the module doc.
pub(crate) struct AppCache {
    found: LruCache<String, (Arc<AppRecord>, Instant)>,
    missing: LruCache<String, Instant>,
}

impl Default for AppCache {
    fn default() -> Self {
        Self {
            found: LruCache::new(MAX_CACHED_APPS),
            missing: LruCache::new(MAX_CACHED_MISSING),
        }
    }
}

impl AppCache {
    /// What is known of `name` and younger than `ttl`: `Some(Some(app))`, or
    /// `Some(None)` for a name that is no app; `None` when the store must tell.
    pub(crate) fn fresh(&mut self, name: &str, ttl: Duration) -> Option<Option<Arc<AppRecord>>> {
        if let Some((rec, at)) = self.found.get(name) {
            if at.elapsed() < ttl {
                return Some(Some(rec.clone()));
            }
            return None;
        }
        match self.missing.get(name) {
            Some(at) if at.elapsed() < ttl => Some(None),
            _ => None,
        }
    }

    /// The last record read of `name`, however old (when the store is down).
    pub(crate) fn stale(&self, name: &str) -> Option<Arc<AppRecord>> {
        self.found.peek(name).map(|(rec, _)| rec.clone())
    }

    /// Remembers what the store said of `name` now.
    pub(crate) fn put(&mut self, name: &str, record: Option<Arc<AppRecord>>) {
        let now = Instant::now();
        match record {
            Some(rec) => {
                self.missing.remove(name);
                self.found.insert(name.to_owned(), (rec, now));
            }
            None => {
                self.found.remove(name);
                self.missing.insert(name.to_owned(), now);
            }
        }
    }

    /// Forgets `name` (changed by the admin API).
    pub(crate) fn forget(&mut self, name: &str) {
        self.found.remove(name);
        self.missing.remove(name);
    }

    /// Entries held: apps, names that are no app.
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        (self.found.len(), self.missing.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> Arc<AppRecord> {
        Arc::new(AppRecord {
            name: name.to_owned(),
            key_hashes: Vec::new(),
            token_secrets: vec!["s".into()],
            created_at: 0,
        })
    }

    const TTL: Duration = Duration::from_secs(60);

    /// A flood of names that are no app stays within its bound and never
    /// pushes out a real app.
    #[test]
    fn made_up_names_evict_only_made_up_names() {
        let mut cache = AppCache::default();
        cache.put("acme", Some(record("acme")));
        for i in 0..50_000 {
            let name = format!("nope-{i}");
            assert_eq!(cache.fresh(&name, TTL), None, "the store is asked");
            cache.put(&name, None);
            assert!(cache.len().1 <= MAX_CACHED_MISSING);
        }
        assert_eq!(cache.len(), (1, MAX_CACHED_MISSING));
        assert_eq!(cache.fresh("acme", TTL).flatten().unwrap().name, "acme");
        assert!(cache.stale("acme").is_some());
        // The newest made-up names are still answered from the cache, the oldest not.
        assert_eq!(cache.fresh("nope-49999", TTL), Some(None));
        assert_eq!(cache.fresh("nope-0", TTL), None);
    }

    /// More apps than the bound: the least recently used leave, the others stay.
    #[test]
    fn apps_past_the_bound_evict_the_least_recently_used() {
        let mut cache = AppCache::default();
        cache.put("first", Some(record("first")));
        cache.put("busy", Some(record("busy")));
        for i in 0..MAX_CACHED_APPS + 500 {
            let name = format!("app-{i}");
            cache.put(&name, Some(record(&name)));
            // One app is asked for all along.
            assert!(cache.fresh("busy", TTL).is_some(), "{i}");
            assert!(cache.len().0 <= MAX_CACHED_APPS);
        }
        assert_eq!(cache.len().0, MAX_CACHED_APPS);
        assert!(cache.fresh("busy", TTL).is_some(), "in use: kept");
        assert!(cache.stale("first").is_none(), "unused the longest: evicted");
        assert!(cache.fresh("app-0", TTL).is_none());
    }

    /// An app created after its name was asked for (404 cached) is seen once
    /// the entry is past its age, or at once when forgotten.
    #[test]
    fn found_and_missing_replace_each_other() {
        let mut cache = AppCache::default();
        cache.put("acme", None);
        assert_eq!(cache.fresh("acme", TTL), Some(None));
        assert_eq!(
            cache.fresh("acme", Duration::ZERO),
            None,
            "too old: ask the store"
        );
        cache.put("acme", Some(record("acme")));
        assert_eq!(cache.len(), (1, 0));
        cache.forget("acme");
        assert_eq!(cache.len(), (0, 0));
        assert_eq!(cache.fresh("acme", TTL), None);
    }
}
