//! What a poll is: its kinds, the checks of a new poll and of an answer, the
//! results (computed from the answers, so a changed answer can never count
//! twice), the quiz score, and the views each audience gets.

use herald_protocol::ErrorCode;
use herald_server::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::text::{self, Shape};

/// Longest question, in characters (after trimming).
pub const MAX_QUESTION_CHARS: usize = 300;
/// Fewest options of a choice poll.
pub const MIN_OPTIONS: usize = 2;
/// Most options of a choice poll.
pub const MAX_OPTIONS: usize = 10;
/// Longest option, in characters (after trimming).
pub const MAX_OPTION_CHARS: usize = 100;
/// The largest rating scale (`1..=scale`); the smallest is 2.
pub const MAX_SCALE: u32 = 10;
/// The rating scale when none is given.
pub const DEFAULT_SCALE: u32 = 5;
/// Longest open-text answer, in characters (after trimming).
pub const MAX_TEXT_CHARS: usize = 200;
/// Most words of a word-cloud answer.
pub const MAX_CLOUD_WORDS: usize = 3;
/// Longest word of a word-cloud answer, in characters.
pub const MAX_WORD_CHARS: usize = 30;
/// Shortest and longest timer, in seconds.
pub const TIMER_RANGE_S: (u32, u32) = (5, 3600);
/// Open-text answers a view carries (the newest; 50 of 200 characters stay
/// within one event even in 4-byte characters); the CSV has them all.
pub const MAX_TEXTS_SHOWN: usize = 50;
/// Word-cloud entries a view carries (the most frequent); the CSV has them all.
pub const MAX_WORDS_SHOWN: usize = 100;
/// Students a leaderboard carries (the best); the CSV has them all.
pub const LEADERBOARD_SIZE: usize = 100;
/// Points of a correct quiz answer.
pub const QUIZ_POINTS: i64 = 100;
/// The most a timed quiz adds for speed (all of it for an instant answer,
/// nothing at the buzzer).
pub const SPEED_BONUS: i64 = 100;

/// What kind of answer a poll takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PollKind {
    /// One option.
    Single,
    /// One or more options.
    Multiple,
    /// Yes (0) or No (1).
    YesNo,
    /// A number `1..=scale`.
    Rating,
    /// A short text.
    Text,
    /// One to three words, counted.
    WordCloud,
}

impl PollKind {
    /// Every kind.
    pub const ALL: [PollKind; 6] = [
        PollKind::Single,
        PollKind::Multiple,
        PollKind::YesNo,
        PollKind::Rating,
        PollKind::Text,
        PollKind::WordCloud,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PollKind::Single => "single",
            PollKind::Multiple => "multiple",
            PollKind::YesNo => "yes_no",
            PollKind::Rating => "rating",
            PollKind::Text => "text",
            PollKind::WordCloud => "word_cloud",
        }
    }

    /// The kind of a snake_case name.
    pub fn parse(s: &str) -> Option<PollKind> {
        PollKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Answered by choosing among options.
    pub fn is_choice(self) -> bool {
        matches!(self, PollKind::Single | PollKind::Multiple | PollKind::YesNo)
    }
}

/// Where a poll is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PollState {
    /// Prepared by staff; the audience does not see it.
    Draft,
    /// Taking answers.
    Open,
    /// No more answers (it may be opened again).
    Closed,
}

/// An answer, as the document and the rows keep it (normalised): a number,
/// an array of numbers or a string in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// An option's index (single, yes/no) or a rating.
    Index(u32),
    /// Option indexes, sorted, distinct (multiple).
    Indexes(Vec<u32>),
    /// A text (open text; a word cloud's lower-cased words).
    Text(String),
}

/// Read by the JSON type at hand, not through serde's untagged enums (which
/// buffer every value and try each variant in turn): a snapshot holds
/// hundreds of thousands of answers, and loading it was a third of a cold
/// load of a long session (docs/benchmarks.md).
impl<'de> Deserialize<'de> for Answer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Answer;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an option index, a list of option indexes or a text")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Answer, E> {
                u32::try_from(v)
                    .map(Answer::Index)
                    .map_err(|_| E::custom("an option index out of range"))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Answer, E> {
                u32::try_from(v)
                    .map(Answer::Index)
                    .map_err(|_| E::custom("an option index out of range"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Answer, E> {
                Ok(Answer::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Answer, E> {
                Ok(Answer::Text(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Answer, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(i) = seq.next_element::<u32>()? {
                    out.push(i);
                }
                Ok(Answer::Indexes(out))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// One user's answer to a poll, as the document keeps it (short keys: a poll
/// may hold thousands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The answer.
    #[serde(rename = "a")]
    pub answer: Answer,
    /// When it was given (or last changed), Unix milliseconds.
    #[serde(rename = "t")]
    pub at: i64,
    /// Milliseconds from the poll's opening to the answer (quiz speed).
    #[serde(rename = "e", default)]
    pub elapsed_ms: i64,
}

/// The JSON an answer row holds (`class_poll_votes.answer`).
#[derive(Debug, Serialize, Deserialize)]
pub struct RowAnswer {
    /// The answer.
    pub answer: Answer,
    /// Milliseconds from the poll's opening to the answer.
    #[serde(default)]
    pub elapsed_ms: i64,
}

/// A poll's answers by user id.
pub type Answers = BTreeMap<String, Entry>;
/// Names by user id.
pub type Names = BTreeMap<String, String>;

/// A poll or quiz, with every answer (never sent as is: see the views).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poll {
    /// Id (`p_` + 32 hex digits).
    pub id: String,
    /// Its kind.
    pub kind: PollKind,
    /// The question, trimmed.
    pub question: String,
    /// The options of a choice poll (`Yes`, `No` for yes/no), else empty.
    #[serde(default)]
    pub options: Vec<String>,
    /// A rating's scale (`1..=scale`).
    #[serde(default)]
    pub scale: Option<u32>,
    /// A quiz's correct option indexes, sorted.
    #[serde(default)]
    pub correct: Option<Vec<u32>>,
    /// The timer: the poll closes this many seconds after it opens.
    #[serde(default)]
    pub duration_s: Option<u32>,
    /// Its state.
    pub state: PollState,
    /// Results shown to the audience (staff always see them).
    #[serde(default)]
    pub visible: bool,
    /// Creation, Unix milliseconds.
    pub created_at: i64,
    /// Last opened.
    #[serde(default)]
    pub opened_at: Option<i64>,
    /// When the timer closes it (while open with a timer).
    #[serde(default)]
    pub closes_at: Option<i64>,
    /// Last closed.
    #[serde(default)]
    pub closed_at: Option<i64>,
    /// Answers by user id.
    #[serde(default)]
    pub answers: Answers,
}

/// What a live session's document keeps of its polls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollsState {
    /// Every poll, oldest first.
    #[serde(default)]
    pub polls: Vec<Poll>,
    /// The names of those who answered (user id -> name), for the leaderboard
    /// and the export.
    #[serde(default)]
    pub names: Names,
    /// Polls whose answers changed since the last `poll.tally`.
    #[serde(default)]
    pub dirty: BTreeSet<String>,
}

impl PollsState {
    /// The poll `id`.
    pub fn find(&self, id: &str) -> Option<&Poll> {
        self.polls.iter().find(|p| p.id == id)
    }

    /// The poll `id`, to change.
    pub fn find_mut(&mut self, id: &str) -> Option<&mut Poll> {
        self.polls.iter_mut().find(|p| p.id == id)
    }

    /// The best students over every quiz: `{players, top:[{user_id, name,
    /// score, correct, answered}]}` (at most [`LEADERBOARD_SIZE`]).
    pub fn leaderboard(&self) -> Value {
        let mut totals: HashMap<String, (i64, u32, u32)> = HashMap::new();
        for p in self.polls.iter().filter(|p| p.correct.is_some()) {
            for (user, e) in &p.answers {
                let t = totals.entry(user.clone()).or_default();
                let (ok, points) = p.score(e).unwrap_or((false, 0));
                t.0 += points;
                t.1 += u32::from(ok);
                t.2 += 1;
            }
        }
        let players = totals.len();
        let mut rows: Vec<_> = totals
            .into_iter()
            .map(|(user, t)| {
                let name = self.name_of(&user);
                (user, name, t)
            })
            .collect();
        rows.sort_by(|a, b| {
            b.2 .0
                .cmp(&a.2 .0)
                .then_with(|| a.1.cmp(&b.1))
                .then_with(|| a.0.cmp(&b.0))
        });
        let top: Vec<Value> = rows
            .into_iter()
            .take(LEADERBOARD_SIZE)
            .map(|(user, name, (score, correct, answered))| {
                json!({ "user_id": user, "name": name, "score": score, "correct": correct, "answered": answered })
            })
            .collect();
        json!({ "players": players, "top": top })
    }

    /// The name of `user_id` (their id when unknown).
    pub fn name_of(&self, user_id: &str) -> String {
        self.names
            .get(user_id)
            .cloned()
            .unwrap_or_else(|| user_id.to_owned())
    }
}

/// A new poll, as staff send it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPoll {
    /// The kind's name.
    pub kind: String,
    /// The question.
    pub question: String,
    /// A choice poll's options.
    #[serde(default)]
    pub options: Option<Vec<String>>,
    /// A rating's scale.
    #[serde(default)]
    pub scale: Option<u32>,
    /// A quiz's correct option indexes.
    #[serde(default)]
    pub correct: Option<Vec<u32>>,
    /// A timer, seconds.
    #[serde(default)]
    pub duration_s: Option<u32>,
}

/// An `invalid_poll` refusal.
pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidPoll, message)
}

/// A question, an option or an open answer, trimmed, by the rule of shown
/// texts ([`crate::text`]).
fn trimmed(raw: &str, max: usize, what: &str, shape: Shape) -> Result<String, ApiError> {
    text::shown(raw, max, what, shape, ErrorCode::InvalidPoll).map(str::to_owned)
}

impl Poll {
    /// Checks `req` and makes a draft poll of it.
    ///
    /// # Errors
    /// `invalid_poll` with a sentence saying what is wrong;
    /// `invalid_characters` for a question or option that breaks the rule of
    /// shown texts.
    pub fn build(req: NewPoll, id: String, now: i64) -> Result<Poll, ApiError> {
        let kind = PollKind::parse(&req.kind).ok_or_else(|| {
            invalid("kind must be one of single, multiple, yes_no, rating, text, word_cloud")
        })?;
        let question = trimmed(&req.question, MAX_QUESTION_CHARS, "the question", Shape::Lines)?;
        let options = match (kind, req.options) {
            (PollKind::Single | PollKind::Multiple, Some(raw)) => {
                if !(MIN_OPTIONS..=MAX_OPTIONS).contains(&raw.len()) {
                    return Err(invalid(format!(
                        "a choice poll has {MIN_OPTIONS} to {MAX_OPTIONS} options"
                    )));
                }
                let mut seen = BTreeSet::new();
                let mut options = Vec::with_capacity(raw.len());
                for o in &raw {
                    let o = trimmed(o, MAX_OPTION_CHARS, "each option", Shape::Line)?;
                    if !seen.insert(o.to_lowercase()) {
                        return Err(invalid(format!("the option \"{o}\" is given twice")));
                    }
                    options.push(o);
                }
                options
            }
            (PollKind::Single | PollKind::Multiple, None) => {
                return Err(invalid(format!(
                    "a choice poll has {MIN_OPTIONS} to {MAX_OPTIONS} options"
                )))
            }
            (PollKind::YesNo, None) => vec!["Yes".to_owned(), "No".to_owned()],
            (_, Some(_)) => {
                return Err(invalid(format!(
                    "a {} poll has no options",
                    kind.as_str().replace('_', "/")
                )))
            }
            (_, None) => Vec::new(),
        };
        let scale = match (kind, req.scale) {
            (PollKind::Rating, None) => Some(DEFAULT_SCALE),
            (PollKind::Rating, Some(s)) if (2..=MAX_SCALE).contains(&s) => Some(s),
            (PollKind::Rating, Some(_)) => return Err(invalid(format!("scale must be 2 to {MAX_SCALE}"))),
            (_, Some(_)) => return Err(invalid("only a rating poll has a scale")),
            (_, None) => None,
        };
        let correct = match req.correct {
            None => None,
            Some(_) if !kind.is_choice() => {
                return Err(invalid(
                    "only single, multiple and yes/no polls can be quizzes with correct options",
                ))
            }
            Some(mut c) => {
                c.sort_unstable();
                c.dedup();
                let wrong = c.is_empty()
                    || c.iter().any(|i| *i as usize >= options.len())
                    || (kind != PollKind::Multiple && c.len() != 1);
                if wrong {
                    return Err(invalid(if kind == PollKind::Multiple {
                        "correct must name one or more options by index, from 0"
                    } else {
                        "correct must name exactly one option by index, from 0"
                    }));
                }
                Some(c)
            }
        };
        if let Some(d) = req.duration_s {
            let (lo, hi) = TIMER_RANGE_S;
            if !(lo..=hi).contains(&d) {
                return Err(invalid(format!("duration_s must be {lo} to {hi} seconds")));
            }
        }
        Ok(Poll {
            id,
            kind,
            question,
            options,
            scale,
            correct,
            duration_s: req.duration_s,
            state: PollState::Draft,
            visible: false,
            created_at: now,
            opened_at: None,
            closes_at: None,
            closed_at: None,
            answers: Answers::default(),
        })
    }

    /// Taking answers at `now` (open, and its timer not run out).
    pub fn is_open(&self, now: i64) -> bool {
        self.state == PollState::Open && self.closes_at.is_none_or(|c| now < c)
    }

    /// The state screens see: an open poll whose time is up is closed.
    pub fn shown_state(&self, now: i64) -> PollState {
        if self.state == PollState::Open && !self.is_open(now) {
            PollState::Closed
        } else {
            self.state
        }
    }

    /// Checks an answer against the poll and normalises it.
    ///
    /// # Errors
    /// `invalid_poll` with a sentence saying what is wrong;
    /// `invalid_characters` for a text or word that breaks the rule of shown
    /// texts.
    pub fn parse_answer(&self, raw: &Value) -> Result<Answer, ApiError> {
        let n = self.options.len();
        let index = |v: &Value| v.as_u64().filter(|i| (*i as usize) < n).map(|i| i as u32);
        match self.kind {
            PollKind::Single | PollKind::YesNo => index(raw).map(Answer::Index).ok_or_else(|| {
                invalid(format!(
                    "answer must be an option's index, 0 to {}",
                    n.saturating_sub(1)
                ))
            }),
            PollKind::Multiple => {
                let err = || {
                    invalid(format!(
                        "answer must be a list of distinct option indexes (0 to {}), at least one",
                        n.saturating_sub(1)
                    ))
                };
                let items = raw.as_array().ok_or_else(err)?;
                let mut picked = Vec::with_capacity(items.len());
                for v in items {
                    picked.push(index(v).ok_or_else(err)?);
                }
                picked.sort_unstable();
                let len = picked.len();
                picked.dedup();
                if picked.is_empty() || picked.len() != len {
                    return Err(err());
                }
                Ok(Answer::Indexes(picked))
            }
            PollKind::Rating => {
                let scale = self.scale.unwrap_or(DEFAULT_SCALE);
                raw.as_u64()
                    .filter(|r| (1..=u64::from(scale)).contains(r))
                    .map(|r| Answer::Index(r as u32))
                    .ok_or_else(|| invalid(format!("answer must be a whole number from 1 to {scale}")))
            }
            PollKind::Text => {
                let s = raw.as_str().ok_or_else(|| invalid("answer must be a text"))?;
                Ok(Answer::Text(trimmed(
                    s,
                    MAX_TEXT_CHARS,
                    "an answer",
                    Shape::Lines,
                )?))
            }
            PollKind::WordCloud => {
                let err = || {
                    invalid(format!(
                        "answer must be one to {MAX_CLOUD_WORDS} words of at most {MAX_WORD_CHARS} characters"
                    ))
                };
                let s = raw.as_str().ok_or_else(err)?.to_lowercase();
                let words: Vec<&str> = s.split_whitespace().collect();
                if words.is_empty() || words.len() > MAX_CLOUD_WORDS {
                    return Err(err());
                }
                for w in &words {
                    trimmed(w, MAX_WORD_CHARS, "each word", Shape::Line)?;
                }
                Ok(Answer::Text(words.join(" ")))
            }
        }
    }

    /// Whether a quiz answer is correct, and its points; `None` for a poll
    /// that is not a quiz.
    pub fn score(&self, e: &Entry) -> Option<(bool, i64)> {
        let correct = self.correct.as_ref()?;
        let ok = match &e.answer {
            Answer::Index(i) => correct.len() == 1 && correct[0] == *i,
            Answer::Indexes(v) => v == correct,
            Answer::Text(_) => false,
        };
        if !ok {
            return Some((false, 0));
        }
        let bonus = self.duration_s.map_or(0, |d| {
            let total = i64::from(d) * 1000;
            let left = (total - e.elapsed_ms).clamp(0, total);
            // The same float steps as the page's (polls.js), so both agree.
            (SPEED_BONUS as f64 * left as f64 / total as f64).round() as i64
        });
        Some((true, QUIZ_POINTS + bonus))
    }

    /// The results: `{counts}` (choice), `{counts, average}` (rating),
    /// `{texts, total}` (open text, newest first), `{words}` (word cloud,
    /// `[word, count]` most frequent first).
    pub fn results(&self) -> Value {
        let answers = &self.answers;
        match self.kind {
            PollKind::Single | PollKind::Multiple | PollKind::YesNo => {
                let mut counts = vec![0u64; self.options.len()];
                for e in answers.values() {
                    let picked: &[u32] = match &e.answer {
                        Answer::Index(i) => std::slice::from_ref(i),
                        Answer::Indexes(v) => v,
                        Answer::Text(_) => &[],
                    };
                    for i in picked {
                        if let Some(c) = counts.get_mut(*i as usize) {
                            *c += 1;
                        }
                    }
                }
                json!({ "counts": counts })
            }
            PollKind::Rating => {
                let scale = self.scale.unwrap_or(DEFAULT_SCALE) as usize;
                let mut counts = vec![0u64; scale];
                let (mut sum, mut n) = (0u64, 0u64);
                for e in answers.values() {
                    if let Answer::Index(r) = e.answer {
                        if let Some(c) = counts.get_mut((r as usize).wrapping_sub(1)) {
                            *c += 1;
                            sum += u64::from(r);
                            n += 1;
                        }
                    }
                }
                let average = (n > 0).then(|| (sum as f64 / n as f64 * 100.0).round() / 100.0);
                json!({ "counts": counts, "average": average })
            }
            PollKind::Text => {
                let mut texts: Vec<(&i64, &str)> = answers
                    .values()
                    .filter_map(|e| match &e.answer {
                        Answer::Text(t) => Some((&e.at, t.as_str())),
                        _ => None,
                    })
                    .collect();
                texts.sort_by(|a, b| b.0.cmp(a.0).then_with(|| a.1.cmp(b.1)));
                let total = texts.len();
                let shown: Vec<&str> = texts.into_iter().take(MAX_TEXTS_SHOWN).map(|t| t.1).collect();
                json!({ "texts": shown, "total": total })
            }
            PollKind::WordCloud => {
                let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
                for e in answers.values() {
                    if let Answer::Text(t) = &e.answer {
                        *counts.entry(t.as_str()).or_default() += 1;
                    }
                }
                let mut words: Vec<(&str, u64)> = counts.into_iter().collect();
                words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
                words.truncate(MAX_WORDS_SHOWN);
                json!({ "words": words })
            }
        }
    }

    /// The view of the poll for staff (`staff`) or the audience: the audience
    /// gets `results` only while they are shown, and a quiz's `correct` only
    /// once it is closed and shown.
    pub fn view(&self, now: i64, staff: bool) -> Value {
        let state = self.shown_state(now);
        let show_results = staff || self.visible;
        let show_correct = staff || (self.visible && state == PollState::Closed);
        let mut v = Map::new();
        v.insert("id".into(), json!(self.id));
        v.insert("kind".into(), json!(self.kind));
        v.insert("question".into(), json!(self.question));
        v.insert("options".into(), json!(self.options));
        v.insert("scale".into(), json!(self.scale));
        v.insert("quiz".into(), json!(self.correct.is_some()));
        v.insert(
            "correct".into(),
            if show_correct {
                json!(self.correct)
            } else {
                Value::Null
            },
        );
        v.insert("duration_s".into(), json!(self.duration_s));
        v.insert("state".into(), json!(state));
        v.insert("visible".into(), json!(self.visible));
        v.insert("created_at".into(), json!(self.created_at));
        v.insert("opened_at".into(), json!(self.opened_at));
        v.insert("closes_at".into(), json!(self.closes_at));
        v.insert("closed_at".into(), json!(self.closed_at));
        v.insert("answers".into(), json!(self.answers.len()));
        v.insert(
            "results".into(),
            if show_results { self.results() } else { Value::Null },
        );
        Value::Object(v)
    }

    /// The part of a `poll.tally` for one poll: `{answers}`, plus `results`
    /// for staff or while shown.
    pub fn tally(&self, staff: bool) -> Value {
        if staff || self.visible {
            json!({ "answers": self.answers.len(), "results": self.results() })
        } else {
            json!({ "answers": self.answers.len() })
        }
    }

    /// The caller's own answer as their snapshot shows it: `{answer,
    /// answered_at, elapsed_ms}`, plus `correct` and `score` once a quiz is
    /// closed and shown.
    pub fn mine(&self, e: &Entry, now: i64) -> Value {
        let mut v = json!({ "answer": e.answer, "answered_at": e.at, "elapsed_ms": e.elapsed_ms });
        if self.visible && self.shown_state(now) == PollState::Closed {
            if let Some((ok, points)) = self.score(e) {
                v["correct"] = json!(ok);
                v["score"] = json!(points);
            }
        }
        v
    }

    /// The answer as a person reads it (option texts, joined by `; `).
    pub fn answer_text(&self, a: &Answer) -> String {
        let option = |i: &u32| {
            self.options
                .get(*i as usize)
                .cloned()
                .unwrap_or_else(|| i.to_string())
        };
        match (self.kind, a) {
            (PollKind::Rating, Answer::Index(r)) => r.to_string(),
            (_, Answer::Index(i)) => option(i),
            (_, Answer::Indexes(v)) => v.iter().map(option).collect::<Vec<_>>().join("; "),
            (_, Answer::Text(t)) => t.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn new(kind: &str, options: Option<Vec<&str>>) -> NewPoll {
        NewPoll {
            kind: kind.into(),
            question: " Which? ".into(),
            options: options.map(|o| o.into_iter().map(String::from).collect()),
            scale: None,
            correct: None,
            duration_s: None,
        }
    }

    fn entry(answer: Answer, elapsed_ms: i64) -> Entry {
        Entry {
            answer,
            at: 1,
            elapsed_ms,
        }
    }

    #[test]
    fn new_polls_are_checked() {
        let p = Poll::build(new("single", Some(vec!["a", " b "])), "p_1".into(), 5).unwrap();
        assert_eq!(
            (p.question.as_str(), p.options.clone()),
            ("Which?", vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            Poll::build(new("yes_no", None), "p".into(), 0).unwrap().options,
            ["Yes", "No"]
        );
        assert_eq!(
            Poll::build(new("rating", None), "p".into(), 0).unwrap().scale,
            Some(5)
        );
        for bad in [
            new("poll", None),
            new("single", None),
            new("single", Some(vec!["a"])),
            new("single", Some(vec!["a", "A"])),
            new("multiple", Some(vec!["a", " "])),
            new("single", Some(vec!["x"; 11])),
            new("text", Some(vec!["a", "b"])),
            new("single", Some(vec!["a", &"x".repeat(101)])),
        ] {
            assert!(Poll::build(bad, "p".into(), 0).is_err());
        }
        let mut q = new("single", Some(vec!["a", "b"]));
        q.correct = Some(vec![2]);
        assert!(Poll::build(q, "p".into(), 0).is_err());
        let mut q = new("single", Some(vec!["a", "b"]));
        q.correct = Some(vec![0, 1]);
        assert!(
            Poll::build(q, "p".into(), 0).is_err(),
            "single has one correct option"
        );
        let mut q = new("text", None);
        q.correct = Some(vec![0]);
        assert!(Poll::build(q, "p".into(), 0).is_err());
        let mut q = new("single", Some(vec!["a", "b"]));
        q.duration_s = Some(1);
        assert!(Poll::build(q, "p".into(), 0).is_err());
        let mut q = new("single", Some(vec!["a", "b"]));
        q.question = "x".repeat(301);
        assert!(Poll::build(q, "p".into(), 0).is_err());
    }

    #[test]
    fn answers_read_back_as_written() {
        for a in [
            Answer::Index(0),
            Answer::Index(4_000_000_000),
            Answer::Indexes(vec![]),
            Answer::Indexes(vec![0, 2, 5]),
            Answer::Text(String::new()),
            Answer::Text("ça \"va\" 1".into()),
        ] {
            let text = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<Answer>(&text).unwrap(), a, "{text}");
        }
        for bad in ["-1", "4294967296", "1.5", "[1,\"x\"]", "{}", "null", "true"] {
            assert!(
                serde_json::from_str::<Answer>(bad).is_err(),
                "{bad} is not an answer"
            );
        }
        let e: Entry = serde_json::from_str(r#"{"a":[1,3],"t":5,"e":2}"#).unwrap();
        assert_eq!(e.answer, Answer::Indexes(vec![1, 3]));
    }

    #[test]
    fn answers_are_checked_and_normalised() {
        let multi = Poll::build(new("multiple", Some(vec!["a", "b", "c"])), "p".into(), 0).unwrap();
        assert_eq!(
            multi.parse_answer(&json!([2, 0])).unwrap(),
            Answer::Indexes(vec![0, 2])
        );
        for bad in [
            json!([]),
            json!([0, 0]),
            json!([3]),
            json!(1),
            json!("a"),
            json!([1.0]),
        ] {
            assert!(multi.parse_answer(&bad).is_err(), "{bad}");
        }
        let cloud = Poll::build(new("word_cloud", None), "p".into(), 0).unwrap();
        assert_eq!(
            cloud.parse_answer(&json!("  Big   DATA ")).unwrap(),
            Answer::Text("big data".into())
        );
        for bad in [json!(""), json!("a b c d"), json!(3)] {
            assert!(cloud.parse_answer(&bad).is_err(), "{bad}");
        }
        let rating = Poll::build(new("rating", None), "p".into(), 0).unwrap();
        assert!(rating.parse_answer(&json!(0)).is_err());
        assert!(rating.parse_answer(&json!(6)).is_err());
        assert_eq!(rating.parse_answer(&json!(5)).unwrap(), Answer::Index(5));
    }

    #[test]
    fn a_timed_poll_stops_taking_answers_at_its_time_even_before_it_is_closed() {
        let mut p = Poll::build(new("yes_no", None), "p".into(), 0).unwrap();
        assert!(!p.is_open(0), "a draft");
        p.state = PollState::Open;
        p.closes_at = Some(1000);
        assert!(p.is_open(999));
        assert!(!p.is_open(1000));
        assert_eq!(p.shown_state(1000), PollState::Closed);
        assert_eq!(p.view(1000, false)["state"], "closed");
        p.closes_at = None;
        assert!(p.is_open(i64::MAX));
    }

    #[test]
    fn results_and_scores() {
        let mut q = new("single", Some(vec!["a", "b"]));
        q.correct = Some(vec![1]);
        q.duration_s = Some(10);
        let mut p = Poll::build(q, "p".into(), 0).unwrap();
        p.answers.insert("u1".into(), entry(Answer::Index(1), 0));
        p.answers.insert("u2".into(), entry(Answer::Index(1), 7_500));
        p.answers.insert("u3".into(), entry(Answer::Index(0), 100));
        assert_eq!(p.results(), json!({ "counts": [1, 2] }));
        assert_eq!(p.score(p.answers.get("u1").unwrap()), Some((true, 200)));
        assert_eq!(p.score(p.answers.get("u2").unwrap()), Some((true, 125)));
        assert_eq!(p.score(p.answers.get("u3").unwrap()), Some((false, 0)));
        let view = p.view(0, false);
        assert_eq!(
            (view["results"].clone(), view["correct"].clone()),
            (Value::Null, Value::Null)
        );
        assert_eq!(p.tally(false), json!({ "answers": 3 }));
        p.visible = true;
        p.state = PollState::Closed;
        assert_eq!(p.view(0, false)["correct"], json!([1]));
        let state = PollsState {
            polls: vec![p],
            names: [("u2".to_owned(), "Ben".to_owned())].into(),
            ..PollsState::default()
        };
        let board = state.leaderboard();
        assert_eq!(board["players"], 3);
        assert_eq!(board["top"][0]["user_id"], "u1");
        assert_eq!(board["top"][1]["name"], "Ben");
    }
}
