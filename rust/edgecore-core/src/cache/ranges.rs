//! Answering a client's conditional and `Range` request from a stored response (RFC 9110 §13
//! and §14), as a shared cache does: the stored entry is always the full representation (fills
//! never carry the client's conditionals or `Range`), and what this client asked for is cut from
//! it here, for this client alone.
//!
//! - `If-None-Match` (weak comparison, `*`), else `If-Modified-Since` (only for GET and HEAD,
//!   and only when the stored response has the validator): 304 with the validators and
//!   caching fields, no body;
//! - `Range: bytes=...` with one range (first-last, first-, or -suffix) on a 200: 206 with
//!   `Content-Range` and that slice of the body (no copy); an unsatisfiable range: 416 with
//!   `Content-Range: bytes */length`. Several ranges, another unit or a malformed value: the
//!   whole 200 (RFC 9110 §14.2 lets a server ignore `Range`);
//! - `If-Range` that does not match the stored validator (a strong `ETag`, or the exact
//!   `Last-Modified` date): the whole 200.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use super::asks::Asks;
use crate::http::{Request, Response};

/// A field of `request` as text (visible ASCII), looked up by its known name.
fn field<'r>(request: &'r Request, name: &header::HeaderName) -> Option<&'r str> {
    request
        .headers
        .get(name)
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|s| crate::http::no_controls(s.as_bytes()))
}

/// What `request` should get from the stored `response` (a 200, 304, 206 or 416).
pub fn answer(request: &Request, response: Response) -> Response {
    answer_asked(request, response, Asks::of(request))
}

/// [`answer`], with what the request asks already found: a request with no conditional and no
/// `Range` gets the response as it is, with no lookup.
pub fn answer_asked(request: &Request, response: Response, asks: Asks) -> Response {
    if !asks.conditional
        || response.status != StatusCode::OK
        || !(request.method == Method::GET || request.method == Method::HEAD)
    {
        return response;
    }
    if not_modified(request, &response.headers) {
        return not_modified_response(response);
    }
    if request.method != Method::GET {
        return response;
    }
    let Some(range) = field(request, &header::RANGE) else {
        return response;
    };
    if !if_range_holds(request, &response.headers) {
        return response;
    }
    let len = response.body.len() as u64;
    match parse_range(range, len) {
        Parsed::Ignore => response,
        Parsed::Unsatisfiable => {
            let mut r = response;
            r.status = StatusCode::RANGE_NOT_SATISFIABLE;
            set(&mut r.headers, header::CONTENT_RANGE, format!("bytes */{len}"));
            r.headers.remove(header::CONTENT_LENGTH);
            r.body = Bytes::new();
            r
        }
        Parsed::Slice(first, last) => {
            let mut r = response;
            r.status = StatusCode::PARTIAL_CONTENT;
            set(
                &mut r.headers,
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{len}"),
            );
            r.headers.remove(header::CONTENT_LENGTH);
            r.body = r.body.slice(first as usize..=last as usize);
            r
        }
    }
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: String) {
    if let Ok(v) = HeaderValue::try_from(value) {
        headers.insert(name, v);
    }
}

/// RFC 9110 §13.1.2 and §13.1.3 (If-Modified-Since only without If-None-Match).
fn not_modified(request: &Request, stored: &HeaderMap) -> bool {
    if let Some(inm) = field(request, &header::IF_NONE_MATCH) {
        let Some(etag) = stored.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        return inm.trim() == "*" || inm.split(',').any(|t| weak_eq(t.trim(), etag));
    }
    let Some(ims) = field(request, &header::IF_MODIFIED_SINCE) else {
        return false;
    };
    let Some(lm) = stored.get(header::LAST_MODIFIED).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    match (
        crate::cache::policy::parse_http_date(ims),
        crate::cache::policy::parse_http_date(lm),
    ) {
        (Some(ims), Some(lm)) => lm <= ims,
        _ => false,
    }
}

/// Weak comparison: the opaque tags are equal, either may be weak.
fn weak_eq(a: &str, b: &str) -> bool {
    let opaque = |t: &str| t.strip_prefix("W/").unwrap_or(t).to_owned();
    !a.is_empty() && opaque(a) == opaque(b)
}

/// The 304 for a stored 200: its validators and caching fields, no content fields, no body
/// (RFC 9110 §15.4.5).
fn not_modified_response(stored: Response) -> Response {
    const KEEP: [header::HeaderName; 7] = [
        header::ETAG,
        header::CACHE_CONTROL,
        header::EXPIRES,
        header::VARY,
        header::DATE,
        header::CONTENT_LOCATION,
        header::LAST_MODIFIED,
    ];
    let mut headers = HeaderMap::new();
    for name in KEEP {
        for v in stored.headers.get_all(&name) {
            headers.append(name.clone(), v.clone());
        }
    }
    for extra in ["age", "x-cache"] {
        if let Some(v) = stored.headers.get(extra) {
            headers.insert(header::HeaderName::from_static(extra), v.clone());
        }
    }
    Response {
        status: StatusCode::NOT_MODIFIED,
        headers,
        body: Bytes::new(),
    }
}

/// RFC 9110 §13.1.5: a strong ETag equal to the stored one, or an HTTP-date equal to the stored
/// `Last-Modified`; anything else (a weak tag included) means the whole representation.
fn if_range_holds(request: &Request, stored: &HeaderMap) -> bool {
    let Some(cond) = field(request, &header::IF_RANGE).map(str::trim) else {
        return true;
    };
    if cond.starts_with('"') {
        return stored
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|e| !e.starts_with("W/") && e == cond);
    }
    stored
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|lm| lm == cond)
}

#[derive(Debug, PartialEq)]
enum Parsed {
    Ignore,
    Unsatisfiable,
    /// First and last byte, inclusive.
    Slice(u64, u64),
}

/// One `bytes` range against a body of `len` bytes (RFC 9110 §14.1.1).
fn parse_range(value: &str, len: u64) -> Parsed {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Parsed::Ignore;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return Parsed::Ignore; // Several ranges: the whole representation is a valid answer.
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Parsed::Ignore;
    };
    let digits = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match digits(suffix) {
            None => Parsed::Ignore,
            Some(0) => Parsed::Unsatisfiable,
            Some(_) if len == 0 => Parsed::Unsatisfiable,
            Some(n) => Parsed::Slice(len.saturating_sub(n), len - 1),
        },
        (first, last) => {
            let Some(first) = digits(first) else {
                return Parsed::Ignore;
            };
            let last = match last {
                "" => None,
                l => match digits(l) {
                    Some(l) if l >= first => Some(l),
                    _ => return Parsed::Ignore,
                },
            };
            if first >= len {
                return Parsed::Unsatisfiable;
            }
            Parsed::Slice(first, last.map_or(len - 1, |l| l.min(len - 1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Response {
        let mut r = Response::new(200, "0123456789").unwrap();
        r.headers.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        r.headers.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        r.headers
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        r.headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        r
    }

    fn get(fields: &[(&str, &str)]) -> Request {
        let mut text = String::from("GET /x HTTP/1.1\r\nHost: h\r\n");
        for (n, v) in fields {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        text.push_str("\r\n");
        crate::http::parse_request(&Bytes::from(text), &Default::default())
            .unwrap()
            .request
    }

    fn range(value: &str) -> (u16, String, Option<String>) {
        let r = answer(&get(&[("range", value)]), stored());
        let cr = r.headers.get("content-range").map(|v| v.to_str().unwrap().to_owned());
        (r.status.as_u16(), String::from_utf8(r.body.to_vec()).unwrap(), cr)
    }

    #[test]
    fn single_ranges_are_cut_from_the_stored_body() {
        assert_eq!(range("bytes=0-3"), (206, "0123".into(), Some("bytes 0-3/10".into())));
        assert_eq!(range("bytes=7-"), (206, "789".into(), Some("bytes 7-9/10".into())));
        assert_eq!(range("bytes=-2"), (206, "89".into(), Some("bytes 8-9/10".into())));
        assert_eq!(
            range("bytes=-20"),
            (206, "0123456789".into(), Some("bytes 0-9/10".into()))
        );
        assert_eq!(range("bytes=5-100"), (206, "56789".into(), Some("bytes 5-9/10".into())));
        assert_eq!(range("bytes=10-"), (416, String::new(), Some("bytes */10".into())));
        assert_eq!(range("bytes=-0"), (416, String::new(), Some("bytes */10".into())));
        // An empty stored body satisfies no range (and no last byte is computed for it).
        let mut empty = stored();
        empty.body = Bytes::new();
        for v in ["bytes=-5", "bytes=0-", "bytes=0-0"] {
            let r = answer(&get(&[("range", v)]), empty.clone());
            assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{v}");
            assert_eq!(r.headers["content-range"], "bytes */0");
        }
    }

    #[test]
    fn what_cannot_be_served_simply_gets_the_whole_representation() {
        for v in [
            "bytes=0-1,3-4",
            "items=0-3",
            "bytes=3-1",
            "bytes=x-",
            "bytes=",
            "0-3",
            "bytes=+1-2",
        ] {
            assert_eq!(range(v), (200, "0123456789".into(), None), "{v}");
        }
    }

    #[test]
    fn if_range_needs_the_stored_strong_validator() {
        let r = |ir: &str| answer(&get(&[("range", "bytes=0-0"), ("if-range", ir)]), stored()).status;
        assert_eq!(r("\"v1\""), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r("\"v2\""), StatusCode::OK);
        assert_eq!(r("W/\"v1\""), StatusCode::OK);
        assert_eq!(r("Sun, 06 Nov 1994 08:49:37 GMT"), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r("Mon, 07 Nov 1994 08:49:37 GMT"), StatusCode::OK);
    }

    #[test]
    fn conditionals_get_a_304_with_the_validators_and_no_body() {
        for fields in [
            vec![("if-none-match", "\"v1\"")],
            vec![("if-none-match", "\"x\", W/\"v1\"")],
            vec![("if-none-match", "*")],
            vec![("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")],
            vec![("if-modified-since", "Mon, 07 Nov 1994 08:49:37 GMT")],
        ] {
            let r = answer(&get(&fields), stored());
            assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{fields:?}");
            assert!(r.body.is_empty());
            assert_eq!(r.headers["etag"], "\"v1\"");
            assert!(r.headers.get("content-length").is_none());
        }
        for fields in [
            vec![("if-none-match", "\"v2\"")],
            // If-None-Match decides alone, even when If-Modified-Since would match.
            vec![
                ("if-none-match", "\"v2\""),
                ("if-modified-since", "Mon, 07 Nov 1994 08:49:37 GMT"),
            ],
            vec![("if-modified-since", "Sat, 05 Nov 1994 08:49:37 GMT")],
            vec![("if-modified-since", "not a date")],
        ] {
            assert_eq!(answer(&get(&fields), stored()).status, StatusCode::OK, "{fields:?}");
        }
    }

    #[test]
    fn only_a_200_to_get_or_head_is_cut() {
        let mut not_ok = stored();
        not_ok.status = StatusCode::NOT_FOUND;
        assert_eq!(
            answer(&get(&[("range", "bytes=0-1")]), not_ok).status,
            StatusCode::NOT_FOUND
        );
        let mut head = get(&[("range", "bytes=0-1")]);
        head.method = Method::HEAD;
        assert_eq!(answer(&head, stored()).status, StatusCode::OK);
        // A HEAD is answered its 304 like a GET (RFC 9110 §13.1.2); a POST never.
        let mut head = get(&[("if-none-match", "\"v1\"")]);
        head.method = Method::HEAD;
        assert_eq!(answer(&head, stored()).status, StatusCode::NOT_MODIFIED);
        head.method = Method::POST;
        assert_eq!(answer(&head, stored()).status, StatusCode::OK);
    }
}
