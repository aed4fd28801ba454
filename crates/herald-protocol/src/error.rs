//! The one table of error codes: each code's HTTP status and WebSocket close code.
//!
//! Every refusal on every endpoint is `{"error":{"code":"...","message":"..."}}`
//! with the status below; over WebSocket the same object is a reply's `error`, and
//! disconnects a client must not retry blindly use the close code below.

use serde::{Deserialize, Serialize};

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = ($code:literal, $status:literal, $close:literal), )*) => {
        /// Every error code Herald answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The snake_case code of the JSON body.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status.
            pub fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// The WebSocket close code used when this error ends a connection.
            pub fn close_code(self) -> u16 {
                match self { $(ErrorCode::$variant => $close,)* }
            }
        }
    };
}

codes! {
    /// The request is malformed in a way no more specific code covers.
    BadRequest = ("bad_request", 400, 4400),
    /// The body is not valid JSON, or not of the expected shape.
    InvalidJson = ("invalid_json", 400, 4400),
    /// A channel name breaks the naming rules.
    InvalidChannel = ("invalid_channel", 400, 4400),
    /// An event name breaks the naming rules or is reserved.
    InvalidEvent = ("invalid_event", 400, 4400),
    /// An app name breaks the naming rules.
    InvalidAppName = ("invalid_app_name", 400, 4400),
    /// A cursor is not one the server gave out.
    InvalidCursor = ("invalid_cursor", 400, 4400),
    /// A query parameter has a wrong value.
    InvalidParameter = ("invalid_parameter", 400, 4400),
    /// A required field or parameter is missing.
    MissingParameter = ("missing_parameter", 400, 4400),
    /// An email address is not of the form `name@domain.tld` or is too long.
    InvalidEmail = ("invalid_email", 400, 4400),
    /// A name or title with characters that reorder the text around it
    /// (bidirectional overrides), or with no visible character.
    InvalidCharacters = ("invalid_characters", 400, 4400),
    /// A password is too short or too long.
    InvalidPassword = ("invalid_password", 400, 4400),
    /// A person's name or a course title is empty or too long.
    InvalidName = ("invalid_name", 400, 4400),
    /// A classroom question is empty or over 500 characters, or an answer
    /// is empty or too long.
    InvalidQuestion = ("invalid_question", 400, 4400),
    /// A slide deck is empty, has too many slides, or a slide is not valid
    /// (Markdown too long, an upload that is not an image or PDF it can read).
    InvalidDeck = ("invalid_deck", 400, 4400),
    /// A poll is not valid (no question, too few or too many options, an unknown
    /// kind), or an answer does not fit its poll (unknown option, wrong type).
    InvalidPoll = ("invalid_poll", 400, 4400),
    /// Groups are not valid (no group, a name empty or repeated, a student in
    /// two groups, an unknown group or user).
    InvalidGroups = ("invalid_groups", 400, 4400),
    /// A WebSocket frame could not be understood.
    BadFrame = ("bad_frame", 400, 4400),
    /// No credentials were given (for the classroom: no valid session cookie).
    Unauthorized = ("unauthorized", 401, 4001),
    /// Sign-in refused: no account with that email, or a wrong password (one
    /// answer for both, so it does not tell which emails have accounts).
    BadCredentials = ("bad_credentials", 401, 4001),
    /// The app key is wrong.
    InvalidKey = ("invalid_key", 401, 4001),
    /// The token is malformed, badly signed, or not yet valid.
    InvalidToken = ("invalid_token", 401, 4001),
    /// The token has expired.
    TokenExpired = ("token_expired", 401, 4002),
    /// The credentials are valid but do not allow this.
    Forbidden = ("forbidden", 403, 4003),
    /// A state-changing classroom request without the `x-csrf-token` header that
    /// matches the session's `herald_csrf` cookie.
    CsrfFailed = ("csrf_failed", 403, 4003),
    /// A page of an origin not allowed (`cors_origins`) opened a WebSocket, or
    /// called the cookie-authenticated classroom API.
    OriginNotAllowed = ("origin_not_allowed", 403, 4003),
    /// The app does not exist.
    AppNotFound = ("app_not_found", 404, 4004),
    /// No course with that id or join code.
    CourseNotFound = ("course_not_found", 404, 4004),
    /// The user is not a member of the course.
    MemberNotFound = ("member_not_found", 404, 4004),
    /// No live session with that id.
    SessionNotFound = ("session_not_found", 404, 4004),
    /// No question with that id in the live session (or not one the caller may see).
    QuestionNotFound = ("question_not_found", 404, 4004),
    /// No slide deck with that id in the course.
    DeckNotFound = ("deck_not_found", 404, 4004),
    /// No file (slide image) with that id, or not one the caller may see.
    FileNotFound = ("file_not_found", 404, 4004),
    /// No poll with that id in the live session.
    PollNotFound = ("poll_not_found", 404, 4004),
    /// No group with that id in the live session.
    GroupNotFound = ("group_not_found", 404, 4004),
    /// No such route.
    NotFound = ("not_found", 404, 4004),
    /// The route exists, but not with this method.
    MethodNotAllowed = ("method_not_allowed", 405, 4405),
    /// A WebSocket from which nothing (no frame, no pong) arrived for the idle
    /// timeout: closed; reconnect.
    IdleTimeout = ("idle_timeout", 408, 4008),
    /// A request head or body that did not arrive within its time (or slower
    /// than the least rate): answered, and the connection closed.
    RequestTimeout = ("request_timeout", 408, 4408),
    /// An app of that name exists already.
    AppExists = ("app_exists", 409, 4409),
    /// An account with that email exists already.
    EmailTaken = ("email_taken", 409, 4409),
    /// The change would leave a course without a trainer.
    LastTrainer = ("last_trainer", 409, 4409),
    /// The live session is not in a state that allows this (e.g. raising a
    /// hand while it is paused, starting it twice, changing it once ended).
    InvalidState = ("invalid_state", 409, 4409),
    /// The user has upvoted that question already.
    AlreadyVoted = ("already_voted", 409, 4409),
    /// An idempotency key was reused with a different request.
    IdempotencyConflict = ("idempotency_conflict", 409, 4409),
    /// The message data is over the size limit.
    MessageTooLarge = ("message_too_large", 413, 4413),
    /// An uploaded file is over the size limit.
    FileTooLarge = ("file_too_large", 413, 4413),
    /// An upload of a media type the server does not take.
    UnsupportedMediaType = ("unsupported_media_type", 415, 4415),
    /// The request body is over the size limit.
    BodyTooLarge = ("body_too_large", 413, 4413),
    /// The request head (its URL and header lines) is over the size limit.
    HeadTooLarge = ("head_too_large", 431, 4413),
    /// The app has as many connections as its quota allows.
    TooManyConnections = ("too_many_connections", 429, 4029),
    /// A connection asks for more channels than allowed.
    TooManyChannels = ("too_many_channels", 429, 4029),
    /// A rate limit was hit.
    RateLimited = ("rate_limited", 429, 4029),
    /// Messages come faster than this node delivers them: the publish waited
    /// for room (`limits.publish_wait`) and got none, so nothing was published;
    /// publish it again after the `Retry-After` delay.
    Overloaded = ("overloaded", 429, 1013),
    /// The broker (history, fan-out) cannot be reached.
    BrokerUnavailable = ("broker_unavailable", 503, 1013),
    /// The store (apps, keys) cannot be reached.
    StoreUnavailable = ("store_unavailable", 503, 1013),
    /// The server is shutting down; reconnect (to another node).
    ShuttingDown = ("shutting_down", 503, 1012),
    /// A bug: the log has the details.
    Internal = ("internal", 500, 1011),
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// The error object.
    pub error: ErrorDetail,
}

/// `{"code","message"}`, and `retry_after` where retrying later helps.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// The snake_case code.
    pub code: String,
    /// A sentence a person can act on.
    pub message: String,
    /// Seconds to wait before trying again (`overloaded`; over HTTP also the
    /// `Retry-After` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ErrorBody {
    /// Builds a body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.as_str().to_owned(),
                message: message.into(),
                retry_after: None,
            },
        }
    }

    /// The same body, telling the client to retry after `seconds`.
    pub fn retry_after(mut self, seconds: Option<u64>) -> Self {
        self.error.retry_after = seconds;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()));
            assert!(c.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!((400..600).contains(&c.status()));
        }
    }

    /// docs/protocol.md and this table agree: every code is a row of its Errors
    /// table with the same status and close code, and every close code of its
    /// WebSocket table in 4000-4999 (those the server closes with) is one of
    /// this table's.
    #[test]
    fn the_protocol_document_lists_every_code_and_close_code() {
        let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md"));
        for c in ErrorCode::ALL {
            let row = format!("| `{}` | {} | {} |", c.as_str(), c.status(), c.close_code());
            assert!(doc.contains(&row), "docs/protocol.md has no row {row}");
        }
        let closes: Vec<u16> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| 4"))
            .filter_map(|l| format!("4{}", l.split(' ').next()?).parse().ok())
            .collect();
        assert!(closes.contains(&4001), "the close code table was found");
        for code in closes {
            assert!(
                ErrorCode::ALL.iter().any(|c| c.close_code() == code),
                "close code {code} is documented but no error code closes with it"
            );
        }
    }
}
