//! The compiled rules: one type per policy, and [`Plan`], which holds them in pipeline order.

use crate::server::conditions::Conditions;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};

use crate::auth::{JwtVerifier, TimeClaims, TokenCache};
use crate::cache::{HttpCache, KeyOptions};
use crate::classify::{BotDetector, Experiment};
use crate::geo::{GeoDb, TrustedProxies};
use crate::limit::RateLimiter;
use crate::server::matcher::{Matcher, Pattern};
use crate::server::spec::ServerSpec;
use crate::server::template::Template;
use crate::server::upstream::{Origin, OriginSet};

/// A bot policy.
pub struct BotPolicy {
    /// Shadow mode: evaluate and record, never block.
    pub shadow: bool,
    /// The detector.
    pub detector: Arc<BotDetector>,
    /// true: 403; false: tag only.
    pub block: bool,
    /// User-Agents matching these are never treated as bots (e.g. a search engine you want).
    pub allow: Option<regex::RegexSet>,
    /// Verdicts on User-Agents seen (up to `MAX_MEMO_UA` bytes each).
    pub memo: crate::memo::Memo<Box<str>, bool>,
}

impl BotPolicy {
    /// Longest User-Agent whose verdict is remembered; longer ones are classified every time.
    pub const MAX_MEMO_UA: usize = 512;
    /// User-Agents remembered.
    pub const MEMO_ENTRIES: usize = 8192;

    /// Whether `ua` is a bot that no allow pattern lets through; remembered per User-Agent, as
    /// the same few browsers come back on every request.
    pub fn detects(&self, ua: &str) -> bool {
        let remember = ua.len() <= Self::MAX_MEMO_UA;
        if remember {
            if let Some(v) = self.memo.get(ua, 0) {
                return v;
            }
        }
        let v = self.detector.is_bot(ua) && !self.allow.as_ref().is_some_and(|a| a.is_match(ua));
        if remember {
            self.memo.insert(ua.into(), 0, v);
        }
        v
    }
}

/// A redirect rule.
pub struct Redirect {
    /// Where.
    pub paths: Matcher,
    /// For which requests (country, device, cookie…).
    pub when: Conditions,
    /// Location template.
    pub to: Template,
    /// Status.
    pub status: u16,
}

/// A rewrite rule.
pub struct Rewrite {
    /// Where.
    pub paths: Matcher,
    /// For which requests.
    pub when: Conditions,
    /// The new path (template).
    pub to: Template,
}

/// An origin choice.
pub struct OriginRule {
    /// Where.
    pub paths: Matcher,
    /// For which requests (countries, continents…).
    pub when: Conditions,
    /// The origin: an index into [`Plan::upstreams`].
    pub origin: usize,
}

/// Header templates.
pub struct HeaderRule {
    /// Where.
    pub paths: Matcher,
    /// For which requests.
    pub when: Conditions,
    /// Toward the origin / handler.
    pub request: Vec<(HeaderName, Template)>,
    /// Toward the client.
    pub response: Vec<(HeaderName, Template)>,
}

/// A JWT policy.
pub struct JwtRule {
    /// Shadow mode: verify and record, never reject.
    pub shadow: bool,
    /// Where.
    pub paths: Matcher,
    /// The verifier.
    pub verifier: Arc<JwtVerifier>,
    /// Read the token from this cookie when there is no Authorization header.
    pub cookie: Option<String>,
    /// Claim -> request header.
    pub claims_to_headers: Vec<(String, HeaderName)>,
    /// Tokens verified on this rule (None: verify every request).
    pub cache: Option<TokenCache<VerifiedToken>>,
}

/// What a verified token gives a request: kept in the rule's token cache.
pub struct VerifiedToken {
    /// The claims.
    pub claims: Arc<serde_json::Map<String, serde_json::Value>>,
    /// The rule's claim headers, rendered.
    pub headers: Box<[(HeaderName, HeaderValue)]>,
    /// Re-checked against the clock on every use.
    pub times: TimeClaims,
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
    /// Shadow mode: count and record, never reject.
    pub shadow: bool,
    /// Which `RateLimit` fields its responses carry.
    pub fields: crate::server::respond::RateFields,
    /// Its `RateLimit-Policy` value (the limiter's quota and window do not change).
    pub policy: http::HeaderValue,
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
    /// Cookie holding the visitor's unit id (what a new assignment hashes).
    pub unit_cookie: String,
    /// Header toward the origin.
    pub header: HeaderName,
}

/// What a coalesced cache fill shares with its waiters: the fetched response when it was small
/// enough to hold (None: too large to store, so each waiter fetches for itself, streaming), or
/// the failure (status, message).
pub type FillResult = std::result::Result<Option<crate::http::Response>, (u16, String)>;

/// A cache policy.
pub struct CacheRule {
    /// Where.
    pub paths: Matcher,
    /// For which requests.
    pub when: Conditions,
    /// The cache (one per rule).
    pub cache: Arc<HttpCache>,
    /// Key options.
    pub key: KeyOptions,
    /// What the cached content depends on: this rule and the origins, rewrites and header
    /// templates upstream of it. A reload keeps the cache of a rule whose identity is unchanged.
    pub identity: String,
    /// Concurrent misses of one key share one origin fetch (see [`FillResult`]).
    pub coalescer: Arc<crate::cache::coalesce::Coalescer<FillResult>>,
    /// The tag fields reach clients (off: removed from every response on the rule's paths).
    pub forward_tags: bool,
}

/// A Python route.
pub struct Route {
    /// The pattern (with parameters).
    pub path: Pattern,
    /// Allowed methods (empty: GET and HEAD; GET brings HEAD with it).
    pub methods: Vec<http::Method>,
    /// Any method (`methods="*"`).
    pub any_method: bool,
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
    /// Where this edge runs (`Edge(location=...)`; empty when not set).
    pub location: Arc<str>,
    /// Custom bodies for the edge's own rejections.
    pub error_pages: Vec<crate::server::error_pages::ErrorPage>,
    /// Access lists.
    pub access: Vec<super::edge::AccessRule>,
    /// Plain HTTP redirected to HTTPS.
    pub https_only: Option<super::edge::HttpsOnly>,
    /// CORS rules.
    pub cors: Vec<super::edge::CorsRule>,
    /// Request IDs and trace context.
    pub request_ids: Option<super::edge::RequestIds>,
    /// Compression rules.
    pub compress: Vec<super::edge::CompressRule>,
    /// The default origin: an index into `upstreams`.
    pub origin: Option<usize>,
    /// Every origin of the plan as a set of targets (a plain URL is a set of one), by
    /// [`OriginSet::id`].
    pub upstreams: Vec<OriginSet>,
    /// Trusted proxies.
    pub trusted: TrustedProxies,
    /// Geo database.
    pub geo: Vec<Arc<GeoDb>>,
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
    /// The server settings as given (what a reload compares, the Python queue size).
    pub server: ServerSpec,
    /// The timeouts, as durations.
    pub timeouts: Timeouts,
    /// How the request target and Host are made canonical, and which headers the edge owns.
    pub request: RequestPolicy,
    /// Parser limits derived from `server`.
    pub limits: crate::http::Limits,
    /// TLS termination (the certificate and key read when the plan was compiled), when
    /// configured; each connection's acceptor is made from it.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// How requests are made canonical before any policy sees them.
#[derive(Debug, Clone)]
pub struct RequestPolicy {
    /// Path canonicalisation.
    pub path: crate::http::canonical::PathPolicy,
    /// The hosts answered for (lower case; a leading `*.` matches any subdomain). None: any.
    pub allowed_hosts: Option<Vec<String>>,
    /// IPv6 rate-limit keys are this prefix of the address.
    pub ipv6_prefix: u8,
    /// Who may read the metrics on the public port.
    pub metrics_allow: crate::geo::TrustedProxies,
    /// Who may ask for an explain trace (None: nobody; dev mode: anyone).
    pub explain: Option<crate::geo::TrustedProxies>,
    /// Header names the edge sets from configuration (claims to headers, request templates):
    /// removed from every client request, like the fixed ones (see `phases::owned`).
    pub owned_headers: Vec<HeaderName>,
}

/// Every timeout of the server, compiled from the spec's seconds (each positive and finite).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A request head must arrive whole within this of its first byte (or of connecting).
    pub header_read: Duration,
    /// A keep-alive connection may idle this long between requests.
    pub keep_alive: Duration,
    /// A Python handler must answer within this (504 beyond).
    pub handler: Duration,
    /// Connecting to the origin (504 beyond).
    pub origin_connect: Duration,
    /// The origin's response head (504 beyond).
    pub origin: Duration,
    /// In-flight requests get this long to finish at shutdown.
    pub grace: Duration,
    /// An upgraded connection (WebSocket) idle this long is closed.
    pub upgrade_idle: Duration,
}

impl Plan {
    /// Every origin target of the plan, in [`Origin::index`] order (each set's targets in turn).
    pub fn each_origin(&self) -> impl Iterator<Item = &Origin> {
        self.upstreams.iter().flat_map(|s| s.targets.iter())
    }
}
