//! The cache-control and freshness parser and the storability decision on arbitrary fields.
//!
//! Input: a request line's worth of choices (method, authorization, body) in the first byte,
//! then a status in two bytes, then response header lines (`name: value\n`).
//!
//! Properties: never a panic; a stored response is never one RFC 9111 (or edgecore's README)
//! forbids storing: not a GET, a request with a body or `no-store`, a response with `no-store`,
//! `private` (any field form), `Set-Cookie`, `Vary: *`, a 206, a 304 or a 1xx, an authenticated
//! request without `public`/`s-maxage`/`must-revalidate`; a stored response has a finite,
//! non-negative TTL and age; `parse_http_date` only accepts what it can print back.
#![no_main]

use bytes::Bytes;
use edgecore_core::cache::policy::{parse_http_date, storable, CacheControl};
use edgecore_core::http::{Request, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use libfuzzer_sys::fuzz_target;

fn directives(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.split('=').next().unwrap().trim().to_ascii_lowercase())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (flags, status, lines) = (data[0], u16::from_be_bytes([data[1], data[2]]), &data[3..]);
    let Ok(status) = StatusCode::from_u16(100 + status % 500) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for line in lines.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let _ = CacheControl::parse(&headers);
    for v in headers.values() {
        if let Ok(s) = v.to_str() {
            if let Some(t) = parse_http_date(s) {
                assert!(t.is_finite());
            }
        }
    }

    let method = if flags & 1 == 0 { Method::GET } else { Method::POST };
    let mut request = Request::new(method.clone(), "/x".parse().unwrap());
    let mut raw = Vec::new();
    if flags & 2 != 0 {
        raw.extend_from_slice(b"authorization: Bearer x\r\n");
    }
    if flags & 4 != 0 {
        raw.extend_from_slice(b"cache-control: no-store\r\n");
    }
    if !raw.is_empty() {
        let text = format!("GET /x HTTP/1.1\r\nhost: a\r\n{}\r\n", String::from_utf8(raw).unwrap());
        let parsed = edgecore_core::http::parse_request(&Bytes::from(text), &Default::default()).unwrap();
        request.headers = parsed.request.headers;
    }
    if flags & 8 != 0 {
        request.body = Bytes::from_static(b"body");
    }
    let response = Response {
        status,
        headers,
        body: Bytes::new(),
    };
    let now = 1_700_000_000.0;
    let default_ttl = if flags & 16 != 0 { Some(60.0) } else { None };
    let d = storable(&request, &response, now, default_ttl);
    if !d.storable {
        return;
    }
    let h = &response.headers;
    assert_eq!(method, Method::GET);
    assert!(request.body.is_empty(), "stored the answer to a request with a body");
    assert!(flags & 4 == 0, "stored despite the request's no-store");
    let targeted = ["edgecore-cache-control", "cdn-cache-control"]
        .into_iter()
        .find(|n| h.get_all(*n).iter().any(|v| !v.as_bytes().trim_ascii().is_empty()));
    let cc = directives(h, targeted.unwrap_or("cache-control"));
    assert!(!cc.iter().any(|d| d == "no-store"), "stored no-store");
    assert!(!cc.iter().any(|d| d == "private"), "stored private");
    assert!(!h.contains_key("set-cookie"), "stored Set-Cookie");
    // Stored: every Vary member is a field name (a token), none is `*`.
    for value in h.get_all("vary") {
        let text = value.to_str().expect("stored a Vary that is not text");
        for member in text.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            assert!(member != "*", "stored Vary: *");
            assert!(
                member
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)),
                "stored a response varying on {member:?}, not a field name"
            );
        }
    }
    assert!(
        ![206, 304].contains(&status.as_u16()) && status.as_u16() >= 200,
        "stored {status}"
    );
    if flags & 2 != 0 {
        assert!(
            cc.iter()
                .any(|d| d == "public" || d == "s-maxage" || d == "must-revalidate" || d == "proxy-revalidate"),
            "stored an authenticated answer that is not public"
        );
    }
    assert!(d.ttl.is_finite() && d.ttl >= 0.0, "ttl {}", d.ttl);
    assert!(
        d.initial_age.is_finite() && d.initial_age >= 0.0,
        "age {}",
        d.initial_age
    );
});
