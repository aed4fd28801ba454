//! The config file (`herald.toml`): TOML of the expected shape, then the one
//! validation every setting goes through (`config::build`). A file is refused
//! with a sentence naming the setting, or gives a configuration the server can
//! run with: every duration fits a deadline computed from now (the transports
//! and the node add them to `Instant::now()`).
#![no_main]

use std::time::{Duration, Instant};

use herald::config::{build, FileConfig, Overrides};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = toml::from_str::<FileConfig>(text) else {
        return;
    };
    let config = match build(file, Overrides::default()) {
        Ok(c) => c,
        Err(e) => {
            assert!(!format!("{e:#}").is_empty());
            return;
        }
    };
    let s = &config.server;
    let n = &config.node;
    let mut durations: Vec<(&str, Duration)> = vec![
        ("sse_heartbeat", s.sse_heartbeat),
        ("sse_retry", s.sse_retry),
        ("ws_ping", s.ws_ping),
        ("ws_idle_timeout", s.ws_idle_timeout),
        ("longpoll_max_timeout", s.longpoll_max_timeout),
        ("shutdown_deadline", s.shutdown_deadline),
        ("request_head_timeout", s.request_head_timeout),
        ("request_body_timeout", s.request_body_timeout),
        ("idempotency_window", n.idempotency_window),
        ("presence_ttl", n.presence_ttl),
        ("token_leeway", n.token_leeway),
        ("hub_lag", n.limits.hub_lag),
        ("publish_wait", n.limits.publish_wait),
        ("defaults.history_ttl", n.default_namespace.history_ttl),
    ];
    for ns in n.namespaces.values() {
        durations.push(("namespaces.*.history_ttl", ns.history_ttl));
    }
    let now = Instant::now();
    for (name, d) in durations {
        assert!(
            now.checked_add(d).is_some(),
            "{name} = {d:?} overflows a deadline"
        );
        assert!(
            tokio::time::Instant::now().checked_add(d).is_some(),
            "{name} = {d:?} overflows a deadline"
        );
        assert!(
            i64::try_from(d.as_millis()).is_ok(),
            "{name} = {d:?} overflows milliseconds"
        );
    }
});
