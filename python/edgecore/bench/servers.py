"""The servers the load benchmark compares, each started as its own process:

    python -m edgecore.bench.servers NAME --port P [--origin URL] [--token-secret HEX]

NAME: edgecore-pipeline | starlette-pipeline (the same pipeline in pure Python: PyJWT, limits,
cachetools, maxminddb on uvicorn with httptools and uvloop) | edgecore-hello | uvicorn-hello (raw
ASGI) | granian-hello (RSGI) | edgecore-proxy | edgecore-cache | edgecore-origin (the origin when nginx is missing)."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path


def geolite_path() -> str:
    import _maxminddb_geolite2

    return str(Path(_maxminddb_geolite2.__file__).parent / "GeoLite2-City.mmdb")


def edgecore_pipeline(port: int, origin: str, secret: bytes) -> None:
    import edgecore as ec

    app = ec.Edge(origin=origin)
    app.trust_proxies(["127.0.0.1"])
    app.geo(geolite_path())
    app.jwt(paths=["/*"], key=secret, algorithms=["HS256"])
    app.rate_limit(paths=["/*"], limit=1_000_000, period=1.0)
    app.cache(paths=["/*"], ttl=3600)
    app.run("127.0.0.1", port)


def edgecore_hello(port: int) -> None:
    import edgecore as ec

    app = ec.Edge()

    @app.route("/")
    def hello(request, env):
        return "hello"

    app.run("127.0.0.1", port, workers=1)


def edgecore_origin(port: int) -> None:
    """The origin when nginx is not installed: a shared-cacheable answer (see load.py)."""
    import edgecore as ec

    from .load import ORIGIN_CACHE_CONTROL

    app = ec.Edge()

    @app.route("/*")
    def page(request, env):
        return ec.Response(b"origin says hi", headers={"cache-control": ORIGIN_CACHE_CONTROL})

    app.run("127.0.0.1", port, workers=1)


def edgecore_proxy(port: int, origin: str) -> None:
    import edgecore as ec

    ec.Edge(origin=origin).run("127.0.0.1", port)


def edgecore_proxy_upstream(port: int, origin: str) -> None:
    """The proxy with an upstream of two targets (round robin, passive health, retries) in front
    of the same origin: what balancing adds to a proxied request."""
    import edgecore as ec

    app = ec.Edge(origin="upstream:api")
    app.upstream("api", [origin, origin + "/"])
    app.run("127.0.0.1", port)


def edgecore_proxy_middleware(port: int, origin: str) -> None:
    """The proxy behind the usual Next.js middleware matcher; the benchmark requests a path the
    matcher excludes, so the request must cost what a plain proxied one does (no Python)."""
    import edgecore as ec

    app = ec.Edge(origin=origin)

    @app.middleware("/((?!api|_next/static|_next/image|favicon.ico).*)")
    def middleware(request):
        return ec.next(response_headers={"x-mw": "1"})

    app.run("127.0.0.1", port)


def edgecore_cache(port: int, origin: str) -> None:
    """The proxy with a cache rule on every path: after the first request, every one is a hit."""
    import edgecore as ec

    ec.Edge(origin=origin).cache(paths=["/*"], ttl=3600).run("127.0.0.1", port)


def edgecore_cache_jwt(port: int, origin: str, secret: bytes) -> None:
    """`edgecore_cache` behind an HS256 JWT rule: what verifying a session's token adds to a hit."""
    import edgecore as ec

    app = ec.Edge(origin=origin)
    app.jwt(paths=["/*"], key=secret, algorithms=["HS256"])
    app.cache(paths=["/*"], ttl=3600).run("127.0.0.1", port)


def edgecore_steps(port: int, origin: str, secret: bytes, steps: str) -> None:
    """The pipeline built up a step at a time (`--steps cache,jwt,rate,geo`), for the phase
    breakdown: each contender adds one step to the one before."""
    import edgecore as ec

    wanted = set(steps.split(","))
    unknown = wanted - {"cache", "jwt", "rate", "geo", "cors", "access", "reqid", "compress", "elsewhere"}
    if unknown:
        sys.exit(f"unknown steps {sorted(unknown)}")
    app = ec.Edge(origin=origin)
    # The features of issue 20, each alone over a cache hit; "elsewhere" configures them on
    # paths the benchmark does not request (what an unused feature costs).
    if "cors" in wanted:
        app.cors(paths="/*", origins=["https://app.example"])
    if "access" in wanted:
        app.access(paths="/*", allow_ips=["127.0.0.0/8", "10.0.0.0/8", "2001:db8::/32"])
    if "reqid" in wanted:
        app.request_ids()
    if "compress" in wanted:
        app.compress(paths="/*", min_bytes=0)
    if "elsewhere" in wanted:
        app.cors(paths="/elsewhere/*", origins=["https://app.example"])
        app.access(paths="/elsewhere/*", allow_ips=["10.0.0.0/8"])
        app.compress(paths="/elsewhere/*")
    if "geo" in wanted:
        app.trust_proxies(["127.0.0.1"])
        app.geo(geolite_path())
    if "jwt" in wanted:
        app.jwt(paths=["/*"], key=secret, algorithms=["HS256"])
    if "rate" in wanted:
        app.rate_limit(paths=["/*"], limit=1_000_000, period=1.0)
    if "cache" in wanted:
        app.cache(paths=["/*"], ttl=3600)
    app.run("127.0.0.1", port)


def starlette_pipeline(port: int, origin: str, secret: bytes) -> None:
    import cachetools
    import httpx
    import jwt
    import limits
    import maxminddb
    import uvicorn
    from limits import storage, strategies
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    reader = maxminddb.open_database(geolite_path(), maxminddb.MODE_MMAP_EXT)
    limiter = strategies.FixedWindowRateLimiter(storage.MemoryStorage())
    rate = limits.parse("1000000/second")
    cache: cachetools.TTLCache = cachetools.TTLCache(maxsize=10_000, ttl=3600)
    trusted = ipaddress.ip_network("127.0.0.1/32")
    client = httpx.AsyncClient(base_url=origin)

    async def pipeline(request: Request) -> Response:
        peer = request.client.host if request.client else "0.0.0.0"
        ip = peer
        if ipaddress.ip_address(peer) in trusted and "x-forwarded-for" in request.headers:
            ip = request.headers["x-forwarded-for"].split(",")[-1].strip()
        reader.get(ip)
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return PlainTextResponse("Unauthorized", status_code=401)
        try:
            jwt.decode(auth[7:], secret, algorithms=["HS256"])
        except jwt.InvalidTokenError:
            return PlainTextResponse("Unauthorized", status_code=401)
        if not limiter.hit(rate, ip):
            return PlainTextResponse("Too Many Requests", status_code=429)
        key = request.url.path
        hit = cache.get(key)
        if hit is None:
            upstream = await client.get(key)
            hit = (upstream.status_code, upstream.content, upstream.headers.get("content-type", "text/plain"))
            cache[key] = hit
        return Response(hit[1], status_code=hit[0], media_type=hit[2])

    app = Starlette(routes=[Route("/{path:path}", pipeline)])
    uvicorn.run(
        app, host="127.0.0.1", port=port, http="httptools", loop="uvloop", log_level="warning", access_log=False
    )


async def _raw_hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def uvicorn_hello(port: int) -> None:
    import uvicorn

    uvicorn.run(
        _raw_hello, host="127.0.0.1", port=port, http="httptools", loop="uvloop", log_level="warning", access_log=False
    )


class RsgiHello:
    async def __rsgi__(self, scope, proto):
        proto.response_str(200, [("content-type", "text/plain")], "hello")


rsgi_hello = RsgiHello()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--origin", default="http://127.0.0.1:9")
    ap.add_argument("--token-secret", default="6b" * 32)
    ap.add_argument("--steps", default="cache", help="edgecore-steps: cache,jwt,rate,geo")
    a = ap.parse_args()
    secret = bytes.fromhex(a.token_secret)
    if a.name == "edgecore-pipeline":
        edgecore_pipeline(a.port, a.origin, secret)
    elif a.name == "starlette-pipeline":
        starlette_pipeline(a.port, a.origin, secret)
    elif a.name == "edgecore-hello":
        edgecore_hello(a.port)
    elif a.name == "uvicorn-hello":
        uvicorn_hello(a.port)
    elif a.name == "edgecore-origin":
        edgecore_origin(a.port)
    elif a.name == "edgecore-proxy":
        edgecore_proxy(a.port, a.origin)
    elif a.name == "edgecore-proxy-upstream":
        edgecore_proxy_upstream(a.port, a.origin)
    elif a.name == "edgecore-proxy-middleware":
        edgecore_proxy_middleware(a.port, a.origin)
    elif a.name == "edgecore-cache":
        edgecore_cache(a.port, a.origin)
    elif a.name == "edgecore-steps":
        edgecore_steps(a.port, a.origin, secret, a.steps)
    elif a.name == "edgecore-cache-jwt":
        edgecore_cache_jwt(a.port, a.origin, secret)
    else:
        sys.exit(f"unknown server {a.name}")


if __name__ == "__main__":
    main()
