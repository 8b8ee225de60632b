//! Rate limits: every rule whose paths match takes one token from the bucket of the request's
//! key (the client IP, a header or a verified claim; the IP when the header or claim is absent).
//! The first rule that refuses answers 429 with `Retry-After` and `RateLimit-*`; the last
//! decision that let the request through gives the response its `RateLimit-*` fields.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use http::header::HeaderValue;
use http::StatusCode;

use crate::auth::claim_text;
use crate::error::Result;
use crate::geo::client_ip::push_ip;
use crate::server::ctx::{Flow, RateNote, RequestCtx};
use crate::server::metrics::{Outcome, Policy};
use crate::server::plan::{LimitKey, Plan, RateRule};
use crate::server::respond::{rate_headers, status_response};
use crate::server::state::ServerState;

/// The bucket key of `ctx`'s request under `rule`: the rule's namespace, then the key's value.
/// `ip` as key text; an IPv6 address as its network of `prefix` bits (`2001:db8:1:2::/64`), since
/// one client holds a whole /64 and could rotate through it.
fn push_ip_prefix(key: &mut String, ip: IpAddr, prefix: u8) {
    match ip {
        IpAddr::V6(v6) if prefix < 128 => {
            let bits = u128::from(v6) & (u128::MAX << (128 - u32::from(prefix)));
            let _ = write!(key, "{}/{prefix}", std::net::Ipv6Addr::from(bits));
        }
        ip => push_ip(key, ip),
    }
}

fn key(rule: &RateRule, ctx: &RequestCtx, ipv6_prefix: u8) -> String {
    let request = &ctx.request;
    let ip = request.edge.client_ip.unwrap_or(ctx.peer);
    let mut key = String::with_capacity(rule.namespace.len() + 40);
    key.push_str(&rule.namespace);
    // Typed: each kind of key has its own namespace, so a header value such as
    // `ip:198.51.100.7` can never name (and drain) an IP's bucket.
    let value = match &rule.key {
        LimitKey::Ip => None,
        LimitKey::Header(h) => request
            .headers
            .get(h.as_str())
            .map(|v| ("h:", String::from_utf8_lossy(v))),
        LimitKey::Claim(c) => request
            .edge
            .claims
            .as_ref()
            .and_then(|m| m.get(c))
            .map(|v| ("c:", claim_text(v))),
    };
    match value {
        Some((kind, v)) => {
            key.push_str(kind);
            key.push_str(&v);
        }
        None => {
            key.push_str("ip:");
            push_ip_prefix(&mut key, ip, ipv6_prefix);
        }
    }
    key
}

/// Checks every matching rule; answers 429 at the first that refuses.
pub async fn check(state: &ServerState, plan: &Plan, ctx: &mut RequestCtx) -> Result<Flow> {
    let path = ctx.request.path();
    for rule in plan.rate_limits.iter().filter(|r| r.paths.matches(path)) {
        let limit_key = key(rule, ctx, plan.request.ipv6_prefix);
        let d = if rule.limiter.is_shared() {
            // Boxed: the Redis round trip's future stays off the per-request one.
            Box::pin(rule.limiter.check(&limit_key, 1)).await?
        } else {
            // The test clock moves in-process limiters too (Redis keeps its own clock);
            // otherwise the limiter reads its clock once, in the check.
            let offset = state.clock_offset_ns.load(Ordering::Relaxed);
            let now = (offset > 0)
                .then(|| rule.limiter.local_now())
                .flatten()
                .map(|t| t + offset);
            rule.limiter.check_local(limit_key.as_bytes(), 1, now)?
        };
        state.metrics.limiter(d.allowed);
        if rule.shadow {
            ctx.notes.shadow.push((Policy::RateLimit, !d.allowed));
            continue;
        }
        let note = RateNote {
            decision: d,
            fields: rule.fields,
            policy: rule.policy.clone(),
        };
        if !note.decision.allowed {
            ctx.notes.outcome = Some(Outcome::RateLimited);
            let mut r = status_response(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            rate_headers(&note.decision, note.fields, Some(&note.policy), r.headers_mut());
            r.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from((note.decision.retry_after.ceil() as u64).max(1)),
            );
            // Kept for a custom 429 body's {limit} and {remaining}.
            ctx.notes.rate = Some(note);
            return Ok(Flow::Answer(r));
        }
        ctx.notes.rate = Some(note);
    }
    Ok(Flow::Continue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{block_on, ctx_from, plan_with_limit, state};

    #[test]
    fn the_limit_answers_429_once_the_bucket_is_empty() {
        let p = plan_with_limit("ip", 2);
        let s = state(plan_with_limit("ip", 2), None);
        for remaining in [1, 0] {
            let mut c = ctx_from("198.51.100.1", "/login", &[]);
            assert!(matches!(block_on(check(&s, &p, &mut c)).unwrap(), Flow::Continue));
            let note = c.notes.rate.as_ref().unwrap();
            assert_eq!(note.decision.remaining, remaining);
            // The rule's policy value, written when the plan was built, is the decision's.
            let d = &note.decision;
            assert_eq!(note.policy, crate::server::respond::policy_value(d.limit, d.period));
            assert_eq!(note.policy, "\"default\";q=2;w=60");
        }
        let mut c = ctx_from("198.51.100.1", "/login", &[]);
        match block_on(check(&s, &p, &mut c)).unwrap() {
            Flow::Answer(r) => {
                assert_eq!(r.status(), 429);
                assert!(r.headers().contains_key("retry-after") && r.headers().contains_key("ratelimit-policy"));
            }
            Flow::Continue => panic!("not limited"),
        }
        // Another client has its own bucket; another path is not limited.
        let mut c = ctx_from("198.51.100.2", "/login", &[]);
        assert!(matches!(block_on(check(&s, &p, &mut c)).unwrap(), Flow::Continue));
        let mut c = ctx_from("198.51.100.1", "/other", &[]);
        assert!(matches!(block_on(check(&s, &p, &mut c)).unwrap(), Flow::Continue));
    }

    #[test]
    fn a_header_key_falls_back_to_the_ip_in_its_own_namespace() {
        let p = plan_with_limit("header:x-api-key", 1);
        let rule = &p.rate_limits[0];
        let c = ctx_from("198.51.100.1", "/login", &[("x-api-key", "k1")]);
        assert_eq!(key(rule, &c, 64), "rl0:h:k1");
        // A header value that looks like an IP key stays in the header namespace.
        let c = ctx_from("198.51.100.1", "/login", &[("x-api-key", "ip:203.0.113.9")]);
        assert_eq!(key(rule, &c, 64), "rl0:h:ip:203.0.113.9");
        let mut c = ctx_from("198.51.100.1", "/login", &[]);
        c.request.edge.client_ip = Some("203.0.113.9".parse().unwrap());
        assert_eq!(key(rule, &c, 64), "rl0:ip:203.0.113.9");
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_prefix() {
        let p = plan_with_limit("ip", 1);
        let rule = &p.rate_limits[0];
        let a = ctx_from("2001:db8:1:2::1", "/login", &[]);
        let b = ctx_from("2001:db8:1:2:ffff::9", "/login", &[]);
        let other = ctx_from("2001:db8:1:3::1", "/login", &[]);
        assert_eq!(key(rule, &a, 64), "rl0:ip:2001:db8:1:2::/64");
        assert_eq!(key(rule, &a, 64), key(rule, &b, 64));
        assert_ne!(key(rule, &a, 64), key(rule, &other, 64));
        assert_eq!(key(rule, &a, 128), "rl0:ip:2001:db8:1:2::1");
    }
}
