//! Reading requests: query strings with repeated keys, bearer credentials,
//! bounded JSON bodies. Every failure is an [`ApiError`] with the right code.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use herald_protocol::{ChannelName, Cursor, ErrorCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A parsed query string that keeps repeated keys.
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses `raw` (without the `?`).
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key` as a number, if present.
    pub fn number(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("{key} must be a non-negative whole number"),
                )
            }),
        }
    }

    /// The `channel` parameters, validated, without duplicates.
    pub fn channels(&self) -> Result<Vec<ChannelName>, ApiError> {
        let mut out: Vec<ChannelName> = Vec::new();
        for c in self.all("channel") {
            let name = ChannelName::parse(c)
                .map_err(|e| ApiError::new(ErrorCode::InvalidChannel, format!("channel {c:?}: {e}")))?;
            if !out.contains(&name) {
                out.push(name);
            }
        }
        if out.is_empty() {
            return Err(ApiError::new(
                ErrorCode::MissingParameter,
                "name at least one channel: ?channel=NAME (repeat it for more)",
            ));
        }
        Ok(out)
    }
}

/// The resume cursor: the `Last-Event-ID` header (what EventSource sends) or `?cursor=`.
pub fn cursor(headers: &HeaderMap, query: &Query) -> Result<Cursor, ApiError> {
    let header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    let raw = header.or(query.get("cursor")).unwrap_or("");
    Cursor::parse(raw.trim()).map_err(|e| ApiError::new(ErrorCode::InvalidCursor, e.to_string()))
}

/// The bearer credential of `Authorization`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let v = v.trim();
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

/// A client token: `?token=` or a bearer header.
pub fn token<'a>(headers: &'a HeaderMap, query: &'a Query) -> Option<&'a str> {
    query
        .get("token")
        .filter(|t| !t.is_empty())
        .or_else(|| bearer(headers))
}

/// Reads a JSON body of at most `limit` bytes into `T`.
pub async fn json_body<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("the request body is over the limit of {limit} bytes"),
        )
    })?;
    if bytes.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "the request body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON of the expected shape: {e}"),
        )
    })
}
