"""Rate-limit keys that cannot collide: typed namespaces, and IPv6 clients by their /64."""

from __future__ import annotations

import edgecore as ec
from tests.security.conftest import get


def test_a_header_key_cannot_drain_an_ip_bucket(origin):
    app = ec.Edge(origin=origin.url)
    # Keyed by API key; a request without one falls back to its IP, in the same rule.
    app.rate_limit(paths=["/api/*"], limit=2, period=60, key="header:x-api-key")
    with app.serve() as s:
        # The attacker's API key is the text of 127.0.0.1's fallback key.
        assert [get(s.port, "/api/x", {"x-api-key": "ip:127.0.0.1"}) for _ in range(3)] == [200, 200, 429]
        # The anonymous clients of 127.0.0.1 still have their own two requests.
        assert [get(s.port, "/api/x") for _ in range(3)] == [200, 200, 429]


def test_ipv6_clients_rotating_inside_their_64_share_one_bucket(origin):
    app = ec.Edge(origin=origin.url)
    app.trust_proxies(["127.0.0.1"])
    app.rate_limit(paths=["/login"], limit=3, period=60)
    with app.serve() as s:
        statuses = [get(s.port, "/login", {"X-Forwarded-For": f"2001:db8:1:2::{i:x}"}) for i in range(1, 7)]
        assert statuses == [200, 200, 200, 429, 429, 429]
        # Another /64 has its own bucket.
        assert get(s.port, "/login", {"X-Forwarded-For": "2001:db8:1:3::1"}) == 200
    app = ec.Edge(origin=origin.url).configure(ipv6_prefix=128)
    app.trust_proxies(["127.0.0.1"])
    app.rate_limit(paths=["/login"], limit=1, period=60)
    with app.serve() as s:
        statuses = [get(s.port, "/login", {"X-Forwarded-For": f"2001:db8:1:2::{i:x}"}) for i in range(1, 4)]
        assert statuses == [200, 200, 200]
