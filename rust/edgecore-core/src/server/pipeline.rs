//! The request pipeline, one phase per step, in the order of DESIGN.md:
//!
//! limits → client IP → geo → bots → redirects and rewrites → JWT → rate limit → A/B →
//! request headers → cache lookup → Python middleware → Python route, or proxy to the origin
//! chosen for this client → cache store → response headers.
//!
//! Each phase runs only when configured and matched; a phase that answers (a rejection, a
//! redirect, a cache hit) ends the pipeline, and the response still gets the response-header
//! phase. Nothing here touches Python except the two bridge phases, and those only hand a job to
//! the bridge and await a oneshot. The request body is read only when a phase needs it (a Python
//! handler, a cache fetch); otherwise it streams to the origin.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::bridge::{Bridge, Job, JobKind, Reply};
use super::metrics::Decision;
use super::plan::{CacheRule, LimitKey, Origin, Plan};
use super::proxy::{Body, Proxy, X_FORWARDED_FOR};
use super::{InFlight, Tracked};
use crate::cache::{url_key, Lookup};
use crate::error::{Error, ErrorKind};
use crate::http::{Headers, Request, Response};
use crate::limit::Decision as RateDecision;

/// What every request shares: the current plan (swapped atomically on reload), the origin
/// client, the bridge to Python, and counters.
pub struct Shared {
    /// Seconds added to the clock (nanoseconds): only `TestClient.advance` moves it, so that
    /// tests control token expiry, cache freshness and in-process rate limits. 0 in production.
    pub clock_offset_ns: AtomicU64,
    /// Prometheus counters.
    pub metrics: super::metrics::Metrics,
    /// The access log, when enabled.
    pub access_log: Option<super::access_log::AccessLog>,
    /// The plan in force.
    pub plan: ArcSwap<Plan>,
    /// The origin client.
    pub proxy: Proxy,
    /// Python handlers, when any are registered.
    pub bridge: Option<Arc<dyn Bridge>>,
    /// Per-request unique ids for A/B units (mixed with a random seed).
    pub uid_counter: AtomicU64,
    /// Seed for unit ids.
    pub uid_seed: foldhash::fast::RandomState,
    /// Cache purge broadcast over Redis pub/sub, when configured.
    pub purge: Option<Arc<super::purge::Broadcast>>,
    /// Client connections open, per worker thread.
    pub open_connections: Box<[std::sync::atomic::AtomicUsize]>,
}

impl Shared {
    /// Purges `prefix` from every response cache of the current plan (see
    /// [`crate::cache::HttpCache::purge`] for what a prefix matches); returns the entries removed.
    pub fn purge_local(&self, prefix: &str) -> usize {
        self.plan.load().cache.iter().map(|r| r.cache.purge(prefix)).sum()
    }
}

/// A full body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Body::full(b)
}

fn status_response(status: StatusCode, msg: &str) -> http::Response<Body> {
    let mut r = http::Response::new(full(format!("{msg}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn from_core(r: Response) -> http::Response<Body> {
    let mut out = http::Response::new(full(r.body));
    *out.status_mut() = r.status;
    *out.headers_mut() = r.headers;
    out
}

fn error_response(e: &Error) -> http::Response<Body> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = status_response(status, status.canonical_reason().unwrap_or("error"));
    if status.is_client_error() {
        r.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

enum BodyState {
    Unread(Incoming),
    Read(Bytes),
}

/// A response and what produced it.
type Produced = (http::Response<Body>, Decision);

/// Per-request state gathered by the phases, applied to the response at the end.
#[derive(Default)]
struct Extras {
    decision: Option<Decision>,
    client_ip: Option<IpAddr>,
    set_cookies: Vec<HeaderValue>,
    rate: Option<RateDecision>,
    cache_status: Option<&'static str>,
}

fn now() -> f64 {
    crate::clock::now()
}

/// Headers that set the client IP, country and bot status in dev mode.
const DEV_HEADERS: [&str; 3] = ["x-edge-dev-client-ip", "x-edge-dev-country", "x-edge-dev-bot"];
const DEV_PREFIX: &str = "x-edge-dev-";

/// A claim as header/key text: strings as they are, other JSON values serialised.
pub(crate) fn claim_text(v: &serde_json::Value) -> std::borrow::Cow<'_, str> {
    match v {
        serde_json::Value::String(s) => std::borrow::Cow::Borrowed(s),
        v => std::borrow::Cow::Owned(v.to_string()),
    }
}

/// Nanoseconds per second, for the test clock.
const NS: f64 = 1e9;

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

fn rate_headers(d: &RateDecision, h: &mut http::HeaderMap) {
    h.insert(RATELIMIT_LIMIT, HeaderValue::from(d.limit));
    h.insert(RATELIMIT_REMAINING, HeaderValue::from(d.remaining));
    h.insert(RATELIMIT_RESET, HeaderValue::from(d.reset_after.ceil() as u64));
}

fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers
        .get_all("cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn country_ok(allowed: &Option<Vec<String>>, req: &Request) -> bool {
    match allowed {
        None => true,
        Some(list) => req
            .edge
            .geo
            .as_ref()
            .and_then(|g| g.country.as_deref())
            .is_some_and(|c| list.iter().any(|a| a == c)),
    }
}

impl Shared {
    /// The pipeline's clock: wall time plus the test offset.
    pub fn now(&self) -> f64 {
        now() + self.clock_offset_ns.load(Ordering::Relaxed) as f64 / NS
    }

    /// The Prometheus text for a scrape (served by Rust: no Python, no lock).
    fn metrics_response(&self, plan: &Plan) -> http::Response<Body> {
        let queued = self.bridge.as_ref().map_or(0, |b| b.queued()) as f64;
        let cache_bytes = plan.cache.iter().map(|c| c.cache.size_bytes()).sum::<usize>() as f64;
        let gauges = [
            ("edgecore_python_queue_depth", "Python jobs waiting.", queued),
            (
                "edgecore_cache_bytes",
                "Bytes held by the response caches.",
                cache_bytes,
            ),
            (
                "edgecore_purge_subscribed",
                "1 while subscribed to the Redis purge channel (0: purges cannot reach this node).",
                self.purge
                    .as_ref()
                    .map_or(0.0, |p| p.subscribed.load(Ordering::Relaxed) as u8 as f64),
            ),
            (
                "edgecore_purges_received",
                "Purge messages received from the Redis channel.",
                self.purge
                    .as_ref()
                    .map_or(0.0, |p| p.received.load(Ordering::Relaxed) as f64),
            ),
        ];
        let mut text = self.metrics.render(&gauges);
        text.push_str("# HELP edgecore_open_connections Client connections open, per worker thread.\n");
        text.push_str("# TYPE edgecore_open_connections gauge\n");
        for (i, n) in self.open_connections.iter().enumerate() {
            use std::fmt::Write;
            let _ = writeln!(
                text,
                "edgecore_open_connections{{worker=\"{i}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let mut r = http::Response::new(full(text));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    }

    /// Serves one request: the service hyper calls. `request` marks the connection busy until
    /// hyper has taken the response body. (The future is the service's own, with no wrapper
    /// around it: every layer of futures costs a copy of the inner one per request.)
    pub(crate) async fn handle(
        self: Arc<Self>,
        req: http::Request<Incoming>,
        peer: SocketAddr,
        secure: bool,
        request: InFlight,
    ) -> Result<http::Response<Tracked>, std::convert::Infallible> {
        let tracked = |r: http::Response<Body>| {
            Ok(r.map(|body| Tracked {
                body,
                _request: request,
            }))
        };
        self.metrics.arrived();
        let plan = self.plan.load_full();
        let mut extras = Extras::default();
        let t0 = std::time::Instant::now();
        if let Some(p) = &plan.server.metrics_path {
            if req.uri().path() == p {
                return tracked(self.metrics_response(&plan));
            }
        }
        let logged = self
            .access_log
            .as_ref()
            .map(|_| (req.method().clone(), req.uri().path().to_owned()));
        let mut resp = match self.run(&plan, req, peer, secure, &mut extras).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
        let h = resp.headers_mut();
        for c in extras.set_cookies {
            h.append(http::header::SET_COOKIE, c);
        }
        if let Some(d) = &extras.rate {
            rate_headers(d, h);
        }
        if let Some(s) = extras.cache_status {
            h.entry(X_CACHE).or_insert(HeaderValue::from_static(s));
        }
        let decision = extras
            .decision
            .or(match extras.cache_status {
                Some("HIT") => Some(Decision::CacheHit),
                Some("STALE") => Some(Decision::CacheStale),
                Some("REVALIDATED") => Some(Decision::CacheRevalidated),
                Some("MISS") => Some(Decision::CacheMiss),
                _ => None,
            })
            .unwrap_or(if resp.status().is_server_error() {
                Decision::Error
            } else {
                Decision::Rejected
            });
        let elapsed = t0.elapsed();
        self.metrics.request(decision, resp.status().as_u16(), elapsed);
        if let (Some(log), Some((method, path))) = (&self.access_log, logged) {
            // The body's exact size when known (full bodies, or a Content-Length from the origin);
            // null for a streamed body of unknown length.
            let bytes = hyper::body::Body::size_hint(resp.body()).exact();
            let line = serde_json::json!({
                "time": crate::clock::now(),
                "client_ip": extras.client_ip.unwrap_or(peer.ip()).to_string(),
                "method": method.as_str(),
                "path": path,
                "status": resp.status().as_u16(),
                "bytes": bytes,
                "duration_ms": elapsed.as_secs_f64() * 1000.0,
                "decision": decision.as_str(),
            });
            log.write(line.to_string());
        }
        tracked(resp)
    }

    async fn run(
        self: &Arc<Self>,
        plan: &Arc<Plan>,
        req: http::Request<Incoming>,
        peer: SocketAddr,
        secure: bool,
        extras: &mut Extras,
    ) -> Result<http::Response<Body>, Error> {
        let (parts, incoming) = req.into_parts();
        // ---- limits (the head was already bounded by hyper: 431) ----
        // Measured from the parts (no allocation): scheme, authority and path-and-query.
        let uri_len = parts.uri.scheme_str().map_or(0, |s| s.len() + 3)
            + parts.uri.authority().map_or(0, |a| a.as_str().len())
            + parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
        if uri_len > plan.limits.max_uri_bytes {
            return Err(Error::downstream(ErrorKind::UriTooLong, "request target too long"));
        }
        // Framing ambiguity is refused outright, as the parser does: never guess between them.
        if parts.headers.contains_key(http::header::TRANSFER_ENCODING)
            && (parts.headers.contains_key(http::header::CONTENT_LENGTH) || parts.version == http::Version::HTTP_10)
        {
            return Err(Error::bad_request(
                "both Content-Length and Transfer-Encoding (or Transfer-Encoding in HTTP/1.0)",
            ));
        }
        let head_bytes: usize = parts.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
        if head_bytes > plan.limits.max_header_bytes {
            return Err(Error::downstream(
                ErrorKind::HeadersTooLarge,
                "request header fields too large",
            ));
        }
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > plan.limits.max_body_bytes as u64) {
            return Err(Error::downstream(ErrorKind::BodyTooLarge, "request body too large"));
        }
        // ---- client IP ----
        // Read from the map with a prebuilt name: no name parsing, no boxed iterator.
        let peer_ip = crate::geo::client_ip::normalize(peer.ip());
        let trusted_peer = plan.trusted.contains(peer_ip);
        let forwarded_for = parts.headers.get_all(&X_FORWARDED_FOR);
        let prior_xff = trusted_peer.then(|| {
            forwarded_for
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        });
        let mut ip = crate::geo::client_ip(peer_ip, forwarded_for.iter().map(HeaderValue::as_bytes), &plan.trusted);
        // Dev headers are never forwarded, and never honoured outside dev mode (below). One pass
        // over the names finds out whether there are any.
        let dev_headers = parts.headers.keys().any(|k| k.as_str().starts_with(DEV_PREFIX));
        let mut request = Request {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: Headers::Map(parts.headers),
            body: Bytes::new(),
            edge: Default::default(),
        };
        request.edge.secure = secure;
        let body = BodyState::Unread(incoming);
        let dev = plan.server.dev_mode;
        if dev {
            if let Some(v) = request
                .header("x-edge-dev-client-ip")
                .and_then(|v| v.parse::<IpAddr>().ok())
            {
                ip = v;
            }
        }
        request.edge.client_ip = Some(ip);
        extras.client_ip = Some(ip);

        // ---- geo ----
        if let Some(db) = &plan.geo {
            request.edge.geo = db.lookup(ip).map(Arc::new);
        }
        if dev {
            if let Some(c) = request.header("x-edge-dev-country").map(str::to_ascii_uppercase) {
                let mut g = request.edge.geo.as_deref().cloned().unwrap_or_default();
                g.country = Some(c);
                request.edge.geo = Some(Arc::new(g));
            }
        }

        // ---- bots ----
        if let Some(b) = &plan.bots {
            let ua = request.header("user-agent").unwrap_or("");
            let mut is_bot = b.detector.is_bot(ua) && !b.allow.as_ref().is_some_and(|a| a.is_match(ua));
            if dev {
                if let Some(v) = request.header("x-edge-dev-bot") {
                    is_bot = v == "1" || v.eq_ignore_ascii_case("true");
                }
            }
            request.edge.is_bot = is_bot;
            if is_bot && b.block {
                extras.decision = Some(Decision::BotBlocked);
                return Ok(status_response(StatusCode::FORBIDDEN, "Forbidden"));
            }
            if is_bot {
                request
                    .headers
                    .as_map_mut()
                    .insert("x-edge-bot", HeaderValue::from_static("1"));
            }
        }
        if dev_headers {
            let h = request.headers.as_map_mut();
            for name in DEV_HEADERS {
                h.remove(name);
            }
        }

        // ---- redirects and rewrites ----
        // The path is borrowed from the target for the whole pipeline (the phases change other
        // fields of the request, never the target; a rewrite swaps it in after its loop).
        let path = crate::http::uri_path(&request.uri);
        for r in &plan.redirects {
            if r.paths.matches(path) && country_ok(&r.country, &request) {
                let location = r.to.render(&request);
                extras.decision = Some(Decision::Redirect);
                return Ok(from_core(crate::http::redirect(&location, r.status)?));
            }
        }
        let rewritten = match plan
            .rewrites
            .iter()
            .find(|r| r.paths.matches(path) && country_ok(&r.country, &request))
        {
            Some(r) => {
                let new_path = r.to.render(&request);
                let target = match request.uri.query() {
                    Some(q) => format!("{new_path}?{q}"),
                    None => new_path,
                };
                Some(
                    target
                        .parse()
                        .map_err(|_| Error::config(format!("rewrite produced an invalid path {target:?}")))?,
                )
            }
            None => None,
        };
        if let Some(uri) = rewritten {
            request.uri = uri;
        }
        let path = crate::http::uri_path(&request.uri);

        // ---- JWT ----
        if let Some(rule) = plan.jwt.iter().find(|r| r.paths.matches(path)) {
            let token = request
                .header("authorization")
                .and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")))
                .map(str::trim)
                .or_else(|| rule.cookie.as_deref().and_then(|c| cookie(&request, c)));
            let Some(token) = token else {
                extras.decision = Some(Decision::JwtRejected);
                return Ok(unauthorized(None));
            };
            let t = self.now();
            let mut result = rule.verifier.verify_now(token.as_bytes(), t);
            if matches!(&result, Err(e) if e.kind == ErrorKind::TokenKeyNotFound) {
                if let Some(remote) = rule.verifier.remote_jwks() {
                    // Boxed here and below: a rare path keeps its (large) future off the
                    // per-request one, which is moved on every request.
                    if Box::pin(remote.refresh_if_allowed()).await {
                        result = rule.verifier.verify_now(token.as_bytes(), t);
                    }
                }
            }
            match result {
                Ok(claims) => {
                    for (claim, header) in &rule.claims_to_headers {
                        let Some(v) = claims.get(claim) else { continue };
                        if let Ok(v) = HeaderValue::from_str(&claim_text(v)) {
                            request.headers.as_map_mut().insert(header.clone(), v);
                        }
                    }
                    request.edge.claims = Some(Arc::new(claims));
                }
                Err(e) => {
                    extras.decision = Some(Decision::JwtRejected);
                    return Ok(unauthorized(Some(&e)));
                }
            }
        }

        // ---- rate limits ----
        for rule in plan.rate_limits.iter().filter(|r| r.paths.matches(path)) {
            let mut limit_key = String::with_capacity(rule.namespace.len() + 40);
            limit_key.push_str(&rule.namespace);
            let value = match &rule.key {
                LimitKey::Ip => None,
                LimitKey::Header(h) => request.headers.get(h.as_str()).map(String::from_utf8_lossy),
                LimitKey::Claim(c) => request.edge.claims.as_ref().and_then(|m| m.get(c)).map(claim_text),
            };
            match (&rule.key, value) {
                (_, Some(v)) => limit_key.push_str(&v),
                (LimitKey::Ip, None) => crate::geo::client_ip::push_ip(&mut limit_key, ip),
                (_, None) => {
                    limit_key.push_str("ip:");
                    crate::geo::client_ip::push_ip(&mut limit_key, ip);
                }
            }
            let d = if rule.limiter.is_shared() {
                Box::pin(rule.limiter.check(&limit_key, 1)).await?
            } else {
                // The test clock moves in-process limiters too (Redis keeps its own clock);
                // otherwise the limiter reads its clock once, in the check.
                let offset = self.clock_offset_ns.load(Ordering::Relaxed);
                let now = (offset > 0)
                    .then(|| rule.limiter.local_now())
                    .flatten()
                    .map(|t| t + offset);
                rule.limiter.check_local(limit_key.as_bytes(), 1, now)?
            };
            self.metrics.limiter(d.allowed);
            if !d.allowed {
                extras.decision = Some(Decision::RateLimited);
                let mut r = status_response(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
                rate_headers(&d, r.headers_mut());
                r.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    HeaderValue::from((d.retry_after.ceil() as u64).max(1)),
                );
                return Ok(r);
            }
            extras.rate = Some(d);
        }

        // ---- A/B ----
        for rule in plan.ab_tests.iter().filter(|r| r.paths.matches(path)) {
            let sticky = cookie(&request, &rule.cookie)
                .filter(|v| rule.experiment.variants().any(|x| x == *v))
                .map(str::to_owned);
            let variant = match sticky {
                Some(v) => v,
                None => {
                    let uid = match cookie(&request, "ec-uid") {
                        Some(u) => u.to_owned(),
                        None => {
                            use std::hash::BuildHasher;
                            let n = self.uid_counter.fetch_add(1, Ordering::Relaxed);
                            let uid = format!(
                                "{:016x}{:016x}",
                                self.uid_seed.hash_one(n),
                                self.uid_seed.hash_one(now().to_bits() ^ n)
                            );
                            extras.set_cookies.push(
                                HeaderValue::from_str(&format!(
                                    "ec-uid={uid}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly"
                                ))
                                .expect("ascii"),
                            );
                            uid
                        }
                    };
                    let v = rule.experiment.assign(&uid).to_owned();
                    extras.set_cookies.push(
                        HeaderValue::from_str(&format!("{}={v}; Path=/; Max-Age=2592000; SameSite=Lax", rule.cookie))
                            .map_err(|_| Error::config("variant names must be valid cookie values"))?,
                    );
                    v
                }
            };
            if let Ok(hv) = HeaderValue::from_str(&variant) {
                request.headers.as_map_mut().insert(rule.header.clone(), hv);
            }
            request
                .edge
                .variants
                .push((Arc::from(rule.experiment.name()), Arc::from(variant.as_str())));
        }

        // ---- request headers ----
        for rule in plan.headers.iter().filter(|r| r.paths.matches(path)) {
            for (name, t) in &rule.request {
                if let Ok(v) = HeaderValue::from_str(&t.render(&request)) {
                    request.headers.as_map_mut().insert(name.clone(), v);
                }
            }
        }

        // Response-header templates depend only on the request and what the edge learned about
        // it, so they are rendered now and the request can be moved into the handler or proxy.
        let mut response_headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        for rule in plan.headers.iter().filter(|r| r.paths.matches(path)) {
            for (name, t) in &rule.response {
                if let Ok(v) = HeaderValue::from_str(&t.render(&request)) {
                    response_headers.push((name.clone(), v));
                }
            }
        }

        // ---- cache, then middleware and handler or origin ----
        let cache_rule = plan.cache.iter().position(|r| r.paths.matches(path));
        let mut resp = match cache_rule {
            // Boxed: rustc lays this future and `produce`'s out side by side, not overlapped, so
            // inline both would make every request's future (moved on each request) carry both.
            Some(i) if request.method == Method::GET || request.method == Method::HEAD => {
                Box::pin(self.through_cache(plan, i, request, body, prior_xff, extras)).await?
            }
            Some(i) => {
                // An unsafe method on a cached path: a success invalidates the URL.
                let rule = &plan.cache[i];
                let method = request.method.clone();
                let url = url_key(&request, request.edge.scheme(), &rule.key);
                let (resp, decision) = Box::pin(self.produce(plan, request, body, prior_xff)).await?;
                extras.decision = Some(decision);
                rule.cache.invalidate(&method, resp.status(), &url);
                resp
            }
            // Not boxed: a proxied request saves an allocation.
            None => {
                let (resp, decision) = self.produce(plan, request, body, prior_xff).await?;
                extras.decision = Some(decision);
                resp
            }
        };

        // ---- response headers ----
        for (name, v) in response_headers {
            resp.headers_mut().insert(name, v);
        }
        Ok(resp)
    }

    /// Cache lookup, and on a miss one coalesced fetch through middleware/handler/origin.
    async fn through_cache(
        self: &Arc<Self>,
        plan: &Arc<Plan>,
        rule_index: usize,
        request: Request,
        body: BodyState,
        prior_xff: Option<String>,
        extras: &mut Extras,
    ) -> Result<http::Response<Body>, Error> {
        let rule: &CacheRule = &plan.cache[rule_index];
        // The key is built in one buffer: URL, method, then the dimensions the response can
        // differ by (each A/B variant, and the country when geo is on).
        let mut key = url_key(&request, request.edge.scheme(), &rule.key);
        crate::cache::key::push_method(&mut key, &request);
        for (experiment, variant) in &request.edge.variants {
            crate::cache::key::push_dimension(&mut key, "variant:", experiment, variant);
        }
        if plan.geo.is_some() || plan.server.dev_mode {
            let country = request.edge.geo.as_ref().and_then(|g| g.country.as_deref());
            crate::cache::key::push_dimension(&mut key, "", "country", country.unwrap_or_default());
        }
        let t = self.now();
        match rule.cache.lookup(&request, &key, t) {
            Lookup::Hit(r) => {
                extras.cache_status = Some("HIT");
                Ok(from_core(r))
            }
            Lookup::Stale(r, _entry) => {
                // Serve the stale copy now and refresh it in the background (one refresh per key
                // at a time: the coalescer).
                extras.cache_status = Some("STALE");
                let (this, plan) = (self.clone(), plan.clone());
                tokio::spawn(async move {
                    let rule = &plan.cache[rule_index];
                    let _ = rule
                        .coalescer
                        .run(&key, || async {
                            let fetched = this
                                .fetch_full(&plan, request.clone(), BodyState::Read(Bytes::new()), prior_xff)
                                .await;
                            match fetched {
                                Ok(resp) => {
                                    rule.cache.store(&request, &key, &resp, this.now());
                                    Ok(resp)
                                }
                                Err(e) => Err((e.http_status(), e.context.to_string())),
                            }
                        })
                        .await;
                });
                Ok(from_core(r))
            }
            Lookup::Revalidate(entry, cond) => {
                let mut conditional = request.clone();
                for (n, v) in cond {
                    conditional.headers.as_map_mut().insert(n, v);
                }
                match Box::pin(self.fetch_full(plan, conditional, body, prior_xff)).await {
                    Ok(r) if r.status == StatusCode::NOT_MODIFIED => {
                        extras.cache_status = Some("REVALIDATED");
                        Ok(from_core(rule.cache.revalidated(
                            &request,
                            &key,
                            &entry,
                            &r,
                            self.now(),
                        )))
                    }
                    Ok(r) => {
                        rule.cache.store(&request, &key, &r, self.now());
                        extras.cache_status = Some("MISS");
                        Ok(from_core(r))
                    }
                    Err(e) => rule.cache.stale_on_error(&entry, self.now()).map(from_core).ok_or(e),
                }
            }
            Lookup::Miss(entry) => {
                extras.cache_status = Some("MISS");
                let cache = rule.cache.clone();
                let fetched = Box::pin(rule.coalescer.run(&key, || async {
                    match self.fetch_full(plan, request.clone(), body, prior_xff).await {
                        Ok(r) => {
                            cache.store(&request, &key, &r, self.now());
                            Ok(r)
                        }
                        Err(e) => Err((e.http_status(), e.context.to_string())),
                    }
                }))
                .await
                .0;
                match fetched {
                    Ok(r) => Ok(from_core(r)),
                    Err((status, msg)) => match entry.and_then(|e| rule.cache.stale_on_error(&e, self.now())) {
                        Some(stale) => Ok(from_core(stale)),
                        None => {
                            let kind = if status == 504 {
                                ErrorKind::UpstreamTimeout
                            } else {
                                ErrorKind::Upstream
                            };
                            Err(Error::new(kind, crate::error::ErrorSource::Upstream, msg))
                        }
                    },
                }
            }
            Lookup::Bypass => {
                extras.cache_status = Some("BYPASS");
                let (resp, decision) = Box::pin(self.produce(plan, request, body, prior_xff)).await?;
                extras.decision = Some(decision);
                Ok(resp)
            }
        }
    }

    /// `produce` with the response body read into memory (for the cache).
    async fn fetch_full(
        &self,
        plan: &Plan,
        request: Request,
        body: BodyState,
        prior_xff: Option<String>,
    ) -> Result<Response, Error> {
        let (resp, _) = self.produce(plan, request, body, prior_xff).await?;
        let (parts, b) = resp.into_parts();
        let bytes = b
            .collect()
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Upstream,
                    crate::error::ErrorSource::Upstream,
                    format!("reading the response: {e}"),
                )
            })?
            .to_bytes();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body: bytes,
        })
    }

    async fn read_body(&self, plan: &Plan, body: BodyState) -> Result<Bytes, Error> {
        match body {
            BodyState::Read(b) => Ok(b),
            BodyState::Unread(inc) => match Limited::new(inc, plan.limits.max_body_bytes).collect().await {
                Ok(c) => Ok(c.to_bytes()),
                Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                    Err(Error::downstream(ErrorKind::BodyTooLarge, "request body too large"))
                }
                Err(e) => Err(Error::bad_request(format!("reading the request body: {e}"))),
            },
        }
    }

    /// Middleware, then a Python route or the origin.
    async fn produce(
        &self,
        plan: &Plan,
        mut request: Request,
        mut body: BodyState,
        prior_xff: Option<String>,
    ) -> Result<Produced, Error> {
        let path = crate::http::uri_path(&request.uri);
        let needs_python = plan.middleware.iter().any(|m| m.matcher.matches(path))
            || plan.routes.iter().any(|r| r.path.matches(path, &mut Vec::new()));
        if needs_python {
            request.body = Box::pin(self.read_body(plan, body)).await?;
            body = BodyState::Read(request.body.clone());
        }
        // Middleware may change the target: the path it matches on is a refcounted copy, taken
        // only when there is middleware.
        let target = (!plan.middleware.is_empty()).then(|| request.uri.clone());
        let mw_path = target.as_ref().map_or("", crate::http::uri_path);
        for mw in plan.middleware.iter().filter(|m| m.matcher.matches(mw_path)) {
            match Box::pin(self.call_python(plan, JobKind::Middleware(mw.handler), request.clone())).await? {
                Reply::Respond(r) => return Ok((from_core(r), Decision::Middleware)),
                Reply::Continue(edited) => {
                    request.headers = edited.headers;
                    request.uri = edited.uri;
                }
                Reply::Failed(msg) => {
                    return Err(Error::new(
                        ErrorKind::Internal,
                        crate::error::ErrorSource::Internal,
                        msg,
                    ))
                }
            }
        }
        let path = crate::http::uri_path(&request.uri);
        let mut allowed: Vec<&Method> = Vec::new();
        for route in &plan.routes {
            let mut params = Vec::new();
            if !route.path.matches(path, &mut params) {
                continue;
            }
            let ok = if route.methods.is_empty() {
                request.method == Method::GET || request.method == Method::HEAD
            } else {
                route.methods.contains(&request.method)
            };
            if !ok {
                allowed.extend(route.methods.iter());
                continue;
            }
            request.edge.params = params.into_iter().map(|(k, v)| (Arc::from(k.as_str()), v)).collect();
            return match Box::pin(self.call_python(plan, JobKind::Route(route.handler), request)).await? {
                Reply::Respond(r) => Ok((from_core(r), Decision::Handler)),
                Reply::Continue(_) => Err(Error::new(
                    ErrorKind::Internal,
                    crate::error::ErrorSource::Internal,
                    "a route handler must return a response",
                )),
                Reply::Failed(msg) => Err(Error::new(
                    ErrorKind::Internal,
                    crate::error::ErrorSource::Internal,
                    msg,
                )),
            };
        }
        if !allowed.is_empty() {
            let mut r = status_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            let list: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
            r.headers_mut().insert(
                http::header::ALLOW,
                HeaderValue::from_str(&list.join(", ")).expect("methods are tokens"),
            );
            return Ok((r, Decision::MethodNotAllowed));
        }
        let Some(origin) = Self::choose_origin(plan, &request) else {
            return Ok((status_response(StatusCode::NOT_FOUND, "Not Found"), Decision::NotFound));
        };
        let ip = request.edge.client_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let scheme = request.edge.scheme();
        let mut parts = http::Request::new(()).into_parts().0;
        parts.method = request.method;
        parts.uri = request.uri;
        parts.version = request.version;
        parts.headers = request.headers.into_map();
        let up_body: Body = match body {
            BodyState::Read(b) => full(b),
            BodyState::Unread(inc) => Body::Upload(Limited::new(inc, plan.limits.max_body_bytes)),
        };
        let started = std::time::Instant::now();
        let forwarded = self.proxy.forward(origin, parts, up_body, ip, scheme, prior_xff).await;
        self.metrics.origin(started.elapsed(), forwarded.is_err());
        let resp = forwarded?;
        Ok((resp.map(Body::Origin), Decision::Proxied))
    }

    /// The origin for this client: the first matching `origin_for` rule, else the default.
    fn choose_origin<'p>(plan: &'p Plan, request: &Request) -> Option<&'p Origin> {
        let path = request.path();
        let geo = request.edge.geo.as_deref();
        for rule in &plan.origins {
            if !rule.paths.matches(path) {
                continue;
            }
            let country_ok = rule.country.as_ref().is_none_or(|l| {
                geo.and_then(|g| g.country.as_deref())
                    .is_some_and(|c| l.iter().any(|x| x == c))
            });
            let continent_ok = rule.continent.as_ref().is_none_or(|l| {
                geo.and_then(|g| g.continent.as_deref())
                    .is_some_and(|c| l.iter().any(|x| x == c))
            });
            if country_ok && continent_ok {
                return Some(&rule.origin);
            }
        }
        plan.origin.as_ref()
    }

    async fn call_python(&self, plan: &Plan, kind: JobKind, request: Request) -> Result<Reply, Error> {
        let bridge = self.bridge.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                crate::error::ErrorSource::Internal,
                "no Python bridge",
            )
        })?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !bridge.submit(Job {
            kind,
            request,
            reply: tx,
        }) {
            return Err(Error::new(
                ErrorKind::Overloaded,
                crate::error::ErrorSource::Internal,
                "the Python work queue is full",
            ));
        }
        let timeout = Duration::from_secs_f64(plan.server.handler_timeout);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Ok(Reply::Failed("the handler ended without answering".into())),
            Err(_) => Err(Error::new(
                ErrorKind::UpstreamTimeout,
                crate::error::ErrorSource::Internal,
                "the handler timed out",
            )),
        }
    }
}

fn unauthorized(e: Option<&Error>) -> http::Response<Body> {
    let mut r = status_response(StatusCode::UNAUTHORIZED, "Unauthorized");
    let challenge = match e {
        None => "Bearer".to_owned(),
        Some(e) => {
            let desc: String = e
                .context
                .chars()
                .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
                .collect();
            format!("Bearer error=\"invalid_token\", error_description=\"{desc}\"")
        }
    };
    r.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
    );
    r
}
