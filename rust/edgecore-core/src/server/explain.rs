//! Explain: why a request was answered the way it was. A request with `X-Edge-Explain: 1` (or
//! `?__explain` for a JSON body instead of the answer), from a client the plan lets explain (dev
//! mode: anyone; else the `explain_allow` networks), gets the phases it went through: what each
//! decided, which rule matched, and how long it took.
//!
//! The pipeline records a step after each phase only while a [`Trace`] is on the request's
//! notes: a request that does not ask costs one `is_some` per phase. The explain field and
//! query parameter never reach the origin nor the cache key.

use std::time::Instant;

use http::header::HeaderName;

use super::body::Body;
use super::ctx::{CompressChoice, Flow, Notes, RequestCtx};
use super::metrics::Outcome;
use super::plan::Plan;
use super::trace::Trace;
use crate::http::Request;

/// The request field that asks for a trace.
pub const ASK: HeaderName = HeaderName::from_static("x-edge-explain");
/// The query parameter that asks for the trace as the response's body.
pub const QUERY: &str = "__explain";

/// Whether the request asks for a trace (the field set to anything but `0`, or the query
/// parameter), and from a client allowed to; removes both from the request either way. Called
/// once the client IP is known, only when the plan allows explaining at all.
pub fn start(plan: &Plan, ctx: &mut RequestCtx, since: Instant) {
    let field = ctx.request.headers.as_map_mut().remove(ASK);
    let asked_field = field.is_some_and(|v| v.as_bytes() != b"0");
    let asked_query = strip_query(&mut ctx.request);
    if !(asked_field || asked_query) {
        return;
    }
    let ip = ctx.request.edge.client_ip.unwrap_or(ctx.peer);
    if !plan.request.explain.as_ref().is_some_and(|allow| allow.contains(ip)) {
        return;
    }
    let mut trace = Trace::new(asked_query, since);
    trace.mark("canonical", format!("{} {}", ctx.request.method, ctx.request.uri), None);
    let country = ctx.request.edge.geo.as_ref().and_then(|g| g.country.as_deref());
    trace.mark("client", format!("ip {ip} country {}", country.unwrap_or("-")), None);
    ctx.notes.trace = Some(Box::new(trace));
}

/// Removes `__explain` from the request's query; whether it was there.
fn strip_query(request: &mut Request) -> bool {
    let Some(q) = request.uri.query() else { return false };
    let is_ask = |p: &&str| *p == QUERY || p.strip_prefix(QUERY).is_some_and(|r| r.starts_with('='));
    if !q.split('&').any(|p| is_ask(&p)) {
        return false;
    }
    let kept: Vec<&str> = q.split('&').filter(|p| !is_ask(p)).collect();
    let mut pq = request.uri.path().to_owned();
    if !kept.is_empty() {
        pq.push('?');
        pq.push_str(&kept.join("&"));
    }
    let mut parts = request.uri.clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    if let Ok(uri) = http::Uri::from_parts(parts) {
        request.uri = uri;
    }
    true
}

/// The response with its trace: in `x-edge-explain`, or as a JSON body (`?__explain`; the
/// response's own body is dropped, its status and fields listed in the document).
pub fn finish(mut trace: Trace, outcome: Outcome, mut resp: http::Response<Body>) -> http::Response<Body> {
    trace.mark(
        "response",
        format!("{} {}", resp.status().as_u16(), outcome.as_str()),
        None,
    );
    if !trace.as_body {
        resp.headers_mut().insert(ASK, trace.header());
        return resp;
    }
    let mut out = http::Response::new(Body::full(trace.body(&resp)));
    out.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    out.headers_mut()
        .insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    out
}

/// What a phase that may answer decided.
pub fn flow(f: &Flow) -> String {
    match f {
        Flow::Continue => "continue".to_owned(),
        Flow::Answer(r) => format!("answered {}", r.status().as_u16()),
    }
}

/// A phase's decision as the trace shows it: `continue` where none of the phase's rules
/// applies reads `no rule`.
pub fn decided(phase: &str, decision: impl Into<String>, rule: Option<usize>) -> String {
    let d = decision.into();
    let ruled = [
        "access",
        "cors",
        "redirect",
        "rewrite",
        "jwt",
        "rate_limit",
        "headers",
        "middleware",
    ];
    match rule.is_none() && (d == "continue" || d == "checked") && ruled.contains(&phase) {
        true => "no rule".to_owned(),
        false => d,
    }
}

/// The variants the request was assigned.
pub fn variants(request: &Request) -> String {
    let v: Vec<String> = request.edge.variants.iter().map(|(e, v)| format!("{e}:{v}")).collect();
    match v.is_empty() {
        true => "none".to_owned(),
        false => v.join(","),
    }
}

/// The coding compression settled on.
pub fn coding(choice: Option<CompressChoice>) -> &'static str {
    match choice {
        None => "no rule",
        Some(CompressChoice { coding: None, .. }) => "identity",
        Some(CompressChoice { coding: Some(c), .. }) => c.token(),
    }
}

/// What answered: the cache's verdict, or what produced the response.
pub fn answered_by(cache_rule: Option<usize>, notes: &Notes) -> String {
    let by = notes.outcome.map(|o| o.as_str());
    match (cache_rule, notes.cache_status) {
        (Some(_), Some(s)) => {
            let s = s.as_header();
            let s = s.to_str().unwrap_or("?").to_ascii_lowercase();
            match by {
                Some(by) => format!("{s} ({by})"),
                None => s,
            }
        }
        _ => by.unwrap_or("error").to_owned(),
    }
}

/// The first of `phase`'s rules that applies to `request` (by its paths, and its conditions
/// where the rule has them).
pub fn rule(plan: &Plan, phase: &str, request: &Request) -> Option<usize> {
    let path = request.path();
    match phase {
        "access" => plan.access.iter().position(|r| r.paths.matches(path)),
        "cors" => plan.cors.iter().position(|r| r.paths.matches(path)),
        "redirect" => plan
            .redirects
            .iter()
            .position(|r| r.paths.matches(path) && r.when.hold(request)),
        "rewrite" => plan
            .rewrites
            .iter()
            .position(|r| r.paths.matches(path) && r.when.hold(request)),
        "jwt" => plan.jwt.iter().position(|r| r.paths.matches(path)),
        "rate_limit" => plan.rate_limits.iter().position(|r| r.paths.matches(path)),
        "ab" => plan.ab_tests.iter().position(|r| r.paths.matches(path)),
        "headers" => plan
            .headers
            .iter()
            .position(|r| r.paths.matches(path) && r.when.hold(request)),
        "middleware" => plan.middleware.iter().position(|r| r.matcher.matches(path)),
        "compress" => plan.compress.iter().position(|r| r.paths.matches(path)),
        "cache" => plan
            .cache
            .iter()
            .position(|r| r.paths.matches(path) && r.when.hold(request)),
        _ => None,
    }
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
