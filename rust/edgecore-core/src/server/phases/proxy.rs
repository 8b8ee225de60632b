//! Proxy: the request goes to the origin chosen for this client (the first `origin_for` rule
//! whose paths and conditions match, else the default origin; 404 without one),
//! streaming its body up unless a phase already read it.

use std::net::IpAddr;

use http::StatusCode;
use http_body_util::Limited;

use crate::error::Result;
use crate::http::Request;
use crate::server::body::Body;
use crate::server::ctx::BodyState;
use crate::server::metrics::Outcome;
use crate::server::plan::Plan;
use crate::server::respond::status_response;
use crate::server::state::Active;
use crate::server::state::ServerState;
use crate::server::upstream::Origin;

/// The origin for this client: the first matching `origin_for` rule, else the default.
pub fn choose_origin<'p>(plan: &'p Plan, request: &Request) -> Option<&'p Origin> {
    let path = request.path();
    plan.origins
        .iter()
        .find(|rule| rule.paths.matches(path) && rule.when.hold(request))
        .map(|rule| &rule.origin)
        .or(plan.origin.as_ref())
}

/// Proxies a WebSocket upgrade to the request's origin: the origin's 101 comes back with the
/// tunnel for the connection's task to run (see [`crate::server::tunnel`]); any other answer
/// comes back as it is. 404 without an origin.
pub async fn upgrade(
    state: &ServerState,
    active: &Active,
    request: Request,
    client: hyper::upgrade::OnUpgrade,
    prior_xff: Option<String>,
) -> Result<(http::Response<Body>, Outcome)> {
    let plan = &active.plan;
    let Some(origin) = choose_origin(plan, &request) else {
        return Ok((status_response(StatusCode::NOT_FOUND, "Not Found"), Outcome::NotFound));
    };
    let protocol = request
        .headers
        .get(http::header::UPGRADE.as_str())
        .and_then(|v| http::HeaderValue::from_bytes(v).ok())
        .unwrap_or(http::HeaderValue::from_static("websocket"));
    let ip = request.edge.client_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let scheme = request.edge.scheme();
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = request.method;
    parts.uri = request.uri;
    parts.version = request.version;
    parts.headers = request.headers.into_map();
    let pool = &active.pools[origin.index];
    let started = std::time::Instant::now();
    let upgraded = state
        .upstreams
        .upgrade(origin, pool, parts, ip, scheme, prior_xff, protocol)
        .await;
    state.metrics.origin(started.elapsed(), upgraded.is_err());
    let (resp, origin_io) = upgraded?;
    let mut resp = resp.map(Body::full);
    if let Some(io) = origin_io {
        let tunnel = crate::server::tunnel::Tunnel::new(client, io);
        resp.extensions_mut()
            .insert(crate::server::tunnel::PendingTunnel(std::sync::Arc::new(
                parking_lot::Mutex::new(Some(tunnel)),
            )));
        return Ok((resp, Outcome::Upgraded));
    }
    Ok((resp, Outcome::Proxied))
}

/// Forwards the request to its origin (404 when there is none).
pub async fn forward(
    state: &ServerState,
    active: &Active,
    request: Request,
    body: BodyState,
    prior_xff: Option<String>,
) -> Result<(http::Response<Body>, Outcome)> {
    let plan = &active.plan;
    let Some(origin) = choose_origin(plan, &request) else {
        return Ok((status_response(StatusCode::NOT_FOUND, "Not Found"), Outcome::NotFound));
    };
    let ip = request.edge.client_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let scheme = request.edge.scheme();
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = request.method;
    parts.uri = request.uri;
    parts.version = request.version;
    parts.headers = request.headers.into_map();
    let up_body = match body {
        BodyState::Read(b) => Body::full(b),
        BodyState::Unread(inc) => Body::Upload(Limited::new(inc, plan.limits.max_body_bytes)),
    };
    let started = std::time::Instant::now();
    let pool = &active.pools[origin.index];
    let forwarded = state
        .upstreams
        .forward(origin, pool, parts, up_body, ip, scheme, prior_xff)
        .await;
    state.metrics.origin(started.elapsed(), forwarded.is_err());
    Ok((forwarded?.map(Body::Origin), Outcome::Proxied))
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
            format!("{:?}", choose_origin(&p, &c.request).unwrap())
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
}
