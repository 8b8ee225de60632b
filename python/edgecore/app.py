"""The edge application: policies and Python handlers, compiled into a Rust plan at start.

``Edge`` only *describes* the app. Every policy method validates its arguments at once (a bad key,
pattern, URL or experiment raises ``ec.ConfigError`` where it is written) and builds the library
objects it needs (``JWTVerifier``, ``RateLimiter``, ``GeoDB``…). ``serve()``/``run()`` hand the
description to the Rust server, which compiles it into an immutable plan: serving a request that
no Python handler matches never touches the interpreter.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from edgecore import _core
from edgecore._spec import (
    AbTestSpec,
    AccessSpec,
    AppSpec,
    BotsSpec,
    CacheSpec,
    CompressSpec,
    CorsSpec,
    ErrorPageSpec,
    HeadersSpec,
    HttpsSpec,
    JwtSpec,
    OriginRuleSpec,
    RateLimitSpec,
    RedirectSpec,
    RequestIdSpec,
    RewriteSpec,
    ServerSettings,
    UpstreamSpec,
    WhenSpec,
)
from edgecore.env import Env, _deferred, await_deferring

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("edgecore")

#: The spec's keys that hold a list of rules (the others hold one object).
_RULE_LISTS = frozenset(
    {"access", "cors", "compress", "ab_tests", "redirects", "rewrites", "origins", "headers", "jwt"}
    | {"rate_limits", "cache"}
)

#: What dev mode (``configure(dev_mode=True)``, ``serve --dev``, the demo) lets any client do.
DEV_MODE_NOTE = (
    "dev mode: requests may set their client IP, country and bot status with the\n"
    "  X-Edge-Dev-Client-Ip, X-Edge-Dev-Country and X-Edge-Dev-Bot headers. Never in production."
)

# What a handler returns when it is done (no awaiting needed): checked by exact type first, since
# `inspect.isawaitable` costs ~10x as much and runs on every request.
_PLAIN = frozenset({str, bytes, dict, list, type(None), _core.Response})

Handler = Callable[..., Any]


def _paths(paths: str | Iterable[str]) -> list[str]:
    out = [paths] if isinstance(paths, str) else list(paths)
    if not out:
        raise _core.ConfigError("paths must name at least one pattern")
    _core.check_paths(out, [])
    return out


def _exclude(exclude: str | Iterable[str]) -> list[str]:
    out = [exclude] if isinstance(exclude, str) else list(exclude)
    if out:
        _core.check_paths(["/*"], out)
    return out


def _countries(c: str | Iterable[str] | None) -> list[str] | None:
    if c is None:
        return None
    return [c] if isinstance(c, str) else list(c)


_DEVICES = ("mobile", "tablet", "desktop", "bot")

#: A cookie or header condition: a name (must be present), or names mapped to the value each
#: must have (None: present with any value).
Presence = str | Iterable[str] | Mapping[str, str | None] | None


def _presence(what: str, spec: Presence) -> dict[str, str | None]:
    if spec is None:
        return {}
    if isinstance(spec, str):
        return {spec: None}
    if isinstance(spec, Mapping):
        out = dict(spec)
    else:
        out = dict.fromkeys(spec)
    for name, value in out.items():
        if not isinstance(name, str) or not (value is None or isinstance(value, str)):
            raise _core.ConfigError(f"{what} condition must map names to str values (or None), not {name!r}: {value!r}")
    return out


def _when(
    country: str | Iterable[str] | None = None,
    continent: str | Iterable[str] | None = None,
    device: str | Iterable[str] | None = None,
    cookie: Presence = None,
    header: Presence = None,
) -> WhenSpec:
    """The conditions of a rule: every one given must hold for the rule to apply."""
    when: WhenSpec = {}
    if country is not None:
        when["country"] = _countries(country) or []
    if continent is not None:
        when["continent"] = _countries(continent) or []
    if device is not None:
        devices = _countries(device) or []
        bad = [d for d in devices if d not in _DEVICES]
        if bad:
            raise _core.ConfigError(f"device {bad[0]!r} is not one of {', '.join(map(repr, _DEVICES))}")
        when["device"] = devices
    if cookie is not None:
        when["cookie"] = _presence("cookie", cookie)
    if header is not None:
        when["header"] = _presence("header", header)
    return when


def _number(v: Any, where: str) -> float:
    """``v`` as a float, or an ``ec.ConfigError`` naming ``where``."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _core.ConfigError(f"{where} must be a finite number, got {v!r}")
    return float(v)


class Edge:
    """An edge application. Requests no rule or handler answers go to ``origin``."""

    def __init__(
        self,
        origin: str | Sequence[str] | None = None,
        *,
        location: str | None = None,
        vars: Mapping[str, str] | None = None,
    ) -> None:
        """``origin``: a URL, ``"upstream:NAME"`` (see :meth:`upstream`), or a list of URLs
        (an upstream named "default" with the default settings). ``location`` names where this
        edge runs (``request.location``, ``{location}``; default: ``EDGECORE_LOCATION``, else the
        host name); ``vars`` are variables and secrets handlers read as ``env.vars``."""
        targets = None
        if origin is not None and not isinstance(origin, str):
            targets, origin = list(origin), "upstream:default"
        self._spec: AppSpec = {
            "origin": origin,
            "upstreams": [],
            "location": location or os.environ.get("EDGECORE_LOCATION") or socket.gethostname(),
            "trusted_proxies": [],
            "redirects": [],
            "rewrites": [],
            "origins": [],
            "headers": [],
            "jwt": [],
            "rate_limits": [],
            "ab_tests": [],
            "cache": [],
            "routes": [],
            "middleware": [],
            "error_pages": [],
            "access": [],
            "cors": [],
            "compress": [],
            "server": {},
        }
        self._handlers: list[Handler] = []
        self._verifiers: list[_core.JWTVerifier] = []
        self._limiters: list[_core.RateLimiter] = []
        self._geo: list[_core.GeoDB] = []
        self._bots: _core.BotDetector | None = None
        self._kv: dict[str, _core.KV] = {}
        self._local_kv: set[str] = set()
        self._named_limiters: dict[str, _core.RateLimiter] = {}
        self._vars: dict[str, str] = {}
        if vars is not None:
            self.vars(vars)
        if targets is not None:
            self.upstream("default", targets)
        elif origin is not None:
            self._check_origin(origin)

    # ---- policies ----

    @staticmethod
    def _check_origin(url: str) -> None:
        if url.startswith("upstream:") and len(url) > len("upstream:"):
            return  # checked against the defined upstreams when the plan is built
        if not (url.startswith("http://") or url.startswith("https://")):
            raise _core.ConfigError(f"origin {url!r} must start with http:// or https:// (or be upstream:NAME)")

    def upstream(
        self,
        name: str,
        targets: Sequence[str],
        *,
        balance: str = "round_robin",
        weights: Sequence[int] | None = None,
        health: Mapping[str, Any] | None = None,
        eject_after: int = 3,
        eject_for: float = 10.0,
        eject_max: float = 300.0,
        max_ejected_percent: int = 50,
        retries: int = 1,
        retry_budget: float = 0.2,
        max_requests: int = 0,
        max_pending: int = 0,
    ) -> Edge:
        """Several origin targets behind one name, used as ``"upstream:NAME"`` wherever an origin
        URL goes (``Edge(origin=)``, ``origin_for``).

        ``balance``: ``"round_robin"`` (in turn; smooth weighted with ``weights``),
        ``"least_conn"`` (fewest requests in flight per weight), ``"random_two"`` (the less busy
        of two at random), or consistent hashing of ``"hash:ip"``, ``"hash:header:NAME"`` or
        ``"hash:claim:NAME"`` (a key keeps its target while that target is up; a request
        without the key goes round robin). ``weights``: one whole number 1..100 per target.

        ``health={"path": "/healthz", "interval": 5, "timeout": 1, "healthy": 2,
        "unhealthy": 3}``: each target is asked for ``path`` every ``interval`` seconds;
        ``unhealthy`` failures in a row (no 2xx/3xx within ``timeout``) take it out,
        ``healthy`` successes bring it back.

        Passive checks: ``eject_after`` failures in a row (a refused or failed connection, a
        timeout, a 5xx answer) take a target out for ``eject_for`` seconds, doubled each time it
        fails again on return, up to ``eject_max``; at most ``max_ejected_percent`` of the
        targets are out at once, never all. A request that could not connect, or an idempotent
        one whose exchange failed and whose body is in hand, is tried on another target up to
        ``retries`` times, while retries stay under ``retry_budget`` of the requests (plus a
        burst of 10). Circuit breaking: over ``max_requests`` requests in flight or
        ``max_pending`` waiting for a connection (0: no limit), the edge answers 503 with
        ``Retry-After`` at once."""
        if not isinstance(name, str):
            raise _core.ConfigError(f"upstream name must be a string, got {name!r}")
        if isinstance(targets, str) or not isinstance(targets, Sequence):
            raise _core.ConfigError(f"upstream {name!r} needs a list of target URLs, got {targets!r}")
        if any(u["name"] == name for u in self._spec["upstreams"]):
            raise _core.ConfigError(f"upstream {name!r} is defined twice")
        for what, v in (
            ("eject_after", eject_after),
            ("max_ejected_percent", max_ejected_percent),
            ("retries", retries),
            ("max_requests", max_requests),
            ("max_pending", max_pending),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise _core.ConfigError(f"upstream {name!r}: {what} must be a whole number >= 0, got {v!r}")
        spec: UpstreamSpec = {
            "name": name,
            "targets": list(targets),
            "balance": balance,
            "eject_after": eject_after,
            "eject_for": _number(eject_for, f"upstream {name!r}: eject_for"),
            "eject_max": _number(eject_max, f"upstream {name!r}: eject_max"),
            "max_ejected_percent": max_ejected_percent,
            "retries": retries,
            "retry_budget": _number(retry_budget, f"upstream {name!r}: retry_budget"),
            "max_requests": max_requests,
            "max_pending": max_pending,
        }
        if weights is not None:
            spec["weights"] = list(weights)
        if health is not None:
            spec["health"] = dict(health)  # type: ignore[typeddict-item]
        try:
            text = json.dumps({"upstreams": [spec]}, allow_nan=False)
        except ValueError:
            raise _core.ConfigError(f"upstream {name!r}: health settings must be finite numbers") from None
        _core.check_app(text)
        self._spec["upstreams"].append(spec)
        return self

    def trust_proxies(self, cidrs: Iterable[str]) -> Edge:
        """X-Forwarded-For is believed only from peers in these CIDRs."""
        cidrs = list(cidrs)
        _core.client_ip("127.0.0.1", None, cidrs)  # validates
        self._spec["trusted_proxies"] = cidrs
        return self

    def geo(self, *databases: str | os.PathLike[str]) -> Edge:
        """Look up every client in these MaxMind databases (City, Country, ASN): ``request.geo``
        is one record, each field from the first database that knows it, so a City and an ASN
        database combine. A later call adds to the earlier ones."""
        if not databases:
            raise _core.ConfigError("geo needs at least one database path")
        self._geo.extend(_core.GeoDB(d) for d in databases)
        return self

    def bots(self, action: str = "block", allow: Iterable[str] = (), *, shadow: bool = False) -> Edge:
        """Detect bots by User-Agent: "block" answers 403, "tag" adds ``x-edge-bot: 1`` toward the
        origin. ``allow`` names bots to let through, each matched as a product token
        (``["Googlebot"]`` allows ``Googlebot/2.1``, not ``NotGooglebot``; ``re:`` gives a regex).
        With ``shadow``, "block" only records what it would have blocked (metrics, access log)."""
        spec: BotsSpec = {"action": action, "allow": list(allow), "shadow": shadow}
        detector = self._bots or _core.BotDetector()
        self._checked("bots", spec, bots=detector)
        self._bots = detector
        self._spec["bots"] = spec
        return self

    def redirect(
        self,
        *,
        to: str,
        status: int = 302,
        paths: str | Iterable[str] = ("/*",),
        country: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] = (),
        continent: str | Iterable[str] | None = None,
        device: str | Iterable[str] | None = None,
        cookie: Presence = None,
        header: Presence = None,
    ) -> Edge:
        """Redirect matching requests (``to`` may use ``{path}``, ``{path_and_query}``,
        ``{geo.country}``…), when every condition given holds."""
        _core.redirect("/", status)  # a status that is not an int: a TypeError naming `status`
        spec: RedirectSpec = {
            "to": to,
            "status": status,
            "paths": _paths(paths),
            "when": _when(country, continent, device, cookie, header),
            "exclude": _exclude(exclude),
        }
        self._checked("redirects", spec)
        self._spec["redirects"].append(spec)
        return self

    def rewrite(
        self,
        *,
        to: str,
        paths: str | Iterable[str] = ("/*",),
        country: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] = (),
        continent: str | Iterable[str] | None = None,
        device: str | Iterable[str] | None = None,
        cookie: Presence = None,
        header: Presence = None,
    ) -> Edge:
        """Serve another path, without the client seeing a redirect, when every condition given
        holds."""
        spec: RewriteSpec = {
            "to": to,
            "paths": _paths(paths),
            "when": _when(country, continent, device, cookie, header),
            "exclude": _exclude(exclude),
        }
        self._checked("rewrites", spec)
        self._spec["rewrites"].append(spec)
        return self

    def origin_for(
        self,
        url: str,
        *,
        country: str | Iterable[str] | None = None,
        continent: str | Iterable[str] | None = None,
        paths: str | Iterable[str] = ("/*",),
        exclude: str | Iterable[str] = (),
        device: str | Iterable[str] | None = None,
        cookie: Presence = None,
        header: Presence = None,
    ) -> Edge:
        """Send matching clients (by country, continent, device, cookie or header) to this origin
        instead of the default."""
        self._check_origin(url)
        spec: OriginRuleSpec = {
            "url": url,
            "when": _when(country, continent, device, cookie, header),
            "paths": _paths(paths),
            "exclude": _exclude(exclude),
        }
        self._checked("origins", spec)
        self._spec["origins"].append(spec)
        return self

    def headers(
        self,
        *,
        paths: str | Iterable[str] = ("/*",),
        request: dict[str, str] | None = None,
        response: dict[str, str] | None = None,
        exclude: str | Iterable[str] = (),
        country: str | Iterable[str] | None = None,
        continent: str | Iterable[str] | None = None,
        device: str | Iterable[str] | None = None,
        cookie: Presence = None,
        header: Presence = None,
    ) -> Edge:
        """Set headers toward the origin (``request``) and the client (``response``). Values may use
        ``{geo.country} {geo.region} {geo.city} {geo.continent} {claims.NAME} {variant.NAME}
        {client_ip} {bot} {device} {cookie.NAME} {header.NAME} {location} {path} {query}
        {path_and_query}``, each with a default after ``|`` (``{geo.country|US}``); a value that
        is unknown with no default sends no header."""
        spec: HeadersSpec = {
            "paths": _paths(paths),
            "request": dict(request or {}),
            "response": dict(response or {}),
            "when": _when(country, continent, device, cookie, header),
            "exclude": _exclude(exclude),
        }
        self._checked("headers", spec)
        self._spec["headers"].append(spec)
        return self

    def jwt(
        self,
        *,
        paths: str | Iterable[str],
        key: Any = None,
        algorithms: list[str],
        audience: str | list[str] | None = None,
        issuer: str | list[str] | None = None,
        leeway: float = 0,
        jwks: dict[str, Any] | None = None,
        jwks_url: str | None = None,
        cookie: str | None = None,
        claims_to_headers: dict[str, str] | None = None,
        required_claims: list[str] | None = None,
        exclude: str | Iterable[str] = (),
        shadow: bool = False,
        cache_size: int = 4096,
        max_token_bytes: int = 8192,
        jwks_refresh: float = 300.0,
        jwks_min_interval: float = 10.0,
        jwks_timeout: float = 5.0,
        jwks_strict: bool = False,
    ) -> Edge:
        """Require a valid JWT (Authorization: Bearer, or ``cookie``); 401 otherwise. With
        ``shadow``, tokens are verified and the verdicts recorded (metrics, access log), but no
        request is refused (one without a valid token goes on without claims).

        ``cache_size`` verified tokens are remembered, so a session's token is verified once
        (its ``exp``/``nbf``/``iat`` are still checked on every request; a JWK Set that changes
        forgets them); 0 verifies every request. ``jwks_refresh`` is how often a ``jwks_url`` is
        fetched again, ``jwks_min_interval`` the least time between fetches for an unknown
        ``kid``. A ``jwks_url`` that cannot be fetched now does not stop the app: tokens are
        refused (401) and the set is fetched again with backoff until it arrives, unless
        ``jwks_strict`` makes it a ``ConfigError`` here. ``required_claims`` defaults to
        ``["exp"]``: a token without an expiry is refused."""
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise _core.ConfigError(f"jwt cache_size must be a whole number >= 0, got {cache_size!r}")
        kwargs: dict[str, Any] = {"algorithms": algorithms, "audience": audience, "issuer": issuer, "leeway": leeway}
        kwargs.update(max_token_bytes=max_token_bytes, jwks_refresh=jwks_refresh)
        kwargs.update(jwks_min_interval=jwks_min_interval, jwks_timeout=jwks_timeout, jwks_strict=jwks_strict)
        if required_claims is not None:
            kwargs["required_claims"] = required_claims
        verifier = _core.JWTVerifier(key, jwks=jwks, jwks_url=jwks_url, **kwargs)
        spec: JwtSpec = {
            "paths": _paths(paths),
            "verifier": len(self._verifiers),
            "cookie": cookie,
            "claims_to_headers": dict(claims_to_headers or {}),
            "exclude": _exclude(exclude),
            "shadow": shadow,
            "cache_size": cache_size,
        }
        self._checked("jwt", spec, verifier=verifier)
        self._verifiers.append(verifier)
        self._spec["jwt"].append(spec)
        return self

    def rate_limit(
        self,
        *,
        paths: str | Iterable[str],
        limit: int,
        period: float,
        burst: int | None = None,
        key: str = "ip",
        store: str | None = None,
        on_store_error: str = "open",
        store_timeout: float = 0.05,
        exclude: str | Iterable[str] = (),
        shadow: bool = False,
        headers: str = "draft",
        sync: float | None = None,
    ) -> Edge:
        """Limit matching requests per key ("ip", "header:NAME" or "claim:NAME"); 429 beyond.
        With ``store`` and ``sync`` (seconds), the limit is local-first: each node decides in
        process (a check never waits on Redis) and reconciles with the store every ``sync``
        seconds in the background; the README states how far N nodes can overshoot.
        With a Redis ``store`` the limit is shared by every node; a check that gets no answer
        within ``store_timeout`` seconds follows ``on_store_error`` ("open": allow, "closed":
        reject, "local": this node's own limiter). With ``shadow``, requests are counted and
        what the limit would have refused is recorded (metrics, access log), never refused.
        ``headers``: the fields responses carry: "draft" (the current IETF draft:
        ``RateLimit-Policy: "default";q=LIMIT;w=PERIOD`` and ``RateLimit: "default";r=LEFT;t=RESET``),
        "legacy" (``RateLimit-Limit/Remaining/Reset``, the limit being the bucket's ``burst``),
        "both" or "none"."""
        limiter = _core.RateLimiter(
            limit, period, burst=burst, store=store, timeout=store_timeout, on_store_error=on_store_error, sync=sync
        )
        spec: RateLimitSpec = {
            "paths": _paths(paths),
            "limiter": len(self._limiters),
            "key": key,
            "exclude": _exclude(exclude),
            "shadow": shadow,
            "headers": headers,
        }
        self._checked("rate_limits", spec, limiter=limiter)
        self._limiters.append(limiter)
        self._spec["rate_limits"].append(spec)
        return self

    def ab_test(
        self,
        name: str,
        variants: dict[str, float],
        *,
        paths: str | Iterable[str] = ("/*",),
        exclude: str | Iterable[str] = (),
        cookie: str | None = None,
        unit_cookie: str = "ec-uid",
    ) -> Edge:
        """Assign each client a sticky variant (kept in the cookie ``cookie``, by default
        ``ec-ab-NAME``), forwarded as ``x-ab-NAME``. A new visitor's variant is drawn from its
        unit id, kept in ``unit_cookie`` (``ec-uid``; share it between experiments to assign by
        visitor). Both cookies are ``SameSite=Lax``, the unit id ``HttpOnly``, and both
        ``Secure`` when the request came over TLS."""
        spec: AbTestSpec = {
            "name": name,
            "variants": dict(variants),
            "paths": _paths(paths),
            "exclude": _exclude(exclude),
            "cookie": cookie,
            "unit_cookie": unit_cookie,
        }
        self._checked("ab_tests", spec)
        self._spec["ab_tests"].append(spec)
        return self

    def cache(
        self,
        *,
        paths: str | Iterable[str],
        ttl: float | None = None,
        max_bytes: int = 64 << 20,
        ignore_query: bool = False,
        ignore_params: Iterable[str] = (),
        tag_fields: Iterable[str] | None = None,
        forward_tags: bool = False,
        targeted_field: str | None = None,
        exclude: str | Iterable[str] = (),
        country: str | Iterable[str] | None = None,
        continent: str | Iterable[str] | None = None,
        device: str | Iterable[str] | None = None,
        cookie: Presence = None,
        header: Presence = None,
        stale_if_error: float = 0,
    ) -> Edge:
        """Cache matching GET responses as a shared cache (RFC 9111); ``ttl`` applies to responses
        without their own freshness. ``stale_if_error`` seconds past freshness, a stored copy
        stands in (``x-cache: STALE``) when the origin answers 500/502/503/504, times out or
        cannot be reached, for responses that carry no ``stale-if-error`` of their own.
        Responses are tagged by the values of ``tag_fields`` (``Cache-Tag`` and ``Surrogate-Key``
        by default) for ``purge(tag=...)``; those fields reach clients only with ``forward_tags``.
        ``targeted_field`` renames the cache-control field only this cache obeys
        (``Edgecore-Cache-Control``; RFC 9213)."""
        if isinstance(stale_if_error, bool) or not isinstance(stale_if_error, (int, float)) or not stale_if_error >= 0:
            raise _core.ConfigError(f"cache stale_if_error must be a number of seconds >= 0, got {stale_if_error!r}")
        spec: CacheSpec = {
            "paths": _paths(paths),
            "ttl": ttl,
            "stale_if_error": float(stale_if_error),
            "max_bytes": max_bytes,
            "ignore_query": ignore_query,
            "ignore_params": list(ignore_params),
            "tag_fields": None if tag_fields is None else list(tag_fields),
            "forward_tags": forward_tags,
            "targeted_field": targeted_field,
            "when": _when(country, continent, device, cookie, header),
            "exclude": _exclude(exclude),
        }
        self._checked("cache", spec)
        self._spec["cache"].append(spec)
        return self

    def error_response(
        self,
        status: int,
        body: str | dict[str, Any] | list[Any],
        *,
        content_type: str | None = None,
    ) -> Edge:
        """The body of the responses the edge writes itself with ``status`` (401, 403, 404, 405,
        429, 502, 503, 504…) instead of the one-line plain-text default. A str body may use
        ``{status}``, ``{reason}``, ``{retry_after}``, ``{limit}``, ``{remaining}`` and
        ``{location}`` (other braces are text, so a JSON body can be written as a str); a dict
        or list is sent as JSON. The status, ``Retry-After``, ``WWW-Authenticate``,
        ``RateLimit-*`` and ``Allow`` fields stay as they are. Responses from the origin, a
        handler or middleware are never changed."""
        if isinstance(body, (dict, list)):
            text = json.dumps(body)
            content_type = content_type or "application/json"
        elif isinstance(body, str):
            text = body
            content_type = content_type or "text/plain; charset=utf-8"
        else:
            raise _core.ConfigError(f"error_response body must be a str, dict or list, not {type(body).__name__}")
        page: ErrorPageSpec = {"status": status, "body": text, "content_type": content_type}
        _core.check_error_page(json.dumps(page), self._spec["location"])
        self._spec["error_pages"] = [p for p in self._spec["error_pages"] if p["status"] != status] + [page]
        return self

    def access(
        self,
        *,
        paths: str | Iterable[str] = ("/*",),
        allow_ips: Iterable[str] = (),
        deny_ips: Iterable[str] = (),
        allow_countries: str | Iterable[str] = (),
        deny_countries: str | Iterable[str] = (),
        status: int = 403,
        exclude: str | Iterable[str] = (),
        shadow: bool = False,
    ) -> Edge:
        """Keep clients out by IP (CIDRs, IPv4 and IPv6) and country, right after the client IP
        and geo are known: a client in ``deny_ips`` or from ``deny_countries`` gets ``status``;
        with an allow list, only clients in ``allow_ips`` or from ``allow_countries`` get in (a
        client whose country is unknown matches no country). Every matching rule applies."""
        spec: AccessSpec = {
            "paths": _paths(paths),
            "exclude": _exclude(exclude),
            "allow_ips": list(allow_ips),
            "deny_ips": list(deny_ips),
            "allow_countries": _countries(allow_countries) or [],
            "deny_countries": _countries(deny_countries) or [],
            "status": status,
            "shadow": shadow,
        }
        self._checked("access", spec)
        self._spec["access"].append(spec)
        return self

    def https_only(
        self,
        *,
        hsts_max_age: int | None = None,
        include_subdomains: bool = False,
        preload: bool = False,
        status: int = 308,
    ) -> Edge:
        """Redirect plain-HTTP requests to HTTPS (``status``: 301, 302, 307 or 308; a trusted
        proxy's ``X-Forwarded-Proto: https`` counts as HTTPS); with ``hsts_max_age`` (seconds),
        HTTPS responses carry ``Strict-Transport-Security``."""
        spec: HttpsSpec = {
            "status": status,
            "hsts_max_age": hsts_max_age,
            "include_subdomains": include_subdomains,
            "preload": preload,
        }
        self._checked("https_only", spec)
        self._spec["https_only"] = spec
        return self

    def cors(
        self,
        paths: str | Iterable[str] = ("/*",),
        *,
        origins: str | Iterable[str],
        methods: str | Iterable[str] = ("GET", "HEAD", "POST"),
        headers: str | Iterable[str] = (),
        expose: str | Iterable[str] = (),
        credentials: bool = False,
        max_age: int = 600,
        exclude: str | Iterable[str] = (),
    ) -> Edge:
        """Answer CORS at the edge on ``paths``: preflights get 204 (or 403 for an origin, method
        or header not allowed) without an origin trip; other requests from an allowed origin get
        ``Access-Control-Allow-Origin`` on whatever answers (rejections too) and ``Vary:
        Origin``. ``origins``: ``"*"``, or origins as browsers send them
        (``https://app.example``, ``https://*.example.com``); ``"*"`` with ``credentials`` is
        refused here, as browsers would refuse it."""
        spec: CorsSpec = {
            "paths": _paths(paths),
            "exclude": _exclude(exclude),
            "origins": _countries(origins) or [],
            "methods": _countries(methods) or [],
            "headers": _countries(headers) or [],
            "expose": _countries(expose) or [],
            "credentials": credentials,
            "max_age": max_age,
        }
        self._checked("cors", spec)
        self._spec["cors"].append(spec)
        return self

    def compress(
        self,
        paths: str | Iterable[str] = ("/*",),
        *,
        algorithms: str | Iterable[str] = ("zstd", "br", "gzip"),
        min_bytes: int = 1024,
        types: str | Iterable[str] | None = None,
        levels: Mapping[str, int] | None = None,
        max_streams: int = 256,
        exclude: str | Iterable[str] = (),
    ) -> Edge:
        """Compress responses on ``paths`` for clients that accept it: the coding is chosen from
        ``Accept-Encoding`` (q-values, ``identity``, ``*``; ``algorithms`` is the order of
        preference among equals), the body is compressed as it streams, and a cached response is
        stored once per coding (a hit costs no compression). Skipped: responses already encoded,
        declared smaller than ``min_bytes``, ranges, ``Cache-Control: no-transform``, and media
        types not in ``types`` (default: text, JSON, JavaScript, XML, SVG, WebAssembly and
        fonts; ``"text/*"`` and ``"application/*+json"`` are patterns). ``levels``: e.g.
        ``{"br": 5}`` (gzip 1-9, br 0-11, zstd 1-19; defaults gzip 5, br 4, zstd 3).
        ``max_streams``: at most this many responses are compressed as they stream at once
        (each holds about 1 MB of codec state while its client reads); beyond it a response
        goes uncompressed."""
        names = [algorithms] if isinstance(algorithms, str) else list(algorithms)
        if isinstance(min_bytes, bool) or not isinstance(min_bytes, int) or min_bytes < 0:
            raise _core.ConfigError(f"compress min_bytes must be an int >= 0, not {min_bytes!r}")
        if isinstance(max_streams, bool) or not isinstance(max_streams, int) or max_streams < 1:
            raise _core.ConfigError(f"compress max_streams must be an int >= 1, not {max_streams!r}")
        spec: CompressSpec = {
            "paths": _paths(paths),
            "exclude": _exclude(exclude),
            "algorithms": names,
            "min_bytes": min_bytes,
            "types": _countries(types) or [],
            "levels": dict(levels or {}),
            "max_streams": max_streams,
        }
        self._checked("compress", spec)
        self._spec["compress"].append(spec)
        return self

    def request_ids(self, *, header: str = "x-request-id", trace: bool = True) -> Edge:
        """Give every request an ID (``header``; kept when a trusted proxy sent one), sent to the
        origin and handlers, returned to the client, written to the access log and available as
        ``{request_id}`` in ``error_response`` bodies. With ``trace``, W3C ``traceparent`` is
        continued (same trace, a new parent ID for the edge's hop) or started."""
        spec: RequestIdSpec = {"header": header, "trace": trace}
        self._checked("request_ids", spec)
        self._spec["request_ids"] = spec
        return self

    def _checked(
        self,
        key: str,
        spec: Any,
        *,
        verifier: _core.JWTVerifier | None = None,
        limiter: _core.RateLimiter | None = None,
        bots: _core.BotDetector | None = None,
    ) -> None:
        """Builds ``spec`` as the plan would, alone (with the object it refers to), so that a bad
        value is reported by the call that wrote it, in the words the plan builder uses — the
        one place validation messages live. What depends on other calls (``{request_id}``
        without ``request_ids()``, a rule order that could surprise) is checked with the
        whole app, by ``check()`` and ``serve()``."""
        alone: dict[str, Any] = {"request_ids": {"header": "x-request-id", "trace": True}}
        alone[key] = [spec] if key in _RULE_LISTS else spec
        # An upstream the rule names may be defined later: a stand-in takes its place here.
        named = spec.get("url", "") if isinstance(spec, dict) else ""
        if isinstance(named, str) and named.startswith("upstream:"):
            alone["upstreams"] = [{"name": named.removeprefix("upstream:"), "targets": ["http://127.0.0.1:9"]}]
        if verifier is not None:
            alone[key] = [{**spec, "verifier": 0}]
        if limiter is not None:
            alone[key] = [{**spec, "limiter": 0}]
        try:
            text = json.dumps(alone, allow_nan=False)
        except ValueError:
            raise _core.ConfigError(f"{key}: numbers must be finite") from None
        _core.check_app(
            text, verifiers=[verifier] if verifier else [], limiters=[limiter] if limiter else [], bots=bots
        )

    def purge_broadcast(self, url: str, *, channel: str = "edgecore:purge") -> Edge:
        """Share cache purges between nodes through Redis pub/sub: every node subscribes to
        ``channel`` on ``url`` and purges its caches for each prefix published there, by
        ``Running.purge()``, ``edgecore purge``, ``ec.publish_purge()`` or any ``PUBLISH``."""
        self._spec["server"].update({"purge_redis": url, "purge_channel": channel})
        return self

    def kv(self, name: str, url: str | None = None, *, cache_ttl: float | None = None) -> Edge:
        """A KV store handlers reach as ``env.kv[name]`` (in process, or Redis with ``url``).
        With ``cache_ttl`` (seconds), a Redis KV serves reads from this node's copy: a write
        through any node invalidates every node's copy at once (pub/sub), and ``cache_ttl``
        bounds how stale a copy can be when an invalidation is lost."""
        self._kv[name] = _core.KV(url, cache_ttl=cache_ttl)
        if url is None:
            self._local_kv.add(name)
        else:
            self._local_kv.discard(name)
        return self

    def limiter(
        self,
        name: str,
        limit: int,
        period: float,
        *,
        burst: int | None = None,
        store: str | None = None,
        store_timeout: float = 0.05,
        on_store_error: str = "open",
        sync: float | None = None,
    ) -> _core.RateLimiter:
        """A rate limiter handlers reach as ``env.limiters[name]`` (as a Cloudflare Workers
        rate-limiting binding): ``env.limiters["api"].check(key)``. Returns the
        ``ec.RateLimiter`` (same arguments; in process, or Redis with ``store``). Limiters made
        here belong to the app: ``TestClient.advance`` moves their clock with the app's."""
        if not name or not isinstance(name, str):
            raise _core.ConfigError(f"limiter name must be a non-empty string, not {name!r}")
        limiter = _core.RateLimiter(
            limit, period, burst=burst, store=store, timeout=store_timeout, on_store_error=on_store_error, sync=sync
        )
        self._named_limiters[name] = limiter
        return limiter

    def per_process_state(self) -> tuple[list[str], list[str]]:
        """What each server process would hold a copy of, were the app served by several
        (``edgecore serve --workers N``): (state whose copies change behaviour: in-process
        rate limits and KV stores; state whose copies only cost memory and hit rate: caches)."""
        wrong = []
        for rule in self._spec["rate_limits"]:
            if not self._limiters[rule["limiter"]].shared:
                wrong.append(f"rate limit on {', '.join(rule['paths'])} (in process)")
        wrong += [f"KV store {name!r} (in process)" for name in sorted(self._local_kv)]
        wrong += [f"limiter {n!r} (in process)" for n, lim in sorted(self._named_limiters.items()) if not lim.shared]
        copies = [f"response cache on {', '.join(c['paths'])}" for c in self._spec["cache"]]
        return wrong, copies

    def vars(
        self, values: Mapping[str, str] | None = None, /, *, from_env: str | Iterable[str] = (), **more: str
    ) -> Edge:
        """Variables and secrets handlers read as ``env.vars[NAME]``: given here, or copied from
        the environment variables named in ``from_env`` (a missing one is an ``ec.ConfigError``
        now, not a ``KeyError`` in a handler later)."""
        given = {**(values or {}), **more}
        for name, value in given.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise _core.ConfigError(f"vars must map names to str values; {name!r} is {type(value).__name__}")
        names = [from_env] if isinstance(from_env, str) else list(from_env)
        missing = [n for n in names if n not in os.environ]
        if missing:
            raise _core.ConfigError(f"vars: environment variable(s) not set: {', '.join(missing)}")
        self._vars.update(given)
        self._vars.update({n: os.environ[n] for n in names})
        return self

    def configure(self, **settings: Unpack[ServerSettings]) -> Edge:
        """Server limits and timeouts: header_read_timeout, keep_alive_timeout, max_body_bytes,
        max_header_bytes, max_uri_bytes, max_connections, python_queue, handler_timeout,
        origin_connect_timeout, origin_timeout, grace_period, threads, dev_mode, access_log ("-"
        for stderr or a file path: one JSON line per request), metrics_path (e.g. "/metrics":
        Prometheus text, served by Rust, on the public port to the peers in metrics_allow
        [loopback]), admin_addr ("127.0.0.1:9901": the metrics on a listener of their own,
        never on the public port), escaped_slashes, path_params, allowed_hosts, ipv6_prefix (see
        the README's security model), tls_cert and tls_key (PEM files: TLS termination with
        ALPN h2/http1.1; a reload re-reads them, so renewed certificates apply to new connections
        without a restart), explain_allow (CIDRs that may ask ``X-Edge-Explain: 1``; anyone in
        dev mode), dry_run (the origin is never contacted: ``edgecore explain`` uses it)."""
        merged: ServerSettings = {**self._spec["server"], **settings}
        try:
            text = json.dumps(merged, allow_nan=False)
        except ValueError:
            where = _non_finite(merged, "server")
            raise _core.ConfigError(f"{where} must be a finite number") from None
        # Checked here, by the rules the plan is built with: a typo or a bad value is reported
        # by this call, not by serve().
        _core.check_settings(text)
        self._spec["server"] = merged
        return self

    # ---- Python code ----

    def route(self, path: str, methods: str | Iterable[str] = ("GET",)) -> Callable[[Handler], Handler]:
        """Register ``handler(request)`` or ``handler(request, env)`` (``def`` or ``async def``)
        for ``path``; it returns a Response, str, bytes or dict/list (JSON). ``methods`` lists
        the methods it answers (a GET route answers HEAD too; ``"*"``: any method); another
        method on the same path gets 405 with ``Allow``."""
        if callable(path):
            raise TypeError("route needs a path: write @app.route('/path'), not @app.route")
        if not isinstance(path, str):
            raise TypeError(f"route path must be a str, not {type(path).__name__}")
        wanted = [methods] if isinstance(methods, str) else list(methods)
        if not wanted or not all(isinstance(m, str) for m in wanted):
            raise TypeError("route methods must be a method name, a list of them, or '*'")

        def register(fn: Handler) -> Handler:
            self._handlers.append(_with_env(fn, "route"))
            self._spec["routes"].append({"path": path, "methods": wanted, "handler": len(self._handlers) - 1})
            return fn

        return register

    def middleware(
        self, matcher: str | Iterable[str] = ("/*",), *, exclude: str | Iterable[str] = ()
    ) -> Callable[[Handler], Handler]:
        """Register ``handler(request)`` or ``handler(request, env)`` to run before the cache,
        the routes and the origin on paths ``matcher`` matches (patterns as Next.js writes them,
        ``/about/:path*`` or ``/((?!api|_next/static).*)``, or ``re:`` regexes) and ``exclude``
        does not. It returns None or ``ec.next(...)`` to continue (``request_headers`` edit the
        request, ``response_headers`` are added to whatever answers), ``ec.rewrite("/path")``
        to continue with another path, or a Response (``ec.redirect(...)``, a str, a dict…) to
        answer. Paths it does not match never enter Python."""
        if callable(matcher):
            raise TypeError("middleware needs a matcher: write @app.middleware('/path/*'), not @app.middleware")
        patterns = _paths(matcher)
        excluded = _exclude(exclude)
        if not all(isinstance(p, str) for p in patterns + excluded):
            raise TypeError("middleware matcher and exclude must be path patterns (str)")
        _core.check_paths(patterns, excluded)

        def register(fn: Handler) -> Handler:
            self._handlers.append(_with_env(fn, "middleware"))
            self._spec["middleware"].append(
                {"matcher": patterns, "handler": len(self._handlers) - 1, "exclude": excluded}
            )
            return fn

        return register

    # ---- running ----

    def _core_args(self) -> dict[str, Any]:
        return {"verifiers": self._verifiers, "limiters": self._limiters, "geo": self._geo, "bots": self._bots}

    def spec_json(self) -> str:
        """The app description the Rust plan is compiled from. A NaN or infinite number anywhere
        is an ``ec.ConfigError`` naming the setting (JSON cannot carry it)."""
        try:
            return json.dumps(self._spec, allow_nan=False)
        except ValueError:
            where = _non_finite(self._spec, "")
            raise _core.ConfigError(f"{where} must be a finite number") from None

    def check(self) -> tuple[list[str], list[str]]:
        """Compiles the app without serving it: (active policies, warnings about rules that can
        never apply or risky settings). A bad configuration raises ``ec.ConfigError``."""
        return _core.check_app(self.spec_json(), **self._core_args())

    def serve(self, host: str = "127.0.0.1", port: int = 0, *, workers: int = 4, reuse_port: bool = False) -> Running:
        """Start serving in the background; use as a context manager (stops and drains on exit).
        ``workers`` is the number of Python handler threads; ``reuse_port`` lets several processes
        share the port (SO_REUSEPORT)."""
        core = _core.Server(self.spec_json(), host=host, port=port, reuse_port=reuse_port, **self._core_args())
        return Running(self, core, workers)

    def run(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        workers: int = 4,
        reload_app: Callable[[], Edge] | None = None,
        reuse_port: bool = False,
    ) -> None:
        """Serve until Ctrl-C or SIGTERM, then drain in-flight requests and return. With
        ``reload_app``, SIGHUP builds a new app with it and swaps it in without dropping a
        connection; a configuration that fails keeps the old one (the error is logged)."""
        # The handlers go in before the server starts: a SIGTERM that arrives once the first
        # requests are being answered must drain and exit 0, never kill the process outright.
        stop = threading.Event()
        hup = threading.Event()
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        if reload_app is not None:
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: hup.set())
        try:
            running = self.serve(host, port, workers=workers, reuse_port=reuse_port)
        except BaseException:
            for s, h in previous.items():
                signal.signal(s, h)
            raise
        print(f"edgecore listening on {running.url} (pid {os.getpid()})", file=sys.stderr, flush=True)
        for line in running.core.summary:
            print(f"  active: {line}", file=sys.stderr)
        for w in running.core.warnings:
            print(f"  warning: {w}", file=sys.stderr)
        try:
            while not stop.wait(0.2):
                if hup.is_set() and reload_app is not None:
                    hup.clear()
                    try:
                        running.reload(reload_app())
                        print("edgecore: configuration reloaded", file=sys.stderr, flush=True)
                    except Exception as e:
                        print(
                            f"edgecore: reload rejected, keeping the running configuration: {e}",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            print("edgecore: draining in-flight requests…", file=sys.stderr, flush=True)
            running.stop()
            for s, h in previous.items():
                signal.signal(s, h)


class Running:
    """A server running in the background: ``url``, ``port``, ``stop()``; a context manager."""

    def __init__(self, app: Edge, core: _core.Server, workers: int) -> None:
        self.app = app
        self.core = core
        # Handlers only ever grow (see reload): a job refers to an index that stays valid.
        self._handlers: list[Handler] = list(app._handlers)
        self._stopping = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._env = Env(app._kv, app._vars, limiters=app._named_limiters, server=core, loop=self._loop)
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="edgecore-asyncio", daemon=True)
        self._loop_thread.start()
        self._workers = [
            threading.Thread(target=self._work, name=f"edgecore-python-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self._workers:
            t.start()

    @property
    def url(self) -> str:
        return self.core.url

    @property
    def port(self) -> int:
        return self.core.port

    @property
    def admin_url(self) -> str | None:
        """``http://host:port`` of the admin listener (``configure(admin_addr=...)``), if any."""
        return self.core.admin_url

    def reload(self, app: Edge | None = None) -> None:
        """Swap in ``app``'s configuration without dropping connections.

        The new app's handlers are appended (its handler indices offset accordingly) before the
        plan is swapped, so requests the old plan already handed to Python and those the new plan
        hands over both find their functions: there is no window where an index points into the
        wrong list."""
        app = app or self.app
        base = len(self._handlers)
        spec = json.loads(app.spec_json())
        for entry in spec["routes"] + spec["middleware"]:
            entry["handler"] += base
        self._handlers.extend(app._handlers)
        self.core.reload(json.dumps(spec), **app._core_args())
        self.app = app
        self._env = Env(app._kv, app._vars, limiters=app._named_limiters, server=self.core, loop=self._loop)

    def purge(self, prefix: str = "", *, tag: str | None = None) -> int:
        """Remove cached responses under ``prefix`` (``/products/``: that path on any host;
        ``https://shop.example/products/``: a URL prefix; ``""``: everything), or every response
        tagged ``tag`` by its ``Cache-Tag``/``Surrogate-Key`` field, and, with
        ``purge_broadcast`` configured, publish the purge to every node. Returns the entries
        removed here; a broadcast that cannot reach Redis raises ``ec.StoreError`` (after the
        local purge)."""
        removed, _nodes = self.core.purge(prefix, tag=tag)
        return removed

    def stop(self) -> None:
        """Stop accepting, drain in-flight requests (grace period), stop the Python workers."""
        self.core.stop()
        self._env.drain(timeout=5)
        self._stopping.set()
        for t in self._workers:
            t.join(timeout=5)
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(timeout=5)
            self._loop.close()

    def __enter__(self) -> Running:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the Python side of the bridge ----

    def _work(self) -> None:
        next_jobs, stopping, dispatch = self.core.next_jobs, self._stopping.is_set, self._dispatch
        while not stopping():
            for job in next_jobs(64, 0.1):
                dispatch(job)

    def _dispatch(self, job: _core.PendingJob) -> None:
        fn = self._handlers[job.handler]
        env = self._env
        # Work handed to env.wait_until while the handler runs starts once it has answered.
        deferred: list[Any] = []
        token = _deferred.set(deferred)
        try:
            result = fn(job.request, env)
        except Exception:
            self._failed(job, fn)
            return
        finally:
            _deferred.reset(token)
        if type(result) not in _PLAIN and inspect.isawaitable(result):
            future = asyncio.run_coroutine_threadsafe(await_deferring(result), self._loop)
            future.add_done_callback(lambda f: self._finish(job, fn, f, env, deferred))
            return
        self._answer(job, fn, result)
        for work in deferred:
            env.start_background(work)

    def _finish(self, job: _core.PendingJob, fn: Handler, future: Any, env: Env, deferred: list[Any]) -> None:
        try:
            result, more = future.result()
        except Exception:
            self._failed(job, fn)
            return
        self._answer(job, fn, result)
        for work in deferred + more:
            env.start_background(work)

    def _answer(self, job: _core.PendingJob, fn: Handler, result: Any) -> None:
        try:
            job.respond(result)
        except Exception:
            self._failed(job, fn)

    @staticmethod
    def _failed(job: _core.PendingJob, fn: Handler) -> None:
        message = traceback.format_exc()
        request = job.request
        log.error(
            "%s handler %s failed on %s %s (answered 500):\n%s",
            job.kind,
            getattr(fn, "__qualname__", fn),
            request.method,
            request.path,
            message,
        )
        job.fail(message)


def _with_env(fn: Handler, kind: str) -> Handler:
    """``fn`` called as ``fn(request, env)``: handlers may take ``(request)`` or ``(request, env)``.
    Anything that cannot take a request raises ``TypeError`` here, at registration."""
    if not callable(fn):
        raise TypeError(f"{kind} handler must be callable, not {type(fn).__name__}")
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return fn  # a builtin or C callable: called as fn(request, env)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params) or len(positional) >= 2:
        return fn
    if len(positional) != 1:
        raise TypeError(f"{kind} handler {getattr(fn, '__qualname__', fn)} must take (request) or (request, env)")

    def call(request: Any, env: Any) -> Any:
        return fn(request)

    call.__qualname__ = getattr(fn, "__qualname__", repr(fn))
    call.__wrapped__ = fn  # type: ignore[attr-defined]
    return call


def _non_finite(value: Any, path: str) -> str:
    """The dotted path of the first NaN or infinite float in a spec ("" if none)."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "a value"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return ""
