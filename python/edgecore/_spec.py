"""The app description ``Edge`` builds and the Rust plan is compiled from, typed.

One ``TypedDict`` per policy, mirroring the serde types in ``rust/edgecore-core/src/server/spec.rs``
(which reject unknown fields); ``ServerSettings`` is what ``app.configure(...)`` accepts, so a
type checker reports a misspelled or mistyped setting where it is written, before
``configure()`` itself does at run time. ``tests/unit/test_configure.py`` checks that the
settings here and the Rust ones are the same set.
"""

from __future__ import annotations

from typing import Literal, TypedDict


class ServerSettings(TypedDict, total=False):
    """``app.configure(...)``: limits, timeouts, request safety, observability, TLS. Defaults and
    meaning: the README's "The server" and "Security model" sections."""

    header_read_timeout: float
    keep_alive_timeout: float
    max_body_bytes: int
    max_header_bytes: int
    max_uri_bytes: int
    max_connections: int
    python_queue: int
    handler_timeout: float
    origin_connect_timeout: float
    origin_timeout: float
    grace_period: float
    upgrade_idle_timeout: float
    dev_mode: bool
    threads: int
    access_log: str | None
    metrics_path: str | None
    tls_cert: str | None
    tls_key: str | None
    purge_redis: str | None
    purge_channel: str
    escaped_slashes: Literal["reject", "keep", "decode"]
    path_params: Literal["reject", "strip", "keep"]
    allowed_hosts: list[str] | None
    ipv6_prefix: int
    admin_addr: str | None
    trust_proxy_headers: bool
    case_insensitive_paths: bool
    metrics_allow: list[str]
    explain_allow: list[str]
    dry_run: bool


class WhenSpec(TypedDict, total=False):
    """A rule's conditions (``rust/edgecore-core/src/server/conditions.rs``)."""

    country: list[str]
    continent: list[str]
    device: list[str]
    cookie: dict[str, str | None]
    header: dict[str, str | None]


class BotsSpec(TypedDict):
    action: str
    allow: list[str]
    shadow: bool


class RedirectSpec(TypedDict):
    to: str
    status: int
    paths: list[str]
    when: WhenSpec
    exclude: list[str]


class RewriteSpec(TypedDict):
    to: str
    paths: list[str]
    when: WhenSpec
    exclude: list[str]


class OriginRuleSpec(TypedDict):
    url: str
    when: WhenSpec
    paths: list[str]
    exclude: list[str]


class HeadersSpec(TypedDict):
    paths: list[str]
    request: dict[str, str]
    response: dict[str, str]
    when: WhenSpec
    exclude: list[str]


class JwtSpec(TypedDict):
    paths: list[str]
    verifier: int
    cookie: str | None
    claims_to_headers: dict[str, str]
    shadow: bool
    exclude: list[str]
    cache_size: int


class RateLimitSpec(TypedDict):
    paths: list[str]
    limiter: int
    key: str
    shadow: bool
    headers: str
    exclude: list[str]


class _AbTestRequired(TypedDict):
    name: str
    variants: dict[str, float]
    paths: list[str]
    exclude: list[str]


class AbTestSpec(_AbTestRequired, total=False):
    cookie: str | None
    unit_cookie: str


class CacheSpec(TypedDict):
    paths: list[str]
    ttl: float | None
    stale_if_error: float
    max_bytes: int
    ignore_query: bool
    ignore_params: list[str]
    tag_fields: list[str] | None
    forward_tags: bool
    targeted_field: str | None
    when: WhenSpec
    exclude: list[str]


class RouteSpec(TypedDict):
    path: str
    methods: list[str]
    handler: int


class MiddlewareSpec(TypedDict):
    matcher: list[str]
    handler: int
    exclude: list[str]


class ErrorPageSpec(TypedDict):
    status: int
    body: str
    content_type: str


class AccessSpec(TypedDict):
    paths: list[str]
    exclude: list[str]
    allow_ips: list[str]
    deny_ips: list[str]
    allow_countries: list[str]
    deny_countries: list[str]
    status: int
    shadow: bool


class HttpsSpec(TypedDict):
    status: int
    hsts_max_age: int | None
    include_subdomains: bool
    preload: bool


class CorsSpec(TypedDict):
    paths: list[str]
    exclude: list[str]
    origins: list[str]
    methods: list[str]
    headers: list[str]
    expose: list[str]
    credentials: bool
    max_age: int


class CompressSpec(TypedDict):
    paths: list[str]
    exclude: list[str]
    algorithms: list[str]
    min_bytes: int
    types: list[str]
    levels: dict[str, int]
    max_streams: int


class RequestIdSpec(TypedDict):
    header: str
    trace: bool


class HealthCheckSpec(TypedDict, total=False):
    path: str
    interval: float
    timeout: float
    healthy: int
    unhealthy: int


class _UpstreamRequired(TypedDict):
    name: str
    targets: list[str]
    balance: str
    eject_after: int
    eject_for: float
    eject_max: float
    max_ejected_percent: int
    retries: int
    retry_budget: float
    max_requests: int
    max_pending: int


class UpstreamSpec(_UpstreamRequired, total=False):
    weights: list[int]
    health: HealthCheckSpec


class AppSpec(TypedDict, total=False):
    """The whole description (``Edge.spec_json()`` is this, as JSON)."""

    origin: str | None
    upstreams: list[UpstreamSpec]
    location: str
    trusted_proxies: list[str]
    bots: BotsSpec
    redirects: list[RedirectSpec]
    rewrites: list[RewriteSpec]
    origins: list[OriginRuleSpec]
    headers: list[HeadersSpec]
    jwt: list[JwtSpec]
    rate_limits: list[RateLimitSpec]
    ab_tests: list[AbTestSpec]
    cache: list[CacheSpec]
    routes: list[RouteSpec]
    middleware: list[MiddlewareSpec]
    error_pages: list[ErrorPageSpec]
    access: list[AccessSpec]
    https_only: HttpsSpec
    cors: list[CorsSpec]
    request_ids: RequestIdSpec
    compress: list[CompressSpec]
    server: ServerSettings
