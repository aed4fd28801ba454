//! The report: the fields every delivering scenario adds, CPU and memory, the
//! chart, and the few human lines printed after the JSON.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::args::pub_template;
use crate::proc::ProcSample;
use crate::session::{Session, Totals};
use crate::svg;
use crate::track::BUCKET_MS;

pub(crate) fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

/// The fields every delivering scenario reports.
pub(crate) fn delivery_report(s: &mut Session, t: &Totals, publish_secs: f64, t0_us: u64) {
    let (a, r) = (&s.a, &mut s.report);
    let last_us = s.sh.tally.last_delivery_us.load(Ordering::Relaxed);
    let deliver_secs = (last_us.saturating_sub(t0_us) as f64 / 1e6).max(publish_secs);
    r["messages"] = a.messages.into();
    r["size"] = a.size.into();
    r["rate"] = a.rate.into();
    r["pub_url"] = pub_template(a).into();
    r["pub_format"] = format!("{:?}", a.pub_format).to_lowercase().into();
    r["delivered"] = t.received.into();
    r["duplicates"] = t.duplicates.into();
    r["reordered"] = t.reordered.into();
    r["foreign"] = t.foreign.into();
    r["closed_early"] = s.sh.tally.closed_early.load(Ordering::Relaxed).into();
    r["publish_seconds"] = publish_secs.into();
    r["deliver_seconds"] = deliver_secs.into();
    r["deliveries_per_second"] = (t.received as f64 / deliver_secs.max(1e-9)).into();
    let lat = &t.lat;
    r["latency_ms"] = json!({
        "p50": percentile_ms(lat, 0.5), "p90": percentile_ms(lat, 0.9),
        "p99": percentile_ms(lat, 0.99), "p999": percentile_ms(lat, 0.999),
        "max": lat.last().map_or(0.0, |&m| f64::from(m) / 1000.0),
    });
}

/// Server and generator CPU over a span, per delivery.
pub(crate) fn cpu_report(
    r: &mut Value,
    server: (Option<ProcSample>, Option<ProcSample>),
    own: (Option<f64>, Option<f64>),
    received: u64,
) {
    if let (Some(c0), Some(c1)) = server {
        let cpu = c1.cpu_seconds - c0.cpu_seconds;
        r["server_cpu_seconds"] = cpu.into();
        r["server_us_per_delivery"] = (cpu * 1e6 / received.max(1) as f64).into();
        // The peak resident set since the server started (VmHWM), at the end.
        r["server_peak_rss_kb"] = c1.hwm_kb.into();
    }
    if let (Some(o0), Some(o1)) = own {
        r["bench_cpu_seconds"] = (o1 - o0).into();
        r["bench_us_per_delivery"] = ((o1 - o0) * 1e6 / received.max(1) as f64).into();
    }
}

/// Memory now, with every connection still open, against the start (churn).
pub(crate) fn memory_end_report(r: &mut Value, end: Option<ProcSample>) {
    let Some(e) = end else {
        return;
    };
    r["server_rss_kb_end"] = e.rss_kb.into();
    if let Some(c) = r["server_rss_kb_connected"].as_u64() {
        r["server_rss_kb_growth"] = (e.rss_kb as i64 - c as i64).into();
    }
    if let Some(ep) = e.pss_kb {
        r["server_pss_kb_end"] = ep.into();
        if let Some(c) = r["server_pss_kb_connected"].as_u64() {
            r["server_pss_kb_growth"] = (ep as i64 - c as i64).into();
        }
    }
}

/// Writes the chart when `--svg` asked for one; a failure lands in the report.
pub(crate) fn write_chart(s: &mut Session, lat: &[u32], markers: Vec<(f64, String)>) {
    let Some(path) = s.a.svg.clone() else {
        return;
    };
    let a = &s.a;
    let series = s.sh.timeline.series();
    let chart = svg::Chart {
        title: format!(
            "herald-bench {} over {}: {} connections, {} channel{}, {} messages",
            a.scenario.name(),
            a.transport.name(),
            a.connections,
            a.channels,
            if a.channels == 1 { "" } else { "s" },
            a.messages
        ),
        latencies_us: lat,
        per_bucket: &series,
        bucket_ms: BUCKET_MS,
        markers,
    };
    let text = svg::render(&chart);
    s.report["svg"] = path.display().to_string().into();
    s.report["deliveries_per_100ms"] = series.into();
    if let Err(e) = std::fs::write(&path, text) {
        s.report["svg_error"] = format!("cannot write {}: {e}", path.display()).into();
    }
}

/// A few human lines summarizing a report from [`run`].
pub fn summary(r: &Value) -> String {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let u = |k: &str| r[k].as_u64().unwrap_or(0);
    let mut out = Vec::new();
    if r["scenario"] == "publish" {
        out.push(format!(
            "publish: {} messages in {:.2} s = {:.0}/s, {} errors",
            u("messages"),
            f("seconds"),
            f("publishes_per_second"),
            u("errors")
        ));
        if u("publish_retries") > 0 {
            out.push(format!(
                "publishes sent again after 429: {} (waited {:.1} s for Retry-After)",
                u("publish_retries"),
                f("publish_retry_seconds"),
            ));
        }
        if r.get("server_us_per_publish").is_some() {
            out.push(format!(
                "server CPU {:.1} µs per publish",
                f("server_us_per_publish")
            ));
        }
        return out.join("\n");
    }
    let transport = match r["transport"].as_str() {
        Some("ws") => " over WebSocket",
        _ => "",
    };
    out.push(format!(
        "{}: {}/{} connections opened{transport} ({} failed) in {:.2} s = {:.0}/s, {} source addresses",
        r["scenario"].as_str().unwrap_or("?"),
        u("opened"),
        u("connections"),
        u("failed"),
        f("connect_seconds"),
        f("connects_per_second"),
        u("source_addresses"),
    ));
    if let Some(e) = r["first_error"].as_str() {
        out.push(format!("first error: {e}"));
    }
    if r.get("server_kb_per_connection").is_some() {
        out.push(format!(
            "server memory {:.1} KB per connection (RSS {:.1} KB)",
            f("server_kb_per_connection"),
            f("server_rss_kb_per_connection"),
        ));
    }
    if r.get("churn_connects").is_some() {
        out.push(format!(
            "churn: {} disconnects in {:.2} s (asked {:.0}/s); {} reconnects = {:.0}/s, {} failed attempts, {} gave up",
            u("churn_disconnects"),
            f("churn_seconds"),
            f("churn_rate"),
            u("churn_connects"),
            f("churn_connects_per_second"),
            u("churn_failed"),
            u("churn_gave_up"),
        ));
    }
    if r.get("server_rss_kb_end").is_some() {
        let (key, what) = if r.get("server_pss_kb_end").is_some() {
            ("pss", "PSS")
        } else {
            ("rss", "RSS")
        };
        let growth = r[format!("server_{key}_kb_growth")].as_i64().unwrap_or(0);
        out.push(format!(
            "server {what}: {} KB at the start, {} KB with the connections open, {} KB at the end ({growth:+} KB)",
            u(&format!("server_{key}_kb_before")),
            u(&format!("server_{key}_kb_connected")),
            u(&format!("server_{key}_kb_end")),
        ));
    }
    if r.get("resume_dropped").is_some() {
        let secs = |k: &str| {
            r[k].as_f64()
                .map_or_else(|| "never".to_owned(), |s| format!("{s:.2} s"))
        };
        let cpu = if r.get("storm_server_cpu_seconds").is_some() {
            format!(
                "; server CPU {:.2} s in the storm ({:.0} %)",
                f("storm_server_cpu_seconds"),
                f("storm_server_cpu_percent")
            )
        } else {
            String::new()
        };
        out.push(format!(
            "resume: {} dropped at once, down {:.2} s; {} back in {}, caught up in {} \
             ({} failed attempts, {} gave up, {} resets){cpu}",
            u("resume_dropped"),
            f("resume_down_seconds"),
            u("resume_reconnected"),
            secs("resume_back_seconds"),
            secs("resume_caught_up_seconds"),
            u("resume_failed"),
            u("resume_gave_up"),
            u("resets"),
        ));
    }
    if r.get("delivered").is_some() {
        let of = if r.get("expected_deliveries").is_some() {
            format!("/{}", u("expected_deliveries"))
        } else {
            String::new()
        };
        out.push(format!(
            "delivered {}{of} in {:.2} s = {:.0}/s; lost {}, duplicates {}, reordered {}, foreign {}, closed early {}",
            u("delivered"),
            f("deliver_seconds"),
            f("deliveries_per_second"),
            u("lost"),
            u("duplicates"),
            u("reordered"),
            u("foreign"),
            u("closed_early"),
        ));
        let l = &r["latency_ms"];
        let g = |k: &str| l[k].as_f64().unwrap_or(f64::NAN);
        out.push(format!(
            "latency ms: p50 {:.1}, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}",
            g("p50"),
            g("p90"),
            g("p99"),
            g("p999"),
            g("max")
        ));
        if r.get("publishes_per_second").is_some() {
            out.push(format!(
                "published {} in {:.2} s = {:.0}/s (one publisher as fast as it can)",
                u("messages"),
                f("publish_seconds"),
                f("publishes_per_second"),
            ));
        }
        if u("publish_retries") > 0 {
            out.push(format!(
                "publishes sent again after 429: {} (waited {:.1} s for Retry-After)",
                u("publish_retries"),
                f("publish_retry_seconds"),
            ));
        }
        let server = if r.get("server_us_per_delivery").is_some() {
            format!(
                "server CPU {:.2} µs per delivery, peak RSS {} KB; ",
                f("server_us_per_delivery"),
                u("server_peak_rss_kb")
            )
        } else {
            String::new()
        };
        out.push(format!(
            "{server}bench CPU {:.2} µs per delivery",
            f("bench_us_per_delivery")
        ));
    }
    if let Some(p) = r["svg"].as_str() {
        match r["svg_error"].as_str() {
            Some(e) => out.push(format!("chart not written: {e}")),
            None => out.push(format!("chart: {p}")),
        }
    }
    out.join("\n")
}

/// `text` with the value of every `token=` (a URL's query) replaced by
/// `[redacted]`: errors name the URL they failed on, and reports are files
/// people share.
pub fn redact_tokens(text: &str) -> String {
    const KEY: &str = "token=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        let (head, tail) = rest.split_at(at + KEY.len());
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '&' || c == '#' || c == '"' || c == '\'' || c == ')' || c.is_whitespace())
            .unwrap_or(tail.len());
        if end > 0 {
            out.push_str("[redacted]");
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod redaction {
    use super::redact_tokens;

    #[test]
    fn token_values_are_redacted_wherever_a_url_is_written() {
        assert_eq!(
            redact_tokens(
                "error sending request for url (http://h/v1/apps/a/events?channel=c&token=ey.J.x): refused"
            ),
            "error sending request for url (http://h/v1/apps/a/events?channel=c&token=[redacted]): refused"
        );
        assert_eq!(
            redact_tokens("ws://h/ws?token=abc&x=1 and \"http://h/?token=d\""),
            "ws://h/ws?token=[redacted]&x=1 and \"http://h/?token=[redacted]\""
        );
        assert_eq!(redact_tokens("?token=&a=1 token="), "?token=&a=1 token=");
        assert_eq!(redact_tokens("no secret here"), "no secret here");
    }
}
