"""Programmable like Workers and Next.js middleware, through a running server and a real origin:
matchers as Next.js writes them (and ``exclude=``), middleware that continues with headers or
rewrites, ``env`` (vars, fetch, wait_until), template defaults, routes' methods."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

import edgecore as ec
from tests.e2e.conftest import call
from tests.waiting import wait_for

NEXT_MATCHER = "/((?!api|_next/static|_next/image|favicon.ico).*)"


def test_a_nextjs_matcher_keeps_excluded_paths_out_of_python(origin):
    app = ec.Edge(origin=origin.url)
    seen: list[str] = []

    @app.middleware(NEXT_MATCHER)
    def mw(request):
        seen.append(request.path)
        return ec.next(response_headers={"x-mw": "1"})

    with app.serve() as srv:
        for path in ["/api/users", "/_next/static/chunk.js", "/_next/image", "/favicon.ico", "/apiary"]:
            r = call(srv.url, path)
            assert r.status == 200 and "x-mw" not in r.headers, path
        for path in ["/", "/about", "/shop/api", "/_next/other"]:
            r = call(srv.url, path)
            assert (r.status, r.headers.get("x-mw")) == (200, "1"), path
    assert seen == ["/", "/about", "/shop/api", "/_next/other"]
    # The excluded requests reached the origin all the same.
    assert origin.count("/api/users") == 1 and origin.count("/_next/static/") == 1


def test_path_to_regexp_parameters_and_exclude(origin):
    app = ec.Edge(origin=origin.url)
    seen: list[str] = []

    @app.middleware(["/about/:path*", "/blog/:slug"], exclude=["/about/team"])
    def mw(request):
        seen.append(request.path)

    with app.serve() as srv:
        for path in ["/about", "/about/a/b", "/blog/x", "/about/team", "/blog/x/y", "/aboutx"]:
            assert call(srv.url, path).status == 200
    assert seen == ["/about", "/about/a/b", "/blog/x"]


def test_exclude_on_a_policy_takes_paths_back_out(origin):
    app = ec.Edge(origin=origin.url)
    app.jwt(paths="/*", exclude=["/public/*", "/healthz"], key=b"k" * 32, algorithms=["HS256"])
    with app.serve() as srv:
        assert call(srv.url, "/public/x").status == 200
        assert call(srv.url, "/healthz").status == 200
        assert call(srv.url, "/private").status == 401
        # The exclusion is matched on the canonical path: no way around the policy through it.
        assert call(srv.url, "//public/../private").status in (400, 401)
        assert call(srv.url, "/%70ublic/x").status == 200
    assert origin.count("/private") == 0


def test_matchers_that_cannot_be_linear_are_refused_where_written():
    app = ec.Edge()
    with pytest.raises(ec.ConfigError, match="look-ahead is supported only"):
        app.middleware("/:id/((?!x).*)")
    with pytest.raises(ec.ConfigError, match="look-around"):
        app.middleware("/((?<=a).*)")
    with pytest.raises(ec.ConfigError, match=r"exclude: .*must start with /"):
        app.jwt(paths="/*", exclude="nope", key=b"k" * 32, algorithms=["HS256"])


def test_next_edits_the_request_and_adds_headers_to_whatever_answers(origin):
    app = ec.Edge(origin=origin.url)
    app.cache(paths="/cached/*", ttl=60)

    @app.middleware("/*")
    def mw(request):
        return ec.next(request_headers={"x-from-mw": "yes"}, response_headers={"x-edge": "mw"})

    @app.route("/hello")
    def hello(request):
        return f"hello {request.headers.get('x-from-mw')}"

    with app.serve() as srv:
        r = call(srv.url, "/echo")
        assert r.headers["x-edge"] == "mw" and r.json()["headers"]["x-from-mw"] == "yes"
        r = call(srv.url, "/hello")
        assert (r.body, r.headers["x-edge"]) == (b"hello yes", "mw")
        miss, hit = call(srv.url, "/cached/a"), call(srv.url, "/cached/a")
        assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
        assert miss.headers["x-edge"] == hit.headers["x-edge"] == "mw"


def test_rewrite_serves_another_path_without_a_redirect(origin):
    app = ec.Edge(origin=origin.url)

    @app.middleware("/old/:rest*")
    def mw(request):
        return ec.rewrite("/new" + request.path[len("/old") :])

    @app.route("/new/hello")
    def hello(request):
        return f"new {request.path}"

    with app.serve() as srv:
        r = call(srv.url, "/old/x?q=1")
        assert (r.status, r.json()["path"]) == (200, "/new/x?q=1")
        assert call(srv.url, "/old/hello").body == b"new /new/hello"
    with pytest.raises(ValueError, match="single /"):
        ec.rewrite("//evil.example/x")


def test_middleware_with_env_and_vars(origin, monkeypatch):
    monkeypatch.setenv("EC_TEST_SECRET", "s3cret")
    app = ec.Edge(origin=origin.url, vars={"GREETING": "hi"}, location="fra1")
    app.vars(from_env=["EC_TEST_SECRET"])

    @app.middleware("/gate/*")
    def gate(request, env):
        if request.headers.get("x-key") != env.vars["EC_TEST_SECRET"]:
            return ec.Response.json({"error": "forbidden", "where": request.location}, status=403)
        return None

    with app.serve() as srv:
        r = call(srv.url, "/gate/x")
        assert (r.status, r.json()) == (403, {"error": "forbidden", "where": "fra1"})
        assert call(srv.url, "/gate/x", headers={"x-key": "s3cret"}).status == 200
    with pytest.raises(ec.ConfigError, match="EC_TEST_MISSING"):
        app.vars(from_env="EC_TEST_MISSING")
    assert "s3cret" not in repr(ec.Env({}, {"K": "s3cret"}))


def test_template_defaults_and_absent_values(origin):
    app = ec.Edge(origin=origin.url, location="ams2")
    app.headers(
        request={"x-user-country": "{geo.country|US}", "x-device": "{device}"},
        response={"x-edge-region": "{geo.region|unknown}", "x-city": "{geo.city}", "x-where": "{location}"},
    )
    with app.serve() as srv:
        r = call(srv.url, "/echo", headers={"sec-ch-ua-mobile": "?1"})
        sent = r.json()["headers"]
        assert (sent["x-user-country"], sent["x-device"]) == ("US", "mobile")
        assert r.headers["x-edge-region"] == "unknown" and r.headers["x-where"] == "ams2"
        # No default and no value: no header, rather than an empty one.
        assert "x-city" not in r.headers


def test_request_cookies_device_and_location(origin):
    app = ec.Edge(origin=origin.url, location="sfo1")

    @app.route("/me")
    def me(request):
        return {"cookies": request.cookies, "device": request.device, "location": request.location}

    with app.serve() as srv:
        ipad = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
        r = call(srv.url, "/me", headers={"cookie": "a=1; b=2; a=3", "user-agent": ipad})
        assert r.json() == {"cookies": {"a": "1", "b": "2"}, "device": "tablet", "location": "sfo1"}


def test_routes_methods_head_and_any(origin):
    app = ec.Edge(origin=origin.url)

    @app.route("/page")
    def page(request):
        return "a page body"

    @app.route("/anything", methods="*")
    def anything(request):
        return request.method

    with app.serve() as srv:
        head = call(srv.url, "/page", method="HEAD")
        assert (head.status, head.body, head.headers["content-length"]) == (200, b"", "11")
        for m in ["GET", "POST", "DELETE", "PATCH", "OPTIONS"]:
            assert call(srv.url, "/anything", method=m).body == m.encode()
        r = call(srv.url, "/page", method="POST")
        assert r.status == 405 and r.headers["allow"] == "GET, HEAD"


def test_decorator_misuse_raises_at_import():
    app = ec.Edge()
    with pytest.raises(TypeError, match=r"@app.route\('/path'\)"):

        @app.route  # type: ignore[arg-type]
        def a(request):
            return "x"

    with pytest.raises(TypeError, match=r"@app.middleware\('/path/\*'\)"):

        @app.middleware  # type: ignore[arg-type]
        def b(request):
            return None

    with pytest.raises(TypeError, match="must take"):
        app.route("/x")(lambda: "no request")


def test_env_fetch_calls_the_origin_and_the_answer_can_be_edited(origin):
    app = ec.Edge(origin=origin.url)

    @app.route("/proxy/:rest")
    async def proxied(request, env):
        upstream = await env.fetch(request)
        upstream.headers["x-edited"] = "1"
        return upstream

    @app.route("/sync")
    def sync(request, env):
        r = env.fetch_sync("/from-sync?x=1", method="POST", body=b"payload", headers={"x-k": "v"})
        return ec.Response.json({"status": r.status, "seen": json.loads(r.body)}, status=201)

    @app.route("/unreachable")
    async def unreachable(request, env):
        try:
            await env.fetch("/big", max_bytes=1024)
        except ec.UpstreamError as e:
            return ec.Response(f"upstream: {e}", status=502)
        return "no error"

    with app.serve() as srv:
        r = call(srv.url, "/proxy/x?q=2", headers={"x-client": "c"})
        seen = r.json()
        assert (r.status, r.headers["x-edited"], seen["path"]) == (200, "1", "/proxy/x?q=2")
        # Forwarded as a proxied request is: the edge's forwarding fields, the client's headers.
        assert seen["headers"]["x-client"] == "c" and seen["headers"]["x-forwarded-for"] == "127.0.0.1"
        r = call(srv.url, "/sync")
        out = r.json()
        assert r.status == 201 and out["seen"]["method"] == "POST" and out["seen"]["body"] == "payload"
        assert out["seen"]["path"] == "/from-sync?x=1" and out["seen"]["headers"]["x-k"] == "v"
        r = call(srv.url, "/unreachable")
        assert r.status == 502 and b"larger than fetch's limit" in r.body


def test_wait_until_runs_after_the_response(origin):
    app = ec.Edge(origin=origin.url)
    done = threading.Event()
    order: list[str] = []

    async def later(tag):
        await asyncio.sleep(0.05)
        order.append(tag)
        done.set()

    @app.route("/bg")
    def bg(request, env):
        env.wait_until(later("after"))
        order.append("handler")
        return "answered"

    async def failing():
        raise RuntimeError("background boom")

    @app.route("/bg-fail")
    async def bg_fail(request, env):
        env.wait_until(failing())
        return "still answered"

    with app.serve() as srv:
        assert call(srv.url, "/bg").body == b"answered"
        wait_for(done.is_set, timeout=10, what="the background work")
        assert order == ["handler", "after"]
        assert call(srv.url, "/bg-fail").body == b"still answered"
        with pytest.raises(TypeError, match="awaitable"):
            srv._env.wait_until("not awaitable")  # type: ignore[arg-type]


def test_custom_rejections_replace_only_what_the_edge_wrote(origin):
    app = ec.Edge(origin=origin.url, location="lhr1")
    app.rate_limit(paths="/api/*", limit=1, period=60)
    app.jwt(paths="/private/*", key=b"k" * 32, algorithms=["HS256"])
    app.error_response(
        429,
        '{"error": "Rate limit exceeded", "remaining": {remaining}, "limit": {limit}, "where": "{location}"}',
        content_type="application/json",
    )
    app.error_response(401, {"error": "unauthorized"})
    app.error_response(502, "origin trouble ({status} {reason})")

    @app.route("/only-get")
    def only_get(request):
        return "ok"

    app.error_response(405, "use {status}: GET")
    with app.serve() as srv:
        assert call(srv.url, "/api/a").status == 200
        r = call(srv.url, "/api/a")
        assert (r.status, r.headers["content-type"]) == (429, "application/json")
        assert r.json() == {"error": "Rate limit exceeded", "remaining": 0, "limit": 1, "where": "lhr1"}
        assert int(r.headers["retry-after"]) > 0 and r.headers["ratelimit"].startswith('"default";r=0;')
        r = call(srv.url, "/private/x")
        assert (r.status, r.json()) == (401, {"error": "unauthorized"})
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = call(srv.url, "/only-get", method="DELETE")
        assert (r.status, r.body, r.headers["allow"]) == (405, b"use 405: GET", "GET, HEAD")
        # The origin's own 500 passes through untouched; the edge's 502 (origin gone) is replaced.
        r = call(srv.url, "/fail")
        assert (r.status, r.body) == (500, b"boom")
    origin.stop()
    with app.serve() as srv:
        r = call(srv.url, "/echo")
        assert (r.status, r.body) == (502, b"origin trouble (502 Bad Gateway)")
    with pytest.raises(ec.ConfigError, match="unknown variable"):
        app.error_response(403, "{nope}")
    with pytest.raises(ec.ConfigError, match="400-599"):
        app.error_response(200, "x")


def _asn_db(path):
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    w = MMDBWriter(ip_version=6, database_type="GeoLite2-ASN", ipv4_compatible=True)
    w.insert_network(
        IPSet(["81.2.69.0/24"]), {"autonomous_system_number": 20712, "autonomous_system_organization": "AS"}
    )
    w.to_db_file(str(path))
    return path


def test_several_geo_databases_merge_into_one_record(origin, tmp_path):
    from tests.geo_data import write_city_db

    app = ec.Edge(origin=origin.url)
    app.trust_proxies(["127.0.0.1/32"])
    app.geo(write_city_db(tmp_path / "city.mmdb"), _asn_db(tmp_path / "asn.mmdb"))

    @app.route("/where")
    def where(request):
        return request.geo.to_dict()

    with app.serve() as srv:
        r = call(srv.url, "/where", headers={"x-forwarded-for": "81.2.69.160"})
        geo = r.json()
        assert (geo["country"], geo["city"], geo["asn"], geo["organization"]) == ("GB", "London", 20712, "AS")
    g = ec.GeoDB(tmp_path / "city.mmdb").lookup("81.2.69.160")
    assert repr(g).startswith("Geo(country='GB', continent='EU', region='ENG', city='London'")
    assert "asn=None" in repr(g) and eval(repr(g).replace("Geo(", "dict(", 1))["latitude"] == 51.5142
    with pytest.raises(ec.ConfigError, match="at least one"):
        app.geo()


def test_conditions_on_every_rule(origin):
    other = type(origin)()
    try:
        app = ec.Edge(origin=origin.url)
        app.redirect(to="https://m.example{path_and_query}", paths="/shop/*", device="mobile")
        app.headers(response={"x-beta": "on"}, cookie={"beta": "1"})
        app.origin_for(other.url, header={"x-tenant": "b"})
        app.rewrite(to="/desktop{path}", paths="/home", device=["desktop"], exclude="/home/keep")
        app.cache(paths="/cached/*", ttl=60, cookie="consent")
        with app.serve() as srv:
            r = call(srv.url, "/shop/x?a=1", headers={"sec-ch-ua-mobile": "?1"})
            assert (r.status, r.headers["location"]) == (302, "https://m.example/shop/x?a=1")
            assert call(srv.url, "/shop/x", headers={"sec-ch-ua-mobile": "?0"}).status == 200
            assert call(srv.url, "/a", headers={"cookie": "beta=1"}).headers.get("x-beta") == "on"
            assert "x-beta" not in call(srv.url, "/a", headers={"cookie": "beta=0"}).headers
            call(srv.url, "/tenant", headers={"x-tenant": "b"})
            assert other.count("/tenant") == 1 and origin.count("/tenant") == 0
            assert call(srv.url, "/home").json()["path"] == "/desktop/home"
            assert call(srv.url, "/home", headers={"user-agent": "Mozilla/5.0 (iPhone)"}).json()["path"] == "/home"
            # The cache rule applies only with the cookie present.
            assert call(srv.url, "/cached/a").headers.get("x-cache") is None
            with_cookie = {"cookie": "consent=yes"}
            assert call(srv.url, "/cached/a", headers=with_cookie).headers["x-cache"] == "MISS"
            assert call(srv.url, "/cached/a", headers=with_cookie).headers["x-cache"] == "HIT"
        with pytest.raises(ec.ConfigError, match="'phone'"):
            app.redirect(to="/x", device="phone")
    finally:
        other.stop()
