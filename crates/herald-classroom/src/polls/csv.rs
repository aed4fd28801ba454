//! A poll's answers as CSV (staff): one row per answer, oldest first.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::model::{Poll, PollsState};

/// The header line.
pub const HEADER: &str = "user,answer,answered_at,correct,score";

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line
/// break, quotes doubled. A field a spreadsheet would take for a formula
/// (leading `=`, `+`, `-`, `@`, tab or carriage return: students type the
/// answers and their names) gets a leading `'`, as OWASP advises.
pub fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Unix milliseconds as ISO 8601 UTC (`2024-06-10T09:30:00.250Z`).
pub fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The answers of `poll` as CSV, CRLF line ends, with a header line; `correct`
/// and `score` are empty unless it is a quiz.
pub fn to_csv(poll: &Poll, polls: &PollsState) -> String {
    let answers = poll.answers.read();
    let mut rows: Vec<_> = answers.iter().collect();
    rows.sort_by(|a, b| a.1.at.cmp(&b.1.at).then_with(|| a.0.cmp(b.0)));
    let mut out = format!("{HEADER}\r\n");
    for (user, e) in rows {
        let (correct, score) = match poll.score(e) {
            Some((ok, points)) => (if ok { "yes" } else { "no" }.to_owned(), points.to_string()),
            None => (String::new(), String::new()),
        };
        let fields = [
            polls.name_of(user),
            poll.answer_text(&e.answer),
            iso(e.at),
            correct,
            score,
        ];
        let line: Vec<String> = fields.iter().map(|f| field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// The CSV download of `poll`.
pub fn file(sid: &str, poll: &Poll, polls: &PollsState) -> Response {
    let disposition = format!("attachment; filename=\"poll-{sid}-{}.csv\"", poll.id);
    let mut r = to_csv(poll, polls).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&disposition) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::model::{Answer, Entry, NewPoll};
    use super::*;

    #[test]
    fn iso_times() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_718_011_800_250), "2024-06-10T09:30:00.250Z");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn rows_are_quoted_and_defused() {
        let req = NewPoll {
            kind: "text".into(),
            question: "Say".into(),
            options: None,
            scale: None,
            correct: None,
            duration_s: None,
        };
        let p = Poll::build(req, "p_1".into(), 0).unwrap();
        p.answers.insert(
            "u_1".into(),
            Entry {
                answer: Answer::Text("=1+1, \"x\"".into()),
                at: 0,
                elapsed_ms: 0,
            },
        );
        let polls = PollsState::default();
        polls.names.insert("u_1".into(), "@Sam".into());
        assert_eq!(
            to_csv(&p, &polls),
            "user,answer,answered_at,correct,score\r\n'@Sam,\"'=1+1, \"\"x\"\"\",1970-01-01T00:00:00.000Z,,\r\n"
        );
    }
}
