"""Local-first shared limits (`sync=`): every node decides in process and reconciles through a
real Redis in the background; three nodes under load stay within the README's bound."""

from __future__ import annotations

import threading
import time

import pytest

import edgecore as ec
from tests.e2e.conftest import call


def test_three_nodes_stay_within_the_stated_bound_and_far_below_per_node_limits(redis_url):
    limit, period, burst, sync, seconds = 20, 2.0, 20, 0.05, 3.0
    nodes = [ec.RateLimiter(limit, period, burst=burst, store=redis_url, sync=sync) for _ in range(3)]
    admitted = [0, 0, 0]
    sources: set[str] = set()
    start = threading.Barrier(3)

    def hammer(i: int) -> None:
        start.wait()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            d = nodes[i].check("login:alice")
            sources.add(d.source)
            admitted[i] += d.allowed
            time.sleep(0.001)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(admitted)
    rate = limit / period
    strict = burst + rate * seconds  # what one shared strict limiter admits: 50
    bound = strict + (len(nodes) - 1) * (burst + 2 * sync * rate)  # README: 92
    assert sources == {"local_first"}
    assert strict * 0.9 <= total <= bound, (admitted, total, bound)
    # Per-node limits would have admitted about three times the strict count.
    assert total < 3 * strict * 0.7
    assert all(n.sync_rounds[0] > 0 and n.sync_rounds[1] == 0 for n in nodes)


def test_with_redis_unreachable_a_node_decides_alone_without_waiting():
    node = ec.RateLimiter(3, 60, store="redis://127.0.0.1:1/0", sync=0.02)
    decisions = [node.check("k") for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert {d.source for d in decisions} == {"local_first"} and node.fallbacks == 0
    deadline = time.time() + 10
    while node.sync_rounds[1] == 0:  # the background rounds fail, the checks do not
        assert time.time() < deadline
        time.sleep(0.02)


def test_a_server_rule_with_sync_answers_429_from_the_local_decision(origin, redis_url):
    app = ec.Edge(origin=origin.url)
    app.rate_limit(paths="/login", limit=2, period=60, store=redis_url, sync=0.05)
    with app.serve() as srv:
        statuses = [call(srv.url, "/login").status for _ in range(4)]
        assert statuses == [200, 200, 429, 429]
        r = call(srv.url, "/login")
        assert r.headers["ratelimit-policy"] == '"default";q=2;w=60'
    # What the node admitted reached Redis: the limit's shared key holds a TAT in the future.
    import redis

    r = redis.Redis.from_url(redis_url)
    deadline = time.time() + 5
    while not r.keys("edgecore:rl:2/60000/2:*"):
        assert time.time() < deadline, "nothing was reconciled"
        time.sleep(0.05)
    (key,) = r.keys("edgecore:rl:2/60000/2:*")
    assert r.pttl(key) > 50_000  # two requests of a 2-per-minute limit: the bucket is empty


def test_sync_needs_a_store_and_a_sane_interval():
    with pytest.raises(ec.ConfigError, match="sync needs a store"):
        ec.RateLimiter(5, 60, sync=0.05)
    with pytest.raises(ec.ConfigError, match=r"between 0\.001 and 60"):
        ec.RateLimiter(5, 60, store="redis://127.0.0.1:1/0", sync=0)
    with pytest.raises(ec.ConfigError, match=r"between 0\.001 and 60"):
        ec.Edge().rate_limit(paths="/x", limit=5, period=60, store="redis://127.0.0.1:1/0", sync=120)
