"""The cache never hands one client's answer to another: not when requests are coalesced, not
through a client's conditionals or body, not past a credential or the middleware that guards a
path. Each leak case is a concurrent or crafted request against a real origin."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import jwt as pyjwt

import edgecore as ec
from tests.e2e.conftest import call
from tests.security.conftest import raw, status_of

SECRET = b"s" * 32


def token(**claims) -> str:
    return pyjwt.encode({"exp": int(time.time()) + 60, **claims}, SECRET, algorithm="HS256")


def cached_app(origin_url: str, paths=("/*",)) -> ec.Edge:
    app = ec.Edge(origin=origin_url)
    app.cache(paths=list(paths), ttl=60)
    return app


def test_a_waiter_never_gets_the_leaders_private_answer(origin):
    with cached_app(origin.url).serve() as s:
        with ThreadPoolExecutor(2) as pool:
            alice = pool.submit(call, s.url, "/personal/x", headers={"Cookie": "who=alice"})
            time.sleep(0.15)  # Bob arrives while Alice's fill is in flight.
            bob = pool.submit(call, s.url, "/personal/x")
            a, b = alice.result(), bob.result()
        assert a.body == b"page of who=alice" and a.headers["set-cookie"] == "session=secret-of-who=alice"
        assert b.body == b"page of anonymous", b.body
        assert b.headers["set-cookie"] == "session=secret-of-anonymous"
        assert origin.count("/personal") == 2


def test_a_waiter_gets_its_own_vary_variant(origin):
    with cached_app(origin.url).serve() as s:
        with ThreadPoolExecutor(2) as pool:
            de = pool.submit(call, s.url, "/vary/x", headers={"Accept-Language": "de"})
            time.sleep(0.1)
            fr = pool.submit(call, s.url, "/vary/x", headers={"Accept-Language": "fr"})
            assert de.result().body == b"lang de"
            assert fr.result().body == b"lang fr"


def test_concurrent_misses_of_a_shareable_answer_still_make_one_fetch(origin):
    with cached_app(origin.url).serve() as s:
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda _: call(s.url, "/cached/slowfill"), range(8)))
        assert {r.status for r in replies} == {200}
        assert len({r.body for r in replies}) == 1
        assert origin.count("/cached/slowfill") == 1


def test_a_clients_conditional_or_range_never_poisons_the_entry(origin):
    with cached_app(origin.url).serve() as s:
        # A miss carrying If-None-Match: the fill asks for the full answer, so no empty 304 is
        # stored for everyone.
        first = call(s.url, "/etag/a", headers={"If-None-Match": '"v1"'})
        assert first.status == 200 and first.body == b"version 1"
        assert "if-none-match" not in origin.requests[-1]["headers"]
        second = call(s.url, "/etag/a")
        assert second.status == 200 and second.body == b"version 1"
        # A Range request on a miss: the full representation is fetched and served.
        ranged = call(s.url, "/cached/range", headers={"Range": "bytes=0-3"})
        assert ranged.status == 200 and "range" not in origin.requests[-1]["headers"]
        assert call(s.url, "/cached/range").body == ranged.body


def test_a_get_with_a_body_is_neither_stored_nor_served_from_the_cache(origin):
    with cached_app(origin.url).serve() as s:
        with_body = raw(
            s.port,
            b"GET /cached/b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        assert status_of(with_body) == 200
        assert call(s.url, "/cached/b").headers["x-cache"] == "MISS"
        # And a stored entry is not served to a request with a body either.
        with_body = raw(
            s.port,
            b"GET /cached/b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        assert b"x-cache: HIT" not in with_body
        assert origin.count("/cached/b") == 3


def test_a_jwt_cookie_is_a_credential_for_the_cache(origin):
    app = cached_app(origin.url, paths=["/api/*"])
    app.jwt(paths=["/api/*"], key=SECRET, algorithms=["HS256"], cookie="session")
    with app.serve() as s:
        alice = call(s.url, "/api/cached/x", headers={"Cookie": f"session={token(sub='alice')}"})
        assert alice.status == 200
        bob = call(s.url, "/api/cached/x", headers={"Cookie": f"session={token(sub='bob')}"})
        assert bob.status == 200 and bob.headers.get("x-cache") != "HIT"
        assert origin.count("/api/cached/x") == 2


def test_middleware_runs_before_a_cache_hit(origin):
    app = cached_app(origin.url, paths=["/admin/cached/*"])

    @app.middleware(["/admin/*"])
    def admin_only(request):
        if request.headers.get("x-admin-token") != "letmein":
            return ec.Response("forbidden", status=403)
        return None

    with app.serve() as s:
        admin = call(s.url, "/admin/cached/report", headers={"x-admin-token": "letmein"})
        assert admin.status == 200
        again = call(s.url, "/admin/cached/report", headers={"x-admin-token": "letmein"})
        assert again.headers["x-cache"] == "HIT"
        anonymous = call(s.url, "/admin/cached/report")
        assert anonymous.status == 403 and anonymous.body == b"forbidden"
