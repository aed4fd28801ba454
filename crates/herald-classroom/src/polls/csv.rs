//! A poll's answers as CSV (staff): one row per answer, oldest first.

use axum::response::Response;

use super::model::{Poll, PollsState};
use crate::export::{download, iso, line};

/// The header line.
pub const HEADER: &str = "user,answer,answered_at,correct,score";

/// The answers of `poll` as CSV, CRLF line ends, with a header line; `correct`
/// and `score` are empty unless it is a quiz.
pub fn to_csv(poll: &Poll, polls: &PollsState) -> String {
    let mut rows: Vec<_> = poll.answers.iter().collect();
    rows.sort_by(|a, b| a.1.at.cmp(&b.1.at).then_with(|| a.0.cmp(b.0)));
    let mut out = format!("{HEADER}\r\n");
    for (user, e) in rows {
        let (correct, score) = match poll.score(e) {
            Some((ok, points)) => (if ok { "yes" } else { "no" }.to_owned(), points.to_string()),
            None => (String::new(), String::new()),
        };
        out.push_str(&line(&[
            polls.name_of(user),
            poll.answer_text(&e.answer),
            iso(e.at),
            correct,
            score,
        ]));
    }
    out
}

/// The CSV download of `poll`.
pub fn file(sid: &str, poll: &Poll, polls: &PollsState) -> Response {
    download(
        &format!("poll-{sid}-{}.csv", poll.id),
        "text/csv; charset=utf-8",
        to_csv(poll, polls),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::model::{Answer, Entry, NewPoll};
    use super::*;

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
        let mut p = Poll::build(req, "p_1".into(), 0).unwrap();
        p.answers.insert(
            "u_1".into(),
            Entry {
                answer: Answer::Text("=1+1, \"x\"".into()),
                at: 0,
                elapsed_ms: 0,
            },
        );
        let mut polls = PollsState::default();
        polls.names.insert("u_1".into(), "@Sam".into());
        assert_eq!(
            to_csv(&p, &polls),
            "user,answer,answered_at,correct,score\r\n'@Sam,\"'=1+1, \"\"x\"\"\",1970-01-01T00:00:00.000Z,,\r\n"
        );
    }
}
