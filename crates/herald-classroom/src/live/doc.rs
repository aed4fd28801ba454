//! A live session's state: its life ([`Lifecycle`]) and one part per feature,
//! in the order of the list the sequencer was given.
//!
//! As JSON (a snapshot in the store): `{"v":2,"session":{…},"<feature>":{…},…}`.
//! A document without `"v"` was written before the session log: every
//! feature takes its fields from it ([`super::Feature::from_legacy`]).

use std::collections::{BTreeMap, HashMap};

use herald_store::LiveState;
use serde::{Deserialize, Serialize};
use serde_json::value::{to_raw_value, RawValue};
use serde_json::{Map, Value};

use super::feature::{Feature, Part, Registration, View};

/// The version of the document format written now.
const VERSION: u64 = 2;
/// The key of the session's own part in a document and in the log.
pub(crate) const SESSION_KEY: &str = "session";

/// Where a session is in its life: the sequencer's own part of the state (the
/// session's row in the store carries the same values, for listings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// Scheduled, live, paused or ended.
    #[serde(default)]
    pub state: LiveState,
    /// When it first went live, Unix milliseconds.
    #[serde(default)]
    pub started_at: Option<i64>,
    /// When it ended, Unix milliseconds.
    #[serde(default)]
    pub ended_at: Option<i64>,
}

/// A live session's state.
pub struct Doc {
    /// Its life.
    pub session: Lifecycle,
    parts: Vec<(&'static str, Box<dyn Part>)>,
}

impl Default for Doc {
    /// A document with no feature (a placeholder while a lock holds the real one).
    fn default() -> Self {
        Self {
            session: Lifecycle::default(),
            parts: Vec::new(),
        }
    }
}

impl Doc {
    /// A new session's state: every feature at its default.
    pub(crate) fn new(features: &[&'static Registration]) -> Self {
        Self {
            session: Lifecycle::default(),
            parts: features.iter().map(|r| (r.key, (r.new)())).collect(),
        }
    }

    /// Reads a document; answers it and whether it was written before the
    /// session log (legacy: its features still need [`Doc::restore`]).
    ///
    /// # Errors
    /// The document is not JSON, or a feature's part does not parse.
    pub(crate) fn parse(features: &[&'static Registration], text: &str) -> Result<(Self, bool), String> {
        // Each part is read straight from its slice of the text: no tree of
        // values built (and dropped) on the way (a 17 MB state loads in a
        // third of the time).
        let top: HashMap<String, Box<RawValue>> = match serde_json::from_str(text) {
            Ok(top) => top,
            Err(_) => match serde_json::from_str::<Value>(text) {
                Ok(_) => return Err("the document is not a JSON object".to_owned()),
                Err(e) => return Err(format!("the document is not JSON: {e}")),
            },
        };
        if top
            .get("v")
            .and_then(|v| serde_json::from_str::<u64>(v.get()).ok())
            != Some(VERSION)
        {
            let Ok(Value::Object(top)) = serde_json::from_str::<Value>(text) else {
                return Err("the document is not a JSON object".to_owned());
            };
            let session = Lifecycle {
                state: field(&top, "state").unwrap_or_default(),
                started_at: field(&top, "started_at").unwrap_or_default(),
                ended_at: field(&top, "ended_at").unwrap_or_default(),
            };
            let parts = features.iter().map(|r| (r.key, (r.legacy)(&top))).collect();
            return Ok((Self { session, parts }, true));
        }
        let session = top
            .get(SESSION_KEY)
            .and_then(|v| serde_json::from_str(v.get()).ok())
            .unwrap_or_default();
        let mut parts = Vec::with_capacity(features.len());
        for r in features {
            let part = match top.get(r.key) {
                Some(raw) => (r.load)(raw).map_err(|e| format!("the part {} does not load: {e}", r.key))?,
                None => (r.new)(),
            };
            parts.push((r.key, part));
        }
        Ok((Self { session, parts }, false))
    }

    /// The document as JSON.
    ///
    /// # Errors
    /// A part that cannot be encoded (never, for the crate's features).
    pub(crate) fn to_json(&self) -> Result<String, serde_json::Error> {
        let mut top: BTreeMap<&str, Box<RawValue>> = BTreeMap::new();
        top.insert("v", to_raw_value(&VERSION)?);
        top.insert(SESSION_KEY, to_raw_value(&self.session)?);
        for (key, part) in &self.parts {
            top.insert(key, part.to_json()?);
        }
        serde_json::to_string(&top)
    }

    /// Feature `F`'s state, if the sequencer was given it.
    pub fn get<F: Feature>(&self) -> Option<&F> {
        self.parts
            .iter()
            .find_map(|(_, p)| p.as_any().downcast_ref::<F>())
    }

    pub(crate) fn get_mut<F: Feature>(&mut self) -> Option<&mut F> {
        self.parts
            .iter_mut()
            .find_map(|(_, p)| p.as_any_mut().downcast_mut::<F>())
    }

    /// The part of the feature with `key`.
    pub(crate) fn part_mut(&mut self, key: &str) -> Option<&mut dyn Part> {
        self.parts
            .iter_mut()
            .find(|(k, _)| *k == key)
            .map(|(_, p)| p.as_mut())
    }

    /// The parts, in the list's order.
    pub(crate) fn parts(&self) -> impl Iterator<Item = (&'static str, &dyn Part)> {
        self.parts.iter().map(|(k, p)| (*k, p.as_ref()))
    }

    /// Every feature's fields of a snapshot for `view`.
    pub(crate) fn snapshot(&self, view: &View<'_>, out: &mut Map<String, Value>) {
        for (_, part) in &self.parts {
            part.snapshot(view, out);
        }
    }
}

/// Field `key` of an old document, if it is there and reads as a `T`.
pub(crate) fn field<T: serde::de::DeserializeOwned>(top: &Map<String, Value>, key: &str) -> Option<T> {
    top.get(key).and_then(|v| serde_json::from_value(v.clone()).ok())
}
