//! The one error type of the core.
//!
//! Modelled on pingora's: an [`ErrorKind`] says *what* went wrong (and so which HTTP status a
//! server answers with, and which Python exception the binding raises), an [`ErrorSource`] says
//! *where* it came from (the downstream client, the upstream origin, or edgecore itself), and a
//! context string says *which* input was at fault, precisely enough to act on.
//!
//! Invariant: every public fallible function of the core returns [`Result<T>`]; the Python binding
//! maps this type in exactly one place (`edgecore-py/src/errors.rs`).

use std::borrow::Cow;
use std::fmt;

/// What went wrong. The variant decides the HTTP status and the Python exception class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    // ---- downstream request framing (HTTP/1.1 parser) ----
    /// The message is valid so far but not complete: read more bytes and parse again.
    Incomplete,
    /// The request is malformed (400).
    BadRequest,
    /// The request target is longer than the configured limit (414).
    UriTooLong,
    /// The header section is larger than the configured limit, or has too many fields (431).
    HeadersTooLarge,
    /// The body is larger than the configured limit (413).
    BodyTooLarge,
    /// A transfer coding other than chunked, or a method we refuse to frame (501).
    NotImplemented,
    /// A method the edge does not serve at all (`CONNECT`: 405).
    MethodNotAllowed,
    /// A Host this server is not configured to answer for (421).
    MisdirectedRequest,

    // ---- JWT verification (401) ----
    /// The token is not a well-formed JWS compact serialization (segments, base64url, JSON).
    TokenMalformed,
    /// The token is larger than `max_token_bytes`.
    TokenTooLarge,
    /// The `alg` header is absent, `none`, not allowed, or does not fit the key.
    TokenAlgorithm,
    /// No key matches the token (unknown `kid`).
    TokenKeyNotFound,
    /// The signature does not verify.
    TokenSignature,
    /// `exp` is in the past (beyond the leeway).
    TokenExpired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    TokenImmature,
    /// `aud` does not contain the expected audience.
    TokenAudience,
    /// `iss` is not the expected issuer.
    TokenIssuer,
    /// A required claim is absent.
    TokenMissingClaim,
    /// A claim has the wrong type, or a header field (`crit`, …) is invalid.
    TokenInvalidClaim,

    // ---- policy outcomes ----
    /// A rate limit refused the request (429).
    RateLimited,

    // ---- configuration and stores ----
    /// A configuration value (key, path, limit, pattern…) is invalid; raised at construction.
    Config,
    /// A state store (Redis) failed or misbehaved.
    Store,

    // ---- upstream ----
    /// The origin refused the connection or sent a bad response (502).
    Upstream,
    /// The origin did not answer in time (504).
    UpstreamTimeout,
    /// edgecore is at capacity (the Python work queue is full): 503 with Retry-After.
    Overloaded,

    /// A bug or an unexpected condition inside edgecore (500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status a server answers with when this error ends a request.
    pub fn http_status(self) -> u16 {
        use ErrorKind::*;
        match self {
            Incomplete | BadRequest => 400,
            UriTooLong => 414,
            HeadersTooLarge => 431,
            BodyTooLarge => 413,
            NotImplemented => 501,
            MethodNotAllowed => 405,
            MisdirectedRequest => 421,
            TokenMalformed | TokenTooLarge | TokenAlgorithm | TokenKeyNotFound | TokenSignature | TokenExpired
            | TokenImmature | TokenAudience | TokenIssuer | TokenMissingClaim | TokenInvalidClaim => 401,
            RateLimited => 429,
            Upstream => 502,
            UpstreamTimeout => 504,
            Overloaded => 503,
            Config | Store | Internal => 500,
        }
    }

    /// True for the JWT verification failures.
    pub fn is_token(self) -> bool {
        self.http_status() == 401
    }
}

/// Where the error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorSource {
    /// The client's input (a request, a token) is at fault.
    Downstream,
    /// The origin server or a store is at fault.
    Upstream,
    /// edgecore's own configuration or state.
    Internal,
}

/// The core error: kind, source and a human-readable context naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Where it came from.
    pub source: ErrorSource,
    /// What exactly was wrong, for the message.
    pub context: Cow<'static, str>,
}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error with an explicit source.
    pub fn new(kind: ErrorKind, source: ErrorSource, context: impl Into<Cow<'static, str>>) -> Self {
        Error {
            kind,
            source,
            context: context.into(),
        }
    }

    /// An error caused by the client's input.
    pub fn downstream(kind: ErrorKind, context: impl Into<Cow<'static, str>>) -> Self {
        Self::new(kind, ErrorSource::Downstream, context)
    }

    /// A configuration error (always internal: the caller configured us wrongly).
    pub fn config(context: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Config, ErrorSource::Internal, context)
    }

    /// A store (Redis) error.
    pub fn store(context: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Store, ErrorSource::Upstream, context)
    }

    /// A request parsing error (400 unless the kind says otherwise).
    pub fn bad_request(context: impl Into<Cow<'static, str>>) -> Self {
        Self::downstream(ErrorKind::BadRequest, context)
    }

    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        self.kind.http_status()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_kind() {
        assert_eq!(Error::bad_request("x").http_status(), 400);
        assert_eq!(Error::downstream(ErrorKind::UriTooLong, "x").http_status(), 414);
        assert_eq!(Error::downstream(ErrorKind::HeadersTooLarge, "x").http_status(), 431);
        assert_eq!(Error::downstream(ErrorKind::TokenExpired, "x").http_status(), 401);
        assert!(ErrorKind::TokenSignature.is_token());
        assert!(!ErrorKind::Config.is_token());
    }

    #[test]
    fn display_is_the_context() {
        assert_eq!(Error::config("secret too short").to_string(), "secret too short");
    }
}
