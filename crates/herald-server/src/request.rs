//! Reading requests: query strings with repeated keys, bearer credentials,
//! bounded JSON bodies. Every failure is an [`ApiError`] with the right code.

use std::collections::HashSet;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use herald_protocol::{ChannelName, Cursor, ErrorCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The longest request head: its target and header lines (`431` past it,
/// `414` for a target past 64 KiB). The listener's reader stops near it too.
pub const MAX_REQUEST_HEAD: usize = 80 * 1024;

/// Middleware: the head's bounds and its `Host`. A head over
/// [`MAX_REQUEST_HEAD`] is `431` (hyper's buffer bound is not exact). An
/// HTTP/1.1 request names exactly one `Host`, an HTTP/1.0 request at most one
/// (RFC 9112 3.2); otherwise `400 bad_request`: with two, this server (its
/// same-origin checks) and a proxy in front could read different ones.
/// HTTP/2 names its authority apart.
pub async fn checked_head(req: Request, next: Next) -> Response {
    let size = req.uri().path_and_query().map_or(0, |p| p.as_str().len())
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if size > MAX_REQUEST_HEAD {
        return axum::response::IntoResponse::into_response(ApiError::new(
            ErrorCode::HeadTooLarge,
            format!("the request head is over {MAX_REQUEST_HEAD} bytes; send less in headers and the URL"),
        ));
    }
    let hosts = req.headers().get_all(header::HOST).iter().count();
    let version = req.version();
    let refused = if hosts > 1 {
        Some(format!("send one Host header, not {hosts}"))
    } else if hosts == 0 && version == axum::http::Version::HTTP_11 {
        Some("an HTTP/1.1 request needs a Host header".to_owned())
    } else {
        None
    };
    match refused {
        Some(why) => axum::response::IntoResponse::into_response(ApiError::new(ErrorCode::BadRequest, why)),
        None => next.run(req).await,
    }
}

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

    /// Adds a value of `key` (after those of the query string).
    pub fn push(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
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
        // Duplicates found with a set, not a scan of `out`: a long-poll body of
        // 256 KiB names 40 000 channels, and the scans took 3.5 s of CPU, before
        // the token and the channel limit are checked.
        let mut seen: HashSet<ChannelName> = HashSet::new();
        for c in self.all("channel") {
            let name = ChannelName::parse(c)
                .map_err(|e| ApiError::new(ErrorCode::InvalidChannel, format!("channel {c:?}: {e}")))?;
            if seen.insert(name.clone()) {
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
///
/// # Errors
/// As [`body_bytes`]; `invalid_json` for an empty body or one that is not `T`.
pub async fn json_body<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, ApiError> {
    let bytes = body_bytes(body, limit).await?;
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

/// Reads a whole body of at most `limit` bytes.
///
/// # Errors
/// `body_too_large` over the limit, `request_timeout` when it came too slowly
/// ([`timed_body`]), `bad_request` when it is malformed (a bad chunk size) or
/// the client left mid-body.
pub async fn body_bytes(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    // An announced length over the limit is refused before any byte is read.
    if hyper::body::Body::size_hint(&body).lower() > limit as u64 {
        return Err(ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("the request body is over the limit of {limit} bytes"),
        ));
    }
    let mut stream = body.into_data_stream();
    let mut out = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(body_error)?;
        if out.len() + chunk.len() > limit {
            return Err(ApiError::new(
                ErrorCode::BodyTooLarge,
                format!("the request body is over the limit of {limit} bytes"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// The answer for a body that could not be read.
fn body_error(e: axum::Error) -> ApiError {
    let mut inner: axum::BoxError = e.into_inner();
    // A body wrapped by `timed_body` nests the transport's error once more.
    loop {
        if let Some(slow) = inner.downcast_ref::<BodyTooSlow>() {
            return ApiError::new(ErrorCode::RequestTimeout, slow.to_string());
        }
        match inner.downcast::<axum::Error>() {
            Ok(nested) => inner = nested.into_inner(),
            Err(other) => {
                return ApiError::new(
                    ErrorCode::BadRequest,
                    format!("the request body could not be read: {other}"),
                )
            }
        }
    }
}

/// After a body began, how long before [`BodyClock`] holds it to its least rate.
pub const BODY_RATE_GRACE: Duration = Duration::from_secs(5);

/// Why a body was cut.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyTooSlow(String);

/// The time and rate rules of a request body: whole within `timeout`, and,
/// after [`BODY_RATE_GRACE`], at least `min_rate` bytes per second on average
/// since it began (a body sent a byte at a time is cut).
#[derive(Debug, Clone, Copy)]
pub struct BodyClock {
    /// The longest the whole body may take.
    pub timeout: Duration,
    /// The least average rate, bytes per second (0: none).
    pub min_rate: u64,
}

impl BodyClock {
    /// Whether a body that began `elapsed` ago with `received` bytes so far
    /// breaks a rule (the reason), or else when to look again (from its start).
    pub fn verdict(&self, elapsed: Duration, received: u64) -> Result<Duration, BodyTooSlow> {
        if elapsed >= self.timeout {
            return Err(BodyTooSlow(format!(
                "the request body did not arrive within {:?}",
                self.timeout
            )));
        }
        if self.min_rate == 0 {
            return Ok(self.timeout);
        }
        // The body keeps to the rate until `received / min_rate` seconds in.
        let covered = Duration::from_millis(received.saturating_mul(1000) / self.min_rate);
        if elapsed >= BODY_RATE_GRACE && elapsed > covered {
            return Err(BodyTooSlow(format!(
                "the request body arrived slower than {} bytes per second",
                self.min_rate
            )));
        }
        let next = covered.max(BODY_RATE_GRACE).min(self.timeout);
        // A hair past the point, so that the check after it decides.
        Ok(next.saturating_add(Duration::from_millis(1)))
    }

    /// `body` under these rules: it ends with [`BodyTooSlow`] when it breaks one.
    /// Its size hint stays the announced length (so a handler can refuse a
    /// body too large for it before reading any, and a client that waits on
    /// `Expect: 100-continue` gets its `413` at once).
    pub fn apply(self, body: Body) -> Body {
        let started = tokio::time::Instant::now();
        Body::new(TimedBody {
            inner: body,
            clock: self,
            started,
            received: 0,
            sleep: Box::pin(tokio::time::sleep_until(started)),
            done: false,
        })
    }
}

/// A body held to a [`BodyClock`].
struct TimedBody {
    inner: Body,
    clock: BodyClock,
    started: tokio::time::Instant,
    received: u64,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.clock.verdict(this.started.elapsed(), this.received) {
                Ok(at) => this.sleep.as_mut().reset(this.started + at),
                Err(slow) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Box::new(slow))));
                }
            }
            match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        this.received += data.len() as u64;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => {}
            }
            // Nothing yet: wake up at the next look, or when bytes come.
            match std::future::Future::poll(this.sleep.as_mut(), cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: puts the body of every request that has one under the
/// server's [`BodyClock`] (`request_body_timeout`, `request_body_min_rate`).
pub async fn timed_body(State(clock): State<BodyClock>, req: Request, next: Next) -> Response {
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if !has_body {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    next.run(Request::from_parts(parts, clock.apply(body))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by running the sse_request fuzz target on a query at the size of
    /// a long-poll body (256 KiB): the channels' duplicates were found in
    /// quadratic time (3.5 s of CPU for 40 000 channels in a release build).
    #[test]
    fn many_channels_are_read_in_linear_time() {
        let mut q: Vec<String> = (0..40_000).map(|i| format!("channel={i:x}")).collect();
        q.push("channel=0&channel=9c3f".to_owned());
        let query = Query::parse(Some(&q.join("&")));
        let started = std::time::Instant::now();
        let channels = query.channels().unwrap();
        assert_eq!(channels.len(), 40_000, "duplicates are dropped");
        assert_eq!(channels[0].as_str(), "0", "in the order given");
        assert_eq!(channels[39_999].as_str(), "9c3f");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_body_is_held_to_its_time_and_rate() {
        let clock = BodyClock {
            timeout: Duration::from_secs(60),
            min_rate: 1000,
        };
        let s = Duration::from_secs;
        // Within the grace anything goes; the next look is at its end.
        assert_eq!(clock.verdict(s(1), 0).unwrap(), s(5) + Duration::from_millis(1));
        // 10 kB cover 10 s at 1000 B/s.
        assert_eq!(
            clock.verdict(s(6), 10_000).unwrap(),
            s(10) + Duration::from_millis(1)
        );
        assert!(clock.verdict(s(6), 10_000).is_ok());
        // Five bytes per second is cut once the grace is over.
        assert!(clock.verdict(s(6), 30).is_err());
        // However fast, never past the whole body's time.
        assert!(clock.verdict(s(60), 10_000_000).is_err());
        assert_eq!(
            clock.verdict(s(1), 10_000_000).unwrap(),
            s(60) + Duration::from_millis(1)
        );
    }

    #[tokio::test]
    async fn a_stalled_body_ends_with_an_error() {
        let clock = BodyClock {
            timeout: Duration::from_millis(300),
            min_rate: 0,
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        tx.send(Ok(Bytes::from_static(b"abc"))).await.unwrap();
        let body = clock.apply(Body::from_stream(tokio_stream_from(rx)));
        let e = body_bytes(body, 1024).await.unwrap_err();
        assert_eq!(e.0.code, ErrorCode::RequestTimeout);
        drop(tx);
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Send {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
