//! The request pipeline: the phases of [`super::phases`] called in order. The order, stated
//! once (each phase only when configured and matched; one that answers ends the pipeline):
//!
//! 1. [`front::check`]: the head's limits and framing (414, 400, 431, 413);
//! 2. [`canonical::request`]: one canonical target and Host (400, 405, 421);
//! 3. [`client::identify`]: client IP (trusted proxies), dev overrides, geo; then
//!    [`request_id::assign`]: the request ID and trace context; [`access::check`]: IP and
//!    country lists (403); [`access::https`]: plain HTTP redirected to HTTPS; then
//!    [`owned::strip`]: the headers the edge owns leave the client's request;
//! 4. [`bots::check`]: 403 for a blocked bot, or the `x-edge-bot` tag; then [`cors::apply`]:
//!    a preflight answered here (204), CORS fields noted for the response;
//! 5. [`routing::redirect`], then [`routing::rewrite`];
//! 6. [`jwt::verify`]: 401 without a valid token;
//! 7. [`rate_limit::check`]: 429 past a limit;
//! 8. [`ab::assign`]: the variant of each experiment;
//! 9. [`headers::render`]: request templates, and response templates for later;
//! 10. [`python::middleware_phase`]: Python middleware on the paths it matches (before the
//!     cache: a cached page is never served past the middleware that guards it);
//! 11. [`compress::negotiate`]: the coding for the client, stated as its `Accept-Encoding`;
//! 12. on a cache rule's paths [`cache::look`] (a fresh hit, answered in place), then
//!     [`cache::serve`]; else [`produce`]: a Python route, or the origin;
//! 13. [`compress::apply`] (a cache fill compressed before it was stored), then the response
//!     templates, on what the cache, a handler or the origin answered.
//!
//! What applies to every response (cookies, `RateLimit-*`, `X-Cache`, metrics, the access log,
//! an explain trace) is done by [`super::service`] from the context's notes, whatever answered.
//! A request that asked for a trace ([`explain`]) leaves a step in it after each phase.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;

use super::body::Body;
use super::ctx::{BodyState, Flow, Notes, RequestCtx};
use super::explain;
use super::phases::produce::produce;
use super::phases::{
    ab, access, bots, cache, canonical, client, compress, cors, front, headers, jwt, owned, python, rate_limit,
    request_id, routing,
};
use super::state::{Active, ServerState};
use crate::error::Error;
use crate::http::{Headers, Request};

/// Runs the pipeline for one request; returns its response (or the error that answers it) and
/// the notes that shape every response.
pub async fn run(
    state: &Arc<ServerState>,
    active: &Arc<Active>,
    mut req: http::Request<Incoming>,
    peer: SocketAddr,
    secure: bool,
) -> (Result<http::Response<Body>, Error>, Notes) {
    // A WebSocket upgrade: the client's connection is claimed now, before the head is taken
    // apart. hyper attaches the upgrade handle only to HTTP/1.1 requests with an `Upgrade`
    // field, so every other request pays one empty-extensions check.
    let mut upgrade = (req.extensions().get::<hyper::upgrade::OnUpgrade>().is_some()
        && req.method() == http::Method::GET
        && super::tunnel::wants_websocket(req.headers()))
    .then(|| hyper::upgrade::on(&mut req));
    // RFC 8441: an HTTP/2 extended CONNECT for `websocket` is, to every policy and to the
    // origin, the HTTP/1.1 upgrade it stands for (a GET with the upgrade fields).
    let extended = req.method() == http::Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    let extended = extended.then(|| {
        upgrade = Some(hyper::upgrade::on(&mut req));
        super::tunnel::as_http1_upgrade(&mut req)
    });
    let (parts, incoming) = req.into_parts();
    if let Err(e) = front::check(&active.plan, &parts) {
        return (Err(e), Notes::default());
    }
    let request = Request {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: Headers::Map(parts.headers),
        body: Bytes::new(),
        edge: Default::default(),
    };
    let peer = crate::geo::client_ip::normalize(peer.ip());
    let mut ctx = RequestCtx::new(request, BodyState::Unread(incoming), peer);
    ctx.request.edge.secure = secure;
    ctx.upgrade = upgrade;
    ctx.extended_connect = extended;
    let result = run_phases(state, active, &mut ctx).await;
    (result, ctx.notes)
}

/// A step for the explain trace, after phase `$phase` (one `is_some` when there is none).
macro_rules! step {
    ($plan:expr, $ctx:expr, $phase:literal, $decision:expr) => {
        if let Some(t) = $ctx.notes.trace.as_deref_mut() {
            let rule = explain::rule($plan, $phase, &$ctx.request);
            t.mark($phase, explain::decided($phase, $decision, rule), rule);
        }
    };
}

/// A phase that may answer: its step, then an answer ends the pipeline.
macro_rules! answer {
    ($plan:expr, $ctx:expr, $phase:literal, $flow:expr) => {
        let flow = $flow;
        step!($plan, $ctx, $phase, explain::flow(&flow));
        if let Flow::Answer(r) = flow {
            return Ok(r);
        }
    };
}

/// The phases after the front door, in the order of this module's documentation. While the
/// request carries an explain trace ([`explain`]), each phase leaves a step in it.
pub(crate) async fn run_phases(
    state: &Arc<ServerState>,
    active: &Arc<Active>,
    ctx: &mut RequestCtx,
) -> Result<http::Response<Body>, Error> {
    let plan = &active.plan;
    let since = plan.request.explain.is_some().then(std::time::Instant::now);
    canonical::request(plan, ctx)?;
    client::identify(plan, ctx);
    if let Some(since) = since {
        explain::start(plan, ctx, since);
    }
    // A phase whose policy is not configured is not called (nor its future made).
    if plan.request_ids.is_some() {
        request_id::assign(state, plan, ctx);
        step!(plan, ctx, "request_id", "assigned");
    }
    if !plan.access.is_empty() {
        answer!(plan, ctx, "access", access::check(plan, ctx));
    }
    if plan.https_only.is_some() {
        answer!(plan, ctx, "https_only", access::https(plan, ctx));
    }
    owned::strip(plan, ctx)?;
    if plan.bots.is_some() {
        answer!(plan, ctx, "bots", bots::check(plan, ctx));
    }
    if !plan.cors.is_empty() {
        answer!(plan, ctx, "cors", cors::apply(plan, ctx));
    }
    if !plan.redirects.is_empty() {
        answer!(plan, ctx, "redirect", routing::redirect(plan, ctx)?);
    }
    if !plan.rewrites.is_empty() {
        step!(plan, ctx, "rewrite", "checked");
        routing::rewrite(plan, ctx)?;
    }
    if !plan.jwt.is_empty() {
        answer!(plan, ctx, "jwt", jwt::verify(state, plan, ctx).await);
    }
    if !plan.rate_limits.is_empty() {
        answer!(plan, ctx, "rate_limit", rate_limit::check(state, plan, ctx).await?);
    }
    if !plan.ab_tests.is_empty() {
        ab::assign(state, plan, ctx)?;
        step!(plan, ctx, "ab", explain::variants(&ctx.request));
    }
    if !plan.headers.is_empty() {
        headers::render(plan, ctx);
        step!(plan, ctx, "headers", "rendered");
    }
    if !plan.middleware.is_empty() && python::middleware_wanted(plan, ctx.request.path()) {
        // Boxed: the Python path's future stays off the proxied request's.
        let flow = Box::pin(python::middleware_phase(state, plan, ctx)).await?;
        answer!(plan, ctx, "middleware", flow);
    }
    if !plan.compress.is_empty() {
        compress::negotiate(plan, ctx);
        step!(plan, ctx, "compress", explain::coding(ctx.notes.compress));
    }
    respond(state, active, ctx).await
}

/// The answering phases, once every policy let the request through: a WebSocket upgrade, the
/// cache or what produces the response, then compression and the response templates.
async fn respond(
    state: &Arc<ServerState>,
    active: &Arc<Active>,
    ctx: &mut RequestCtx,
) -> Result<http::Response<Body>, Error> {
    let plan = &active.plan;
    if ctx.upgrade.is_some() && !python::wanted(plan, ctx.request.path()) {
        // Boxed: the rare path's future stays off every request's.
        let extended = ctx.extended_connect.take();
        let (mut resp, outcome) = Box::pin(upgrade(state, active, ctx)).await?;
        if let Some(key) = extended {
            super::tunnel::as_http2_answer(&mut resp, &key)?;
        }
        ctx.notes.outcome = Some(outcome);
        return Ok(resp);
    }
    let compressing = ctx.notes.compress.map(|c| (c, ctx.request.method.clone()));
    // An upgrade request is never served from or stored in the cache.
    let cache_rule = match plan.cache.is_empty() || ctx.upgrade.is_some() {
        true => None,
        false => cache::rule_for(plan, &ctx.request),
    };
    if let Some(t) = ctx.notes.trace.as_deref_mut() {
        t.mark("ready", "answering", None);
    }
    let mut resp = match cache_rule {
        // Boxed: rustc lays this future and `produce`'s out side by side, not overlapped, so
        // inline both would make every request's future (moved on each request) carry both.
        // A fresh hit is answered in place; only the rest makes the (boxed) future.
        Some(i) => match cache::look(state, active, i, ctx) {
            cache::Look::Hit(hit) => hit,
            cache::Look::Pending(pending) => Box::pin(cache::serve(state, active, i, ctx, pending)).await?,
        },
        // The common path: straight to the origin, the request taken out of the context
        // field by field (not boxed: a proxied request saves an allocation).
        None if plan.routes.is_empty() || !python::wanted(plan, ctx.request.path()) => {
            let (resp, outcome) = super::phases::proxy::forward_ctx(state, active, ctx).await?;
            ctx.notes.outcome = Some(outcome);
            resp
        }
        // A Python route may answer. Not boxed: a 3.7 KB allocation per request cost a `def`
        // handler ~3% more CPU (compare_builds --scenario hello), and the larger future of
        // every request cost no measurable instructions.
        None => {
            let (request, body, prior_xff) = ctx.take_exchange();
            let (resp, outcome) = produce(state, active, request, body, prior_xff).await?;
            ctx.notes.outcome = Some(outcome);
            resp
        }
    };
    if ctx.notes.trace.is_some() {
        // The request was handed on: the cache rule is the one found above.
        let by = explain::answered_by(cache_rule, &ctx.notes);
        let phase = if cache_rule.is_some() { "cache" } else { "produce" };
        if let Some(t) = ctx.notes.trace.as_deref_mut() {
            t.mark(phase, by, cache_rule);
        }
    }
    // A stored copy was compressed (or not) and given its `Vary` before it was stored
    // (`compress::apply_whole`), under this plan's rules (a reload starts new caches): applying
    // them again would change nothing (a test holds it so), at a few hundred instructions a hit.
    let stored = ctx.notes.cache_status.is_some_and(|s| s.from_store());
    if let Some((choice, method)) = compressing.filter(|_| !stored) {
        resp = compress::apply(plan, choice, &method, resp);
    }
    for (name, v) in ctx.notes.response_headers.drain(..) {
        resp.headers_mut().insert(name, v);
    }
    Ok(resp)
}

/// A WebSocket upgrade, proxied to the origin after every policy ran.
async fn upgrade(
    state: &Arc<ServerState>,
    active: &Arc<Active>,
    ctx: &mut RequestCtx,
) -> Result<(http::Response<Body>, super::metrics::Outcome), Error> {
    let client = ctx.upgrade.take().expect("an upgrade request");
    let (request, _body, prior_xff) = ctx.take_exchange();
    super::phases::proxy::upgrade(state, active, request, client, prior_xff).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::metrics::Outcome;
    use crate::server::phases::testing::{block_on, ctx_with, hs256_token, plan_with, state, FakeOrigin};
    use crate::server::spec::Objects;

    /// A plan with every policy that answers on `/api/*`: bots (block), JWT, a limit of one
    /// request a minute, and a cache rule, in front of `origin`.
    fn guarded(origin: &str) -> crate::server::plan::Plan {
        let full = crate::server::phases::testing::plan_with_jwt(serde_json::json!({}));
        let limited = crate::server::phases::testing::plan_with_limit("ip", 1);
        let bots = crate::server::phases::testing::plan_with_bots("block", &[]);
        let objects = Objects {
            verifiers: vec![full.jwt[0].verifier.clone()],
            limiters: vec![limited.rate_limits[0].limiter.clone()],
            bots: Some(bots.bots.as_ref().unwrap().detector.clone()),
            geo: Vec::new(),
        };
        plan_with(
            serde_json::json!({
                "origin": origin,
                "bots": {"action": "block"},
                "jwt": [{"paths": ["/api/*"], "verifier": 0}],
                "rate_limits": [{"paths": ["/api/*"], "limiter": 0}],
                "cache": [{"paths": ["/api/*"], "ttl": 60.0}],
            }),
            objects,
        )
    }

    #[test]
    fn the_phases_answer_in_order() {
        block_on(async {
            let origin = FakeOrigin::start("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            let s = state(guarded(&origin.url()), None);
            let active = s.active.load_full();
            let token = format!(
                "Bearer {}",
                hs256_token(&serde_json::json!({"sub": "a", "exp": 4_000_000_000u64}))
            );
            let status = |r: Result<http::Response<Body>, Error>| r.map(|r| r.status().as_u16()).unwrap();
            // A bot without a token: the bot check runs before JWT.
            let mut c = ctx_with("/api/x", &[("user-agent", "crawler")]);
            assert_eq!(status(run_phases(&s, &active, &mut c).await), 403);
            // No token: JWT answers before the limit is spent.
            let mut c = ctx_with("/api/x", &[]);
            assert_eq!(status(run_phases(&s, &active, &mut c).await), 401);
            // A valid token: the origin answers (a miss), through the limit.
            let mut c = ctx_with("/api/x", &[("authorization", &token)]);
            assert_eq!(status(run_phases(&s, &active, &mut c).await), 200);
            assert_eq!(
                c.notes.cache_status.map(|s| s.outcome()),
                Some(Some(Outcome::CacheMiss))
            );
            assert!(origin.received().await.starts_with("GET /api/x "));
            // The limit (one a minute) answers before the cache would.
            let mut c = ctx_with("/api/x", &[("authorization", &token)]);
            assert_eq!(status(run_phases(&s, &active, &mut c).await), 429);
            assert_eq!(c.notes.outcome, Some(Outcome::RateLimited));
        });
    }

    #[test]
    fn a_stored_answer_is_a_hit_without_the_origin() {
        block_on(async {
            let origin = FakeOrigin::start("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            let spec = serde_json::json!({"origin": origin.url(), "cache": [{"paths": ["/s/*"], "ttl": 60.0}]});
            let s = state(crate::server::phases::testing::plan(spec), None);
            let active = s.active.load_full();
            for want in [Outcome::CacheMiss, Outcome::CacheHit, Outcome::CacheHit] {
                let mut c = ctx_with("/s/a.css", &[]);
                let r = run_phases(&s, &active, &mut c).await.unwrap();
                assert_eq!(r.status(), 200);
                assert_eq!(c.notes.cache_status.and_then(|s| s.outcome()), Some(want));
            }
            // The fake origin serves one connection once: the hits never reached it.
            assert!(origin.received().await.starts_with("GET /s/a.css "));
        });
    }
}

#[cfg(test)]
mod sizes {
    use crate::server::phases::testing::{ctx_with, plan, state};

    /// What every request's future holds: the proxied path and a Python route inline (no
    /// allocation), the rare paths (a cache fill or revalidation, an upgrade, the middleware)
    /// boxed. A change that makes a rare path's future part of every request's fails here.
    #[test]
    fn the_rare_paths_futures_stay_off_every_request() {
        let s = state(plan(serde_json::json!({})), None);
        let active = s.active.load_full();
        let mut c = ctx_with("/", &[]);
        let forward = std::mem::size_of_val(&crate::server::phases::proxy::forward_ctx(&s, &active, &mut c));
        let (request, body, prior_xff) = c.take_exchange();
        let produce = std::mem::size_of_val(&super::produce(&s, &active, request, body, prior_xff));
        let respond = std::mem::size_of_val(&super::respond(&s, &active, &mut c));
        let upgrade = std::mem::size_of_val(&super::upgrade(&s, &active, &mut c));
        // Checked by inlining the upgrade's future: respond grew to 4512 bytes.
        assert!(upgrade > 1024, "upgrade {upgrade} bytes");
        assert!(
            respond < forward.max(produce) + 256,
            "respond {respond} bytes (forward {forward}, produce {produce}, upgrade {upgrade})"
        );
    }
}
