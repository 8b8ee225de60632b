//! The path and Host normaliser on arbitrary text.
//!
//! Properties, under every policy:
//! - never a panic;
//! - idempotent: the canonical form is its own canonical form;
//! - the canonical path starts with `/`, has no empty, `.` or `..` segment (but a trailing
//!   slash), no percent-encoding of an unreserved byte, and upper-case hex;
//! - "policy view == origin view": with encoded slashes rejected or decoded, decoding every
//!   remaining escape (as Flask, Starlette and most origins do) and normalising again changes
//!   nothing: an origin cannot reach a path the rules did not see;
//! - a canonical Host is valid, lower case and idempotent.
#![no_main]

use edgecore_core::http::canonical::{
    canonical_host, canonical_path, valid_host, EscapedSlashes, PathParams, PathPolicy,
};
use libfuzzer_sys::fuzz_target;

const SLASHES: [EscapedSlashes; 3] = [EscapedSlashes::Reject, EscapedSlashes::Keep, EscapedSlashes::Decode];
const PARAMS: [PathParams; 3] = [PathParams::Reject, PathParams::Strip, PathParams::Keep];

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// What an origin does: decode every `%XX` once.
fn decode_all(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// What an origin does next: merge slashes and resolve dot segments.
fn origin_normalise(d: &[u8]) -> Vec<u8> {
    let segments: Vec<&[u8]> = d.split(|&b| b == b'/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let (mut out, mut trailing): (Vec<&[u8]>, bool) = (Vec::new(), false);
    for (i, s) in segments.iter().enumerate() {
        match *s {
            b"." => trailing = true,
            b".." => {
                out.pop();
                trailing = true;
            }
            b"" => trailing = i == last,
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut v = Vec::new();
    for s in &out {
        v.push(b'/');
        v.extend_from_slice(s);
    }
    if out.is_empty() || trailing {
        v.push(b'/');
    }
    v
}

fn check_shape(c: &str, raw: &str) {
    assert!(c.starts_with('/'), "{raw:?} -> {c:?}");
    let segments: Vec<&str> = c.split('/').skip(1).collect();
    let last = segments.len() - 1;
    for (i, s) in segments.iter().enumerate() {
        assert!(*s != "." && *s != "..", "dot segment left: {raw:?} -> {c:?}");
        assert!(!s.is_empty() || i == last, "empty segment left: {raw:?} -> {c:?}");
    }
    let b = c.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'%' {
            let (h, l) = (b[i + 1], b[i + 2]);
            assert!(h.is_ascii_digit() || h.is_ascii_uppercase(), "{c:?}");
            assert!(l.is_ascii_digit() || l.is_ascii_uppercase(), "{c:?}");
            let byte = hex(h).unwrap() << 4 | hex(l).unwrap();
            assert!(
                !(byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)),
                "unreserved byte left encoded: {raw:?} -> {c:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = if text.starts_with('/') {
        text.to_owned()
    } else {
        format!("/{text}")
    };
    for escaped_slashes in SLASHES {
        for path_params in PARAMS {
            let policy = PathPolicy {
                escaped_slashes,
                path_params,
            };
            let Ok(c) = canonical_path(&path, policy) else { continue };
            check_shape(&c, &path);
            let again = canonical_path(&c, policy).expect("a canonical path is refused");
            assert_eq!(again, c, "not idempotent under {policy:?}");
            if escaped_slashes != EscapedSlashes::Keep {
                // The origin's view: decode every escape, then normalise; nothing moves.
                let d = decode_all(&c);
                assert_eq!(
                    origin_normalise(&d),
                    d,
                    "the origin normalises {c:?} (from {path:?}) further"
                );
            }
        }
    }
    if let Ok(h) = canonical_host(text) {
        assert!(!h.bytes().any(|b| b.is_ascii_uppercase()), "{text:?} -> {h:?}");
        assert_eq!(canonical_host(&h).ok().as_deref(), Some(&*h), "host not idempotent");
        let name = match h.rfind(':') {
            Some(i) if !h[i..].contains(']') => &h[..i],
            _ => &h[..],
        };
        assert!(valid_host(name), "{text:?} -> {h:?}");
        assert!(!h.contains(['/', '@', '%', ' ', '?', '#']), "{h:?}");
    }
});
