//! Responses the edge writes itself: plain-text statuses, errors, the 401 challenge, the
//! `RateLimit-*` fields, and a core [`Response`] turned into the server's.

use http::header::{HeaderName, HeaderValue};
use http::StatusCode;

use super::body::Body;
use crate::error::Error;
use crate::http::Response;
use crate::limit::Decision as RateDecision;

/// `status` with a one-line plain-text body.
pub fn status_response(status: StatusCode, msg: &str) -> http::Response<Body> {
    let mut r = http::Response::new(Body::full(format!("{msg}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A core response as the server's.
pub fn from_core(r: Response) -> http::Response<Body> {
    let mut out = http::Response::new(Body::full(r.body));
    *out.status_mut() = r.status;
    *out.headers_mut() = r.headers;
    out
}

/// The response for an error: its status, `Connection: close` for a client error or a 501 (the
/// request may not have been read to its end), `Retry-After: 1` for an overload.
pub fn error_response(e: &Error) -> http::Response<Body> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = status_response(status, status.canonical_reason().unwrap_or("error"));
    // 501: a transfer coding we do not implement; what follows on the connection is not trusted.
    if status.is_client_error() || status == StatusCode::NOT_IMPLEMENTED {
        r.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// 401 with a Bearer challenge (RFC 6750 §3), describing `e` when a token was given.
pub fn unauthorized(e: Option<&Error>) -> http::Response<Body> {
    let mut r = status_response(StatusCode::UNAUTHORIZED, "Unauthorized");
    let challenge = match e {
        None => "Bearer".to_owned(),
        Some(e) => {
            let desc: String = e
                .context
                .chars()
                .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
                .collect();
            format!("Bearer error=\"invalid_token\", error_description=\"{desc}\"")
        }
    };
    r.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
    );
    r
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Which rate-limit fields a rule sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateFields {
    /// The current IETF draft (draft-ietf-httpapi-ratelimit-headers): `RateLimit-Policy` and
    /// `RateLimit`.
    Draft,
    /// The older three fields: `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`.
    Legacy,
    /// Both sets.
    Both,
    /// None.
    Off,
}

impl RateFields {
    /// From its name ("draft", "legacy", "both", "none").
    pub fn from_name(s: &str) -> Option<RateFields> {
        Some(match s {
            "draft" => RateFields::Draft,
            "legacy" => RateFields::Legacy,
            "both" => RateFields::Both,
            "none" => RateFields::Off,
            _ => return None,
        })
    }
}

/// The rate-limit fields of a decision. The quota reported is the one that applies: the
/// bucket's capacity (`burst`) that `remaining` counts down from, refilled at `limit` per
/// period (`RateLimit-Policy: "default";q=LIMIT;w=PERIOD`, and `burst` as the legacy
/// `RateLimit-Limit`).
pub fn rate_headers(d: &RateDecision, fields: RateFields, policy: Option<&HeaderValue>, h: &mut http::HeaderMap) {
    let reset = d.reset_after.ceil() as u64;
    if matches!(fields, RateFields::Draft | RateFields::Both) {
        let policy = policy.cloned().unwrap_or_else(|| policy_value(d.limit, d.period));
        let state = draft_value(b"\"default\";r=", d.remaining, b";t=", reset);
        h.insert(RATELIMIT_POLICY, policy);
        h.insert(RATELIMIT, state);
    }
    if matches!(fields, RateFields::Legacy | RateFields::Both) {
        h.insert(RATELIMIT_LIMIT, HeaderValue::from(d.burst));
        h.insert(RATELIMIT_REMAINING, HeaderValue::from(d.remaining));
        h.insert(RATELIMIT_RESET, HeaderValue::from(reset));
    }
}

/// The `RateLimit-Policy` value of a limit of `limit` requests per `period` seconds.
pub fn policy_value(limit: u64, period: f64) -> HeaderValue {
    draft_value(b"\"default\";q=", limit, b";w=", period.ceil().max(1.0) as u64)
}

/// `{a}{x}{b}{y}`, the numbers written by `itoa`, assembled on the stack and copied once into
/// the value: the `RateLimit` field goes on every response of a limited path, and `format!` (or
/// a growing buffer) costs more than the limiter's check.
fn draft_value(a: &[u8], x: u64, b: &[u8], y: u64) -> HeaderValue {
    let (mut xs, mut ys) = (itoa::Buffer::new(), itoa::Buffer::new());
    let mut buf = [0u8; 96];
    let mut n = 0;
    for part in [a, xs.format(x).as_bytes(), b, ys.format(y).as_bytes()] {
        buf[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    HeaderValue::from_bytes(&buf[..n]).expect("quotes, letters and digits")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn rate_fields_are_written_as_the_draft_says() {
        let d = RateDecision {
            allowed: true,
            limit: 100,
            burst: 120,
            remaining: 0,
            reset_after: 0.2,
            retry_after: 0.0,
            period: 60.0,
            source: crate::limit::DecisionSource::Local,
        };
        let mut h = http::HeaderMap::new();
        rate_headers(&d, RateFields::Both, None, &mut h);
        assert_eq!(h["ratelimit-policy"], "\"default\";q=100;w=60");
        assert_eq!(h["ratelimit"], "\"default\";r=0;t=1");
        assert_eq!(
            (&h["ratelimit-limit"], &h["ratelimit-remaining"], &h["ratelimit-reset"]),
            (
                &HeaderValue::from(120u64),
                &HeaderValue::from(0u64),
                &HeaderValue::from(1u64)
            )
        );
        assert_eq!(draft_value(b"q=", u64::MAX, b";w=", 0), "q=18446744073709551615;w=0");
    }

    #[test]
    fn client_errors_close_and_overloads_ask_to_retry() {
        let r = error_response(&Error::bad_request("nope"));
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["connection"], "close");
        let r = error_response(&Error::new(
            ErrorKind::Overloaded,
            crate::error::ErrorSource::Internal,
            "full",
        ));
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert!(r.headers().get("connection").is_none());
    }

    #[test]
    fn the_challenge_never_carries_quotes_or_controls() {
        let e = Error::bad_request("bad \"sig\"\r\nx: y");
        let r = unauthorized(Some(&e));
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\", error_description=\"bad sigx: y\""
        );
        assert_eq!(unauthorized(None).headers()["www-authenticate"], "Bearer");
    }
}
