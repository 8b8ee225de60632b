"""The edge owns its headers: a client can never supply, remove or override one, on any path."""

from __future__ import annotations

import time

import jwt as pyjwt
import pytest

import edgecore as ec
from tests.security.conftest import get, raw, status_of

SECRET = b"s" * 32


def token(**claims) -> str:
    return pyjwt.encode({"exp": int(time.time()) + 60, **claims}, SECRET, algorithm="HS256")


def app_for(origin_url: str) -> ec.Edge:
    app = ec.Edge(origin=origin_url)
    app.jwt(
        paths=["/api/*"],
        key=SECRET,
        algorithms=["HS256"],
        cookie="session",
        claims_to_headers={"sub": "x-user-id", "role": "x-user-role"},
    )
    app.headers(paths=["/geo/*"], request={"x-user-country": "{geo.country}"})
    app.ab_test("hero", {"a": 50, "b": 50}, paths=["/shop/*"])
    return app


SPOOFED = {
    "x-user-role": "admin",
    "x-user-id": "admin",
    "x-user-country": "US",
    "x-edge-bot": "0",
    "x-ab-hero": "evil",
    "forwarded": "for=1.2.3.4",
    "x-real-ip": "1.2.3.4",
    "x-forwarded-host": "evil.example",
    "x-forwarded-proto": "https",
}


@pytest.mark.parametrize("path", ["/api/x", "/public", "/geo/x", "/shop/x"])
def test_spoofed_edge_headers_never_reach_the_origin(origin, path):
    with app_for(origin.url).serve() as s:
        # A valid token without `role`: the client's x-user-role must not stand in for it.
        headers = {**SPOOFED, "Authorization": f"Bearer {token(sub='alice')}"}
        assert get(s.port, path, headers) == 200
        seen = origin.requests[-1]["headers"]
        for name, value in SPOOFED.items():
            assert seen.get(name) != value, name
        assert "x-user-role" not in seen and "forwarded" not in seen and "x-real-ip" not in seen
        if path == "/api/x":
            assert seen["x-user-id"] == "alice"
        else:
            assert "x-user-id" not in seen
        assert seen["x-forwarded-for"] == "127.0.0.1"


def test_connection_cannot_remove_what_the_edge_sets(origin):
    app = app_for(origin.url)
    app.bots("tag")
    with app.serve() as s:
        headers = {
            "Authorization": f"Bearer {token(sub='alice')}",
            "Connection": "x-edge-bot, x-user-id, x-forwarded-for, via",
            "User-Agent": "Googlebot/2.1",
        }
        assert get(s.port, "/api/x", headers) == 200
        seen = origin.requests[-1]["headers"]
        assert seen["x-user-id"] == "alice"
        assert seen["x-edge-bot"] == "1"
        assert seen["x-forwarded-for"] == "127.0.0.1"
        assert "1.1 edgecore" in seen["via"]


def test_a_claim_that_cannot_be_a_header_fails_the_request(origin):
    with app_for(origin.url).serve() as s:
        bad = token(sub="alice", role="admin\r\nx-evil: 1")
        assert get(s.port, "/api/x", {"Authorization": f"Bearer {bad}", "x-user-role": "admin"}) == 401
        assert origin.requests == []
        accented = token(sub="José")
        assert get(s.port, "/api/x", {"Authorization": f"Bearer {accented}"}) == 200
        assert origin.requests[-1]["headers"]["x-user-id"] == "Jos%C3%A9"


def test_two_credentials_or_two_authorizations_are_refused(origin):
    with app_for(origin.url).serve() as s:
        alice, bob = token(sub="alice"), token(sub="bob")
        both = raw(
            s.port,
            (
                "GET /api/x HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n"
                f"Authorization: Bearer {alice}\r\nAuthorization: Bearer {bob}\r\n\r\n"
            ).encode(),
        )
        assert status_of(both) == 400
        assert get(s.port, "/api/x", {"Authorization": f"Bearer {alice}", "Cookie": f"session={bob}"}) == 401
        assert origin.requests == []
        assert get(s.port, "/api/x", {"Cookie": f"session={alice}"}) == 200
        assert origin.requests[-1]["headers"]["x-user-id"] == "alice"


def test_a_trusted_proxys_chain_gains_the_proxy_not_the_client_twice(origin):
    app = ec.Edge(origin=origin.url)
    app.trust_proxies(["127.0.0.1"])
    with app.serve() as s:
        assert get(s.port, "/", {"X-Forwarded-For": "203.0.113.7"}) == 200
        assert origin.requests[-1]["headers"]["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"


def test_a_trusted_load_balancer_cannot_pass_spoofed_edge_headers_on(origin):
    app = app_for(origin.url)
    app.trust_proxies(["127.0.0.1"])
    with app.serve() as s:
        assert get(s.port, "/public", {"x-user-id": "admin", "x-edge-bot": "0"}) == 200
        seen = origin.requests[-1]["headers"]
        assert "x-user-id" not in seen and "x-edge-bot" not in seen
    app = app_for(origin.url).configure(trust_proxy_headers=True)
    app.trust_proxies(["127.0.0.1"])
    with app.serve() as s:
        assert get(s.port, "/public", {"x-user-id": "set-by-the-edge-in-front"}) == 200
        assert origin.requests[-1]["headers"]["x-user-id"] == "set-by-the-edge-in-front"
