"""What a policy checked is what the origin receives: the neighbours of a protected path.

Each attack is sent as exact bytes (raw sockets, or h2 frames for HTTP/2) so that no client
library normalises it first. Real Flask and Starlette origins show that no variant reaches the
protected resource; the recording origin shows the exact target the origin received.
"""

from __future__ import annotations

import time

import jwt as pyjwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgecore as ec
from tests.security.conftest import get, h2_get, raw, status_of

SECRET = b"s" * 32

# The neighbours of /api/x that origins route to /api/x (or that a servlet container would).
API_VARIANTS = [
    "//api/x",
    "/api//x",
    "/%61pi/x",
    "/%61%70%69/%78",
    "/api%2Fx",
    "/api%2fx",
    "/api%5Cx",
    "/api\\x",
    "/./api/x",
    "/x/../api/x",
    "/%2e/api/x",
    "/%2E%2E/api/x",
    "/api/./x",
    "/api/x;",
    "/api;x/x",
    "/api/x/.",
]
LOGIN_VARIANTS = ["/login", "//login", "/%6cogin", "/%6Cogin", "/login;x", "/./login", "/x/../login", "/login/."]


def token(**claims) -> str:
    return pyjwt.encode({"exp": int(time.time()) + 60, **claims}, SECRET, algorithm="HS256")


def guarded(origin_url: str) -> ec.Edge:
    app = ec.Edge(origin=origin_url)
    app.jwt(paths=["/api/*"], key=SECRET, algorithms=["HS256"])
    app.rate_limit(paths=["/login"], limit=2, period=60)

    @app.middleware(["/admin/*"])
    def admin_only(request):
        if request.headers.get("x-admin-token") != "letmein":
            return ec.Response("forbidden", status=403)
        return None

    return app


@pytest.mark.parametrize("target", API_VARIANTS)
def test_no_neighbour_of_a_jwt_path_reaches_a_real_origin_without_a_token(real_origin, target):
    with guarded(real_origin.url).serve() as s:
        reply = raw(s.port, f"GET {target} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n".encode())
        assert status_of(reply) in (400, 401), reply[:200]
        assert b"SECRET" not in reply


@pytest.mark.parametrize("target", ["//admin/reports", "/%61dmin/reports", "/admin%2Freports", "/x/../admin/reports"])
def test_no_neighbour_of_a_middleware_path_reaches_a_real_origin(real_origin, target):
    with guarded(real_origin.url).serve() as s:
        reply = raw(s.port, f"GET {target} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n".encode())
        assert status_of(reply) in (400, 403), reply[:200]
        assert b"SECRET" not in reply


def test_a_rate_limit_cannot_be_escaped_through_a_neighbour(real_origin):
    with guarded(real_origin.url).serve() as s:
        served = 0
        for target in LOGIN_VARIANTS * 2:
            reply = raw(s.port, f"GET {target} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n".encode())
            assert status_of(reply) in (200, 400, 429), reply[:200]
            served += status_of(reply) == 200 and reply.endswith(b"login")
        assert served == 2


def test_with_a_token_the_origin_receives_the_canonical_target(origin):
    with guarded(origin.url).serve() as s:
        auth = {"Authorization": f"Bearer {token()}"}
        for target, canonical in [
            ("//api//x/./y?q=%2f&r=a%20b", "/api/x/y?q=%2f&r=a%20b"),
            ("/%61pi/%7euser/%41", "/api/~user/A"),
            ("/api/a/b/../c", "/api/a/c"),
            ("/api/caf%c3%a9", "/api/caf%C3%A9"),
            ("/api/x/", "/api/x/"),
        ]:
            assert get(s.port, target, auth) == 200
            assert origin.requests[-1]["path"] == canonical, target


def test_escaped_slashes_and_parameters_follow_the_settings(origin):
    app = guarded(origin.url).configure(escaped_slashes="decode", path_params="strip")
    with app.serve() as s:
        # Decoded, the variants are the protected path itself: the token is required.
        for target in ["/api%2Fx", "/api%5cx", "/api;p/x", "/api/x;jsessionid=1"]:
            assert get(s.port, target) == 401, target
        assert get(s.port, "/api%2Fx;p", {"Authorization": f"Bearer {token()}"}) == 200
        assert origin.requests[-1]["path"] == "/api/x"
    with guarded(origin.url).configure(escaped_slashes="keep").serve() as s:
        assert get(s.port, "/api%2fx", {"Authorization": f"Bearer {token()}"}) == 200
        assert origin.requests[-1]["path"] == "/api%2Fx"
    with pytest.raises(ec.ConfigError, match="escaped_slashes"):
        guarded(origin.url).configure(escaped_slashes="sometimes").serve()


@pytest.mark.parametrize("target", ["//api/x", "/%61pi/x", "/api%2Fx", "/x/../api/x", "/api/./x"])
def test_over_http2_too(origin, target):
    with guarded(origin.url).serve() as s:
        assert h2_get(s.port, target) in (400, 401)
        ok = h2_get(s.port, "/%61pi//x", extra=[("authorization", f"Bearer {token()}")])
        assert ok == 200
        assert origin.requests[-1]["path"] == "/api/x"
        assert all(r["path"] == "/api/x" for r in origin.requests)


SEGMENTS = st.sampled_from(["api", "x", ".", "..", "", "%61", "%2e", "%2E%2E", "a%20b", "~u", "%7E", "%41pi"])


def test_the_policy_view_is_the_origin_view():
    """For random targets (60 examples), the path a Python middleware sees (the policies' view)
    is the path the origin receives, and it is a fixed point of canonicalisation. One server
    and one origin serve every example (a server per example made this the suite's slowest
    test, ~30 s)."""
    from tests.e2e.origin import Origin

    o = Origin()
    seen: list[str] = []
    app = ec.Edge(origin=o.url)

    @app.middleware(["/*"])
    def record(request):
        seen.append(request.path)
        return None

    @settings(max_examples=60, deadline=None)
    @given(st.lists(SEGMENTS, min_size=1, max_size=6))
    def check(port: int, segments: list[str]) -> None:
        target = "/" + "/".join(segments)
        seen.clear()
        o.requests.clear()
        status = get(port, target)
        assert status == 200, target
        assert len(o.requests) == 1 and len(seen) == 1
        assert o.requests[0]["path"] == seen[0], target
        # Sent again, the canonical form is unchanged.
        assert get(port, seen[0]) == 200
        assert o.requests[1]["path"] == seen[0]

    try:
        with app.serve() as s:
            check(s.port)
    finally:
        o.stop()


def test_case_insensitive_paths_cover_every_case_and_keep_the_path(origin):
    app = guarded(origin.url).configure(case_insensitive_paths=True)

    @app.route("/hello/:name")
    def hello(request, env):
        return request.params["name"]

    with app.serve() as s:
        for target in ["/API/x", "/Api/x", "/%41PI/x"]:
            assert get(s.port, target) == 401, target
        assert [get(s.port, t) for t in ["/LOGIN", "/Login/", "/login"]] == [200, 200, 429]
        # The origin receives the path in the client's case; parameters keep it too.
        assert get(s.port, "/API/x", {"Authorization": f"Bearer {token()}"}) == 200
        assert origin.requests[-1]["path"] == "/API/x"
        reply = raw(s.port, b"GET /HELLO/Bob HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n")
        assert status_of(reply) == 200 and reply.endswith(b"Bob")
    # Off by default: case matters.
    with guarded(origin.url).serve() as s:
        assert get(s.port, "/API/x") == 200
