//! The plan: the application's configuration compiled once into immutable Rust values.
//!
//! The Python `Edge` object describes the app as a JSON-compatible spec plus the objects it built
//! with the library API (JWT verifiers, rate limiters, a geo database, bot patterns). Building the
//! plan validates everything (a bad pattern, template, URL or experiment fails here, at start-up,
//! with a `Config` error) so that serving a request never parses or validates configuration, and
//! never touches Python unless a Python handler matched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use serde::Deserialize;

use super::matcher::{Matcher, Pattern};
use super::template::Template;
use crate::auth::JwtVerifier;
use crate::cache::{HttpCache, KeyOptions};
use crate::classify::{BotDetector, Experiment};
use crate::error::{Error, Result};
use crate::geo::{GeoDb, TrustedProxies};
use crate::limit::RateLimiter;

fn all_paths() -> Vec<String> {
    vec!["/*".into()]
}

/// Server limits and timeouts (seconds, bytes).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSpec {
    /// A client must send a complete request head within this time of its first byte (and a new
    /// connection its first head within this time of connecting): slowloris protection.
    pub header_read_timeout: f64,
    /// How long a keep-alive connection may sit idle between a response and the first byte of
    /// the next request.
    pub keep_alive_timeout: f64,
    /// Largest request body (413 beyond).
    pub max_body_bytes: usize,
    /// Largest request head (431 beyond).
    pub max_header_bytes: usize,
    /// Longest request target (414 beyond).
    pub max_uri_bytes: usize,
    /// Most connections served at once (more wait in the kernel's accept queue).
    pub max_connections: usize,
    /// Most Python jobs waiting (503 with Retry-After beyond).
    pub python_queue: usize,
    /// A Python handler that takes longer gets 504.
    pub handler_timeout: f64,
    /// Connecting to the origin (502 beyond).
    pub origin_connect_timeout: f64,
    /// Waiting for the origin's response head (504 beyond).
    pub origin_timeout: f64,
    /// In-flight requests get this long to finish at shutdown.
    pub grace_period: f64,
    /// Lets requests set their geo, client IP and bot status through `x-edge-dev-*` headers
    /// (local development only; never on by default).
    pub dev_mode: bool,
    /// Worker threads of the runtime (0: one per core).
    pub threads: usize,
    /// JSON-lines access log: "-" for stderr or a file path (None: off).
    pub access_log: Option<String>,
    /// Serve Prometheus metrics on this path (None: off), e.g. "/metrics".
    pub metrics_path: Option<String>,
    /// TLS: PEM certificate chain (with `tls_key`; None: plain HTTP).
    pub tls_cert: Option<String>,
    /// TLS: PEM private key (with `tls_cert`).
    pub tls_key: Option<String>,
    /// Cache purges are broadcast through this Redis (`redis://host:port/db`; None: local only).
    pub purge_redis: Option<String>,
    /// The pub/sub channel for purges.
    pub purge_channel: String,
}

impl Default for ServerSpec {
    fn default() -> Self {
        ServerSpec {
            header_read_timeout: 10.0,
            keep_alive_timeout: 30.0,
            max_body_bytes: 10 << 20,
            max_header_bytes: 32 * 1024,
            max_uri_bytes: 8 * 1024,
            max_connections: 10_000,
            python_queue: 1024,
            handler_timeout: 30.0,
            origin_connect_timeout: 5.0,
            origin_timeout: 30.0,
            grace_period: 10.0,
            dev_mode: false,
            threads: 0,
            access_log: None,
            metrics_path: None,
            tls_cert: None,
            tls_key: None,
            purge_redis: None,
            purge_channel: super::purge::DEFAULT_CHANNEL.to_owned(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BotsSpec {
    action: String,
    #[serde(default)]
    allow: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedirectSpec {
    to: String,
    #[serde(default = "default_redirect")]
    status: u16,
    #[serde(default = "all_paths")]
    paths: Vec<String>,
    #[serde(default)]
    country: Option<Vec<String>>,
}

fn default_redirect() -> u16 {
    302
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RewriteSpec {
    to: String,
    #[serde(default = "all_paths")]
    paths: Vec<String>,
    #[serde(default)]
    country: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginSpec {
    url: String,
    #[serde(default)]
    country: Option<Vec<String>>,
    #[serde(default)]
    continent: Option<Vec<String>>,
    #[serde(default = "all_paths")]
    paths: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadersSpec {
    #[serde(default = "all_paths")]
    paths: Vec<String>,
    #[serde(default)]
    request: BTreeMap<String, String>,
    #[serde(default)]
    response: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtSpec {
    paths: Vec<String>,
    verifier: usize,
    #[serde(default)]
    cookie: Option<String>,
    #[serde(default)]
    claims_to_headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateSpec {
    paths: Vec<String>,
    limiter: usize,
    #[serde(default = "default_key")]
    key: String,
}

fn default_key() -> String {
    "ip".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AbSpec {
    name: String,
    variants: BTreeMap<String, f64>,
    #[serde(default = "all_paths")]
    paths: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheSpec {
    paths: Vec<String>,
    #[serde(default)]
    ttl: Option<f64>,
    #[serde(default = "default_cache_bytes")]
    max_bytes: usize,
    #[serde(default)]
    ignore_query: bool,
    #[serde(default)]
    ignore_params: Vec<String>,
}

fn default_cache_bytes() -> usize {
    64 << 20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSpec {
    path: String,
    #[serde(default)]
    methods: Vec<String>,
    handler: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MiddlewareSpec {
    matcher: Vec<String>,
    handler: usize,
}

/// The application as Python describes it.
#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AppSpec {
    origin: Option<String>,
    trusted_proxies: Vec<String>,
    bots: Option<BotsSpec>,
    redirects: Vec<RedirectSpec>,
    rewrites: Vec<RewriteSpec>,
    origins: Vec<OriginSpec>,
    headers: Vec<HeadersSpec>,
    jwt: Vec<JwtSpec>,
    rate_limits: Vec<RateSpec>,
    ab_tests: Vec<AbSpec>,
    cache: Vec<CacheSpec>,
    routes: Vec<RouteSpec>,
    middleware: Vec<MiddlewareSpec>,
    /// Server limits and timeouts.
    pub server: ServerSpec,
}

/// Library objects the spec refers to by index.
#[derive(Default)]
pub struct Objects {
    /// JWT verifiers (`jwt[].verifier`).
    pub verifiers: Vec<Arc<JwtVerifier>>,
    /// Rate limiters (`rate_limits[].limiter`).
    pub limiters: Vec<Arc<RateLimiter>>,
    /// The geo database, if `app.geo()` was called.
    pub geo: Option<Arc<GeoDb>>,
    /// The bot detector, if `app.bots()` was called.
    pub bots: Option<Arc<BotDetector>>,
}

/// A parsed origin: scheme and authority.
#[derive(Clone)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// host:port.
    pub authority: http::uri::Authority,
    /// Path prefix to prepend ("" for none).
    pub base_path: String,
    /// Its connection pool, looked up on first use (pools are keyed by scheme and authority and
    /// outlive the plan).
    pub pool: std::sync::OnceLock<Arc<super::proxy::OriginPool>>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

impl Origin {
    /// Parses `http://host:port[/base]`.
    pub fn parse(url: &str) -> Result<Origin> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| Error::config(format!("invalid origin URL {url:?}")))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| Error::config(format!("origin {url:?} needs http:// or https://")))?;
        if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
            return Err(Error::config(format!("origin {url:?} must be http:// or https://")));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| Error::config(format!("origin {url:?} has no host")))?;
        Ok(Origin {
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            pool: Default::default(),
        })
    }
}

/// A bot policy.
pub struct BotPolicy {
    /// The detector.
    pub detector: Arc<BotDetector>,
    /// true: 403; false: tag only.
    pub block: bool,
    /// User-Agents matching these are never treated as bots (e.g. a search engine you want).
    pub allow: Option<regex::RegexSet>,
}

/// A redirect rule.
pub struct Redirect {
    /// Where.
    pub paths: Matcher,
    /// For these countries only (None: all).
    pub country: Option<Vec<String>>,
    /// Location template.
    pub to: Template,
    /// Status.
    pub status: u16,
}

/// A rewrite rule.
pub struct Rewrite {
    /// Where.
    pub paths: Matcher,
    /// For these countries only.
    pub country: Option<Vec<String>>,
    /// The new path (template).
    pub to: Template,
}

/// An origin choice.
pub struct OriginRule {
    /// Where.
    pub paths: Matcher,
    /// Countries.
    pub country: Option<Vec<String>>,
    /// Continents.
    pub continent: Option<Vec<String>>,
    /// The origin.
    pub origin: Origin,
}

/// Header templates.
pub struct HeaderRule {
    /// Where.
    pub paths: Matcher,
    /// Toward the origin / handler.
    pub request: Vec<(HeaderName, Template)>,
    /// Toward the client.
    pub response: Vec<(HeaderName, Template)>,
}

/// A JWT policy.
pub struct JwtRule {
    /// Where.
    pub paths: Matcher,
    /// The verifier.
    pub verifier: Arc<JwtVerifier>,
    /// Read the token from this cookie when there is no Authorization header.
    pub cookie: Option<String>,
    /// Claim -> request header.
    pub claims_to_headers: Vec<(String, HeaderName)>,
}

/// Where a rate-limit key comes from.
pub enum LimitKey {
    /// The client IP.
    Ip,
    /// A request header.
    Header(HeaderName),
    /// A verified claim.
    Claim(String),
}

/// A rate-limit policy.
pub struct RateRule {
    /// Where.
    pub paths: Matcher,
    /// The limiter.
    pub limiter: Arc<RateLimiter>,
    /// The key.
    pub key: LimitKey,
    /// Prefix so two policies never share a bucket.
    pub namespace: String,
}

/// An A/B test.
pub struct AbRule {
    /// Where.
    pub paths: Matcher,
    /// The experiment.
    pub experiment: Experiment,
    /// Cookie holding the sticky variant.
    pub cookie: String,
    /// Header toward the origin.
    pub header: HeaderName,
}

/// A cache policy.
pub struct CacheRule {
    /// Where.
    pub paths: Matcher,
    /// The cache (one per rule).
    pub cache: Arc<HttpCache>,
    /// Key options.
    pub key: KeyOptions,
    /// What the cached content depends on: this rule and the origins, rewrites and header
    /// templates upstream of it. A reload keeps the cache of a rule whose identity is unchanged.
    pub identity: String,
    /// Concurrent misses of one key share one origin fetch.
    pub coalescer: Arc<crate::cache::coalesce::Coalescer<std::result::Result<crate::http::Response, (u16, String)>>>,
}

/// A Python route.
pub struct Route {
    /// The pattern (with parameters).
    pub path: Pattern,
    /// Allowed methods (empty: GET and HEAD).
    pub methods: Vec<http::Method>,
    /// Handler index.
    pub handler: usize,
}

/// A Python middleware.
pub struct Middleware {
    /// Where.
    pub matcher: Matcher,
    /// Handler index.
    pub handler: usize,
}

/// The compiled application.
pub struct Plan {
    /// The default origin.
    pub origin: Option<Origin>,
    /// Trusted proxies.
    pub trusted: TrustedProxies,
    /// Geo database.
    pub geo: Option<Arc<GeoDb>>,
    /// Bot policy.
    pub bots: Option<BotPolicy>,
    /// Redirects, in order.
    pub redirects: Vec<Redirect>,
    /// Rewrites, in order.
    pub rewrites: Vec<Rewrite>,
    /// Origin choices, in order.
    pub origins: Vec<OriginRule>,
    /// Header templates.
    pub headers: Vec<HeaderRule>,
    /// JWT policies.
    pub jwt: Vec<JwtRule>,
    /// Rate limits.
    pub rate_limits: Vec<RateRule>,
    /// A/B tests.
    pub ab_tests: Vec<AbRule>,
    /// Cache policies.
    pub cache: Vec<CacheRule>,
    /// Python routes.
    pub routes: Vec<Route>,
    /// Python middleware.
    pub middleware: Vec<Middleware>,
    /// Limits and timeouts.
    pub server: ServerSpec,
    /// Parser limits derived from `server`.
    pub limits: crate::http::Limits,
    /// TLS termination (certificate read when the plan was compiled), when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

fn header_name(n: &str) -> Result<HeaderName> {
    HeaderName::from_bytes(n.as_bytes()).map_err(|_| Error::config(format!("invalid header name {n:?}")))
}

fn upper(v: Option<Vec<String>>) -> Option<Vec<String>> {
    v.map(|v| v.into_iter().map(|c| c.to_ascii_uppercase()).collect())
}

fn secs(v: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| Error::config(format!("{what} must be a positive number of seconds")))
}

impl Plan {
    /// Compiles `spec` with `objects`.
    pub fn build(spec: AppSpec, objects: Objects) -> Result<Plan> {
        let upstream = format!(
            "{:?}|{:?}|{:?}|{:?}",
            spec.origin, spec.origins, spec.rewrites, spec.headers
        );
        let s = &spec.server;
        for (v, what) in [
            (s.header_read_timeout, "header_read_timeout"),
            (s.keep_alive_timeout, "keep_alive_timeout"),
            (s.handler_timeout, "handler_timeout"),
            (s.origin_connect_timeout, "origin_connect_timeout"),
            (s.origin_timeout, "origin_timeout"),
            (s.grace_period, "grace_period"),
        ] {
            secs(v, what)?;
        }
        let verifier = |i: usize| {
            objects
                .verifiers
                .get(i)
                .cloned()
                .ok_or_else(|| Error::config(format!("unknown verifier {i}")))
        };
        let limiter = |i: usize| {
            objects
                .limiters
                .get(i)
                .cloned()
                .ok_or_else(|| Error::config(format!("unknown limiter {i}")))
        };
        let bots = match spec.bots {
            None => None,
            Some(b) => {
                let detector = objects
                    .bots
                    .clone()
                    .ok_or_else(|| Error::config("bots() needs a bot detector"))?;
                let block = match b.action.as_str() {
                    "block" => true,
                    "tag" => false,
                    a => {
                        return Err(Error::config(format!(
                            "bots action must be \"block\" or \"tag\", not {a:?}"
                        )))
                    }
                };
                let allow = if b.allow.is_empty() {
                    None
                } else {
                    Some(
                        regex::RegexSet::new(&b.allow)
                            .map_err(|e| Error::config(format!("invalid bots allow pattern: {e}")))?,
                    )
                };
                Some(BotPolicy { detector, block, allow })
            }
        };
        let redirects = spec
            .redirects
            .into_iter()
            .map(|r| {
                crate::http::redirect("/", r.status)?;
                Ok(Redirect {
                    paths: Matcher::new(&r.paths)?,
                    country: upper(r.country),
                    to: Template::new(&r.to)?,
                    status: r.status,
                })
            })
            .collect::<Result<_>>()?;
        let rewrites = spec
            .rewrites
            .into_iter()
            .map(|r| {
                if !r.to.starts_with('/') {
                    return Err(Error::config(format!(
                        "rewrite target {:?} must be a path starting with /",
                        r.to
                    )));
                }
                Ok(Rewrite {
                    paths: Matcher::new(&r.paths)?,
                    country: upper(r.country),
                    to: Template::new(&r.to)?,
                })
            })
            .collect::<Result<_>>()?;
        let origins = spec
            .origins
            .into_iter()
            .map(|o| {
                Ok(OriginRule {
                    paths: Matcher::new(&o.paths)?,
                    country: upper(o.country),
                    continent: upper(o.continent),
                    origin: Origin::parse(&o.url)?,
                })
            })
            .collect::<Result<_>>()?;
        let templates = |m: BTreeMap<String, String>| -> Result<Vec<(HeaderName, Template)>> {
            m.into_iter()
                .map(|(k, v)| Ok((header_name(&k)?, Template::new(&v)?)))
                .collect()
        };
        let headers = spec
            .headers
            .into_iter()
            .map(|h| {
                Ok(HeaderRule {
                    paths: Matcher::new(&h.paths)?,
                    request: templates(h.request)?,
                    response: templates(h.response)?,
                })
            })
            .collect::<Result<_>>()?;
        let jwt = spec
            .jwt
            .into_iter()
            .map(|j| {
                Ok(JwtRule {
                    paths: Matcher::new(&j.paths)?,
                    verifier: verifier(j.verifier)?,
                    cookie: j.cookie,
                    claims_to_headers: j
                        .claims_to_headers
                        .into_iter()
                        .map(|(c, h)| Ok((c, header_name(&h)?)))
                        .collect::<Result<_>>()?,
                })
            })
            .collect::<Result<_>>()?;
        let rate_limits = spec
            .rate_limits
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let key = match r.key.split_once(':') {
                    None if r.key == "ip" => LimitKey::Ip,
                    Some(("header", n)) => LimitKey::Header(header_name(n)?),
                    Some(("claim", n)) if !n.is_empty() => LimitKey::Claim(n.to_owned()),
                    _ => {
                        return Err(Error::config(format!(
                            "rate limit key must be \"ip\", \"header:NAME\" or \"claim:NAME\", not {:?}",
                            r.key
                        )))
                    }
                };
                Ok(RateRule {
                    paths: Matcher::new(&r.paths)?,
                    limiter: limiter(r.limiter)?,
                    key,
                    namespace: format!("rl{i}:"),
                })
            })
            .collect::<Result<_>>()?;
        let ab_tests = spec
            .ab_tests
            .into_iter()
            .map(|a| {
                let weights: Vec<(String, f64)> = a.variants.into_iter().collect();
                let valid_name = !a.name.is_empty()
                    && a.name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid_name {
                    return Err(Error::config(format!(
                        "experiment name {:?} must be letters, digits, - or _",
                        a.name
                    )));
                }
                Ok(AbRule {
                    paths: Matcher::new(&a.paths)?,
                    cookie: format!("ec-ab-{}", a.name),
                    header: header_name(&format!("x-ab-{}", a.name.to_ascii_lowercase()))?,
                    experiment: Experiment::new(&a.name, &weights)?,
                })
            })
            .collect::<Result<_>>()?;
        let cache = spec
            .cache
            .into_iter()
            .map(|c| {
                if c.ttl.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
                    return Err(Error::config("cache ttl must be a positive number of seconds"));
                }
                Ok(CacheRule {
                    identity: format!("{upstream}|{c:?}"),
                    paths: Matcher::new(&c.paths)?,
                    cache: Arc::new(HttpCache::new(c.max_bytes.max(4096), c.ttl, 32)),
                    key: KeyOptions {
                        ignore_query: c.ignore_query,
                        ignore_params: c.ignore_params,
                    },
                    coalescer: Arc::default(),
                })
            })
            .collect::<Result<_>>()?;
        let routes = spec
            .routes
            .into_iter()
            .map(|r| {
                let methods = r
                    .methods
                    .iter()
                    .map(|m| {
                        http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                            .map_err(|_| Error::config(format!("invalid method {m:?}")))
                    })
                    .collect::<Result<_>>()?;
                Ok(Route {
                    path: Pattern::new(&r.path)?,
                    methods,
                    handler: r.handler,
                })
            })
            .collect::<Result<_>>()?;
        let middleware = spec
            .middleware
            .into_iter()
            .map(|m| {
                Ok(Middleware {
                    matcher: Matcher::new(&m.matcher)?,
                    handler: m.handler,
                })
            })
            .collect::<Result<_>>()?;
        let limits = crate::http::Limits {
            max_headers: 100,
            max_header_bytes: spec.server.max_header_bytes,
            max_uri_bytes: spec.server.max_uri_bytes,
            max_body_bytes: spec.server.max_body_bytes,
        };
        limits.validate()?;
        let tls = match (&spec.server.tls_cert, &spec.server.tls_key) {
            (Some(cert), Some(key)) => Some(super::tls::acceptor(cert, key)?),
            (None, None) => None,
            _ => return Err(Error::config("TLS needs both tls_cert and tls_key")),
        };
        if let Some(url) = &spec.server.purge_redis {
            super::purge::client(url, &spec.server.purge_channel)?;
        }
        Ok(Plan {
            origin: spec.origin.as_deref().map(Origin::parse).transpose()?,
            trusted: TrustedProxies::new(&spec.trusted_proxies)?,
            geo: objects.geo,
            bots,
            redirects,
            rewrites,
            origins,
            headers,
            jwt,
            rate_limits,
            ab_tests,
            cache,
            routes,
            middleware,
            server: spec.server,
            limits,
            tls,
        })
    }

    /// Human-readable warnings about risky configuration (shown at start).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.server.dev_mode {
            w.push(
                "dev mode is on: requests can set their geo, client IP and bot status through x-edge-dev-* headers"
                    .into(),
            );
        }
        // First-match policies: a rule whose paths an earlier rule already covers never applies.
        let first_match = |what: &str, rules: Vec<(&Matcher, bool)>, w: &mut Vec<String>| {
            for (i, (m, _)) in rules.iter().enumerate() {
                if let Some(j) = rules[..i]
                    .iter()
                    .position(|(e, unconditional)| *unconditional && m.shadowed_by(e))
                {
                    w.push(format!(
                        "{what} #{i} can never apply: {what} #{j} matches every path it does"
                    ));
                }
            }
        };
        first_match(
            "redirect",
            self.redirects.iter().map(|r| (&r.paths, r.country.is_none())).collect(),
            &mut w,
        );
        first_match(
            "rewrite",
            self.rewrites.iter().map(|r| (&r.paths, r.country.is_none())).collect(),
            &mut w,
        );
        first_match("jwt rule", self.jwt.iter().map(|r| (&r.paths, true)).collect(), &mut w);
        first_match(
            "cache rule",
            self.cache.iter().map(|r| (&r.paths, true)).collect(),
            &mut w,
        );
        if !self.trusted.is_empty() && self.jwt.is_empty() && self.rate_limits.is_empty() && self.geo.is_none() {
            w.push("trusted proxies are set but nothing uses the client IP".into());
        }
        if self.origin.is_none() && self.origins.is_empty() && self.routes.is_empty() {
            w.push("no origin and no routes: every request that no policy answers gets 404".into());
        }
        for (i, r) in self.routes.iter().enumerate() {
            for (j, earlier) in self.routes[..i].iter().enumerate() {
                if r.path.shadowed_by(&earlier.path)
                    && (earlier.methods.is_empty() || r.methods.iter().all(|m| earlier.methods.contains(m)))
                {
                    w.push(format!(
                        "route #{i} can never match: route #{j} matches every path it does"
                    ));
                }
            }
        }
        w
    }

    /// Names of the active policies, for the start-up message.
    pub fn summary(&self) -> Vec<String> {
        let mut s = Vec::new();
        let mut add = |n: usize, what: &str| {
            if n > 0 {
                s.push(format!("{n} {what}"));
            }
        };
        add(self.redirects.len(), "redirect(s)");
        add(self.rewrites.len(), "rewrite(s)");
        add(self.jwt.len(), "JWT polic(ies)");
        add(self.rate_limits.len(), "rate limit(s)");
        add(self.ab_tests.len(), "A/B test(s)");
        add(self.cache.len(), "cache rule(s)");
        add(self.headers.len(), "header rule(s)");
        add(self.routes.len(), "Python route(s)");
        add(self.middleware.len(), "Python middleware");
        if self.geo.is_some() {
            s.push("geo".into());
        }
        if self.bots.is_some() {
            s.push("bot detection".into());
        }
        if let Some(o) = &self.origin {
            s.push(format!("origin {}://{}", o.scheme, o.authority));
        }
        if let Some(url) = &self.server.purge_redis {
            s.push(format!(
                "cache purges broadcast on {url} channel {:?}",
                self.server.purge_channel
            ));
        }
        if let Some(cert) = &self.server.tls_cert {
            s.push(format!("TLS ({cert}; ALPN h2, http/1.1)"));
        }
        s
    }
}
