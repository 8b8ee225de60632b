"""edgecore.testing.TestClient: the real pipeline, with a clock the test moves."""

from __future__ import annotations

import time

import jwt as pyjwt

import edgecore as ec
from edgecore.testing import TestClient

SECRET = b"t" * 32


def test_the_clock_moves_token_expiry_rate_limits_and_cache_freshness(origin):
    app = ec.Edge(origin=origin.url)
    app.jwt(paths=["/api/*"], key=SECRET, algorithms=["HS256"])
    app.rate_limit(paths=["/limited"], limit=1, period=60)
    app.cache(paths=["/cached/*"], ttl=10)

    @app.route("/hello")
    def hello(request, env):
        return {"hi": request.client_ip}

    token = pyjwt.encode({"sub": "u", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        r = client.get("/hello")
        assert (r.status, r.headers["content-type"]) == (200, "application/json")
        assert client.get("/api/x", headers=auth).status == 200
        assert client.get("/limited").status == 200
        assert client.get("/limited").status == 429
        assert client.get("/cached/a").headers["x-cache"] == "MISS"
        assert client.get("/cached/a").headers["x-cache"] == "HIT"
        client.advance(61)
        assert client.get("/api/x", headers=auth).status == 401, "the token expired on the test clock"
        assert client.get("/limited").status == 200, "the bucket refilled"
        assert client.get("/cached/a").headers["x-cache"] == "MISS", "the entry went stale"
        assert client.post("/hello").status == 405
