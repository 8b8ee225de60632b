"""edgecore.testing.TestClient: an httpx.Client on the real pipeline, with a clock the test moves."""

from __future__ import annotations

import time

import httpx
import jwt as pyjwt
import pytest

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
        assert (r.status_code, r.headers["content-type"]) == (200, "application/json")
        assert client.get("/api/x", headers=auth).status_code == 200
        assert client.get("/limited").status_code == 200
        assert client.get("/limited").status_code == 429
        assert client.get("/cached/a").headers["x-cache"] == "MISS"
        assert client.get("/cached/a").headers["x-cache"] == "HIT"
        client.advance(61)
        assert client.get("/api/x", headers=auth).status_code == 401, "the token expired on the test clock"
        assert client.get("/limited").status_code == 200, "the bucket refilled"
        assert client.get("/cached/a").headers["x-cache"] == "MISS", "the entry went stale"
        assert client.post("/hello").status_code == 405


def test_responses_are_httpx_responses_with_cookies_redirects_and_every_method(origin):
    app = ec.Edge(origin=origin.url)
    app.redirect(paths="/old/*", to="/echo{path_and_query}", status=301)
    app.ab_test("hero", {"a": 0.5, "b": 0.5}, paths=["/echo", "/echo/*"])

    @app.route("/login", methods=["POST"])
    def login(request, env):
        return ec.Response.json({"ok": True}, headers=[("set-cookie", "session=s1; Path=/; HttpOnly")])

    @app.route("/whoami", methods="*")
    def whoami(request, env):
        return {"method": request.method, "session": request.cookies.get("session")}

    with TestClient(app) as client:
        assert isinstance(client, httpx.Client)
        r = client.post("/login")
        assert isinstance(r, httpx.Response)
        assert (r.status_code, r.json(), r.cookies["session"]) == (200, {"ok": True}, "s1")
        assert r.text == '{"ok":true}' and r.content == b'{"ok":true}'
        # The jar sends the app's cookie back.
        assert client.get("/whoami").json() == {"method": "GET", "session": "s1"}
        for method in ("PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"):
            assert client.request(method, "/whoami").json()["method"] == method
        assert client.head("/whoami").content == b""
        # Redirects: as the edge answered, or followed to the end.
        r = client.get("/old/x?q=1")
        assert (r.status_code, r.headers["location"]) == (301, "/echo/old/x?q=1")
        r = client.get("/old/x?q=1", follow_redirects=True)
        assert r.status_code == 200 and r.json()["path"] == "/echo/old/x?q=1"
        assert [h.status_code for h in r.history] == [301]
        # The A/B cookies the edge set are kept: the variant stays the same.
        variant = r.json()["headers"]["x-ab-hero"]
        assert client.cookies["ec-ab-hero"] == variant
        assert {client.get("/echo").json()["headers"]["x-ab-hero"] for _ in range(5)} == {variant}
    with TestClient(app, follow_redirects=True, headers={"x-team": "qa"}) as client:
        r = client.get("/old/y")
        assert r.status_code == 200 and r.json()["headers"]["x-team"] == "qa"


def test_the_clock_moves_the_apps_kv_ttls_and_limiters(origin):
    app = ec.Edge(origin=origin.url)
    app.kv("sessions")
    app.limiter("api", limit=2, period=60)

    @app.route("/put/:key")
    def put(request, env):
        env.kv["sessions"].put(request.params["key"], b"v", ttl=30)
        return {"stored": True}

    @app.route("/get/:key")
    def get(request, env):
        value = env.kv["sessions"].get(request.params["key"])
        return {"value": value.decode() if value else None}

    @app.route("/work")
    def work(request, env):
        d = env.limiters["api"].check(request.client_ip)
        return ec.Response("ok" if d else "slow down", status=200 if d else 429, headers=d.headers())

    with TestClient(app) as client:
        client.get("/put/k")
        assert client.get("/get/k").json() == {"value": "v"}
        assert [client.get("/work").status_code for _ in range(3)] == [200, 200, 429]
        client.advance(29)
        assert client.get("/get/k").json() == {"value": "v"}, "29 s into a 30 s TTL"
        client.advance(2)
        assert client.get("/get/k").json() == {"value": None}, "the TTL ran out on the test clock"
        assert client.get("/work").status_code == 200, "the limiter refilled"
        with pytest.raises(ValueError, match="non-negative"):
            client.advance(-1)


def test_answers_are_cached_after_the_clock_moved(origin):
    # The origin's Date is on the real clock: after advance(N), a response with max-age < N is
    # still fresh when stored (it is not taken for one N seconds old). /cached: max-age=60.
    app = ec.Edge(origin=origin.url)
    app.cache(paths=["/cached/*"])
    with TestClient(app) as client:
        client.advance(3600)
        assert client.get("/cached/x").headers["x-cache"] == "MISS"
        assert client.get("/cached/x").headers["x-cache"] == "HIT"
        client.advance(61)
        assert client.get("/cached/x").headers["x-cache"] == "MISS"


def test_the_pytest_plugin_gives_an_edge_client_fixture(pytester, origin):
    pytester.makepyfile(
        f"""
        import pytest
        import edgecore as ec

        @pytest.fixture
        def edge_app():
            app = ec.Edge(origin={origin.url!r})
            app.rate_limit(paths="/r", limit=1, period=60)
            return app

        def test_limit_then_refill(edge_client):
            assert edge_client.get("/r").status_code == 200
            assert edge_client.get("/r").status_code == 429
            edge_client.advance(60)
            assert edge_client.get("/r").status_code == 200
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_edge_client_fixture_says_what_it_needs(pytester):
    pytester.makepyfile(
        """
        def test_no_app(edge_client):
            pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*edge_client fixture needs an edge_app fixture*"])


def test_ab_cookie_names_are_configurable_and_checked(origin):
    app = ec.Edge(origin=origin.url)
    app.ab_test("hero", {"a": 1, "b": 1}, paths="/echo", cookie="exp_hero", unit_cookie="visitor")
    with TestClient(app) as client:
        variant = client.get("/echo").json()["headers"]["x-ab-hero"]
        assert client.cookies["exp_hero"] == variant and len(client.cookies["visitor"]) == 32
        assert "ec-uid" not in client.cookies and "ec-ab-hero" not in client.cookies
    # The assignment hashes the unit cookie it is told to read (what ec.assign_variant says).
    with TestClient(app) as client:
        for uid in (f"visitor-{i}" for i in range(8)):
            client.cookies.clear()
            client.cookies["visitor"] = uid
            got = client.get("/echo").json()["headers"]["x-ab-hero"]
            assert got == ec.assign_variant("hero", uid, {"a": 1, "b": 1})
    with pytest.raises(ec.ConfigError, match="unit_cookie"):
        ec.Edge().ab_test("x", {"a": 1}, unit_cookie="bad name")
    with pytest.raises(ec.ConfigError, match="must differ"):
        ec.Edge().ab_test("x", {"a": 1}, cookie="same", unit_cookie="same")
