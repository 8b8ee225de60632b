"""`edgecore demo`: an edge server on embedded defaults — in-memory limiter, cache and KV, a demo
origin in the same process, a generated HS256 secret, and a small geo database generated at start
— with one path per feature and curl commands to try them. Nothing external is needed."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import edgecore as ec
from edgecore.app import DEV_MODE_NOTE


def _hs256(secret: bytes, claims: dict[str, Any]) -> str:
    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def _geo_database(path: Path) -> Path | None:
    """A small City database for documentation addresses (RFC 5737 / RFC 3849)."""
    try:
        from mmdb_writer import MMDBWriter
        from netaddr import IPSet  # type: ignore[import-untyped]
    except ImportError:
        return None
    w = MMDBWriter(
        ip_version=6, database_type="GeoIP2-City", languages=["en"], description="edgecore demo", ipv4_compatible=True
    )
    places = {
        "192.0.2.0/24": ("DE", "EU", "BE", "Berlin", "Europe/Berlin"),
        "198.51.100.0/24": ("GB", "EU", "ENG", "London", "Europe/London"),
        "203.0.113.0/24": ("US", "NA", "CA", "San Francisco", "America/Los_Angeles"),
    }
    for net, (country, continent, region, city, tz) in places.items():
        w.insert_network(
            IPSet([net]),
            {
                "country": {"iso_code": country},
                "continent": {"code": continent},
                "subdivisions": [{"iso_code": region}],
                "city": {"names": {"en": city}},
                "location": {"time_zone": tz},
            },
        )
    w.to_db_file(str(path))
    return path


def build(port: int) -> tuple[ec.Edge, ec.Edge, bytes, Path | None]:
    """The demo origin app and the edge app in front of it."""
    origin = ec.Edge()
    # The edge in front is a trusted proxy: the headers it sets reach the handler (from anyone
    # else, edgecore removes the headers an edge owns).
    origin.trust_proxies(["127.0.0.1"])
    origin.configure(trust_proxy_headers=True)

    @origin.route("/*", methods=["GET", "POST"])
    def page(request: ec.Request, env: Any) -> ec.Response:
        seen = {k: v for k, v in request.headers.items() if k.startswith(("x-", "via"))}
        return ec.Response.json(
            {"origin": "demo", "path": request.path, "served_at": time.strftime("%H:%M:%S"), "headers_from_edge": seen},
            headers={"Cache-Control": "max-age=30"} if request.path.startswith("/cached") else None,
        )

    secret = secrets.token_bytes(32)
    tmp = Path(tempfile.mkdtemp(prefix="edgecore-demo-"))
    geo_db = _geo_database(tmp / "demo-city.mmdb")
    edge = ec.Edge(origin="http://127.0.0.1:0")  # the origin URL is set once it is listening
    # Metrics on a loopback listener of their own (never on the public port).
    edge.configure(dev_mode=True, metrics_path="/metrics", admin_addr="127.0.0.1:0")
    edge.trust_proxies(["127.0.0.1"])
    if geo_db:
        edge.geo(str(geo_db))
        edge.headers(
            request={"x-user-country": "{geo.country}"}, response={"x-edge-region": "{geo.country}/{geo.region}"}
        )
        edge.redirect(to="/de{path}", status=302, paths=["/shop/*"], country="DE")
    # Tag rather than block: the curl commands below are themselves bots by User-Agent.
    edge.bots("tag", allow=["Googlebot"])
    edge.jwt(paths=["/api/*"], key=secret, algorithms=["HS256"], claims_to_headers={"sub": "x-user"})
    edge.rate_limit(paths=["/limited"], limit=3, period=60)
    edge.cache(paths=["/cached/*"], ttl=30)
    edge.ab_test("hero", {"control": 50, "new": 50}, paths=["/ab"])
    edge.kv("visits")

    @edge.route("/hello")
    def hello(request: ec.Request, env: Any) -> ec.Response:
        n = int(env.kv["visits"].get("n") or 0) + 1
        env.kv["visits"].put("n", str(n))
        geo = request.geo
        return ec.Response.json(
            {
                "hello": "from a Python handler",
                "client_ip": request.client_ip,
                "country": geo and geo.country,
                "visits": n,
            }
        )

    return origin, edge, secret, geo_db


def main(args: argparse.Namespace) -> int:
    origin_app, edge, secret, geo_db = build(args.port)
    origin = origin_app.serve("127.0.0.1", 0, workers=2)
    edge._spec["origin"] = origin.url
    server = edge.serve(args.host, args.port)
    token = _hs256(secret, {"sub": "demo-user", "exp": int(time.time()) + 3600})
    url = server.url
    print(f"edgecore {ec.__version__} demo: the edge listens on {url}, the demo origin on {origin.url}")
    for line in server.core.summary:
        print(f"  active: {line}")
    print(DEV_MODE_NOTE)
    print("\nTry:")
    commands = [
        ("a Python handler (with in-memory KV)", f"curl -s {url}/hello"),
        ("proxied to the origin", f"curl -s {url}/page"),
        ("JWT: rejected without a token (401)", f"curl -s -i {url}/api/orders"),
        ("JWT: accepted; the claim reaches the origin", f'curl -s -H "Authorization: Bearer {token}" {url}/api/orders'),
        (
            "rate limit: the 4th call within a minute gets 429",
            f"curl -s -o /dev/null -w '%{{http_code}}\\n' {url}/limited",
        ),
        ("cache: MISS, then HIT", f"curl -s -i {url}/cached/item"),
        ("bots: curl is tagged as a bot toward the origin (x-edge-bot: 1)", f"curl -s {url}/page"),
        (
            "bots: a browser is not",
            f"curl -s -A 'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0' {url}/page",
        ),
        ("A/B: a sticky variant cookie", f"curl -s -i {url}/ab"),
        ("metrics (Prometheus text, on the loopback admin listener)", f"curl -s {server.admin_url}/metrics"),
    ]
    if geo_db:
        commands += [
            (
                "geo: a client in Germany (dev mode sets the client IP)",
                f"curl -s -H 'X-Edge-Dev-Client-Ip: 192.0.2.7' {url}/hello",
            ),
            ("geo redirect for DE", f"curl -s -i -H 'X-Edge-Dev-Country: DE' {url}/shop/boots"),
        ]
    for what, cmd in commands:
        print(f"  # {what}\n  {cmd}")
    print(f"\nHS256 secret (hex): {secret.hex()}\nPress Ctrl-C to stop.", flush=True)
    if args.print_commands:
        Path(args.print_commands).write_text(json.dumps([c for _, c in commands]))
    stop = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: stop.set())
    if args.seconds:
        stop.wait(args.seconds)
    else:
        while not stop.wait(0.5):
            pass
    server.stop()
    origin.stop()
    print("stopped", file=sys.stderr)
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=os.environ.get("EDGECORE_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("EDGECORE_PORT", "8080")))
    p.add_argument("--seconds", type=float, default=0, help="stop after this many seconds (0: run until Ctrl-C)")
    p.add_argument("--print-commands", metavar="FILE", help=argparse.SUPPRESS)
