//! Request IDs and W3C Trace Context (`app.request_ids()`): every request gets an ID — the one
//! a trusted proxy sent (a visible-ASCII value of at most 128 bytes), else a new one — sent to
//! the origin and the handlers, returned to the client and written to the access log. With
//! tracing on, a valid `traceparent` is continued (the same trace ID, a new parent ID for the
//! edge's hop, the same flags) and an absent or invalid one starts a new sampled trace;
//! `tracestate` passes on untouched.
//!
//! IDs come from a per-thread counter mixed with the server's random seed: no lock, no shared
//! counter, no system call per request.

use std::cell::Cell;
use std::hash::BuildHasher;

use http::header::{HeaderName, HeaderValue};

use crate::server::ctx::{RequestCtx, TraceId};
use crate::server::plan::Plan;
use crate::server::state::ServerState;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

thread_local! {
    static NEXT: Cell<u64> = const { Cell::new(0) };
}

/// 64 fresh random-looking bits.
fn next_bits(state: &ServerState) -> u64 {
    NEXT.with(|n| {
        let mut v = n.get();
        if v == 0 {
            // Each thread starts from its own point of the sequence.
            v = state.uid_seed.hash_one(std::thread::current().id()) | 1;
        }
        n.set(v.wrapping_add(0x9e37_79b9_7f4a_7c15));
        state.uid_seed.hash_one(v)
    })
}

/// `bits` as 16 lower-case hex digits (what `{:016x}` writes, without the formatter: the ID
/// and trace fields are made on every request).
fn hex(bits: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, d) in out.iter_mut().enumerate() {
        *d = DIGITS[(bits >> (60 - 4 * i)) as usize & 0xf];
    }
    out
}

/// 32 hex digits of fresh bits: a new request ID or trace ID.
fn id128(state: &ServerState) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..16].copy_from_slice(&hex(next_bits(state)));
    id[16..].copy_from_slice(&hex(next_bits(state)));
    id
}

/// Whether `v` is an ID worth keeping: 1-128 visible ASCII bytes.
fn acceptable_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|b| (0x21..0x7f).contains(b))
}

/// The trace ID and flags of a valid version-00 `traceparent` (or a later version's first
/// four fields, as the standard asks).
fn parse_traceparent(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut parts = v.trim_ascii().split(|&b| b == b'-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex =
        |s: &[u8], n: usize| s.len() == n && s.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    let valid = lower_hex(version, 2)
        && version != b"ff"
        && (version != b"00" || parts.next().is_none())
        && lower_hex(trace, 32)
        && trace.iter().any(|&b| b != b'0')
        && lower_hex(parent, 16)
        && parent.iter().any(|&b| b != b'0')
        && lower_hex(flags, 2);
    valid.then_some((trace, flags))
}

/// Settles the request ID (and trace context) of a request.
pub fn assign(state: &ServerState, plan: &Plan, ctx: &mut RequestCtx) {
    let Some(cfg) = &plan.request_ids else { return };
    let trusted = plan.trusted.contains(ctx.peer);
    let kept = trusted
        .then(|| ctx.request.headers.get(&cfg.header))
        .flatten()
        .filter(|v| acceptable_id(v))
        .and_then(|v| HeaderValue::from_bytes(v).ok());
    let id = kept.unwrap_or_else(|| HeaderValue::from_bytes(&id128(state)).expect("hex digits"));
    let map = ctx.request.headers.as_map_mut();
    map.insert(cfg.header.clone(), id.clone());
    ctx.notes.request_id = Some(id.clone());
    ctx.notes.always.push((cfg.header.clone(), id));
    if !cfg.trace {
        return;
    }
    // `00-{trace}-{parent}-{flags}`: the incoming trace and flags continued, or a new sampled
    // trace; the parent is this hop's, always new.
    let incoming = ctx.request.headers.get(&TRACEPARENT).and_then(parse_traceparent);
    let (trace, flags) = match incoming {
        Some((trace, flags)) => (<[u8; 32]>::try_from(trace).expect("32 digits"), [flags[0], flags[1]]),
        None => (id128(state), *b"01"),
    };
    let mut tp = [0u8; 55];
    tp[..3].copy_from_slice(b"00-");
    tp[3..35].copy_from_slice(&trace);
    tp[35] = b'-';
    tp[36..52].copy_from_slice(&hex(next_bits(state)));
    tp[52] = b'-';
    tp[53..].copy_from_slice(&flags);
    ctx.request
        .headers
        .as_map_mut()
        .insert(TRACEPARENT, HeaderValue::from_bytes(&tp).expect("hex and dashes"));
    ctx.notes.trace_id = Some(TraceId(trace));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{ctx_with, plan, state};

    #[test]
    fn ids_are_made_or_kept_from_trusted_proxies() {
        let p = plan(serde_json::json!({
            "request_ids": {"header": "x-request-id", "trace": true}, "trusted_proxies": ["10.0.0.0/8"],
        }));
        let s = state(plan(serde_json::json!({})), None);
        let mut c = ctx_with("/", &[("x-request-id", "client-chosen")]);
        assign(&s, &p, &mut c);
        let id = c.request.header("x-request-id").unwrap().to_owned();
        assert!(id != "client-chosen" && id.len() == 32, "{id}");
        assert_eq!(c.notes.request_id.as_ref().unwrap(), id.as_str());
        let mut c2 = ctx_with("/", &[]);
        assign(&s, &p, &mut c2);
        assert_ne!(c2.request.header("x-request-id").unwrap(), id, "unique");
        let mut c = ctx_with("/", &[("x-request-id", "lb-7")]);
        c.peer = "10.0.0.1".parse().unwrap();
        assign(&s, &p, &mut c);
        assert_eq!(c.request.header("x-request-id"), Some("lb-7"));
    }

    #[test]
    fn trace_context_is_continued_or_started() {
        let p = plan(serde_json::json!({"request_ids": {"header": "x-request-id", "trace": true}}));
        let s = state(plan(serde_json::json!({})), None);
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut c = ctx_with("/", &[("traceparent", incoming), ("tracestate", "k=v")]);
        assign(&s, &p, &mut c);
        let tp = c.request.header("traceparent").unwrap().to_owned();
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && tp.ends_with("-01"),
            "{tp}"
        );
        assert!(!tp.contains("00f067aa0ba902b7") && tp.len() == 55);
        assert_eq!(c.request.header("tracestate"), Some("k=v"));
        assert_eq!(
            c.notes.trace_id.as_ref().map(TraceId::as_str),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            let mut c = ctx_with("/", &[("traceparent", bad)]);
            assign(&s, &p, &mut c);
            let tp = c.request.header("traceparent").unwrap();
            assert!(
                !tp.contains("4bf92f3577b34da6") && tp.ends_with("-01") && tp.len() == 55,
                "{bad} -> {tp}"
            );
        }
        assert!(parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future").is_some());
    }

    #[test]
    fn hex_is_what_the_formatter_writes() {
        let mut bits = 0x0123_4567_89ab_cdefu64;
        for _ in 0..1000 {
            assert_eq!(hex(bits), format!("{bits:016x}").as_bytes());
            bits = bits.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
        }
        assert_eq!(&hex(0), b"0000000000000000");
        assert_eq!(&hex(u64::MAX), b"ffffffffffffffff");
    }
}
