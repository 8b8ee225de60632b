//! The HTTP/1.1 request parser and chunked decoder on arbitrary bytes.
//!
//! Properties, each an assertion:
//! - never a panic, whatever the bytes;
//! - differential against httparse: whatever edgecore accepts, httparse accepts with the same
//!   method, target, version and fields (edgecore may be stricter, never more lenient);
//! - an accepted message never has both `Content-Length` and `Transfer-Encoding`, uses no more
//!   bytes than it was given, and every line of its head ends in CRLF;
//! - "read more" is told from "reject": every prefix of an accepted message is `Incomplete`;
//! - what the edge would forward (`Request::to_bytes`) parses back to the same request;
//! - the server's framing guard (which reads the bytes before hyper does) passes every message
//!   the strict parser accepts, whatever the reads' boundaries, and returns the same verdict for
//!   any split of any input.
#![no_main]

use bytes::Bytes;
use edgecore_core::http::framing::{FrameGuard, Outcome};
use edgecore_core::http::{parse_request, Limits};
use edgecore_core::ErrorKind;
use libfuzzer_sys::fuzz_target;

fn limits() -> Limits {
    // Small limits, so the fuzzer reaches every limit's boundary.
    Limits {
        max_headers: 16,
        max_header_bytes: 2048,
        max_uri_bytes: 512,
        max_body_bytes: 4096,
    }
}

/// The guard's verdict on `data` read in pieces of `step` bytes, and the bytes it let through.
fn guard(data: &[u8], step: usize) -> (Outcome, Vec<u8>) {
    let mut g = FrameGuard::new();
    let mut bytes = data.to_vec();
    for piece in bytes.chunks_mut(step.max(1)) {
        let o = g.inspect(piece);
        if o != Outcome::Ok {
            return (o, bytes);
        }
    }
    (Outcome::Ok, bytes)
}

fuzz_target!(|data: &[u8]| {
    let limits = limits();
    let whole = guard(data, data.len()).0;
    let split = data.first().map_or(1, |&b| usize::from(b % 7) + 1);
    assert_eq!(
        guard(data, split).0,
        whole,
        "the verdict depends on the reads' boundaries"
    );
    let buf = Bytes::copy_from_slice(data);
    let Ok(parsed) = parse_request(&buf, &limits) else {
        return;
    };
    let req = &parsed.request;
    assert!(parsed.consumed <= data.len());
    let (verdict, _) = guard(&data[..parsed.consumed], parsed.consumed);
    assert_eq!(
        verdict,
        Outcome::Ok,
        "the guard refuses a message the strict parser accepts"
    );

    // httparse agrees on the head.
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut theirs = httparse::Request::new(&mut slots);
    let status = theirs.parse(data).expect("edgecore accepted what httparse rejects");
    let httparse::Status::Complete(head_len) = status else {
        panic!("edgecore accepted a head httparse calls partial")
    };
    assert!(head_len <= parsed.consumed);
    assert_eq!(theirs.method, Some(req.method.as_str()));
    assert_eq!(
        theirs.version,
        Some(if req.version == http::Version::HTTP_10 { 0 } else { 1 })
    );
    assert_eq!(theirs.headers.len(), req.headers.len());
    for (h, (name, value)) in theirs.headers.iter().zip(req.headers.iter()) {
        assert!(h.name.eq_ignore_ascii_case(name));
        assert_eq!(h.value, value);
    }
    let head = &data[..head_len];
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && head[i - 1] == b'\r', "bare LF accepted at {i}");
        }
    }

    // Framing: never both, and Content-Length means exactly that many body bytes.
    let cl = req.headers.contains("content-length");
    let te = req.headers.contains("transfer-encoding");
    assert!(!(cl && te), "Content-Length and Transfer-Encoding both accepted");
    if cl {
        // One value, or a list of values of the same number (RFC 9110 §8.6 lets a recipient
        // accept identical values; `80` and `080` frame the same body).
        let numbers: Vec<usize> = req
            .headers
            .get_all("content-length")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|v| {
                std::str::from_utf8(v.trim_ascii())
                    .unwrap()
                    .parse()
                    .expect("Content-Length not 1*DIGIT")
            })
            .collect();
        assert!(
            numbers.windows(2).all(|w| w[0] == w[1]),
            "different Content-Length values accepted"
        );
        let n = numbers[0];
        assert_eq!(n, req.body.len());
        assert_eq!(parsed.consumed, head_len + n);
    }
    assert!(req.body.len() <= limits.max_body_bytes);

    // Every proper prefix says "read more", never "reject".
    let n = parsed.consumed;
    for k in [n - 1, n / 2, head_len.saturating_sub(1), head_len.saturating_sub(2), 1] {
        if k == 0 || k >= n {
            continue;
        }
        match parse_request(&buf.slice(..k), &limits) {
            Err(e) if e.kind == ErrorKind::Incomplete => {}
            Err(e) => panic!("prefix of {k} bytes (of {n}) rejected: {e}"),
            Ok(p) => panic!("prefix of {k} bytes (of {n}) accepted, consuming {}", p.consumed),
        }
    }

    // What the edge forwards means the same thing.
    let again = Bytes::from(req.to_bytes());
    // The forwarded target may be a byte longer (`http://h?q` is written `http://h/?q`).
    let roomy = Limits {
        max_uri_bytes: limits.max_uri_bytes + 1,
        max_header_bytes: limits.max_header_bytes + 1,
        max_body_bytes: usize::MAX,
        ..limits
    };
    let back = parse_request(&again, &roomy).unwrap_or_else(|e| panic!("the forwarded form does not parse: {e}"));
    assert_eq!(back.consumed, again.len());
    assert_eq!(back.request.method, req.method);
    assert_eq!(back.request.uri, req.uri);
    assert_eq!(back.request.body, req.body);
});
