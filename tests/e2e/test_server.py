"""The edge server end to end: a real server on a free port, a real origin on loopback."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jwt as pyjwt
import pytest

import edgecore as ec
from tests.e2e.conftest import call
from tests.geo_data import write_city_db

SECRET = b"s" * 32


def token(**claims) -> str:
    return pyjwt.encode({"exp": int(time.time()) + 60, **claims}, SECRET, algorithm="HS256")


# ---- proxy ----


def test_proxy_forwards_and_strips_hop_by_hop(origin):
    app = ec.Edge(origin=origin.url)
    with app.serve() as s:
        r = call(s.url, "/p?q=1", headers={"Connection": "keep-alive, x-private", "X-Private": "no", "X-Keep": "yes"})
        assert r.status == 200
        seen = r.json()
        assert seen["path"] == "/p?q=1"
        h = seen["headers"]
        assert h["x-keep"] == "yes" and "x-private" not in h
        assert h["x-forwarded-for"] == "127.0.0.1" and h["x-forwarded-proto"] == "http"
        assert h["x-forwarded-host"].startswith("127.0.0.1:") and "1.1 edgecore" in h["via"]
        assert h["host"] == origin.url.split("//")[1]
        # The origin's hop-by-hop fields do not reach the client.
        assert "x-hop" not in r.headers and "keep-alive" not in r.headers
        assert "1.1 edgecore" in r.headers["via"]


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_replaced(origin):
    with ec.Edge(origin=origin.url).serve() as s:
        seen = call(s.url, "/", headers={"X-Forwarded-For": "6.6.6.6"}).json()
        assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"


def test_post_bodies_stream_both_ways(origin):
    with ec.Edge(origin=origin.url).serve() as s:
        body = b"x" * 300_000
        r = call(s.url, "/echo", method="POST", body=body)
        assert r.json()["body"] == body.decode()
        chunked = call(s.url, "/chunked")
        assert chunked.body == b"one-two-three"


def test_origin_connections_are_kept_alive_and_reused(origin):
    with ec.Edge(origin=origin.url).configure(threads=2).serve() as s:
        for i in range(30):
            assert call(s.url, f"/seq/{i}").status == 200
        # One after another: every request goes up a pooled connection of the worker thread
        # that accepted its client (each keeps its own), so at most one per worker.
        assert 1 <= origin.connections("/seq/") <= 2
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda i: call(s.url, f"/par/{i}").status, range(80)))
        assert statuses == [200] * 80
        # Concurrent requests open more, but a pool, not one per request.
        assert 1 <= origin.connections("/par/") <= 16


def test_one_worker_thread_sends_everything_up_one_connection(origin):
    with ec.Edge(origin=origin.url).configure(threads=1).serve() as s:
        for i in range(20):
            assert call(s.url, f"/one/{i}").status == 200
        assert origin.connections("/one/") == 1


def test_a_connection_the_origin_closes_is_not_reused(origin):
    with ec.Edge(origin=origin.url).serve() as s:
        for i in range(5):
            r = call(s.url, f"/close/{i}")
            assert (r.status, r.body) == (200, b"bye")
            # The next request must not be sent on the closed connection.
            assert call(s.url, f"/after/{i}").status == 200
        assert origin.connections("/close/") == 5


def test_idle_connections_the_origin_timed_out_are_not_used():
    from tests.e2e.origin import Origin

    origin = Origin(idle_timeout=0.3)
    try:
        with ec.Edge(origin=origin.url).serve() as s:
            for i in range(4):
                assert call(s.url, f"/a/{i}").status == 200
                # The origin hangs up the idle connection; the next request must see that and
                # dial again instead of failing with a 502.
                time.sleep(0.6)
            assert origin.connections("/a/") == 4
    finally:
        origin.stop()


def test_a_client_leaving_mid_body_does_not_poison_the_pool(origin):
    import socket

    # One worker thread: every request below uses the pool the half-read connections left.
    with ec.Edge(origin=origin.url).configure(threads=1).serve() as s:
        assert call(s.url, "/warm").status == 200
        for _ in range(3):
            # Read the head and a little of an 8 MiB body, then hang up.
            c = socket.create_connection(("127.0.0.1", s.port))
            c.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
            c.close()
        # The half-read origin connections were closed, not given back: every later request
        # gets a whole, correct answer.
        for i in range(20):
            r = call(s.url, f"/next/{i}")
            assert r.status == 200 and r.json()["path"] == f"/next/{i}"
        big = call(s.url, "/big")
        assert big.status == 200 and len(big.body) == 8 * 1024 * 1024


def test_a_client_that_half_closes_still_gets_its_answer(origin):
    import socket

    with ec.Edge(origin=origin.url).serve() as s:
        c = socket.create_connection(("127.0.0.1", s.port))
        c.sendall(b"GET /half HTTP/1.1\r\nHost: x\r\n\r\n")
        c.shutdown(socket.SHUT_WR)  # done sending; still reading
        c.settimeout(5)
        data = b""
        while chunk := c.recv(65536):
            data += chunk
        c.close()
        assert data.startswith(b"HTTP/1.1 200") and b'"/half"' in data


def test_the_origin_timeout_is_re_armed_for_each_request_on_a_pooled_connection(origin):
    # One worker thread: one pool, so the counts below are exact.
    app = ec.Edge(origin=origin.url).configure(origin_timeout=0.5, threads=1)
    with app.serve() as s:
        assert call(s.url, "/t/1").status == 200
        # Idle past the timeout: the pooled connection's timer fired meanwhile, and must not
        # time out the next request on it.
        time.sleep(0.8)
        assert call(s.url, "/t/2").status == 200
        assert origin.connections("/t/") == 1
        # Slower than the timeout on that same connection: 504, and the connection is dropped.
        assert call(s.url, "/slow?s=1.0").status == 504
        for i in range(3, 6):
            assert call(s.url, f"/t/{i}").status == 200
        assert origin.connections("/t/") == 2


def test_origin_failures_are_502_and_504(origin):
    app = ec.Edge(origin=origin.url).configure(origin_timeout=0.5)
    with app.serve() as s:
        assert call(s.url, "/slow?s=2").status == 504
        assert call(s.url, "/drop").status == 502
        assert call(s.url, "/fail").status == 500, "an origin's own 500 passes through"
    with ec.Edge(origin="http://127.0.0.1:1").serve() as s:
        assert call(s.url, "/").status == 502


def test_dev_headers_are_ignored_and_dropped_outside_dev_mode(origin):
    app = ec.Edge(origin=origin.url).bots("tag")
    dev = {"X-Edge-Dev-Client-Ip": "192.0.2.1", "X-Edge-Dev-Country": "DE", "X-Edge-Dev-Bot": "1"}
    browser = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
    with app.serve() as s:
        seen = call(s.url, "/", headers={**dev, "User-Agent": browser}).json()["headers"]
        assert not [h for h in seen if h.startswith("x-edge-dev-")], seen
        assert "x-edge-bot" not in seen, "X-Edge-Dev-Bot is not honoured outside dev mode"
        assert seen["x-forwarded-for"] == "127.0.0.1"
        # Alone, too: the bot header must not reach the origin either.
        only_bot = call(s.url, "/", headers={"X-Edge-Dev-Bot": "1", "User-Agent": browser}).json()["headers"]
        assert "x-edge-dev-bot" not in only_bot and "x-edge-bot" not in only_bot


def test_no_origin_and_no_route_is_404():
    with ec.Edge().serve() as s:
        assert call(s.url, "/nothing").status == 404


# ---- Python handlers ----


def test_sync_and_async_handlers_params_and_return_types():
    app = ec.Edge()

    @app.route("/users/:id")
    def user(request, env):
        return ec.Response.json({"id": request.params["id"], "ip": request.client_ip}, status=201)

    @app.route("/text")
    def text(request, env):
        return "plain"

    @app.route("/bytes")
    def raw(request, env):
        return b"\x00\x01"

    @app.route("/dict", methods=["POST"])
    async def as_dict(request, env):
        return {"got": request.body.decode(), "method": request.method}

    with app.serve() as s:
        r = call(s.url, "/users/42")
        assert (r.status, r.json()) == (201, {"id": "42", "ip": "127.0.0.1"})
        assert call(s.url, "/text").body == b"plain"
        assert call(s.url, "/bytes").headers["content-type"] == "application/octet-stream"
        r = call(s.url, "/dict", method="POST", body=b"hi")
        assert r.json() == {"got": "hi", "method": "POST"}
        wrong = call(s.url, "/dict")
        assert wrong.status == 405 and wrong.headers["allow"] == "POST"


def test_a_failing_handler_is_a_500_and_the_server_lives(caplog):
    app = ec.Edge()

    @app.route("/raise")
    def boom(request, env):
        raise RuntimeError("kaboom")

    @app.route("/wrong")
    def wrong(request, env):
        return 42

    @app.route("/ok")
    def ok(request, env):
        return "fine"

    with app.serve() as s:
        assert call(s.url, "/raise").status == 500
        assert call(s.url, "/wrong").status == 500
        assert call(s.url, "/ok").body == b"fine"
    assert "kaboom" in caplog.text


def test_handler_timeout_is_504():
    app = ec.Edge().configure(handler_timeout=0.3)

    @app.route("/sleepy")
    async def sleepy(request, env):
        import asyncio

        await asyncio.sleep(2)
        return "late"

    with app.serve() as s:
        t0 = time.monotonic()
        assert call(s.url, "/sleepy").status == 504
        assert time.monotonic() - t0 < 1.5


def test_full_python_queue_is_503_with_retry_after():
    app = ec.Edge().configure(python_queue=1)
    release = threading.Event()

    @app.route("/block")
    def block(request, env):
        release.wait(5)
        return "done"

    with app.serve(workers=1) as s:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(call, s.url, "/block") for _ in range(8)]
            time.sleep(0.5)
            release.set()
            statuses = sorted(f.result().status for f in futures)
        assert 503 in statuses and 200 in statuses
        busy = next(f.result() for f in futures if f.result().status == 503)
        assert busy.headers["retry-after"] == "1"


def test_kv_is_available_to_handlers():
    app = ec.Edge().kv("sessions")

    @app.route("/count")
    def count(request, env):
        kv = env.kv["sessions"]
        n = int(kv.get("n") or 0) + 1
        kv.put("n", str(n))
        return str(n)

    with app.serve() as s:
        assert [call(s.url, "/count").body for _ in range(3)] == [b"1", b"2", b"3"]


def test_middleware_answers_or_continues_with_edited_headers(origin):
    app = ec.Edge(origin=origin.url)

    @app.middleware(["/admin/*"])
    def gate(request):
        if request.headers.get("x-admin") != "yes":
            return ec.Response("no", status=403)
        return None

    @app.middleware(["re:^/api/v[0-9]+/"])
    def tag(request):
        request.headers.set("x-api-version", request.path.split("/")[2])
        return None

    with app.serve() as s:
        assert call(s.url, "/admin/panel").status == 403
        assert call(s.url, "/admin/panel", headers={"X-Admin": "yes"}).status == 200
        assert call(s.url, "/api/v2/items").json()["headers"]["x-api-version"] == "v2"


PROBE = """
import http.client, json, sys, time
host, port = sys.argv[1], int(sys.argv[2])
time.sleep(float(sys.argv[3]))
out = []
for path in ["/cached/x", "/old"] * 5:
    t0 = time.time()
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    out.append([path, r.status, r.getheader("x-cache"), t0, time.time()])
    c.close()
print(json.dumps(out))
"""


def test_rust_only_routes_keep_serving_while_python_holds_the_gil(origin):
    """A handler runs a slow regular expression (a C call that never releases the GIL). A client in
    another process (this process's threads are frozen by the held GIL too) gets cache hits and
    redirects answered while the regular expression is still running."""
    import json
    import re
    import subprocess
    import sys

    app = ec.Edge(origin=origin.url)
    app.cache(paths=["/cached/*"])
    app.redirect(to="/new", paths=["/old"])
    window = {}

    # Catastrophic backtracking: each extra "a" doubles the time spent inside one C call. Sized
    # for this CPU and its load: the first length that itself takes over 1.5 s (a run at a
    # length that took 0.3 s, plus two, once took under 1 s on a loaded machine).
    n = 16
    while True:
        t = time.perf_counter()
        re.match(r"(a+)+$", "a" * n + "!")
        if time.perf_counter() - t > 1.5:
            break
        n += 1
    subject = "a" * n + "!"

    @app.route("/busy")
    def busy(request, env):
        window["start"] = time.time()
        re.match(r"(a+)+$", subject)
        window["end"] = time.time()
        return "done"

    with app.serve() as s:
        call(s.url, "/cached/x")  # fill the cache
        probe = subprocess.Popen(
            [sys.executable, "-c", PROBE, "127.0.0.1", str(s.port), "0.8"], stdout=subprocess.PIPE, text=True
        )
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(call, s.url, "/busy", timeout=60)
            out, _ = probe.communicate(timeout=60)
            assert slow.result().body == b"done"
    results = json.loads(out)
    assert [(p, st) for p, st, *_ in results] == [("/cached/x", 200), ("/old", 302)] * 5
    assert all(xc == "HIT" for p, _, xc, *_ in results if p == "/cached/x")
    assert window["end"] - window["start"] > 1.0, "the regular expression held the GIL for a while"
    for _, _, _, t0, t1 in results:
        assert window["start"] < t0 and t1 < window["end"], "answered while Python held the GIL"
        assert t1 - t0 < 0.5


# ---- policies ----


def test_jwt_rejections_and_claims(origin):
    app = ec.Edge(origin=origin.url)
    app.jwt(paths=["/api/*"], key=SECRET, algorithms=["HS256"], claims_to_headers={"sub": "x-user"}, cookie="session")

    @app.route("/api/me")
    def me(request, env):
        return {"claims": request.claims}

    with app.serve() as s:
        missing = call(s.url, "/api/data")
        assert missing.status == 401 and missing.headers["www-authenticate"] == "Bearer"
        bad = call(s.url, "/api/data", headers={"Authorization": "Bearer nope"})
        assert bad.status == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]
        expired = pyjwt.encode({"exp": 1}, SECRET, algorithm="HS256")
        assert call(s.url, "/api/data", headers={"Authorization": f"Bearer {expired}"}).status == 401
        good = call(s.url, "/api/data", headers={"Authorization": f"Bearer {token(sub='u1')}"})
        assert good.status == 200 and good.json()["headers"]["x-user"] == "u1"
        assert (
            call(s.url, "/api/data", headers={"Cookie": f"a=b; session={token(sub='u2')}"}).json()["headers"]["x-user"]
            == "u2"
        )
        assert (
            call(s.url, "/api/me", headers={"Authorization": f"Bearer {token(sub='u3')}"}).json()["claims"]["sub"]
            == "u3"
        )
        assert call(s.url, "/public").status == 200


def test_rate_limit_429_with_headers(origin):
    app = ec.Edge(origin=origin.url)
    app.rate_limit(paths=["/*"], limit=3, period=60)
    app.rate_limit(paths=["/by-key/*"], limit=1, period=60, key="header:x-api-key")
    with app.serve() as s:
        statuses = [call(s.url, "/x") for _ in range(4)]
        assert [r.status for r in statuses] == [200, 200, 200, 429]
        refused = statuses[-1]
        assert refused.headers["retry-after"] == "20"
        assert refused.headers["ratelimit-policy"] == '"default";q=3;w=60'
        assert refused.headers["ratelimit"] == '"default";r=0;t=60'
        assert statuses[0].headers["ratelimit"] == '"default";r=2;t=20'
        assert "ratelimit-limit" not in refused.headers


def test_rate_limit_legacy_fields_report_the_burst(origin):
    app = ec.Edge(origin=origin.url)
    app.rate_limit(paths=["/*"], limit=10, period=60, burst=2, headers="legacy")
    with app.serve() as s:
        first = call(s.url, "/x")
        assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == ("2", "1")
        assert "ratelimit-policy" not in first.headers
    with pytest.raises(ec.ConfigError, match="legacy"):
        app.rate_limit(paths="/*", limit=1, period=1, headers="old")


def test_rate_limit_by_header_key(origin):
    app = ec.Edge(origin=origin.url)
    app.rate_limit(paths=["/*"], limit=1, period=60, key="header:x-api-key")
    with app.serve() as s:
        assert call(s.url, "/", headers={"X-Api-Key": "a"}).status == 200
        assert call(s.url, "/", headers={"X-Api-Key": "a"}).status == 429
        assert call(s.url, "/", headers={"X-Api-Key": "b"}).status == 200


def test_bots_block_tag_and_allow(origin):
    googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"
    with ec.Edge(origin=origin.url).bots("block").serve() as s:
        assert call(s.url, "/", headers={"User-Agent": "curl/8.0"}).status == 403
        assert call(s.url, "/", headers={"User-Agent": browser}).status == 200
    with ec.Edge(origin=origin.url).bots("block", allow=["Googlebot"]).serve() as s:
        assert call(s.url, "/", headers={"User-Agent": googlebot}).status == 200
    with ec.Edge(origin=origin.url).bots("tag").serve() as s:
        assert call(s.url, "/", headers={"User-Agent": "curl/8.0"}).json()["headers"]["x-edge-bot"] == "1"


def test_geo_redirect_rewrite_origin_for_and_header_templates(origin, tmp_path):
    other = type(origin)()
    try:
        db = write_city_db(tmp_path / "city.mmdb")
        app = ec.Edge(origin=origin.url)
        app.trust_proxies(["127.0.0.1"])
        app.geo(str(db))
        app.redirect(to="https://example.de{path}", status=308, paths=["/shop/*"], country="DE")
        app.rewrite(to="/uk-home", paths=["/home"], country=["GB"])
        app.origin_for(other.url, continent="NA")
        app.headers(request={"x-user-country": "{geo.country}"}, response={"x-edge-region": "{geo.region}/{geo.city}"})
        with app.serve() as s:
            de = {"X-Forwarded-For": "2001:db8::7"}
            gb = {"X-Forwarded-For": "81.2.69.160"}
            us = {"X-Forwarded-For": "198.51.100.9"}
            r = call(s.url, "/shop/boots?size=42", headers=de)
            assert r.status == 308 and r.headers["location"] == "https://example.de/shop/boots"
            r = call(s.url, "/home", headers=gb)
            assert r.json()["path"] == "/uk-home" and r.json()["headers"]["x-user-country"] == "GB"
            assert r.headers["x-edge-region"] == "ENG/London"
            assert call(s.url, "/home", headers=us).json()["path"] == "/home"
            assert other.count("/home") == 1, "NA clients go to the other origin"
            assert origin.count("/shop") == 0
    finally:
        other.stop()


def test_ab_variants_are_sticky_and_forwarded(origin):
    app = ec.Edge(origin=origin.url)
    app.ab_test("hero", {"a": 50, "b": 50})
    with app.serve() as s:
        first = call(s.url, "/")
        cookies = first.all("set-cookie")
        variant = next(c for c in cookies if c.startswith("ec-ab-hero=")).split(";")[0].split("=")[1]
        uid = next(c for c in cookies if c.startswith("ec-uid=")).split(";")[0]
        assert first.json()["headers"]["x-ab-hero"] == variant
        again = call(s.url, "/", headers={"Cookie": f"ec-ab-hero={variant}; {uid}"})
        assert again.json()["headers"]["x-ab-hero"] == variant and not again.all("set-cookie")
        # Same unit id, no variant cookie: the same deterministic assignment.
        same = call(s.url, "/", headers={"Cookie": uid})
        assert same.json()["headers"]["x-ab-hero"] == variant


def test_cache_through_the_server(origin):
    app = ec.Edge(origin=origin.url)
    app.cache(paths=["/cached/*", "/etag", "/private"], ttl=30)
    with app.serve() as s:
        a = call(s.url, "/cached/a")
        b = call(s.url, "/cached/a")
        assert (a.headers["x-cache"], b.headers["x-cache"]) == ("MISS", "HIT") and a.body == b.body
        assert origin.count("/cached/a") == 1
        assert call(s.url, "/cached/a", headers={"Authorization": "Bearer x"}).headers["x-cache"] == "BYPASS"
        # Private responses are never shared.
        call(s.url, "/private")
        assert call(s.url, "/private").headers["x-cache"] == "MISS"
        # Conditional revalidation: max-age=1, then a 304 refresh.
        assert call(s.url, "/etag").body == b"version 1"
        time.sleep(1.2)
        r = call(s.url, "/etag")
        assert r.headers["x-cache"] == "REVALIDATED" and r.body == b"version 1"
        # Unsafe methods invalidate.
        assert call(s.url, "/cached/a", method="POST", body=b"x").status == 200
        assert call(s.url, "/cached/a").headers["x-cache"] == "MISS"


def test_concurrent_misses_make_one_origin_fetch(origin):
    app = ec.Edge(origin=origin.url)
    app.cache(paths=["/cached/*"])
    with app.serve() as s, ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda _: call(s.url, "/cached/slowfill"), range(20)))
    assert {r.status for r in replies} == {200}
    assert len({r.body for r in replies}) == 1
    assert origin.count("/cached/slowfill") == 1


# ---- limits, shutdown, protocols ----


def test_request_limits(origin):
    app = ec.Edge(origin=origin.url).configure(max_uri_bytes=100, max_body_bytes=1000, max_header_bytes=8192)
    with app.serve() as s:
        assert call(s.url, "/" + "a" * 200).status == 414
        assert call(s.url, "/", method="POST", body=b"x" * 2000).status == 413
        assert call(s.url, "/", headers={"X-Big": "y" * 20000}).status == 431


def test_graceful_shutdown_finishes_requests_in_flight(origin):
    app = ec.Edge(origin=origin.url).configure(grace_period=5)
    s = app.serve()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(call, s.url, "/slow?s=1") for _ in range(4)]
        time.sleep(0.3)
        s.stop()
        assert [f.result().status for f in futures] == [200] * 4


def test_http2_prior_knowledge(origin):
    httpx = pytest.importorskip("httpx")
    with ec.Edge(origin=origin.url).serve() as s, httpx.Client(http1=False, http2=True) as client:
        r = client.get(s.url + "/h2")
        assert r.status_code == 200 and r.http_version == "HTTP/2"
        assert r.json()["path"] == "/h2"
        # HTTP/2 carries the host in :authority, not in a Host field: it is forwarded all the same.
        assert r.json()["headers"]["x-forwarded-host"] == f"127.0.0.1:{s.port}"


def test_configuration_errors_name_the_problem():
    with pytest.raises(ec.ConfigError, match="must start with http"):
        ec.Edge(origin="ftp://x")
    with pytest.raises(ec.ConfigError, match="key"):
        ec.Edge().rate_limit(paths=["/"], limit=1, period=1, key="cookie:x")
    # Found by the call that wrote it (issue 15), not later by serve().
    with pytest.raises(ec.ConfigError, match="unknown template variable"):
        ec.Edge().headers(request={"x": "{nope}"})
    with pytest.raises(ec.ConfigError, match="path pattern"):
        bad = ec.Edge()
        bad.cache(paths=["no-slash"])
        bad.serve()


def test_reload_keeps_caches_whose_rule_and_origin_are_unchanged(origin, tmp_path):
    def app(ttl: float = 60, extra_limit: bool = False, origin_url: str = origin.url) -> ec.Edge:
        a = ec.Edge(origin=origin_url).cache(paths=["/cached/*"], ttl=ttl)
        if extra_limit:
            a.rate_limit(paths=["/api/*"], limit=5, period=60)
        return a

    with app().serve() as s:
        assert call(s.url, "/cached/a").headers["x-cache"] == "MISS"
        assert call(s.url, "/cached/a").headers["x-cache"] == "HIT"
        s.reload(app(extra_limit=True))  # an unrelated change (or a certificate renewal)
        assert call(s.url, "/cached/a").headers["x-cache"] == "HIT"
        s.reload(app(ttl=30))  # the rule changed: its cache starts empty
        assert call(s.url, "/cached/a").headers["x-cache"] == "MISS"
        assert call(s.url, "/cached/a").headers["x-cache"] == "HIT"
        s.reload(app(ttl=30, origin_url=origin.url + "/"))  # another origin: content may differ
        assert call(s.url, "/cached/a").headers["x-cache"] == "MISS"


def test_reload_swaps_handlers_and_policies_without_dropping_connections(origin):
    app = ec.Edge(origin=origin.url)

    @app.route("/v")
    def one(request, env):
        return "one"

    new = ec.Edge(origin=origin.url)
    new.redirect(to="/elsewhere", paths=["/old"])

    @new.route("/v")
    def two(request, env):
        return "two"

    def ask(sock: socket.socket) -> bytes:
        sock.sendall(b"GET /v HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith((b"one", b"two")):
            chunk = sock.recv(65536)
            assert chunk, "the kept-alive connection was closed"
            data += chunk
        return data[-3:]

    with app.serve() as s:
        assert call(s.url, "/v").body == b"one"
        assert call(s.url, "/old").status == 200
        # A keep-alive connection opened before the reload is served by the new app after it.
        kept = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        assert ask(kept) == b"one"
        s.reload(new)
        assert ask(kept) == b"two"
        kept.close()
        assert call(s.url, "/v").body == b"two"
        assert call(s.url, "/old").status == 302
        bad = ec.Edge()
        bad.headers(request={"x": "{request_id}"})  # without app.request_ids(): refused as a whole
        with pytest.raises(ec.ConfigError):
            s.reload(bad)
        assert call(s.url, "/v").body == b"two", "a rejected reload keeps the running app"
