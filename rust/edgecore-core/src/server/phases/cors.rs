//! CORS at the edge (the Fetch standard's CORS protocol): on a rule's paths, a preflight
//! (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered here, 204 with the
//! allowed methods, headers and max-age, without an origin trip; a preflight for an origin,
//! method or header the rule does not allow gets 403 (and no CORS fields, so the browser
//! refuses). Other requests from an allowed origin get `Access-Control-Allow-Origin` (and
//! `-Credentials`, `-Expose-Headers`) on whatever answers them, rejections included, so a
//! browser can read a 401 or 429. Every response on a rule's paths says `Vary: Origin`.
//!
//! Runs before redirects, JWT and limits: a preflight carries no credentials.

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::server::body::Body;
use crate::server::ctx::{Flow, RequestCtx};
use crate::server::metrics::Outcome;
use crate::server::plan::edge::{CorsOrigins, CorsRule};
use crate::server::plan::Plan;
use crate::server::respond::status_response;

const ORIGIN_VALUE: HeaderValue = HeaderValue::from_static("Origin");
const TRUE: HeaderValue = HeaderValue::from_static("true");
const ANY: HeaderValue = HeaderValue::from_static("*");

/// Answers a preflight, or notes the CORS fields for the response.
pub fn apply(plan: &Plan, ctx: &mut RequestCtx) -> Flow {
    let path = ctx.request.path();
    let Some(rule) = plan.cors.iter().find(|r| r.paths.matches(path)) else {
        return Flow::Continue;
    };
    ctx.notes.always.push((header::VARY, ORIGIN_VALUE));
    // The client's value itself (a reference count, no copy), echoed back when allowed.
    let Some(origin) = ctx.request.headers.as_map_mut().get(header::ORIGIN).cloned() else {
        return Flow::Continue;
    };
    let allowed = origin.to_str().is_ok_and(|o| rule.origins.allows(o));
    let preflight = ctx.request.method == Method::OPTIONS
        && ctx
            .request
            .header(&http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .is_some();
    if preflight {
        ctx.notes.outcome = Some(Outcome::Cors);
        return Flow::Answer(preflight_response(rule, ctx, origin, allowed));
    }
    if allowed {
        allow_origin(rule, origin, &mut ctx.notes.always);
        if let Some(e) = &rule.expose {
            ctx.notes
                .always
                .push((header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone()));
        }
    }
    Flow::Continue
}

fn allow_origin(rule: &CorsRule, origin: HeaderValue, out: &mut Vec<(HeaderName, HeaderValue)>) {
    let value = match (&rule.origins, rule.credentials) {
        (CorsOrigins::Any, false) => ANY,
        _ => origin,
    };
    out.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, value));
    if rule.credentials {
        out.push((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE));
    }
}

fn refused(why: &str) -> http::Response<Body> {
    status_response(StatusCode::FORBIDDEN, &format!("CORS preflight refused: {why}"))
}

fn preflight_response(rule: &CorsRule, ctx: &RequestCtx, origin: HeaderValue, allowed: bool) -> http::Response<Body> {
    if !allowed {
        return refused("origin not allowed");
    }
    let req = &ctx.request;
    let method_ok = req
        .header(&http::header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| Method::from_bytes(m.trim().as_bytes()).ok())
        .is_some_and(|m| rule.methods.contains(&m));
    if !method_ok {
        return refused("method not allowed");
    }
    let asked: Vec<String> = req
        .headers
        .get_all("access-control-request-headers")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    if let Some(list) = &rule.headers {
        if let Some(bad) = asked.iter().find(|h| !list.contains(h)) {
            return refused(&format!("header {bad} not allowed"));
        }
    }
    let mut r = http::Response::new(Body::full(bytes::Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    let mut fields = Vec::new();
    allow_origin(rule, origin, &mut fields);
    h.extend(fields);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, rule.methods_value.clone());
    if !asked.is_empty() {
        // The configured list, or (headers="*") what the preflight asked for.
        let value = match &rule.headers {
            Some(list) => list.join(", "),
            None => asked.join(", "),
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
    }
    h.insert(header::ACCESS_CONTROL_MAX_AGE, rule.max_age.clone());
    h.append(
        header::VARY,
        HeaderValue::from_static("Access-Control-Request-Method, Access-Control-Request-Headers"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{ctx_with, plan};

    fn rules() -> Plan {
        plan(serde_json::json!({"cors": [{
            "paths": ["/api/*"], "origins": ["https://app.example", "https://*.shop.example"],
            "methods": ["GET", "POST"], "headers": ["content-type", "x-token"], "expose": ["x-total"],
            "credentials": true, "max_age": 600,
        }]}))
    }

    fn preflight(origin: &str, method: &str, headers: &str) -> http::Response<Body> {
        let mut c = ctx_with(
            "/api/x",
            &[
                ("origin", origin),
                ("access-control-request-method", method),
                ("access-control-request-headers", headers),
            ],
        );
        c.request.method = Method::OPTIONS;
        match apply(&rules(), &mut c) {
            Flow::Answer(r) => r,
            Flow::Continue => panic!("a preflight goes on"),
        }
    }

    #[test]
    fn preflights_are_answered_here() {
        let r = preflight("https://app.example", "POST", "Content-Type, X-Token");
        assert_eq!(r.status(), 204);
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.example");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-allow-methods"], "GET, POST");
        assert_eq!(h["access-control-allow-headers"], "content-type, x-token");
        assert_eq!(h["access-control-max-age"], "600");
        assert_eq!(preflight("https://a.shop.example", "GET", "").status(), 204);
        assert_eq!(preflight("https://evil.example", "GET", "").status(), 403);
        assert_eq!(preflight("https://shop.example", "GET", "").status(), 403);
        assert_eq!(preflight("https://app.example", "DELETE", "").status(), 403);
        assert_eq!(preflight("https://app.example", "GET", "x-other").status(), 403);
        assert!(preflight("https://evil.example", "GET", "")
            .headers()
            .get("access-control-allow-origin")
            .is_none());
    }

    #[test]
    fn simple_requests_get_the_fields_for_whatever_answers() {
        let mut c = ctx_with("/api/x", &[("origin", "https://app.example")]);
        assert!(matches!(apply(&rules(), &mut c), Flow::Continue));
        let names: Vec<&str> = c.notes.always.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "vary",
                "access-control-allow-origin",
                "access-control-allow-credentials",
                "access-control-expose-headers"
            ]
        );
        let mut c = ctx_with("/api/x", &[("origin", "https://evil.example")]);
        assert!(matches!(apply(&rules(), &mut c), Flow::Continue));
        assert_eq!(c.notes.always.len(), 1, "only Vary: Origin");
        let mut c = ctx_with("/other", &[("origin", "https://app.example")]);
        assert!(matches!(apply(&rules(), &mut c), Flow::Continue));
        assert!(c.notes.always.is_empty());
    }
}
