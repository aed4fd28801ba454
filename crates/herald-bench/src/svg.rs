//! The `--svg` chart of a bench run, written by hand (no dependency): two panels,
//! the distribution of publish-to-receipt latency on a log scale and the
//! deliveries per time bucket over the run.

use std::fmt::Write as _;

/// The first panel's title.
pub(super) const LATENCY_TITLE: &str = "Latency distribution (publish to receipt, ms, log scale)";
/// The second panel's title (the bucket width follows).
pub(super) const THROUGHPUT_TITLE: &str = "Throughput over time (deliveries per";

const WIDTH: f64 = 960.0;
const PANEL: f64 = 340.0;
const TOP: f64 = 40.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
/// From a panel's top to its plot area, and from the plot area to the panel's bottom.
const HEAD: f64 = 50.0;
const FOOT: f64 = 50.0;
/// At most this many steps in the throughput curve (buckets are merged beyond).
const MAX_STEPS: usize = 1500;
/// Latency histogram bins per decade.
const BINS_PER_DECADE: f64 = 10.0;

/// What to draw.
pub(super) struct Chart<'a> {
    pub title: String,
    /// Publish-to-receipt latencies in microseconds, sorted.
    pub latencies_us: &'a [u32],
    /// Deliveries per bucket since the first publish.
    pub per_bucket: &'a [u64],
    pub bucket_ms: u64,
    /// Moments to mark on the throughput panel: seconds since the first publish, label.
    pub markers: Vec<(f64, String)>,
}

/// The chart as an SVG document.
pub(super) fn render(c: &Chart<'_>) -> String {
    let height = TOP + 2.0 * PANEL + 10.0;
    let mut s = String::with_capacity(64 * 1024);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-size="15" font-weight="bold" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        esc(&c.title)
    );
    latency_panel(&mut s, c.latencies_us, TOP);
    throughput_panel(&mut s, c, TOP + PANEL);
    s.push_str("</svg>\n");
    s
}

/// The plot area of the panel whose top is `top`: (x0, x1, y0, y1), y0 above y1.
fn area(top: f64) -> (f64, f64, f64, f64) {
    (LEFT, WIDTH - RIGHT, top + HEAD, top + PANEL - FOOT)
}

fn panel_title(s: &mut String, top: f64, title: &str) {
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        top + 22.0,
        esc(title)
    );
}

fn empty(s: &mut String, top: f64, what: &str) {
    let (x0, x1, y0, y1) = area(top);
    let _ = writeln!(
        s,
        r##"<rect x="{x0}" y="{y0}" width="{}" height="{}" fill="none" stroke="#999"/><text x="{}" y="{}" text-anchor="middle" fill="#666">{what}</text>"##,
        x1 - x0,
        y1 - y0,
        (x0 + x1) / 2.0,
        (y0 + y1) / 2.0
    );
}

/// Axes, horizontal grid lines and y labels for `0..=ymax` by `step`.
fn y_axis(s: &mut String, top: f64, ymax: f64, step: f64, label: impl Fn(f64) -> String, title: &str) {
    let (x0, x1, y0, y1) = area(top);
    let mut v = 0.0;
    let mut n = 0;
    while v <= ymax * 1.000_001 && n <= 20 {
        let y = y1 - v / ymax * (y1 - y0);
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            label(v)
        );
        v += step;
        n += 1;
    }
    let _ = writeln!(
        s,
        r##"<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/><line x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}" stroke="#333"/>"##
    );
    let (cx, cy) = (18.0, (y0 + y1) / 2.0);
    let _ = writeln!(
        s,
        r#"<text x="{cx}" y="{cy}" text-anchor="middle" transform="rotate(-90 {cx} {cy})">{}</text>"#,
        esc(title)
    );
}

fn x_tick(s: &mut String, top: f64, x: f64, label: &str) {
    let (_, _, _, y1) = area(top);
    let _ = writeln!(
        s,
        r##"<line x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{}" stroke="#333"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
        y1 + 5.0,
        y1 + 18.0,
        esc(label)
    );
}

fn x_title(s: &mut String, top: f64, title: &str) {
    let (x0, x1, _, y1) = area(top);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        y1 + 38.0,
        esc(title)
    );
}

/// A dashed vertical line across the plot area with a label at row `row` from the top.
fn marker(s: &mut String, top: f64, x: f64, row: usize, color: &str, label: &str) {
    let (_, x1, y0, y1) = area(top);
    let ly = y0 - 4.0 + 13.0 * row as f64;
    let anchor = if x > x1 - 120.0 { "end" } else { "start" };
    let lx = if anchor == "end" { x - 3.0 } else { x + 3.0 };
    let _ = writeln!(
        s,
        r#"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="{color}" stroke-dasharray="4 3"/><text x="{lx:.1}" y="{ly:.1}" fill="{color}" text-anchor="{anchor}">{}</text>"#,
        esc(label)
    );
}

fn latency_panel(s: &mut String, lat: &[u32], top: f64) {
    panel_title(s, top, LATENCY_TITLE);
    let (Some(&first), Some(&last)) = (lat.first(), lat.last()) else {
        empty(s, top, "no deliveries");
        return;
    };
    let (x0, x1, y0, y1) = area(top);
    let lo = f64::from(first.max(1)).log10().floor();
    let hi = (f64::from(last.max(1)).log10().floor() + 1.0).max(lo + 1.0);
    let x_of = |us: f64| x0 + (us.max(1.0).log10() - lo) / (hi - lo) * (x1 - x0);
    let bins = ((hi - lo) * BINS_PER_DECADE).round() as usize;
    let edge = |k: usize| 10f64.powf(lo + k as f64 / BINS_PER_DECADE);
    let below = |x: f64| lat.partition_point(|&v| f64::from(v) < x);
    let n = lat.len() as f64;
    let shares: Vec<f64> = (0..bins)
        .map(|k| {
            let from = if k == 0 { 0 } else { below(edge(k)) };
            let to = if k + 1 == bins {
                lat.len()
            } else {
                below(edge(k + 1))
            };
            to.saturating_sub(from) as f64 * 100.0 / n
        })
        .collect();
    let top_share = shares.iter().copied().fold(0.0, f64::max);
    let step = nice_step(top_share, 5.0);
    // Head room for the percentile labels.
    let ymax = ((top_share * 1.3 / step).ceil() * step).max(step);
    y_axis(s, top, ymax, step, |v| format!("{}%", num(v)), "% of deliveries");
    for (k, share) in shares.iter().enumerate() {
        if *share <= 0.0 {
            continue;
        }
        let (bx0, bx1) = (x_of(edge(k)), x_of(edge(k + 1)));
        let h = share / ymax * (y1 - y0);
        let _ = writeln!(
            s,
            r##"<rect x="{bx0:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#4a78b8"><title>{} to {} ms: {}%</title></rect>"##,
            y1 - h,
            (bx1 - bx0 - 0.6).max(0.5),
            num(edge(k) / 1000.0),
            num(edge(k + 1) / 1000.0),
            num(*share)
        );
    }
    for d in lo as i32..=hi as i32 {
        let us = 10f64.powi(d);
        x_tick(s, top, x_of(us), &num(us / 1000.0));
    }
    x_title(s, top, "latency (ms)");
    let pick = |p: f64| {
        let i = ((n - 1.0) * p).round() as usize;
        f64::from(lat.get(i).copied().unwrap_or(last))
    };
    let marks = [
        ("p50", pick(0.5)),
        ("p90", pick(0.9)),
        ("p99", pick(0.99)),
        ("p99.9", pick(0.999)),
        ("max", f64::from(last)),
    ];
    for (row, (name, us)) in marks.iter().enumerate() {
        let label = format!("{name} {} ms", num(us / 1000.0));
        marker(s, top, x_of(*us), row + 1, "#c0392b", &label);
    }
}

fn throughput_panel(s: &mut String, c: &Chart<'_>, top: f64) {
    let title = format!("{THROUGHPUT_TITLE} {} ms)", c.bucket_ms);
    panel_title(s, top, &title);
    if c.per_bucket.is_empty() {
        empty(s, top, "no deliveries");
        return;
    }
    let (x0, x1, y0, y1) = area(top);
    // Merge buckets into at most MAX_STEPS steps, each the mean per bucket.
    let group = c.per_bucket.len().div_ceil(MAX_STEPS);
    let steps: Vec<f64> = c
        .per_bucket
        .chunks(group)
        .map(|g| g.iter().sum::<u64>() as f64 / g.len() as f64)
        .collect();
    let bucket_s = c.bucket_ms as f64 / 1000.0;
    let step_s = bucket_s * group as f64;
    let duration = c.per_bucket.len() as f64 * bucket_s;
    let x_of = |t: f64| x0 + t / duration * (x1 - x0);
    let peak = steps.iter().copied().fold(0.0, f64::max);
    let ystep = nice_step(peak, 5.0);
    let ymax = ((peak * 1.1 / ystep).ceil() * ystep).max(ystep);
    y_axis(s, top, ymax, ystep, num, "deliveries per bucket");
    let y_of = |v: f64| y1 - v / ymax * (y1 - y0);
    let mut path = format!("M{x0:.1},{y1:.1}");
    for (i, v) in steps.iter().enumerate() {
        let (a, b) = (
            x_of(i as f64 * step_s),
            x_of(((i + 1) as f64 * step_s).min(duration)),
        );
        let y = y_of(*v);
        let _ = write!(path, " L{a:.1},{y:.1} L{b:.1},{y:.1}");
    }
    let _ = write!(path, " L{x1:.1},{y1:.1} Z");
    let _ = writeln!(
        s,
        r##"<path d="{path}" fill="#9cc3e6" stroke="#2f5f9e" stroke-width="1"/>"##
    );
    let tstep = nice_step(duration, 8.0);
    let mut t = 0.0;
    let mut n = 0;
    while t <= duration * 1.000_001 && n <= 30 {
        x_tick(s, top, x_of(t), &num(t));
        t += tstep;
        n += 1;
    }
    x_title(s, top, "seconds since the first publish");
    for (row, (at, label)) in c.markers.iter().enumerate() {
        marker(s, top, x_of(at.clamp(0.0, duration)), row + 1, "#c0392b", label);
    }
    let total: u64 = c.per_bucket.iter().sum();
    let busiest = c.per_bucket.iter().copied().max().unwrap_or(0);
    let _ = writeln!(
        s,
        r##"<text x="{x1}" y="{}" text-anchor="end" fill="#444">{} deliveries; busiest bucket {}</text>"##,
        top + 22.0,
        total,
        busiest
    );
}

/// A step of 1, 2 or 5 × 10^k giving about `ticks` steps up to `max`.
fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let m = match raw / mag {
        x if x <= 1.0 => 1.0,
        x if x <= 2.0 => 2.0,
        x if x <= 5.0 => 5.0,
        _ => 10.0,
    };
    m * mag
}

/// A short number: 3 significant decimals at most, `k` and `M` for large ones.
fn num(v: f64) -> String {
    let trim = |x: f64, d: usize| {
        let t = format!("{x:.d$}");
        if t.contains('.') {
            t.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            t
        }
    };
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6, 2))
    } else if a >= 1e4 {
        format!("{}k", trim(v / 1e3, 1))
    } else if a >= 100.0 || a == 0.0 {
        trim(v, 0)
    } else if a >= 1.0 {
        trim(v, 2)
    } else {
        trim(v, 3)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_both_panels_and_survives_empty_runs() {
        let lat: Vec<u32> = (1..=1000).map(|i| i * 37).collect();
        let buckets = [0, 5, 120, 300, 40, 0, 7];
        let chart = Chart {
            title: "a <b> & c".into(),
            latencies_us: &lat,
            per_bucket: &buckets,
            bucket_ms: 100,
            markers: vec![(0.25, "drop".into())],
        };
        let svg = render(&chart);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(LATENCY_TITLE) && svg.contains(THROUGHPUT_TITLE));
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert!(svg.contains(">drop<") && svg.contains("p99 "));
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        let none = render(&Chart {
            latencies_us: &[],
            per_bucket: &[],
            markers: Vec::new(),
            ..chart
        });
        assert_eq!(none.matches("no deliveries").count(), 2);
        assert!(!none.contains("NaN"));
    }

    #[test]
    fn numbers_and_steps_are_short() {
        assert_eq!(num(0.0), "0");
        assert_eq!(num(0.0125), "0.013");
        assert_eq!(num(12.5), "12.5");
        assert_eq!(num(250.0), "250");
        assert_eq!(num(25_000.0), "25k");
        assert_eq!(num(1_500_000.0), "1.5M");
        assert_eq!(nice_step(100.0, 5.0), 20.0);
        assert_eq!(nice_step(7.0, 5.0), 2.0);
    }
}
