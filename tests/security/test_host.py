"""One Host, decided once: what the cache key, X-Forwarded-Host and the origin see."""

from __future__ import annotations

import pytest

import edgecore as ec
from tests.security.conftest import get, h2_get, raw, status_of


def request(port: int, head: str) -> bytes:
    return raw(port, (head + "\r\nConnection: close\r\n\r\n").encode("latin-1"))


@pytest.mark.parametrize(
    "head",
    [
        "GET / HTTP/1.1",  # no Host
        "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example",
        "GET / HTTP/1.1\r\nHost: a.example\r\nHost: a.example",
        "GET / HTTP/1.1\r\nHost: a b/c@x",
        "GET / HTTP/1.1\r\nHost: shop.example/../admin",
        "GET / HTTP/1.1\r\nHost: user@shop.example",
        "GET / HTTP/1.1\r\nHost: shop.example:99999",
        "GET / HTTP/1.1\r\nHost: %73hop.example",
        "GET http://user@shop.example/ HTTP/1.1\r\nHost: shop.example",
    ],
)
def test_a_request_without_exactly_one_valid_host_is_400(origin, head):
    with ec.Edge(origin=origin.url).serve() as s:
        reply = request(s.port, head)
        assert status_of(reply) == 400, reply[:120]
        assert origin.requests == []


def test_the_target_authority_replaces_host_everywhere(origin):
    app = ec.Edge(origin=origin.url)
    app.cache(paths=["/page"], ttl=60)
    with app.serve() as s:
        # An absolute-form target names evil.example; Host says shop.example. The target wins
        # (RFC 9112 §3.2.2), for the origin's X-Forwarded-Host and for the cache key alike.
        reply = request(s.port, "GET http://EVIL.example/page?x=1 HTTP/1.1\r\nHost: shop.example")
        assert status_of(reply) == 200
        seen = origin.requests[-1]
        assert seen["path"] == "/page?x=1"
        assert seen["headers"]["x-forwarded-host"] == "evil.example"
        # shop.example's page is not the entry evil.example's request filled.
        before = len(origin.requests)
        assert get(s.port, "/page?x=1", host="shop.example") == 200
        assert len(origin.requests) == before + 1
        assert origin.requests[-1]["headers"]["x-forwarded-host"] == "shop.example"


def test_http2_authority_and_host_must_agree(origin):
    with ec.Edge(origin=origin.url).serve() as s:
        assert h2_get(s.port, "/p", authority="shop.example", extra=[("host", "evil.example")]) == 400
        assert h2_get(s.port, "/p", authority="shop.example", extra=[("host", "SHOP.example")]) == 200
        assert origin.requests[-1]["headers"]["x-forwarded-host"] == "shop.example"


def test_allowed_hosts_answer_others_421(origin):
    app = ec.Edge(origin=origin.url).configure(allowed_hosts=["shop.example", "*.cdn.example"])
    with app.serve() as s:
        assert get(s.port, "/", host="shop.example") == 200
        assert get(s.port, "/", host="img.cdn.example:8080") == 200
        assert get(s.port, "/", host="evil.example") == 421
        assert get(s.port, "/", host="cdn.example") == 421
        assert status_of(request(s.port, "GET http://evil.example/ HTTP/1.1\r\nHost: shop.example")) == 421
        assert h2_get(s.port, "/", authority="evil.example") == 421
    with pytest.raises(ec.ConfigError, match="allowed_hosts"):
        ec.Edge(origin=origin.url).configure(allowed_hosts=["a/b"]).serve()


def test_connect_and_the_asterisk_form_are_answered_at_the_edge(origin):
    with ec.Edge(origin=origin.url).serve() as s:
        assert status_of(request(s.port, "CONNECT shop.example:443 HTTP/1.1\r\nHost: shop.example:443")) == 405
        assert status_of(request(s.port, "GET * HTTP/1.1\r\nHost: shop.example")) == 400
        assert origin.requests == []
