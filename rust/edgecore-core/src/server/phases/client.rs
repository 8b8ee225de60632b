//! Who the client is: its IP (the socket peer, or the first untrusted address in
//! `X-Forwarded-For` when the peer is a trusted proxy), dev-mode overrides, and its geo record.
//! Never answers.

use std::sync::Arc;

use http::header::Entry;

use crate::geo::Geo;
use crate::server::ctx::{ForwardedChain, RequestCtx};
use crate::server::plan::Plan;
use crate::server::upstream::forwarding::X_FORWARDED_FOR;

/// Headers that set the client IP, country and bot status in dev mode.
const DEV_HEADERS: [&str; 3] = ["x-edge-dev-client-ip", "x-edge-dev-country", "x-edge-dev-bot"];
const DEV_PREFIX: &str = "x-edge-dev-";

/// Settles the client IP (and the trusted forwarding chain), reads and removes the dev headers,
/// and looks the client up in the geo database.
pub fn identify(plan: &Plan, ctx: &mut RequestCtx) {
    let headers = ctx.request.headers.as_map_mut();
    let trusted_peer = !plan.trusted.is_empty() && plan.trusted.contains(ctx.peer);
    let mut ip = ctx.peer;
    // From a trusted proxy, the chain it sent gains the proxy's own address (what it connected
    // from), as every proxy appends its peer: the client's address is in the chain already.
    // From anyone else the chain is not read at all (not even looked up).
    if trusted_peer {
        // Read from the map with a prebuilt name: no name parsing. The chain is kept as its
        // field values; it is written out only if the request goes to the origin.
        ctx.forwarded_chain = if plan.server.trust_proxy_headers {
            // An edge in front of this one: its fields stay on the request (`owned::strip`).
            ForwardedChain::new(headers.get_all(&X_FORWARDED_FOR).iter().cloned(), ctx.peer)
        } else {
            // The field is the edge's own (`owned::strip` would remove it next): taken out
            // here, with one lookup, instead of being read here and removed there.
            match headers.entry(&X_FORWARDED_FOR) {
                Entry::Occupied(field) => ForwardedChain::new(field.remove_entry_mult().1, ctx.peer),
                Entry::Vacant(_) => None,
            }
        };
        let hops = ctx.forwarded_chain.iter().flat_map(ForwardedChain::values);
        ip = crate::geo::client_ip(ctx.peer, hops, &plan.trusted);
    }
    // Dev headers are never forwarded, and never honoured outside dev mode. One pass over the
    // names finds out whether there are any.
    if headers.keys().any(|k| k.as_str().starts_with(DEV_PREFIX)) {
        if plan.server.dev_mode {
            let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
            let dev = &mut ctx.dev;
            dev.client_ip = text("x-edge-dev-client-ip").and_then(|v| v.parse().ok());
            dev.country = text("x-edge-dev-country").map(str::to_ascii_uppercase);
            dev.bot = text("x-edge-dev-bot").map(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        }
        for name in DEV_HEADERS {
            headers.remove(name);
        }
    }
    if let Some(dev_ip) = ctx.dev.client_ip {
        ip = dev_ip;
    }
    ctx.request.edge.client_ip = Some(ip);
    ctx.notes.client_ip = Some(ip);
    match &plan.geo[..] {
        [] => {}
        [db] => ctx.request.edge.geo = db.lookup_shared(ip),
        // Several databases (City and ASN): one record, each field from the first that has it.
        dbs => {
            let merged = dbs.iter().filter_map(|db| db.lookup_shared(ip)).reduce(|mut a, b| {
                Arc::make_mut(&mut a).fill_from(Geo::clone(&b));
                a
            });
            ctx.request.edge.geo = merged;
        }
    }
    if let Some(c) = ctx.dev.country.take() {
        let mut g = ctx.request.edge.geo.as_deref().cloned().unwrap_or_default();
        g.country = Some(c);
        ctx.request.edge.geo = Some(Arc::new(g));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{ctx_from, plan};

    #[test]
    fn the_peer_is_the_client_unless_it_is_a_trusted_proxy() {
        let p = plan(serde_json::json!({"trusted_proxies": ["10.0.0.0/8"]}));
        let mut c = ctx_from("198.51.100.1", "/", &[("x-forwarded-for", "203.0.113.5")]);
        identify(&p, &mut c);
        assert_eq!(c.request.edge.client_ip, Some("198.51.100.1".parse().unwrap()));
        assert_eq!(c.prior_xff(), None);
        let mut c = ctx_from("10.1.2.3", "/", &[("x-forwarded-for", "203.0.113.5")]);
        identify(&p, &mut c);
        assert_eq!(c.request.edge.client_ip, Some("203.0.113.5".parse().unwrap()));
        assert_eq!(c.prior_xff().as_deref(), Some("203.0.113.5, 10.1.2.3"));
        // Taken once: the chain goes to the one exchange that forwards the request.
        assert_eq!(c.prior_xff(), None);
        // Two fields are one chain, in order; an empty field adds nothing.
        let chain = |fields: &[&str]| {
            let headers: Vec<_> = fields.iter().map(|v| ("x-forwarded-for", *v)).collect();
            let mut c = ctx_from("10.1.2.3", "/", &headers);
            identify(&p, &mut c);
            c.prior_xff()
        };
        assert_eq!(
            chain(&["192.0.2.1, 203.0.113.5", "198.51.100.9"]).as_deref(),
            Some("192.0.2.1, 203.0.113.5, 198.51.100.9, 10.1.2.3")
        );
        assert_eq!(chain(&[""]), None);
        assert_eq!(chain(&[]), None);
        // The field is the edge's: it leaves the request here (its chain kept for the origin),
        // unless an edge in front of this one is trusted to set it.
        let fields = [("x-forwarded-for", "192.0.2.1"), ("x-forwarded-for", "203.0.113.5")];
        let mut c = ctx_from("10.1.2.3", "/", &fields);
        identify(&p, &mut c);
        assert!(c.request.header("x-forwarded-for").is_none());
        assert_eq!(c.request.edge.client_ip, Some("203.0.113.5".parse().unwrap()));
        assert_eq!(c.prior_xff().as_deref(), Some("192.0.2.1, 203.0.113.5, 10.1.2.3"));
        let edge =
            plan(serde_json::json!({"trusted_proxies": ["10.0.0.0/8"], "server": {"trust_proxy_headers": true}}));
        let mut c = ctx_from("10.1.2.3", "/", &fields);
        identify(&edge, &mut c);
        let kept: Vec<_> = c.request.headers.get_all("x-forwarded-for").collect();
        assert_eq!(kept, [&b"192.0.2.1"[..], b"203.0.113.5"]);
        assert_eq!(c.prior_xff().as_deref(), Some("192.0.2.1, 203.0.113.5, 10.1.2.3"));
    }

    #[test]
    fn dev_headers_are_removed_and_honoured_only_in_dev_mode() {
        let dev = [
            ("x-edge-dev-client-ip", "192.0.2.7"),
            ("x-edge-dev-country", "de"),
            ("x-edge-dev-bot", "true"),
        ];
        let mut c = ctx_from("198.51.100.1", "/", &dev);
        identify(&plan(serde_json::json!({})), &mut c);
        assert_eq!(c.request.edge.client_ip, Some("198.51.100.1".parse().unwrap()));
        assert!(c.request.edge.geo.is_none() && c.dev.bot.is_none());
        assert!(c
            .request
            .headers
            .as_map_mut()
            .keys()
            .all(|k| !k.as_str().starts_with("x-edge-dev-")));

        let mut c = ctx_from("198.51.100.1", "/", &dev);
        identify(&plan(serde_json::json!({"server": {"dev_mode": true}})), &mut c);
        assert_eq!(c.request.edge.client_ip, Some("192.0.2.7".parse().unwrap()));
        assert_eq!(c.request.edge.geo.as_ref().unwrap().country.as_deref(), Some("DE"));
        assert_eq!(c.dev.bot, Some(true));
        assert_eq!(c.request.headers.as_map_mut().len(), 1, "only the Host is left");
    }
}
