"""HTTP caching semantics through the server: stale-if-error on a server error (RFC 5861 §4) and
targeted cache control (RFC 9213)."""

from __future__ import annotations

import pytest

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


def test_a_hit_answers_ranges_and_conditionals_from_the_stored_response(origin):
    """RFC 9110 §13-14 at a shared cache: the entry is the whole representation, and a client's
    Range or conditional is cut from it for that client alone, without asking the origin."""
    app = ec.Edge(origin=origin.url)
    app.cache(paths=["/cached/*", "/tagged"], ttl=60)
    with app.serve() as s:
        whole = call(s.url, "/cached/r").body
        part = call(s.url, "/cached/r", headers={"Range": "bytes=2-5"})
        assert part.status == 206 and part.body == whole[2:6]
        assert part.headers["content-range"] == f"bytes 2-5/{len(whole)}"
        assert call(s.url, "/cached/r", headers={"Range": "bytes=-3"}).body == whole[-3:]
        past = call(s.url, "/cached/r", headers={"Range": f"bytes={len(whole)}-"})
        assert past.status == 416 and past.headers["content-range"] == f"bytes */{len(whole)}"
        assert call(s.url, "/cached/r", headers={"Range": "bytes=0-1,4-5"}).body == whole
        assert origin.count("/cached/r") == 1
        assert call(s.url, "/tagged").headers["etag"] == '"t1"'
        again = call(s.url, "/tagged", headers={"If-None-Match": 'W/"t1"'})
        assert again.status == 304 and again.body == b"" and again.headers["etag"] == '"t1"'
        assert call(s.url, "/tagged", headers={"If-None-Match": '"other"'}).status == 200
        stale_range = call(s.url, "/tagged", headers={"Range": "bytes=0-1", "If-Range": '"t0"'})
        assert stale_range.status == 200 and stale_range.body == b"tagged body"
        assert call(s.url, "/tagged", headers={"Range": "bytes=0-1", "If-Range": '"t1"'}).body == b"ta"
        assert origin.count("/tagged") == 1


def test_tags_purge_exactly_their_entries_and_stay_at_the_edge(origin):
    app = ec.Edge(origin=origin.url)
    app.cache(paths=["/product/*"], ttl=60)
    with app.serve() as s:

        def states() -> list[str]:
            return [call(s.url, f"/product/{n}").headers["x-cache"] for n in (1, 2, 3)]

        assert states() == ["MISS"] * 3
        r = call(s.url, "/product/1")
        assert r.headers["x-cache"] == "HIT"
        assert "cache-tag" not in r.headers and "surrogate-key" not in r.headers
        assert s.purge(tag="product-2") == 1
        assert states() == ["HIT", "MISS", "HIT"]
        assert s.purge(tag="p3") == 1  # Surrogate-Key, space-separated
        assert states() == ["HIT", "HIT", "MISS"]
        assert s.purge(tag="catalog") == 3
        assert states() == ["MISS"] * 3
        assert s.purge(tag="product") == 0  # a tag matches whole
        with pytest.raises(ec.ConfigError, match="prefix or a tag"):
            s.purge("/product/", tag="catalog")
        with pytest.raises(ec.ConfigError, match="one word"):
            s.purge(tag="a b")


def test_tags_can_be_forwarded_and_read_from_another_field(origin):
    app = ec.Edge(origin=origin.url)
    app.cache(paths=["/product/*"], ttl=60, tag_fields=["Surrogate-Key"], forward_tags=True)
    with app.serve() as s:
        r = call(s.url, "/product/7")
        assert r.headers["surrogate-key"] == "p7" and r.headers["cache-tag"] == "product-7, catalog"
        assert s.purge(tag="catalog") == 0  # Cache-Tag is not a tag field here
        assert s.purge(tag="p7") == 1
    with pytest.raises(ec.ConfigError, match="not a header name"):
        ec.Edge(origin=origin.url).cache(paths=["/x"], tag_fields=["bad field"]).serve()
