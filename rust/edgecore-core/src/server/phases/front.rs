//! The front door: limits checked on the request head before anything else reads it. hyper has
//! already bounded the head's size (a head beyond twice `max_header_bytes` closes the
//! connection); here the configured limits answer with their status.

use crate::error::{Error, ErrorKind, Result};
use crate::server::plan::Plan;

/// Checks the head's size limits and framing: 414 for a long target, 400 for both
/// `Content-Length` and `Transfer-Encoding` (or `Transfer-Encoding` in HTTP/1.0), 431 for large
/// header fields, 413 for a declared body over `max_body_bytes`.
pub fn check(plan: &Plan, parts: &http::request::Parts) -> Result<()> {
    // Measured from the parts (no allocation): scheme, authority and path-and-query.
    let uri_len = parts.uri.scheme_str().map_or(0, |s| s.len() + 3)
        + parts.uri.authority().map_or(0, |a| a.as_str().len())
        + parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > plan.limits.max_uri_bytes {
        return Err(Error::downstream(ErrorKind::UriTooLong, "request target too long"));
    }
    // One pass over the fields: their size, and the framing fields (name comparisons, no
    // hashing as lookups would).
    let (mut head_bytes, mut te, mut te_fields, mut cl) = (0usize, None, 0, None);
    for (name, value) in parts.headers.iter() {
        head_bytes += name.as_str().len() + value.len() + 4;
        if name == http::header::TRANSFER_ENCODING {
            te_fields += 1;
            te = te.or(Some(value));
        } else if name == http::header::CONTENT_LENGTH {
            cl = cl.or(Some(value));
        }
    }
    // Framing ambiguity is refused outright, as the parser does: never guess between them.
    if te.is_some() && (cl.is_some() || parts.version == http::Version::HTTP_10) {
        return Err(Error::bad_request(
            "both Content-Length and Transfer-Encoding (or Transfer-Encoding in HTTP/1.0)",
        ));
    }
    // One coding only, and only chunked: anything else (an unknown coding, `chunked` twice or
    // with another, two fields) is a framing a proxy behind us might read differently.
    if let Some(v) = te {
        if te_fields > 1 {
            return Err(Error::bad_request("more than one Transfer-Encoding field"));
        }
        if !v.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err(Error::downstream(
                ErrorKind::NotImplemented,
                "the only transfer coding served is a single chunked",
            ));
        }
    }
    if head_bytes > plan.limits.max_header_bytes {
        return Err(Error::downstream(
            ErrorKind::HeadersTooLarge,
            "request header fields too large",
        ));
    }
    let declared = cl.and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > plan.limits.max_body_bytes as u64) {
        return Err(Error::downstream(ErrorKind::BodyTooLarge, "request body too large"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::plan;

    fn head(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::get(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn status(parts: &http::request::Parts) -> Option<u16> {
        let p =
            plan(serde_json::json!({"server": {"max_uri_bytes": 64, "max_header_bytes": 256, "max_body_bytes": 10}}));
        check(&p, parts).err().map(|e| e.http_status())
    }

    #[test]
    fn each_limit_answers_with_its_status() {
        assert_eq!(status(&head("/ok", &[])), None);
        assert_eq!(status(&head(&format!("/{}", "a".repeat(64)), &[])), Some(414));
        // The whole target counts, in absolute form too (`http://` + authority + path): the
        // limit itself passes, one byte more is 414.
        assert_eq!(status(&head(&format!("/{}", "a".repeat(63)), &[])), None);
        assert_eq!(status(&head(&format!("http://h/{}", "a".repeat(55)), &[])), None);
        assert_eq!(status(&head(&format!("http://h/{}", "a".repeat(56)), &[])), Some(414));
        assert_eq!(status(&head(&format!("http://hh/{}", "a".repeat(55)), &[])), Some(414));
        assert_eq!(status(&head("/", &[("x-big", &"v".repeat(300))])), Some(431));
        // A field counts as it is sent, `name: value` and CRLF: 5 + 2 + 247 + 2 is the limit.
        assert_eq!(status(&head("/", &[("x-big", &"v".repeat(247))])), None);
        assert_eq!(status(&head("/", &[("x-big", &"v".repeat(248))])), Some(431));
        let two = |a: usize| {
            let (x, y) = ("v".repeat(a), "v".repeat(119));
            status(&head("/", &[("x-big", x.as_str()), ("x-bag", y.as_str())]))
        };
        assert_eq!(two(119), None, "fields add up: 128 + 128");
        assert_eq!(two(120), Some(431), "fields add up: 129 + 128");
        assert_eq!(status(&head("/", &[("content-length", "11")])), Some(413));
        assert_eq!(status(&head("/", &[("content-length", "10")])), None);
        assert_eq!(
            status(&head("/", &[("content-length", "1"), ("transfer-encoding", "chunked")])),
            Some(400)
        );
        assert_eq!(status(&head("/", &[("transfer-encoding", "chunked")])), None);
        assert_eq!(status(&head("/", &[("transfer-encoding", "Chunked")])), None);
        for te in ["foo, chunked", "chunked, chunked", "gzip", "chunked;x", " chunked"] {
            assert_eq!(status(&head("/", &[("transfer-encoding", te)])), Some(501), "{te}");
        }
        let twice = head(
            "/",
            &[("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")],
        );
        assert_eq!(status(&twice), Some(400));
        let mut te10 = head("/", &[("transfer-encoding", "chunked")]);
        te10.version = http::Version::HTTP_10;
        assert_eq!(status(&te10), Some(400));
    }
}
