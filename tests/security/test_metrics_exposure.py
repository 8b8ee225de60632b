"""/metrics is not for the public: loopback only on the public port by default, or a listener of
its own; for anyone else the path is like any other, with every policy applied."""

from __future__ import annotations

import pytest

import edgecore as ec
from tests.e2e.conftest import call
from tests.security.conftest import get


def test_the_public_port_serves_metrics_to_allowed_peers_only(origin):
    app = ec.Edge(origin=origin.url).configure(metrics_path="/metrics")
    app.bots("block")
    with app.serve() as s:
        # From loopback (allowed by default): the metrics, answered by the edge.
        assert "edgecore_requests_total" in call(s.url, "/metrics").body.decode()
        assert origin.requests == []
    app = ec.Edge(origin=origin.url).configure(metrics_path="/metrics", metrics_allow=["10.0.0.0/8"])
    app.bots("block")
    with app.serve() as s:
        # Not allowed: the path goes through the policies (a bot is blocked) and to the origin.
        assert get(s.port, "/metrics", {"User-Agent": "curl/8"}) == 403
        r = call(s.url, "/metrics", headers={"User-Agent": "Mozilla/5.0"})
        assert r.status == 200 and "edgecore_requests_total" not in r.body.decode()
        assert origin.requests[-1]["path"] == "/metrics"


def test_an_admin_listener_takes_the_metrics_off_the_public_port(origin):
    app = ec.Edge(origin=origin.url).configure(metrics_path="/metrics", admin_addr="127.0.0.1:0")
    with app.serve() as s:
        assert s.admin_url and s.admin_url != s.url
        admin = call(s.admin_url, "/metrics")
        assert admin.status == 200 and "edgecore_requests_total" in admin.body.decode()
        assert call(s.admin_url, "/other").status == 404
        # The public port forwards /metrics like any path, even from loopback.
        public = call(s.url, "/metrics")
        assert "edgecore_requests_total" not in public.body.decode()
        assert origin.requests[-1]["path"] == "/metrics"
    with ec.Edge(origin=origin.url).serve() as s:
        assert s.admin_url is None


@pytest.mark.parametrize("bad", ["localhost", "nonsense:1", "127.0.0.1"])
def test_a_bad_admin_addr_is_refused_by_name(origin, bad):
    with pytest.raises(ec.ConfigError, match="admin_addr"):
        ec.Edge(origin=origin.url).configure(admin_addr=bad).serve()
