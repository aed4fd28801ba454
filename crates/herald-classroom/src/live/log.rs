//! The session log: what one committed change of a live session was, as the
//! store keeps it (one row per commit, numbered 1, 2, 3… per session).
//!
//! An [`Entry`] holds the changes applied (each feature's
//! [`Feature::Change`](super::Feature::Change) as JSON, under its key) and the
//! events published, each with its [`Audience`] and, for the session's
//! channel, the offset it got. The state of a session is its newest snapshot
//! plus the changes of the entries after it; what a viewer may read of the log
//! is the events of the audiences they belong to ([`visible_events`]), which
//! never show more than their snapshot would.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::Viewer;

/// Whom an event of a live session is for, which is the channel it goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Every member: the session's channel `class:{sid}`.
    All,
    /// Trainers and co-trainers: the staff channel `class:{sid}.staff`.
    Staff,
    /// One member: their personal channel `class:{sid}#{user_id}`.
    User(String),
}

impl Audience {
    /// Whether `viewer` is in this audience (staff are in every one: what goes
    /// to one person, a private answer, staff sent).
    pub fn includes(&self, viewer: &Viewer) -> bool {
        match self {
            Audience::All => true,
            Audience::Staff => viewer.staff,
            Audience::User(u) => viewer.staff || *u == viewer.user_id,
        }
    }
}

/// One feature's change in an entry.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Change {
    /// The feature's key (or `session`).
    #[serde(rename = "f")]
    pub key: String,
    /// The change as the feature encodes it.
    #[serde(rename = "v")]
    pub value: Box<RawValue>,
}

/// One event published by an entry.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Event {
    /// Whom it was for.
    pub to: Audience,
    /// Its name, as published.
    #[serde(rename = "n")]
    pub name: String,
    /// Its data, as published.
    #[serde(rename = "d")]
    pub data: Box<RawValue>,
    /// Its offset in its channel.
    #[serde(rename = "o")]
    pub offset: u64,
}

/// Where the session's channel is after an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pos {
    /// The channel's epoch.
    #[serde(rename = "e")]
    pub epoch: String,
    /// Its offset.
    #[serde(rename = "o")]
    pub offset: u64,
}

/// One committed change of a session.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The changes applied, in order.
    #[serde(rename = "c", default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// The events published, in order.
    #[serde(rename = "e", default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
    /// The session channel's position after this entry, when it moved (an
    /// event on it, or the cursor re-anchored after the channel lost its
    /// history).
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Pos>,
}

/// What `viewer` may read of a stored entry (`body`): the events of their
/// audiences, as `{event, data, to, offset?}` (`offset` only on the session's
/// channel, where it is the offset a client of that channel saw).
///
/// # Errors
/// The entry is not one.
pub fn visible_events(body: &str, viewer: &Viewer) -> Result<Vec<Value>, serde_json::Error> {
    let entry: Entry = serde_json::from_str(body)?;
    Ok(entry
        .events
        .iter()
        .filter(|e| e.to.includes(viewer))
        .map(|e| {
            let data: Value = serde_json::from_str(e.data.get()).unwrap_or(Value::Null);
            let mut v = json!({ "event": e.name, "data": data, "to": e.to });
            if e.to == Audience::All {
                v["offset"] = json!(e.offset);
            }
            v
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use herald_store::Role;

    #[test]
    fn audiences_read_as_json_and_include_the_right_people() {
        assert_eq!(serde_json::to_string(&Audience::All).unwrap(), "\"all\"");
        assert_eq!(
            serde_json::to_string(&Audience::User("u_1".into())).unwrap(),
            r#"{"user":"u_1"}"#
        );
        let student = Viewer::new("u_1", Role::Student);
        let other = Viewer::new("u_2", Role::Student);
        let trainer = Viewer::new("u_3", Role::Trainer);
        let mine = Audience::User("u_1".into());
        assert!(mine.includes(&student) && !mine.includes(&other) && mine.includes(&trainer));
        assert!(!Audience::Staff.includes(&student) && Audience::Staff.includes(&trainer));
    }

    #[test]
    fn entries_round_trip_and_stay_small() {
        let entry = Entry {
            changes: vec![Change {
                key: "questions".into(),
                value: RawValue::from_string(r#"{"vote":{"id":"q_1","user":"u_1","up":true}}"#.into())
                    .unwrap(),
            }],
            ..Entry::default()
        };
        let text = serde_json::to_string(&entry).unwrap();
        assert_eq!(
            text,
            r#"{"c":[{"f":"questions","v":{"vote":{"id":"q_1","user":"u_1","up":true}}}]}"#
        );
        let back: Entry = serde_json::from_str(&text).unwrap();
        assert_eq!(back.changes[0].value.get(), entry.changes[0].value.get());
    }
}
