"""The shared limiter on a real Redis: semantics, several instances and processes sharing one
limit, the failure policies with Redis stopped mid-run, and recovery."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import redis

import edgecore as ec
from tests.redis_server import RedisServer


def test_shared_limiter_semantics(redis_url):
    rl = ec.RateLimiter(10, 1.0, burst=3, store=redis_url)
    assert rl.shared
    got = [rl.check("user:1") for _ in range(4)]
    assert [d.allowed for d in got] == [True, True, True, False]
    assert [d.source for d in got] == ["redis"] * 4
    assert got[0].remaining == 2
    assert got[3].retry_after == pytest.approx(0.1, abs=0.02)
    assert rl.check("user:2").allowed
    with pytest.raises(ec.ConfigError, match="only for in-process"):
        rl.check("k", now=1.0)
    with pytest.raises(ec.ConfigError, match="larger than the burst"):
        rl.check("k", cost=4)


def test_a_burst_while_connecting_waits_for_the_connection_instead_of_falling_back(redis_url):
    # The first checks of a fresh limiter arrive together while its connection is being made:
    # they must wait for it, not take the fallback (here "local", which would allow 5 more).
    import threading

    for attempt in range(5):
        rl = ec.RateLimiter(5, 3600, store=redis_url, on_store_error="local", timeout=2)
        key = f"burst:{attempt}"
        barrier = threading.Barrier(20)
        got: list[ec.Decision] = []

        def check(rl=rl, key=key, barrier=barrier, got=got) -> None:
            barrier.wait()
            got.append(rl.check(key))

        threads = [threading.Thread(target=check) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert {d.source for d in got} == {"redis"}
        assert sum(d.allowed for d in got) == 5


def test_keys_have_ttls_and_cluster_safe_names(redis_url):
    rl = ec.RateLimiter(2, 10.0, store=redis_url)
    rl.check("client-7")
    r = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in r.keys("*")]
    assert keys == ["edgecore:rl:2/10000/2:{client-7}"]
    ttl = r.pttl(keys[0])
    assert 0 < ttl <= 5001, "the key lives as long as the bucket needs to refill"


def test_script_is_reloaded_after_noscript(redis_url):
    rl = ec.RateLimiter(100, 1.0, store=redis_url)
    assert rl.check("k").source == "redis"
    redis.Redis.from_url(redis_url).script_flush()
    d = rl.check("k")
    assert (d.allowed, d.source) == (True, "redis")


def test_instances_share_one_limit(redis_url):
    limit, burst = 50, 10
    limiters = [ec.RateLimiter(limit, 1.0, burst=burst, store=redis_url) for _ in range(3)]
    start = time.monotonic()
    admitted = 0
    while time.monotonic() - start < 1.5:
        for rl in limiters:
            admitted += rl.check("global").allowed
    elapsed = time.monotonic() - start
    assert admitted <= burst + limit * elapsed + len(limiters)
    assert admitted >= 0.9 * (burst + limit * 1.5)


def _node(url: str, seconds: float, out) -> None:
    import edgecore as ec

    rl = ec.RateLimiter(40, 1.0, burst=10, store=url)
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n += rl.check("shared").allowed
    out.put(n)


def test_processes_share_one_limit(redis_url):
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_node, args=(redis_url, 1.5, out)) for _ in range(3)]
    start = time.monotonic()
    for p in procs:
        p.start()
    counts = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    elapsed = time.monotonic() - start  # includes process start-up: an upper bound
    assert sum(counts) <= 10 + 40 * elapsed + len(procs), counts


@pytest.mark.parametrize(
    ("policy", "source"), [("open", "fail_open"), ("closed", "fail_closed"), ("local", "local_fallback")]
)
def test_redis_stopped_mid_run(policy, source):
    server = RedisServer().start()
    try:
        rl = ec.RateLimiter(1000, 1.0, store=server.url, on_store_error=policy, timeout=0.05)
        assert rl.check("k").source == "redis"
        server.stop()
        latencies = []
        decisions = []
        for _ in range(200):
            t0 = time.perf_counter()
            decisions.append(rl.check("k"))
            latencies.append(time.perf_counter() - t0)
        assert {d.source for d in decisions} == {source}
        expected = {"open": True, "closed": False, "local": True}[policy]
        assert all(d.allowed == expected for d in decisions)
        assert max(latencies) < 0.25, f"a check waited {max(latencies):.3f}s behind a dead Redis"
        assert sorted(latencies)[len(latencies) // 2] < 0.005, "the breaker answers without the network"
        assert rl.fallbacks >= 200
        # Redis returns: limiting resumes through Redis.
        server.start()
        deadline = time.monotonic() + 10
        while rl.check("k").source != "redis":
            assert time.monotonic() < deadline, "did not reconnect"
            time.sleep(0.05)
    finally:
        server.stop()
