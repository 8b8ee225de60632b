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

/// The `RateLimit-Limit/Remaining/Reset` fields of a decision.
pub fn rate_headers(d: &RateDecision, h: &mut http::HeaderMap) {
    h.insert(RATELIMIT_LIMIT, HeaderValue::from(d.limit));
    h.insert(RATELIMIT_REMAINING, HeaderValue::from(d.remaining));
    h.insert(RATELIMIT_RESET, HeaderValue::from(d.reset_after.ceil() as u64));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

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
