"""HTTP caching semantics through the server: stale-if-error on a server error (RFC 5861 §4) and
targeted cache control (RFC 9213)."""

from __future__ import annotations

import edgecore as ec
from tests.e2e.conftest import call


def test_stale_if_error_serves_the_stale_copy_when_the_origin_answers_5xx(origin):
    app = ec.Edge(origin=origin.url)
    app.cache(paths=["/flaky/*"])
    with app.serve() as s:
        assert call(s.url, "/flaky/a?sie").body == b"good"
        assert call(s.url, "/flaky/b").body == b"good"
        origin.version = 2
        s.core.advance_clock(5)  # both copies are stale now
        stale = call(s.url, "/flaky/a?sie")
        assert (stale.status, stale.body, stale.headers["x-cache"]) == (200, b"good", "STALE")
        # Without stale-if-error, the error passes through.
        failed = call(s.url, "/flaky/b")
        assert (failed.status, failed.body) == (500, b"boom")
        # Past the stale-if-error window, so does this one.
        s.core.advance_clock(120)
        assert call(s.url, "/flaky/a?sie").status == 500


def test_cdn_cache_control_governs_the_edge_and_cache_control_the_browser(origin):
    app = ec.Edge(origin=origin.url)
    app.cache(paths=["/targeted"])
    with app.serve() as s:
        first = call(s.url, "/targeted")
        second = call(s.url, "/targeted")
        assert second.headers["x-cache"] == "HIT" and second.body == first.body
        # The browser still sees (and obeys) the origin's Cache-Control.
        assert second.headers["cache-control"] == "no-store"
        assert origin.count("/targeted") == 1
