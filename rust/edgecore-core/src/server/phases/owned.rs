//! Headers the edge owns: every field name the edge sets is removed from the client's request
//! on every path, before any policy adds its own, so a client can never supply, remove or
//! override one. Fields named in the client's `Connection` (and the hop-by-hop ones) go first,
//! so `Connection: x-user-id` cannot make the edge drop a header it sets later. Two
//! `Authorization` fields are refused (400): which one was verified would be ambiguous.
//!
//! Owned: `X-Forwarded-For/Proto/Host`, `Forwarded`, `X-Real-IP`, `Via`, every `x-edge-*` and
//! `x-ab-*` name, and the names configured in `claims_to_headers` and request header templates.
//! With `trust_proxy_headers`, a trusted proxy's request keeps them (an edge in front of this
//! one); by default even a trusted proxy's are removed (a load balancer forwards what the client
//! sent). (The client IP is
//! settled from `X-Forwarded-For` before this, for trusted proxies only.)

use http::header::HeaderName;

use crate::error::{Error, Result};
use crate::server::ctx::RequestCtx;
use crate::server::plan::Plan;
use crate::server::upstream::forwarding::strip_hop_by_hop;

/// Whether the edge owns `name`: the fixed names and prefixes (told apart by their first byte
/// first: most names a client sends start with neither `x`, `f` nor `v`), then the configured ones.
fn is_owned(name: &HeaderName, plan: &Plan) -> bool {
    let n = name.as_str();
    let fixed = match n.as_bytes().first() {
        Some(b'x') => {
            n.starts_with("x-edge-")
                || n.starts_with("x-ab-")
                || matches!(
                    n,
                    "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "x-real-ip"
                )
        }
        Some(b'f') => n == "forwarded",
        Some(b'v') => n == "via",
        _ => false,
    };
    let configured = &plan.request.owned_headers;
    fixed || (!configured.is_empty() && configured.contains(name))
}

/// Removes what the edge owns from the client's request.
pub fn strip(plan: &Plan, ctx: &mut RequestCtx) -> Result<()> {
    let h = ctx.request.headers.as_map_mut();
    strip_hop_by_hop(h);
    // One pass over the fields, comparing names (no hashing, as a lookup would).
    if h.iter()
        .filter(|(name, _)| *name == http::header::AUTHORIZATION)
        .nth(1)
        .is_some()
    {
        return Err(Error::bad_request("more than one Authorization field"));
    }
    // Kept only when asked (`trust_proxy_headers`) and from a trusted proxy: an edge in front of
    // this one. A load balancer in `trust_proxies` passes client headers on verbatim, so by
    // default its requests are stripped like anyone's.
    if plan.server.trust_proxy_headers && plan.trusted.contains(ctx.peer) {
        return Ok(());
    }
    // One pass over the names (linear however many a client sends); only what is found is
    // removed, and a request that carries none allocates nothing.
    let found: Vec<HeaderName> = h.keys().filter(|k| is_owned(k, plan)).cloned().collect();
    for name in found {
        h.remove(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{ctx_with, plan};

    #[test]
    fn the_client_cannot_supply_or_remove_what_the_edge_owns() {
        let p = plan(serde_json::json!({
            "headers": [{"paths": ["/a/*"], "request": {"x-country": "{geo.country}"}}],
        }));
        let mut c = ctx_with(
            "/elsewhere",
            &[
                ("x-forwarded-for", "1.2.3.4"),
                ("X-Real-IP", "1.2.3.4"),
                ("forwarded", "for=1.2.3.4"),
                ("via", "1.1 evil"),
                ("x-edge-bot", "0"),
                ("x-ab-hero", "b"),
                ("x-country", "US"),
                ("connection", "x-keep-me-not"),
                ("x-keep-me-not", "1"),
                ("x-user-id", "admin"),
            ],
        );
        strip(&p, &mut c).unwrap();
        let mut left: Vec<&str> = c.request.headers.as_map_mut().keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        // x-user-id is not owned here (no claims_to_headers names it).
        assert_eq!(left, ["host", "x-user-id"]);
        // A trusted load balancer's request is stripped too, unless trust_proxy_headers says it
        // is an edge; Connection-named fields go either way.
        let from_lb = |spec: serde_json::Value| {
            let mut c = crate::server::phases::testing::ctx_from(
                "10.0.0.2",
                "/",
                &[("x-edge-bot", "1"), ("connection", "x-gone"), ("x-gone", "1")],
            );
            strip(&plan(spec), &mut c).unwrap();
            assert!(c.request.header("x-gone").is_none());
            c.request.header("x-edge-bot").map(str::to_owned)
        };
        assert_eq!(from_lb(serde_json::json!({"trusted_proxies": ["10.0.0.0/8"]})), None);
        let edge = serde_json::json!({"trusted_proxies": ["10.0.0.0/8"], "server": {"trust_proxy_headers": true}});
        assert_eq!(from_lb(edge).as_deref(), Some("1"));
        let mut c = ctx_with("/", &[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(strip(&p, &mut c).unwrap_err().http_status(), 400);
    }
}
