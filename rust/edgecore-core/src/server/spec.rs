//! The spec: the application as Python describes it, in serde types (JSON in, unknown fields
//! refused). Nothing here is validated beyond its shape; [`super::plan`] compiles it.

pub(crate) use crate::server::conditions::WhenSpec;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::auth::JwtVerifier;
use crate::classify::BotDetector;
use crate::geo::GeoDb;
use crate::limit::RateLimiter;

pub(crate) fn all_paths() -> Vec<String> {
    vec!["/*".into()]
}

/// Server limits and timeouts (seconds, bytes).
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// A WebSocket (or other upgraded) connection with no bytes either way for this long is
    /// closed.
    pub upgrade_idle_timeout: f64,
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
    /// An encoded slash or backslash in a path: "reject" (400), "keep" or "decode".
    pub escaped_slashes: String,
    /// `;` parameters in a path: "reject" (400), "strip" or "keep".
    pub path_params: String,
    /// The hosts this server answers for (`*.example.com` wildcards; None: any); others get 421.
    pub allowed_hosts: Option<Vec<String>>,
    /// IPv6 clients share a rate-limit bucket per prefix of this many bits (an address per
    /// client would let one rotate through its /64).
    pub ipv6_prefix: u8,
    /// Serve the metrics on this separate address (`host:port`) instead of the public port.
    pub admin_addr: Option<String>,
    /// Keep the headers the edge owns on requests from trusted proxies (when the proxy in front
    /// is another edge that set them). Off: even a trusted load balancer's are removed.
    pub trust_proxy_headers: bool,
    /// Path patterns match without regard to ASCII case (for origins that route `/LOGIN` to
    /// `/login`); the path itself reaches the origin unchanged.
    pub case_insensitive_paths: bool,
    /// Who may read `metrics_path` on the public port (CIDRs; loopback by default). Anyone else
    /// gets that path like any other: through every policy, to the origin.
    pub metrics_allow: Vec<String>,
    /// Who may ask why a request was answered as it was (`X-Edge-Explain: 1`, `?__explain`):
    /// CIDRs (none by default; anyone in dev mode).
    pub explain_allow: Vec<String>,
    /// The origin is never contacted: a request that would be proxied is answered 200 with
    /// where it would have gone (for `edgecore explain`).
    pub dry_run: bool,
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
            upgrade_idle_timeout: 300.0,
            dev_mode: false,
            threads: 0,
            access_log: None,
            metrics_path: None,
            tls_cert: None,
            tls_key: None,
            purge_redis: None,
            purge_channel: super::purge::DEFAULT_CHANNEL.to_owned(),
            escaped_slashes: "reject".to_owned(),
            path_params: "reject".to_owned(),
            allowed_hosts: None,
            ipv6_prefix: 64,
            admin_addr: None,
            case_insensitive_paths: false,
            trust_proxy_headers: false,
            metrics_allow: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
            explain_allow: Vec::new(),
            dry_run: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BotsSpec {
    pub(crate) action: String,
    #[serde(default)]
    pub(crate) allow: Vec<String>,
    /// Evaluate and record, never reject.
    #[serde(default)]
    pub(crate) shadow: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedirectSpec {
    pub(crate) to: String,
    #[serde(default = "default_redirect")]
    pub(crate) status: u16,
    #[serde(default = "all_paths")]
    pub(crate) paths: Vec<String>,
    #[serde(default)]
    pub(crate) when: WhenSpec,
    /// Paths taken back out of `paths`.
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
}

fn default_redirect() -> u16 {
    302
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RewriteSpec {
    pub(crate) to: String,
    #[serde(default = "all_paths")]
    pub(crate) paths: Vec<String>,
    #[serde(default)]
    pub(crate) when: WhenSpec,
    /// Paths taken back out of `paths`.
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OriginSpec {
    pub(crate) url: String,
    #[serde(default)]
    pub(crate) when: WhenSpec,
    #[serde(default = "all_paths")]
    pub(crate) paths: Vec<String>,
    /// Paths taken back out of `paths`.
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
}

/// `app.upstream(name, targets, ...)`: several targets behind one name (`upstream:NAME`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamSpec {
    pub(crate) name: String,
    pub(crate) targets: Vec<String>,
    #[serde(default = "default_balance")]
    pub(crate) balance: String,
    #[serde(default = "default_eject_after")]
    pub(crate) eject_after: u32,
    #[serde(default = "default_eject_for")]
    pub(crate) eject_for: f64,
    #[serde(default = "default_eject_max")]
    pub(crate) eject_max: f64,
    #[serde(default = "default_max_ejected_percent")]
    pub(crate) max_ejected_percent: u32,
    #[serde(default = "default_retries")]
    pub(crate) retries: u32,
    #[serde(default = "default_retry_budget")]
    pub(crate) retry_budget: f64,
    /// One per target (all 1 when absent).
    #[serde(default)]
    pub(crate) weights: Option<Vec<u32>>,
    #[serde(default)]
    pub(crate) health: Option<HealthCheckSpec>,
    /// Requests in flight at most (0: no limit).
    #[serde(default)]
    pub(crate) max_requests: u32,
    /// Requests waiting for a connection at most (0: no limit).
    #[serde(default)]
    pub(crate) max_pending: u32,
}

/// `app.upstream(..., health={...})`: the active health check.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthCheckSpec {
    pub(crate) path: String,
    #[serde(default = "default_check_interval")]
    pub(crate) interval: f64,
    #[serde(default = "default_check_timeout")]
    pub(crate) timeout: f64,
    #[serde(default = "default_check_healthy")]
    pub(crate) healthy: u32,
    #[serde(default = "default_check_unhealthy")]
    pub(crate) unhealthy: u32,
}

fn default_check_interval() -> f64 {
    5.0
}
fn default_check_timeout() -> f64 {
    1.0
}
fn default_check_healthy() -> u32 {
    2
}
fn default_check_unhealthy() -> u32 {
    3
}

fn default_balance() -> String {
    "round_robin".into()
}
fn default_eject_after() -> u32 {
    3
}
fn default_eject_for() -> f64 {
    10.0
}
fn default_eject_max() -> f64 {
    300.0
}
fn default_max_ejected_percent() -> u32 {
    50
}
fn default_retries() -> u32 {
    1
}
fn default_retry_budget() -> f64 {
    0.2
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeadersSpec {
    #[serde(default = "all_paths")]
    pub(crate) paths: Vec<String>,
    #[serde(default)]
    pub(crate) request: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) response: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) when: WhenSpec,
    /// Paths taken back out of `paths`.
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JwtSpec {
    pub(crate) paths: Vec<String>,
    pub(crate) verifier: usize,
    #[serde(default)]
    pub(crate) cookie: Option<String>,
    #[serde(default)]
    pub(crate) claims_to_headers: BTreeMap<String, String>,
    /// Paths taken back out of `paths`.
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
    /// Evaluate and record, never reject.
    #[serde(default)]
    pub(crate) shadow: bool,
    /// Verified tokens remembered (0: verify every request).
    #[serde(default = "default_token_cache")]
    pub(crate) cache_size: usize,
}

fn default_token_cache() -> usize {
    4096
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateSpec {
    pub(crate) paths: Vec<String>,
    pub(crate) limiter: usize,
    #[serde(default = "default_key")]
    pub(crate) key: String,
    /// "draft", "legacy", "both" or "none".
    #[serde(default = "default_rate_fields")]
    pub(crate) headers: String,
    /// Paths taken back out of `paths`.
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
    /// Evaluate and record, never reject.
    #[serde(default)]
    pub(crate) shadow: bool,
}

fn default_rate_fields() -> String {
    "draft".into()
}

fn default_key() -> String {
    "ip".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AbSpec {
    pub(crate) name: String,
    pub(crate) variants: BTreeMap<String, f64>,
    #[serde(default = "all_paths")]
    pub(crate) paths: Vec<String>,
    /// Paths taken back out of `paths`.
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
    /// The sticky variant's cookie (default `ec-ab-NAME`).
    #[serde(default)]
    pub(crate) cookie: Option<String>,
    /// The visitor's unit id cookie the assignment hashes (default `ec-uid`).
    #[serde(default)]
    pub(crate) unit_cookie: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheSpec {
    pub(crate) paths: Vec<String>,
    #[serde(default)]
    pub(crate) ttl: Option<f64>,
    #[serde(default = "default_cache_bytes")]
    pub(crate) max_bytes: usize,
    #[serde(default)]
    pub(crate) ignore_query: bool,
    /// Seconds a stale copy may stand in for a failing origin when the response says nothing.
    #[serde(default)]
    pub(crate) stale_if_error: f64,
    #[serde(default)]
    pub(crate) ignore_params: Vec<String>,
    /// Fields whose values tag a stored response (None: `Cache-Tag` and `Surrogate-Key`).
    #[serde(default)]
    pub(crate) tag_fields: Option<Vec<String>>,
    /// Send the tag fields on to clients (off: they are for the cache only).
    #[serde(default)]
    pub(crate) forward_tags: bool,
    /// The targeted cache-control field only this cache obeys (None: `Edgecore-Cache-Control`).
    #[serde(default)]
    pub(crate) targeted_field: Option<String>,
    #[serde(default)]
    pub(crate) when: WhenSpec,
    /// Paths taken back out of `paths`.
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
}

fn default_cache_bytes() -> usize {
    64 << 20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteSpec {
    pub(crate) path: String,
    #[serde(default)]
    pub(crate) methods: Vec<String>,
    pub(crate) handler: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MiddlewareSpec {
    pub(crate) matcher: Vec<String>,
    pub(crate) handler: usize,
    /// Paths taken back out of `paths`.
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErrorPageSpec {
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) content_type: String,
}

/// The application as Python describes it.
#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AppSpec {
    pub(crate) origin: Option<String>,
    /// Named sets of targets, used as `upstream:NAME` wherever an origin URL goes.
    pub(crate) upstreams: Vec<UpstreamSpec>,
    /// Where this edge runs (`{location}`, `request.location`).
    pub(crate) location: Option<String>,
    pub(crate) trusted_proxies: Vec<String>,
    pub(crate) bots: Option<BotsSpec>,
    pub(crate) redirects: Vec<RedirectSpec>,
    pub(crate) rewrites: Vec<RewriteSpec>,
    pub(crate) origins: Vec<OriginSpec>,
    pub(crate) headers: Vec<HeadersSpec>,
    pub(crate) jwt: Vec<JwtSpec>,
    pub(crate) rate_limits: Vec<RateSpec>,
    pub(crate) ab_tests: Vec<AbSpec>,
    pub(crate) cache: Vec<CacheSpec>,
    pub(crate) routes: Vec<RouteSpec>,
    pub(crate) middleware: Vec<MiddlewareSpec>,
    pub(crate) error_pages: Vec<ErrorPageSpec>,
    pub(crate) access: Vec<AccessSpec>,
    pub(crate) https_only: Option<HttpsSpec>,
    pub(crate) cors: Vec<CorsSpec>,
    pub(crate) request_ids: Option<RequestIdSpec>,
    pub(crate) compress: Vec<CompressSpec>,
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
    /// The geo databases (`app.geo(...)`), looked up in order and merged.
    pub geo: Vec<Arc<GeoDb>>,
    /// The bot detector, if `app.bots()` was called.
    pub bots: Option<Arc<BotDetector>>,
}

/// `app.access(...)`: IP and country allow/deny lists on some paths.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccessSpec {
    #[serde(default = "all_paths")]
    pub(crate) paths: Vec<String>,
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
    #[serde(default)]
    pub(crate) allow_ips: Vec<String>,
    #[serde(default)]
    pub(crate) deny_ips: Vec<String>,
    #[serde(default)]
    pub(crate) allow_countries: Vec<String>,
    #[serde(default)]
    pub(crate) deny_countries: Vec<String>,
    #[serde(default = "default_forbidden")]
    pub(crate) status: u16,
    /// Evaluate and record, never reject.
    #[serde(default)]
    pub(crate) shadow: bool,
}

fn default_forbidden() -> u16 {
    403
}

/// `app.https_only(...)`: plain-HTTP requests redirected to HTTPS, with an optional HSTS field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpsSpec {
    #[serde(default = "default_https_status")]
    pub(crate) status: u16,
    #[serde(default)]
    pub(crate) hsts_max_age: Option<u64>,
    #[serde(default)]
    pub(crate) include_subdomains: bool,
    #[serde(default)]
    pub(crate) preload: bool,
}

fn default_https_status() -> u16 {
    308
}

/// `app.cors(...)`: CORS answered at the edge.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CorsSpec {
    #[serde(default = "all_paths")]
    pub(crate) paths: Vec<String>,
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
    pub(crate) origins: Vec<String>,
    pub(crate) methods: Vec<String>,
    #[serde(default)]
    pub(crate) headers: Vec<String>,
    #[serde(default)]
    pub(crate) expose: Vec<String>,
    #[serde(default)]
    pub(crate) credentials: bool,
    pub(crate) max_age: u64,
}

/// `app.request_ids(...)`: a request ID and W3C trace context on every request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestIdSpec {
    pub(crate) header: String,
    pub(crate) trace: bool,
}

/// `app.compress(...)`: responses compressed at the edge.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompressSpec {
    #[serde(default = "all_paths")]
    pub(crate) paths: Vec<String>,
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
    /// Codings in order of preference (`zstd`, `br`, `gzip`).
    pub(crate) algorithms: Vec<String>,
    /// Responses declared smaller than this are sent as they are.
    pub(crate) min_bytes: u64,
    /// Media types to compress (`text/*`, `application/*+json`); empty: the default list.
    #[serde(default)]
    pub(crate) types: Vec<String>,
    /// A level per coding (`{"br": 5}`); the others keep their default.
    #[serde(default)]
    pub(crate) levels: std::collections::BTreeMap<String, i32>,
    /// Responses compressed as they stream at once, at most.
    #[serde(default = "default_max_streams")]
    pub(crate) max_streams: usize,
}

fn default_max_streams() -> usize {
    256
}
