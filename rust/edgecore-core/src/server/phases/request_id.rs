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
use std::fmt::Write as _;
use std::hash::BuildHasher;

use http::header::{HeaderName, HeaderValue};

use crate::server::ctx::RequestCtx;
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

fn hex(out: &mut String, bits: u64) {
    let _ = write!(out, "{bits:016x}");
}

/// Whether `v` is an ID worth keeping: 1-128 visible ASCII bytes.
fn acceptable_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|b| (0x21..0x7f).contains(b))
}

/// The trace ID and flags of a valid version-00 `traceparent` (or a later version's first
/// four fields, as the standard asks).
fn parse_traceparent(v: &str) -> Option<(&str, &str)> {
    let mut parts = v.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex =
        |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let valid = lower_hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && lower_hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && lower_hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && lower_hex(flags, 2);
    valid.then_some((trace, flags))
}

/// Settles the request ID (and trace context) of a request.
pub fn assign(state: &ServerState, plan: &Plan, ctx: &mut RequestCtx) {
    let Some(cfg) = &plan.request_ids else { return };
    let trusted = plan.trusted.contains(ctx.peer);
    let kept = trusted
        .then(|| ctx.request.headers.get(cfg.header.as_str()))
        .flatten()
        .filter(|v| acceptable_id(v))
        .and_then(|v| HeaderValue::from_bytes(v).ok());
    let id = kept.unwrap_or_else(|| {
        let mut s = String::with_capacity(32);
        hex(&mut s, next_bits(state));
        hex(&mut s, next_bits(state));
        HeaderValue::from_str(&s).expect("hex digits")
    });
    let map = ctx.request.headers.as_map_mut();
    map.insert(cfg.header.clone(), id.clone());
    ctx.notes.request_id = Some(id.clone());
    ctx.notes.always.push((cfg.header.clone(), id));
    if !cfg.trace {
        return;
    }
    let incoming = ctx.request.header(TRACEPARENT.as_str()).and_then(parse_traceparent);
    let mut tp = String::with_capacity(55);
    let trace_id = match incoming {
        Some((trace, flags)) => {
            let _ = write!(tp, "00-{trace}-");
            hex(&mut tp, next_bits(state));
            let _ = write!(tp, "-{flags}");
            trace.to_owned()
        }
        None => {
            let mut trace = String::with_capacity(32);
            hex(&mut trace, next_bits(state));
            hex(&mut trace, next_bits(state));
            let _ = write!(tp, "00-{trace}-");
            hex(&mut tp, next_bits(state));
            tp.push_str("-01");
            trace
        }
    };
    ctx.request
        .headers
        .as_map_mut()
        .insert(TRACEPARENT, HeaderValue::from_str(&tp).expect("hex and dashes"));
    ctx.notes.trace_id = Some(trace_id);
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
        assert_eq!(c.notes.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
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
        assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future").is_some());
    }
}
