//! Access lists and HTTPS only, right after the client IP and its country are known.
//!
//! Access: on a rule's paths, a client in `deny_ips` or from a `deny_countries` country is
//! refused; when the rule has an allow list, only a client in `allow_ips` or from an
//! `allow_countries` country gets in (a client whose country is unknown matches no country).
//! The first matching rule that refuses answers, with its status (403 by default).
//!
//! HTTPS only: a request that did not arrive over TLS — at this server, or at a trusted proxy
//! that says `X-Forwarded-Proto: https` — is redirected to the same URL on `https://`; HTTPS
//! responses carry `Strict-Transport-Security` when configured.

use http::header::STRICT_TRANSPORT_SECURITY;
use http::StatusCode;

use crate::server::ctx::{Flow, RequestCtx};
use crate::server::metrics::{Outcome, Policy};
use crate::server::plan::Plan;
use crate::server::respond::{from_core, status_response};

/// Refuses a client the matching access rules keep out.
pub fn check(plan: &Plan, ctx: &mut RequestCtx) -> Flow {
    let path = ctx.request.path();
    let ip = ctx.request.edge.client_ip.unwrap_or(ctx.peer);
    let country = ctx.request.edge.geo.as_deref().and_then(|g| g.country.as_deref());
    for rule in plan.access.iter().filter(|r| r.paths.matches(path)) {
        let in_country = |list: &[String]| country.is_some_and(|c| list.iter().any(|x| x == c));
        let denied = rule.deny_ips.as_ref().is_some_and(|n| n.contains(ip)) || in_country(&rule.deny_countries);
        let restricted = rule.allow_ips.is_some() || !rule.allow_countries.is_empty();
        let allowed = rule.allow_ips.as_ref().is_some_and(|n| n.contains(ip)) || in_country(&rule.allow_countries);
        let refuse = denied || (restricted && !allowed);
        if rule.shadow {
            ctx.notes.shadow.push((Policy::Access, refuse));
            continue;
        }
        if refuse {
            ctx.notes.outcome = Some(Outcome::Rejected);
            let reason = rule.status.canonical_reason().unwrap_or("Forbidden");
            return Flow::Answer(status_response(rule.status, reason));
        }
    }
    Flow::Continue
}

/// Whether the request arrived over HTTPS (here, or at a trusted proxy that says so).
fn arrived_secure(plan: &Plan, ctx: &RequestCtx) -> bool {
    ctx.request.edge.secure
        || (plan.trusted.contains(ctx.peer)
            && ctx
                .request
                .header("x-forwarded-proto")
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

/// Redirects plain HTTP to HTTPS; notes HSTS for an HTTPS request.
pub fn https(plan: &Plan, ctx: &mut RequestCtx) -> Flow {
    let Some(rule) = &plan.https_only else {
        return Flow::Continue;
    };
    if arrived_secure(plan, ctx) {
        if let Some(v) = &rule.hsts {
            ctx.notes.always.push((STRICT_TRANSPORT_SECURITY, v.clone()));
        }
        return Flow::Continue;
    }
    // The canonical phase settled the host (and refused a bad one).
    let (host, port) = ctx.request.host_port();
    if host.is_empty() {
        return Flow::Answer(status_response(StatusCode::BAD_REQUEST, "Bad Request"));
    }
    let authority = match port {
        Some(p) if p != 80 => format!("{host}:{p}"),
        _ => host.to_owned(),
    };
    let target = ctx.request.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("https://{authority}{target}");
    ctx.notes.outcome = Some(Outcome::Redirect);
    match crate::http::redirect(&location, rule.status) {
        Ok(r) => Flow::Answer(from_core(r)),
        Err(_) => Flow::Answer(status_response(StatusCode::BAD_REQUEST, "Bad Request")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{ctx_with, plan, with_country};

    fn answered(f: Flow) -> Option<u16> {
        match f {
            Flow::Answer(r) => Some(r.status().as_u16()),
            Flow::Continue => None,
        }
    }

    /// What the access check answers `path` from `ip`, located in `country`.
    fn access_at(p: &Plan, path: &str, ip: &str, country: Option<&str>) -> Option<u16> {
        let mut c = ctx_with(path, &[]);
        c.request.edge.client_ip = Some(ip.parse().unwrap());
        if let Some(cc) = country {
            c = with_country(c, cc);
        }
        answered(check(p, &mut c))
    }

    #[test]
    fn deny_then_allow_lists() {
        let p = plan(serde_json::json!({"access": [
            {"paths": ["/admin/*"], "allow_ips": ["10.0.0.0/8", "2001:db8::/32"], "allow_countries": ["de"]},
            {"deny_ips": ["203.0.113.0/24"], "deny_countries": ["KP"], "status": 451},
        ]}));
        let at = |path: &str, ip: &str, country: Option<&str>| access_at(&p, path, ip, country);
        assert_eq!(at("/admin/x", "10.1.2.3", None), None);
        assert_eq!(at("/admin/x", "2001:db8::7", None), None);
        assert_eq!(at("/admin/x", "192.0.2.1", Some("DE")), None);
        assert_eq!(at("/admin/x", "192.0.2.1", Some("FR")), Some(403));
        assert_eq!(at("/admin/x", "192.0.2.1", None), Some(403));
        assert_eq!(at("/public", "192.0.2.1", None), None);
        assert_eq!(at("/public", "203.0.113.9", None), Some(451));
        assert_eq!(at("/public", "192.0.2.1", Some("KP")), Some(451));
        // The deny rule covers /admin too: an allowed network does not lift a later denial.
        assert_eq!(at("/admin/x", "10.1.2.3", Some("KP")), Some(451));
        // A list of either kind alone restricts its paths.
        let p = plan(serde_json::json!({"access": [
            {"paths": ["/ip/*"], "allow_ips": ["10.0.0.0/8"]},
            {"paths": ["/cc/*"], "allow_countries": ["DE"]},
        ]}));
        let at = |path: &str, ip: &str, country: Option<&str>| access_at(&p, path, ip, country);
        assert_eq!(at("/ip/x", "10.1.2.3", None), None);
        assert_eq!(at("/ip/x", "192.0.2.1", Some("DE")), Some(403));
        assert_eq!(at("/cc/x", "192.0.2.1", Some("DE")), None);
        assert_eq!(at("/cc/x", "10.1.2.3", Some("FR")), Some(403));
        assert_eq!(at("/cc/x", "10.1.2.3", None), Some(403));
    }

    #[test]
    fn plain_http_is_redirected_and_https_gets_hsts() {
        let p = plan(serde_json::json!({"https_only": {"hsts_max_age": 31536000, "include_subdomains": true}}));
        let mut c = ctx_with("/a?b=1", &[("host", "shop.example:8080")]);
        match https(&p, &mut c) {
            Flow::Answer(r) => {
                assert_eq!(r.status(), 308);
                assert_eq!(r.headers()["location"], "https://shop.example:8080/a?b=1");
            }
            Flow::Continue => panic!("not redirected"),
        }
        // Port 80 is plain HTTP's: the redirect goes to HTTPS's default port.
        let mut c = ctx_with("/a", &[("host", "shop.example:80")]);
        match https(&p, &mut c) {
            Flow::Answer(r) => assert_eq!(r.headers()["location"], "https://shop.example/a"),
            Flow::Continue => panic!("not redirected"),
        }
        let mut c = ctx_with("/a", &[("host", "shop.example")]);
        c.request.edge.secure = true;
        assert!(matches!(https(&p, &mut c), Flow::Continue));
        assert_eq!(c.notes.always[0].1, "max-age=31536000; includeSubDomains");
        // X-Forwarded-Proto counts only from a trusted proxy.
        let p = plan(serde_json::json!({"https_only": {}, "trusted_proxies": ["127.0.0.0/8"]}));
        let mut c = ctx_with("/a", &[("host", "s.example"), ("x-forwarded-proto", "https")]);
        c.peer = "127.0.0.1".parse().unwrap();
        assert!(matches!(https(&p, &mut c), Flow::Continue));
        c.peer = "192.0.2.1".parse().unwrap();
        assert_eq!(answered(https(&p, &mut c)), Some(308));
    }
}
