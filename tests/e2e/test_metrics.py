"""/metrics in the Prometheus text format, served by Rust."""

from __future__ import annotations

import re

import edgecore as ec
from tests.e2e.conftest import call


def metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name + labels)} ([0-9.e+-]+)$", text, re.M)
    assert m, f"{name}{labels} not in:\n{text}"
    return float(m.group(1))


def test_metrics_count_decisions_latency_origin_cache_and_limits(tmp_path):
    from tests.e2e.origin import Origin

    origin = Origin()
    try:
        app = ec.Edge(origin=origin.url).configure(metrics_path="/metrics", origin_timeout=0.5)
        app.cache(paths=["/cached/*"])
        app.rate_limit(paths=["/limited"], limit=1, period=60)

        @app.route("/py")
        def py(request, env):
            return "hi"

        with app.serve() as s:
            for path in ["/cached/a", "/cached/a", "/limited", "/limited", "/py", "/plain", "/slow?s=2"]:
                call(s.url, path)
            r = call(s.url, "/metrics")
        assert r.status == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        t = r.body.decode()
        assert metric(t, "edgecore_requests_total", '{decision="cache_miss",status="2xx"}') == 1
        assert metric(t, "edgecore_requests_total", '{decision="cache_hit",status="2xx"}') == 1
        assert metric(t, "edgecore_requests_total", '{decision="rate_limited",status="4xx"}') == 1
        assert metric(t, "edgecore_requests_total", '{decision="handler",status="2xx"}') == 1
        assert metric(t, "edgecore_requests_total", '{decision="error",status="5xx"}') == 1
        assert metric(t, "edgecore_ratelimit_decisions_total", '{outcome="allowed"}') == 1
        assert metric(t, "edgecore_ratelimit_decisions_total", '{outcome="denied"}') == 1
        assert metric(t, "edgecore_request_duration_seconds_count") == 7
        assert metric(t, "edgecore_origin_errors_total") == 1
        assert metric(t, "edgecore_origin_duration_seconds_count") >= 3
        assert metric(t, "edgecore_cache_bytes") > 0
        assert metric(t, "edgecore_python_queue_depth") == 0
        assert 'edgecore_request_duration_seconds_bucket{le="+Inf"} 7' in t
    finally:
        origin.stop()


def test_metrics_are_off_by_default():
    app = ec.Edge()
    with app.serve() as s:
        assert call(s.url, "/metrics").status == 404
