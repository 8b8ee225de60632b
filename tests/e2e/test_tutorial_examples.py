"""The two tutorial ports in examples/ (Next.js middleware, a Cloudflare Worker), served exactly
as written against a real origin."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from tests.e2e.conftest import call
from tests.geo_data import write_city_db

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop(f"examples.{name}", None)
    return importlib.import_module(f"examples.{name}").app


def test_the_nextjs_middleware_example(origin, monkeypatch, tmp_path):
    monkeypatch.setenv("ORIGIN", origin.url)
    monkeypatch.setenv("GEOIP_DB", str(write_city_db(tmp_path / "city.mmdb")))
    app = _load("nextjs_middleware", monkeypatch)
    app.trust_proxies(["127.0.0.1/32"])  # the test client stands in for the load balancer
    calls = []
    original = app._handlers[0]
    app._handlers[0] = lambda request, env: (calls.append(request.path), original(request, env))[1]
    berlin, london = {"x-forwarded-for": "2001:db8::1"}, {"x-forwarded-for": "81.2.69.160"}
    with app.serve() as srv:
        r = call(srv.url, "/shop/x", headers=berlin)
        assert (r.status, r.headers["location"]) == (307, "/de/shop/x")
        r = call(srv.url, "/de/shop/x", headers=berlin)
        assert (r.status, r.headers["x-user-country"], r.headers["x-edge-region"]) == (200, "DE", "BE")
        r = call(srv.url, "/about", headers=london)
        assert (r.headers["x-user-country"], r.headers["x-edge-region"]) == ("GB", "ENG")
        r = call(srv.url, "/about", headers={"x-forwarded-for": "192.0.2.1"})
        assert (r.headers["x-user-country"], r.headers["x-edge-region"]) == ("US", "unknown")
        assert calls == ["/shop/x", "/de/shop/x", "/about", "/about"]
        # What the matcher excludes never enters Python, even from Germany.
        for path in ["/api/x", "/_next/static/app.js", "/_next/image", "/favicon.ico"]:
            r = call(srv.url, path, headers=berlin)
            assert r.status == 200 and "x-user-country" not in r.headers, path
        assert len(calls) == 4
    assert origin.count("/api/x") == 1


def test_the_worker_ratelimit_example(origin, monkeypatch):
    monkeypatch.setenv("ORIGIN", origin.url)
    monkeypatch.setenv("LIMIT", "3")
    app = _load("worker_ratelimit", monkeypatch)
    with app.serve() as srv:
        for left in (2, 1, 0):
            r = call(srv.url, "/api/items?page=1", method="POST", body=b"{}")
            assert (r.status, r.headers["x-ratelimit-remaining"]) == (200, str(left))
            assert r.json()["path"] == "/api/items?page=1" and r.json()["method"] == "POST"
        r = call(srv.url, "/api/items")
        assert (r.status, r.headers["content-type"], r.headers["retry-after"]) == (429, "application/json", "60")
        assert r.json() == {"error": "Rate limit exceeded", "remaining": 0, "location": app._spec["location"]}
    assert origin.count("/api/items") == 3
