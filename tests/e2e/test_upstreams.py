"""Several origin targets behind one name: round robin, a target that dies is ejected and gets
no more traffic, comes back when restarted, retries stay within the budget, and a stale copy
stands in when every target is down. Real origin servers on loopback, stopped and restarted
during bounded runs of concurrent clients."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import edgecore as ec
from tests.e2e.conftest import call
from tests.e2e.origin import Origin
from tests.waiting import wait_for


def metric(base: str, name: str, **labels: str) -> float:
    text = call(base, "/metrics").body.decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{name}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
    assert m, f"{name}{{{want}}} not in\n{text}"
    return float(m.group(1))


def load(base: str, path: str, n: int, workers: int = 8) -> list[int]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda _: call(base, path).status, range(n)))


@pytest.fixture
def origins():
    started = [Origin() for _ in range(3)]
    yield started
    for o in started:
        try:
            o.stop()
        except Exception:  # pragma: no cover - already stopped by the test
            pass


def test_round_robin_and_a_dead_target_gets_no_traffic_once_ejected(origins):
    a, b, c = origins
    app = ec.Edge(origin="upstream:api").configure(metrics_path="/metrics")
    app.upstream("api", [a.url, b.url, c.url], eject_after=2, eject_for=60)
    with app.serve() as s:
        for _ in range(30):
            assert call(s.url, "/x").status == 200
        assert [o.count("/x") for o in origins] == [10, 10, 10], "round robin"
        b.stop()
        # One of three down during a concurrent run: no GET fails (a refused connection is
        # tried on another target), and once b is out it gets no attempts at all.
        assert load(s.url, "/y", 90) == [200] * 90
        assert metric(s.url, "edgecore_upstream_target_up", upstream="api", target=b.url) == 0
        assert metric(s.url, "edgecore_upstream_ejections_total", upstream="api", target=b.url) == 1
        retries = metric(s.url, "edgecore_upstream_retries_total", upstream="api")
        assert 2 <= retries <= 8, "only the attempts before the ejection cost a retry"
        assert load(s.url, "/z", 60) == [200] * 60
        assert metric(s.url, "edgecore_upstream_retries_total", upstream="api") == retries
        assert a.count("/z") == c.count("/z") == 30


def test_an_ejected_target_comes_back_when_restarted(origins):
    a, b, _ = origins
    app = ec.Edge(origin="upstream:api").configure(metrics_path="/metrics")
    app.upstream("api", [a.url, b.url], eject_after=1, eject_for=0.3, eject_max=0.3)
    port = int(b.url.rsplit(":", 1)[1])
    with app.serve() as s:
        b.stop()
        assert load(s.url, "/y", 10, workers=1) == [200] * 10
        assert metric(s.url, "edgecore_upstream_ejections_total", upstream="api", target=b.url) >= 1
        back = Origin(port=port)
        origins[1] = back
        wait_for(lambda: call(s.url, "/back").status == 200 and back.count("/back") > 0, what="b back in rotation")
        assert metric(s.url, "edgecore_upstream_target_up", upstream="api", target=b.url) == 1


def test_a_list_of_origins_is_an_upstream_and_names_are_checked(origins):
    app = ec.Edge(origin=[o.url for o in origins])
    with app.serve() as s:
        assert load(s.url, "/x", 9) == [200] * 9
    assert [o.count("/x") for o in origins] == [3, 3, 3]
    with pytest.raises(ec.ConfigError, match="unknown upstream"):
        with ec.Edge(origin="upstream:nope").serve():
            pass
    with pytest.raises(ec.ConfigError, match='balance "fastest" is not supported'):
        ec.Edge().upstream("api", [origins[0].url], balance="fastest")
    with pytest.raises(ec.ConfigError, match="must be http"):
        ec.Edge().upstream("api", ["ftp://x"])
    with pytest.raises(ec.ConfigError, match="defined twice"):
        ec.Edge().upstream("api", [origins[0].url]).upstream("api", [origins[1].url])


def test_retries_stay_within_the_budget_when_every_target_is_down():
    dead = []
    for _ in range(2):
        o = Origin()
        dead.append(o.url)
        o.stop()
    app = ec.Edge().configure(metrics_path="/metrics", origin_timeout=2)
    app.upstream("api", dead, eject_after=0, retries=1, retry_budget=0.2)
    app.origin_for("upstream:api", paths="/api/*")
    with app.serve() as s:
        statuses = load(s.url, "/api/x", 100)
        assert statuses == [502] * 100
        retries = metric(s.url, "edgecore_upstream_retries_total", upstream="api")
        assert 20 <= retries <= 0.2 * 100 + 10, retries


def test_a_stale_copy_stands_in_when_every_target_is_down(origins):
    a, b, _ = origins
    app = ec.Edge(origin=[a.url, b.url])
    app.cache(paths="/etag", stale_if_error=60)
    app.cache(paths="/flaky", ttl=1)
    with app.serve() as s:
        first = call(s.url, "/etag")
        assert first.status == 200 and first.body == b"version 1"
        assert call(s.url, "/flaky").status == 200
        a.stop()
        b.stop()
        time.sleep(1.2)  # both copies are stale now
        stale = call(s.url, "/etag")
        assert stale.status == 200 and stale.body == b"version 1" and stale.headers["x-cache"] == "STALE"
        # Without stale_if_error (and none in the response), the failure shows.
        assert call(s.url, "/flaky").status == 502
