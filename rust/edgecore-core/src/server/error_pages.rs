//! Custom rejections (`app.error_response(...)`): the body and content type of a response the
//! edge itself wrote (a 401, 403, 404, 405, 429, 502, 503, 504…), in place of the one-line
//! plain-text default, so a JSON API can answer `{"error": "Rate limit exceeded",
//! "remaining": 0}`. Responses from the origin, a handler or middleware are never touched.
//!
//! A body may use `{status}`, `{reason}`, `{retry_after}`, `{limit}`, `{remaining}`,
//! `{request_id}` (with `app.request_ids()`) and `{location}`; any other brace (a JSON
//! object's) is text. `{retry_after}` is the response's own `Retry-After`; `{limit}` (requests
//! per period) and `{remaining}` come from the rate-limit decision that refused the request, so
//! they agree with the `RateLimit` fields; one the response does not have renders as `0`.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;

use super::body::Body;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Status,
    Reason,
    RetryAfter,
    Limit,
    Remaining,
    RequestId,
}

/// One compiled custom rejection.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    /// The status it applies to.
    pub status: StatusCode,
    parts: Vec<Part>,
    content_type: HeaderValue,
}

impl ErrorPage {
    /// Compiles the page for `status`; `{location}` becomes `location`.
    pub fn new(status: u16, body: &str, content_type: &str, location: &str) -> Result<ErrorPage> {
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .ok_or_else(|| Error::config(format!("error_response status must be 400-599, not {status}")))?;
        let content_type = HeaderValue::from_str(content_type).map_err(|_| {
            Error::config(format!(
                "error_response content_type {content_type:?} is not a field value"
            ))
        })?;
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = body;
        while let Some(open) = rest.find('{') {
            lit.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let name_len = after
                .bytes()
                .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
                .count();
            if name_len == 0 || !after[name_len..].starts_with('}') {
                lit.push('{');
                rest = after;
                continue;
            }
            let part = match &after[..name_len] {
                "status" => Part::Status,
                "reason" => Part::Reason,
                "retry_after" => Part::RetryAfter,
                "limit" => Part::Limit,
                "remaining" => Part::Remaining,
                "request_id" => Part::RequestId,
                "location" => Part::Lit(location.to_owned()),
                other => {
                    return Err(Error::config(format!(
                        "unknown variable {{{other}}} in the error_response body for {status} (known: status, \
                         reason, retry_after, limit, remaining, request_id, location)"
                    )))
                }
            };
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(part);
            rest = &after[name_len + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(ErrorPage {
            status,
            parts,
            content_type,
        })
    }

    /// Replaces `resp`'s body and content type with this page, rendered from its fields and
    /// the request ID.
    pub fn apply(
        &self,
        resp: &mut http::Response<Body>,
        request_id: Option<&str>,
        rate: Option<&crate::limit::Decision>,
    ) {
        let h = resp.headers();
        let field = |name: &str, fallback: &'static str| -> String {
            h.get(name).and_then(|v| v.to_str().ok()).unwrap_or(fallback).to_owned()
        };
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Status => out.push_str(self.status.as_str()),
                Part::Reason => out.push_str(self.status.canonical_reason().unwrap_or("")),
                Part::RetryAfter => out.push_str(&field("retry-after", "0")),
                Part::Limit => out.push_str(&rate.map_or(0, |d| d.limit).to_string()),
                Part::Remaining => out.push_str(&rate.map_or(0, |d| d.remaining).to_string()),
                Part::RequestId => out.push_str(request_id.unwrap_or("")),
            }
        }
        resp.headers_mut().insert(CONTENT_TYPE, self.content_type.clone());
        *resp.body_mut() = Body::full(out);
    }
}

/// The page for `resp`'s status, if one is configured.
pub fn page_for<'a>(pages: &'a [ErrorPage], resp: &http::Response<Body>) -> Option<&'a ErrorPage> {
    pages.iter().find(|p| p.status == resp.status())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body(r: http::Response<Body>) -> String {
        let bytes = crate::server::phases::testing::block_on(r.into_body().collect())
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn a_json_rejection_with_the_limits_fields() {
        let page = ErrorPage::new(
            429,
            r#"{"error": "Rate limit exceeded", "remaining": {remaining}, "limit": {limit}, "retry": {retry_after}, "at": "{location}"}"#,
            "application/json",
            "fra1",
        )
        .unwrap();
        let mut r = crate::server::respond::status_response(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
        r.headers_mut().insert("retry-after", HeaderValue::from_static("12"));
        let limiter = crate::limit::RateLimiter::new(&crate::limit::LimiterConfig {
            limit: 5,
            period: 60.0,
            burst: Some(1),
            max_keys: 10,
            store: None,
            timeout: std::time::Duration::from_secs(1),
            on_store_error: crate::limit::FailurePolicy::Open,
            sync: None,
        })
        .unwrap();
        limiter.check_local(b"k", 1, Some(1)).unwrap();
        let d = limiter.check_local(b"k", 1, Some(2)).unwrap();
        assert!(!d.allowed);
        page.apply(&mut r, None, Some(&d));
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(
            body(r),
            r#"{"error": "Rate limit exceeded", "remaining": 0, "limit": 5, "retry": 12, "at": "fra1"}"#
        );
    }

    #[test]
    fn defaults_and_errors() {
        let page = ErrorPage::new(401, "{status} {reason}: {retry_after}", "text/plain", "").unwrap();
        let mut r = crate::server::respond::status_response(StatusCode::UNAUTHORIZED, "Unauthorized");
        page.apply(&mut r, None, None);
        assert_eq!(body(r), "401 Unauthorized: 0");
        let err = |s: u16, b: &str| ErrorPage::new(s, b, "text/plain", "").unwrap_err().context.to_string();
        assert!(err(200, "x").contains("400-599"));
        assert!(err(401, "{nope}").contains("unknown variable {nope}"));
        assert!(ErrorPage::new(401, "x", "a\nb", "").is_err());
        // Braces that are not a variable are text.
        let page = ErrorPage::new(403, "{ } {x-y} {", "text/plain", "").unwrap();
        let mut r = crate::server::respond::status_response(StatusCode::FORBIDDEN, "Forbidden");
        page.apply(&mut r, None, None);
        assert_eq!(body(r), "{ } {x-y} {");
    }
}
