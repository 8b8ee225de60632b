//! Proxy: the request goes to the origin chosen for this client (the first `origin_for` rule
//! whose paths and conditions match, else the default origin; 404 without one),
//! streaming its body up unless a phase already read it.

use std::net::IpAddr;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Limited;

use crate::error::Result;
use crate::http::Request;
use crate::server::body::Body;
use crate::server::ctx::{BodyState, RequestCtx};
use crate::server::metrics::Outcome;
use crate::server::plan::Plan;
use crate::server::respond::status_response;
use crate::server::state::Active;
use crate::server::state::ServerState;
use crate::server::upstream::{Balance, HashKey, OriginSet, SetHealth};

/// The origin for this client: the first matching `origin_for` rule, else the default.
pub fn choose_origin<'p>(plan: &'p Plan, request: &Request) -> Option<&'p OriginSet> {
    let path = request.path();
    plan.origins
        .iter()
        .find(|rule| rule.paths.matches(path) && rule.when.hold(request))
        .map(|rule| rule.origin)
        .or(plan.origin)
        .map(|id| &plan.upstreams[id])
}

/// Proxies a WebSocket upgrade to the request's origin: the origin's 101 comes back with the
/// tunnel for the connection's task to run (see [`crate::server::tunnel`]); any other answer
/// comes back as it is. 404 without an origin. An open tunnel counts as a request in flight for
/// the set's circuit breaker until it closes: over `max_requests` (or `max_pending` while the
/// origin is being reached), 503 at once, as for any request.
pub async fn upgrade(
    state: &ServerState,
    active: &Active,
    request: Request,
    client: hyper::upgrade::OnUpgrade,
    prior_xff: Option<String>,
) -> Result<(http::Response<Body>, Outcome)> {
    let Some(Route { set, key, ip, scheme }) = route(&active.plan, &request) else {
        return Ok(unrouted(&active.plan, &request));
    };
    let health = &active.health[set.id];
    let mut busy = match health.admit(set) {
        Ok(busy) => busy,
        Err(_) => return Ok(overflow()),
    };
    let (at, origin) = health.pick(set, None, key);
    if let Some(b) = &mut busy {
        b.assign(at);
    }
    let protocol = request
        .headers
        .get(&http::header::UPGRADE)
        .and_then(|v| http::HeaderValue::from_bytes(v).ok())
        .unwrap_or(http::HeaderValue::from_static("websocket"));
    let parts = request_parts(request);
    let pool = &active.pools[origin.index];
    let started = std::time::Instant::now();
    let Ok(waiting) = health.wait(set) else {
        return Ok(overflow());
    };
    let upgraded = state
        .upstreams
        .upgrade(origin, pool, parts, ip, scheme, prior_xff, protocol)
        .await;
    drop(waiting);
    state.metrics.origin(started.elapsed(), upgraded.is_err());
    health.report(
        set,
        at,
        matches!(&upgraded, Ok((r, _)) if !r.status().is_server_error()),
    );
    let (resp, origin_io) = upgraded?;
    let mut resp = resp.map(Body::full);
    if let Some(io) = origin_io {
        let tunnel = crate::server::tunnel::Tunnel::new(client, io, busy);
        resp.extensions_mut()
            .insert(crate::server::tunnel::PendingTunnel(std::sync::Arc::new(
                parking_lot::Mutex::new(Some(tunnel)),
            )));
        return Ok((resp, Outcome::Upgraded));
    }
    Ok((resp, Outcome::Proxied))
}

fn request_parts(request: Request) -> http::request::Parts {
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = request.method;
    parts.uri = request.uri;
    parts.version = request.version;
    parts.headers = request.headers.into_map();
    parts
}

/// A copy of `parts` for sending again (method, target, version, fields).
fn copy_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut copy = http::Request::new(()).into_parts().0;
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy
}

/// What a dry run answers instead of proxying: where the request would have gone.
fn dry_run(set: &OriginSet, request: &Request) -> http::Response<Body> {
    let to = match &set.name {
        Some(name) => format!("upstream {name} {:?}", set.targets),
        None => format!("{:?}", set.targets[0]),
    };
    let mut r = status_response(
        StatusCode::OK,
        &format!("dry run: {} {} would go to {to}", request.method, request.uri),
    );
    r.headers_mut()
        .insert("x-edge-dry-run", http::HeaderValue::from_static("1"));
    r
}

/// Forwards the request to its origin (404 when there is none). With several targets, a
/// request goes to the target the set's balancing picks among the usable ones; one that could
/// not connect is tried on another target (nothing was sent), and an idempotent one whose body
/// is in hand is sent again after a failed exchange, as the set's retries and retry budget
/// allow. 5xx answers are passed on. Over the set's circuit limits: 503 at once.
pub async fn forward(
    state: &ServerState,
    active: &Active,
    request: Request,
    body: BodyState,
    prior_xff: Option<String>,
) -> Result<(http::Response<Body>, Outcome)> {
    let Some(route) = route(&active.plan, &request) else {
        return Ok(unrouted(&active.plan, &request));
    };
    exchange(state, active, route, request_parts(request), body, prior_xff).await
}

/// [`forward`] for the request a context holds, taken out of it field by field: the common
/// path (no cache rule, no Python route) moves no whole request on the way to the origin.
pub async fn forward_ctx(
    state: &ServerState,
    active: &Active,
    ctx: &mut RequestCtx,
) -> Result<(http::Response<Body>, Outcome)> {
    let Some(route) = route(&active.plan, &ctx.request) else {
        return Ok(unrouted(&active.plan, &ctx.request));
    };
    let request = &mut ctx.request;
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = std::mem::replace(&mut request.method, http::Method::GET);
    parts.uri = std::mem::take(&mut request.uri);
    parts.version = request.version;
    parts.headers = std::mem::take(&mut request.headers).into_map();
    let body = std::mem::replace(&mut ctx.body, BodyState::Read(Bytes::new()));
    exchange(state, active, route, parts, body, ctx.prior_xff()).await
}

/// Where a request goes and what about it the exchange needs: its origin set, the balancer's
/// key, the client IP and the scheme it arrived by.
struct Route<'p> {
    set: &'p OriginSet,
    key: Option<u64>,
    ip: IpAddr,
    scheme: &'static str,
}

/// The route for `request`, or None when it has no origin or the server is in a dry run
/// ([`unrouted`] answers those).
fn route<'p>(plan: &'p Plan, request: &Request) -> Option<Route<'p>> {
    let set = choose_origin(plan, request)?;
    (!plan.server.dry_run).then(|| Route {
        set,
        key: hash_key(set, request),
        ip: request.edge.client_ip.unwrap_or(IpAddr::from([0, 0, 0, 0])),
        scheme: request.edge.scheme(),
    })
}

/// The answer for a request with no route: 404 without an origin, the dry run's note.
fn unrouted(plan: &Plan, request: &Request) -> (http::Response<Body>, Outcome) {
    match choose_origin(plan, request) {
        Some(set) => (dry_run(set, request), Outcome::Proxied),
        None => (status_response(StatusCode::NOT_FOUND, "Not Found"), Outcome::NotFound),
    }
}

/// The exchange with the origin set: admission, target choice, connection, sending, retries.
async fn exchange(
    state: &ServerState,
    active: &Active,
    Route { set, key, ip, scheme }: Route<'_>,
    mut parts: http::request::Parts,
    body: BodyState,
    mut prior_xff: Option<String>,
) -> Result<(http::Response<Body>, Outcome)> {
    let plan = &active.plan;
    let health = &active.health[set.id];
    let mut busy = match health.admit(set) {
        Ok(busy) => busy,
        Err(_) => return Ok(overflow()),
    };
    // What a resend needs: the body's bytes (read already, or none at all) and an idempotent
    // method. Only sets with somewhere else to go keep a copy.
    let resend = set.is_balanced() && parts.method.is_idempotent();
    let replay = match &body {
        BodyState::Read(b) if resend => Some(b.clone()),
        BodyState::Unread(inc) if resend && hyper::body::Body::is_end_stream(inc) => Some(Bytes::new()),
        _ => None,
    };
    let mut up_body = match body {
        BodyState::Read(b) => Body::full(b),
        BodyState::Unread(inc) => Body::Upload(Limited::new(inc, plan.limits.max_body_bytes)),
    };
    let (mut avoid, mut tries) = (None, 0);
    loop {
        let (at, origin) = health.pick(set, avoid, key);
        if let Some(b) = &mut busy {
            b.assign(at);
        }
        let pool = &active.pools[origin.index];
        let started = std::time::Instant::now();
        let Ok(waiting) = health.wait(set) else {
            return Ok(overflow());
        };
        let connected = state.upstreams.connect(pool).await;
        drop(waiting);
        let conn = match connected {
            Ok(c) => c,
            Err(e) => {
                state.metrics.origin(started.elapsed(), true);
                health.report(set, at, false);
                if may_retry(set, health, tries) {
                    // Nothing was sent: the same request goes to another target.
                    (avoid, tries) = (Some(at), tries + 1);
                    continue;
                }
                return Err(e);
            }
        };
        let copy = replay.as_ref().map(|_| copy_parts(&parts));
        let xff = xff_for_try(set, &mut prior_xff);
        let sent = state
            .upstreams
            .send(conn, origin, pool, parts, up_body, ip, scheme, xff)
            .await;
        state.metrics.origin(started.elapsed(), sent.is_err());
        health.report(set, at, matches!(&sent, Ok(r) if !r.status().is_server_error()));
        match (sent, copy, &replay) {
            (Err(_), Some(copy), Some(bytes)) if may_retry(set, health, tries) => {
                (parts, up_body) = (copy, Body::full(bytes.clone()));
                (avoid, tries) = (Some(at), tries + 1);
            }
            (sent, _, _) => {
                let resp = sent?.map(|mut b| {
                    b.busy = busy;
                    Body::Origin(b)
                });
                return Ok((resp, Outcome::Proxied));
            }
        }
    }
}

/// The answer when a set's circuit limits are reached: 503 at once, with `Retry-After`.
/// Counted per upstream in `edgecore_upstream_overflows_total` (not logged: an overload would
/// flood the log).
fn overflow() -> (http::Response<Body>, Outcome) {
    let mut resp = status_response(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    resp.headers_mut()
        .insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    (resp, Outcome::Error)
}

/// The request's key for a hashing balancer, hashed (None: not hashing, or the request has no
/// such key, and the set goes round robin).
fn hash_key(set: &OriginSet, request: &Request) -> Option<u64> {
    use xxhash_rust::xxh3::xxh3_64;
    let Balance::Hash(key) = &set.balance else { return None };
    if !set.is_balanced() {
        return None;
    }
    match key {
        HashKey::Ip => request.edge.client_ip.map(|ip| match ip {
            IpAddr::V4(a) => xxh3_64(&a.octets()),
            IpAddr::V6(a) => xxh3_64(&a.octets()),
        }),
        HashKey::Header(name) => request.headers.get(name.as_str()).map(xxh3_64),
        HashKey::Claim(name) => {
            let value = request.edge.claims.as_ref()?.get(name)?;
            Some(xxh3_64(crate::auth::claim_text(value).as_bytes()))
        }
    }
}

/// The trusted X-Forwarded-For chain for one try: moved out for a single target (it is tried
/// once), copied when the set may try again.
fn xff_for_try(set: &OriginSet, prior_xff: &mut Option<String>) -> Option<String> {
    if set.is_balanced() {
        prior_xff.clone()
    } else {
        prior_xff.take()
    }
}

/// Whether a failed try may go to another target: the set has one, retries are left, and the
/// budget allows it.
fn may_retry(set: &OriginSet, health: &SetHealth, tries: u32) -> bool {
    set.is_balanced() && tries < set.policy.retries && health.take_retry(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{block_on, ctx_with, plan, state, with_country, FakeOrigin};

    #[test]
    fn the_first_matching_rule_picks_the_origin() {
        let p = plan(serde_json::json!({
            "origin": "http://default:1",
            "origins": [
                {"url": "http://eu:2", "when": {"continent": ["EU"]}},
                {"url": "http://api:3", "paths": ["/api/*"]},
            ],
        }));
        let pick = |path: &str, country: Option<(&str, &str)>| {
            let mut c = ctx_with(path, &[]);
            if let Some((country, continent)) = country {
                c = with_country(c, country);
                let mut g = c.request.edge.geo.as_deref().cloned().unwrap();
                g.continent = Some(continent.into());
                c.request.edge.geo = Some(std::sync::Arc::new(g));
            }
            format!("{:?}", choose_origin(&p, &c.request).unwrap().targets[0])
        };
        assert_eq!(pick("/x", None), "http://default:1");
        assert_eq!(pick("/x", Some(("DE", "EU"))), "http://eu:2");
        assert_eq!(pick("/api/x", Some(("US", "NA"))), "http://api:3");
        assert!(choose_origin(&plan(serde_json::json!({})), &ctx_with("/", &[]).request).is_none());
    }

    #[test]
    fn a_request_reaches_the_origin_rewritten_and_the_answer_comes_back() {
        block_on(async {
            let origin =
                FakeOrigin::start("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: x-hop\r\nx-hop: 1\r\n\r\nhi")
                    .await;
            let spec = serde_json::json!({"origin": origin.url()});
            let s = state(plan(spec), None);
            let active = s.active.load_full();
            let mut request = Request::new(http::Method::GET, "/p?q=1".parse().unwrap());
            request.edge.client_ip = Some("203.0.113.9".parse().unwrap());
            request
                .headers
                .as_map_mut()
                .insert("host", http::HeaderValue::from_static("shop.example"));
            let (resp, outcome) = forward(&s, &active, request, BodyState::Read("".into()), None)
                .await
                .unwrap();
            assert_eq!((resp.status().as_u16(), outcome), (200, Outcome::Proxied));
            assert!(resp.headers().get("x-hop").is_none());
            assert_eq!(resp.headers()["via"], "1.1 edgecore");
            let seen = origin.received().await;
            assert!(seen.starts_with("GET /p?q=1 HTTP/1.1\r\n"), "{seen}");
            assert!(seen.contains("x-forwarded-for: 203.0.113.9\r\n"), "{seen}");
            assert!(seen.contains("x-forwarded-host: shop.example\r\n"), "{seen}");
            let no_origin = state(plan(serde_json::json!({})), None);
            let active = no_origin.active.load_full();
            let request = Request::new(http::Method::GET, "/".parse().unwrap());
            let (resp, outcome) = forward(&no_origin, &active, request, BodyState::Read("".into()), None)
                .await
                .unwrap();
            assert_eq!((resp.status().as_u16(), outcome), (404, Outcome::NotFound));
        });
    }

    #[test]
    fn a_target_that_refuses_the_connection_is_skipped_and_the_request_sent_to_the_next() {
        block_on(async {
            let live = FakeOrigin::start("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            let dead = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                format!("http://{}", l.local_addr().unwrap())
            };
            let spec = serde_json::json!({
                "upstreams": [{"name": "api", "targets": [dead, live.url()], "eject_after": 1}],
                "origin": "upstream:api",
            });
            let s = state(plan(spec), None);
            let active = s.active.load_full();
            // A POST: never sent to the dead target, so it may go to the live one as it is.
            let request = Request::new(http::Method::POST, "/p".parse().unwrap());
            let (resp, _) = forward(&s, &active, request, BodyState::Read("hello".into()), None)
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            assert!(live.received().await.starts_with("POST /p HTTP/1.1\r\n"));
            let set = &active.plan.upstreams[0];
            assert!(
                active.health[set.id].targets[0].is_ejected(),
                "one failure ejects (eject_after 1)"
            );
            assert_eq!(active.health[set.id].retries(), 1);
        });
    }

    #[test]
    fn with_every_target_down_the_error_comes_back_after_the_allowed_retries() {
        block_on(async {
            let dead = || {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                format!("http://{}", l.local_addr().unwrap())
            };
            let spec = serde_json::json!({
                "upstreams": [{"name": "api", "targets": [dead(), dead(), dead()], "retries": 1}],
                "origin": "upstream:api",
            });
            let s = state(plan(spec), None);
            let active = s.active.load_full();
            let request = Request::new(http::Method::GET, "/".parse().unwrap());
            let e = forward(&s, &active, request, BodyState::Read("".into()), None)
                .await
                .err()
                .expect("no target answers");
            assert_eq!(e.kind, crate::error::ErrorKind::Upstream);
            assert_eq!(active.health[0].retries(), 1, "one retry, as configured");
        });
    }
}
